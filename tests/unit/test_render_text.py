"""The `ksnoop` text style: golden output, flags, truncation, tree == compiled."""

import random
import struct

import pytest
from btfwriter import demo_types
from test_render_kernel import demo_bytes

from ksnoop.btf import BTF
from ksnoop.render import Renderer, escape, make_renderer, render
from ksnoop.render import text as text_style
from ksnoop.render.text import TreeText, colourize
from ksnoop.render.textgen import compile_text
from ksnoop.render.values import Decoder

BLOB, IDS = demo_types()

GOLDEN = """\
(struct demo){
 .a = (int)-7,
 .name = (char[8])"lo\\n",
 .next = (struct list_head *)0xffff888001234560,
 .cmd = (enum bpf_cmd)BPF_MAP_UPDATE_ELEM,
 .f1 = (unsigned int)5,
 .f2 = (int)-3,
 .fe = (enum bpf_cmd)BPF_MAP_LOOKUP_ELEM,
 (union){
  .x = (u64)5,
  .y = (unsigned int)5,
 },
 .gids = (kgid_t[3])[
  [1] = {
   .val = (gid_t)6,
  },
 ],
 .m = (unsigned int[2][2])[
  [[1] = 2],
  [3],
 ],
 .ptrs = (struct list_head *[2])[[1] = 0xffff888000000010],
 .ok = (bool)true,
 .c = (int)3,
 .cb = (__u32[5])[[2] = 1],
}
"""


@pytest.fixture(scope="module")
def btf():
    return BTF(BLOB, use_cache=False)


def test_golden(btf):
    assert Renderer(btf, IDS["demo"]).render(demo_bytes()) == GOLDEN


def test_compact_and_noname(btf):
    compact = Renderer(btf, IDS["demo"], flags=1).render(demo_bytes())
    assert compact == "".join(line.lstrip(" ") for line in GOLDEN.splitlines())
    noname = Renderer(btf, IDS["demo"], flags=3).render(demo_bytes())
    assert noname.startswith('{-7,"lo\\n",0xffff888001234560,BPF_MAP_UPDATE_ELEM,5,-3,')
    assert noname.endswith("[[1] = 0xffff888000000010],true,3,[[2] = 1],}")


def test_zero_flag_shows_everything(btf):
    text = Renderer(btf, IDS["demo"], flags=8).render(demo_bytes())
    assert " .m = (unsigned int[2][2])[\n  [0, 2],\n  [3, 0],\n ],\n" in text
    assert " .cb = (__u32[5])[0, 0, 1, 0, 0],\n" in text
    assert "  {\n   .val = (gid_t)0,\n  },\n" in text


def test_zero_object(btf):
    assert Renderer(btf, IDS["demo"]).render(bytes(120)) == (
        "(struct demo){\n .cmd = (enum bpf_cmd)BPF_MAP_CREATE,\n .fe = (enum bpf_cmd)BPF_MAP_CREATE,\n"
        " .ok = (bool)false,\n}\n".replace(" .ok = (bool)false,\n", ""))
    assert render(btf, IDS["int"], bytes(4)) == "(int)0\n"
    assert render(btf, IDS["atomic_t"], bytes(4), flags=1) == "(atomic_t){}"


def test_scalars(btf):
    assert render(btf, IDS["sign"], struct.pack("<i", -1)) == "(enum sign)NEG\n"
    assert render(btf, IDS["sign"], struct.pack("<i", -9)) == "(enum sign)-9\n"
    assert render(btf, IDS["e64"], struct.pack("<Q", 1 << 40)) == "(enum big)HUGE\n"
    assert render(btf, IDS["__int128"], b"\xff" * 16) == "(__int128 unsigned)%d\n" % (2**128 - 1)
    assert render(btf, IDS["float"], struct.pack("<d", 1.5)) == "(double)1.5\n"
    assert render(btf, IDS["char[8]"], b"ab\"\\\x01\xff\0x") == '(char[8])"ab\\"\\\\\\001\\377"\n'
    assert render(btf, IDS["list_head *"], struct.pack("<Q", 16)) == \
        "(struct list_head *)0x0000000000000010\n"


def test_truncated_capture(btf):
    text = Renderer(btf, IDS["demo"]).render(demo_bytes()[:50])
    assert text.endswith(" .gids = (kgid_t[3])[\n  [1] = {\n   .val = (gid_t)6,\n  },\n ],\n"
                         "} /* 50 of 120 bytes */\n")
    assert ".cb" not in text
    assert Renderer(btf, IDS["int"]).render(b"\x01") == "(int)<missing> /* 1 of 4 bytes */\n"
    assert Renderer(btf, IDS["demo"]).render(None) == "(struct demo)<missing> /* 0 of 120 bytes */\n"
    assert Renderer(btf, IDS["char[8]"]).render(b"abc") == '(char[8])<missing> /* 3 of 8 bytes */\n'
    assert Renderer(btf, IDS["char[8]"]).render(b"ab\0") == '(char[8])"ab" /* 3 of 8 bytes */\n'


def test_tree_and_compiled_agree(btf):
    rng = random.Random(7)
    dec = Decoder(btf)
    for name in ("demo", "bpf_insn", "btf_enum", "list_head", "kgid_t[3]",
                 "unsigned int[2][2]", "list_head *[2]", "u32[5]", "char[8]", "atomic_t"):
        tid = IDS[name]
        size = btf.size_of(tid)
        for flags in range(16):
            tree = TreeText(btf, flags)
            fast = compile_text(btf, tid, flags, tree)
            assert fast is not None, name
            for _ in range(20):
                data = bytes(rng.choice((0, 0, 1, 255, rng.randrange(256))) for _ in range(size))
                assert fast(data, 0) == tree.render_node(dec.decode(tid, data)), (name, flags)


def test_offsets_and_batches(btf):
    r = make_renderer(btf, IDS["int"])
    assert make_renderer(btf, IDS["int"]) is r
    data = struct.pack("<3i", 1, 2, 3)
    assert r.render(data, 4) == "(int)2\n"
    assert r.render_many(data, 3) == "(int)1\n(int)2\n(int)3\n"
    assert make_renderer(btf, IDS["int"], "json").render_many(data, 3, "\n") == "1\n2\n3\n"


def test_escapes_and_colour(btf):
    # one printer: char arrays go through escape.c_string (\ooo, three digits)
    assert text_style.c_string is escape.c_string
    assert escape.c_string(b'a"\\\n\t\x00\x7f') == '"a\\"\\\\\\n\\t\\000\\177"'
    data = b"\x1b[1\xff7\0\0\0"
    for flags in (0, 8):  # cstr (zero-suppressing) and cstr_z, compiled and tree
        fast = Renderer(btf, IDS["char[8]"], flags=flags).render(data)
        tree = TreeText(btf, flags).render_node(Decoder(btf).decode(IDS["char[8]"], data))
        assert fast == tree == '(char[8])"\\033[1\\3777"\n'
    t = colourize('(struct x){\n .a = (int)5,\n .s = (char[4])"hi",\n}\n')
    assert t.plain.startswith("(struct x)") and t.spans
