"""Signed bitfields through the real kernel: the generated predicate and
capture C, compiled by BCC, verified and *run* by the host kernel.

The host has no kprobes, so the generated kprobe programs are run from a raw
tracepoint: a small wrapper on ``sys_enter`` (only for this process's
``getpid`` calls carrying a marker) copies the struct the syscall's first
argument points to into a BPF map value (kernel memory), builds a
``struct pt_regs`` whose first argument points there, and calls the generated
entry program, then the return program with a chosen return value, exactly
as a kprobe/kretprobe pair would.  Events go through the real ring buffer and
are decoded and formatted as a live trace's are.
"""

import ctypes
import os
import platform
import re
import sys
import time

import pytest
from hostenv import bpf_skip_reason

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "unit"))
from test_bitfield import BLOB, pack  # noqa: E402  (tests/unit, for the fake BTF)

pytestmark = pytest.mark.host

NR_GETPID = 39  # x86_64
MARKER = 0x6b736e6f6f70  # "ksnoop": only calls that carry it run the programs
OBJ = 64  # bytes copied from the caller

WRAPPER = r"""
struct ksn_bf_obj { u8 b[%(obj)d]; };
BPF_PERCPU_ARRAY(ksn_bf_objs, struct ksn_bf_obj, 1);

int ksn_bf_tp(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] != %(nr)d)
		return 0;
	if ((bpf_get_current_pid_tgid() >> 32) != %(pid)d)
		return 0;
	struct pt_regs regs = {};
	if (bpf_probe_read_kernel(&regs, sizeof(regs), (void *)ctx->args[0]))
		return 0;
	if (regs.si != %(marker)dULL)
		return 0;
	int zero = 0;
	struct ksn_bf_obj *o = ksn_bf_objs.lookup(&zero);
	if (!o)
		return 0;
	if (bpf_probe_read_user(o->b, sizeof(o->b), (void *)regs.di))
		return 0;
	/* The object now lives in kernel memory; its address goes in as a number, */
	/* as a kprobe's register would (copied, so the verifier sees a scalar). */
	u64 addr = (u64)o->b;
	bpf_probe_read_kernel(&regs.di, sizeof(regs.di), &addr);
%(calls)s
	return 0;
}
"""


@pytest.fixture(scope="module")
def vmlinux():
    reason = bpf_skip_reason("BPF load/attach")
    if reason:
        pytest.skip(reason)
    if platform.machine() != "x86_64":
        pytest.skip("the getpid number and the registers used here are x86_64's")
    from ksnoop.btf import BTF

    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        return BTF(f.read(), name="vmlinux")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    from ksnoop.kernel.files import Kernel

    d = tmp_path_factory.mktemp("bf")
    (d / "bf.btf").write_bytes(BLOB)
    return Kernel(btf_path=str(d / "bf.btf"), sys_btf=str(d), kallsyms_path="/nonexistent")


def program(plan):
    """The generated C with its programs made inline functions, plus the wrapper."""
    from ksnoop.trace.codegen import Machine, generate
    from ksnoop.trace.plan import Filters

    c_text, probes = generate(plan, Machine(self_tgid=1, ncpus=os.cpu_count() or 1),
                              Filters(pid=os.getpid()))
    entries = [e for _, e, _ in probes if e]
    returns = [r for _, _, r in probes if r]
    for name in entries + returns:
        c_text, n = re.subn(rf"^int {name}\(struct pt_regs \*ctx\)$",
                            f"static __always_inline int {name}(struct pt_regs *ctx)", c_text,
                            flags=re.M)
        assert n == 1, name
    calls = [f"\t{e}(&regs);" for e in entries]
    calls.append("\tregs.ax = regs.dx;  /* the return value the caller chose */")
    calls += [f"\t{r}(&regs);" for r in returns]
    return c_text + WRAPPER % {"obj": OBJ, "nr": NR_GETPID, "pid": os.getpid(),
                               "marker": MARKER, "calls": "\n".join(calls)}


def trace(vmlinux, plan, calls):
    """Run ``calls`` ((struct bytes, return value) each) through the programs;
    the events, formatted as ``-o line`` output without the task columns."""
    from ksnoop.trace.events import Decoder
    from ksnoop.trace.output import Formatter
    from ksnoop.trace.runtime import RawTracepoint, Session

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    got = []
    with Session(program(plan), [RawTracepoint("sys_enter", "ksn_bf_tp")], btf=vmlinux,
                 buffer="ringbuf", pages=8, on_event=lambda cpu, data: got.append(data)) as s:
        s.attach()
        for data, ret in calls:
            buf = ctypes.create_string_buffer(data.ljust(OBJ, b"\0"), OBJ)
            libc.syscall(ctypes.c_long(NR_GETPID), ctypes.c_void_p(ctypes.addressof(buf)),
                         ctypes.c_ulong(MARKER), ctypes.c_long(ret))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            s.poll(50)
        assert s.stats().lost == 0
    dec, fmt = Decoder(plan), Formatter("line")
    return [fmt.event(dec.decode(bytes(d))).split(None, 4)[4] for d in got]


SPECS = ["bf_fn(p->a == -1, p->c < 0, p->d == -5, p->b, p->u, p)",
         "bf_ret(p->a == -1, p->d, return == -7)"]  # stash: a return predicate too


def test_signed_bitfields_in_the_kernel(vmlinux, kernel):
    from ksnoop.trace.resolve import resolve
    from ksnoop.trace.spec import parse

    plan = resolve([parse(s) for s in SPECS], kernel)
    assert not plan.funcs[0].stash and plan.funcs[1].stash
    lines = trace(vmlinux, plan, [
        (pack(a=-1, b=1, c=-1, u=5, d=-5), -7),  # both pass
        (pack(a=3, b=2, c=-1, u=5, d=-5), -7),  # a == 3 (7 zero-extended is not -1 either)
        (pack(a=-1, b=3, c=-1, u=5, d=-5), 0),  # bf_fn passes, bf_ret's return does not
        (pack(a=-1, b=4, c=1, u=5, d=-5), -7),  # c >= 0: bf_fn fails, bf_ret passes
        (pack(a=-1, b=5, c=-1, u=5, d=5), 7),  # d == 5: bf_fn fails; return 7 fails
        (pack(a=-4, b=6, c=-8, u=7, d=-5), -7),  # a == -4: both fail
    ])
    star = ("p = *(struct bf){.a = (int)-1,.b = (unsigned int){b},.c = (enum se)NEG,"
            ".u = (enum ue)5,.d = (long long)-5,}")
    expected = [
        "bf_fn(p->a = (int)-1, p->c = (enum se)NEG, p->d = (long long)-5, "
        "p->b = (unsigned int)1, p->u = (enum ue)5, " + star.replace("{b}", "1") + ")",
        "bf_ret(p->a = (int)-1, p->d = (long long)-5) => return = (int)-7 (-E2BIG)",
        "bf_fn(p->a = (int)-1, p->c = (enum se)NEG, p->d = (long long)-5, "
        "p->b = (unsigned int)3, p->u = (enum ue)5, " + star.replace("{b}", "3") + ")",
        "bf_ret(p->a = (int)-1, p->d = (long long)-5) => return = (int)-7 (-E2BIG)",
    ]
    # a stash line ends with the call's duration, as timed in the kernel
    assert all(re.search(r"\) \(\d+\.\d{3}us\)$", ln) for ln in lines if ln.startswith("bf_ret")), lines
    lines = [re.sub(r" \(\d+\.\d{3}us\)$", "", ln) for ln in lines]
    assert sorted(lines) == sorted(expected)
    assert len(lines) == 4
