"""Event bytes -> Event records, using the layouts codegen compiled into the C."""

import struct
from dataclasses import dataclass

from ..errors import KsnoopError
from .wire import HEADER, HEADER_SIZE, KSTACK_FRAMES, NO_DURATION, layouts_for

_U64 = struct.Struct("<Q")
_S32 = struct.Struct("<i")


@dataclass(frozen=True, slots=True)
class Captured:
    """One value of one event, still as bytes."""

    value: object  # resolve.Value
    ptr: int  # pointer / register value (None when the slot has none)
    status: int  # 0 or positive: read fine (bytes for strings); negative errno: failed
    data: bytes  # captured bytes (b"" when nothing was read)


@dataclass(frozen=True, slots=True)
class Event:
    ts_ns: int
    tgid: int
    tid: int
    cpu: int
    comm: str
    func: object  # resolve.FuncPlan
    kind: int  # layout.ENTRY / RETURN / CALL
    values: tuple  # Captured...
    dur: object = None  # the call's duration in ns (RETURN and CALL events), None: unknown
    kstack: object = None  # -K: (status, return addresses): bytes bpf_get_stack wrote or -errno


class Decoder:
    """Decodes events of one plan.  Layouts come from ksnoop.layout, the same
    definition the generated C was built from."""

    def __init__(self, plan):
        self.plan = plan
        self.layouts = {}
        for fp in plan.funcs:
            for ev in layouts_for(fp):
                self.layouts[(fp.index, ev.kind)] = (fp, ev)

    def decode(self, data):
        if len(data) < HEADER_SIZE:
            raise KsnoopError(f"short event: {len(data)} bytes")
        ts, tgid, tid, cpu, func, kind, _flags, comm = HEADER.unpack_from(data, 0)
        try:
            fp, ev = self.layouts[(func, kind)]
        except KeyError:
            raise KsnoopError(f"event for unknown function/kind {func}/{kind}") from None
        if len(data) < ev.size:
            raise KsnoopError(f"short event for {fp.name}: {len(data)} of {ev.size} bytes")
        values = []
        for s in ev.slots:
            ptr = _U64.unpack_from(data, s.ptr)[0] if s.ptr >= 0 else None
            status = _S32.unpack_from(data, s.status)[0] if s.status >= 0 else 0
            raw = data[s.data:s.data + s.size] if s.data >= 0 and status >= 0 else b""
            if s.data < 0 and ptr is not None:
                raw = data[s.ptr:s.ptr + 8]
            values.append(Captured(s.value, ptr, status, raw))
        comm = comm.split(b"\0", 1)[0].decode("utf-8", "replace")
        dur = kstack = None
        if ev.dur >= 0:
            dur = _U64.unpack_from(data, ev.dur)[0]
            dur = None if dur == NO_DURATION else dur
        if ev.kstack >= 0:
            n = _S32.unpack_from(data, ev.kstack)[0]
            frames = min(max(n, 0) // 8, KSTACK_FRAMES)
            kstack = (n, struct.unpack_from(f"<{frames}Q", data, ev.kstack_data))
        return Event(ts, tgid, tid, cpu, comm, fp, kind, tuple(values), dur, kstack)
