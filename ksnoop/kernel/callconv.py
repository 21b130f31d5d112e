"""Where a function's arguments live at entry: which registers, or none.

x86_64 System V: integers, pointers and enums take one general register;
aggregates of 9-16 bytes take two (or go to the stack when two are not
left); larger aggregates and floating point are not in general registers,
so they cannot be read from pt_regs.  An empty struct (size 0, a GNU C
extension) is passed in nothing and takes no register.  A function returning
an aggregate of more than 16 bytes takes a hidden pointer to the result as
its first argument (x86_64: in the first register; aarch64: in x8).
"""

from dataclasses import dataclass

from ..btf import Kind
from .arch import ARCHES


@dataclass(frozen=True, slots=True)
class ArgSlot:
    index: int  # position in the prototype
    name: str
    type: int
    regs: tuple  # register numbers (0 = first argument register); () = not traceable
    why: str = ""  # reason when regs is empty

    @property
    def traceable(self):
        return bool(self.regs)


def returned_in_memory(btf, tid):
    """An aggregate of more than 16 bytes is returned in memory the caller provides."""
    btf.check(tid)  # layouts decide where values go: a type the kernel refuses is a BTFError
    t = btf[btf.resolve(tid)]
    return t.kind in (Kind.STRUCT, Kind.UNION) and btf.size_of(tid) > 16


def assign(btf, proto, arch="x86_64"):
    """ArgSlot for every parameter of a FUNC_PROTO (the variadic marker excluded)."""
    nregs = ARCHES[arch].max_args if arch in ARCHES else 6
    used, slots = 0, []
    if arch == "x86_64" and returned_in_memory(btf, proto.type):
        used = 1  # the hidden pointer to the return value's memory is the first argument
    for i, p in enumerate(proto.params):
        if p.type == 0 and not p.name:
            break  # "..."
        btf.check(p.type)
        t = btf[btf.resolve(p.type)]
        size = btf.size_of(p.type)
        if t.kind == Kind.FLOAT:
            slots.append(ArgSlot(i, p.name, p.type, (), "floating point"))
            continue
        need = 1
        if t.kind in (Kind.STRUCT, Kind.UNION) and size == 0:
            # GCC and clang pass an empty C struct in nothing: it takes no register,
            # so the arguments after it move up one.
            slots.append(ArgSlot(i, p.name, p.type, (), "empty struct, passed in no register"))
            continue
        if t.kind in (Kind.STRUCT, Kind.UNION) or (t.kind == Kind.INT and size > 8):
            if size > 16:
                slots.append(ArgSlot(i, p.name, p.type, (), "passed on the stack"))
                continue
            need = 2 if size > 8 else 1
        if used + need > nregs:
            slots.append(ArgSlot(i, p.name, p.type, (), "passed on the stack"))
            continue
        slots.append(ArgSlot(i, p.name, p.type, tuple(range(used, used + need))))
        used += need
    return slots
