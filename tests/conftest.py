import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402

VMLINUX = "/sys/kernel/btf/vmlinux"


@pytest.fixture(scope="session")
def vmlinux_btf():
    """The running kernel's BTF, parsed once per test session."""
    if not os.access(VMLINUX, os.R_OK):
        pytest.skip(f"{VMLINUX} is not readable (kernel without BTF?)")
    from ksnoop.btf import BTF

    with open(VMLINUX, "rb") as f:
        return BTF(f.read(), name="vmlinux")
