"""The `json` style."""

import json
import struct

import pytest
from btfwriter import demo_types
from test_render_kernel import demo_bytes

from ksnoop.btf import BTF
from ksnoop.render import Renderer

BLOB, IDS = demo_types()


@pytest.fixture(scope="module")
def btf():
    return BTF(BLOB, use_cache=False)


def test_golden(btf):
    text = Renderer(btf, IDS["demo"], "json").render(demo_bytes())
    assert text == (
        '{"a":-7,"name":"lo\\n","next":"0xffff888001234560","cmd":"BPF_MAP_UPDATE_ELEM",'
        '"f1":5,"f2":-3,"fe":"BPF_MAP_LOOKUP_ELEM","x":5,"y":5,'
        '"gids":[{"val":0},{"val":6},{"val":0}],"m":[[0,2],[3,0]],'
        '"ptrs":["0x0","0xffff888000000010"],"ok":true,"c":3,"cb":[0,0,1,0,0]}')
    assert json.loads(text)["m"] == [[0, 2], [3, 0]]


def test_exact_wide_numbers(btf):
    assert Renderer(btf, IDS["u64"], "json").render(b"\xff" * 8) == str(2**64 - 1)
    assert Renderer(btf, IDS["__int128"], "json").render(b"\xff" * 16) == str(2**128 - 1)
    assert Renderer(btf, IDS["sign"], "json").render(struct.pack("<i", -9)) == "-9"
    assert Renderer(btf, IDS["e64"], "json").render(struct.pack("<Q", 1 << 40)) == '"HUGE"'


def test_truncated(btf):
    value = json.loads(Renderer(btf, IDS["demo"], "json").render(demo_bytes()[:30]))
    assert value["__truncated__"] == {"have": 30, "size": 120}
    assert value["a"] == -7 and "cb" not in value and "cmd" in value
    assert Renderer(btf, IDS["int"], "json").render(b"") == "null"


def test_char_arrays_decode_as_utf8_with_invalid_bytes_escaped(btf):
    data = b"\xc3\xa9\xff\x1b\\\0xy"
    text = Renderer(btf, IDS["char[8]"], "json").render(data)
    assert text == '"\\u00e9\\\\xff\\u001b\\\\"'
    assert json.loads(text) == data[:5].decode("utf-8", "backslashreplace") == "\xe9\\xff\x1b\\"
    demo = bytearray(demo_bytes())
    demo[4:12] = data
    value = Renderer(btf, IDS["demo"], "json").render(bytes(demo))
    assert value.isascii() and json.loads(value)["name"] == json.loads(text)
