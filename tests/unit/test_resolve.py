"""resolve(): specs -> TracePlan against the running kernel's real vmlinux BTF, without root.

``Kernel(btf_path=...)`` reads types from a file and never touches kallsyms
(``kernel.live`` is False), so every function gets address 0 and nothing here
needs privileges.  The functions named exist with the same prototype in the
host's 6.18 and the VM test bed's 6.1 and 6.12 kernels.  Cases a kernel
cannot show (user pointers), or only some kernels have (a 12-byte struct in
two registers, a struct returned in memory, an empty struct argument), use a
BTF file made by the test writer; where the kernel has a function of that
kind, it is checked too.
"""

import os
import re

import pytest
from btfwriter import BTFWriter, abi_corners

from ksnoop.btf import Kind
from ksnoop.errors import SpecError
from ksnoop.kernel import callconv
from ksnoop.kernel.files import Kernel
from ksnoop.trace.codegen import Machine, generate
from ksnoop.trace.plan import DEREF, MEMORY, REGS, SCALAR, STRING
from ksnoop.trace.resolve import DEFAULT_LIMIT, STRING_LIMIT, find_member, resolve
from ksnoop.trace.spec import parse

MACHINE = Machine(self_tgid=1, ncpus=4)  # a stand-in: codegen takes machine facts as input

VMLINUX = "/sys/kernel/btf/vmlinux"
pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF")


@pytest.fixture(scope="module")
def kernel():
    # A kallsyms path that does not exist proves a --btf kernel never reads it.
    k = Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent/kallsyms")
    assert k.live is False
    return k


@pytest.fixture(scope="module")
def btf(kernel):
    return kernel.vmlinux


def plan(kernel, *texts, limit=DEFAULT_LIMIT):
    return resolve([parse(t) for t in texts], kernel, limit=limit)


def one(kernel, text, limit=DEFAULT_LIMIT):
    (fp,) = plan(kernel, text, limit=limit).funcs
    return fp


def value(kernel, text, name=None, limit=DEFAULT_LIMIT):
    fp = one(kernel, text, limit)
    vals = {v.name: v for v in fp.entry + fp.ret}
    return vals[name] if name else next(iter(vals.values()))


def error(kernel, text):
    with pytest.raises(SpecError) as ei:
        plan(kernel, text)
    e = ei.value
    return e.message, text[e.pos:e.pos + e.length]


def struct_id(btf, name):
    return btf.find(name, Kind.STRUCT)[0]


def offset_of(btf, struct, member):
    bit, _ = find_member(btf, struct_id(btf, struct), member)
    assert bit % 8 == 0
    return bit // 8


# ---------------------------------------------------------------- functions
def test_btf_file_kernel_has_no_addresses(kernel):
    fp = one(kernel, "ip_send_skb")
    assert (fp.name, fp.module, fp.addr, fp.index) == ("ip_send_skb", "", 0, 0)


def test_unknown_function_with_suggestion(kernel):
    msg, under = error(kernel, "ip_send_skbb(skb)")
    assert msg.startswith("ip_send_skbb: no such function in BTF (did you mean ip_send_skb")
    assert under == "ip_send_skbb"


def test_unknown_function_without_suggestion(kernel):
    assert error(kernel, "zzqqxx_nothing_like_it") == (
        "zzqqxx_nothing_like_it: no such function in BTF", "zzqqxx_nothing_like_it")


def test_duplicate_function(kernel):
    with pytest.raises(SpecError) as ei:
        resolve([parse("ip_send_skb(skb)"), parse("  ip_send_skb")], kernel)
    e = ei.value
    assert e.message == "ip_send_skb is traced twice; put all its values in one spec"
    assert (e.text, e.pos, e.length) == ("  ip_send_skb", 2, 11)


def test_several_functions_are_indexed_in_order(kernel):
    p = plan(kernel, "ip_send_skb", "vfs_read(count)", "do_sys_openat2(filename)")
    assert [(f.index, f.name) for f in p.funcs] == [(0, "ip_send_skb"), (1, "vfs_read"),
                                                    (2, "do_sys_openat2")]
    assert p.limit == DEFAULT_LIMIT and p.arch == os.uname().machine


# ---------------------------------------------------------------- arguments
def test_unknown_argument_lists_the_real_ones(kernel):
    assert error(kernel, "ip_send_skb(skb, sbk)") == (
        "ip_send_skb has no argument 'sbk' (arguments: net, skb)", "sbk")


def test_unknown_member_lists_members(kernel):
    msg, under = error(kernel, "ip_send_skb(skb->lenn)")
    assert msg.startswith("'struct sk_buff' has no member 'lenn' (members: ")
    assert " len," in msg and msg.endswith(", ...)")
    assert under == "lenn"


def test_arrow_on_a_non_pointer(kernel):
    assert error(kernel, "ip_send_skb(skb->len -> x)") == (
        "'->' needs a pointer to a struct or union, but skb->len is 'unsigned int'", "->")


def test_arrow_on_a_pointer_to_non_struct(kernel):
    assert error(kernel, "do_sys_openat2(filename->x)") == (
        "'->' needs a pointer to a struct or union, but filename is 'char *'", "->")


def test_dot_on_a_pointer(kernel):
    assert error(kernel, "ip_send_skb(skb . len)") == ("skb is a pointer: use '->'", ".")
    assert error(kernel, "ip_send_skb(skb->dev.name)") == (
        "skb->dev is a pointer: use '->'", ".")


def test_dot_on_a_scalar(kernel):
    assert error(kernel, "ip_send_skb(skb->len.x)") == (
        "'.' needs a struct or union, but skb->len is 'unsigned int'", ".")


def test_member_of_a_bitfield(kernel):
    assert error(kernel, "ip_send_skb(skb->pkt_type.x)") == (
        "skb->pkt_type is a bitfield: it has no members", "x")


def test_predicate_on_a_struct(kernel):
    assert error(kernel, "ip_send_skb(net->ipv4 == 1)") == (
        "net->ipv4 is 'struct netns_ipv4', not a number: it cannot be compared", "==")


def test_predicate_on_an_array(kernel):
    assert error(kernel, "ip_send_skb(skb->dev->name != 0)") == (
        "skb->dev->name is 'char [16]', not a number: it cannot be compared", "!=")


@pytest.mark.parametrize("text,msg,under", [
    ("vfs_read(count == -1)", "-1 is out of range for count ('size_t': 0..18446744073709551615)",
     "-1"),
    ("ip_send_skb(return == 1099511627776)",
     "1099511627776 is out of range for return ('int': -2147483648..2147483647)", "1099511627776"),
    ("ip_send_skb(return > 0x80000000)",
     "0x80000000 is out of range for return ('int': -2147483648..2147483647)", "0x80000000"),
    ("ip_send_skb(skb->len < -1)", "-1 is out of range for skb->len ('unsigned int': 0..4294967295)",
     "-1"),
    ("ip_send_skb(skb->len == 0x100000000)",
     "0x100000000 is out of range for skb->len ('unsigned int': 0..4294967295)", "0x100000000"),
    ("ip_send_skb(skb->pkt_type == 8)", "8 is out of range for skb->pkt_type ('__u8:3': 0..7)", "8"),
    ("vfs_read(count == 0x10000000000000000)",
     "0x10000000000000000 is out of range for count ('size_t': 0..18446744073709551615)",
     "0x10000000000000000"),
])
def test_literal_out_of_range(kernel, text, msg, under):
    assert error(kernel, text) == (msg, under)


@pytest.mark.parametrize("text", [
    "vfs_read(count == 18446744073709551615)",
    "ip_send_skb(return == -2147483648)",
    "ip_send_skb(return == 2147483647)",
    "ip_send_skb(skb->len == 0xffffffff)",
    "ip_send_skb(skb->pkt_type == 7)",
])
def test_literal_at_the_edge_of_range(kernel, text):
    assert one(kernel, text).entry + one(kernel, text).ret


def test_return_on_a_void_function(kernel):
    assert error(kernel, "kfree_skb_partial(skb, return)") == (
        "kfree_skb_partial returns void: there is no return value", "return")


def test_seventh_argument_is_read_from_the_stack(kernel, btf):
    """Past the six argument registers: at sp + 8 (sp points at the return address).
    _ipmr_fill_mroute(mrt, skb, portid, seq, c, cmd, int flags): flags is the 7th."""
    fn = btf[btf.find("_ipmr_fill_mroute", Kind.FUNC)[0]]
    params = btf[fn.type].params
    assert len(params) == 7
    seventh = params[6].name
    v = value(kernel, f"_ipmr_fill_mroute({seventh})")
    assert (v.kind, v.reg, v.hops, v.read_off, v.size) == (SCALAR, "ctx->sp", (), 8, 4)
    fp = one(kernel, "_ipmr_fill_mroute")
    assert [v.name for v in fp.entry] == [p.name for p in params]
    assert [v.reg for v in fp.entry] == ["ctx->di", "ctx->si", "ctx->dx", "ctx->cx", "ctx->r8",
                                         "ctx->r9", "ctx->sp"]
    assert fp.notes == ()


# ------------------------------------------------------------- default spec
def test_default_spec_is_every_register_argument_and_return(kernel):
    fp = one(kernel, "ip_send_skb")
    assert [(v.name, v.kind, v.reg, v.at_return) for v in fp.entry] == [
        ("net", DEREF, "ctx->di", False), ("skb", DEREF, "ctx->si", False)]
    assert [(v.name, v.kind, v.reg, v.ctype, v.at_return) for v in fp.ret] == [
        ("return", SCALAR, "ctx->ax", "s32", True)]
    assert fp.stash is False and fp.notes == ()


def test_default_spec_of_a_void_function_has_no_return(kernel):
    fp = one(kernel, "kfree_skb_partial")
    assert [v.name for v in fp.entry] == ["skb", "head_stolen"]
    assert fp.ret == ()


# ---------------------------------------------------------------- stash mode
@pytest.mark.parametrize("text,stash", [
    ("ip_send_skb", False),  # defaults: both sides, no predicate
    ("ip_send_skb(skb, return)", False),  # both sides, no predicate
    ("ip_send_skb(skb->len > 0)", False),  # predicate, entry only
    ("ip_send_skb(return < 0)", False),  # predicate, return only
    ("ip_send_skb(skb->len > 0, skb)", False),  # predicates, entry only
    ("ip_send_skb(skb, return < 0)", True),
    ("ip_send_skb(skb->len > 0, return)", True),
    ("ip_send_skb(skb->len > 0, return != 0)", True),
])
def test_stash_exactly_when_both_sides_and_a_predicate(kernel, text, stash):
    fp = one(kernel, text)
    assert fp.stash is stash


# -------------------------------------------------------------- signedness
@pytest.mark.parametrize("text,ctype,const", [
    ("ip_send_skb(return < 0)", "s32", "(s32)(0LL)"),
    ("ip_send_skb(skb->len > 100)", "u32", "(u32)100ULL"),
    ("vfs_read(count >= 4096)", "u64", "(u64)4096ULL"),
    ("vfs_read(return < -1)", "s64", "(s64)(-1LL)"),
    ("do_sys_openat2(dfd == -100)", "s32", "(s32)(-100LL)"),
    ("tcp_sendmsg(sk->__sk_common.skc_family == 2)", "u16", "(u16)2ULL"),
    ("ip_send_skb(skb != 0)", "u64", "(u64)0ULL"),
])
def test_predicates_compare_as_the_c_type(kernel, text, ctype, const):
    p = plan(kernel, text)
    (v,) = [v for v in p.funcs[0].entry + p.funcs[0].ret if v.preds]
    assert v.ctype == ctype
    c, _ = generate(p, MACHINE)
    assert f"{ctype} v = ({ctype})" in c
    op = v.preds[0].op
    assert f"if (!(v {op} {const}))" in c


def test_several_predicates_on_one_value_are_merged(kernel):
    fp = one(kernel, "ip_send_skb(skb->len > 10, skb->len < 100, skb)")
    (lenv, skb) = fp.entry
    assert lenv.name == "skb->len" and [(p.op, p.value) for p in lenv.preds] == [(">", 10),
                                                                                 ("<", 100)]
    assert skb.preds == ()


def _tests_in_order(c_text, fn):
    """The predicate comparisons of program ``fn``, in the order they appear."""
    body = c_text.split(f"int {fn}(struct pt_regs *ctx)", 1)[1].split("\n}\n", 1)[0]
    return re.findall(r"if \(!\(v (\S+) \((\w+)\)\(?(-?\d+)", body)


def test_predicates_run_in_the_order_written(kernel):
    """f(a > 1, b == 2, a < 9): a > 1, then b == 2, then a < 9, though a is one value."""
    p = plan(kernel, "ip_send_skb(skb->len > 1, skb->data_len == 2, skb->len < 9)")
    c, _ = generate(p, MACHINE)
    assert _tests_in_order(c, "ksnoop_entry_0") == [(">", "u32", "1"), ("==", "u32", "2"),
                                                    ("<", "u32", "9")]
    # which value each test reads: the first and third compare the same slot
    body = c.split("int ksnoop_entry_0", 1)[1]
    operands = re.findall(r"u32 v = \(u32\)l(\d+);", body)
    assert operands == ["0", "1", "0"]


def test_rejecting_predicates_run_before_the_event_is_found(kernel):
    """A call that a predicate on a number rejects costs no event lookup: the
    leading numeric predicates test stack variables, and what they read is
    stored into the event after the lookup (read once: the value shown is the
    value that passed).  A string condition needs the event's buffer."""
    p = plan(kernel, "ip_send_skb(skb->len > 1, skb->data_len == 2, skb->dev->name == \"lo\")")
    c, _ = generate(p, MACHINE)
    body = c.split("int ksnoop_entry_0", 1)[1].split("\n}\n", 1)[0]
    lookup = body.index("ksnoop_scratch.lookup")
    tests = [m.start() for m in re.finditer(r"if \(!\(v ", body)]
    assert len(tests) == 2 and max(tests) < lookup
    assert body.index("*(u64 *)e->v0_data = l0;") > lookup
    assert body.index("*(u64 *)e->v1_data = l1;") > lookup
    assert body.count("bpf_probe_read_kernel(&l0, 4") == 1  # read once
    assert body.index('e->v2_data[0] == 108') > lookup  # the string is tested in the event


def test_predicates_in_order_on_both_sides_of_a_stash(kernel):
    p = plan(kernel, "vfs_read(count < 100, return != 0, file != 0, count > 1, return > -5)")
    assert p.funcs[0].stash
    c, _ = generate(p, MACHINE)
    assert _tests_in_order(c, "ksnoop_entry_0") == [("<", "u64", "100"), ("!=", "u64", "0"),
                                                    (">", "u64", "1")]
    assert _tests_in_order(c, "ksnoop_return_0") == [("!=", "s64", "0"), (">", "s64", "-5")]


_READ = re.compile(r"bpf_probe_read_kernel\([^;]*?\(void \*\)\((?:p|e->v\d+_ptr) \+ (\d+)\)\)")


@pytest.mark.parametrize("text", [
    "ip_send_skb(skb->len > 10, skb->dev->ifindex == 1, skb)",  # entry events
    "ip_send_skb(skb->len > 10, skb->dev->ifindex == 1, skb, return < 0)",  # stash
    "ip_send_skb(skb->dev->ifindex == 1, skb->len > 10, skb->len < 99, skb->dev->ifindex)",
])
def test_a_predicated_value_is_read_once(kernel, btf, text):
    """Each offset is read once: the predicate tests the value captured into the event."""
    c, _ = generate(plan(kernel, text), MACHINE)
    offs = [int(o) for o in _READ.findall(c)]
    dev = offset_of(btf, "sk_buff", "dev")
    ifindex = offset_of(btf, "net_device", "ifindex")
    length = offset_of(btf, "sk_buff", "len")
    assert offs.count(dev) == 1 and offs.count(ifindex) == 1 and offs.count(length) == 1
    # and the value shown is the one tested: each comparison reads the event's
    # slot, or the stack variable that is then stored into that slot
    tested = re.findall(r"u32 v = \(u32\)(?:\*\(u64 \*\)e->v(\d+)_data|l(\d+));", c)
    assert tested and "raw" not in c
    for _, var in tested:
        assert not var or f"*(u64 *)e->v{var}_data = l{var};" in c


# ------------------------------------------------------------- value kinds
def test_member_scalar(kernel, btf):
    v = value(kernel, "ip_send_skb(skb->len)")
    assert (v.kind, v.reg, v.hops, v.size, v.ctype) == (SCALAR, "ctx->si", (), 4, "u32")
    assert v.read_off == offset_of(btf, "sk_buff", "len")


def test_multi_hop_member(kernel, btf):
    v = value(kernel, "ip_send_skb(skb->sk->__sk_common.skc_family)")
    assert v.kind == SCALAR and v.size == 2 and v.ctype == "u16"
    assert v.hops == (offset_of(btf, "sk_buff", "sk"),)
    assert v.read_off == offset_of(btf, "sock_common", "skc_family")  # __sk_common is at 0
    assert offset_of(btf, "sock", "__sk_common") == 0


def test_members_through_anonymous_unions(kernel, btf):
    """skb->dev and skb->len live in anonymous unions/structs of sk_buff."""
    skb = btf[struct_id(btf, "sk_buff")]
    assert "dev" not in [m.name for m in skb.members]
    dev = value(kernel, "ip_send_skb(skb->dev)")
    assert dev.kind == DEREF and dev.hops == (offset_of(btf, "sk_buff", "dev"),)
    assert dev.read_off == 0 and offset_of(btf, "sk_buff", "dev") == 16
    length = value(kernel, "ip_send_skb(skb->len)")
    assert length.read_off == offset_of(btf, "sk_buff", "len")


def test_bitfields_match_the_kernels_offset_markers(kernel, btf):
    """sk_buff marks its bitfield bytes with zero-size arrays (__pkt_type_offset[0])."""
    for field, marker, bits in (("pkt_type", "__pkt_type_offset", 3),
                                ("cloned", "__cloned_offset", 1)):
        v = value(kernel, f"ip_send_skb(skb->{field})")
        assert v.kind == SCALAR and v.hops == ()
        assert v.read_off == offset_of(btf, "sk_buff", marker)
        assert v.bitfield.width == bits and v.size == 1 and not v.bitfield.signed
    # The two are in different bytes, pkt_type in the low bits of its byte.
    bf = value(kernel, "ip_send_skb(skb->pkt_type)").bitfield
    assert (bf.offset, bf.shift, bf.width) == (0, 0, 3)


def test_bitfield_predicate_reads_shifts_and_masks(kernel):
    p = plan(kernel, "ip_send_skb(skb->pkt_type == 1)")
    c, _ = generate(p, MACHINE)
    # the predicate tests the extracted field, and the event shows what it tested
    assert "l0 = (((u64)(l0) << 61) >> 61);" in c
    assert c.index("l0 = (((u64)(l0) << 61) >> 61);") < c.index("u64 v = (u64)l0;")
    assert "*(u64 *)e->v0_data = l0;" in c
    c, _ = generate(plan(kernel, "ip_send_skb(skb->pkt_type)"), MACHINE)
    assert "*(u64 *)e->v0_data = (((u64)(*(u64 *)e->v0_data) << 61) >> 61);" in c


def test_char_pointer_is_a_string(kernel):
    v = value(kernel, "do_sys_openat2(filename)")
    assert (v.kind, v.reg, v.read_off, v.size) == (STRING, "ctx->si", 0, STRING_LIMIT)
    assert v.size == STRING_LIMIT
    assert value(kernel, "do_sys_openat2(filename)", limit=64).size == 64


def test_member_char_pointer_is_a_string(kernel, btf):
    v = value(kernel, "vfs_read(file->f_path.dentry->d_name.name)")
    assert v.kind == STRING
    f_path = offset_of(btf, "file", "f_path")
    dentry = offset_of(btf, "path", "dentry")
    d_name = offset_of(btf, "dentry", "d_name")
    qname = find_member(btf, struct_id(btf, "qstr"), "name")[0] // 8
    assert v.hops == (f_path + dentry, d_name + qname)
    assert v.read_off == 0


def test_struct_pointer_is_a_deref_capped_by_limit(kernel, btf):
    net_size = btf[struct_id(btf, "net")].size
    skb_size = btf[struct_id(btf, "sk_buff")].size
    assert net_size > DEFAULT_LIMIT > skb_size
    fp = one(kernel, "ip_send_skb(net, skb)")
    net, skb = fp.entry
    assert (net.kind, net.size, net.full_size) == (DEREF, DEFAULT_LIMIT, net_size)
    assert (skb.kind, skb.size, skb.full_size) == (DEREF, skb_size, skb_size)
    assert btf[net.show_type].name == "net"
    fp = one(kernel, "ip_send_skb(net, skb)", limit=64)
    assert [(v.size, v.full_size) for v in fp.entry] == [(64, net_size), (64, skb_size)]


def test_array_member_is_memory(kernel, btf):
    v = value(kernel, "ip_send_skb(skb->dev->name)")
    assert (v.kind, v.size, v.full_size) == (MEMORY, 16, 16)
    assert v.hops == (offset_of(btf, "sk_buff", "dev"),)
    assert v.read_off == offset_of(btf, "net_device", "name")


def test_struct_member_is_memory(kernel, btf):
    v = value(kernel, "ip_send_skb(net->ipv4)", limit=64)
    full = btf.size_of(find_member(btf, struct_id(btf, "net"), "ipv4")[1].type)
    assert (v.kind, v.size, v.full_size) == (MEMORY, 64, full)


def test_return_pointer_deref(kernel):
    v = value(kernel, "alloc_skb_with_frags(return)")
    assert (v.kind, v.reg, v.at_return) == (DEREF, "ctx->ax", True)


@pytest.fixture(scope="module")
def corners(tmp_path_factory):
    """A kernel whose BTF is tests/unit/btfwriter.py's abi_corners(): 6.18's
    prototypes of ZSTD_CCtx_setFParams, ZSTD_adjustCParams, __io_run_local_work."""
    d = tmp_path_factory.mktemp("corners")
    (d / "vmlinux").write_bytes(abi_corners())
    return Kernel(btf_path=str(d / "vmlinux"), sys_btf=str(d), kallsyms_path="/nonexistent")


def test_struct_by_value_in_two_registers(kernel, corners):
    """A 12-byte struct takes two registers, read as 16 bytes (crafted: only 6.18 has one)."""
    fp = one(corners, "ZSTD_CCtx_setFParams")
    cctx, fparams = fp.entry
    assert fparams.kind == REGS and fparams.regs == ("ctx->si", "ctx->dx")
    assert (fparams.size, fparams.full_size) == (16, 12)
    assert error(corners, "ZSTD_CCtx_setFParams(fparams == 1)")[0].endswith("cannot be compared")
    assert error(corners, "ZSTD_CCtx_setFParams(fparams.contentSizeFlag)") == (
        "fparams is passed by value in registers; '.' on it is not supported", ".")
    # every kernel: timestamp_truncate(struct timespec64 t, struct inode *inode)
    t, inode = one(kernel, "timestamp_truncate").entry
    assert (t.kind, t.regs, t.size, t.full_size) == (REGS, ("ctx->di", "ctx->si"), 16, 16)
    assert (inode.kind, inode.reg) == (DEREF, "ctx->dx")
    assert error(kernel, "timestamp_truncate(t.tv_sec)") == (
        "t is passed by value in registers; '.' on it is not supported", ".")


def test_struct_of_16_bytes_returned_in_two_registers(kernel, btf):
    v = value(kernel, "current_time(return)")
    assert btf.size_of(v.type_id) == 16
    assert v.kind == REGS and v.regs == ("ctx->ax", "ctx->dx") and v.size == 16


def test_struct_returned_in_memory(corners):
    """ZSTD_adjustCParams returns a 28-byte struct: through a hidden pointer in rdi."""
    assert error(corners, "ZSTD_adjustCParams(return)") == (
        "the return value of ZSTD_adjustCParams is not traceable (a struct of more than 16 "
        "bytes, returned in memory)", "return")
    fp = one(corners, "ZSTD_adjustCParams")
    assert fp.ret == ()
    # cPar (28 bytes) is on the stack; rdi holds the return pointer, so srcSize is in rsi.
    assert [(v.name, v.reg) for v in fp.entry] == [("cPar", "ctx->sp"), ("srcSize", "ctx->si"),
                                                   ("dictSize", "ctx->dx")]
    assert "return: a struct of more than 16 bytes, returned in memory" in fp.notes


def _returns_big_struct(btf):
    """The kernel's functions that return a struct of more than 16 bytes and
    take at most five integers and pointers, and structs of more than 16 bytes
    (each kernel has some: ZSTD_adjustCParams in 6.18, build_open_how in 6.1
    and 6.12): {name: the register or stack each argument is read from}."""
    found = {}
    for name, fid in sorted(btf.names(Kind.FUNC)):
        proto = btf[btf[fid].type]
        rt = btf[btf.resolve(proto.type)] if proto.type else None
        if rt is None or rt.kind != Kind.STRUCT or btf.size_of(proto.type) <= 16:
            continue
        regs = iter(("ctx->si", "ctx->dx", "ctx->cx", "ctx->r8", "ctx->r9"))  # rdi: the result
        where = []
        for p in proto.params:
            t = btf[btf.resolve(p.type)] if p.type else None
            if t is not None and t.kind in (Kind.INT, Kind.PTR, Kind.ENUM) and t.size <= 8:
                where.append((p.name, next(regs, None)))
            elif t is not None and t.kind == Kind.STRUCT and btf.size_of(p.type) > 16:
                where.append((p.name, "ctx->sp"))
            else:
                break
        else:
            if where and None not in dict(where).values():
                found[name] = where
    return found


def test_this_kernels_struct_returns_are_in_memory(kernel, btf):
    """The same on the running kernel's own functions: the return value is not
    traceable and the arguments start at the second register."""
    found = _returns_big_struct(btf)
    assert found, "no function of this kernel returns a struct of more than 16 bytes"
    for name, where in sorted(found.items())[:20]:
        assert error(kernel, f"{name}(return)")[0] == (
            f"the return value of {name} is not traceable (a struct of more than 16 bytes, "
            "returned in memory)"), name
        fp = one(kernel, name)
        assert fp.ret == () and "return: a struct of more than 16 bytes, returned in memory" in fp.notes
        assert [(v.name, v.reg) for v in fp.entry] == where, name


def test_empty_struct_argument_takes_no_register(corners):
    """io_tw_token_t is an empty struct: GCC passes it in nothing."""
    btf = corners.vmlinux
    fn = btf[btf.find("__io_run_local_work", Kind.FUNC)[0]]
    params = btf[fn.type].params
    assert btf.size_of(params[1].type) == 0
    fp = one(corners, "__io_run_local_work")
    assert [(v.name, v.reg) for v in fp.entry] == [
        (params[0].name, "ctx->di"), (params[2].name, "ctx->si"), (params[3].name, "ctx->dx")]
    slots = callconv.assign(btf, btf[fn.type])
    assert not slots[1].traceable


def test_value_order_is_the_spec_order(kernel):
    fp = one(kernel, "ip_send_skb(return, skb->len, net, skb->dev->name)")
    assert [v.name for v in fp.entry] == ["skb->len", "net", "skb->dev->name"]
    assert [v.name for v in fp.ret] == ["return"]


def test_codegen_reads_use_the_plan_offsets(kernel, btf):
    p = plan(kernel, "ip_send_skb(skb->sk->__sk_common.skc_family)")
    c, probes = generate(p, MACHINE)
    sk = offset_of(btf, "sk_buff", "sk")
    assert re.search(rf"err = bpf_probe_read_kernel\(&p, sizeof\(p\), \(void \*\)\(p \+ {sk}\)\)",
                     c)
    assert [(fp.name, e, r) for fp, e, r in probes] == [("ip_send_skb", "ksnoop_entry_0", None)]


# ------------------------------------------------------- user pointers (fake)
@pytest.fixture
def fake_kernel(tmp_path):
    w = BTFWriter()
    char = w.int("char", 1, signed=True)
    long = w.int("long int", 8, signed=True)
    user_char = w.type_tag("user", char)
    uptr = w.ptr(user_char)
    kptr = w.ptr(char)
    proto = w.func_proto(long, [("ubuf", uptr), ("kbuf", kptr), ("n", long)])
    w.func("fake_read", proto)
    path = tmp_path / "fake.btf"
    path.write_bytes(w.build())
    return Kernel(btf_path=str(path), sys_btf=str(tmp_path), kallsyms_path="/nonexistent")


def test_user_pointer_reads_user_memory(fake_kernel):
    p = resolve([parse("fake_read(ubuf, kbuf, n > 0)")], fake_kernel)
    ubuf, kbuf, n = p.funcs[0].entry
    assert (ubuf.kind, ubuf.user) == (STRING, True)
    assert (kbuf.kind, kbuf.user) == (STRING, False)
    c, _ = generate(p, MACHINE)
    assert "bpf_probe_read_user_str(e->v0_data" in c
    assert "bpf_probe_read_kernel_str(e->v1_data" in c
    assert "(s64)(0LL)" in c
