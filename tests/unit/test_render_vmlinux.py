"""Render a sample of the running kernel's types: compiled == tree, and basic sanity."""

import random

import pytest
from btfwriter import BTFWriter

from ksnoop.btf import BTF, Kind
from ksnoop.btf.cdecl import parse_type_name as find_type
from ksnoop.errors import BTFError
from ksnoop.render import Renderer
from ksnoop.render.text import TreeText
from ksnoop.render.textgen import compile_text
from ksnoop.render.values import Decoder


@pytest.fixture(scope="module")
def btf(vmlinux_btf):
    return vmlinux_btf


def sample(btf, n=120):
    rng = random.Random(3)
    ids = []
    for kind in (Kind.STRUCT, Kind.UNION, Kind.ARRAY, Kind.TYPEDEF):
        pool = btf.ids(kind)
        ids += rng.sample(pool, min(n if kind == Kind.STRUCT else n // 3, len(pool)))
    ids += [btf.find(name, Kind.STRUCT)[0] for name in ("task_struct", "sk_buff", "page")]
    dec = Decoder(btf)
    return [t for t in ids if dec.resolve(t).kind in (Kind.STRUCT, Kind.UNION, Kind.ARRAY)
            and 0 < btf.size_of(t) <= 16384]


def test_compiled_matches_tree(btf):
    """Every sampled type is compiled (no silent fallback to the tree renderer,
    which would make "compiled == tree" vacuous) and renders like the tree."""
    rng = random.Random(4)
    dec = Decoder(btf)
    ids = sample(btf)
    assert len(ids) >= 150, len(ids)
    for flags in (0, 1, 8):
        tree = TreeText(btf, flags)
        compiled, fell_back = 0, []
        for tid in ids:
            fast = compile_text(btf, tid, flags, tree)
            if fast is None:
                fell_back.append((tid, btf[tid].name, btf.size_of(tid)))
                continue
            compiled += 1
            size = btf.size_of(tid)
            for data in (bytes(size), rng.randbytes(size)):
                assert fast(data, 0) == tree.render_node(dec.decode(tid, data)), (tid, flags)
        assert compiled == len(ids), f"flags={flags}: fell back to the tree renderer: {fell_back}"


def test_documented_fallback_array_of_wide_ints():
    """What is not compiled (documented in compile_text): e.g. a top-level
    array of 128-bit integers, which struct.unpack cannot read; the Renderer
    then uses the tree renderer, with the same output as a member would get."""
    w = BTFWriter()
    i128 = w.int("__int128", 16, signed=True)
    arr = w.array(i128, 2)
    u32 = w.int("unsigned int", 4)
    arr32 = w.array(u32, 2)
    small = BTF(w.build(), name="test")
    assert compile_text(small, arr, 0) is None
    assert compile_text(small, arr32, 0) is not None  # the same shape with 32-bit elements
    data = (5).to_bytes(16, "little") + (-7).to_bytes(16, "little", signed=True)
    assert Renderer(small, arr).render(data) == "(__int128[2])[5, -7]\n"


def test_find_type(btf):
    skb = btf.find("sk_buff", Kind.STRUCT)[0]
    assert find_type(btf, "struct sk_buff") == skb
    assert btf[find_type(btf, "struct sk_buff *")].type == skb
    assert btf[find_type(btf, "unsigned int")].kind == Kind.INT
    assert btf[find_type(btf, "u32")].kind == Kind.TYPEDEF
    with pytest.raises(BTFError):
        find_type(btf, "struct no_such_struct_here")


def test_sk_buff_and_truncation(btf):
    skb = btf.find("sk_buff", Kind.STRUCT)[0]
    r = Renderer(btf, skb)
    data = random.Random(5).randbytes(r.size)
    full = r.render(data)
    assert full.startswith("(struct sk_buff){\n") and full.endswith("}\n")
    short = r.render(data[:100])
    assert short.endswith("} /* 100 of %d bytes */\n" % r.size)
