"""Whether the guest tier can run here: the one rule for every guest test."""

import os

import pytest


def skip_reason():
    """Why the guest tier cannot run here, or None.  Outside the VM test bed
    (without root, or on a kernel without kprobes, as on the host) that is a
    reason to skip; inside it (tests/vm/run.sh sets KSNOOP_VM=1) it is a
    failure: the test bed's kernel must attach kprobes, or nothing the guest
    tier checks proves anything."""
    if os.geteuid() != 0:
        return "needs root"
    from ksnoop.kernel.features import kprobes_available

    ok, why = kprobes_available()
    if ok:
        return None
    if os.environ.get("KSNOOP_VM") == "1":
        pytest.fail(f"the VM test bed cannot attach kprobes: {why}", pytrace=False)
    return f"cannot attach kprobes here (the guest tier runs in the VM test bed: make guest): {why}"
