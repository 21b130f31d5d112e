"""The fast consumer gives exactly the old output.

Golden equivalence: for many event layouts (functions matched by wildcards
against the running kernel's BTF, hand-written specs with members, bitfields,
char arrays, embedded structs, stash and tracepoint events, and plans over
crafted BTF), many generated events each (scalars of every width and sign,
enums, bools, pointers, strings of every length, NULL and unreadable
pointers, failed reads, truncated captures, odd task names, timestamps in
the same and in new seconds) are formatted by the reference path,
``output.Formatter(fmt).event(events.Decoder(plan).decode(data))``, and by
``fastout.FastFormatter(plan, fmt).format(buf, offset, size)`` (with the event
inside a larger buffer, as in the mapped ring buffer), for text, line and
JSON, and the two must be equal byte for byte.  The pieces it is made of are
checked the same way against their references: ``jsonout.compile_json``
against ``Renderer(..., "json")``, the text renderer's indented compiled form
against the renderer's text with its lines indented, the tracer's batched
writes against one write per event, and ``ringbuf.RingReader`` on a ring laid
out by hand.
"""

import io
import json
import mmap
import os
import random
import re
import struct

import pytest
from btfwriter import BTFWriter, abi_corners

from ksnoop.btf import BTF, Kind
from ksnoop.errors import KsnoopError
from ksnoop.render import COMPACT, ZERO, Renderer
from ksnoop.render.escape import json_dumps
from ksnoop.render.text import TreeText
from ksnoop.render.textgen import compile_text
from ksnoop.trace.events import Decoder
from ksnoop.trace.fastout import FastFormatter
from ksnoop.trace.jsonout import _quote, compile_json
from ksnoop.trace.output import Formatter
from ksnoop.trace.plan import DEREF, MEMORY, REGS, SCALAR, STRING, FuncPlan, TracePlan, Value
from ksnoop.trace.wire import CALL, HEADER, HEADER_SIZE, layouts_for

VMLINUX = "/sys/kernel/btf/vmlinux"
FORMATS = ("text", "line", "json")
SEED = int(os.environ.get("KSNOOP_EQUIV_SEED", "7"))

# (spec, -s limit): wildcards give hundreds of argument types; the rest name
# members (bitfields, char arrays, embedded structs), stash and tracepoints.
SPECS = [
    (["ip_*"], 512),
    (["sock_*"], 64),
    (["ktime_*", "vfs_*"], 2048),
    (["ip_send_skb(net, skb->len, skb->dev->name, skb->pkt_type, skb->cloned, skb->cb, "
      "skb->head_frag, return < 0)", "do_sys_openat2(dfd, filename, how, how->flags, return)",
      "current_time(return)", "timestamp_truncate(t, inode)",
      "tcp_sendmsg(sk->__sk_common.skc_state, sk->__sk_common, sk, size)"], 2048),
    (["ip_send_skb(skb, skb->dev->name)", "tp:sys_enter(id, regs->di, regs)"], 16),
]
MAX_LAYOUTS = 40  # per plan, spread over the plan (keeps the test quick)


# ------------------------------------------------------------------ events
def kernelish(rng, n):
    """Bytes that look like kernel memory: zeros, pointers, small numbers, text."""
    out = bytearray()
    while len(out) < n:
        r = rng.random()
        if r < 0.35:
            out += bytes(8)
        elif r < 0.6:
            out += struct.pack("<Q", 0xFFFF888000000000 + (rng.getrandbits(28) << 6))
        elif r < 0.85:
            out += struct.pack("<ii", rng.randrange(-3, 1000), rng.choice((0, 1, -1, 1 << 30)))
        elif r < 0.95:
            out += rng.choice((b"eth0\0\0\0\0", b"lo\0\xff\xfe\x1b[2J", b'a"b\\c\n\t%', b"\xc3\xa9t\xe9\0zz"))
        else:
            out += rng.randbytes(8)
    return out[:n]


COMMS = [b"curl", b"swapper/0", b"\x1b]0;x\x07\xe9\xff", b"a" * 16, b"%s%d{x}\\", b"", b"k\0junk"]
STATUS_FAIL = (-14, -2, -9999)


def fill_slot(rng, buf, s):
    v = s.value
    if s.data >= 0 and s.size:
        buf[s.data:s.data + s.size] = kernelish(rng, s.size)
    if v.kind == SCALAR and s.status < 0:
        struct.pack_into("<Q", buf, s.ptr, rng.choice(
            (0, 1, 84, 2**31 - 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, 2**64 - 22, rng.getrandbits(64))))
    elif s.status >= 0 and v.kind in (SCALAR, MEMORY):
        struct.pack_into("<i", buf, s.status, rng.choice((0, 0, 0, 0) + STATUS_FAIL))
    elif v.kind in (DEREF, STRING):
        ptr = rng.choice((0, 0xFFFF888000123400, 0x7FFE0000))
        if v.kind == STRING:
            length = rng.choice((0, 1, 5, s.size - 1, s.size))
            text = kernelish(rng, length).replace(b"\0", b"x")
            buf[s.data:s.data + length] = text
            if length < s.size:
                buf[s.data + length] = 0
            status = rng.choice((min(length + 1, s.size), min(length + 1, s.size), 0)
                                + STATUS_FAIL)
        else:
            status = rng.choice((0, 0, 0) + STATUS_FAIL)
        struct.pack_into("<Qi", buf, s.ptr, ptr, status)


def make_events(rng, ev, count, second):
    out = []
    ts = second * 1_000_000_000 + rng.randrange(10**9)
    for _ in range(count):
        ts += rng.choice((1, 999, 10**6, 10**9, 3 * 10**9 + 17))  # same second, or a new one
        buf = bytearray(ev.size)
        HEADER.pack_into(buf, 0, ts, rng.choice((1, 4242, 2**31 + 5)), rng.randrange(1 << 22),
                         rng.randrange(512), ev.func, ev.kind, 0, rng.choice(COMMS))
        for s in ev.slots:
            fill_slot(rng, buf, s)
        out.append(bytes(buf))
    return out


# ------------------------------------------------------------------ plans
@pytest.fixture(scope="module")
def kernel():
    if not os.access(VMLINUX, os.R_OK):
        pytest.skip(f"{VMLINUX} is not readable (kernel without BTF?)")
    from ksnoop.kernel.files import Kernel

    return Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent")


def vmlinux_plans(kernel):
    from ksnoop.trace.resolve import resolve
    from ksnoop.trace.spec import parse

    return [resolve([parse(s) for s in specs], kernel, limit=limit) for specs, limit in SPECS]


def crafted_plan():
    """A plan over crafted BTF: names with %, braces, quotes and a newline, an enum
    with a signed and a duplicate value, every scalar width and sign, bools."""
    w = BTFWriter()
    s32 = w.int("int", 4, signed=True)
    u8 = w.int("unsigned char", 1)
    s16 = w.int("short int", 2, signed=True)
    u64 = w.int("long long unsigned int", 8)
    boo = w.int("_Bool", 1, bool=True)
    ch = w.int("char", 1, char=True)
    odd = w.int("__int128", 16, signed=True)
    en = w.enum("e%d{x}", [("A'\"%s", -1), ("B{}", 7), ("C\nD", 3), ("B2", 7)], size=4, signed=True)
    en8 = w.enum("small", [("ONE", 1), ("BIG", 255), ("MINUS", -1)], size=1)
    dbl = w.float("double", 8)
    arr = w.array(ch, 6)
    zero = w.array(u8, 0)
    inner = w.struct("in%ner", 8, [("x", s32, 0), ("", w.union("", 4, [("y", u8, 0), ("x", s16, 0)]), 32)])
    st = w.struct("odd{%}", 48, [("a", s32, 0), ("f", u8, 32, 3), ("g", en, 35, 4), ("b", boo, 40),
                                 ("z", zero, 48), ("name", arr, 48), ("in", inner, 128),
                                 ("big", odd, 256)])
    pst = w.ptr(st)
    pch = w.ptr(ch)
    btf = BTF(w.build(), name="crafted", use_cache=False)
    types = [("s32", s32, 4), ("u8", u8, 1), ("s16", s16, 2), ("u64", u64, 8), ("bool", boo, 1),
             ("en", en, 4), ("en8", en8, 1), ("odd", odd, 16), ("ptr", pst, 8),
             ("dbl", dbl, 8)]  # a register that no inline recipe covers
    entry = [Value(n, False, SCALAR, t, t, "ctx->di", size=8, full_size=size)
             for n, t, size in types if size <= 8]
    entry += [Value("p%s", False, DEREF, pst, st, "ctx->si", read_off=0, size=48, full_size=48),
              Value("cut", False, DEREF, pst, st, "ctx->si", read_off=0, size=20, full_size=48),
              Value("s", False, STRING, pch, ch, "ctx->dx", read_off=0, size=8, full_size=8),
              Value("m", False, MEMORY, st, st, "ctx->si", read_off=0, size=48, full_size=48),
              Value("mem{}", False, SCALAR, en, en, "ctx->si", read_off=4, size=8, full_size=4),
              Value("r", False, REGS, inner, inner, "", regs=("ctx->di",), size=8, full_size=8),
              Value("a", False, SCALAR, s32, s32, "ctx->cx", size=8, full_size=4)]  # twice "a"
    ret = [Value("return", True, SCALAR, en8, en8, "ctx->ax", size=8, full_size=1)]
    fps = (FuncPlan(0, "f%d{x}\x1b\u202e", "", 0, btf, entry=tuple(entry), ret=tuple(ret)),
           FuncPlan(1, "g", "", 0, btf, entry=tuple(entry[:3]), ret=tuple(ret), stash=True),
           FuncPlan(2, "h", "", 0, btf))
    return TracePlan(fps, 48, "x86_64")


def layouts(plan):
    out = [(fp, ev) for fp in plan.funcs for ev in layouts_for(fp)]
    step = max(1, len(out) // MAX_LAYOUTS)
    return out[::step]


def check_plan(plan, rng, count, coverage):
    dec = Decoder(plan)
    refs = {f: Formatter(f) for f in FORMATS}
    fasts = {f: FastFormatter(plan, f) for f in FORMATS}
    n = 0
    for fp, ev in layouts(plan):
        for f in FORMATS:
            # compiled, not the reference path it falls back to
            assert hasattr(fasts[f].layout_fn((ev.func, ev.kind)), "source"), (fp.name, ev.kind, f)
        coverage.add(("call",) if ev.kind == CALL else ("layout",))
        for s in ev.slots:
            v = s.value
            t = fp.btf[fp.btf.resolve(v.show_type)]
            coverage.add((v.kind, t.kind.name, s.status >= 0, v.size < v.full_size,
                          v.bitfield is not None))
        for data in make_events(rng, ev, count, rng.randrange(1, 10**6)):
            e = dec.decode(data)
            pad = rng.randrange(1, 64)
            buf = b"\xa5" * pad + data + b"\x5a" * 7
            for f in FORMATS:
                want = refs[f].event(e)
                got = fasts[f].format(buf, pad, len(data))
                assert got == want, (fp.name, ev.kind, f, data.hex())
            n += 1
    return n


def test_fast_consumer_equals_reference_on_kernel_layouts(kernel, tmp_path):
    from ksnoop.kernel.files import Kernel
    from ksnoop.trace.resolve import resolve
    from ksnoop.trace.spec import parse

    rng = random.Random(SEED)
    coverage = set()
    total = sum(check_plan(plan, rng, 4, coverage) for plan in vmlinux_plans(kernel))
    # a 12-byte struct in two registers: 6.18's ZSTD_CCtx_setFParams, which 6.1 and
    # 6.12 lack, in a crafted BTF (btfwriter.abi_corners)
    (tmp_path / "vmlinux").write_bytes(abi_corners())
    corners = Kernel(btf_path=str(tmp_path / "vmlinux"), sys_btf=str(tmp_path), kallsyms_path="/nonexistent")
    total += check_plan(resolve([parse("ZSTD_CCtx_setFParams(fparams)")], corners), rng, 4, coverage)
    assert total > 500
    kinds = {c[:2] for c in coverage if len(c) > 2}
    for want in [(SCALAR, "INT"), (SCALAR, "ENUM"), (SCALAR, "PTR"), (DEREF, "STRUCT"),
                 (DEREF, "INT"), (STRING, "INT"), (MEMORY, "ARRAY"), (MEMORY, "STRUCT"),
                 (REGS, "STRUCT")]:
        assert want in kinds, want
    assert ("call",) in coverage
    assert any(c[0] == DEREF and c[3] for c in coverage if len(c) > 2)  # truncated captures
    assert any(c[0] == SCALAR and c[2] for c in coverage if len(c) > 2)  # read from memory
    assert any(c[4] for c in coverage if len(c) > 2)  # bitfields


def test_fast_consumer_equals_reference_on_crafted_btf():
    plan = crafted_plan()
    rng = random.Random(SEED + 1)
    n_layouts = sum(len(layouts_for(fp)) for fp in plan.funcs)
    assert n_layouts == 4 and check_plan(plan, rng, 300, set()) == 300 * n_layouts


def test_events_in_a_mapped_buffer_and_bad_events(kernel):
    """A buffer that is an mmap (the ring buffer), and the reference's errors."""
    plan = vmlinux_plans(kernel)[3]
    fp = plan.funcs[0]
    (ev,) = layouts_for(fp)
    data = make_events(random.Random(SEED), ev, 1, 5)[0]
    m = mmap.mmap(-1, 4096)
    m[100:100 + len(data)] = data
    dec = Decoder(plan)
    for f in FORMATS:
        ff = FastFormatter(plan, f)
        assert ff.format(m, 100, len(data)) == Formatter(f).event(dec.decode(data))
        for bad in (data[:10], data[:HEADER_SIZE + 5], _with_key(data, 99, 1)):
            with pytest.raises(KsnoopError) as want:
                dec.decode(bad)
            with pytest.raises(KsnoopError) as got:
                ff.format(b"#" + bad, 1, len(bad))
            assert str(got.value) == str(want.value)
    m.close()


def _with_key(data, func, kind):
    b = bytearray(data)
    HEADER.pack_into(b, 0, *HEADER.unpack_from(data)[:4], func, kind, 0, b"x")
    return bytes(b)


# ------------------------------------------------------------------ JSON
def test_quote_is_json_dumps_for_strings():
    rng = random.Random(SEED)
    samples = ["", "plain", '"\\/\b\f\n\r\t', "\x00\x1b\x7f\x80\x9f\xe9\u2028\u202e\ud800\udfff",
               "\U0001f600x", "\\xff"] + [
        "".join(chr(rng.choice((rng.randrange(0x20), rng.randrange(0x80), rng.randrange(0x110000))))
                for _ in range(rng.randrange(12))) for _ in range(2000)]
    for s in samples:
        assert _quote(s) == json_dumps(s), repr(s)


def crafted_types():
    """Types that exercise to_python's rules: merged anonymous members, names
    repeated (the first place, the last value), a member named __truncated__,
    bitfields of every kind, floats, odd ints, nested and zero-length arrays."""
    w = BTFWriter()
    s32 = w.int("int", 4, signed=True)
    u16 = w.int("unsigned short", 2)
    u64 = w.int("u64", 8)
    boo = w.int("_Bool", 1, bool=True)
    ch = w.int("char", 1, char=True)
    i128 = w.int("__int128", 16, signed=True)
    f32, f64 = w.float("float", 4), w.float("double", 8)
    en = w.enum("e", [("NEG", -2), ("SEVEN", 7), ("SEV%EN", 7)], size=4, signed=True)
    en64 = w.enum64("e64", [("HUGE", 1 << 40)], size=8)
    fwd = w.fwd("opaque")
    anon = w.struct("", 8, [("a", s32, 0), ("dup", s32, 32)])
    anon_u = w.union("", 4, [("u1", u16, 0), ("a", s32, 0)])
    pair = w.struct("pair", 4, [("lo", u16, 0), ("hi", u16, 16)])
    grid = w.array(w.array(u16, 3), 2)
    pairs = w.array(pair, 3)
    names = w.array(w.array(ch, 4), 2)
    types = {
        "outer": w.struct("outer", 104, [
            ("dup", u64, 0), ("", anon, 64), ("", anon_u, 128), ("__truncated__", s32, 160),
            ("bf", s32, 192, 3), ("bfs", s32, 195, 5), ("bfe", en, 200, 4), ("bfb", boo, 204, 1),
            ("wide", u64, 205, 40), ("f", f32, 256), ("d", f64, 320), ("dup", boo, 384),
            ("grid", grid, 392), ("pairs", pairs, 488), ("names", names, 584),
            ("e64", en64, 648), ("tail", w.array(u16, 0), 712), ("op", w.ptr(fwd), 768)]),
        "i128": i128, "en": en, "f64": f64, "pairs": pairs, "grid": grid, "names": names,
        "cstr": w.array(ch, 10),
    }
    btf = BTF(w.build(), name="json", use_cache=False)
    return btf, types


def json_cases(btf, tid, rng, count):
    size = btf.size_of(tid)
    haves = [None] + sorted({rng.randrange(0, size + 1) for _ in range(6)} | {0, 1, max(size - 1, 0)})
    for have in haves:
        n = size if have is None else have
        for _ in range(count):
            data = kernelish(rng, n)
            if rng.random() < 0.3:
                data = struct.pack("<d", rng.choice((float("nan"), float("-inf"), -0.0, 1e300))) * (n // 8 + 1)
            yield have, bytes(data[:n])


def test_compiled_json_equals_renderer_on_crafted_btf():
    btf, types = crafted_types()
    rng = random.Random(SEED)
    for name, tid in types.items():
        compiled = 0
        for have, data in json_cases(btf, tid, rng, 20):
            fn = compile_json(btf, tid, have)
            want = Renderer(btf, tid, "json").render(data)
            if fn is None:
                continue
            compiled += 1
            assert fn(b"\x01" * 3 + data + b"\x02", 3) == want, (name, have, data.hex())
            json.loads(want)
        assert compiled, name


def test_compiled_json_equals_renderer_on_kernel_types(vmlinux_btf):
    btf = vmlinux_btf
    rng = random.Random(SEED)
    ids = [i for i in range(1, len(btf)) if btf.kind_of(i) in (Kind.STRUCT, Kind.UNION, Kind.ARRAY)]
    compiled = 0
    for tid in rng.sample(ids, 250):
        if btf.size_of(tid) > 8192:
            continue
        for have, data in json_cases(btf, tid, rng, 1):
            fn = compile_json(btf, tid, have)
            if fn is not None:
                compiled += 1
                assert fn(data) == Renderer(btf, tid, "json").render(data), (tid, have)
    assert compiled > 900


# ------------------------------------------------------------------ text
def test_compiled_text_with_indent_equals_indented_text(vmlinux_btf):
    """What fastout uses for the text format: the renderer's own compiled code with
    nested lines indented, equal to rendering then indenting every line."""
    btf = vmlinux_btf
    rng = random.Random(SEED)
    ids = [i for i in range(1, len(btf)) if btf.kind_of(i) in (Kind.STRUCT, Kind.UNION, Kind.ARRAY)]
    done = 0
    for tid in rng.sample(ids, 300) + [btf.find("sk_buff", Kind.STRUCT)[0]]:
        if btf.size_of(tid) > 4096:
            continue
        for flags in (0, ZERO):
            fn = compile_text(btf, tid, flags, TreeText(btf, flags, indent="  "))
            if fn is None:
                continue
            data = kernelish(rng, btf.size_of(tid))
            want = Renderer(btf, tid, "ksnoop", flags).render(data)
            assert fn(data) == want.rstrip("\n").replace("\n", "\n  ") + "\n", tid
            done += 1
    assert done > 400


def test_zero_length_arrays_are_compiled(vmlinux_btf):
    """sk_buff's __u8 x[0] markers used to fall back to the tree renderer (2/3 of
    its render time); with and without ZERO the compiled text is the tree's."""
    btf = vmlinux_btf
    tid = btf.find("sk_buff", Kind.STRUCT)[0]
    fn = compile_text(btf, tid)
    assert "slow(" not in fn.source
    rng = random.Random(SEED)
    for flags in (0, ZERO, COMPACT | ZERO):
        tree = TreeText(btf, flags)
        fn = compile_text(btf, tid, flags, tree)
        for _ in range(20):
            data = kernelish(rng, btf.size_of(tid))
            node = tree.s.decoder.decode(tid, data)
            assert fn(data) == tree.render_node(node), flags


def test_compiled_text_names_with_braces_and_quotes():
    w = BTFWriter()
    s32 = w.int("int{}", 4, signed=True)
    p = w.ptr(s32)
    f = w.float("double", 8)
    tid = w.struct("s'{x}\"", 24, [("a{b}", s32, 0), ("p'\"{", p, 64), ("d}", f, 128)])
    btf = BTF(w.build(), name="names", use_cache=False)
    data = struct.pack("<iiQd", -5, 0, 0xFFFF888000001230, 2.5)
    for flags in (0, COMPACT, ZERO):
        tree = TreeText(btf, flags)
        fn = compile_text(btf, tid, flags, tree)
        assert fn(data) == tree.render_node(tree.s.decoder.decode(tid, data))
    assert ".a{b} = (int{})-5," in compile_text(btf, tid)(data)


# ------------------------------------------------------------------ tracer
def tracer(plan, fmt, colour=False, max_events=0):
    from ksnoop.trace.job import Prepared, Tracer

    out, err = io.StringIO(), io.StringIO()
    t = Tracer(Prepared(plan, "", []), kernel=None, fmt=fmt, out=out, err=err, colour=colour,
               max_events=max_events)
    return t, out, err


def test_tracer_batches_write_what_one_write_per_event_wrote(kernel):
    plan = vmlinux_plans(kernel)[3]
    rng = random.Random(SEED)
    events = [d for fp in plan.funcs for ev in layouts_for(fp) for d in make_events(rng, ev, 60, 9)]
    dec = Decoder(plan)
    for fmt in FORMATS:
        t, out, err = tracer(plan, fmt)
        for d in events:
            t._on_record(d, 0, len(d))
        t._on_record(b"short", 0, 5)  # undecodable: said on stderr, counted
        t._flush_output()
        want = "".join(Formatter(fmt).event(dec.decode(d)) + "\n" for d in events)
        assert out.getvalue() == want
        assert t.events == len(events) and t.bad == 1
        assert err.getvalue() == "ksnoop: undecodable event: short event: 5 bytes\n"


def test_tracer_colour_in_batches_equals_colour_per_line(kernel):
    from rich.console import Console
    from rich.theme import Theme

    from ksnoop.render.text import THEME, colourize

    plan = vmlinux_plans(kernel)[3]
    rng = random.Random(SEED)
    events = [d for fp in plan.funcs for ev in layouts_for(fp) for d in make_events(rng, ev, 5, 9)]
    for fmt in ("text", "line"):
        t, out, _ = tracer(plan, fmt, colour=True)
        for d in events:
            t._on_record(d, 0, len(d))
        t._flush_output()
        ref = io.StringIO()
        console = Console(file=ref, theme=Theme(THEME), highlight=False, force_terminal=True,
                          soft_wrap=True)
        for d in events:
            console.print(colourize(Formatter(fmt).event(Decoder(plan).decode(d))))
        assert out.getvalue() == ref.getvalue()
        assert "\x1b[" in out.getvalue()


def test_tracer_count_limit_and_lost_accounting(kernel):
    plan = vmlinux_plans(kernel)[3]
    (ev,) = layouts_for(plan.funcs[2])
    events = make_events(random.Random(SEED), ev, 2000, 3)
    t, out, _ = tracer(plan, "line", max_events=700)
    for d in events:
        t._on_record(d, 0, len(d))
    t._flush_output()
    assert t.events == 700 and out.getvalue().count("\n") == 700

    class Broken(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    t, _, _ = tracer(plan, "line")
    t.out = Broken()
    for d in events[:100]:
        t._on_record(d, 0, len(d))
    with pytest.raises(BrokenPipeError):
        t._flush_output()
    assert (t.events, t.lost) == (0, 100)  # consumed, never printed: lost, not dropped silently


# ------------------------------------------------------------------ ring
class FakeRing:
    """A ring buffer laid out as the kernel maps it: consumer page, producer page,
    then the data twice in a row (records that wrap stay contiguous)."""

    def __init__(self, size, page=4096):
        from ksnoop.trace.ringbuf import RingReader

        self.size, self.page = size, page
        self.data = bytearray(page + 2 * size)
        self.cons = bytearray(page)
        self.prod = 0
        r = RingReader.__new__(RingReader)
        r.size, r.page, r.delivered, r.bytes = size, page, 0, 0
        r.flush_bytes = 64
        r._data, r._cons = self.data, self.cons
        self.reader = r

    def write(self, payload, busy=False, discard=False):
        hdr = len(payload) | (1 << 31 if busy else 0) | (1 << 30 if discard else 0)
        rec = struct.pack("<II", hdr, 0) + payload
        # the data area is mapped twice in a row: a record that wraps is contiguous
        for i in range(len(rec)):
            pos = (self.prod + i) & (self.size - 1)
            self.data[self.page + pos] = self.data[self.page + self.size + pos] = rec[i]
        self.prod += (len(payload) + 15) & ~7
        struct.pack_into("<Q", self.data, 0, self.prod)

    @property
    def consumer(self):
        return struct.unpack_from("<Q", self.cons)[0]


def test_ring_reader_reads_in_place_and_wraps():
    ring = FakeRing(256)
    got = []

    def handle(buf, off, size):
        got.append(bytes(buf[off:off + size]))

    sent = []
    for round_ in range(40):  # many times around a 256-byte ring
        batch = [bytes([round_ % 256, i]) * (1 + (round_ * 7 + i) % 13) for i in range(3)]
        for p in batch:
            ring.write(p)
        ring.write(b"gone", discard=True)
        sent += batch
        assert ring.reader.consume(handle) == 3
        assert ring.consumer == ring.prod
    assert got == sent
    assert (ring.reader.delivered, ring.reader.bytes) == (len(sent), sum(map(len, sent)))


def test_ring_reader_stops_at_busy_and_after_a_failure():
    ring = FakeRing(4096)
    for p in (b"a" * 8, b"b" * 9, b"c" * 10):
        ring.write(p)
    busy_at = ring.prod
    ring.write(b"d" * 11, busy=True)
    seen = []

    def boom(buf, off, size):
        seen.append(bytes(buf[off:off + size]))
        if len(seen) == 2:
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        ring.reader.consume(boom)
    assert seen == [b"a" * 8, b"b" * 9]
    assert ring.consumer == 16 + 24  # the record that raised is consumed, the rest stays
    assert ring.reader.consume(lambda b, o, s: seen.append(bytes(b[o:o + s]))) == 1
    assert seen[-1] == b"c" * 10 and ring.consumer == busy_at  # stops at the busy record


def test_ring_reader_budget_bounds_one_call():
    ring = FakeRing(1 << 16)
    for i in range(100):
        ring.write(bytes([i]) * 24)
    n = ring.reader.consume(lambda b, o, s: None, budget=32 * 10)
    assert n == 10 and ring.consumer == 320
    assert ring.reader.consume(lambda b, o, s: None) == 90


def test_no_print_or_stray_output_in_generated_sources(kernel):
    """Generated layout code only builds strings (no I/O, no eval of event data)."""
    plan = vmlinux_plans(kernel)[3]
    for f in FORMATS:
        ff = FastFormatter(plan, f)
        for fp in plan.funcs:
            for ev in layouts_for(fp):
                src = ff.layout_fn((ev.func, ev.kind)).source
                assert not re.search(r"\b(print|open|eval|exec|write)\(", src), src
