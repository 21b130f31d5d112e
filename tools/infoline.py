"""Reading one line of `ksnoop info` output back into its parts.

    RET NAME(PARAM, PARAM, ...[ /* not traceable: ... */]);

The line is split by position and bracket depth only, without any knowledge
of BTF, so that the checkers built on it (tools/ref_ksnoop.py,
tools/bpftool_btf.py) judge the text ksnoop printed, not a re-derivation.
"""

import re
from dataclasses import dataclass

OPEN, CLOSE = "([{", ")]}"


class BadLine(ValueError):
    """The line is not shaped like a prototype of the named function."""


@dataclass(frozen=True)
class Prototype:
    line: str
    at: int  # index of the function's name in the line
    ret: str  # everything before the name: "int ", "struct sk_buff *", "void (*"
    params: tuple  # the parameter declarations, stripped
    comment: str  # " /* not traceable: ... */" or ""
    tail: str  # what follows the closing parenthesis: ";" (or ")(int);" for a
    #            function returning a function pointer)


def name_position(line, name):
    """Where ``name(`` starts in the line, not inside another identifier."""
    m = re.search(r"(?<![\w$])" + re.escape(name) + r"\(", line)
    if not m:
        raise BadLine(f"no '{name}(' in the line")
    return m.start()


def split_top(text, sep=","):
    """Split at ``sep`` outside any brackets; pieces stripped."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in OPEN:
            depth += 1
        elif ch in CLOSE:
            depth -= 1
            if depth < 0:
                raise BadLine(f"unbalanced {ch!r}")
        elif ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if depth:
        raise BadLine("unbalanced brackets")
    if "".join(cur).strip() or parts:
        parts.append("".join(cur).strip())
    return parts


def parse(line, name):
    """Split one info line; BadLine if it is not ``RET NAME(...)...;``."""
    at = name_position(line, name)
    start = at + len(name)  # the '(' opening the parameter list
    depth = 0
    for i in range(start, len(line)):
        if line[i] in OPEN:
            depth += 1
        elif line[i] in CLOSE:
            depth -= 1
            if depth == 0:
                end = i
                break
    else:
        raise BadLine("the parameter list is not closed")
    inner, comment = line[start + 1:end], ""
    if "/*" in inner:
        cut = inner.index("/*")
        if not inner.endswith("*/") or cut == 0 or inner[cut - 1] != " ":
            raise BadLine("a comment not at the end of the parameter list")
        inner, comment = inner[:cut - 1], inner[cut - 1:]
    return Prototype(line, at, line[:at], tuple(split_top(inner)), comment, line[end + 1:])


_FUNC_PTR_NAME = re.compile(r"\(\*+(\w+)\)")
_TRAILING_NAME = re.compile(r"(?<![\w$])([A-Za-z_]\w*)$")
_TYPE_WORDS = {"void", "char", "short", "int", "long", "signed", "unsigned", "float", "double",
               "_Bool", "struct", "union", "enum"}


def declared_name(param):
    """The identifier a parameter declaration declares, "" for none (``...``,
    or an abstract declaration such as ``int *``)."""
    if param == "...":
        return ""
    m = _FUNC_PTR_NAME.search(param)
    if m:
        return m.group(1)
    m = _TRAILING_NAME.search(param)
    if not m or param[:m.start()].strip() in ("", "struct", "union", "enum"):
        return ""  # "int" or "struct foo": a type alone
    if m.group(1) in _TYPE_WORDS:
        return ""
    return m.group(1)
