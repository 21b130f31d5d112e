"""Where a function's arguments live at entry: registers, the stack, or a
BPF trampoline's context.

x86_64 System V: integers, pointers and enums take one general register;
aggregates of 9-16 bytes take two (or go to the stack when two are not
left: the arguments after them may still take the registers left);
larger aggregates are passed in memory on the stack; floating point is in
SSE registers, which neither pt_regs nor a trampoline carries.  An empty
struct (size 0, a GNU C extension) is passed in nothing and takes no
register.  A function returning an aggregate of more than 16 bytes takes a
hidden pointer to the result as its first argument (x86_64: in the first
register; aarch64: in x8).

Stack arguments (x86_64): at function entry the stack pointer points at the
return address, and the stack arguments follow it in order, each 8-byte
aligned (16 for 16-byte aligned types) and a multiple of 8 bytes long, so
the first is at ``sp + 8``.  Only x86_64's stack layout is implemented:
elsewhere a stack argument is not traceable.

A fentry/fexit program sees the arguments as an array of u64 (``ctx``): one
slot per argument, ``ceil(size / 8)`` for an aggregate, whether the
argument came in registers or on the stack; fexit gets the return value
in the slot after the last.  The kernel refuses such programs for
functions with floating point or variadic arguments, aggregates of more
than 16 bytes by value, an aggregate return value, or more than 12 slots;
whether its trampolines also copy stack arguments (x86_64 since 6.6) is
found out by trying (``kernel.backend``).
"""

from dataclasses import dataclass

from ..btf import Kind
from .arch import ARCHES

MAX_TRAMPOLINE_ARGS = 12  # MAX_BPF_FUNC_ARGS: u64 slots a trampoline passes at most
TRAMPOLINE_REG_ARGS = 6  # slots every x86_64 trampoline carries (the argument registers)
STACK_ARCHES = ("x86_64",)  # where the stack layout above is implemented


@dataclass(frozen=True, slots=True)
class ArgSlot:
    index: int  # position in the prototype
    name: str
    type: int
    regs: tuple  # register numbers (0 = first argument register); () = not in registers
    why: str = ""  # reason when the argument cannot be read at entry at all
    stack: int = -1  # byte offset from the stack pointer at entry, when passed on the stack
    ctx: tuple = ()  # u64 slots of a trampoline's context holding it (fentry/fexit)

    @property
    def traceable(self):
        return bool(self.regs) or self.stack >= 0

    @property
    def on_stack(self):
        return self.stack >= 0


def returned_in_memory(btf, tid):
    """An aggregate of more than 16 bytes is returned in memory the caller provides."""
    btf.check(tid)  # layouts decide where values go: a type the kernel refuses is a BTFError
    t = btf[btf.resolve(tid)]
    return t.kind in (Kind.STRUCT, Kind.UNION) and btf.size_of(tid) > 16


def _alignment(btf, tid, depth=0, memo=None):
    """A type's alignment as the ABI places it on the stack (8 or 16).  Each
    (type, depth) is worked out once: crafted members can fan out by the thousand."""
    memo = {} if memo is None else memo
    if (tid, depth) in memo:
        return memo[tid, depth]
    t = btf[btf.resolve(tid)]
    align = 8
    if t.kind == Kind.INT and t.size > 8:
        align = 16
    elif t.kind == Kind.ARRAY and depth < 8:
        align = _alignment(btf, t.type, depth + 1, memo)
    elif t.kind in (Kind.STRUCT, Kind.UNION) and depth < 8:
        align = max((_alignment(btf, m.type, depth + 1, memo) for m in t.members), default=8)
    memo[tid, depth] = align
    return align


def assign(btf, proto, arch="x86_64"):
    """ArgSlot for every parameter of a FUNC_PROTO (the variadic marker excluded)."""
    nregs = ARCHES[arch].max_args if arch in ARCHES else 6
    used, slots, stack, ctx = 0, [], 8, 0
    if arch == "x86_64" and returned_in_memory(btf, proto.type):
        used = 1  # the hidden pointer to the return value's memory is the first argument
    for i, p in enumerate(proto.params):
        if p.type == 0 and not p.name:
            break  # "..."
        btf.check(p.type)
        t = btf[btf.resolve(p.type)]
        size = btf.size_of(p.type)
        nctx = (size + 7) // 8 if t.kind in (Kind.STRUCT, Kind.UNION) else max(1, (size + 7) // 8)
        here = tuple(range(ctx, ctx + nctx)) if 0 < size <= 16 else ()
        ctx += nctx
        if t.kind == Kind.FLOAT:
            slots.append(ArgSlot(i, p.name, p.type, (), "floating point"))
            continue
        if t.kind in (Kind.STRUCT, Kind.UNION) and size == 0:
            # GCC and clang pass an empty C struct in nothing: it takes no register,
            # so the arguments after it move up one.
            slots.append(ArgSlot(i, p.name, p.type, (), "empty struct, passed in no register"))
            continue
        need = 1
        if t.kind in (Kind.STRUCT, Kind.UNION) or (t.kind == Kind.INT and size > 8):
            need = 0 if size > 16 else (2 if size > 8 else 1)
        if need and used + need <= nregs:
            slots.append(ArgSlot(i, p.name, p.type, tuple(range(used, used + need)), ctx=here))
            used += need
            continue
        if arch not in STACK_ARCHES:
            slots.append(ArgSlot(i, p.name, p.type, (), "passed on the stack", ctx=here))
            continue
        align = _alignment(btf, p.type)
        stack = (stack + align - 1) // align * align
        slots.append(ArgSlot(i, p.name, p.type, (), stack=stack, ctx=here))
        stack += (max(size, 1) + 7) // 8 * 8
    return slots


def trampoline_problem(btf, proto, slots):
    """Why no fentry/fexit program can be loaded for a function of this
    prototype (as the kernel's BTF checks refuse it), or ""."""
    rt = btf[btf.resolve(proto.type)] if proto.type else None
    if rt is not None and rt.kind in (Kind.STRUCT, Kind.UNION):
        return "returns a struct or union by value"
    if rt is not None and rt.kind == Kind.FLOAT:
        return "returns floating point"
    if proto.is_variadic:
        return "variadic"
    for s in slots:
        t = btf[btf.resolve(s.type)]
        if t.kind == Kind.FLOAT:
            return f"argument '{s.name}' is floating point"
        if btf.size_of(s.type) > 16:
            return f"argument '{s.name}' is an aggregate of more than 16 bytes passed by value"
    used = sum(len(s.ctx) for s in slots)
    if used > MAX_TRAMPOLINE_ARGS:
        return f"its arguments take {used} slots (a trampoline carries at most {MAX_TRAMPOLINE_ARGS})"
    return ""


def trampoline_return_slot(slots):
    """The context slot where fexit finds the return value: after the arguments."""
    return sum(len(s.ctx) for s in slots)
