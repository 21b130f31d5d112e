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


# Under `make test` (KSNOOP_STRICT=1) a skipped test is a failed test: a tier
# that cannot run must say so loudly instead of leaving the run green.
STRICT = os.environ.get("KSNOOP_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if STRICT and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped under KSNOOP_STRICT=1 (make test), which counts as a failure: {reason}"


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report):
    """A module that skips itself at import (allow_module_level) fails too under STRICT."""
    if STRICT and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"module skipped under KSNOOP_STRICT=1 (make test): {reason}"
