"""Trace spec language: text -> frozen TraceSpec with source spans.

    spec   := TARGET [ "(" [ value { "," value } ] ")" ]
    TARGET := FUNC | "tp:" [CATEGORY ":"] TRACEPOINT
              (FUNC may hold the wildcards * and ?)
    value  := ( "return" | IDENT ) { ("->" | ".") IDENT } [ OP LITERAL ]
    OP     := "==" | "!=" | ">" | ">=" | "<" | "<="
    LITERAL:= ["-"] ( DECIMAL | "0x" HEX | "0" OCTAL | "0o" OCTAL | "0b" BINARY ) [SUFFIX]
    SUFFIX := C's integer suffixes, in either order: u, l, ll, ul, lu, ull, llu
              (any case; "lL" mixes are refused, as in C)

Literals follow C: a leading 0 means octal (0644), 0x hex; 0o and 0b are
also accepted.  A suffix does not change the value: the comparison always
uses the C type of the value compared.

Whitespace is allowed anywhere between tokens.  Every error names the bad
token by its position so the CLI can underline it.
"""

import re
from dataclasses import dataclass

from ..errors import SpecError

OPS = ("==", "!=", ">=", "<=", ">", "<")
RETURN = "return"
MAX_VALUES = 8

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A number-like word: an optional sign, then a digit and everything that could
# continue a word (so "84lx" or "1Å" is one bad token, not "84" then junk).
_NUM_WORD = re.compile(r"-?[ \t]*[0-9]\w*")
_LONG = r"(?:ll|LL|l|L)"
_NUM = re.compile(r"-?[ \t]*(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)"
                  rf"(?:[uU]{_LONG}?|{_LONG}[uU]?)?")


@dataclass(frozen=True)
class Token:
    kind: str  # ident num arrow dot op punct end
    text: str
    pos: int


@dataclass(frozen=True)
class Step:
    """One member access: ``->name`` (deref=True) or ``.name``."""

    name: str
    deref: bool
    pos: int  # of the member name
    op_pos: int = -1  # of the "->" or "." before it


@dataclass(frozen=True)
class Predicate:
    op: str
    value: int
    literal: str
    pos: int  # of the operator
    end: int  # end of the literal


@dataclass(frozen=True)
class ValueSpec:
    base: str  # parameter name, or "return"
    steps: tuple  # Step...
    predicate: object  # Predicate or None
    pos: int
    end: int

    @property
    def is_return(self):
        return self.base == RETURN

    @property
    def path(self):
        """The value as the user wrote it, without spaces: ``skb->dev->name``."""
        return self.base + "".join(("->" if s.deref else ".") + s.name for s in self.steps)


FUNCTION, TRACEPOINT = "function", "tracepoint"
_PROBE_PREFIXES = {"tp": TRACEPOINT, "tracepoint": TRACEPOINT}
_TARGET = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*):(?:([A-Za-z_][A-Za-z0-9_]*):)?)?([A-Za-z0-9_*?]+)")


@dataclass(frozen=True)
class TraceSpec:
    text: str
    func: str  # function or tracepoint name (or a pattern), without the prefix
    func_pos: int
    values: tuple  # ValueSpec...; empty means "the default set"
    explicit: bool  # an argument list was given
    probe: str = FUNCTION  # FUNCTION or TRACEPOINT

    @property
    def is_pattern(self):
        return "*" in self.func or "?" in self.func

    @property
    def label(self):
        """The target as shown in output: ``ip_send_skb``, ``tp:sched_switch``."""
        return f"tp:{self.func}" if self.probe == TRACEPOINT else self.func

    def error(self, message, pos, length=1):
        return SpecError(message, self.text, pos, length)


def tokenize(text, pos=0):
    tokens = []
    while pos < len(text):
        ch = text[pos]
        if ch.isspace():
            pos += 1
            continue
        if text.startswith("->", pos):
            tokens.append(Token("arrow", "->", pos))
            pos += 2
            continue
        m = _IDENT.match(text, pos)
        if m:
            tokens.append(Token("ident", m.group(), pos))
            pos = m.end()
            continue
        m = _NUM_WORD.match(text, pos)
        if m:
            if not _NUM.fullmatch(m.group()):
                raise SpecError(f"bad number '{m.group()}'", text, m.start(), len(m.group()))
            tokens.append(Token("num", m.group(), pos))
            pos = m.end()
            continue
        for op in OPS:
            if text.startswith(op, pos):
                tokens.append(Token("op", op, pos))
                pos += len(op)
                break
        else:
            if ch in "(),.":
                tokens.append(Token("dot" if ch == "." else "punct", ch, pos))
                pos += 1
            elif ch == "=":
                raise SpecError("'=' is not a comparison; use '=='", text, pos, 1)
            elif ch == "-":
                raise SpecError("expected '->' or a number after '-'", text, pos, 1)
            else:
                raise SpecError(f"unexpected character '{ch}'", text, pos, 1)
    tokens.append(Token("end", "", len(text)))
    return tokens


def parse_literal(text, pos, full):
    """A literal's integer value; SpecError pointing at it when malformed."""
    body = text.replace(" ", "").replace("\t", "").rstrip("uUlL")
    neg = body.startswith("-")
    digits = body[1:] if neg else body
    try:
        value = int(digits, 0) if not (len(digits) > 1 and digits[0] == "0" and digits[1].isdigit()) \
            else int(digits, 8)
    except ValueError:
        raise SpecError(f"bad number {text!r}", full, pos, len(text)) from None
    return -value if neg else value


class _Parser:
    def __init__(self, text):
        self.text = text
        self.target = self._target(text)
        self.tokens = tokenize(text, self.target[2] if self.target else 0)
        self.i = 0

    @staticmethod
    def _target(text):
        """(probe kind, name, end, name position) of the spec's head, or None."""
        m = _TARGET.match(text)
        if not m or not m.group(3):
            return None
        prefix, name = m.group(1), m.group(3)
        if prefix is not None:
            if prefix not in _PROBE_PREFIXES:
                raise SpecError(f"unknown probe type '{prefix}:' (known: tp: for a tracepoint)",
                                text, m.start(1), len(prefix) + 1)
            kind = _PROBE_PREFIXES[prefix]
        else:
            kind = FUNCTION
        if name[0].isdigit():
            raise SpecError(f"'{name}' is not a function name", text, m.start(3), len(name))
        if kind == TRACEPOINT and ("*" in name or "?" in name):
            raise SpecError("tracepoint names take no wildcards here", text, m.start(3), len(name))
        return kind, name, m.end(), m.start(3)

    @property
    def tok(self):
        return self.tokens[self.i]

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, message, tok=None):
        tok = tok or self.tok
        length = len(tok.text) if tok.text else 1
        raise SpecError(message, self.text, tok.pos, length)

    def expect(self, kind, text=None, what=None):
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            found = f"{tok.text!r}" if tok.text else "end of spec"
            self.fail(f"expected {what or repr(text) or kind}, found {found}")
        return self.take()

    def spec(self):
        if self.target is None:
            if self.tok.kind == "end":
                self.fail("empty trace spec: expected a function name")
            self.fail(f"expected a function name, found {self.tok.text!r}")
        kind, name, _end, name_pos = self.target
        func = Token("ident", name, name_pos)
        if func.text == RETURN:
            self.fail("'return' is not a function name", func)
        values, explicit = [], False
        if self.tok.kind == "punct" and self.tok.text == "(":
            explicit = True
            lparen = self.take()
            if self.tok.kind == "punct" and self.tok.text == ")":
                raise SpecError("empty value list: name what to trace, or drop '()' to trace "
                                "every argument and the return value",
                                self.text, lparen.pos, self.tok.pos + 1 - lparen.pos)
            values.append(self.value())
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.take()
                values.append(self.value())
            self.expect("punct", ")", what="',' or ')'")
        if self.tok.kind != "end":
            self.fail(f"unexpected {self.tok.text!r} after the spec")
        self._check(values)
        return TraceSpec(self.text, func.text, func.pos, tuple(values), explicit, kind)

    def value(self):
        base = self.expect("ident", what="an argument name or 'return'")
        steps = []
        while self.tok.kind in ("arrow", "dot"):
            op = self.take()
            name = self.expect("ident", what="a member name")
            steps.append(Step(name.text, op.kind == "arrow", name.pos, op.pos))
        pred = None
        end = self.tokens[self.i - 1].pos + len(self.tokens[self.i - 1].text)
        if self.tok.kind == "op":
            op = self.take()
            lit = self.tok
            if lit.kind != "num":
                found = f"{lit.text!r}" if lit.text else "end of spec"
                self.fail(f"expected a number after '{op.text}', found {found}")
            self.take()
            value = parse_literal(lit.text, lit.pos, self.text)
            end = lit.pos + len(lit.text)
            pred = Predicate(op.text, value, lit.text, op.pos, end)
        return ValueSpec(base.text, tuple(steps), pred, base.pos, end)

    def _check(self, values):
        seen = {}
        for v in values:
            key = v.path
            if key in seen and v.predicate is None and seen[key].predicate is None:
                raise SpecError(f"{key} is named twice", self.text, v.pos, v.end - v.pos)
            seen.setdefault(key, v)
        if len(values) > MAX_VALUES:
            extra = values[MAX_VALUES]
            raise SpecError(f"too many values: at most {MAX_VALUES} per function",
                            self.text, extra.pos, extra.end - extra.pos)


def parse(text):
    """Parse one trace spec.  Raises SpecError with the bad token's span."""
    return _Parser(text).spec()
