"""Tracer output plumbing: colour only when asked, plain text otherwise; kernel
names (comm, function) reach a terminal escaped."""

import io

from ksnoop.trace.job import Prepared, Tracer
from ksnoop.trace.plan import TracePlan

LINE = "ping 7 0 2.000000 ip_send_skb(skb->len = (unsigned int)84)"


def tracer(colour, fmt="text"):
    out = io.StringIO()
    t = Tracer(Prepared(TracePlan((), 2048, "x86_64"), "", []), kernel=None, fmt=fmt, out=out,
               err=io.StringIO(), colour=colour)
    return t, out


def test_plain_output_has_no_escapes():
    t, out = tracer(False)
    t._write(LINE)
    assert out.getvalue() == LINE + "\n"


def test_colour_output_highlights_casts_and_numbers():
    t, out = tracer(True)
    t._write(LINE)
    text = out.getvalue()
    assert "\x1b[" in text
    assert text.replace("\x1b[0m", "").count("84") == 1
    import re
    assert re.sub(r"\x1b\[[0-9;]*m", "", text) == LINE + "\n"


def test_json_is_never_coloured():
    t, out = tracer(True, fmt="json")
    t._write('{"a":1}')
    assert out.getvalue() == '{"a":1}\n'


# ------------------------------------------------ kernel text reaches a terminal escaped
def named_event(comm, func="ip_send_skb"):
    from ksnoop.trace.events import Event
    from ksnoop.trace.plan import FuncPlan
    from ksnoop.trace.wire import RETURN

    fp = FuncPlan(index=0, name=func, module="", addr=0, btf=None)
    return Event(2_000_000_000, 7, 8, 0, comm, fp, RETURN, ())


def test_comm_and_function_name_are_escaped_in_text_and_line():
    from ksnoop.trace.output import Formatter

    ev = named_event("\x1b]0;x\x07\x1b[2J", "f\x1b[31m\u202e")
    for fmt in ("text", "line"):
        out = Formatter(fmt).event(ev)
        assert not [c for c in out if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)]
        assert " ".join(out.split()).startswith(
            "\\033]0;x\\007\\033[2J 7 0 2.000000 f\\033[31m\\u202e(")
    assert Formatter("text").event(named_event("swapper/0")).startswith(
        "swapper/0              7    0         2.000000 ip_send_skb(\n")


def test_json_keeps_comm_exact_and_ascii():
    import json

    from ksnoop.trace.output import Formatter

    line = Formatter("json").event(named_event("\x1b]0;x\x07\x1b[2J\x9b\xe9"))
    assert line.isascii() and "\x1b" not in line and "\x07" not in line
    assert json.loads(line)["comm"] == "\x1b]0;x\x07\x1b[2J\x9b\xe9"
