"""Latency (durations, --min-latency), kernel stacks (-K), times (--time,
JSON wall) and errno names (issue 9).

The BPF side runs under gcc with the helpers played by user-space stand-ins
(test_multigen's harness, with a clock the test sets and a fixed stack): the
compiled programs and the generic kprobe-multi program must send the same
bytes, pair each return with its own entry (recursion included), and drop
calls shorter than --min-latency.  The output side is checked against fixed
expectations and, fast consumer against reference, byte for byte.
"""

import json
import os
import random
import re
import struct

import clirun
import pytest
import test_multigen as tm
from backendstub import Fixed

from ksnoop.kernel import backend
from ksnoop.kernel.kallsyms import Symbolizer
from ksnoop.trace import multigen
from ksnoop.trace.codegen import MULTI_ENTRY, MULTI_RETURN, Machine, generate
from ksnoop.trace.events import Decoder
from ksnoop.trace.fastout import FastFormatter
from ksnoop.trace.job import attach_points, with_options
from ksnoop.trace.output import Formatter, duration_text, errno_name, wall_iso, wall_offset_ns
from ksnoop.trace.plan import Filters
from ksnoop.trace.resolve import resolve
from ksnoop.trace.spec import parse
from ksnoop.trace.wire import CALL, ENTRY, HEADER, KSTACK_FRAMES, NO_DURATION, RETURN, layouts_for

MACHINE = Machine(self_tgid=1, ncpus=1)
pytestmark = tm.pytestmark
MULTI = Fixed(backend.Choice(backend.KPROBE, True, "test"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# the harness with a clock the calls set, and a stack of three frames
HARNESS = tm.HARNESS.replace(
    "static u64 bpf_ktime_get_ns(void) { return 2000000000ULL; }",
    "static u64 clk = 1000;\nstatic u64 bpf_ktime_get_ns(void) { return clk; }\n"
    "static long bpf_get_stack(void *ctx, void *buf, u32 size, u64 flags)\n"
    "{ u64 *f = buf; f[0] = 0xffffffff81000010ULL; f[1] = 0xffffffff81000123ULL;"
    " f[2] = 0xffffffffc0000008ULL; return 24; }")
assert HARNESS != tm.HARNESS


def run(c_text, setup, calls, tmp):
    saved = tm.HARNESS
    tm.HARNESS = HARNESS
    try:
        return [line for line in tm.run(c_text, setup, calls, tmp) if line.startswith("event")]
    finally:
        tm.HARNESS = saved


def events(lines):
    return [bytes.fromhex(line.split()[1]) for line in lines]


@pytest.fixture(scope="module")
def kernel():
    return tm.Kernel(btf_path=tm.VMLINUX, kallsyms_path="/nonexistent/kallsyms")


def plans(kernel, specs, min_ns=0, kstack=False):
    parsed = [parse(s) for s in specs]
    generic = with_options(resolve(parsed, kernel, backends=MULTI), min_ns, kstack)
    compiled = with_options(resolve(parsed, kernel), min_ns, kstack)
    return generic, compiled


# ------------------------------------------------------------------ layouts
def test_return_and_stash_events_carry_a_duration_and_the_stack(kernel):
    plan = resolve([parse("ip_send_skb(skb->len, return)"), parse("vfs_read(count, return < 0)"),
                    parse("tp:sys_enter(id)")], kernel)
    plain = [[(ev.kind, ev.dur >= 0, ev.kstack >= 0) for ev in layouts_for(fp)] for fp in plan.funcs]
    assert plain == [[(ENTRY, False, False), (RETURN, True, False)], [(CALL, True, False)],
                     [(ENTRY, False, False)]]
    plan = with_options(plan, 0, True)
    for fp in plan.funcs:
        for ev in layouts_for(fp):
            assert ev.kstack >= 0 and ev.size == ev.kstack + 8 + 8 * KSTACK_FRAMES
            assert ev.dur < 0 or ev.dur == ev.tail and ev.kstack == ev.dur + 8
            text, _ = generate(plan, MACHINE)
            struct_text = text[text.index(f"struct {ev.c_name} {{"):]
            struct_text = struct_text[:struct_text.index("} __attribute__")]
            assert f"u64 kstack[{KSTACK_FRAMES}];" in struct_text
            assert ("u64 dur;" in struct_text) == (ev.dur >= 0)


def test_min_latency_holds_every_call_until_its_return(kernel):
    plan = with_options(resolve([parse("ip_send_skb(skb->len, return)"), parse("ksys_read(fd)")],
                                kernel), 2000, False)
    assert all(fp.stash for fp in plan.funcs)
    assert [[ev.kind for ev in layouts_for(fp)] for fp in plan.funcs] == [[CALL], [CALL]]
    text, probes = generate(plan, MACHINE, Filters(min_ns=2000))
    assert all(e and r for _, e, r in probes)  # entry-only ksys_read gets a return program
    assert text.count("dur < 2000ULL") == 2


def test_a_return_only_function_still_times_its_entry(kernel):
    plan = resolve([parse("ksys_read(return)")], kernel)
    text, ((_, entry, ret),) = generate(plan, MACHINE)
    assert entry and ret
    body = text[text.index(f"int {entry}("):text.index(f"int {ret}(")]
    assert "ksnoop_enter(&key, id, 0, ctx->sp);" in body and "KSNOOP_OUTPUT" not in body


# ------------------------------------------------------------ BPF under gcc
SPECS = ["vfs_read(count, return)", "do_mmap(pgoff, len)", "ksys_read(return)",
         "ip_send_skb(skb->len, net, return)"]


def call_sequence(probes, multi):
    """Calls of every function at clock times: f0 recursing into itself (its
    inner call lasts 100 ns, the outer 5000), the others 30 ns and 9000 ns;
    a return without its entry at the end."""
    out = []

    def entry(fp, name):
        return ([f"\tcookie = {fp.index};", f"\t{MULTI_ENTRY}(&r);"] if multi
                else [f"\t{name}(&r);"] if name else [])

    def ret(fp, name):
        if not name:
            return []
        return ["\tr.ax = (u64)-2;"] + ([f"\tcookie = {fp.index};", f"\t{MULTI_RETURN}(&r);"]
                                        if multi else [f"\t{name}(&r);"])

    fp0, e0, r0 = probes[0]
    out += ["\tclk = 10000;"] + entry(fp0, e0) + ["\tclk = 11000;"] + entry(fp0, e0)
    out += ["\tclk = 11100;"] + ret(fp0, r0) + ["\tclk = 15000;"] + ret(fp0, r0)
    clock = 20000
    for fp, e, r in probes[1:]:
        for length in (30, 9000):
            out += [f"\tclk = {clock};"] + entry(fp, e) + [f"\tclk = {clock + length};"] + ret(fp, r)
            clock += 100000
    out += [f"\tclk = {clock};"] + ret(fp0, r0)  # its entry was never seen
    return out


def gcc_events(kernel, tmp_path, min_ns=0, kstack=False, specs=SPECS, generic_too=True):
    """(the generic program's events, the compiled programs' events, the plan)."""
    generic, compiled = plans(kernel, specs, min_ns, kstack)
    assert [fp.multi for fp in generic.funcs] == [True] * len(specs)
    setup = tm.memory_setup() + tm.set_regs()
    c_text, c_probes = generate(compiled, MACHINE, Filters(min_ns=min_ns))
    want = run(c_text, setup, call_sequence(c_probes, False), str(tmp_path))
    if not generic_too:
        return None, want, compiled
    g_text, g_probes = generate(generic, MACHINE, Filters(min_ns=min_ns))
    assert f"int {MULTI_ENTRY}(" in g_text and "ksnoop_multi.call" not in g_text
    points = attach_points(g_probes)
    recipes = {slot: raw for p in points for slot, raw in p.recipes}
    load = [f"\tmemcpy(&{multigen.RECIPES}.v[{slot}], \"{tm.c_bytes(raw)}\", {len(raw)});"
            for slot, raw in recipes.items()]
    got = run(g_text, setup + load, call_sequence(g_probes, True), str(tmp_path))
    return got, want, compiled


def durations(raw, plan):
    dec = Decoder(plan)
    return [(e.func.index, e.kind, e.dur) for e in map(dec.decode, events(raw))
            if e.kind != ENTRY]


def test_durations_pair_each_return_with_its_own_entry(kernel, tmp_path):
    got, want, plan = gcc_events(kernel, tmp_path)
    assert got == want  # the generic program sends what the compiled ones send
    assert durations(want, plan) == [
        (0, RETURN, 100), (0, RETURN, 4000 + 1000),  # the recursive call, then its caller
        (2, RETURN, 30), (2, RETURN, 9000), (3, RETURN, 30), (3, RETURN, 9000),
        (0, RETURN, None)]  # no entry seen: no duration


def test_min_latency_drops_fast_calls_in_bpf(kernel, tmp_path):
    _, want, plan = gcc_events(kernel, tmp_path, min_ns=1000, generic_too=False)
    # entry values held until the return (stash): one event per call, only the
    # slow ones; a function showing only its return keeps return events
    assert [fp.stash for fp in plan.funcs] == [True, True, False, True]
    assert durations(want, plan) == [(0, CALL, 5000), (1, CALL, 9000), (2, RETURN, 9000),
                                     (3, CALL, 9000)]
    # the generic kprobe-multi program drops them the same way
    specs = ["ksys_read(return)", "vfs_read(return)", "ksys_write(return)", "vfs_write(return)"]
    got, want, plan = gcc_events(kernel, tmp_path, min_ns=1000, specs=specs)
    assert got == want
    assert durations(want, plan) == [(0, RETURN, 5000), (1, RETURN, 9000), (2, RETURN, 9000),
                                     (3, RETURN, 9000)]


def test_kstack_is_in_every_event(kernel, tmp_path):
    got, want, plan = gcc_events(kernel, tmp_path, kstack=True)
    assert got == want
    dec = Decoder(plan)
    stacks = {dec.decode(raw).kstack for raw in events(want)}
    assert stacks == {(24, (0xffffffff81000010, 0xffffffff81000123, 0xffffffffc0000008))}


# ------------------------------------------------------------------ output
KALLSYMS = """ffffffff81000000 T _stext
ffffffff81000100 t ip_finish_output2
ffffffff81000200 T udp_send_skb
ffffffffc0000000 t bad\x1b[2Jname\t[dummy\x1b]
"""


def one_event(ev, ts=5_000_000_123_456, dur=None, kstack=None, fill=None):
    buf = bytearray(ev.size)
    HEADER.pack_into(buf, 0, ts, 42, 43, 1, ev.func, ev.kind, 0, b"cat")
    if fill:
        fill(buf)
    if ev.dur >= 0:
        struct.pack_into("<Q", buf, ev.dur, NO_DURATION if dur is None else dur)
    if ev.kstack >= 0 and kstack is not None:
        n, frames = kstack
        struct.pack_into("<i", buf, ev.kstack, n)
        struct.pack_into(f"<{len(frames)}Q", buf, ev.kstack_data, *frames)
    return bytes(buf)


def formats(plan, data, time="boot", symbols=None):
    """{fmt: text}, the fast consumer's, checked against the reference's."""
    out = {}
    for f in ("text", "line", "json"):
        ref = Formatter(f, time=time, symbols=symbols).event(Decoder(plan).decode(data))
        fast = FastFormatter(plan, f, Formatter(f, time=time, symbols=symbols)).format(data)
        assert fast == ref, (f, fast, ref)
        out[f] = ref
    return out


def test_duration_in_text_line_and_json(kernel):
    plan = resolve([parse("vfs_read(count, return < 0)"), parse("ksys_read(return)")], kernel)
    (call,) = layouts_for(plan.funcs[0])
    out = formats(plan, one_event(call, dur=12_345))
    assert out["text"].splitlines()[-1] == "); (12.345us)"
    assert out["line"].endswith("=> return = (ssize_t)0 (12.345us)")
    j = json.loads(out["json"])
    assert j["duration_ns"] == 12345 and j["event"] == "call"
    (ret,) = layouts_for(plan.funcs[1])
    out = formats(plan, one_event(ret))  # its entry was not seen
    assert out["line"].endswith("=> return = (ssize_t)0")
    assert json.loads(out["json"])["duration_ns"] is None
    assert duration_text(2_000_000_000) == "2000000.000us" and duration_text(7) == "0.007us"


def test_kstack_symbolized_and_escaped(kernel):
    plan = with_options(resolve([parse("ip_send_skb(skb->len)")], kernel), 0, True)
    (ev,) = [e for e in layouts_for(plan.funcs[0]) if e.kind == ENTRY]
    syms = Symbolizer(KALLSYMS)
    frames = (0xffffffff81000110, 0xffffffff8100022a, 0xffffffffc0000008, 0x10)
    out = formats(plan, one_event(ev, kstack=(32, frames)), symbols=syms)
    assert out["text"].splitlines()[-5:] == [
        "  kstack:", "    ip_finish_output2+0x10", "    udp_send_skb+0x2a",
        "    bad\\033[2Jname+0x8 [dummy\\033]", "    0x10"]
    assert out["line"].endswith(" kstack: ip_finish_output2+0x10 <- udp_send_skb+0x2a <- "
                                "bad\\033[2Jname+0x8 [dummy\\033] <- 0x10")
    j = json.loads(out["json"])
    assert j["kstack"] == ["ip_finish_output2+0x10", "udp_send_skb+0x2a",
                           "bad\x1b[2Jname+0x8 [dummy\x1b]", "0x10"]
    assert "\\u001b" in out["json"]  # JSON stays ASCII
    # a stack that could not be read is said, not dropped
    out = formats(plan, one_event(ev, kstack=(-14, ())), symbols=syms)
    assert out["line"].endswith(" kstack: ? /* cannot read the kernel stack: -EFAULT */")
    j = json.loads(out["json"])
    assert j["kstack"] is None and j["notes"] == {"kstack": "cannot read the kernel stack: -EFAULT"}


def test_errno_names_for_int_and_pointer_returns(kernel):
    # ip_send_skb returns int on every kernel (do_sys_openat2: long in 6.1 and 6.12)
    plan = resolve([parse("ip_send_skb(return)"), parse("filp_open(return)"),
                    parse("vfs_read(return)")], kernel)
    (r_int,) = layouts_for(plan.funcs[0])
    (r_ptr,) = layouts_for(plan.funcs[1])
    (r_long,) = layouts_for(plan.funcs[2])

    def ret(ev, value):
        def fill(buf):
            struct.pack_into("<Q", buf, ev.slots[0].ptr, value & ((1 << 64) - 1))
            if ev.slots[0].status >= 0:
                struct.pack_into("<i", buf, ev.slots[0].status, -14)
        return fill
    # an int return: the low 32 bits of the register are the value
    out = formats(plan, one_event(r_int, dur=5, fill=ret(r_int, 0xFFFFFFFE)))
    assert out["line"].endswith("=> return = (int)-2 (-ENOENT) (0.005us)")
    j = json.loads(out["json"])
    assert j["values"]["return"] == -2 and j["errno"] == {"return": "ENOENT"}
    out = formats(plan, one_event(r_long, dur=5, fill=ret(r_long, -512)))
    assert "(ssize_t)-512 (-ERESTARTSYS)" in out["line"]
    out = formats(plan, one_event(r_long, dur=5, fill=ret(r_long, 3)))
    assert "(ssize_t)3 (" + "0.005us)" in out["line"] and "errno" not in json.loads(out["json"])
    out = formats(plan, one_event(r_long, dur=5, fill=ret(r_long, -4096)))
    assert "(ssize_t)-4096 (0.005us)" in out["line"]
    # an error pointer: no "invalid pointer" note, the errno instead
    out = formats(plan, one_event(r_ptr, dur=5, fill=ret(r_ptr, -2)))
    assert out["line"].endswith("=> return = (struct file *)ERR_PTR(-ENOENT) (0.005us)")
    j = json.loads(out["json"])
    assert j["values"]["return"] == "0xfffffffffffffffe" and j["errno"] == {"return": "ENOENT"}
    assert "notes" not in j
    assert errno_name(-2) == "ENOENT" and errno_name(0) is None and errno_name(-4096) is None


def test_enum_values_print_by_name(kernel):
    """An enum value prints as its enumerator (text, line and JSON)."""
    plan = resolve([parse("skb_ext_add(id)")], kernel)
    (ev,) = layouts_for(plan.funcs[0])

    def fill(buf):
        struct.pack_into("<Q", buf, ev.slots[0].ptr, 0)
    out = formats(plan, one_event(ev, fill=fill))
    assert re.search(r"id = \(enum skb_ext_id\)SKB_EXT_[A-Z_]+\)$", out["line"]), out["line"]
    assert json.loads(out["json"])["values"]["id"].startswith("SKB_EXT_")


def test_times_boot_wall_and_delta(kernel):
    plan = resolve([parse("tp:sys_enter(id)")], kernel)
    (ev,) = layouts_for(plan.funcs[0])
    ts = 5_000_000_123_456
    wall = ts + wall_offset_ns()
    iso = wall_iso(ts)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", iso)
    import datetime

    want = datetime.datetime.fromtimestamp(wall // 1000 / 1e6, datetime.timezone.utc)
    assert iso == want.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = formats(plan, one_event(ev, ts=ts))
    assert out["line"].split()[3] == "5000.000123"
    assert json.loads(out["json"])["wall"] == iso and json.loads(out["json"])["time"] == ts / 1e9
    out = formats(plan, one_event(ev, ts=ts), time="wall")
    assert out["line"].split()[3] == iso[11:-1]
    # delta: since the previous event, the first one 0
    ref = Formatter("line", time="delta")
    fast = FastFormatter(plan, "line", Formatter("line", time="delta"))
    dec = Decoder(plan)
    for t, want in ((ts, "0.000000"), (ts + 1_500_000, "0.001500"), (ts + 3_001_500_000, "3.000000"),
                    (ts + 3_001_000_000, "-0.000500")):
        data = one_event(ev, ts=t)
        assert ref.event(dec.decode(data)).split()[3] == want
        assert fast.format(data).split()[3] == want


def test_fast_consumer_equals_reference_with_durations_stacks_and_errnos(kernel):
    """Random durations, stacks, return values and times through every format."""
    rng = random.Random(9)
    specs = ["vfs_read(count, return < 0)", "do_sys_openat2(filename, return)", "filp_open(return)",
             "ip_send_skb(skb->len, skb)", "ksys_read(return)"]
    syms = Symbolizer(KALLSYMS)
    for kstack in (False, True):
        plan = with_options(resolve([parse(s) for s in specs], kernel, limit=64), 0, kstack)
        for time in ("boot", "wall", "delta"):
            refs = {f: Formatter(f, time=time, symbols=syms) for f in ("text", "line", "json")}
            fasts = {f: FastFormatter(plan, f, Formatter(f, time=time, symbols=syms)) for f in refs}
            dec = Decoder(plan)
            for fp in plan.funcs:
                for ev in layouts_for(fp):
                    for _ in range(30):
                        def fill(buf, ev=ev):
                            for s in ev.slots:
                                if s.ptr >= 0:
                                    struct.pack_into("<Q", buf, s.ptr, rng.choice(
                                        (0, 3, 2**64 - 2, 2**64 - 4095, 2**64 - 4096, 0xFFFFFFFE,
                                         2**32 - 512, 0xFFFF888000001000)))
                                if s.status >= 0:
                                    struct.pack_into("<i", buf, s.status, rng.choice((0, -14, 5)))
                        dur = rng.choice((None, 0, 999, 12_345_678, 2**40))
                        ks = rng.choice(((24, (0xffffffff81000110, 0xffffffffc0000001, 5)), (-14, ()),
                                         (0, ())))
                        data = one_event(ev, ts=rng.randrange(1, 10**15), dur=dur,
                                         kstack=ks if kstack else None, fill=fill)
                        e = dec.decode(data)
                        for f in refs:
                            assert fasts[f].format(data) == refs[f].event(e), (fp.name, f, time)


# ------------------------------------------------------------------- CLI
@pytest.mark.parametrize("bad", ["5", "2xs", "0ms", "-1us", "nanus", "infs", "1e30s", "us", "5 us"])
def test_min_latency_bad_values_exit_2_naming_the_option(bad):
    r = clirun.completed("trace", "--min-latency", bad, "vfs_read")
    assert r.returncode == 2, r.stderr
    assert "--min-latency" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_latency_parses_units():
    from ksnoop.cli.trace import Latency

    lat = Latency()
    assert [lat.convert(v, None, None) for v in ("50us", "2ms", "1s", "800ns", "1.5ms")] == [
        50_000, 2_000_000, 1_000_000_000, 800, 1_500_000]


def test_missed_returns_and_entries_never_pair_the_wrong_entry(kernel, tmp_path):
    """kprobes: a nested call whose return was missed (a kretprobe out of
    instances) leaves its entry behind, deeper in the stack; the caller's
    return drops it and takes its own.  A return whose entry was missed (its
    stack pointer below the last entry's: it is nested in that call) takes none.  Generic and compiled
    programs alike."""
    specs = ["ksys_read(fd, return)", "vfs_read(return)"]
    generic, compiled = plans(kernel, specs)
    sp = "\tr.sp = (u64)(mem + %d);"

    def calls(probes, multi):
        fp0, e0, r0 = probes[0]
        fp1, e1, r1 = probes[1]

        def go(fp, name, side):
            if multi:
                return [f"\tcookie = {fp.index};", f"\t{side}(&r);"]
            return [f"\t{name}(&r);"]
        return ([sp % 4000, "\tclk = 1000;"] + go(fp0, e0, MULTI_ENTRY)           # outer, sp 4000
                + [sp % 3900, "\tclk = 2000;"] + go(fp0, e0, MULTI_ENTRY)         # nested, deeper
                # the nested return is missed; the outer returns one word above its entry
                + [sp % 4008, "\tclk = 7000;", "\tr.ax = 1;"] + go(fp0, r0, MULTI_RETURN)
                + [sp % 3000, "\tclk = 8000;"] + go(fp1, e1, MULTI_ENTRY)         # f1 at 3000
                # a nested call of f1 whose entry was missed returns (deeper in
                # the stack than f1's entry): no duration, f1's entry is kept
                + [sp % 2508, "\tclk = 8500;"] + go(fp1, r1, MULTI_RETURN)
                + [sp % 3008, "\tclk = 9000;"] + go(fp1, r1, MULTI_RETURN))      # f1's own
    setup = tm.memory_setup() + tm.set_regs()
    c_text, c_probes = generate(compiled, MACHINE)
    want = run(c_text, setup, calls(c_probes, False), str(tmp_path))
    g_text, g_probes = generate(generic, MACHINE)
    points = attach_points(g_probes)
    load = [f"\tmemcpy(&{multigen.RECIPES}.v[{slot}], \"{tm.c_bytes(raw)}\", {len(raw)});"
            for p in points for slot, raw in p.recipes]
    got = run(g_text, setup + load, calls(g_probes, True), str(tmp_path))
    assert got == want
    assert durations(want, compiled) == [(0, RETURN, 6000), (1, RETURN, None), (1, RETURN, 1000)]
    # stash mode (a return predicate) keeps the same contract
    stash = resolve([parse("ksys_read(fd, return > 0)"), parse("vfs_read(return)")], kernel)
    assert stash.funcs[0].stash
    s_text, s_probes = generate(stash, MACHINE)
    got = run(s_text, setup, calls(s_probes, False), str(tmp_path))
    assert durations(got, stash) == [(0, CALL, 6000), (1, RETURN, None), (1, RETURN, 1000)]
