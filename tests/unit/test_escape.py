"""The one printer of kernel bytes (ksnoop.render.escape), and that trace output
and `ksnoop render` print the same bytes the same way through it."""

import ast
import io
import json
import random
import sys

import pytest
from btfwriter import BTFWriter

from ksnoop.btf import BTF
from ksnoop.cli.main import main
from ksnoop.render import Renderer
from ksnoop.render.escape import c_string, json_dumps, json_string, terminal_bytes, terminal_text
from ksnoop.render.text import TreeText
from ksnoop.render.values import Decoder
from ksnoop.trace.events import Captured, Event
from ksnoop.trace.output import Formatter
from ksnoop.trace.plan import STRING, FuncPlan, Value
from ksnoop.trace.wire import ENTRY

SAMPLE = b'a"\\\n\x1b[2J\xff\xc3\xa9'
# The sample as the documented C literal: quote and backslash escaped, \n named,
# ESC, 0xff and the UTF-8 bytes of "é" as three-digit octal.
SAMPLE_C = '"a\\"\\\\\\n\\033[2J\\377\\303\\251"'
COMM = "\x1b]0;x\x07\x1b[2J"


def controls(text, allow="\n"):
    """Characters in ``text`` a terminal could act on (C0, DEL, C1), except ``allow``."""
    return [c for c in text if (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) and c not in allow]


# ------------------------------------------------------------------ c_string
def test_c_string_rule():
    assert c_string(SAMPLE) == SAMPLE_C
    assert c_string(b"") == '""'
    assert c_string(b"\t\r\x00\x7f ~") == '"\\t\\r\\000\\177 ~"'


def test_c_string_is_unambiguous_ascii_and_round_trips():
    """Every byte, and random strings full of digits after escapes: the literal is
    printable ASCII and reads back (C/Python escape rules: octal stops after three
    digits) to exactly the bytes."""
    rng = random.Random(3)
    cases = [bytes([b]) for b in range(1, 256)] + [b"\xff1", b"\x0012", b"\x1b7", b"\\x41"]
    cases += [bytes(rng.choice(b"0123456789abcdef\\\"\x00\x01\x1b\x7f\x80\xff")
                    for _ in range(rng.randrange(1, 20))) for _ in range(500)]
    for raw in cases:
        lit = c_string(raw)
        assert lit.isascii() and lit.isprintable(), raw
        assert ast.literal_eval("b" + lit) == raw, (raw, lit)
    assert c_string(b"\xff1") == '"\\3771"'


# ---------------------------------------------------------------------- json
def test_json_string_rule_and_round_trip():
    text = json_dumps(json_string(SAMPLE))
    assert text == '"a\\"\\\\\\n\\u001b[2J\\\\xff\\u00e9"'
    assert text.isascii() and not controls(text, "")
    # round trip: the parsed value is the documented decoding ...
    assert json.loads(text) == SAMPLE.decode("utf-8", "backslashreplace") == 'a"\\\n\x1b[2J\\xff\xe9'
    # ... and valid UTF-8 comes back byte for byte
    for raw in (b"plain", "caf\xe9 \u202e \U0001f600".encode(), b"\x01\x1f\x7f\\x"):
        assert json.loads(json_dumps(json_string(raw))).encode("utf-8") == raw


def test_json_dumps_is_ascii_without_controls():
    value = {"s": "\x1b\x9b\u2028\u202e\x7f", "n": [1, None, True]}
    text = json_dumps(value)
    assert text.isascii() and not controls(text, "")
    assert json.loads(text) == value


# ------------------------------------------------------------------ terminal
def test_terminal_text():
    assert terminal_text("swapper/0") == "swapper/0"
    assert terminal_text("caf\xe9") == "caf\xe9"  # printable non-ASCII stays
    assert terminal_text(COMM) == "\\033]0;x\\007\\033[2J"
    assert terminal_text("a\\b\n\t\x9b\u202e\u2028\U000e0001") == \
        "a\\\\b\\n\\t\\233\\u202e\\u2028\\U000e0001"
    assert terminal_text(b"ok\xff\x1b") == "ok\\377\\033"  # bytes: UTF-8, invalid bytes octal
    assert terminal_text("caf\xe9".encode()) == "caf\xe9"


def test_terminal_text_round_trips_and_is_safe():
    rng = random.Random(5)
    pool = "ab\\\"'\n\x00\x1b\x7f\x85\x9b\xa0\xe9\u200f\u202e\u2028\ufffd\U0001f600\U000e0001"
    for _ in range(300):
        s = "".join(rng.choice(pool) for _ in range(rng.randrange(0, 12)))
        out = terminal_text(s)
        assert out.isprintable() and not controls(out, ""), repr(s)
        assert ast.literal_eval('"' + out.replace('"', '\\"') + '"') == s


def test_terminal_bytes():
    kernel = "(char[])['a','\\','\xe9','\xff',],\n.x = \x1b[2J\n"
    out = terminal_bytes(kernel)
    assert out == "(char[])['a','\\\\','\\351','\\377',],\n.x = \\033[2J\n"
    assert out.isascii() and not controls(out)
    assert terminal_bytes("\u0100") == "\\304\\200"  # not a byte: its UTF-8 bytes


# ------------------------------------------- trace output == ksnoop render
@pytest.fixture(scope="module")
def types(tmp_path_factory):
    w = BTFWriter()
    ids = {"int": w.int("int", 4, signed=True), "char": w.int("char", 1, signed=True)}
    ids["char *"] = w.ptr(ids["char"])
    ids["char[16]"] = w.array(ids["char"], 16, ids["int"])
    ids["rec"] = w.struct("rec", 20, [("n", ids["int"], 0), ("name", ids["char[16]"], 32)])
    blob = w.build()
    path = tmp_path_factory.mktemp("btf") / "escape.btf"
    path.write_bytes(blob)
    return BTF(blob, use_cache=False), ids, str(path)


def string_event(btf, ids, raw, comm="cat", func="do_open"):
    v = Value(name="s", at_return=False, kind=STRING, type_id=ids["char *"],
              show_type=ids["char"], reg="di", size=64, full_size=64)
    fp = FuncPlan(index=0, name=func, module="", addr=0, btf=btf, entry=(v,))
    data = (raw + b"\0").ljust(64, b"\0")
    cap = Captured(v, 0xFFFF888000001000, len(raw) + 1, data)
    return Event(1_000_000_000, 42, 43, 1, comm, fp, ENTRY, (cap,))


def render_cli(capsysbinary, monkeypatch, path, tid, data, *args):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with pytest.raises(SystemExit) as e:
        main(["render", f"btf:{tid}", "--btf", path, *args])
    out, err = capsysbinary.readouterr()
    assert e.value.code == 0, err
    return out.decode("utf-8")


def test_trace_and_render_print_the_same_text(types, capsysbinary, monkeypatch):
    btf, ids, path = types
    ev = string_event(btf, ids, SAMPLE)
    text = Formatter("text").event(ev).split("\n")
    assert text[1] == "  s = " + SAMPLE_C
    assert Formatter("line").event(ev).endswith("do_open(s = %s)" % SAMPLE_C)
    arr = SAMPLE.ljust(16, b"\0")
    assert render_cli(capsysbinary, monkeypatch, path, ids["char[16]"], arr) == \
        "(char[16])%s\n" % SAMPLE_C
    # a char array inside a struct: the compiled fast path and the tree renderer
    rec = b"\x01\0\0\0" + arr
    assert ".name = (char[16])%s,\n" % SAMPLE_C in Renderer(btf, ids["rec"]).render(rec)
    tree = TreeText(btf).render_node(Decoder(btf).decode(ids["rec"], rec[:19]), 19, 20)
    assert ".name = (char[16])%s,\n" % SAMPLE_C in tree


def test_trace_and_render_print_the_same_json(types, capsysbinary, monkeypatch):
    btf, ids, path = types
    line = Formatter("json").event(string_event(btf, ids, SAMPLE))
    rendered = render_cli(capsysbinary, monkeypatch, path, ids["char[16]"],
                          SAMPLE.ljust(16, b"\0"), "-f", "json")
    assert rendered.endswith("\n")
    lit = rendered[:-1]
    assert '"values":{"s":%s}' % lit in line
    for text in (line, rendered):
        assert text.isascii() and not controls(text, "\n")
    assert json.loads(line)["values"]["s"] == json.loads(lit) == \
        SAMPLE.decode("utf-8", "backslashreplace")
    rec = json.loads(render_cli(capsysbinary, monkeypatch, path, ids["rec"],
                                b"\x01\0\0\0" + SAMPLE.ljust(16, b"\0"), "-f", "json"))
    assert rec == {"n": 1, "name": json.loads(lit)}
