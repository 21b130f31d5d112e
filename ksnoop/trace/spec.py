"""Trace spec language: text -> frozen TraceSpec with source spans.

    spec   := TARGET [ "(" [ item { "," item } ] ")" ]
    TARGET := FUNC | "tp:" [CATEGORY ":"] TRACEPOINT
              (FUNC may hold the wildcards * and ?)
    item   := cond
    cond   := and { "||" and }
    and    := unary { "&&" unary }
    unary  := "!" unary | "(" cond ")" [ OP literal ] | test
    test   := path [ "&" NUMBER ] [ OP literal ]
    path   := ( "return" | IDENT ) { "->" IDENT | "." IDENT | "[" NUMBER "]" }
    OP     := "==" | "!=" | ">" | ">=" | "<" | "<=" | "~"
    literal:= NUMBER | ["-"] NAME | STRING
    NUMBER := ["-"] ( DECIMAL | "0x" HEX | "0" OCTAL | "0o" OCTAL | "0b" BINARY ) [SUFFIX]
    SUFFIX := C's integer suffixes, in either order: u, l, ll, ul, lu, ull, llu
              (any case; "lL" mixes are refused, as in C)
    NAME   := an enum constant or an errno name (ENOENT), resolved later
    STRING := a double-quoted C string ("lo", "/etc/\x2a"); "~" takes a glob

An item that is one path, with at most one plain comparison, is a value to
show (and a predicate on it, as before): ``skb->len > 100``.  Any other item
is a condition (``len > 100 && len < 300``, ``flags & 0x40``, ``!(a == 1)``,
``(flags & 3) == 1``): every value it names is shown, once.  A path alone in
a condition is true when non-zero; ``(path & N)`` alone when a bit is set.
``(path & N) OP literal`` compares the masked value.

Literals follow C: a leading 0 means octal (0644), 0x hex; 0o and 0b are
also accepted.  A suffix does not change the value: the comparison always
uses the C type of the value compared.

Whitespace is allowed anywhere between tokens.  Every error names the bad
token by its position so the CLI can underline it.
"""

import re
from dataclasses import dataclass

from ..errors import SpecError

OPS = ("==", "!=", ">=", "<=", ">", "<", "~")
LOGIC = ("&&", "||", "!", "&")  # longest first: "!=" is an OP, tried before "!"
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
    """One member access: ``->name`` (deref=True) or ``.name``; or an array
    element ``[index]`` (name "", index set)."""

    name: str
    deref: bool
    pos: int  # of the member name (of the index for an element)
    op_pos: int = -1  # of the "->", "." or "[" before it
    index: object = None  # int for an element step

    @property
    def text(self):
        if self.index is not None:
            return f"[{self.index}]"
        return ("->" if self.deref else ".") + self.name


@dataclass(frozen=True)
class Predicate:
    op: str  # an OP; a bit test is op "!=" with value 0 and a mask
    value: object  # int, bytes (a string literal), or None until ``name`` is resolved
    literal: str  # as written ("" for a bit test)
    pos: int  # of the operator (of the "&" for a bit test)
    end: int  # end of the literal
    name: str = ""  # an enum constant or errno name standing for the value
    neg: bool = False  # "-NAME"
    mask: object = None  # int: compare (value & mask)

    @property
    def is_string(self):
        return isinstance(self.value, bytes)


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
        return self.base + "".join(s.text for s in self.steps)

    def refs(self):
        yield self


@dataclass(frozen=True)
class Not:
    expr: object
    pos: int

    def refs(self):
        yield from self.expr.refs()


@dataclass(frozen=True)
class Logic:
    op: str  # "&&" or "||"
    left: object
    right: object

    def refs(self):
        yield from self.left.refs()
        yield from self.right.refs()


@dataclass(frozen=True)
class CondSpec:
    """A condition item: a tree of Not / Logic over ValueSpec tests (a ValueSpec
    with a predicate; without one it is true when non-zero)."""

    expr: object
    pos: int
    end: int

    @property
    def is_return(self):
        """True when the condition can only be decided at return."""
        return any(v.is_return for v in self.expr.refs())

    def refs(self):
        """Every path the condition names, in the order written (repeats included)."""
        yield from self.expr.refs()


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
        if ch == '"':
            end, raw = _string(text, pos)
            tokens.append(Token("str", text[pos:end], pos))
            pos = end
            continue
        if ch == "-" and re.match(r"-[ \t]*[A-Za-z_]", text[pos:]) and not text.startswith("->", pos):
            tokens.append(Token("neg", "-", pos))
            pos += 1
            continue
        m = _NUM_WORD.match(text, pos)
        if m:
            if not _NUM.fullmatch(m.group()):
                raise SpecError(f"bad number '{m.group()}'", text, m.start(), len(m.group()))
            tokens.append(Token("num", m.group(), pos))
            pos = m.end()
            continue
        for kind, ops in (("op", OPS), ("logic", LOGIC)):
            op = next((o for o in ops if text.startswith(o, pos)), None)
            if op:
                tokens.append(Token(kind, op, pos))
                pos += len(op)
                break
        else:
            if ch in "(),.[]":
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


_ESCAPES = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, '"': 34, "'": 39, "a": 7, "b": 8,
            "f": 12, "v": 11, "e": 27}


def _string(text, pos):
    """(end, bytes) of the C string literal starting at ``text[pos]`` (a quote)."""
    out, i = bytearray(), pos + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return i + 1, bytes(out)
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            m = re.match(r"x([0-9a-fA-F]{1,2})|([0-7]{1,3})", text[i + 1:])
            if m and (m.group(1) or (m.group(2) and m.group(2) != "0")):
                out.append(int(m.group(1), 16) if m.group(1) else int(m.group(2), 8) & 0xFF)
                i += 1 + m.end()
                continue
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            raise SpecError(f"unknown escape '\\{nxt}' in a string", text, i, 2)
        out += ch.encode("utf-8")
        i += 1
    raise SpecError("unterminated string: a closing '\"' is missing", text, pos, len(text) - pos)


def string_literal(token_text):
    """The bytes of a string token (validated when tokenized)."""
    return _string(token_text, 0)[1]


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
            values.append(self.item())
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.take()
                values.append(self.item())
            self.expect("punct", ")", what="',' or ')'")
        if self.tok.kind != "end":
            self.fail(f"unexpected {self.tok.text!r} after the spec")
        self._check(values)
        return TraceSpec(self.text, func.text, func.pos, tuple(values), explicit, kind)

    # -------------------------------------------------------------- items
    def _is(self, kind, text=None):
        return self.tok.kind == kind and (text is None or self.tok.text == text)

    def _end(self):
        prev = self.tokens[self.i - 1]
        return prev.pos + len(prev.text)

    def item(self):
        """A value to show (a path, maybe with one comparison) or a condition."""
        start = self.tok.pos
        expr = self.cond()
        if isinstance(expr, ValueSpec) and (expr.predicate is None or expr.predicate.mask is None):
            return expr
        return CondSpec(expr, start, self._end())

    def cond(self):
        left = self.conj()
        while self._is("logic", "||"):
            self.take()
            left = Logic("||", left, self.conj())
        return left

    def conj(self):
        left = self.unary()
        while self._is("logic", "&&"):
            self.take()
            left = Logic("&&", left, self.unary())
        return left

    def unary(self):
        if self._is("logic", "!"):
            bang = self.take()
            inner = self.unary()
            if isinstance(inner, ValueSpec) and inner.predicate is not None and inner.predicate.mask is None \
                    and self.tokens[self.i - 1].kind != "punct":
                raise SpecError("'!' applies to what follows it: write !(a OP b) to negate a "
                                "comparison", self.text, bang.pos, 1)
            return Not(inner, bang.pos)
        if self._is("punct", "("):
            lparen = self.take()
            inner = self.cond()
            self.expect("punct", ")", what="')'")
            if self._is("op"):
                if not (isinstance(inner, ValueSpec) and inner.predicate is not None
                        and inner.predicate.mask is not None and not inner.predicate.literal):
                    raise SpecError("only a masked value (x & N) can be compared here",
                                    self.text, lparen.pos, self._end() - lparen.pos)
                pred = self.comparison(mask=inner.predicate.mask)
                return ValueSpec(inner.base, inner.steps, pred, inner.pos, pred.end)
            return inner
        return self.test()

    def test(self):
        path = self.path()
        if self._is("logic", "&"):
            amp = self.take()
            num = self.tok
            if num.kind != "num":
                self.fail("expected a number (a bit mask) after '&'")
            self.take()
            mask = parse_literal(num.text, num.pos, self.text)
            if mask < 0:
                raise SpecError("a bit mask must not be negative", self.text, num.pos, len(num.text))
            if self._is("op"):
                raise SpecError("write (x & N) OP value: '&' binds looser than comparisons in C",
                                self.text, amp.pos, self.tok.pos + len(self.tok.text) - amp.pos)
            pred = Predicate("!=", 0, "", amp.pos, num.pos + len(num.text), mask=mask)
            return ValueSpec(path.base, path.steps, pred, path.pos, pred.end)
        if self._is("op"):
            pred = self.comparison()
            return ValueSpec(path.base, path.steps, pred, path.pos, pred.end)
        return path

    def comparison(self, mask=None):
        op = self.take()
        lit = self.tok
        if lit.kind == "num":
            self.take()
            value = parse_literal(lit.text, lit.pos, self.text)
            return Predicate(op.text, value, lit.text, op.pos, lit.pos + len(lit.text), mask=mask)
        if lit.kind == "str":
            self.take()
            if op.text not in ("==", "!=", "~"):
                raise SpecError(f"'{op.text}' does not compare strings (use ==, != or ~)",
                                self.text, op.pos, len(op.text))
            if mask is not None:
                raise SpecError("a masked value is a number, not a string", self.text, lit.pos, len(lit.text))
            return Predicate(op.text, string_literal(lit.text), lit.text, op.pos, lit.pos + len(lit.text))
        neg = None
        if lit.kind == "neg":
            neg = self.take()
            lit = self.tok
        if lit.kind == "ident" and lit.text != RETURN:
            self.take()
            start = neg.pos if neg else lit.pos
            return Predicate(op.text, None, self.text[start:lit.pos + len(lit.text)], op.pos,
                             lit.pos + len(lit.text), name=lit.text, neg=neg is not None, mask=mask)
        found = f"{lit.text!r}" if lit.text else "end of spec"
        self.fail(f"expected a number, a name or a string after '{op.text}', found {found}")

    def path(self):
        base = self.expect("ident", what="an argument name or 'return'")
        steps = []
        while self.tok.kind in ("arrow", "dot") or self._is("punct", "["):
            op = self.take()
            if op.text == "[":
                num = self.tok
                if num.kind != "num":
                    self.fail("expected an array index")
                self.take()
                index = parse_literal(num.text, num.pos, self.text)
                if index < 0:
                    raise SpecError("an array index must not be negative", self.text, num.pos,
                                    len(num.text))
                self.expect("punct", "]", what="']'")
                steps.append(Step("", False, num.pos, op.pos, index))
                continue
            name = self.expect("ident", what="a member name")
            steps.append(Step(name.text, op.kind == "arrow", name.pos, op.pos))
        return ValueSpec(base.text, tuple(steps), None, base.pos, self._end())

    def value(self):
        """One path with at most one comparison (the value list's old form)."""
        item = self.item()
        if not isinstance(item, ValueSpec):
            raise SpecError("expected a value", self.text, item.pos, item.end - item.pos)
        return item

    def _check(self, values):
        if len(values) > MAX_VALUES:
            extra = values[MAX_VALUES]
            raise SpecError(f"too many values: at most {MAX_VALUES} per function",
                            self.text, extra.pos, extra.end - extra.pos)
        seen, shown = {}, []
        for v in values:
            if isinstance(v, ValueSpec):
                key = v.path
                if key in seen and v.predicate is None and seen[key].predicate is None:
                    raise SpecError(f"{key} is named twice", self.text, v.pos, v.end - v.pos)
                seen.setdefault(key, v)
            for ref in v.refs():
                if ref.path not in shown:
                    shown.append(ref.path)
                    if len(shown) > MAX_VALUES:
                        raise SpecError(f"too many values: at most {MAX_VALUES} per function",
                                        self.text, ref.pos, ref.end - ref.pos)


def parse(text):
    """Parse one trace spec.  Raises SpecError with the bad token's span."""
    return _Parser(text).spec()
