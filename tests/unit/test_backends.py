"""Backends without a live kernel: where arguments live (registers, the stack,
a trampoline's context), which backend a function gets and why, and the C
each backend reads its values with.  The real attach is the guest tier's."""

import errno
import os
from dataclasses import replace

import pytest
from backendstub import Fixed
from btfwriter import BTFWriter, abi_corners

from ksnoop.btf import BTF, Kind
from ksnoop.errors import SpecError
from ksnoop.kernel import backend, callconv, features
from ksnoop.kernel.arch import current
from ksnoop.kernel.files import Kernel
from ksnoop.trace.codegen import (
    MULTI_ENTRY,
    MULTI_PROGS,
    MULTI_RETURN,
    MULTI_RETURN_BASE,
    NULL_READ,
    Machine,
    generate,
)
from ksnoop.trace.job import attach_points
from ksnoop.trace.plan import DEREF, FENTRY, KPROBE, MEMORY, REGS, SCALAR
from ksnoop.trace.resolve import find_member, resolve
from ksnoop.trace.spec import parse

VMLINUX = "/sys/kernel/btf/vmlinux"
MACHINE = Machine(self_tgid=1, ncpus=4)
needs_btf = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF")


@pytest.fixture(scope="module")
def kernel():
    return Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent/kallsyms")


@pytest.fixture(scope="module")
def corners(tmp_path_factory):
    """6.18's ZSTD_adjustCParams and friends on every kernel (btfwriter.abi_corners)."""
    d = tmp_path_factory.mktemp("corners")
    (d / "vmlinux").write_bytes(abi_corners())
    return Kernel(btf_path=str(d / "vmlinux"), sys_btf=str(d), kallsyms_path="/nonexistent")


# Stack arguments on every kernel (6.1, 6.12, 6.18): __udp4_lib_lookup(struct net *net,
# __be32 saddr, __be16 sport, __be32 daddr, __be16 dport, int dif, int sdif,
# struct udp_table *udptable, struct sk_buff *skb): the last three are on the stack.
STACKY = "__udp4_lib_lookup"


FENTRY_CHOICE = backend.Choice(backend.FENTRY, False, "test")
MULTI_CHOICE = backend.Choice(backend.KPROBE, True, "test")
KPROBE_CHOICE = backend.Choice(backend.KPROBE, False, "test")


def proto_of(btf, name):
    return btf[btf[btf.find(name, Kind.FUNC)[0]].type]


# ------------------------------------------------------------ calling convention
def crafted():
    """f(long a1..a5, struct pair16 s, long a7), g(struct big b, long x),
    h(long x1..x6, long y, __int128 z): what the x86_64 ABI does past the registers."""
    w = BTFWriter()
    long = w.int("long int", 8, signed=True)
    i128 = w.int("__int128", 16, signed=True)
    pair = w.struct("pair16", 16, [("lo", long, 0), ("hi", long, 64)])
    big = w.struct("big", 24, [("a", long, 0), ("b", long, 64), ("c", long, 128)])
    w.func("f", w.func_proto(long, [(f"a{i}", long) for i in range(1, 6)]
                             + [("s", pair), ("a7", long)]))
    w.func("g", w.func_proto(long, [("b", big), ("x", long)]))
    w.func("k", w.func_proto(long, [("a", long), ("s", pair)]))
    w.func("h", w.func_proto(long, [(f"x{i}", long) for i in range(1, 7)]
                             + [("y", long), ("z", i128)]))
    return BTF(w.build())


def test_a_pair_that_misses_the_last_register_goes_to_the_stack_the_next_argument_does_not():
    btf = crafted()
    slots = callconv.assign(btf, proto_of(btf, "f"))
    assert [(s.name, s.regs, s.stack) for s in slots] == [
        ("a1", (0,), -1), ("a2", (1,), -1), ("a3", (2,), -1), ("a4", (3,), -1), ("a5", (4,), -1),
        ("s", (), 8), ("a7", (5,), -1)]
    assert all(s.traceable for s in slots)
    # a trampoline numbers its u64 slots in prototype order, two for the pair
    assert [s.ctx for s in slots] == [(0,), (1,), (2,), (3,), (4,), (5, 6), (7,)]
    assert callconv.trampoline_return_slot(slots) == 8


def test_a_big_struct_by_value_is_on_the_stack_and_rules_out_a_trampoline():
    btf = crafted()
    slots = callconv.assign(btf, proto_of(btf, "g"))
    assert [(s.name, s.regs, s.stack, s.ctx) for s in slots] == [("b", (), 8, ()), ("x", (0,), -1, (3,))]
    assert callconv.trampoline_problem(btf, proto_of(btf, "g"), slots) == (
        "argument 'b' is an aggregate of more than 16 bytes passed by value")


def test_stack_arguments_are_8_byte_slots_16_aligned_for_int128():
    btf = crafted()
    slots = callconv.assign(btf, proto_of(btf, "h"))
    assert [(s.name, s.stack) for s in slots[6:]] == [("y", 8), ("z", 16)]
    assert slots[7].ctx == (7, 8)


def test_other_architectures_keep_stack_arguments_untraceable():
    btf = crafted()
    slots = callconv.assign(btf, proto_of(btf, "h"), "aarch64")
    assert [(s.name, s.regs, s.traceable, s.why) for s in slots[6:]] == [
        ("y", (6,), True, ""), ("z", (), False, "passed on the stack")]


@needs_btf
def test_nine_arguments_keep_three_on_the_stack(kernel):
    btf = kernel.vmlinux
    slots = callconv.assign(btf, proto_of(btf, STACKY))
    assert [(s.name, s.stack, s.ctx) for s in slots[6:]] == [
        ("sdif", 8, (6,)), ("udptable", 16, (7,)), ("skb", 24, (8,))]
    assert callconv.trampoline_problem(btf, proto_of(btf, STACKY), slots) == ""


@needs_btf
def test_trampoline_refuses_struct_returns(kernel):
    btf = kernel.vmlinux
    proto = proto_of(btf, "current_time")
    assert callconv.trampoline_problem(btf, proto, callconv.assign(btf, proto)) == \
        "returns a struct or union by value"


# ------------------------------------------------------------ values per backend
@needs_btf
def test_kprobe_reads_stack_arguments_past_the_return_address(kernel):
    p = resolve([parse(f"{STACKY}(sdif, udptable, net->ifindex)")], kernel)
    sdif, udptable, ifindex = p.funcs[0].entry
    assert (sdif.kind, sdif.reg, sdif.hops, sdif.read_off, sdif.size) == \
        (SCALAR, "ctx->sp", (), 8, 4)
    # a pointer on the stack: read it first (one hop), then what it points to
    assert (udptable.kind, udptable.reg, udptable.hops, udptable.read_off) == \
        (DEREF, "ctx->sp", (16,), 0)
    assert (ifindex.reg, ifindex.hops) == ("ctx->di", ())
    c, _ = generate(p, MACHINE)
    assert "u64 p = (u64)ctx->sp;" in c
    assert "bpf_probe_read_kernel(e->v0_data, 4, (void *)(p + 8));" in c


@needs_btf
def test_member_of_a_pointer_passed_on_the_stack(kernel):
    (fp,) = resolve([parse(f"{STACKY}(skb->len)")], kernel).funcs
    (v,) = fp.entry
    assert (v.reg, v.hops[0]) == ("ctx->sp", 24)


def test_struct_passed_on_the_stack_is_memory_and_has_members(corners):
    (fp,) = resolve([parse("ZSTD_adjustCParams(cPar, cPar.windowLog > 10)")], corners).funcs
    cpar, wlog = fp.entry
    assert (cpar.kind, cpar.reg, cpar.read_off, cpar.size) == (MEMORY, "ctx->sp", 8, 28)
    assert (wlog.kind, wlog.reg, wlog.hops, wlog.read_off) == (SCALAR, "ctx->sp", (), 8)


@needs_btf
def test_fentry_reads_the_context_array_and_fexit_the_slot_after_it(kernel):
    p = resolve([parse(f"{STACKY}(sdif, net->ifindex, return)")], kernel,
                backends=Fixed(FENTRY_CHOICE))
    (fp,) = p.funcs
    assert fp.probe == FENTRY and fp.btf_id == kernel.vmlinux.find(STACKY, Kind.FUNC)[0]
    sdif, ifindex = fp.entry
    (ret,) = fp.ret
    assert (sdif.kind, sdif.reg) == (SCALAR, "ctx[6]")
    bit, _ = find_member(kernel.vmlinux, kernel.vmlinux.find("net", Kind.STRUCT)[0], "ifindex")
    assert (ifindex.reg, ifindex.hops, ifindex.read_off) == ("ctx[0]", (), bit // 8)
    assert ret.reg == "ctx[9]"
    c, probes = generate(p, MACHINE)
    assert "int ksnoop_entry_0(u64 *ctx)" in c and "int ksnoop_return_0(u64 *ctx)" in c
    assert "*(u64 *)&e->v0_ptr = (u64)ctx[6];" in c
    (point,) = attach_points(probes)
    assert (type(point).__name__, point.func, point.btf_id, point.entry_fn, point.return_fn) == (
        "Fentry", STACKY, fp.btf_id, "ksnoop_entry_0", "ksnoop_return_0")


@needs_btf
def test_fentry_struct_of_two_slots(kernel):
    """do_tcp_setsockopt(sk, level, optname, sockptr_t optval, optlen): 16 bytes in two slots."""
    (fp,) = resolve([parse("do_tcp_setsockopt(optval, optlen)")], kernel,
                    backends=Fixed(FENTRY_CHOICE)).funcs
    optval, optlen = fp.entry
    assert (optval.kind, optval.regs) == (REGS, ("ctx[3]", "ctx[4]"))
    assert optlen.reg == "ctx[5]"


# ------------------------------------------------------------ plain loads
@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """f(struct outer *o, struct outer __user *u): o->plain is a plain pointer,
    o->pc a __percpu one, o->flags holds a 3-byte bitfield."""
    w = BTFWriter()
    i32 = w.int("int", 4, signed=True)
    u32 = w.int("unsigned int", 4)
    inner = w.struct("inner", 8, [("x", i32, 0), ("y", i32, 32)])
    outer = w.struct("outer", 24, [("plain", w.ptr(inner), 0),
                                   ("pc", w.ptr(w.type_tag("percpu", inner)), 64),
                                   ("wide", u32, 128, 20), ("narrow", u32, 148, 3)], kflag=True)
    w.func("f", w.func_proto(i32, [("o", w.ptr(w.const(outer))),
                                   ("u", w.ptr(w.type_tag("user", outer)))]))
    d = tmp_path_factory.mktemp("tagged")
    (d / "vmlinux").write_bytes(w.build())
    return Kernel(btf_path=str(d / "vmlinux"), sys_btf=str(d), kallsyms_path="/nonexistent")


def test_fentry_follows_typed_pointers_by_plain_loads(tagged):
    """fentry's arguments and the struct pointers in them are BTF-typed: the
    verifier checks loads through them, so no bpf_probe_read_kernel is needed,
    except where a type tag changes the rules or the width is no load's."""
    spec = "f(o->plain->x, o->pc->x, u->plain->x, o->plain, o->wide, o->narrow)"
    (fp,) = resolve([parse(spec)], tagged, arch=current("x86_64"), backends=Fixed(FENTRY_CHOICE)).funcs
    got = {v.name: v.direct for v in fp.entry}
    assert got == {"o->plain->x": True, "o->pc->x": False, "u->plain->x": False, "o->plain": True,
                   "o->wide": False, "o->narrow": True}  # a 20-bit field at bit 128: 3 bytes
    (fp,) = resolve([parse(spec)], tagged, arch=current("x86_64"), backends=Fixed(KPROBE_CHOICE)).funcs
    assert not any(v.direct for v in fp.entry)
    # the NULL rule (-ERANGE, as the helper says) is x86_64's: elsewhere, the helper
    (fp,) = resolve([parse(spec)], tagged, arch=current("aarch64"), backends=Fixed(FENTRY_CHOICE)).funcs
    assert not any(v.direct for v in fp.entry)


def test_plain_loads_fail_on_null_as_the_helper_does(tagged):
    spec = "f(o->plain->x == 3, o->plain, o->narrow)"
    p = resolve([parse(spec)], tagged, arch=current("x86_64"), backends=Fixed(FENTRY_CHOICE))
    c, _ = generate(p, MACHINE)
    body = c.split("int ksnoop_entry_0", 1)[1].split("\n}\n", 1)[0]
    assert "bpf_probe_read_kernel(&" not in body and "bpf_probe_read_kernel(e->v0" not in body
    assert f"if (!err) {{ if (!p) err = {NULL_READ}; else p = *(u64 *)(p + 0); }}" in body
    assert f"if (!err) {{ if (!p) err = {NULL_READ}; else l0 = *(u32 *)(p + 0); }}" in body
    assert f"if (!err) {{ if (!p) err = {NULL_READ}; else *(u64 *)e->v2_data = *(u8 *)(p + 18); }}" in body
    assert NULL_READ == -errno.ERANGE
    # the same spec with kprobes: the helper, every time
    p = resolve([parse(spec)], tagged, arch=current("x86_64"), backends=Fixed(KPROBE_CHOICE))
    c, _ = generate(p, MACHINE)
    assert f"err = {NULL_READ}" not in c and c.count("bpf_probe_read_kernel(&p, sizeof(p)") == 2


@needs_btf
def test_default_spec_shows_stack_arguments_too(kernel):
    (fp,) = resolve([parse(STACKY)], kernel).funcs
    assert [v.name for v in fp.entry][6:] == ["sdif", "udptable", "skb"]
    assert fp.notes == ()


# ------------------------------------------------------------ kprobe-multi
@needs_btf
def test_functions_of_one_link_share_a_dispatcher_on_the_cookie(kernel):
    """One program per side for the link.  With predicates (compiled only) it
    tail-calls the function's own program, at the function's index (returns
    MULTI_RETURN_BASE above) in a program array, by the cookie the link gives
    each call.  (Without, one generic program: tests/unit/test_multigen.py.)"""
    p = resolve([parse("ip_send_skb(skb->len > 0, return)"), parse("vfs_read(count > 1)")], kernel,
                backends=Fixed(MULTI_CHOICE))
    c, probes = generate(p, MACHINE)
    assert [(fp.name, e, r) for fp, e, r in probes] == [
        ("ip_send_skb", "ksnoop_entry_0", "ksnoop_return_0"), ("vfs_read", "ksnoop_entry_1", None)]
    assert f"BPF_PROG_ARRAY({MULTI_PROGS}, {2 * MULTI_RETURN_BASE});" in c
    assert ("int ksnoop_entry_m(struct pt_regs *ctx)\n{\n"
            f"\t{MULTI_PROGS}.call(ctx, bpf_get_attach_cookie(ctx));\n\treturn 0;\n}}") in c
    assert f"\t{MULTI_PROGS}.call(ctx, {MULTI_RETURN_BASE} + bpf_get_attach_cookie(ctx));" in c
    assert "int ksnoop_entry_1(struct pt_regs *ctx)" in c
    points = {(type(x).__name__, x.fn, x.funcs, x.cookies, x.retprobe, x.members)
              for x in attach_points(probes)}
    assert points == {
        ("MultiKprobe", MULTI_ENTRY, ("ip_send_skb", "vfs_read"), (0, 1), False,
         ((0, "ksnoop_entry_0"), (1, "ksnoop_entry_1"))),
        ("MultiKprobe", MULTI_RETURN, ("ip_send_skb",), (0,), True,
         ((MULTI_RETURN_BASE, "ksnoop_return_0"),))}


@needs_btf
def test_a_multi_link_gives_the_kernel_addresses_where_kallsyms_has_them(kernel):
    """By address, the kernel need not search all its symbols for each name;
    where an address is unknown (kallsyms hidden) the link goes by names."""
    p = resolve([parse("ip_send_skb(skb->len)"), parse("vfs_read(count)")], kernel,
                backends=Fixed(MULTI_CHOICE))
    _, probes = generate(p, MACHINE)
    (point,) = attach_points(probes)
    assert point.funcs == ("ip_send_skb", "vfs_read") and point.addrs == ()  # no kallsyms here
    known = [(replace(fp, addr=0xffffffff81000000 + 0x40 * (fp.index + 1)), e, r) for fp, e, r in probes]
    (point,) = attach_points(known)
    assert point.addrs == (0xffffffff81000040, 0xffffffff81000080)
    half = [known[0], (replace(known[1][0], addr=0), *known[1][1:])]
    (point,) = attach_points(half)
    assert point.addrs == ()


@needs_btf
def test_no_dispatcher_without_multi(kernel):
    c, _ = generate(resolve([parse("ip_send_skb")], kernel), MACHINE)
    assert MULTI_PROGS not in c and MULTI_ENTRY not in c


# ------------------------------------------------------------ the choice
class FakeFn:
    def __init__(self, btf, name, module=""):
        self.name, self.btf, self.module = name, btf, module
        self.func_id = btf.find(name, Kind.FUNC)[0]
        self.proto = btf[btf[self.func_id].type]


class LiveKernel:
    live = True

    def __init__(self, btf):
        self.vmlinux = btf


@pytest.fixture
def pick(monkeypatch):
    """choose() for a crafted function under given kernel answers."""
    def run(name, policy, tracing=(True, ""), multi=(True, ""), ftrace=("f", "g", "h", "k"),
            attaches=(True, ""), pattern=False):
        btf = crafted()
        monkeypatch.setattr(features, "tracing_programs", lambda k: tracing)
        monkeypatch.setattr(features, "kprobe_multi", lambda k: multi)
        monkeypatch.setattr(features, "ftrace_functions", lambda: set(ftrace))
        monkeypatch.setattr(features, "fentry_attaches", lambda *a: attaches)
        fn = FakeFn(btf, name)
        b = backend.Backends(LiveKernel(btf), policy)
        return b.choose(fn, callconv.assign(btf, fn.proto), pattern)
    return run


def test_auto_prefers_fentry(pick):
    c = pick("f", "auto")
    assert (c.probe, c.multi, c.label) == (backend.FENTRY, False, "fentry/fexit")


def test_auto_falls_back_to_kprobes_and_says_why(pick):
    c = pick("f", "auto", tracing=(False, "this kernel refuses fentry/fexit programs here (EPERM)"))
    assert (c.probe, c.why) == (backend.KPROBE, "this kernel refuses fentry/fexit programs here (EPERM)")
    c = pick("g", "auto")
    assert c.probe == backend.KPROBE and "more than 16 bytes" in c.why


def test_stack_arguments_need_a_trampoline_that_carries_them(pick):
    assert pick("h", "auto").probe == backend.FENTRY  # slots 6..8: tried, and it attached
    c = pick("h", "auto", attaches=(False, "operation not supported by this kernel"))
    assert c.probe == backend.KPROBE and "trampoline does not take it" in c.why
    # f's pair is on the stack (slots 5 and 6): tried; k's arguments fit the registers: not tried
    assert pick("f", "auto", attaches=(False, "no")).probe == backend.KPROBE
    assert pick("k", "auto", attaches=(False, "no")).probe == backend.FENTRY


def test_fentry_policy_fails_where_impossible(pick):
    with pytest.raises(backend.NotPossible, match="g cannot be traced with fentry/fexit: no trampoline"):
        pick("g", "fentry")


def test_kprobe_policy(pick):
    assert pick("f", "kprobe") == backend.Choice(backend.KPROBE, False, "--backend kprobe")
    assert pick("f", "kprobe", pattern=True).multi
    assert not pick("f", "kprobe", pattern=True, multi=(False, "no fprobe")).multi


def test_patterns_share_a_multi_link_where_possible(pick):
    assert pick("f", "auto", pattern=True) == backend.Choice(
        backend.KPROBE, True, "a wildcard's functions share one kprobe-multi link")
    # not ftrace-able (notrace): neither a multi link nor fentry can attach it
    assert pick("f", "auto", pattern=True, ftrace=()).probe == backend.FENTRY
    assert pick("f", "auto", pattern=True, multi=(False, "no")).probe == backend.FENTRY


@needs_btf
def test_fentry_policy_error_points_at_the_function(kernel):
    class Refusing:
        def choose(self, fn, slots, pattern=False):
            raise backend.NotPossible(f"{fn.name} cannot be traced with fentry/fexit: because")

    with pytest.raises(SpecError) as ei:
        resolve([parse("ip_send_skb(skb)")], kernel, backends=Refusing())
    assert ei.value.message == "ip_send_skb cannot be traced with fentry/fexit: because"
    assert (ei.value.pos, ei.value.length) == (0, len("ip_send_skb"))


@needs_btf
def test_kprobe_backend_keeps_values_as_before(kernel):
    """Without backends (and with --backend kprobe) nothing changes for register arguments."""
    a = resolve([parse("ip_send_skb(skb->len, skb)")], kernel)
    b = resolve([parse("ip_send_skb(skb->len, skb)")], kernel,
                backends=Fixed(backend.Choice(backend.KPROBE, False, "--backend kprobe")))
    assert a.funcs[0].entry == b.funcs[0].entry
    assert [(v.reg, v.kind) for v in b.funcs[0].entry] == [("ctx->si", SCALAR), ("ctx->si", DEREF)]
    assert a.funcs[0].probe == b.funcs[0].probe == KPROBE


def test_a_wildcard_leaves_out_what_ftrace_cannot_patch(monkeypatch):
    """A function a wildcard matches that ftrace cannot patch (notrace, init
    code) would fail to attach and fail the whole trace: it is left out."""
    btf = crafted()
    monkeypatch.setattr(features, "ftrace_functions", lambda: {"f"})
    b = backend.Backends(LiveKernel(btf), "auto")
    assert b.unattachable(FakeFn(btf, "f")) == ""
    assert b.unattachable(FakeFn(btf, "g")) == "not in available_filter_functions (notrace or init code)"
    monkeypatch.setattr(features, "ftrace_functions", lambda: None)  # unreadable: try them all
    assert b.unattachable(FakeFn(btf, "g")) == ""
