"""Which parts of ksnoop's text and line output are coloured, and how.

colourize() returns a rich Text; its spans say which style each character
gets.  Every coloured run is checked: member (and value) names, casts,
numbers, strings, pointers and comments each get their own style, and a run
never gets two (digits inside a cast, a string or a comment belong to the
cast, the string or the comment).
"""

import io
import re

from btfwriter import demo_types

from ksnoop.btf import BTF
from ksnoop.render import Renderer
from ksnoop.render.text import THEME, colourize

M, C, N, S, P, K = ("ksnoop.member", "ksnoop.cast", "ksnoop.number", "ksnoop.string",
                    "ksnoop.pointer", "ksnoop.comment")


def runs(text):
    """[(substring, style)] for each maximal run of characters with the same
    non-empty set of styles ("a+b" when several spans cover a character)."""
    t = colourize(text)
    assert t.plain == text
    per_char = [set() for _ in text]
    for span in t.spans:
        for i in range(span.start, span.end):
            per_char[i].add(str(span.style))
    out, start = [], 0
    for i in range(1, len(text) + 1):
        if i == len(text) or per_char[i] != per_char[start]:
            if per_char[start]:
                out.append((text[start:i], "+".join(sorted(per_char[start]))))
            start = i
    return out


def test_struct_text():
    text = ('(struct demo){\n'
            ' .a = (int)-5,\n'
            ' .name = (char[8])"JX\\267 42 .b = (int)1",\n'
            ' .next = (struct list_head *)0xffff888001234560,\n'
            ' .cmd = (enum bpf_cmd)BPF_MAP_UPDATE_ELEM,\n'
            ' .gids = (kgid_t[3])[\n'
            '  [1] = {\n'
            '   .val = (gid_t)6,\n'
            '  },\n'
            ' ],\n'
            ' .ptrs = (struct list_head *[2])[0xe4b06ce60741c7a8, 0x63ca828dd5f4b3b2],\n'
            ' .ok = (bool)true,\n'
            '} /* 100 of 120 bytes */\n')
    assert runs(text) == [
        ("(struct demo)", C),
        (".a", M), ("(int)", C), ("-5", N),
        (".name", M), ("(char[8])", C), ('"JX\\267 42 .b = (int)1"', S),
        (".next", M), ("(struct list_head *)", C), ("0xffff888001234560", P),
        (".cmd", M), ("(enum bpf_cmd)", C),
        (".gids", M), ("(kgid_t[3])", C), ("1", N),
        (".val", M), ("(gid_t)", C), ("6", N),
        (".ptrs", M), ("(struct list_head *[2])", C), ("0xe4b06ce60741c7a8", P),
        ("0x63ca828dd5f4b3b2", P),
        (".ok", M), ("(bool)", C),
        ("/* 100 of 120 bytes */", K),
    ]


def test_compact_struct_and_nested_arrays():
    text = '(struct demo){.a = (int)7,.m = (unsigned int[2][2])[[1, 3],[0, 42],],}'
    assert runs(text) == [
        ("(struct demo)", C), (".a", M), ("(int)", C), ("7", N),
        (".m", M), ("(unsigned int[2][2])", C), ("1", N), ("3", N), ("0", N), ("42", N),
    ]


def test_trace_text_event():
    """Value names at the top of a trace event are names too; the header's
    numbers (pid, cpu) are numbers, the timestamp and names are plain."""
    text = ("ping                   7    0         2.000042 ip_send_skb(\n"
            "  skb->len = (unsigned int)84,\n"
            '  filename = "/etc/host 5",\n'
            "  name = (char *)0x7ffd1234 /* Cannot show 'name' as 'char *'. Userspace/invalid ptr? "
            "(read failed: -EFAULT) */\n"
            ");")
    assert runs(text) == [
        ("7", N), ("0", N),
        ("skb->len", M), ("(unsigned int)", C), ("84", N),
        ("filename", M), ('"/etc/host 5"', S),
        ("name", M), ("(char *)", C), ("0x7ffd1234", P),
        ("/* Cannot show 'name' as 'char *'. Userspace/invalid ptr? (read failed: -EFAULT) */", K),
    ]


def test_trace_line_event():
    text = ("ping 7 0 2.000000 ip_send_skb(skb->sk->__sk_common.skc_family = (short unsigned int)2, "
            "skb = *(struct sk_buff){.len = (unsigned int)84,}) => return = (int)-22")
    assert runs(text) == [
        ("7", N), ("0", N),
        ("skb->sk->__sk_common.skc_family", M), ("(short unsigned int)", C), ("2", N),
        ("skb", M), ("(struct sk_buff)", C), (".len", M), ("(unsigned int)", C), ("84", N),
        ("return", M), ("(int)", C), ("-22", N),
    ]


def test_real_renderer_output_is_fully_classified():
    """On the renderer's own output (demo types, tree and compiled, both
    layouts): every member label, cast and number is styled as such, once."""
    blob, ids = demo_types()
    btf = BTF(blob, name="demo")
    data = bytes(range(1, 121))
    for flags in (0, 1):
        text = Renderer(btf, ids["demo"], flags=flags).render(data)
        got = runs(text)
        assert all("+" not in style for _, style in got), got
        members = re.findall(r"\.\w+(?= = )", text)
        assert [s for s, style in got if style == M] == members
        assert [s for s, style in got if style == S] == re.findall(r'"(?:[^"\\]|\\.)*"', text)
        assert [s for s, style in got if style == C][0] == "(struct demo)"


def test_every_style_has_a_theme_colour_and_reaches_the_terminal():
    from rich.console import Console
    from rich.theme import Theme

    assert set(THEME) == {M, C, N, S, P, K}
    out = io.StringIO()
    console = Console(file=out, theme=Theme(THEME), force_terminal=True, color_system="standard",
                      highlight=False, soft_wrap=True)
    console.print(colourize(' .n = (char[4])"a1",'))
    ansi = out.getvalue()
    # bold cyan member, green cast (its "4" too), yellow string (its "1" too), nothing blue
    assert "\x1b[1;36m.n\x1b[0m" in ansi
    assert "\x1b[32m(char[4])\x1b[0m" in ansi
    assert '\x1b[33m"a1"\x1b[0m' in ansi
    assert "\x1b[94m" not in ansi
