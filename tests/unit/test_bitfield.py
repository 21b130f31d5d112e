"""Bitfields, one definition everywhere (ksnoop.btf.bitfield): resolver ranges,
the C that codegen emits, the decoder, the text renderer and trace output.

The trace-output tests run the *generated* BPF C itself, compiled by gcc for
this machine with the BPF helpers and maps replaced by tiny user-space
stand-ins (``run_generated``): the bytes the program puts in the event are
decoded and formatted exactly as a live trace would.  The host tier
(tests/host/test_bitfield_host.py) runs the same C through the real kernel.
"""

import os
import re
import shutil
import subprocess

import cbuild
import pytest
from btfwriter import BTFWriter

from ksnoop.btf import BTF
from ksnoop.btf.bitfield import Bitfield
from ksnoop.errors import SpecError
from ksnoop.kernel.files import Kernel
from ksnoop.render import make_renderer
from ksnoop.render.text import TreeText
from ksnoop.render.values import Decoder, Enum, Int
from ksnoop.trace.codegen import Machine, generate
from ksnoop.trace.events import Decoder as EventDecoder
from ksnoop.trace.output import Formatter
from ksnoop.trace.resolve import resolve
from ksnoop.trace.spec import parse

MACHINE = Machine(self_tgid=1, ncpus=2)

# struct bf (8 bytes):     bits
#   int a:3                 0..2    signed
#   unsigned int b:5        3..7
#   enum se c:4             8..11   signed enum (kflag)
#   enum ue u:3             12..14  unsigned enum
#   long long d:40          15..54  signed, spans six bytes from bit 7 of byte 1
FIELDS = {"a": (0, 3), "b": (3, 5), "c": (8, 4), "u": (12, 3), "d": (15, 40)}


def bitfield_btf():
    """(BTF blob, {name: type id}) of struct bf and functions taking a pointer to it."""
    w = BTFWriter()
    ids = {}
    ids["int"] = w.int("int", 4, signed=True)
    ids["unsigned int"] = w.int("unsigned int", 4)
    ids["long long"] = w.int("long long", 8, signed=True)
    ids["se"] = w.enum("se", [("NEG", -1), ("ZERO", 0), ("ONE", 1)], signed=True)
    ids["ue"] = w.enum("ue", [("RED", 0), ("GREEN", 1), ("BLUE", 2)])
    ids["bf"] = w.struct("bf", 8, [
        ("a", ids["int"], 0, 3), ("b", ids["unsigned int"], 3, 5), ("c", ids["se"], 8, 4),
        ("u", ids["ue"], 12, 3), ("d", ids["long long"], 15, 40)])
    ids["bf *"] = w.ptr(ids["bf"])
    proto = w.func_proto(ids["int"], [("p", ids["bf *"]), ("x", ids["int"]), ("y", ids["int"])])
    ids["bf_fn"] = w.func("bf_fn", proto)
    ids["bf_ret"] = w.func("bf_ret", proto)
    return w.build(), ids


def pack(a=0, b=0, c=0, u=0, d=0):
    """The 8 bytes of a struct bf holding these values."""
    word = 0
    for name, v in (("a", a), ("b", b), ("c", c), ("u", u), ("d", d)):
        shift, width = FIELDS[name]
        word |= (v & ((1 << width) - 1)) << shift
    return word.to_bytes(8, "little")


BLOB, IDS = bitfield_btf()


@pytest.fixture(scope="module")
def btf():
    return BTF(BLOB, use_cache=False)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    d = tmp_path_factory.mktemp("bf")
    (d / "bf.btf").write_bytes(BLOB)
    return Kernel(btf_path=str(d / "bf.btf"), sys_btf=str(d), kallsyms_path="/nonexistent")


def plan_of(kernel, text):
    return resolve([parse(text)], kernel)


def member(btf, name):
    (m,) = [m for m in btf[IDS["bf"]].members if m.name == name]
    return m


# ------------------------------------------------------------------ the record
@pytest.mark.parametrize("name,expected", [
    ("a", (0, 0, 3, True, 1, -4, 3)),
    ("b", (0, 3, 5, False, 1, 0, 31)),
    ("c", (1, 0, 4, True, 1, -8, 7)),
    ("u", (1, 4, 3, False, 1, 0, 7)),
    ("d", (1, 7, 40, True, 6, -(1 << 39), (1 << 39) - 1)),
])
def test_record_from_a_member(btf, name, expected):
    bf = Bitfield.of_member(btf, member(btf, name))
    assert (bf.offset, bf.shift, bf.width, bf.signed, bf.nbytes, bf.lo, bf.hi) == expected


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_value_round_trips(btf, name):
    bf = Bitfield.of_member(btf, member(btf, name))
    values = range(bf.lo, bf.hi + 1) if bf.width < 8 else (bf.lo, bf.lo + 1, -5, -1, 0, 1, bf.hi)
    for v in values:
        data = pack(**{name: v})
        assert bf.value(data) == v
        assert bf.raw(data) == v & bf.mask
        assert bf.fits(v) and not bf.fits(bf.hi + 1) and not bf.fits(bf.lo - 1)
        # the neighbours' bits never leak in
        full = pack(**{n: -1 for n in FIELDS if n != name}, **{name: v})
        assert bf.value(full) == v


def test_container_offset_is_added(btf):
    inner = Bitfield.of_member(btf, member(btf, "d"), base_bits=64)
    assert (inner.offset, inner.shift) == (9, 7)
    data = bytes(8) + pack(d=-5)
    assert inner.value(data) == -5


def test_c_expression_needs_at_most_64_bits():
    Bitfield.at(0, 64, True).c_expr("w")
    with pytest.raises(ValueError):
        Bitfield.at(1, 64, True).c_expr("w")


# ------------------------------------------------------------ decoder, renderer
def test_decoder_sign_extends_signed_fields_only(btf):
    node = Decoder(btf).decode(IDS["bf"], pack(a=-1, b=17, c=-1, u=5, d=-5))
    f = dict(node.fields)
    assert isinstance(f["a"], Int) and (f["a"].value, f["a"].signed) == (-1, True)
    assert (f["b"].value, f["b"].signed) == (17, False)
    assert isinstance(f["c"], Enum) and (f["c"].value, f["c"].name) == (-1, "NEG")
    assert isinstance(f["u"], Enum) and (f["u"].value, f["u"].name) == (5, None)
    assert f["d"].value == -5


STAR_P = """\
(struct bf){
 .a = (int)-1,
 .b = (unsigned int)17,
 .c = (enum se)NEG,
 .u = (enum ue)5,
 .d = (long long)-5,
}"""


def test_star_p_renders_signed_values_compiled_and_tree(btf):
    data = pack(a=-1, b=17, c=-1, u=5, d=-5)
    r = make_renderer(btf, IDS["bf"], "ksnoop")
    assert r._fast is not None  # the compiled fast path is what renders here
    assert r.render(data).rstrip("\n") == STAR_P
    tree = TreeText(btf, 0).render_node(Decoder(btf).decode(IDS["bf"], data))
    assert tree.rstrip("\n") == STAR_P


def test_kernel_format_still_prints_raw_hex(btf):
    """bpf_snprintf_btf prints every bitfield zero-extended in hex: unchanged."""
    out = make_renderer(btf, IDS["bf"], "kernel", 1).render(pack(a=-1, b=17, c=-1, u=5, d=-5))
    assert out == ("(struct bf){.a = (int)0x7,.b = (unsigned int)0x11,.c = (enum se)0xf,"
                   ".u = (enum ue)0x5,.d = (long long)0xfffffffffb,}")


# ------------------------------------------------------------------ resolver
@pytest.mark.parametrize("text", [
    "bf_fn(p->a == -1)", "bf_fn(p->a == -4)", "bf_fn(p->a >= 3)", "bf_fn(p->b == 31)",
    "bf_fn(p->c == -8)", "bf_fn(p->c < 7)", "bf_fn(p->u == 7)", "bf_fn(p->d == -549755813888)",
])
def test_predicate_literals_in_range(kernel, text):
    (v,) = plan_of(kernel, text).funcs[0].entry
    assert v.preds and v.bitfield is not None


@pytest.mark.parametrize("text,msg", [
    ("bf_fn(p->a == 4)", "4 is out of range for p->a ('int:3': -4..3)"),
    ("bf_fn(p->a == -5)", "-5 is out of range for p->a ('int:3': -4..3)"),
    ("bf_fn(p->a == 7)", "7 is out of range for p->a ('int:3': -4..3)"),
    ("bf_fn(p->b == -1)", "-1 is out of range for p->b ('unsigned int:5': 0..31)"),
    ("bf_fn(p->c == 8)", "8 is out of range for p->c ('enum se:4': -8..7)"),
    ("bf_fn(p->u == -1)", "-1 is out of range for p->u ('enum ue:3': 0..7)"),
])
def test_predicate_literals_out_of_range(kernel, text, msg):
    with pytest.raises(SpecError) as ei:
        plan_of(kernel, text)
    assert ei.value.message == msg


def test_signed_fields_compare_signed(kernel):
    fp = plan_of(kernel, "bf_fn(p->a == -1, p->b == 1, p->c < 0, p->u == 1)").funcs[0]
    assert [v.ctype for v in fp.entry] == ["s64", "u64", "s64", "u64"]


# ------------------------------------------- the generated C, run in user space
HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;
typedef int8_t s8; typedef int16_t s16; typedef int32_t s32; typedef int64_t s64;
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
struct pt_regs { u64 di, si, dx, cx, r8, r9, sp, ax; };
static unsigned char mem[] = { %(mem)s };
static long probe_read(void *dst, u32 size, const void *src, int str)
{
	uintptr_t a = (uintptr_t)src, base = (uintptr_t)mem;
	printf("read %%ld %%u\n", (long)(a - base), size);
	if (a < base || a + size > base + sizeof(mem)) { memset(dst, 0, size); return -14; }
	memcpy(dst, src, size);
	if (str) { size_t n = strnlen(dst, size); ((char *)dst)[n < size ? n : size - 1] = 0;
		return n < size ? n + 1 : size; }
	return 0;
}
#define bpf_probe_read_kernel(d, n, s) probe_read((d), (n), (s), 0)
#define bpf_probe_read_user(d, n, s) probe_read((d), (n), (s), 0)
#define bpf_probe_read_kernel_str(d, n, s) probe_read((d), (n), (s), 1)
#define bpf_probe_read_user_str(d, n, s) probe_read((d), (n), (s), 1)
static u64 bpf_get_current_pid_tgid(void) { return (42ULL << 32) | 43; }
static u64 bpf_ktime_get_ns(void) { return 2000000000ULL; }
static u32 bpf_get_smp_processor_id(void) { return 1; }
static void bpf_get_current_comm(void *buf, u32 n) { memset(buf, 0, n); strcpy(buf, "cat"); }
/* one-entry maps are enough for one task making one call */
#define BPF_TABLE(kind, ktype, vtype, name, n) static struct { int used; ktype k; vtype v; } name
#define BPF_PERCPU_ARRAY(name, vtype, n) static struct { int used; u32 k; vtype v; } name = { 1, 0 }
#define MAP_lookup(m, kp) ((m).used && !memcmp(&(m).k, (kp), sizeof((m).k)) ? &(m).v : NULL)
#define MAP_update(m, kp, vp) ((m).used = 1, memcpy(&(m).k, (kp), sizeof((m).k)), \
	memcpy(&(m).v, (vp), sizeof((m).v)), 0)
#define MAP_delete(m, kp) ((m).used = 0)
static void emit(const unsigned char *p, u32 n)
{
	printf("event ");
	for (u32 i = 0; i < n; i++) printf("%%02x", p[i]);
	printf("\n");
}
#define KSNOOP_OUTPUT(ctx, data, size) emit((const unsigned char *)(data), (size))
%(program)s
int main(void)
{
	struct pt_regs r = { 0 };
%(calls)s
	return 0;
}
"""

needs_gcc = pytest.mark.skipif(not shutil.which("gcc"), reason="gcc not installed")


def run_generated(plan, memory, regs, ret=None, tmp=None):
    """Run the generated entry (then return) program of function 0 under gcc.

    ``regs``: register name -> value, or ``("mem", offset)`` for a pointer into
    ``memory``.  Returns (list of event bytes, list of (offset, size) reads)."""
    c_text, probes = generate(plan, MACHINE)
    program = re.sub(r"\b(\w+)\.(lookup|update|delete)\(", r"MAP_\2(\1, ", c_text)
    (_, entry_fn, return_fn), = probes
    calls = []
    for reg, val in regs.items():
        calls.append(f"\tr.{reg} = (u64)(mem + {val[1]});" if isinstance(val, tuple)
                     else f"\tr.{reg} = (u64){val}ULL;")
    if entry_fn:
        calls.append(f"\t{entry_fn}(&r);")
    if return_fn:
        calls.append(f"\tr.ax = (u64){ret or 0}LL;")
        calls.append(f"\t{return_fn}(&r);")
    src = HARNESS % {"mem": ", ".join(str(b) for b in memory), "program": program,
                     "calls": "\n".join(calls)}
    exe = os.path.join(tmp, "prog")
    cc = cbuild.build(src, exe)
    assert cc.returncode == 0, cc.stderr[:3000]
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    events = [bytes.fromhex(line.split()[1]) for line in out.splitlines() if line.startswith("event")]
    reads = [tuple(map(int, line.split()[1:])) for line in out.splitlines() if line.startswith("read")]
    return events, reads


def line_of(plan, data):
    return Formatter("line").event(EventDecoder(plan).decode(data)).split(" bf_fn(", 1)[1]


@needs_gcc
def test_trace_output_of_bitfield_members_is_signed(kernel, tmp_path):
    plan = plan_of(kernel, "bf_fn(p->a, p->b, p->c, p->u, p->d)")
    (ev,), reads = run_generated(plan, pack(a=-1, b=17, c=-1, u=5, d=-5), {"di": ("mem", 0)},
                                 tmp=str(tmp_path))
    assert line_of(plan, ev) == ("p->a = (int)-1, p->b = (unsigned int)17, p->c = (enum se)NEG, "
                                 "p->u = (enum ue)5, p->d = (long long)-5)")
    j = Formatter("json").event(EventDecoder(plan).decode(ev))
    assert '"p->a":-1' in j and '"p->d":-5' in j
    # and the largest and smallest values of each
    (ev,), _ = run_generated(plan, pack(a=-4, b=31, c=7, u=7, d=(1 << 39) - 1),
                             {"di": ("mem", 0)}, tmp=str(tmp_path))
    assert line_of(plan, ev) == ("p->a = (int)-4, p->b = (unsigned int)31, p->c = (enum se)7, "
                                 "p->u = (enum ue)7, p->d = (long long)549755813887)")


@needs_gcc
def test_trace_output_of_star_p(kernel, tmp_path):
    plan = plan_of(kernel, "bf_fn(p)")
    (ev,), _ = run_generated(plan, pack(a=-1, b=17, c=-1, u=5, d=-5), {"di": ("mem", 0)},
                             tmp=str(tmp_path))
    text = Formatter("text").event(EventDecoder(plan).decode(ev))
    assert text.split("\n", 1)[1] == "  p = *" + STAR_P.replace("\n", "\n  ") + "\n);"


@needs_gcc
@pytest.mark.parametrize("a,shown", [(-1, True), (3, False), (-4, False)])
def test_signed_predicate_in_the_generated_c(kernel, tmp_path, a, shown):
    plan = plan_of(kernel, "bf_fn(p->a == -1, p->c < 0, p->d == -5, x)")
    events, _ = run_generated(plan, pack(a=a, c=-1, d=-5), {"di": ("mem", 0), "si": 9},
                              tmp=str(tmp_path))
    assert len(events) == int(shown)
    if shown:
        assert line_of(plan, events[0]) == ("p->a = (int)-1, p->c = (enum se)NEG, "
                                            "p->d = (long long)-5, x = (int)9)")


@needs_gcc
def test_stash_return_predicate_and_entry_bitfield(kernel, tmp_path):
    plan = plan_of(kernel, "bf_fn(p->a == -1, p->d, return == -7)")
    assert plan.funcs[0].stash
    mem = pack(a=-1, d=-5)
    (ev,), _ = run_generated(plan, mem, {"di": ("mem", 0)}, ret=-7, tmp=str(tmp_path))
    # -7 is shown with its errno name; the harness's clock stands still: 0 us
    assert line_of(plan, ev) == ("p->a = (int)-1, p->d = (long long)-5) => return = (int)-7 (-E2BIG)"
                                 " (0.000us)")
    events, _ = run_generated(plan, mem, {"di": ("mem", 0)}, ret=0, tmp=str(tmp_path))
    assert events == []


@needs_gcc
def test_a_predicated_value_is_read_once_and_shown_as_tested(kernel, tmp_path):
    """One read of p->a's byte and one of p->d's bytes, predicates or not."""
    plan = plan_of(kernel, "bf_fn(p->a == -1, p->d != 0, p->a, p->d)")
    (ev,), reads = run_generated(plan, pack(a=-1, d=-5), {"di": ("mem", 0)}, tmp=str(tmp_path))
    assert sorted(reads) == [(0, 1), (1, 6)]
    assert line_of(plan, ev) == "p->a = (int)-1, p->d = (long long)-5)"


@needs_gcc
def test_failing_predicate_stops_before_later_reads(kernel, tmp_path):
    """Predicates run in the order written, each value read just before its first test."""
    plan = plan_of(kernel, "bf_fn(p->d == 1, p->a == -1, p)")
    events, reads = run_generated(plan, pack(a=-1, d=2), {"di": ("mem", 0)}, tmp=str(tmp_path))
    assert events == [] and reads == [(1, 6)]
    events, reads = run_generated(plan, pack(a=0, d=1), {"di": ("mem", 0)}, tmp=str(tmp_path))
    assert events == [] and reads == [(1, 6), (0, 1)]
    events, reads = run_generated(plan, pack(a=-1, d=1), {"di": ("mem", 0)}, tmp=str(tmp_path))
    assert len(events) == 1 and reads == [(1, 6), (0, 1), (0, 8)]  # then *p, once


def test_emitted_extraction_is_the_helpers(kernel, btf):
    c, _ = generate(plan_of(kernel, "bf_fn(p->d)"), MACHINE)
    bf = Bitfield.of_member(btf, member(btf, "d"))
    word = "*(u64 *)e->v0_data"
    assert f"{word} = (u64)((s64)((u64)({word}) << 17) >> 24);" in c
    assert bf.c_expr(word) == "(u64)((s64)((u64)(*(u64 *)e->v0_data) << 17) >> 24)"
    assert "bpf_probe_read_kernel(e->v0_data, 6, (void *)(p + 1))" in c


@needs_gcc
def test_the_fixture_layout_is_a_compilers(tmp_path):
    """struct bf as gcc lays it out (x86-64 SysV) holds the bytes pack() makes."""
    src = r"""
#include <stdio.h>
struct bf { int a:3; unsigned int b:5; int c:4; unsigned int u:3; long long d:40; };
int main(void) {
	struct bf s = { .a = -1, .b = 17, .c = -1, .u = 5, .d = -5 };
	unsigned char *p = (unsigned char *)&s;
	for (unsigned i = 0; i < sizeof(s); i++) printf("%02x", p[i]);
	return 0;
}
"""
    (tmp_path / "l.c").write_text(src)
    subprocess.run(["gcc", "-w", "-o", str(tmp_path / "l"), str(tmp_path / "l.c")], check=True)
    out = subprocess.run([str(tmp_path / "l")], capture_output=True, text=True, check=True).stdout
    assert bytes.fromhex(out) == pack(a=-1, b=17, c=-1, u=5, d=-5)
