"""The BTF reader on blobs made by tests/unit/btfwriter.py: the kinds the host kernel
has few or none of, split BTF, and corrupt input (always a one-line BTFError)."""

import struct

import pytest
from btfwriter import BTFWriter

from ksnoop.btf import BTF, Kind, VarSecInfo
from ksnoop.btf.cdecl import type_name
from ksnoop.btf.types import MAX_NESTING
from ksnoop.errors import BTFError

HDR = struct.Struct("<HBBIIIII")


def load(blob, base=None):
    return BTF(blob, base=base, use_cache=False)


# -------------------------------------------------------------------- kinds
@pytest.fixture(scope="module")
def kinds():
    w = BTFWriter()
    ids = {}
    ids["int"] = w.int("int", 4, signed=True)
    ids["uint"] = w.int("unsigned int", 4)
    ids["e64u"] = w.enum64("big", [("HUGE", 1 << 40), ("TOP", (1 << 64) - 1)])
    ids["e64s"] = w.enum64("sbig", [("NEG", -(1 << 40)), ("MIN", -(1 << 63)), ("ONE", 1)],
                           signed=True)
    ids["e32s"] = w.enum("small", [("M1", -1), ("P1", 1)], signed=True)
    ids["e32u"] = w.enum("usmall", [("X", 0xFFFFFFFF)])
    ids["double"] = w.float("double", 8)
    ids["ldouble"] = w.float("long double", 16)
    ids["tag_user"] = w.type_tag("user", ids["int"])
    ids["uptr"] = w.ptr(ids["tag_user"])
    ids["fwd_u"] = w.fwd("maybe", union=True)
    ids["fwd_s"] = w.fwd("opaque")
    ids["bits"] = w.struct("bits", 8, [("a", ids["uint"], 0, 3), ("b", ids["int"], 3, 5),
                                       ("c", ids["uint"], 32)])
    ids["plain"] = w.struct("plain", 8, [("x", ids["int"], 0), ("y", ids["int"], 32)])
    ids["tag_s"] = w.decl_tag("kfunc", ids["plain"])
    ids["tag_m"] = w.decl_tag("rcu", ids["plain"], component_idx=1)
    ids["var"] = w.var("counter", ids["int"], linkage=1)
    ids["var2"] = w.var("total", ids["uint"], linkage=2)
    ids["sec"] = w.datasec(".data", 8, [(ids["var"], 0, 4), (ids["var2"], 4, 4)])
    ids["proto"] = w.func_proto(ids["int"], [("x", ids["double"]), ("", 0)])
    ids["func"] = w.func("vfunc", ids["proto"], linkage=2)
    return load(w.build()), ids


def test_enum64_unsigned_and_signed(kinds):
    btf, ids = kinds
    u, s = btf[ids["e64u"]], btf[ids["e64s"]]
    assert (u.kind, u.size, u.signed) == (Kind.ENUM64, 8, False)
    assert [(v.name, v.value) for v in u.values] == [("HUGE", 1 << 40), ("TOP", (1 << 64) - 1)]
    assert (s.kind, s.signed) == (Kind.ENUM64, True)
    assert [(v.name, v.value) for v in s.values] == [("NEG", -(1 << 40)), ("MIN", -(1 << 63)),
                                                     ("ONE", 1)]
    assert type_name(btf, ids["e64u"]) == "enum big"


def test_enum32_sign(kinds):
    btf, ids = kinds
    assert [v.value for v in btf[ids["e32s"]].values] == [-1, 1]
    assert [v.value for v in btf[ids["e32u"]].values] == [0xFFFFFFFF]
    assert btf[ids["e32s"]].signed and not btf[ids["e32u"]].signed


def test_float(kinds):
    btf, ids = kinds
    d, ld = btf[ids["double"]], btf[ids["ldouble"]]
    assert (d.kind, d.name, d.size) == (Kind.FLOAT, "double", 8)
    assert btf.size_of(ids["ldouble"]) == 16 and ld.name == "long double"


def test_type_tag_is_a_qualifier(kinds):
    btf, ids = kinds
    t = btf[ids["tag_user"]]
    assert (t.kind, t.name, t.type) == (Kind.TYPE_TAG, "user", ids["int"])
    assert btf.resolve(ids["tag_user"]) == ids["int"]
    assert btf.skip_qualifiers(ids["tag_user"]) == ids["int"]
    assert type_name(btf, ids["uptr"]) == "int *"


def test_fwd_struct_and_union(kinds):
    btf, ids = kinds
    assert btf[ids["fwd_u"]].kflag and not btf[ids["fwd_s"]].kflag
    assert type_name(btf, ids["fwd_u"]) == "union maybe"
    assert type_name(btf, ids["fwd_s"]) == "struct opaque"
    assert btf.size_of(ids["fwd_u"]) == 0


def test_bitfields_with_kind_flag(kinds):
    btf, ids = kinds
    s = btf[ids["bits"]]
    assert s.kflag
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in s.members] == [
        ("a", 0, 3), ("b", 3, 5), ("c", 32, 0)]
    p = btf[ids["plain"]]
    assert not p.kflag
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in p.members] == [
        ("x", 0, 0), ("y", 32, 0)]


def test_decl_tags(kinds):
    btf, ids = kinds
    t, m = btf[ids["tag_s"]], btf[ids["tag_m"]]
    assert (t.kind, t.name, t.type, t.component_idx) == (Kind.DECL_TAG, "kfunc", ids["plain"], -1)
    assert (m.name, m.component_idx) == ("rcu", 1)


def test_var_and_datasec(kinds):
    btf, ids = kinds
    v = btf[ids["var"]]
    assert (v.kind, v.name, v.type, v.linkage) == (Kind.VAR, "counter", ids["int"], 1)
    assert btf[ids["var2"]].linkage == 2
    sec = btf[ids["sec"]]
    assert (sec.kind, sec.name, sec.size) == (Kind.DATASEC, ".data", 8)
    assert sec.members == (VarSecInfo(ids["var"], 0, 4), VarSecInfo(ids["var2"], 4, 4))


def test_func_linkage_and_variadic(kinds):
    btf, ids = kinds
    f = btf[ids["func"]]
    assert (f.kind, f.linkage, f.type) == (Kind.FUNC, 2, ids["proto"])
    assert btf[ids["proto"]].is_variadic
    assert type_name(btf, ids["proto"]) == "int (double x, ...)"


def test_ids_and_find_by_kind(kinds):
    btf, ids = kinds
    assert btf.ids(Kind.ENUM64) == [ids["e64u"], ids["e64s"]]
    assert btf.ids(Kind.FLOAT) == [ids["double"], ids["ldouble"]]
    assert btf.find("plain") == [ids["plain"]]
    assert btf.find("counter", Kind.VAR) == [ids["var"]]
    assert btf.find("counter", Kind.STRUCT) == []
    assert btf.find("nope") == [] and btf.find("") == []
    assert btf.kind_of(ids["tag_m"]) == Kind.DECL_TAG and btf.kind_of(0) == Kind.UNKN


def test_name_map_after_many_lookups_agrees_with_scan(kinds):
    btf, ids = kinds
    fresh = load(btf.data)
    names = ["int", "big", "plain", "counter", "user", "vfunc", "nope"]
    before = {n: fresh.find(n) for n in names}
    for _ in range(70):
        fresh.find("int")
    assert fresh._by_name is not None
    assert {n: fresh.find(n) for n in names} == before


# ---------------------------------------------------------------- split BTF
@pytest.fixture(scope="module")
def split():
    bw = BTFWriter()
    b_int = bw.int("int", 4, signed=True)
    b_s = bw.struct("shared", 4, [("v", b_int, 0)])
    bw.struct("dup", 4, [("v", b_int, 0)])
    base = load(bw.build())
    sw = BTFWriter(base=bw)
    s_ptr = sw.ptr(b_s)
    s_mod = sw.struct("mod_only", 16, [("p", s_ptr, 0), ("n", b_int, 64), ("v", b_int, 96)])
    s_dup = sw.struct("dup", 8, [("w", b_int, 0), ("x", b_int, 32)])
    proto = sw.func_proto(b_int, [("m", sw.ptr(s_mod))])
    sw.func("mod_func", proto)
    return base, load(sw.build(), base=base), dict(b_int=b_int, b_s=b_s, s_ptr=s_ptr,
                                                    s_mod=s_mod, s_dup=s_dup)


def test_split_ids_continue_after_the_base(split):
    base, mod, ids = split
    assert len(base) == 4 and mod.start_id == 4
    assert ids["s_ptr"] == 4 and list(mod.own_ids) == list(range(4, len(mod)))
    assert mod[ids["b_int"]] is base[ids["b_int"]]
    assert mod[ids["s_ptr"]].type == ids["b_s"]
    assert mod.ids() == list(range(4, len(mod)))
    assert 1 in mod and 3 in mod and len(mod) - 1 in mod and len(mod) not in mod


def test_split_strings_are_offset_by_the_base(split):
    base, mod, ids = split
    assert mod.str_base == base.str_len
    m = mod[ids["s_mod"]]
    assert m.name == "mod_only"
    assert [(x.name, x.type) for x in m.members] == [("p", ids["s_ptr"]), ("n", ids["b_int"]),
                                                     ("v", ids["b_int"])]
    # "v" and "int" come from the base's table; "mod_only" from the split's.
    name_off = struct.unpack_from("<I", mod.data, mod._offsets[ids["s_mod"] - 4])[0]
    assert name_off >= base.str_len
    assert mod.string(1) == base.string(1) == "int"


def test_split_find_searches_base_then_split(split):
    base, mod, ids = split
    assert mod.find("dup") == [3, ids["s_dup"]]
    assert mod.find("dup", Kind.STRUCT) == [3, ids["s_dup"]]
    assert mod.find("shared") == [ids["b_s"]] and mod.find("mod_only") == [ids["s_mod"]]
    assert base.find("mod_only") == []
    fn = mod.find("mod_func", Kind.FUNC)
    assert fn and fn[0] >= mod.start_id
    assert type_name(mod, mod[fn[0]].type) == "int (struct mod_only *m)"
    assert [n for n, _ in mod.names(Kind.STRUCT)] == ["mod_only", "dup"]


def test_split_out_of_range_ids(split):
    base, mod, _ = split
    for tid in (len(mod), 10**6, -1):
        with pytest.raises(BTFError, match="no type with id"):
            mod[tid]
        with pytest.raises(BTFError, match="no type with id"):
            mod.kind_of(tid)


# ------------------------------------------------------------ corrupt input
def good_blob():
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    w.struct("s", 8, [("a", i, 0), ("b", i, 32)])
    return w.build()


def with_header(blob, **changes):
    names = ["magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len"]
    vals = dict(zip(names, HDR.unpack_from(blob)))
    vals.update(changes)
    return HDR.pack(*(vals[n] for n in names)) + blob[HDR.size:]


def patched(blob, offset, fmt, *values):
    b = bytearray(blob)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def typedef_loop():
    w = BTFWriter()
    w.typedef("a", 2)
    w.typedef("b", 1)
    return w.build()


def self_const():
    w = BTFWriter()
    w.const(1)
    return w.build()


def array_loop():
    w = BTFWriter()
    w.array(1, 4)
    return w.build()


def pointer_loop():
    w = BTFWriter()
    w.ptr(2)
    w.ptr(1)
    return w.build()


def dangling():
    w = BTFWriter()
    w.typedef("t", 77)
    return w.build()


def one_type(add):
    """A blob of an int (id 1), a char (id 2) and whatever ``add(w)`` adds (id 3 on)."""
    w = BTFWriter()
    w.int("int", 4, signed=True)
    w.int("char", 1)
    add(w)
    return load(w.build())


def checked(add, tid=3):
    return lambda: one_type(add).check(tid)


GOOD = good_blob()
# The int record is at 24..40; the struct's at 40..76; strings follow.
CORRUPT = [
    ("empty", lambda: load(b""), "BTF: truncated header (0 bytes)"),
    ("truncated header", lambda: load(GOOD[:20]), "BTF: truncated header (20 bytes)"),
    ("bad magic", lambda: load(b"\x7fELF" + GOOD[4:]), "BTF: bad magic 0x457f (not BTF)"),
    ("big endian", lambda: load(with_header(GOOD, magic=0x9FEB)),
     "BTF: big-endian BTF is not supported"),
    ("version", lambda: load(with_header(GOOD, version=2)), "BTF: unsupported BTF version 2"),
    ("header length too small", lambda: load(with_header(GOOD, hdr_len=8)),
     "BTF: bad header length 8"),
    ("header length past the end", lambda: load(with_header(GOOD, hdr_len=4096)),
     "BTF: bad header length 4096"),
    ("strings past the end", lambda: load(GOOD[:-3]),
     "BTF: section extends past end of data (truncated?)"),
    ("types past the end", lambda: load(with_header(GOOD, type_len=10**6)),
     "BTF: section extends past end of data (truncated?)"),
    ("offset overflow", lambda: load(with_header(GOOD, str_off=0xFFFFFFF0)),
     "BTF: section extends past end of data (truncated?)"),
    ("misaligned types", lambda: load(with_header(GOOD, type_off=2, type_len=50)),
     "BTF: misaligned type section"),
    ("truncated type record", lambda: load(with_header(GOOD, type_len=40)),
     "BTF: truncated type record at byte"),
    ("truncated record header", lambda: load(with_header(GOOD, type_len=22)),
     "BTF: truncated type record at byte"),
    ("unknown kind", lambda: load(patched(GOOD, 24 + 4, "<I", 25 << 24)),
     "BTF: unknown BTF kind 25 at type id 1"),
    ("kind 0", lambda: load(patched(GOOD, 40 + 4, "<I", 0)), "BTF: unknown BTF kind 0 at type id 2"),
    ("vlen past the types", lambda: load(patched(GOOD, 40 + 4, "<I", (4 << 24) | 500)),
     "BTF: truncated type record at byte"),
    ("string not terminated", lambda: load(GOOD[:-1] + b"x"),
     "BTF: string section is not NUL-terminated"),
    ("string section not starting empty", lambda: load(patched(GOOD, 76, "<B", ord("z"))),
     "BTF: string section does not start with an empty string"),
    ("name offset out of range", lambda: load(patched(GOOD, 24, "<I", 999))[1],
     "BTF: string offset 999 out of range"),
    ("member name out of range", lambda: load(patched(GOOD, 52, "<I", 10**6))[2],
     "BTF: string offset 1000000 out of range"),
    ("no string section", lambda: load(with_header(GOOD, str_len=0))[1],
     "BTF: string offset 1 out of range"),
    ("typedef loop", lambda: load(typedef_loop()).resolve(1), "BTF: type chain loops at id 1"),
    ("typedef loop size", lambda: load(typedef_loop()).size_of(2), "BTF: type chain loops at id"),
    ("qualifier loop", lambda: load(self_const()).skip_qualifiers(1),
     "BTF: type chain loops at id 1"),
    ("array loop", lambda: load(array_loop()).size_of(1), "BTF: type chain loops at id 1"),
    ("dangling type id", lambda: load(dangling()).resolve(1), "BTF: no type with id 77"),
    ("type id past the end", lambda: load(GOOD)[3], "BTF: no type with id 3"),
    ("kind of a type past the end", lambda: load(GOOD).kind_of(3), "BTF: no type with id 3"),
    ("cdecl of a pointer loop", lambda: type_name(load(pointer_loop()), 1),
     "type chain too long or looping at id"),
    # what the kernel's BTF verifier refuses, refused by BTF.check (and so by every walker)
    ("struct containing itself", checked(lambda w: w.struct("s", 8, [("me", 3, 0)])),
     "BTF: struct s (id 3) contains itself (ids 3 -> 3)"),
    ("loop through an array", checked(lambda w: (w.struct("s", 8, [("a", 4, 0)]), w.array(3, 2))),
     "BTF: struct s (id 3) contains itself (ids 3 -> 4 -> 3)"),
    ("typedef loop checked", lambda: load(typedef_loop()).check(1),
     "BTF: typedef a (id 1) contains itself"),
    ("array past 4 GiB", checked(lambda w: w.array(1, 1 << 30)),
     "BTF: array (id 3) of 1073741824 elements of 4 bytes is larger than 4 GiB"),
    ("array size past 4 GiB", lambda: one_type(lambda w: w.array(1, 1 << 30)).size_of(3),
     "BTF: array (id 3) is larger than 4 GiB (4294967296 bytes: array lengths overflow)"),
    ("member past its struct", checked(lambda w: w.struct("s", 4, [("x", 1, 8)])),
     "BTF: member 'x' of struct s (id 3) ends at byte 5, past its size 4"),
    ("bitfield past its struct", checked(lambda w: w.struct("s", 4, [("b", 1, 30, 3)])),
     "BTF: member 'b' of struct s (id 3) ends at byte 5, past its size 4"),
    ("bitfield wider than its int", checked(lambda w: w.struct("s", 8, [("b", 1, 0, 33)])),
     "BTF: bitfield 'b' of struct s (id 3) is 33 bits of int (id 1)"),
    ("bitfield of a struct", checked(lambda w: (w.struct("s", 8, [("b", 4, 0, 3)]),
                                                w.struct("t", 4, []))),
     "BTF: bitfield 'b' of struct s (id 3) is 3 bits of struct t (id 4)"),
    ("int wider than its size", checked(lambda w: w.int("wide", 2, bits=17)),
     "BTF: wide (id 3) has 17 bits at bit 0, more than its size 2 holds"),
    ("int past 128 bits", checked(lambda w: w.int("huge", 32, bits=129)),
     "BTF: huge (id 3) has 129 bits at bit 0, more than its size 32 holds"),
    ("enum of 3 bytes", checked(lambda w: w.enum("e", [("A", 1)], size=3)),
     "BTF: enum e (id 3) has size 3 (not 1, 2, 4 or 8)"),
    ("nesting past the limit", lambda: load(deep(MAX_NESTING + 1)).check(MAX_NESTING + 2),
     f"BTF: struct n{MAX_NESTING + 1} (id {MAX_NESTING + 2}) nests types more than {MAX_NESTING}"),
]


@pytest.mark.parametrize("name,fn,message", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_input_is_one_btf_error(name, fn, message):
    with pytest.raises(BTFError) as ei:
        fn()
    text = str(ei.value)
    assert "\n" not in text
    if message is not None:
        assert text.startswith(message)


def deep(levels):
    w = BTFWriter()
    tid = w.int("int", 4)
    for k in range(1, levels + 1):
        tid = w.struct(f"n{k}", 4, [("x", tid, 0)])
    return w.build()


def test_check_accepts_what_the_kernel_accepts():
    """Old-style int bitfields, flexible arrays, empty structs, a 4 GiB - 1 array,
    bitfields of enums, a member ending exactly at the end: all well formed."""
    w = BTFWriter()
    i = w.int("int", 4, signed=True)
    three = w.int("int3", 4, bits=3, offset=0)  # pre-kflag bitfield encoding
    e = w.enum("e", [("A", 1)], size=4)
    empty = w.struct("empty", 0, [])
    flex = w.array(i, 0)
    big = w.array(w.int("char", 1), 0xFFFFFFFF)
    s = w.struct("s", 8, [("x", i, 0), ("t", three, 61), ("none", empty, 64), ("tail", flex, 64)])
    b = w.struct("b", 4, [("f", e, 0, 7), ("g", i, 7, 25)])
    top = w.struct("top", 0xFFFFFFFF, [("big", big, 0)])
    btf = load(w.build())
    for tid in (s, b, top):
        btf.check(tid)
    assert btf.size_of(top) == 0xFFFFFFFF
    deepest = load(deep(MAX_NESTING))
    deepest.check(MAX_NESTING + 1)


def test_check_is_lazy_and_remembered():
    btf = load(deep(5))
    assert btf._checked is None
    btf.check(3)  # n2: n2 -> n1 -> int
    assert btf._checked == {1: 0, 2: 1, 3: 2}
    btf.check(6)
    assert btf._checked[6] == 5


def test_corrupt_blob_names_the_file():
    with pytest.raises(BTFError, match=r"^mod\.ko: bad magic"):
        BTF(b"\0" * 32, name="mod.ko", use_cache=False)


def test_truncation_at_every_length_is_a_btf_error():
    """No prefix of a valid blob escapes as IndexError/struct.error; a cut that still
    parses reads every type without error."""
    for n in range(len(GOOD)):
        try:
            btf = load(GOOD[:n])
            for tid in range(len(btf)):
                btf[tid]
        except BTFError:
            pass


def test_random_byte_flips_never_escape():
    """Every single-byte corruption of a blob is a BTFError or a readable blob."""
    blob = typedef_loop() + b""
    blobs = [GOOD, blob]
    for base_blob in blobs:
        for pos in range(len(base_blob)):
            for val in (0x00, 0xFF, 0x13):
                b = bytearray(base_blob)
                b[pos] = val
                try:
                    btf = load(bytes(b))
                    for tid in range(len(btf)):
                        t = btf[tid]
                        btf.kind_of(tid)
                        btf.size_of(tid)
                        btf.find(t.name)
                        type_name(btf, tid)
                        btf.check(tid)
                except BTFError:
                    pass
