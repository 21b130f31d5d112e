"""C declarations of BTF types: ``int (*fn)(struct kvm_vcpu *)``, ``char **argv``.

Qualifiers (const, volatile, restrict) and type tags are not printed, as in
the reference ksnoop; everything else is valid C, including pointers to
arrays and to functions, anonymous aggregates and variadic prototypes.

Bounded on any BTF: a declarator follows at most MAX_CHAIN pointers, arrays,
qualifiers and prototypes, prototypes nest (through their parameters) at most
MAX_NESTING deep, and one declaration takes at most MAX_STEPS steps and
MAX_TEXT characters; past any of these (a loop, or crafted BTF) it is a
BTFError.  In vmlinux 6.18 no declaration takes more than 77 steps or nests
prototypes more than 2 deep, and the longest prototype is 819 characters.
"""

from ..errors import BTFError
from .format import QUALIFIERS, Kind

_TAGS = {Kind.STRUCT: "struct", Kind.UNION: "union", Kind.ENUM: "enum", Kind.ENUM64: "enum"}


def base_name(btf, t):
    """The type-specifier part: ``int``, ``struct sk_buff``, ``size_t``."""
    if t.id == 0:
        return "void"
    if t.kind in _TAGS:
        return f"{_TAGS[t.kind]} {t.name}" if t.name else f"{_TAGS[t.kind]} {{...}}"
    if t.kind == Kind.FWD:
        return f"{'union' if t.kflag else 'struct'} {t.name}"
    return t.name or f"<{t.kind.name.lower()}>"


MAX_CHAIN = 64
MAX_NESTING = 16
MAX_STEPS = 1 << 14
MAX_TEXT = 1 << 16


def _too_long(budget):
    return BTFError(f"the C declaration of type {budget[1]} is too long "
                    f"(more than {MAX_STEPS} steps or {MAX_TEXT} characters)")


def declare(btf, tid, inner=""):
    """A declaration of ``inner`` (a name, or "" for an abstract type) as type ``tid``."""
    return _declare(btf, tid, inner, [MAX_STEPS, tid], 0)


def _declare(btf, tid, inner, budget, nesting):
    """``budget``: [steps left, the type asked for], shared by the whole declaration."""
    for _ in range(MAX_CHAIN):
        budget[0] -= 1
        if budget[0] < 0 or len(inner) > MAX_TEXT:
            raise _too_long(budget)
        t = btf[tid]
        if t.kind in QUALIFIERS:
            tid = t.type
        elif t.kind == Kind.PTR:
            inner = "*" + inner
            tid = t.type
        elif t.kind == Kind.ARRAY:
            if inner.startswith("*"):
                inner = f"({inner})"
            inner = f"{inner}[{t.nelems or ''}]"
            tid = t.elem_type
        elif t.kind == Kind.FUNC_PROTO:
            if inner.startswith("*"):
                inner = f"({inner})"
            inner = f"{inner}({_params(btf, t, 'void', budget, nesting + 1)})"
            tid = t.type
        else:
            base = base_name(btf, t)
            if len(base) + len(inner) > MAX_TEXT:
                raise _too_long(budget)
            if not inner:
                return base
            return f"{base}{inner}" if base.endswith("*") else f"{base} {inner}"
    raise BTFError(f"type chain too long or looping at id {tid}")


def param_list(btf, proto, empty=""):
    """The parameters of a FUNC_PROTO as C: ``struct net *net, int len``."""
    return _params(btf, proto, empty, [MAX_STEPS, proto.id], 0)


def _params(btf, proto, empty, budget, nesting):
    if nesting > MAX_NESTING:
        raise BTFError(f"function prototypes nest more than {MAX_NESTING} deep at id {proto.id}")
    parts = []
    length = 0
    for p in proto.params:
        if p.type == 0 and not p.name:
            parts.append("...")
        else:
            parts.append(_declare(btf, p.type, p.name, budget, nesting))
        length += len(parts[-1]) + 2
        budget[0] -= 1
        if budget[0] < 0 or length > MAX_TEXT:
            raise _too_long(budget)
    return ", ".join(parts) if parts else empty


def type_name(btf, tid):
    """The abstract C name of a type: ``struct sk_buff *``, ``int[4]``."""
    return declare(btf, tid, "")


# ------------------------------------------------------- C type names -> ids
_TAG_KINDS = {"struct": (Kind.STRUCT,), "union": (Kind.UNION,), "enum": (Kind.ENUM, Kind.ENUM64)}
_PLAIN = (Kind.TYPEDEF, Kind.INT, Kind.FLOAT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64)
_QUALIFIER_WORDS = {"const", "volatile", "restrict"}


def parse_type_name(btf, spec):
    """Type id for ``struct sk_buff``, ``int``, ``u32``, ``struct task_struct *`` or ``btf:ID``."""
    text = spec.strip()
    if text.startswith("btf:"):
        try:
            tid = int(text[4:], 0)
        except ValueError:
            raise BTFError(f"bad type id in {spec!r}") from None
        if not 0 < tid < len(btf):
            raise BTFError(f"no type with id {tid} (BTF has ids 1-{len(btf) - 1})")
        return tid
    depth = len(text) - len(text.rstrip("*"))
    words = [w for w in text.rstrip("*").split() if w not in _QUALIFIER_WORDS]
    if not words:
        raise BTFError(f"bad type name {spec!r}")
    if words[0] in _TAG_KINDS and len(words) == 2:
        kinds, name = _TAG_KINDS[words[0]], words[1]
    else:
        kinds, name = _PLAIN, " ".join(words)
    found = [t for t in btf.find(name) if btf.kind_of(t) in kinds]
    if not found:
        raise BTFError(f"unknown type {' '.join(words)!r}")
    found.sort(key=lambda t: kinds.index(btf.kind_of(t)))
    tid = found[0]
    for _ in range(depth):
        tid = _pointer_to(btf, tid, spec)
    return tid


def _pointer_to(btf, tid, spec):
    for pid in btf.ids(Kind.PTR):
        if btf[pid].type == tid:
            return pid
    raise BTFError(f"BTF has no pointer type for {spec!r}")
