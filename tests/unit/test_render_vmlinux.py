"""Render a sample of the running kernel's types: compiled == tree, and basic sanity."""

import random

import pytest

from ksnoop.btf import Kind
from ksnoop.btf.cdecl import parse_type_name as find_type
from ksnoop.errors import BTFError
from ksnoop.render import Renderer
from ksnoop.render.text import TreeText, compile_text
from ksnoop.render.values import Decoder

VMLINUX = "/sys/kernel/btf/vmlinux"


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
    rng = random.Random(4)
    dec = Decoder(btf)
    for tid in sample(btf):
        size = btf.size_of(tid)
        for flags in (0, 1, 8):
            tree = TreeText(btf, flags)
            fast = compile_text(btf, tid, flags, tree)
            if fast is None:
                continue
            for data in (bytes(size), rng.randbytes(size)):
                assert fast(data, 0) == tree.render_node(dec.decode(tid, data)), (tid, flags)


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
