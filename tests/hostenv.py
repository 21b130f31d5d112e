"""Whether the host tier can run here, shared by the host tests.

Only the environment may excuse a host test: not root, or a kernel without
BTF (and under KSNOOP_STRICT=1 even that is a failure).  Anything else that
stops the tier (BCC missing from the venv, a BPF call refused) is breakage
and fails the test with the reason.
"""

import os

import pytest


def bpf_skip_reason(need="BPF program load"):
    """Why this host cannot run BPF tests (not root, no BTF), or None.

    Fails the calling test if the host should run them but BCC's Python
    module cannot be imported: that is a broken setup, not an excuse."""
    if os.geteuid() != 0:
        return f"needs root ({need})"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    require_bcc()
    return None


def require_bcc():
    try:
        import bcc  # noqa: F401
    except ImportError as e:
        why = str(e)
    else:
        return
    pytest.fail(f"BCC's Python module cannot be imported ({why}): install Debian's python3-bpfcc "
                "and make the venv with --system-site-packages (make setup)", pytrace=False)


def syscall_loop(tmp_path_factory):
    """tests/workload/syscall_loop.c built for this module (``loop`` fixtures):
    skips where raw tracepoints cannot be loaded; x86-64 only (it counts on
    getppid being syscall 110)."""
    import subprocess

    reason = bpf_skip_reason("raw tracepoints")
    if reason:
        pytest.skip(reason)
    if os.uname().machine != "x86_64":
        pytest.fail("the workload's syscall number (getppid = 110) is x86_64's")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = tmp_path_factory.mktemp("workload") / "syscall_loop"
    subprocess.run(["gcc", "-O2", "-o", str(exe), os.path.join(root, "tests/workload/syscall_loop.c")],
                   check=True)
    return str(exe)
