"""The event wire format, derived once from the plan.

Both sides read this one definition: ``codegen`` emits each ``EventLayout`` as
a packed C struct (with offset asserts), and ``decode`` unpacks events with
the same offsets.  Every event starts with the same header; then one slot per
value, sized for exactly what that value captures.
"""

import struct
from dataclasses import dataclass

from .plan import DEREF, MEMORY, REGS, SCALAR, STRING

ENTRY, RETURN, CALL = 1, 2, 3  # event kinds; CALL = entry values + return values (stash)
KIND_NAMES = {ENTRY: "entry", RETURN: "return", CALL: "call"}

# C type, Python struct code, name
HEADER_FIELDS = (
    ("u64", "Q", "ts"),
    ("u32", "I", "tgid"),
    ("u32", "I", "tid"),
    ("u32", "I", "cpu"),
    ("u16", "H", "func"),
    ("u8", "B", "kind"),
    ("u8", "B", "flags"),
    ("char", "16s", "comm"),
)
HEADER = struct.Struct("<" + "".join(code for _, code, _ in HEADER_FIELDS))
HEADER_SIZE = HEADER.size  # 40


@dataclass(frozen=True)
class Slot:
    """Where one value lives in an event.  ``ptr``/``status``/``data`` are
    byte offsets inside the event, or -1 when the slot has no such part."""

    value: object  # resolve.Value
    offset: int
    ptr: int = -1  # u64: pointer (DEREF, STRING) or the scalar itself (SCALAR)
    status: int = -1  # s32: 0 or bytes read / negative errno of the read
    data: int = -1  # captured bytes
    size: int = 0  # captured byte capacity



@dataclass(frozen=True)
class EventLayout:
    func: int
    kind: int
    slots: tuple
    size: int
    conds: tuple = ()  # the function's Conditions, decided while the event is filled

    @property
    def c_name(self):
        return f"ksnoop_ev_{self.func}_{KIND_NAMES[self.kind]}"


def _slot(value, offset):
    if value.kind == SCALAR and value.read_off < 0:
        return Slot(value, offset, ptr=offset), offset + 8
    if value.kind == SCALAR:
        return Slot(value, offset, status=offset, data=offset + 8, size=8), offset + 16
    if value.kind in (DEREF, STRING):
        data = offset + 16
        return Slot(value, offset, ptr=offset, status=offset + 8, data=data, size=value.size), \
            _align8(data + value.size)
    if value.kind == MEMORY:
        data = offset + 8
        return Slot(value, offset, status=offset, data=data, size=value.size), _align8(data + value.size)
    if value.kind == REGS:
        return Slot(value, offset, data=offset, size=value.size), _align8(offset + value.size)
    raise ValueError(value.kind)


def _align8(n):
    return (n + 7) & ~7


def event_layout(func_index, kind, values, conds=()):
    offset, slots = HEADER_SIZE, []
    for v in values:
        slot, offset = _slot(v, offset)
        slots.append(slot)
    return EventLayout(func_index, kind, tuple(slots), offset, tuple(conds))


def layouts_for(fp):
    """The event layouts one function's programs emit."""
    conds = getattr(fp, "conds", ())
    if fp.stash:
        return [event_layout(fp.index, CALL, fp.entry + fp.ret, conds)]
    out = []
    # A function with nothing to show (void f(void)) still gets one event per
    # call, at entry: tracing it must never print nothing.
    if fp.entry or not fp.ret:
        out.append(event_layout(fp.index, ENTRY, fp.entry, [c for c in conds if not c.at_return]))
    if fp.ret:
        out.append(event_layout(fp.index, RETURN, fp.ret, [c for c in conds if c.at_return]))
    return out
