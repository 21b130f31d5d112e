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



KSTACK_FRAMES = 48  # kernel return addresses an event holds with -K/--kstack
NO_DURATION = (1 << 64) - 1  # the duration of a call whose entry was not seen


@dataclass(frozen=True)
class EventLayout:
    func: int
    kind: int
    slots: tuple
    size: int
    conds: tuple = ()  # the function's Conditions, decided while the event is filled
    # After the slots (``tail``): the call's duration in ns (u64; RETURN and CALL
    # events; NO_DURATION when its entry was not seen), then with -K the kernel
    # stack: an s32 (bytes bpf_get_stack wrote, or -errno), 4 bytes of padding,
    # KSTACK_FRAMES u64 return addresses.  -1: the event has no such part.
    dur: int = -1
    kstack: int = -1
    tail: int = 0  # where the slots end

    @property
    def kstack_data(self):
        return self.kstack + 8

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


def event_layout(func_index, kind, values, conds=(), duration=False, kstack=False):
    """The layout of one event: the header, a slot per value, then the call's
    duration (``duration``) and the kernel stack (``kstack``)."""
    offset, slots = HEADER_SIZE, []
    for v in values:
        slot, offset = _slot(v, offset)
        slots.append(slot)
    tail, dur, stack = offset, -1, -1
    if duration:
        dur, offset = offset, offset + 8
    if kstack:
        stack, offset = offset, offset + 8 + 8 * KSTACK_FRAMES
    return EventLayout(func_index, kind, tuple(slots), offset, tuple(conds), dur, stack, tail)


def layouts_for(fp):
    """The event layouts one function's programs emit.  Return and stash
    events carry the call's duration; with ``fp.kstack`` every event carries
    the kernel stack."""
    conds = getattr(fp, "conds", ())
    ks = getattr(fp, "kstack", False)
    if fp.stash:
        return [event_layout(fp.index, CALL, fp.entry + fp.ret, conds, True, ks)]
    out = []
    # A function with nothing to show (void f(void)) still gets one event per
    # call, at entry: tracing it must never print nothing.
    if fp.entry or not fp.ret:
        out.append(event_layout(fp.index, ENTRY, fp.entry, [c for c in conds if not c.at_return],
                                False, ks))
    if fp.ret:
        out.append(event_layout(fp.index, RETURN, fp.ret, [c for c in conds if c.at_return], True, ks))
    return out
