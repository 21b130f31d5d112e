"""TraceSpec + kernel -> TracePlan: everything the BPF side needs, as data.

For each value the plan says where it starts (an argument register or the
return register), which pointers to follow (``hops``: read a pointer at
``ptr + off``), and what to copy at the end: the scalar itself, a bounded
block of memory, the object a pointer points to, or a string.  Predicate
constants are checked against the value's C type here, so generated C never
sees a literal that does not fit.
"""

import errno
from dataclasses import replace

from ..btf import Kind
from ..btf.bitfield import Bitfield
from ..btf.cdecl import type_name
from ..errors import SymbolError
from ..kernel import callconv
from ..kernel.arch import current as current_arch
from ..kernel.backend import FENTRY as FENTRY_BACKEND
from ..kernel.backend import NotPossible
from ..kernel.functions import find_function, find_tracepoint
from .patterns import expand
from .plan import (
    DEREF,
    FENTRY,
    KPROBE,
    MEMORY,
    REGS,
    SCALAR,
    STRING,
    TRACEPOINT,
    Condition,
    FuncPlan,
    LogicCond,
    NotCond,
    Pred,
    Test,
    TracePlan,
    Value,
)
from .spec import RETURN, CondSpec, Logic, Not
from .spec import TRACEPOINT as TRACEPOINT_SPEC

DEFAULT_LIMIT = 2048
STRING_LIMIT = 256

_SCALAR_KINDS = (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.PTR)
_ERRNO = {name: code for code, name in errno.errorcode.items()}  # Linux's errno names


def _is_string_value(btf, val):
    """A char * (STRING) or a char array in memory."""
    if val.kind == STRING:
        return True
    if val.kind != MEMORY:
        return False
    t = btf[btf.resolve(val.type_id)]
    if t.kind != Kind.ARRAY:
        return False
    elem = btf[btf.resolve(t.elem_type)]
    return elem.kind == Kind.INT and elem.size == 1


_ENUMS = {}


def enum_constant(btf, name):
    """The value of the enum constant ``name`` anywhere in ``btf`` (None if absent
    or if several enums give it different values)."""
    if _ENUMS.get("btf") is not btf:
        found = {}
        for tid in list(btf.ids(Kind.ENUM)) + list(btf.ids(Kind.ENUM64)):
            for e in btf[tid].values:
                found.setdefault(e.name, set()).add(e.value)
        _ENUMS.update(btf=btf, values=found)
    values = _ENUMS["values"].get(name)
    return next(iter(values)) if values and len(values) == 1 else None


def _ctype(btf, tid):
    """(C type, lower bound, upper bound) of a scalar type."""
    t = btf[btf.resolve(tid)]
    if t.kind == Kind.PTR:
        return "u64", 0, (1 << 64) - 1
    size = t.size if t.kind != Kind.PTR else 8
    signed = t.signed
    if t.kind == Kind.INT and t.encoding & 4:  # bool
        signed = False
    bits = 8 * min(size, 8)
    if signed:
        return f"s{bits}", -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return f"u{bits}", 0, (1 << bits) - 1


def find_member(btf, tid, name, _seen=None):
    """(bit offset, Member) of ``name`` in a struct/union, searching anonymous members.
    The type is checked first (no loops, bounded nesting) and each anonymous type is
    searched once, so crafted BTF cannot make this recurse or fan out without end."""
    if _seen is None:
        btf.check(tid)
        _seen = set()
    t = btf[btf.resolve(tid)]
    if t.id in _seen:
        return None
    _seen.add(t.id)
    for m in t.members:
        if m.name == name:
            return m.bit_offset, m
    for m in t.members:
        if not m.name:
            inner = btf[btf.resolve(m.type)]
            if inner.kind in (Kind.STRUCT, Kind.UNION):
                found = find_member(btf, inner.id, name, _seen)
                if found:
                    return m.bit_offset + found[0], found[1]
    return None


_IN_MEMORY = "a struct of more than 16 bytes, returned in memory"


def _is_user_ptr(btf, tid):
    """A pointer whose target carries BTF type tag "user" (__user)."""
    t = btf[btf.skip_qualifiers(tid)]
    if t.kind != Kind.PTR:
        return False
    for _ in range(16):
        t = btf[t.type]
        if t.kind == Kind.TYPE_TAG and t.name == "user":
            return True
        if t.kind not in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
            return False
    return False


def _tag_on_the_way(btf, tid):
    """Whether a type tag sits between ``tid`` (a pointer to a struct or union,
    maybe behind typedefs and qualifiers) and the struct: ``__user``,
    ``__percpu``... change what the verifier lets a program load through it."""
    t = btf[tid]
    for _ in range(64):
        if t.kind == Kind.TYPE_TAG:
            return True
        if t.kind in (Kind.STRUCT, Kind.UNION):
            return False
        t = btf[t.type]
    return True  # a chain this long: no plain loads through it


def _pointee_display(btf, ptr_tid, limit):
    """How to show what a pointer points to: (kind, type, size, full size)."""
    target = btf[btf.resolve(btf[btf.resolve(ptr_tid)].type)]
    if target.kind == Kind.INT and target.size == 1:
        return STRING, target.id, min(limit, STRING_LIMIT), 0
    if target.kind in (Kind.STRUCT, Kind.UNION, Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.ARRAY):
        full = btf.size_of(target.id)
        if full:
            return DEREF, btf[btf.resolve(ptr_tid)].type, min(full, limit), full
    return None


def _raw_tp_arg(index):
    """A raw tracepoint's argument ``index``: one u64 of its context."""
    return f"ctx->args[{index}]"


def _trampoline_arg(index):
    """Slot ``index`` of a fentry/fexit program's context (the argument array)."""
    return f"ctx[{index}]"


class _Resolver:
    def __init__(self, kernel, limit, arch, backends=None):
        self.kernel = kernel
        self.limit = limit
        self.arch = arch
        self.backends = backends  # kernel.backend.Backends, or None: kprobes only
        self._arg = arch.arg  # C expression of argument i of the probe being resolved
        self._choice = None  # the backend Choice of the function being resolved (None: kprobe)
        self._ret_slot = 0  # fentry: the context slot of the return value
        self._btf = None  # the BTF of the probe being resolved

    def tracepoint(self, spec, index):
        """A tracepoint: its arguments are the u64s of a raw tracepoint's context."""
        try:
            tp = find_tracepoint(self.kernel, spec.func)
        except SymbolError as e:
            raise spec.error(str(e), spec.func_pos, len(spec.func)) from None
        btf = tp.btf
        slots = []
        for i, (name, tid) in enumerate(tp.params):
            t = btf[btf.resolve(tid)]
            if t.kind in (Kind.STRUCT, Kind.UNION, Kind.FLOAT) or btf.size_of(tid) > 8:
                slots.append(callconv.ArgSlot(i, name, tid, (), "passed by value: a raw tracepoint "
                                              "carries only 64-bit arguments"))
            else:
                slots.append(callconv.ArgSlot(i, name, tid, (i,)))
        self._arg = _raw_tp_arg
        self._btf = btf
        label = spec.label
        plan = dict(index=index, name=label, module=tp.module, addr=0, btf=btf, probe=TRACEPOINT,
                    target=tp.name)
        if not spec.explicit:
            entry = tuple(self._from_register(btf, s, s.name, at_return=False) for s in slots
                          if s.traceable)
            notes = tuple(f"{s.name}: {s.why}" for s in slots if not s.traceable)
            return FuncPlan(entry=entry, notes=notes, **plan)
        for item in spec.values:
            for vs in item.refs():
                if vs.is_return:
                    raise spec.error(f"{label} is a tracepoint: it has no return value", vs.pos,
                                     len(RETURN))
        entry, _ret, conds = self._items(spec, lambda vs: self._argument(spec, label, btf, slots, vs))
        return FuncPlan(entry=entry, conds=conds, **plan)

    def _items(self, spec, value_of):
        """(entry Values, return Values, Conditions) of an explicit value list.

        One Value per distinct value (read once); predicates and conditions
        carry their place in the spec (seq) so that codegen tests them in the
        order written.  A condition shows every value it names."""
        entry, ret, conds = {}, {}, []
        for seq, item in enumerate(spec.values):
            p = getattr(item, "predicate", None)
            if p is not None and (p.is_string or p.op == "~"):
                item = CondSpec(item, item.pos, item.end)  # string tests run as conditions
            if isinstance(item, CondSpec):
                tests = {}
                for vs in item.refs():
                    target = ret if vs.is_return else entry
                    bare = replace(vs, predicate=None)
                    if vs.path not in target:
                        target[vs.path] = value_of(bare)
                    if vs.predicate is not None:
                        tests[id(vs)] = self._pred(spec, target[vs.path], vs)
                expr = self._cond(item.expr, tests)
                conds.append(Condition(expr, item.is_return, seq, spec.text[item.pos:item.end]))
                continue
            target = ret if item.is_return else entry
            val = value_of(item)
            val = replace(val, preds=tuple(replace(p, seq=seq) for p in val.preds))
            prev = target.get(val.name)
            if prev is not None:
                val = replace(prev, preds=prev.preds + val.preds)
            target[val.name] = val
        return tuple(entry.values()), tuple(ret.values()), tuple(conds)

    def _cond(self, node, tests):
        """The plan's condition tree for a parsed one (tests: resolved predicates)."""
        if isinstance(node, Not):
            return NotCond(self._cond(node.expr, tests))
        if isinstance(node, Logic):
            return LogicCond(node.op, self._cond(node.left, tests), self._cond(node.right, tests))
        pred = tests.get(id(node)) or Pred("!=", 0, node.pos, node.end, text=f"{node.path} != 0")
        return Test(node.path, pred)

    def function(self, spec, index, pattern=False):
        self._choice = None
        if spec.probe == TRACEPOINT_SPEC:
            return self.tracepoint(spec, index)
        self._arg = self.arch.arg
        try:
            fn = find_function(self.kernel, spec.func)
        except SymbolError as e:
            raise spec.error(str(e), spec.func_pos, len(spec.func)) from None
        addr = 0
        if self.kernel.live:
            try:
                sym = self.kernel.kallsyms.function(spec.func)
                addr = sym.addr
            except SymbolError as e:
                raise SymbolError(f"{e}; it cannot be traced") from None
        btf, proto = fn.btf, fn.proto
        self._btf = btf
        slots = callconv.assign(btf, proto, self.arch.machine)
        self._choose(spec, fn, slots, pattern)
        if not spec.explicit:
            return self._default(spec, index, fn, addr, slots)
        entry, ret, conds = self._items(spec, lambda vs: self.value(spec, fn, slots, vs))
        return self._plan(index, fn, addr, entry, ret, conds=conds)

    def _default(self, spec, index, fn, addr, slots):
        btf, entry, notes = fn.btf, [], []
        for s in slots:
            if not s.traceable:
                notes.append(f"{s.name or f'arg{s.index + 1}'}: {s.why}")
                continue
            entry.append(self._from_register(btf, s, s.name or f"arg{s.index + 1}", at_return=False))
        if fn.proto.is_variadic:
            notes.append("variadic arguments: not traceable")
        ret = ()
        if fn.return_type != 0 and callconv.returned_in_memory(btf, fn.return_type):
            notes.append(f"return: {_IN_MEMORY}")
        elif fn.return_type != 0:
            ret = (self._return(btf, fn.return_type, RETURN),)
        return self._plan(index, fn, addr, tuple(entry), ret, tuple(notes))

    def _choose(self, spec, fn, slots, pattern):
        """Pick fn's backend; from here on its values read the backend's context."""
        if self.backends is None:
            return
        try:
            self._choice = self.backends.choose(fn, slots, pattern)
        except NotPossible as e:
            raise spec.error(str(e), spec.func_pos, len(spec.func)) from None
        if self._choice.probe == FENTRY_BACKEND:
            self._arg = _trampoline_arg
            self._ret_slot = callconv.trampoline_return_slot(slots)

    @property
    def _fentry(self):
        return self._choice is not None and self._choice.probe == FENTRY_BACKEND

    def _plan(self, index, fn, addr, entry, ret, notes=(), conds=()):
        stash = bool(entry and ret and (any(v.preds for v in entry) or any(v.preds for v in ret)
                                        or conds))
        c = self._choice
        return FuncPlan(index, fn.name, fn.module, addr, fn.btf, entry, ret, stash, notes,
                        probe=FENTRY if self._fentry else KPROBE, target=fn.name, conds=conds,
                        multi=bool(c and c.multi), backend_why=c.why if c else "", btf_id=fn.func_id)

    def value(self, spec, fn, slots, vs):
        btf = fn.btf
        if vs.is_return:
            if fn.return_type == 0:
                raise spec.error(f"{fn.name} returns void: there is no return value",
                                 vs.pos, len(RETURN))
            if callconv.returned_in_memory(btf, fn.return_type):
                raise spec.error(f"the return value of {fn.name} is not traceable ({_IN_MEMORY})",
                                 vs.pos, len(RETURN))
            start = self._return(btf, fn.return_type, RETURN, follow=False)
        else:
            return self._argument(spec, fn.name, btf, slots, vs)
        return self._finish(spec, btf, start, vs)

    def _argument(self, spec, owner, btf, slots, vs):
        """The value ``vs`` that starts at one of ``owner``'s arguments."""
        slot = next((s for s in slots if s.name == vs.base), None)
        if slot is None:
            names = ", ".join(s.name for s in slots if s.name) or "none"
            raise spec.error(f"{owner} has no argument '{vs.base}' (arguments: {names})",
                             vs.pos, len(vs.base))
        if not slot.traceable:
            raise spec.error(f"argument '{vs.base}' of {owner} is not traceable ({slot.why})",
                             vs.pos, len(vs.base))
        start = self._from_register(btf, slot, vs.base, at_return=False, follow=False)
        return self._finish(spec, btf, start, vs)

    def _finish(self, spec, btf, start, vs):
        val = self._walk(spec, btf, start, vs) if vs.steps else self._finish_register(btf, start)
        if vs.predicate is not None:
            val = self._predicate(spec, btf, val, vs)
        return replace(val, name=vs.path)

    def _from_register(self, btf, slot, name, at_return, follow=True):
        if self._fentry:  # every argument is in the trampoline's context
            regs = tuple(self._arg(i) for i in slot.ctx)
        elif slot.on_stack:
            return self._from_stack(btf, slot, name, follow)
        else:
            regs = tuple(self._arg(r) for r in slot.regs)
        t = btf[btf.resolve(slot.type)]
        if t.kind in (Kind.STRUCT, Kind.UNION) or len(regs) > 1:
            size = btf.size_of(slot.type)
            return Value(name, at_return, REGS, slot.type, slot.type, regs[0], regs=regs,
                         size=8 * len(regs), full_size=size)
        val = Value(name, at_return, SCALAR, slot.type, slot.type, regs[0],
                    size=8, full_size=8, ctype=_ctype(btf, slot.type)[0])
        return self._finish_register(btf, val) if follow else val

    def _from_stack(self, btf, slot, name, follow):
        """An argument the caller passed on the stack, read at ``sp + slot.stack``
        (a kprobe at entry: the stack pointer points at the return address)."""
        sp = f"ctx->{self.arch.sp_reg}"
        t = btf[btf.resolve(slot.type)]
        size = btf.size_of(slot.type)
        if t.kind in (Kind.STRUCT, Kind.UNION) or size > 8:
            return Value(name, False, MEMORY, slot.type, slot.type, sp, read_off=slot.stack,
                         size=min(size, self.limit), full_size=size)
        val = Value(name, False, SCALAR, slot.type, slot.type, sp, read_off=slot.stack,
                    size=size, full_size=size, ctype=_ctype(btf, slot.type)[0])
        return self._finish_register(btf, val) if follow else val

    def _return(self, btf, tid, name, follow=True):
        if self._fentry:  # fexit: the return value follows the arguments in the context
            val = Value(name, True, SCALAR, tid, tid, self._arg(self._ret_slot),
                        ctype=_ctype(btf, tid)[0])
            return self._finish_register(btf, val) if follow else val
        t = btf[btf.resolve(tid)]
        if t.kind in (Kind.STRUCT, Kind.UNION):
            # Aggregates of up to 16 bytes come back in two registers (rax:rdx,
            # x0:x1); larger ones in memory that no register reliably points at.
            size = btf.size_of(tid)
            regs = (self.arch.ret(),) if size <= 8 else (self.arch.ret(), self.arch.ret_hi())
            return Value(name, True, REGS, tid, tid, regs[0], regs=regs, size=8 * len(regs),
                         full_size=size)
        val = Value(name, True, SCALAR, tid, tid, self.arch.ret(), ctype=_ctype(btf, tid)[0])
        return self._finish_register(btf, val) if follow else val

    def _finish_register(self, btf, val):
        """A register value: pointers to data are shown as what they point to."""
        if val.kind != SCALAR or btf[btf.resolve(val.type_id)].kind != Kind.PTR:
            return val
        shown = _pointee_display(btf, val.type_id, self.limit)
        if shown is None:
            return val
        kind, show, size, full = shown
        # a pointer in memory (on the stack) is read first: one more hop
        hops = val.hops + (val.read_off,) if val.read_off >= 0 else val.hops
        return replace(val, kind=kind, show_type=show, hops=hops, read_off=0, size=size,
                       full_size=full, user=_is_user_ptr(btf, val.type_id))

    def _walk(self, spec, btf, val, vs):
        # a register value, or one in memory at reg + read_off (a stack argument)
        tid, hops, off, in_memory = val.type_id, list(val.hops), max(val.read_off, 0), val.read_off >= 0
        user = False
        # plain loads (Value.direct): fentry's typed arguments on x86_64, where a
        # NULL pointer fails the read as bpf_probe_read_kernel does (-ERANGE)
        direct = self._fentry and self.arch.machine == "x86_64" and not in_memory
        bit_info = None
        path = vs.base
        for step in vs.steps:
            cur = btf[btf.resolve(tid)]
            if bit_info is not None:
                raise spec.error(f"{path} is a bitfield: it has no members", step.pos,
                                 len(step.name or step.text))
            if step.index is not None:
                if cur.kind != Kind.ARRAY:
                    raise spec.error(f"'{step.text}' needs an array, but {path} is "
                                     f"'{type_name(btf, tid)}'", step.op_pos, len(step.text))
                if not in_memory:
                    raise spec.error(f"{path} is passed by value in registers; '[]' on it is not "
                                     "supported", step.op_pos, len(step.text))
                if step.index >= cur.nelems:
                    raise spec.error(f"index {step.index} is out of bounds for {path} "
                                     f"('{type_name(btf, tid)}' has {cur.nelems} elements)",
                                     step.pos, len(str(step.index)))
                off += step.index * btf.size_of(cur.elem_type)
                tid = cur.elem_type
                path += step.text
                continue
            if step.deref:
                if cur.kind != Kind.PTR or btf[btf.resolve(cur.type)].kind not in (Kind.STRUCT, Kind.UNION):
                    raise spec.error(f"'->' needs a pointer to a struct or union, but {path} is "
                                     f"'{type_name(btf, tid)}'", step.op_pos, 2)
                user = user or _is_user_ptr(btf, tid)
                direct = direct and not _tag_on_the_way(btf, tid)
                if in_memory:
                    hops.append(off)
                in_memory, off = True, 0
                agg = cur.type
            else:
                if cur.kind == Kind.PTR:
                    raise spec.error(f"{path} is a pointer: use '->'", step.op_pos, 1)
                if cur.kind not in (Kind.STRUCT, Kind.UNION):
                    raise spec.error(f"'.' needs a struct or union, but {path} is "
                                     f"'{type_name(btf, tid)}'", step.op_pos, 1)
                if not in_memory:
                    raise spec.error(f"{path} is passed by value in registers; '.' on it is not "
                                     "supported", step.op_pos, 1)
                agg = cur.id
            found = find_member(btf, agg, step.name)
            if found is None:
                names = ", ".join(m.name for m in btf[btf.resolve(agg)].members if m.name)
                raise spec.error(f"'{type_name(btf, agg)}' has no member '{step.name}'"
                                 + (f" (members: {_short(names)})" if names else ""),
                                 step.pos, len(step.name))
            bit_off, member = found
            if member.bitfield_size:
                bf = Bitfield.of_member(btf, member, bit_off - member.bit_offset)
                if bf.shift + bf.width > 64:
                    raise spec.error(f"bitfield '{step.name}' spans more than 8 bytes: not supported",
                                     step.pos, len(step.name))
                off += bf.offset
                bit_info = replace(bf, offset=0)  # read at read_off
            else:
                if bit_off % 8:
                    raise spec.error(f"member '{step.name}' is not byte aligned", step.pos, len(step.name))
                off += bit_off // 8
            tid = member.type
            path += step.text
        reg = val.reg
        final = btf[btf.resolve(tid)]
        if bit_info is not None:
            nbytes = bit_info.nbytes
            ctype = "s64" if bit_info.signed else "u64"
            return Value(path, val.at_return, SCALAR, tid, tid, reg, hops=tuple(hops), read_off=off,
                         size=nbytes, full_size=nbytes, ctype=ctype, bitfield=bit_info, user=user,
                         direct=direct and nbytes in (1, 2, 4, 8))
        if final.kind in _SCALAR_KINDS and btf.size_of(tid) <= 8:
            size = btf.size_of(tid)
            direct = direct and size in (1, 2, 4, 8)
            base = Value(path, val.at_return, SCALAR, tid, tid, reg, hops=tuple(hops), read_off=off,
                         size=size, full_size=size, ctype=_ctype(btf, tid)[0], user=user, direct=direct)
            if final.kind == Kind.PTR:
                shown = _pointee_display(btf, tid, self.limit)
                if shown is not None:
                    kind, show, nbytes, full = shown
                    return Value(path, val.at_return, kind, tid, show, reg, hops=tuple(hops) + (off,),
                                 read_off=0, size=nbytes, full_size=full, ctype="u64",
                                 user=user or _is_user_ptr(btf, tid), direct=direct)
            return base
        full = btf.size_of(tid)
        if not full:
            raise spec.error(f"{path} has type '{type_name(btf, tid)}', which has no size",
                             vs.steps[-1].pos, len(vs.steps[-1].name or vs.steps[-1].text))
        return Value(path, val.at_return, MEMORY, tid, tid, reg, hops=tuple(hops), read_off=off,
                     size=min(full, self.limit), full_size=full, user=user)

    def _predicate(self, spec, btf, val, vs):
        return replace(val, preds=(self._pred(spec, val, vs),))

    def _pred(self, spec, val, vs):
        """The plan's Pred for ``vs``'s comparison on the resolved value ``val``:
        names looked up, strings and masks checked against the value's type."""
        p = vs.predicate
        btf = self._btf
        what = type_name(btf, val.type_id)
        lit_pos = p.end - len(p.literal) if p.literal else p.pos
        lit_len = len(p.literal) or 1
        text = f"{vs.path} {p.op} {p.literal}" if p.literal else f"({vs.path} & {p.mask})"
        if p.is_string or p.op == "~":
            if not _is_string_value(btf, val):
                raise spec.error(f"{vs.path} is '{what}', not a string: it cannot be compared "
                                 "with a string", p.pos, len(p.op))
            if p.op == "~" and not p.is_string:
                raise spec.error("'~' matches a string against a glob in double quotes",
                                 lit_pos, lit_len)
            cap = val.size - 1 if val.kind == STRING else val.size
            if p.op != "~" and len(p.value) > cap:
                raise spec.error(f"the string is longer than {vs.path} can hold ({cap} bytes)",
                                 lit_pos, lit_len)
            if b"\0" in p.value:
                raise spec.error("a string to compare must not hold a NUL byte", lit_pos, lit_len)
            return Pred(p.op, p.value, p.pos, p.end, text=text)
        if val.kind in (MEMORY, REGS):
            raise spec.error(f"{vs.path} is '{what}', not a number: it cannot be compared",
                             p.pos, len(p.op) if p.literal else 1)
        value = p.value if p.name == "" else self._name_value(spec, val, p, lit_pos, lit_len)
        if val.bitfield is not None:
            lo, hi = val.bitfield.lo, val.bitfield.hi
            what += f":{val.bitfield.width}"
        else:
            _, lo, hi = _ctype(btf, val.type_id)
        if p.mask is not None and not 0 <= p.mask <= max(hi, (1 << 64) - 1):
            raise spec.error(f"the mask does not fit {vs.path} ('{what}')", p.pos, 1)
        if not lo <= value <= hi:
            raise spec.error(f"{p.literal} is out of range for {vs.path} ('{what}': {lo}..{hi})",
                             lit_pos, lit_len)
        return Pred(p.op, value, p.pos, p.end, mask=p.mask, text=text)

    def _name_value(self, spec, val, p, pos, length):
        """The number an enum constant or errno name stands for."""
        btf = self._btf
        own = btf[btf.resolve(val.type_id)]
        value = None
        if own.kind in (Kind.ENUM, Kind.ENUM64):
            value = next((e.value for e in own.values if e.name == p.name), None)
        if value is None and p.name in _ERRNO:
            value = _ERRNO[p.name]
        if value is None:
            value = enum_constant(btf, p.name)
        if value is None:
            raise spec.error(f"'{p.name}' is neither an enum constant nor an errno name",
                             pos + (1 if p.neg else 0), length - (1 if p.neg else 0))
        return -value if p.neg else value


def _short(names, limit=120):
    return names if len(names) <= limit else names[:limit].rsplit(", ", 1)[0] + ", ..."


MAX_FUNCS = 1000  # programs per trace (the event header numbers functions in a u16)


def resolve(specs, kernel, limit=DEFAULT_LIMIT, arch=None, backends=None):
    """Resolve parsed specs against the kernel's types and symbols.  A spec
    whose name has wildcards traces every matching function that takes its
    values; the plan's notes say how many matched and why others were not.
    ``backends`` (kernel.backend.Backends) picks fentry/fexit or kprobes per
    function; without it every function gets kprobes."""
    arch = arch or current_arch()
    r = _Resolver(kernel, limit, arch, backends)
    funcs, seen, notes = [], {}, []
    for spec in specs:
        if spec.is_pattern:
            plans, note = expand(r, spec, len(funcs), seen)
            funcs += plans
            notes.append(note)
        else:
            if spec.label in seen:
                raise spec.error(f"{spec.label} is traced twice; put all its values in one spec",
                                 spec.func_pos, len(spec.func))
            seen[spec.label] = True
            funcs.append(r.function(spec, len(funcs)))
        if len(funcs) > MAX_FUNCS:
            raise spec.error(f"more than {MAX_FUNCS} functions to trace: narrow the pattern",
                             spec.func_pos, len(spec.func))
    return TracePlan(tuple(funcs), limit, arch.machine, tuple(notes))
