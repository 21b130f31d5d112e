"""Tracer output plumbing: colour only when asked, plain text otherwise."""

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
