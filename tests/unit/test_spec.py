"""The trace spec parser: accepted forms, and every error with its exact text and span."""

import re

import pytest

from ksnoop.errors import SpecError, UsageError
from ksnoop.trace.spec import MAX_VALUES, Predicate, Step, parse, tokenize


def err(text):
    with pytest.raises(SpecError) as ei:
        parse(text)
    e = ei.value
    assert e.text == text
    return e.message, e.pos, e.length


def caret(text):
    """The span of the error, as the CLI underlines it: the text under the carets."""
    e = pytest.raises(SpecError, parse, text).value
    return text[e.pos:e.pos + e.length]


# ----------------------------------------------------------------- accepted
def test_bare_function_is_the_default_set():
    s = parse("ip_send_skb")
    assert (s.func, s.func_pos, s.values, s.explicit) == ("ip_send_skb", 0, (), False)
    assert s.text == "ip_send_skb"


def test_values_with_spans():
    s = parse("f(a, b, return)")
    assert s.explicit
    assert [(v.base, v.pos, v.end, v.predicate) for v in s.values] == [
        ("a", 2, 3, None), ("b", 5, 6, None), ("return", 8, 14, None)]
    assert [v.is_return for v in s.values] == [False, False, True]


def test_member_chain_arrow_and_dot():
    (v,) = parse("f(skb->sk->__sk_common.skc_family)").values
    assert v.base == "skb"
    assert v.steps == (Step("sk", True, 7, 5), Step("__sk_common", True, 11, 9),
                       Step("skc_family", False, 23, 22))
    assert v.path == "skb->sk->__sk_common.skc_family"
    assert (v.pos, v.end) == (2, 33)


def test_member_chain_on_return():
    (v,) = parse("f(return->len)").values
    assert v.is_return and v.path == "return->len"


@pytest.mark.parametrize("text", [
    "  f(a->b.c,return<0)",
    "f ( a -> b . c , return < 0 ) ",
    "\tf(\ta\t->\tb\n.\nc ,  return\t<\t0\t)\n",
    "f(a->b.c, return <0)",
])
def test_whitespace_anywhere(text):
    s = parse(text)
    assert s.func == "f"
    assert [v.path for v in s.values] == ["a->b.c", "return"]
    pred = s.values[1].predicate
    assert (pred.op, pred.value) == ("<", 0)
    assert text[pred.pos] == "<"
    assert text[pred.end - 1] == "0"
    assert s.func_pos == text.index("f")


@pytest.mark.parametrize("op", ["==", "!=", ">", ">=", "<", "<="])
def test_every_operator(op):
    (v,) = parse(f"f(a {op} 3)").values
    assert v.predicate == Predicate(op, 3, "3", 4, 6 + len(op))


@pytest.mark.parametrize("lit,value", [
    ("0", 0), ("42", 42), ("-1", -1), ("- 7", -7), ("0x1F", 31), ("0X1f", 31), ("-0x10", -16),
    ("0o17", 15), ("017", 15), ("0b101", 5), ("-0b1", -1), ("10UL", 10), ("7u", 7), ("5ll", 5),
    ("0xffffffffffffffff", (1 << 64) - 1), ("-9223372036854775808", -(1 << 63)),
    ("0xFFFFFFFFFFFFFFFFFFFF", (1 << 80) - 1),  # range is checked against the type later
])
def test_literals(lit, value):
    (v,) = parse(f"f(x == {lit})").values
    assert v.predicate.value == value
    assert v.predicate.literal == lit
    assert v.predicate.end == 7 + len(lit)


def test_same_value_with_several_predicates_is_allowed():
    vals = parse("f(a > 1, a < 9, a)").values
    assert [(v.path, v.predicate and v.predicate.op) for v in vals] == [
        ("a", ">"), ("a", "<"), ("a", None)]


def test_max_values_accepted():
    names = [f"a{i}" for i in range(MAX_VALUES)]
    assert len(parse(f"f({', '.join(names)})").values) == MAX_VALUES


def test_tokenize_arrow_vs_minus_number():
    kinds = [(t.kind, t.text) for t in tokenize("a->b==-1")]
    assert kinds == [("ident", "a"), ("arrow", "->"), ("ident", "b"), ("op", "=="),
                     ("num", "-1"), ("end", "")]


# ------------------------------------------------------------------- errors
# (spec, message, position, length)
ERRORS = [
    ("", "empty trace spec: expected a function name", 0, 1),
    ("   ", "empty trace spec: expected a function name", 3, 1),
    ("return", "'return' is not a function name", 0, 6),
    ("return(a)", "'return' is not a function name", 0, 6),
    ("f(a = 1)", "'=' is not a comparison; use '=='", 4, 1),
    ("f(a=1)", "'=' is not a comparison; use '=='", 3, 1),
    ("f(a => 1)", "'=' is not a comparison; use '=='", 4, 1),
    ("f(a !== 1)", "'=' is not a comparison; use '=='", 6, 1),
    ("f(a $ 1)", "unexpected character '$'", 4, 1),
    ("f(a!1)", "expected ',' or ')', found '!'", 3, 1),
    ("f[a]", "unexpected '[' after the spec", 1, 1),
    ("f(a - > b)", "expected '->' or a number after '-'", 4, 1),
    ("f(a == --1)", "expected '->' or a number after '-'", 7, 1),
    ("f(", "expected an argument name or 'return', found end of spec", 2, 1),
    ("f(a", "expected ',' or ')', found end of spec", 3, 1),
    ("f(a == 1", "expected ',' or ')', found end of spec", 8, 1),
    ("f(a,", "expected an argument name or 'return', found end of spec", 4, 1),
    ("f(a, )", "expected an argument name or 'return', found ')'", 5, 1),
    ("f(a b)", "expected ',' or ')', found 'b'", 4, 1),
    ("f(a == 1 2)", "expected ',' or ')', found '2'", 9, 1),
    ("f(1)", "expected an argument name or 'return', found '1'", 2, 1),
    ("f(a->)", "expected a member name, found ')'", 5, 1),
    ("f(a.)", "expected a member name, found ')'", 4, 1),
    ("f(a->1)", "expected a member name, found '1'", 5, 1),
    ("f(a ==)", "expected a number, a name or a string after '==', found ')'", 6, 1),
    ("f(a == return)", "expected a number, a name or a string after '==', found 'return'", 7, 6),
    ("f(a <", "expected a number, a name or a string after '<', found end of spec", 5, 1),
    ("f(a) x", "unexpected 'x' after the spec", 5, 1),
    ("f(a))", "unexpected ')' after the spec", 4, 1),
    ("f)", "unexpected ')' after the spec", 1, 1),
    ("f(a)(b)", "unexpected '(' after the spec", 4, 1),
    ("f g", "unexpected 'g' after the spec", 2, 1),
    ("f(a == 12ab)", "bad number '12ab'", 7, 4),
    ("f(a == 0x)", "bad number '0x'", 7, 2),
    ("f(a == 0xfg)", "bad number '0xfg'", 7, 4),
    ("f(a == 08)", "bad number '08'", 7, 2),
    ("f(a == 0b102)", "bad number '0b102'", 7, 5),
    ("f(a == 1x)", "bad number '1x'", 7, 2),
    ("1f", "'1f' is not a function name", 0, 2),
    ("kp:f", "unknown probe type 'kp:' (known: tp: for a tracepoint)", 0, 3),
    ("tp:sched_*", "tracepoint names take no wildcards here", 3, 7),
    ("f(a, a)", "a is named twice", 5, 1),
    ("f(skb->len, skb -> len)", "skb->len is named twice", 12, 10),
    ("f(a, b, return, return)", "return is named twice", 16, 6),
    ("f()", "empty value list: name what to trace, or drop '()' to trace every argument and "
           "the return value", 1, 2),
    ("f( )", "empty value list: name what to trace, or drop '()' to trace every argument and "
            "the return value", 1, 3),
]


@pytest.mark.parametrize("text,message,pos,length", ERRORS)
def test_errors(text, message, pos, length):
    assert err(text) == (message, pos, length)


def test_too_many_values_points_at_the_first_extra_one():
    names = [f"a{i}" for i in range(MAX_VALUES + 2)]
    text = f"f({', '.join(names)})"
    msg, pos, length = err(text)
    assert msg == f"too many values: at most {MAX_VALUES} per function"
    assert text[pos:pos + length] == f"a{MAX_VALUES}"


def test_too_many_values_counts_predicates_on_one_value():
    text = "f(" + ", ".join(f"a > {i}" for i in range(MAX_VALUES + 1)) + ")"
    assert caret(text) == f"a > {MAX_VALUES}"


@pytest.mark.parametrize("text,under", [
    ("f(a == 12ab)", "12ab"),
    ("f(x->y, x->y)", "x->y"),
    ("f(a =1)", "="),
    ("f(a) trailing", "trailing"),
    ("  return", "return"),
])
def test_caret_underlines_the_bad_token(text, under):
    assert caret(text) == under


def test_spec_errors_are_usage_errors():
    e = pytest.raises(SpecError, parse, "f(").value
    assert isinstance(e, UsageError) and e.exit_code == 2
    assert str(e) == e.message


@pytest.mark.parametrize("spec,lines", [
    ("f(a = 1)", ["ksnoop: '=' is not a comparison; use '=='", "  f(a = 1)", "      ^"]),
    ("f(a == 12ab)", ["ksnoop: bad number '12ab'", "  f(a == 12ab)", "         ^^^^"]),
    ("f(x, x)", ["ksnoop: x is named twice", "  f(x, x)", "       ^"]),
])
def test_cli_shows_the_spec_and_a_caret_line(spec, lines, capsys):
    """Parse errors come before any kernel access, so this runs anywhere."""
    from ksnoop.cli.main import main

    with pytest.raises(SystemExit) as ei:
        main(["trace", spec])
    out, errout = capsys.readouterr()
    assert ei.value.code == 2
    assert out == ""
    assert errout.splitlines() == lines


@pytest.mark.parametrize("text,probe,func,label", [
    ("tp:sched_switch(prev->pid)", "tracepoint", "sched_switch", "tp:sched_switch"),
    ("tracepoint:sched:sched_switch", "tracepoint", "sched_switch", "tp:sched_switch"),
    (" tp:sys_enter(id == 110, regs->di)", "tracepoint", "sys_enter", "tp:sys_enter"),
    ("udp_send*(sk)", "function", "udp_send*", "udp_send*"),
    ("ip_send_skb", "function", "ip_send_skb", "ip_send_skb"),
])
def test_probe_targets(text, probe, func, label):
    s = parse(text)
    assert (s.probe, s.func, s.label) == (probe, func, label)
    assert text[s.func_pos:s.func_pos + len(s.func)] == func
    assert s.is_pattern == ("*" in func)


def _item(text):
    (item,) = parse(f"f({text})").values
    return item


def test_conditions_make_trees_and_name_their_values():
    from ksnoop.trace.spec import CondSpec, Logic, Not, ValueSpec

    c = _item("len > 100 && len < 300 || !(flags == 2)")
    assert isinstance(c, CondSpec)
    assert isinstance(c.expr, Logic) and c.expr.op == "||"
    assert isinstance(c.expr.left, Logic) and c.expr.left.op == "&&"
    assert isinstance(c.expr.right, Not)
    assert [r.path for r in c.refs()] == ["len", "len", "flags"]
    assert isinstance(_item("skb->len > 5"), ValueSpec)  # one comparison stays a value


def test_bit_tests_and_masked_compares():
    t = _item("how->flags & 0x40")
    assert t.expr.predicate.mask == 0x40 and (t.expr.predicate.op, t.expr.predicate.value) == ("!=", 0)
    m = _item("(how->flags & 3) == 1")
    p = m.expr.predicate
    assert (p.mask, p.op, p.value) == (3, "==", 1)


def test_names_strings_and_indexes():
    p = _item("return == -ENOENT").predicate
    assert (p.name, p.neg, p.value) == ("ENOENT", True, None)
    s = _item('skb->dev->name == "lo"').predicate
    assert s.value == b"lo" and s.is_string
    g = _item(r'filename ~ "/etc/\x2a*"').predicate
    assert g.op == "~" and g.value == b"/etc/**"
    v = _item("req->iov[1].iov_len")
    assert v.path == "req->iov[1].iov_len" and v.steps[1].index == 1


@pytest.mark.parametrize("text,message", [
    ("!a > 5", "'!' applies to what follows it"),
    ("a & 3 == 1", "write (x & N) OP value"),
    ("(a > 1) == 2", "only a masked value"),
    ('a > "x"', "does not compare strings"),
    ('a == "unterminated', "unterminated string"),
    (r'a == "\q"', "unknown escape"),
    ("a[-1]", "must not be negative"),
])
def test_condition_errors(text, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse(f"f({text})")
