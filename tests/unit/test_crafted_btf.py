"""Crafted BTF (issue #11, defect 15): types that contain themselves, typedef and
qualifier loops, arrays whose sizes overflow, members past the end of their
struct.  Everywhere types are walked (``info``, ``render`` in all three styles,
the library's renderers, declarations, member search) each is one clean line
and exit 1, in bounded time; types the kernel accepts but that ask for
unbounded work (4 GiB arrays with a few bytes of data, members that overlap by
the thousand, deep nesting) render what the data holds, or stop with a
RenderError, also in bounded time."""

import re
import struct
import time

import pytest
from btfwriter import BTFWriter
from clirun import Hung, assert_one_error_line, deadline, run_cli

from ksnoop.btf import BTF, Kind
from ksnoop.btf.cdecl import param_list, type_name
from ksnoop.btf.types import MAX_NESTING
from ksnoop.errors import BTFError, RenderError
from ksnoop.kernel import callconv
from ksnoop.render import Renderer
from ksnoop.render import values as D
from ksnoop.render.snprintf import KernelRenderer
from ksnoop.render.textgen import compile_text
from ksnoop.trace.resolve import find_member

STYLES = ("ksnoop", "kernel", "json")
DEADLINE = 10.0  # seconds for one run; the old code ran for minutes or recursed


def load(blob):
    return BTF(blob, use_cache=False)


# --------------------------------------------------------------- the blobs
def struct_contains_itself():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    s = w.next_id
    w.struct("s", 8, [("a", i, 0), ("me", s, 32)])  # struct s { int a; struct s me; }
    w.typedef("a", s)
    w.func("fn", w.func_proto(i, [("p", w.ptr(s)), ("v", s)]))
    return w.build()


def typedef_loop():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    a = w.next_id
    w.typedef("a", a + 1)
    w.typedef("b", a)
    w.struct("s", 4, [("x", a, 0)])
    w.func("fn", w.func_proto(i, [("v", a)]))
    return w.build()


def const_loop():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    c = w.next_id
    w.const(c)
    w.typedef("a", c)
    w.struct("s", 4, [("x", c, 0)])
    w.func("fn", w.func_proto(i, [("v", c)]))
    return w.build()


def array_0xffffffff():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    arr = w.array(i, 0xFFFFFFFF)
    w.typedef("a", arr)
    s = w.struct("s", 16, [("x", i, 0), ("big", arr, 32)])
    w.func("fn", w.func_proto(i, [("v", s)]))
    return w.build()


def array_of_arrays():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    row = w.array(i, 0x10000)
    plane = w.array(row, 0x10000)  # 16 GiB
    cube = w.array(plane, 0x10000)
    w.typedef("a", cube)
    s = w.struct("s", 16, [("c", plane, 0)])
    w.func("fn", w.func_proto(i, [("v", s)]))
    return w.build()


def member_past_size():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    s = w.struct("s", 8, [("x", i, 0), ("far", i, 0xFFFFFF00)])
    w.typedef("a", s)
    w.func("fn", w.func_proto(i, [("v", s)]))
    return w.build()


# (name, blob builder, message of every refusal)
REFUSED = [
    ("struct contains itself", struct_contains_itself, "struct s (id 2) contains itself"),
    ("typedef loop", typedef_loop, "contains itself"),
    ("const loop", const_loop, "const (id 2) contains itself"),
    ("array of 0xffffffff ints", array_0xffffffff, "is larger than 4 GiB"),
    ("array of arrays", array_of_arrays, "is larger than 4 GiB"),
    ("member past its struct", member_past_size, "member 'far' of struct s (id 2) ends at byte"),
]
IDS = [r[0] for r in REFUSED]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "cache"))


def timed_cli(argv):
    t0 = time.monotonic()
    code, out, err = run_cli(argv, timeout=DEADLINE)
    return code, out, err, time.monotonic() - t0


# -------------------------------------------------------- the command line
@pytest.mark.parametrize("name,build,message", REFUSED, ids=IDS)
def test_info_refuses_in_one_line(tmp_path, name, build, message):
    f = tmp_path / "crafted.btf"
    f.write_bytes(build())
    code, out, err, _ = timed_cli(["info", "--btf", f, "fn"])
    line = assert_one_error_line(code, err)
    assert message in line or "loop" in line, line  # a declaration may find the loop first
    assert out == b""


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("type_name_", ["struct s", "a"])
@pytest.mark.parametrize("name,build,message", REFUSED, ids=IDS)
def test_render_refuses_in_one_line(tmp_path, name, build, message, type_name_, style):
    f = tmp_path / "crafted.btf"
    f.write_bytes(build())
    data = tmp_path / "data"
    data.write_bytes(bytes(range(1, 65)))
    code, out, err, _ = timed_cli(["render", "--btf", f, type_name_, data, "-f", style])
    line = assert_one_error_line(code, err)
    assert message in line, line
    assert out == b""


@pytest.mark.parametrize("name,build,message", REFUSED, ids=IDS)
def test_library_refuses_with_btf_errors(name, build, message):
    btf = load(build())
    (s,) = btf.find("s", Kind.STRUCT)
    (fn,) = btf.find("fn", Kind.FUNC)
    data = bytes(range(1, 65))
    pattern = re.escape(message)
    with deadline(DEADLINE, name):
        for style in STYLES:
            with pytest.raises(BTFError, match=pattern):
                Renderer(btf, s, style)
        with pytest.raises(BTFError, match=pattern):
            KernelRenderer(btf, s)
        with pytest.raises(BTFError, match=pattern):
            compile_text(btf, s)
        with pytest.raises(BTFError, match=pattern):
            D.decode(btf, s, data)
        with pytest.raises(BTFError, match=pattern):
            btf.check(s)
        with pytest.raises(BTFError):
            callconv.assign(btf, btf[btf[fn].type])
        with pytest.raises(BTFError, match=pattern):
            find_member(btf, s, "nope")
        # a declaration never walks into a struct: the name is fine
        assert type_name(btf, s) == "struct s"


def test_a_refused_type_does_not_spoil_the_others():
    """Checking is per type: the same BTF's good types still render."""
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    bad = w.next_id
    w.struct("bad", 4, [("me", bad, 0)])
    good = w.struct("good", 16, [("x", i, 0), ("p", w.ptr(bad), 64)])
    btf = load(w.build())
    with pytest.raises(BTFError, match="contains itself"):
        btf.check(bad)
    data = struct.pack("<iiQ", 7, 0, 0x1234)
    assert Renderer(btf, good, "json").render(data) == '{"x":7,"p":"0x1234"}'
    with pytest.raises(BTFError, match="contains itself"):
        btf.check(bad)  # and a refusal is not remembered as a pass


# ---------------------------------------- types the kernel accepts, extreme
def huge_arrays():
    w = BTFWriter()
    ids = {}
    ids["int"] = i = w.int("int", 4, signed=True)
    ids["char"] = c = w.int("char", 1, char=True)
    ids["int[0x3fffffff]"] = w.array(i, 0x3FFFFFFF)  # 4 GiB - 4 bytes: the kernel accepts it
    ids["int[10]"] = w.array(i, 10)
    ids["int[18]"] = w.array(i, 18)
    ids["char[20]"] = w.array(c, 20)
    ids["char[0xffffffff]"] = w.array(c, 0xFFFFFFFF)
    ids["many"] = w.typedef("many", ids["int[0x3fffffff]"])
    ids["big"] = w.struct("big", 0xFFFFFFFF, [("c", ids["char[0xffffffff]"], 0)])
    return load(w.build()), ids


def test_an_array_of_a_billion_ints_decodes_only_what_the_data_holds():
    btf, ids = huge_arrays()
    data = struct.pack("<4i", 1, 2, 0, -4)
    n = 0x3FFFFFFF
    with deadline(2, "decode"):
        node = D.decode(btf, ids["many"], data)
    assert isinstance(node, D.Array)
    assert [e.value for e in node.elems[:4]] == [1, 2, 0, -4]
    assert len(node.elems) == 5
    rest = node.elems[4]
    assert isinstance(rest, D.Missing) and (rest.offset, rest.size) == (16, (n - 4) * 4)
    with deadline(2, "render"):
        assert Renderer(btf, ids["many"]).render(data) == \
            "(many)[1, 2, [3] = -4] /* 16 of 4294967292 bytes */\n"
        assert Renderer(btf, ids["many"], "json").render(data) == "[1,2,0,-4]"


def test_a_partial_element_and_a_short_array_keep_their_rendering():
    """Cutting at the elements present gives the same text as before: an element
    cut in the middle is missing, as are the ones after it."""
    btf, ids = huge_arrays()
    data = struct.pack("<3i", 5, 6, 7) + b"\x01\x02"
    node = D.decode(btf, ids["int[10]"], data)
    assert [type(e).__name__ for e in node.elems] == ["Int", "Int", "Int", "Missing", "Missing"]
    assert node.elems[3].size == 4 and node.elems[4].size == 6 * 4
    assert Renderer(btf, ids["int[10]"]).render(data) == "(int[10])[5, 6, 7] /* 14 of 40 bytes */\n"


def test_kernel_style_on_a_billion_ints_with_40_bytes():
    """The kernel copies each element through a 32-byte window and skips, one by
    one, those whose window reaches past the data: for 40 bytes of a big array
    that is elements 7 on (element 7's window ends at byte 60).  int[18] has no
    element past byte 72 so nothing is skipped in bulk there; a billion ints
    skipped at once must print the same, at once."""
    btf, ids = huge_arrays()
    data = struct.pack("<10i", *range(1, 11))
    for flags in (0, 1, 8, 9):
        ref = KernelRenderer(btf, ids["int[18]"], flags).show(data)
        with deadline(2, "kernel render"):
            billion = KernelRenderer(btf, ids["int[0x3fffffff]"], flags).show(data)
        assert billion == ref
    assert ref == ("(int[])[1,2,3,4,5,6,7,]", -14)  # COMPACT|ZERO; -EFAULT


def test_a_4_gib_char_array_with_16_bytes():
    btf, ids = huge_arrays()
    data = b"hello\0world\0\0\0\0\0"
    with deadline(2, "char array"):
        assert Renderer(btf, ids["big"], "json").render(data) == \
            '{"c":"hello","__truncated__":{"have":16,"size":4294967295}}'
        assert KernelRenderer(btf, ids["char[0xffffffff]"]).show(data)[0] == ""  # window fault
        text = KernelRenderer(btf, ids["char[0xffffffff]"]).show(data + bytes(32))
        assert text == KernelRenderer(btf, ids["char[20]"]).show(data + bytes(32))
        assert "'o'" in text[0] and "'w'" not in text[0]


def fan_out(width=1000):
    """A union of `width` unions of `width` unions of `width` ints: 10^9 values in
    4 bytes.  The kernel accepts it (union members all at offset 0)."""
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    u1 = w.union("u1", 4, [(f"a{k}", i, 0) for k in range(width)])
    u2 = w.union("u2", 4, [(f"b{k}", u1, 0) for k in range(width)])
    u3 = w.union("u3", 4, [(f"c{k}", u2, 0) for k in range(width)])
    w.func("fn", w.func_proto(i, [("v", u3)]))
    return w.build(), u3


def test_members_that_overlap_by_the_thousand_are_a_render_error():
    blob, u3 = fan_out()
    btf = load(blob)
    for style in STYLES:
        with deadline(DEADLINE, style):
            r = Renderer(btf, u3, style)
            with pytest.raises(RenderError, match="union u3 .* than can be rendered|items to show"):
                r.render(b"\1\0\0\0")


def test_overlapping_members_on_the_command_line(tmp_path):
    blob, _ = fan_out()
    f = tmp_path / "fan.btf"
    f.write_bytes(blob)
    data = tmp_path / "data"
    data.write_bytes(b"\1\0\0\0")
    for style in STYLES:
        code, out, err, took = timed_cli(["render", "--btf", f, "union u3", data, "-f", style])
        assert_one_error_line(code, err)
    code, out, err, _ = timed_cli(["info", "--btf", f, "fn"])
    assert (code, out) == (0, b"int fn(union u3 v);\n"), err


def test_an_array_of_four_billion_empty_structs():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    e = w.struct("e", 0, [])
    arr = w.array(e, 0xFFFFFFFF)  # 0 bytes: the kernel accepts it
    s = w.struct("s", 4, [("x", i, 0), ("none", arr, 32)])
    btf = load(w.build())
    for style in STYLES:
        with deadline(DEADLINE, style):
            with pytest.raises(RenderError):
                Renderer(btf, s, style).render(b"\1\0\0\0")


def nested(levels):
    """struct n1 { int x; }, struct n2 { struct n1 x; } ... struct n<levels>."""
    w = BTFWriter()
    tid = w.int("int", 4, signed=True)
    for k in range(1, levels + 1):
        tid = w.struct(f"n{k}", 4, [("x", tid, 0)])
    return load(w.build()), tid


def test_nesting_up_to_the_limit_renders_in_every_style():
    btf, top = nested(MAX_NESTING)
    for style in STYLES:
        text = Renderer(btf, top, style).render(b"\7\0\0\0")
        assert "7" in text
    assert KernelRenderer(btf, top).show(b"\7\0\0\0")[0].count("{") == MAX_NESTING


def test_nesting_past_the_limit_is_refused():
    btf, top = nested(MAX_NESTING + 1)
    for style in STYLES:
        with pytest.raises(BTFError, match=f"more than {MAX_NESTING} levels deep"):
            Renderer(btf, top, style)


def test_a_zero_bit_integer():
    """The kernel accepts an INT of 0 bits; its printing shifts by 128 (undefined in
    C), so the kernel style refuses it and the others show 0."""
    w = BTFWriter()
    z = w.int("nothing", 4, bits=0)
    s = w.struct("s", 4, [("z", z, 0)])
    btf = load(w.build())
    assert Renderer(btf, s, "json").render(b"\xff" * 4) == '{"z":0}'
    assert Renderer(btf, s, "ksnoop", flags=8).render(b"\xff" * 4) == \
        "(struct s){\n .z = (nothing)0,\n}\n"
    with pytest.raises(RenderError, match="0-bit integer"):
        Renderer(btf, z, "kernel").render(b"\xff" * 4)


# --------------------------------------------------- member search, cdecl
def test_find_member_through_an_anonymous_member_that_contains_itself():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    s = w.next_id
    w.struct("s", 8, [("x", i, 0), ("", s, 32)])
    btf = load(w.build())
    with deadline(DEADLINE, "find_member"):
        with pytest.raises(BTFError, match="contains itself"):
            find_member(btf, s, "y")


def test_find_member_through_a_thousand_anonymous_unions_per_level():
    """Valid BTF whose anonymous members fan out 200^3 ways: each is searched once."""
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    u = w.union("", 4, [("x", i, 0)])
    for _ in range(3):
        u = w.union("", 4, [("", u, 0)] * 200)
    top = w.struct("top", 4, [("", u, 0)])
    btf = load(w.build())
    with deadline(2, "find_member"):
        assert find_member(btf, top, "nope") is None
        off, m = find_member(btf, top, "x")
    assert (off, m.name) == (0, "x")


def test_a_prototype_that_takes_a_pointer_to_itself():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    proto = w.next_id
    w.func_proto(i, [("f", proto + 1)])
    w.ptr(proto)
    btf = load(w.build())
    with deadline(DEADLINE, "declare"):
        with pytest.raises(BTFError, match="prototypes nest more than"):
            type_name(btf, proto)
        with pytest.raises(BTFError, match="prototypes nest more than"):
            param_list(btf, btf[proto])


def test_prototypes_whose_parameters_multiply():
    """Each level has 100 parameters of the level below: a declaration of 10^8
    parameters is refused as too long, quickly."""
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    p = w.ptr(w.func_proto(i, [("x", i)]))
    for _ in range(4):
        p = w.ptr(w.func_proto(i, [(f"p{k}", p) for k in range(100)]))
    btf = load(w.build())
    with deadline(DEADLINE, "declare"):
        with pytest.raises(BTFError, match="too long"):
            type_name(btf, p)


def test_the_checks_refuse_nothing_in_the_running_kernel(vmlinux_btf):
    """Every type reachable by value from a sample of vmlinux passes (the whole
    kernel passes too, in ~6 s; bench/info_speed.py measures the cost)."""
    import random

    rng = random.Random(15)
    ids = rng.sample(range(1, len(vmlinux_btf)), 3000)
    for tid in ids:
        vmlinux_btf.check(tid)
    assert max(vmlinux_btf._checked.values()) <= MAX_NESTING


def test_a_hung_run_is_reported():
    """The deadline used above does interrupt a run."""
    with pytest.raises(Hung):
        with deadline(0.2, "sleeper"):
            time.sleep(600)  # interrupted after 0.2 s (times KSNOOP_TIME_SCALE)


def test_skipping_elements_past_the_data_changes_no_kernel_text(vmlinux_btf, monkeypatch):
    """The kernel walks every element of an array, each past the data failing with no
    output; the model stops at the first that cannot reach the data.  With that
    switched off (every element walked) the text and status are the same, on real
    types cut short at random, under every flag."""
    import random

    from ksnoop.render import snprintf

    btf = vmlinux_btf
    rng = random.Random(1511)
    holders = []
    for tid in btf.ids(Kind.STRUCT):
        t = btf[tid]
        if 64 <= t.size <= 4096 and any(
                btf[btf.resolve(m.type)].kind == Kind.ARRAY and btf.size_of(m.type) >= 64
                for m in t.members):
            holders.append(tid)
    steps = [0]
    real_show = snprintf._Show.show

    def counting_show(self, *args):
        steps[0] += 1
        real_show(self, *args)

    monkeypatch.setattr(snprintf._Show, "show", counting_show)
    fewer = 0
    for tid in rng.sample(holders, min(150, len(holders))):
        size = btf[tid].size
        data = bytes(rng.getrandbits(8) if rng.random() < 0.7 else 0
                     for _ in range(rng.randrange(32, size)))
        flags = rng.randrange(16)
        steps[0] = 0
        with_skip = KernelRenderer(btf, tid, flags).show(data)
        skipping = steps[0]
        read_first, snprintf._READ_FIRST = snprintf._READ_FIRST, frozenset()
        try:
            steps[0] = 0
            walked = KernelRenderer(btf, tid, flags).show(data)
        finally:
            snprintf._READ_FIRST = read_first
        assert with_skip == walked, (tid, flags, len(data))
        fewer += skipping < steps[0]
    print(f"{fewer} of 150 renders skipped elements")
    assert fewer >= 30  # the skip did happen, often


def test_info_on_overlapping_members_passed_on_the_stack(tmp_path):
    """A stack argument's alignment looks into its members: once per member type."""
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    u = i
    for level in range(8):
        u = w.union(f"u{level}", 4, [(f"m{k}", u, 0) for k in range(200)])
    params = [(f"a{k}", i) for k in range(6)] + [("v", u)]
    w.func("fn", w.func_proto(i, params))
    f = tmp_path / "stack.btf"
    f.write_bytes(w.build())
    code, out, err, _ = timed_cli(["info", "--btf", f, "fn"])
    assert code == 0, err
    assert out.decode().startswith("int fn(int a0, int a1, int a2, int a3, int a4, int a5, union u7 v")


def pointer_to_a_qualifier_loop():
    """A pointer to const -> volatile -> const...: the loop sits behind a
    pointer, so no value contains it; only the pointer's name walks it (found
    by test_fuzz_btf.py, seed 2774580480: the kernel style ran forever)."""
    w = BTFWriter()
    w.int("int", 4, signed=True)
    c = w.next_id
    w.const(c + 1)
    w.volatile(c)
    p = w.ptr(c)
    w.typedef("p", p)
    w.struct("s", 8, [("q", p, 0)])
    return w.build()


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("type_name_", ["p", "struct s"])
def test_pointer_to_a_qualifier_loop_is_bounded(tmp_path, style, type_name_):
    f = tmp_path / "crafted.btf"
    f.write_bytes(pointer_to_a_qualifier_loop())
    data = tmp_path / "data"
    data.write_bytes(bytes(range(1, 9)))
    code, out, err, took = timed_cli(["render", "--btf", f, type_name_, data, "-f", style])
    assert took < DEADLINE
    if code:
        assert_one_error_line(code, err)
    else:
        assert out and "Traceback" not in err
