"""count / hist without root: the plan, the generated C, the log2 slot (compiled
and run under gcc), key decoding, interval arithmetic and every output format."""

import json
import os
import re
import struct
import subprocess

import clirun
import pytest

from ksnoop.errors import SpecError, UsageError
from ksnoop.trace import aggregate as A
from ksnoop.trace.aggjob import Report, make_report
from ksnoop.trace.aggout import Writer, bucket_label
from ksnoop.trace.plan import DEREF, MEMORY, SCALAR, STRING, FuncPlan, TracePlan, Value

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def slot_of(v):
    """The model: what bucket a value belongs in."""
    if v < 0:
        return A.SLOT_NEGATIVE
    return A.SLOT_ZERO if v == 0 else A.SLOT_FIRST + v.bit_length() - 1


# ------------------------------------------------------------------ buckets
def test_slot_ranges_tile_the_numbers():
    assert A.slot_range(A.SLOT_NEGATIVE) == (None, -1)
    assert A.slot_range(A.SLOT_ZERO) == (0, 0)
    expect = 1
    for slot in range(A.SLOT_FIRST, A.SLOT_UNREADABLE):
        low, high = A.slot_range(slot)
        assert low == expect and slot_of(low) == slot and slot_of(high) == slot
        expect = high + 1
    assert expect == 1 << 64
    assert A.slot_range(A.SLOT_UNREADABLE) is None
    assert A.HIST_SLOTS == A.SLOT_UNREADABLE + 1


def test_bucket_labels():
    assert [bucket_label(s) for s in (0, 1, 2, 3, 4, 11, 12, 21, 22, 65, 66)] == [
        "(..., 0)", "[0]", "[1]", "[2, 4)", "[4, 8)", "[512, 1K)", "[1K, 2K)", "[512K, 1M)",
        "[1M, 2M)", "[8E, 16E)", "unreadable"]


def test_generated_log2_slot_matches_the_model(tmp_path):
    """The C that picks a bucket, compiled by gcc and run on edge values."""
    from ksnoop.trace.aggcode import _SHARED_C

    values = [0, 1, 2, 3, 4, 5, 7, 8, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 63) - 1,
              1 << 63, (1 << 64) - 1] + [(1 << k) + d for k in range(64) for d in (-1, 0, 1) if (1 << k) + d > 0]
    src = tmp_path / "slot.c"
    src.write_text("#include <stdio.h>\n#include <stdint.h>\ntypedef uint64_t u64; typedef uint32_t u32;\n"
                   "#define __always_inline inline __attribute__((always_inline))\n" + _SHARED_C +
                   "int main(void) { unsigned long long v; while (scanf(\"%llu\", &v) == 1) "
                   "printf(\"%u\\n\", ksnoop_agg_slot(v)); return 0; }\n")
    exe = tmp_path / "slot"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], input="\n".join(map(str, values)), capture_output=True, text=True,
                         check=True).stdout.split()
    assert [int(x) for x in out] == [slot_of(v) for v in values]


# ------------------------------------------------------------------ keys
def test_decode_key_roundtrip():
    class P:
        str_bytes = 16

    raw = struct.pack("<IiQ16s", 3, -14, 0xFFFFFFFFFFFFFFFF, b"ab\0\0garbage")
    k = A.decode_key(P(), raw)
    assert (k.func, k.status, k.num, k.raw) == (3, -14, (1 << 64) - 1, b"ab")

    class Q:
        str_bytes = 0

    assert A.decode_key(Q(), struct.pack("<IiQ", 1, 0, 42)) == A.Key(1, 0, 42, b"")


# ------------------------------------------------------------------ plans
@pytest.fixture(scope="module")
def kernel():
    if not os.access("/sys/kernel/btf/vmlinux", os.R_OK):
        pytest.skip("no readable kernel BTF")
    from ksnoop.kernel.files import Kernel

    return Kernel()


def c_of(kernel, kind, value, *specs, **kw):
    from ksnoop.trace.codegen import Machine
    from ksnoop.trace.plan import Filters

    ap = A.build(list(specs), A.Aggregation(kind, value, **kw), kernel)
    text, probes = A.generate(ap, Machine(self_tgid=4242, ncpus=2), Filters(pid=77))
    return ap, text, probes


def program(text, name):
    return text[text.index(f"int {name}("):].split("\n}\n", 1)[0]


def test_count_calls_is_an_array_bump_after_the_filters_and_predicate(kernel):
    ap, text, probes = c_of(kernel, A.COUNT, "", "tp:sys_enter(id == 110, regs)")
    assert ap.source == A.CALLS and ap.str_bytes == 0
    assert [v.name for v in ap.funcs[0].fp.entry] == ["id"]  # regs is not tested: not read
    assert ap.notes and "regs not read" in ap.notes[0]
    prog = program(text, "ksnoop_entry_0")
    order = [prog.index(s) for s in ("== 4242) return 0", "!= 77) return 0", "== (s64)(110LL)",
                                     f"{A.CALLS_MAP}.lookup")]
    assert order == sorted(order)
    assert f"BPF_PERCPU_ARRAY({A.CALLS_MAP}, u64, 1);" in text and A.COUNTS_MAP not in text
    assert "KSNOOP_OUTPUT" not in prog and "ksnoop_scratch" not in prog
    assert [(fp.name, e, r) for fp, e, r in probes] == [("tp:sys_enter", "ksnoop_entry_0", None)]


def test_count_by_comm_and_pid_keys(kernel):
    ap, text, _ = c_of(kernel, A.COUNT, "comm", "tp:sys_enter")
    assert ap.str_bytes == A.COMM_LEN
    prog = program(text, "ksnoop_entry_0")
    assert "bpf_get_current_comm(k->str, 16);" in prog and "ksnoop_agg_count(k);" in prog
    assert f"BPF_PERCPU_HASH({A.COUNTS_MAP}, struct ksnoop_agg_key, u64, {A.DEFAULT_KEYS});" in text
    ap, text, _ = c_of(kernel, A.COUNT, "pid", "tp:sys_enter", keys=99)
    assert "k->num = id >> 32;" in program(text, "ksnoop_entry_0") and "u64, 99);" in text
    assert ap.str_bytes == 0 and "char str" not in text


def test_count_by_a_value_reads_it_once(kernel):
    """--by a predicated value: one slot, tested then used as the key."""
    ap, text, _ = c_of(kernel, A.COUNT, "id", "tp:sys_enter(id > 3)")
    (v,) = ap.funcs[0].fp.entry
    assert v.name == "id" and v.preds and ap.funcs[0].value.name == "id"
    prog = program(text, "ksnoop_entry_0")
    assert prog.count("ctx->args[1]") == 1
    assert "k->num = (u64)(s64)(e->v0_ptr);" in prog


def test_hist_of_a_signed_value_has_a_negative_bucket(kernel):
    ap, text, _ = c_of(kernel, A.HIST, "id", "tp:sys_enter")
    prog = program(text, "ksnoop_entry_0")
    assert f"(s64)k->num < 0 ? {A.SLOT_NEGATIVE} :" in prog
    assert f"k->status ? {A.SLOT_UNREADABLE} :" in prog
    assert f"BPF_PERCPU_ARRAY({A.HIST_MAP}, u64, {A.HIST_SLOTS});" in text
    _, text, _ = c_of(kernel, A.HIST, "regs->di", "tp:sys_enter")
    assert "< 0 ?" not in program(text, "ksnoop_entry_0")  # unsigned long


def test_pointer_and_string_keys(kernel):
    ap, text, _ = c_of(kernel, A.COUNT, "regs", "tp:sys_enter")
    assert ap.funcs[0].value.kind == DEREF and ap.funcs[0].value.size == 8
    prog = program(text, "ksnoop_entry_0")
    assert "k->num = e->v0_ptr;" in prog and "bpf_probe_read_kernel(e->v0_data" not in prog


def test_option_value_errors_point_into_the_option():
    spec = __import__("ksnoop.trace.spec", fromlist=["parse"]).parse("tp:sys_enter(id == 1)")
    full, vs = A._option_value(spec, "--by", "regs->di")
    assert full == "tp:sys_enter(id == 1) --by regs->di"
    assert full[vs.pos:vs.end] == "regs->di" and full[vs.steps[0].pos:].startswith("di")
    for text, message in [("id == 3", "not a comparison"), ("a, b", "one value"),
                          ("a && b", "one value"), ("regs->", "found its end"), ("1x", "bad number")]:
        with pytest.raises(SpecError) as e:
            A._option_value(spec, "--by", text)
        assert message in e.value.message, (text, e.value.message)
        assert e.value.text.startswith(spec.text + " --by ")
        assert e.value.pos >= len(spec.text + " --by "), text


@pytest.mark.parametrize("kind,value,spec,message", [
    (A.HIST, "", "tp:sys_enter", "tracepoint, which has no duration"),
    (A.HIST, "duration", "tp:sys_enter", "tracepoint, which has no duration"),
    (A.HIST, "comm", "tp:sys_enter", "not a quantity"),
    (A.COUNT, "duration", "tp:sys_enter", "hist --of duration"),
])
def test_usage_errors(kernel, kind, value, spec, message):
    with pytest.raises(UsageError) as e:
        A.build([spec], A.Aggregation(kind, value), kernel)
    assert message in str(e.value)


def test_values_that_cannot_be_keys(kernel):
    with pytest.raises(SpecError) as e:
        A.build(["tp:sys_enter"], A.Aggregation(A.HIST, "regs"), kernel)
    assert "needs a number" in e.value.message and e.value.text.endswith("--of regs")
    with pytest.raises(SpecError):
        A.build(["tp:sys_enter"], A.Aggregation(A.COUNT, "nope"), kernel)


# ------------------------------------------------------------------ reports and output
@pytest.fixture(scope="module")
def btf(vmlinux_btf):
    return vmlinux_btf


def fake_plan(btf, kind, source, values, by="", str_bytes=0):
    """An AggPlan over hand-made functions, for the output code."""
    funcs, fps = [], []
    for i, (name, v) in enumerate(values):
        fp = FuncPlan(index=i, name=name, module="", addr=0, btf=btf, entry=(v,) if v else ())
        funcs.append(A.AggFunc(fp, v, False, False,
                               str_bytes if v is not None and v.kind in (STRING, MEMORY) else 0))
        fps.append(fp)
    agg = A.Aggregation(kind, by)
    return A.AggPlan(TracePlan(tuple(fps), 256, "x86_64"), agg, source, tuple(funcs), str_bytes)


def int_value(btf, name="v", type_name="int", ctype="s32"):
    from ksnoop.btf import Kind

    (tid,) = btf.find(type_name, Kind.INT)[:1]
    return Value(name, False, SCALAR, tid, tid, "r", ctype=ctype)


def key(func, num=0, status=0, raw=b""):
    return A.Key(func, status, num, raw)


def test_interval_reports_are_differences(btf):
    ap = fake_plan(btf, A.COUNT, A.PID, [("f", None), ("g", None)], by="pid")
    r1 = ({key(0, 10): 5, key(1, 11): 2}, 0)
    r2 = ({key(0, 10): 9, key(1, 11): 2, key(0, 12): 1}, 3)
    rep = make_report(ap, r2, r1, 2, False, 100.0, 1.0)
    assert [(af.fp.name, k.num, n) for af, k, n in rep.rows] == [("f", 10, 4), ("f", 12, 1)]
    assert rep.overflow == 3 and rep.total == 5
    first = make_report(ap, r1, ({}, 0), 1, False, 99.0, 1.0)
    assert first.total == 7 and first.rows[0][2] == 5  # biggest first


def text_of(rep, colour=False):
    import io

    out = io.StringIO()
    Writer("text", out, colour=colour).write(rep)
    return out.getvalue()


def test_count_table_plain_and_with_bars(btf):
    ap = fake_plan(btf, A.COUNT, A.CALLS, [("tp:sys_enter", None), ("ip_send_skb", None)])
    rep = Report(ap, 0, True, 1.0, 1.0, rows=[(ap.funcs[0], None, 2000000), (ap.funcs[1], None, 3)])
    plain = text_of(rep)
    assert plain.splitlines() == ["FUNCTION        COUNT", "tp:sys_enter  2000000",
                                  "ip_send_skb         3"]
    assert "\033" not in plain and "█" not in plain
    bars = text_of(rep, colour=True)
    lines = [re.sub(r"\033\[[0-9;]*m", "", ln) for ln in bars.splitlines()]
    assert lines[1].startswith("tp:sys_enter  2000000 ") and lines[1].rstrip().endswith("█")
    assert lines[1].count("█") >= 10 and "█" not in lines[2] and lines[2].endswith("▏")


def test_count_keys_are_escaped_and_aligned(btf):
    ap = fake_plan(btf, A.COUNT, A.COMM, [("f", None)], by="comm", str_bytes=16)
    rep = Report(ap, 3, False, 5.0, 1.0, rows=[(ap.funcs[0], key(0, raw=b"evil\033[2Jname"), 7),
                                              (ap.funcs[0], key(0, raw=b"\xffbad"), 1)])
    text = text_of(rep)
    assert "\033" not in text and "evil\\033[2Jname" in text and "\\377bad" in text
    assert re.match(r"\[\d\d:\d\d:\d\d\] interval 3 \(1\.00 s\)$", text.splitlines()[0])
    assert text.splitlines()[1].split() == ["FUNCTION", "COMM", "COUNT"]
    obj = json.loads(Writer("json", None).json(rep))
    assert obj["counts"][0] == {"function": "f", "value": "evil\u001b[2Jname", "count": 7}
    assert obj["counts"][1]["value"] == "\\xffbad"
    assert Writer("json", None).json(rep).isascii()


def test_value_keys_numbers_strings_pointers_errors(btf):
    s32 = int_value(btf)
    sv = Value("name", False, STRING, s32.type_id, s32.type_id, "r", size=8)
    pv = Value("ptr", False, DEREF, s32.type_id, s32.type_id, "r", size=8)
    mv = Value("dev->name", False, MEMORY, s32.type_id, s32.type_id, "r", size=16)  # a char array
    ap = fake_plan(btf, A.COUNT, A.VALUE, [("a", s32), ("b", sv), ("c", pv), ("d", mv)], by="x",
                   str_bytes=16)
    a, b, c, d = ap.funcs
    rows = [(a, key(0, (1 << 64) - 22), 6), (a, key(0, 5), 5), (a, key(0, 0, -14), 4),
            (b, key(1, raw=b'say "hi"\n'), 3), (b, key(1, status=A.STATUS_NULL), 2),
            (c, key(2, 0xffff888012345678), 1), (c, key(2, 0), 1), (d, key(3, raw=b"lo"), 1)]
    rep = Report(ap, 0, True, 1.0, 1.0, rows=rows)
    lines = text_of(rep).splitlines()
    cells = [ln.split(None, 1)[1].rsplit(None, 1)[0].strip() for ln in lines[1:]]
    assert cells == ["-22", "5", "? (-EFAULT)", '"say \\"hi\\"\\n"', "NULL", "0xffff888012345678", "NULL",
                     '"lo"']
    got = [(r.get("value"), r.get("error")) for r in json.loads(Writer("json", None).json(rep))["counts"]]
    assert got == [(-22, None), (5, None), (None, "-EFAULT"), ('say "hi"\n', None), (None, None),
                   ("0xffff888012345678", None), ("0x0", None), ("lo", None)]


def test_enum_keys_print_their_names(btf):
    from ksnoop.btf import Kind

    tid = btf.find("pid_type", Kind.ENUM)[0]
    names = {v.value: v.name for v in btf[tid].values}
    v = Value("type", False, SCALAR, tid, tid, "r", ctype="u32")
    ap = fake_plan(btf, A.COUNT, A.VALUE, [("f", v)], by="type")
    rep = Report(ap, 0, True, 1.0, 1.0, rows=[(ap.funcs[0], key(0, 0), 2), (ap.funcs[0], key(0, 999), 1)])
    text = text_of(rep)
    assert names[0] in text and " 999 " in text
    assert [r["value"] for r in json.loads(Writer("json", None).json(rep))["counts"]] == [names[0], 999]


def test_hist_text_and_json(btf):
    v = int_value(btf, "len")
    ap = fake_plan(btf, A.HIST, A.VALUE, [("tp:x", v)], by="len")
    buckets = {A.SLOT_NEGATIVE: 1, 8: 2000000, A.SLOT_UNREADABLE: 4}
    rep = Report(ap, 0, True, 1.0, 1.0, hists=[(ap.funcs[0], buckets)])
    lines = text_of(rep).splitlines()
    assert lines[0] == "tp:x: len, 2000005 values"
    assert [ln.split()[-1] for ln in lines[1:]] == ["1"] + ["0"] * 7 + ["2000000", "4"]
    assert lines[1].split()[:2] == ["(...,", "0)"] and lines[9].split()[:2] == ["[64,", "128)"]
    assert lines[10].split()[0] == "unreadable"
    coloured = [re.sub(r"\033\[[0-9;]*m", "", ln) for ln in text_of(rep, colour=True).splitlines()]
    assert coloured[9].endswith("|") and "█" in coloured[9] and coloured[2].rstrip().endswith("|")
    obj = json.loads(Writer("json", None).json(rep))
    (h,) = obj["histograms"]
    assert obj["of"] == "len" and obj["total"] == 2000005 and h["count"] == 2000005
    assert h["buckets"] == [{"low": None, "high": -1, "count": 1}, {"low": 64, "high": 127, "count": 2000000}]
    assert h["unreadable"] == 4 and obj["final"] is True and obj["kind"] == "hist"


def test_empty_reports(btf):
    ap = fake_plan(btf, A.COUNT, A.CALLS, [("f", None)])
    assert text_of(Report(ap, 2, False, 1.0, 0.5)).splitlines()[1] == "(no calls)"
    obj = json.loads(Writer("json", None).json(Report(ap, 2, False, 1.0, 0.5)))
    assert obj["counts"] == [] and obj["total"] == 0 and obj["interval"] == 2 and obj["by"] is None


# ------------------------------------------------------------------ command line
def ksnoop(*args):
    """The command line, in this process (clirun): its exit code, stdout, stderr."""
    return clirun.completed(*args, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["hist", "tp:sys_enter"], "no duration"),
    (["count", "-n", "2", "tp:sys_enter"], "needs -i/--interval"),
    (["count", "tp:sys_enter", "--by", "a, b"], "one value"),
    (["count", "tp:sys_enter", "--max-keys", "0"], "--max-keys"),
    (["count", "tp:sys_enter", "-s", "1000"], "-s"),
])
def test_cli_usage_errors_are_one_line(kernel, args, message):
    p = ksnoop(*args)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("ksnoop: ") and message in p.stderr


def test_help_lists_the_commands():
    p = ksnoop("--help")
    assert re.search(r"^\s+count\s", p.stdout, re.M) and re.search(r"^\s+hist\s", p.stdout, re.M)
    for cmd in ("count", "hist"):
        h = ksnoop(cmd, "--help").stdout
        assert "Examples:" in h and f"ksnoop {cmd} " in h and "-i, --interval" in h


def test_stash_maps_share_a_budget(btf):
    """Preallocated stash maps: full size for a few functions, less each for many."""
    def plan(n):
        fps = [FuncPlan(index=i, name=f"f{i}", module="", addr=0, btf=btf) for i in range(n)]
        funcs = tuple(A.AggFunc(fp, None, True, True) for fp in fps)
        return A.AggPlan(TracePlan(tuple(fps), 256, "x86_64"), A.Aggregation(A.HIST), A.DURATION, funcs, 0)

    assert plan(1).stash_entries == plan(6).stash_entries == A.STASH_MAX
    assert plan(20).stash_entries == A.STASH_TOTAL // 20
    assert plan(1000).stash_entries == A.STASH_MIN
