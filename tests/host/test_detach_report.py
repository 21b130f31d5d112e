"""Detach failures reach the user: the session records them while closing,
and the trace job prints them on stderr after the summary."""

import io
import os

import pytest
from hostenv import bpf_skip_reason

pytestmark = pytest.mark.host

# Emits nothing (no process has pid 0 in user space): only attach and detach matter.
QUIET_TP_C = r"""
int ksn_detach_tp(struct bpf_raw_tracepoint_args *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) == 0) {
        u64 x = 0;
        KSNOOP_OUTPUT(ctx, &x, sizeof(x));
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def kernel():
    reason = bpf_skip_reason("BPF load/attach")
    if reason:
        pytest.skip(reason)
    from ksnoop.kernel.files import Kernel

    return Kernel()


def _lose_fds_after_attach(monkeypatch):
    """Attach for real, then close the link fds behind the session's back, so
    its own detach fails in the kernel (EBADF), as a real detach failure would."""
    from ksnoop.trace import runtime

    attach = runtime.Session.attach

    def attach_then_lose(self):
        attach(self)
        for _kind, _key, fd in self._attached:
            os.close(fd)
        return self

    monkeypatch.setattr(runtime.Session, "attach", attach_then_lose)


def test_session_records_detach_failure(kernel, monkeypatch):
    from ksnoop.trace.runtime import RawTracepoint, Session

    _lose_fds_after_attach(monkeypatch)
    s = Session(QUIET_TP_C, [RawTracepoint("sys_enter", "ksn_detach_tp")], btf=kernel.vmlinux)
    with s:
        s.attach()
    assert any("detach problems" in n and "sys_enter" in n for n in s.notes), s.notes


def test_trace_prints_detach_failure(kernel, monkeypatch):
    from ksnoop.trace.job import Prepared, Tracer
    from ksnoop.trace.plan import TracePlan
    from ksnoop.trace.runtime import RawTracepoint

    _lose_fds_after_attach(monkeypatch)
    prepared = Prepared(TracePlan((), 2048, "x86_64"), QUIET_TP_C,
                        [RawTracepoint("sys_enter", "ksn_detach_tp")])
    out, err = io.StringIO(), io.StringIO()
    Tracer(prepared, kernel, fmt="line", out=out, err=err, duration=0.2).run()
    lines = err.getvalue().splitlines()
    summary = next(i for i, ln in enumerate(lines) if ln.startswith("ksnoop: 0 events"))
    detach = [ln for ln in lines[summary + 1:] if "detach problems" in ln]
    assert detach and "sys_enter" in detach[0] and "Bad file descriptor" in detach[0], lines
