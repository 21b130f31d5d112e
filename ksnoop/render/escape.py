"""The one printer of kernel bytes and kernel text.

Every renderer and output format shows kernel-supplied bytes and text through
these functions, so the same bytes always print the same way (``trace`` text,
line and JSON output, ``render`` in the ksnoop and JSON styles).

``c_string(raw)``: bytes (a ``char *`` string, a char array up to its NUL) as
a C string literal, for text and line output:

- printable ASCII 0x20-0x7e stays as it is, except ``"`` and ``\\`` which get
  a backslash;
- newline, tab and carriage return are ``\\n``, ``\\t``, ``\\r``;
- every other byte (C0 controls, DEL, and every byte from 0x80 up, whether it
  is part of valid UTF-8 or not) is an octal escape of exactly three digits,
  ``\\ooo``.

Octal, not ``\\xNN``: a C hex escape runs on over every hex digit that
follows it (``"\\xffab"`` is one out-of-range character, not ``\\xff`` then
``ab``), whereas an octal escape ends after at most three digits, so a fixed
three-digit ``\\ooo`` is unambiguous whatever character comes next.  The
literal is valid C that compiles back to exactly ``raw``; it is plain ASCII
and holds no control character.

``json_string(raw)``: bytes as the value of a JSON string.  The bytes are
decoded as UTF-8; a byte that is not part of a valid UTF-8 sequence becomes
the four characters ``\\xNN`` (Python's ``backslashreplace``).  Valid text,
backslashes included, is kept as it is, so an invalid byte 0xff and the four
characters ``\\xff`` in the data give the same string: the exact bytes are in
the text output.  ``json_dumps(value)`` is the one JSON serialisation: compact
and ASCII-only (every control character and every non-ASCII character is a
``\\uXXXX`` escape), so JSON lines are valid UTF-8 whatever the bytes, and
cat-ing them to a terminal shows no raw control, C1 or bidi character.

``terminal_text(text)``: kernel-supplied text shown as a field of its own
(task names, function and symbol names) made safe for a terminal: characters
that ``str.isprintable()`` accepts stay (so do non-ASCII letters), ``\\`` is
``\\\\``, and every other character is escaped as in C: ``\\n \\t \\r``, ``\\ooo``
below U+0100, ``\\uXXXX`` or ``\\UXXXXXXXX`` above.  That covers ESC and the
other C0 controls, DEL, the C1 controls U+0080-U+009F (which some terminals
obey as 8-bit controls), bidi overrides, line separators and unassigned code
points.  Bytes are decoded as UTF-8 first; a byte that is not valid UTF-8 is
shown as ``\\ooo``, as in ``c_string``.

``terminal_bytes(text)``: text in which each character is one byte (the
kernel style's latin-1 ``str``) made safe for a terminal: printable ASCII and
newline stay, ``\\`` is ``\\\\``, every other byte is ``\\ooo``.
"""

import json

__all__ = ["c_string", "json_string", "json_dumps", "terminal_text", "terminal_bytes"]

_NAMED = {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x5C: "\\\\"}


def _byte_table(keep, extra=None):
    """A ``str.translate`` table over code points 0-255: the ones in ``keep``
    stay, the rest are named or octal escapes."""
    table = {}
    for c in range(256):
        if c in keep:
            continue
        table[c] = (extra or {}).get(c) or _NAMED.get(c) or "\\%03o" % c
    return table


_PRINTABLE_ASCII = frozenset(range(0x20, 0x7F))
# c_string: printable ASCII except the quote and the backslash.
_C_TABLE = _byte_table(_PRINTABLE_ASCII - {0x22, 0x5C}, {0x22: '\\"'})
# terminal_bytes: printable ASCII except the backslash, and newline.
_TERMINAL_BYTES = _byte_table((_PRINTABLE_ASCII - {0x5C}) | {0x0A})


def c_string(raw):
    """A C string literal (with its quotes) for ``raw`` (bytes, without the NUL)."""
    return '"' + raw.decode("latin-1").translate(_C_TABLE) + '"'


def json_string(raw):
    """The JSON string value (a ``str``) for ``raw`` (bytes, without the NUL)."""
    return raw.decode("utf-8", "backslashreplace")


def json_dumps(value):
    """The JSON text of ``value``: compact, ASCII only (see the module docstring)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _escape_char(ch):
    o = ord(ch)
    if o < 0x100:
        return _NAMED.get(o) or "\\%03o" % o
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not valid UTF-8 (surrogateescape)
        return "\\%03o" % (o - 0xDC00)
    if o <= 0xFFFF:
        return "\\u%04x" % o
    return "\\U%08x" % o


def terminal_text(text):
    """``text`` (str, or bytes decoded as UTF-8) with every character a terminal
    could act on escaped; printable text comes back unchanged."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "surrogateescape")
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch != "\\" else _escape_char(ch) for ch in text)


def terminal_bytes(text):
    """``text`` (one character per byte, as latin-1) with every byte other than
    printable ASCII and newline escaped as ``\\ooo`` (a backslash as ``\\\\``)."""
    if not text.isascii():
        # a character above U+00FF cannot stand for a byte: show its UTF-8 bytes
        text = "".join(ch if ord(ch) < 0x100 else ch.encode("utf-8").decode("latin-1")
                       for ch in text)
    return text.translate(_TERMINAL_BYTES)
