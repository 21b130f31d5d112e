"""C declarations of BTF types: ``int (*fn)(struct kvm_vcpu *)``, ``char **argv``.

Qualifiers (const, volatile, restrict) and type tags are not printed, as in
the reference ksnoop; everything else is valid C, including pointers to
arrays and to functions, anonymous aggregates and variadic prototypes.
"""

from .btf import Kind
from .btf.layout import QUALIFIERS
from .errors import BTFError

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


def declare(btf, tid, inner=""):
    """A declaration of ``inner`` (a name, or "" for an abstract type) as type ``tid``."""
    for _ in range(64):
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
            inner = f"{inner}({param_list(btf, t, empty='void')})"
            tid = t.type
        else:
            base = base_name(btf, t)
            if not inner:
                return base
            return f"{base}{inner}" if base.endswith("*") else f"{base} {inner}"
    raise BTFError(f"type chain too long or looping at id {tid}")


def param_list(btf, proto, empty=""):
    parts = []
    for p in proto.params:
        if p.type == 0 and not p.name:
            parts.append("...")
        else:
            parts.append(declare(btf, p.type, p.name))
    return ", ".join(parts) if parts else empty


def type_name(btf, tid):
    """The abstract C name of a type: ``struct sk_buff *``, ``int[4]``."""
    return declare(btf, tid, "")
