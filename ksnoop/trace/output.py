"""Trace events -> text, one-line text, or JSON lines.

Values are rendered in user space from the captured bytes by ksnoop.render,
so the kernel only copies bytes.  Unreadable pointers, truncated captures and
failed reads are said in the output, never dropped.  Strings, task names and
function names are printed by ksnoop.render.escape, the one printer of kernel
bytes (the same as ``ksnoop render``).
"""

import errno as _errno_mod
import json
import time as _time

from ..btf import Kind
from ..btf.cdecl import type_name
from ..render import COMPACT, make_renderer
from ..render.escape import c_string, json_dumps, json_string, terminal_text
from .plan import DEREF, MEMORY, REGS, SCALAR, STRING
from .wire import CALL, ENTRY, KIND_NAMES, RETURN

FORMATS = ("text", "line", "json")
HEADER = f"{'TASK':<16} {'PID':>7} {'CPU#':>4} {'TIMESTAMP':>16} FUNCTION"


def _errno(status):
    code = -status
    return f"-{ERRNO_NAMES[code]}" if code in ERRNO_NAMES else f"error {status}"


# Linux's errno names (Python's errno module on Linux), with the kernel's own
# (include/linux/errno.h), which return values carry but user space never sees.
ERRNO_NAMES = dict(_errno_mod.errorcode)
ERRNO_NAMES.update({512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND",
                    515: "ENOIOCTLCMD", 516: "ERESTART_RESTARTBLOCK", 517: "EPROBE_DEFER",
                    518: "EOPENSTALE", 519: "ENOPARAM", 521: "EBADHANDLE", 522: "ENOTSYNC",
                    523: "EBADCOOKIE", 524: "ENOTSUPP", 525: "ETOOSMALL", 526: "ESERVERFAULT",
                    527: "EBADTYPE", 528: "EJUKEBOX", 529: "EIOCBQUEUED", 530: "ERECALLCONFLICT"})
MAX_ERRNO = 4095  # the kernel's: -4095..-1 are errors, in an int or in an error pointer
ERR_INT4, ERR_INT8, ERR_PTR = "int4", "int8", "ptr"


def errno_kind(btf, v):
    """How a return value may carry an error: ERR_INT4 / ERR_INT8 (a signed
    int or long), ERR_PTR (a pointer), or None."""
    if v.name != "return" or not v.at_return:
        return None
    if v.kind in (DEREF, STRING):
        return ERR_PTR
    if v.kind != SCALAR:
        return None
    t = btf[btf.resolve(v.show_type)]
    if t.kind == Kind.PTR:
        return ERR_PTR
    if t.kind == Kind.INT and t.size in (4, 8) and t.signed and not t.encoding & 4:
        return ERR_INT4 if t.size == 4 else ERR_INT8
    return None


def errno_of(kind, ptr, data):
    """The errno name a captured return value carries (see errno_kind), or None:
    ``ptr`` is a DEREF/STRING value's pointer, ``data`` a scalar's bytes."""
    if kind == ERR_PTR:
        return err_ptr_name(ptr if ptr is not None and not data else int.from_bytes(data[:8], "little"))
    if kind in (ERR_INT4, ERR_INT8):
        return errno_name(int.from_bytes(data[:4 if kind == ERR_INT4 else 8], "little", signed=True))
    return None


def errno_name(number):
    """``ENOENT`` for -2, for numbers in -MAX_ERRNO..-1; else None."""
    if -MAX_ERRNO <= number < 0:
        return ERRNO_NAMES.get(-number, str(-number))
    return None


def err_ptr_name(ptr):
    """``ENOENT`` for the error pointer ERR_PTR(-ENOENT); else None."""
    return errno_name(ptr - (1 << 64)) if ptr is not None and ptr >= (1 << 64) - MAX_ERRNO else None


def duration_text(ns):
    """A duration in ns as microseconds with three decimals: ``12.345us``."""
    return "%d.%03dus" % (ns // 1000, ns % 1000)


TIMES = ("boot", "wall", "delta")
_WALL = []


def wall_offset_ns():
    """CLOCK_REALTIME minus CLOCK_MONOTONIC (the clock of bpf_ktime_get_ns, the
    events' times), measured once per process, so that every formatter of the
    process converts alike."""
    if not _WALL:
        best = None
        for _ in range(5):
            a = _time.clock_gettime_ns(_time.CLOCK_REALTIME)
            m = _time.clock_gettime_ns(_time.CLOCK_MONOTONIC)
            b = _time.clock_gettime_ns(_time.CLOCK_REALTIME)
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) // 2 - m)
        _WALL.append(best[1])
    return _WALL[0]


def wall_second(sec, iso):
    """The text of a wall-clock second (UTC): ``HH:MM:SS.`` or, ``iso``,
    ``YYYY-MM-DDTHH:MM:SS.``."""
    return _time.strftime("%Y-%m-%dT%H:%M:%S." if iso else "%H:%M:%S.", _time.gmtime(sec))


def wall_iso(ts_ns):
    """An event time (CLOCK_MONOTONIC ns) as ISO 8601 UTC with microseconds."""
    w = ts_ns + wall_offset_ns()
    return wall_second(w // 1_000_000_000, True) + "%06dZ" % (w % 1_000_000_000 // 1000)


def delta_text(d):
    """A time difference in ns as seconds.microseconds (``-`` before a negative one)."""
    sign = "-" if d < 0 else ""
    d = abs(d)
    return "%s%d.%06d" % (sign, d // 1_000_000_000, d % 1_000_000_000 // 1000)


class Formatter:
    """Turns Events into output text in one of FORMATS."""

    def __init__(self, fmt="text", time="boot", symbols=None):
        self.fmt = fmt
        self.flags = COMPACT if fmt == "line" else 0
        self.time = time  # text and line: boot (seconds since boot), wall (UTC), delta
        self.symbols = symbols  # address -> "function+0xoff [module]" (-K), or None
        self.prev_ts = None  # --time delta: the time of the previous event

    def time_text(self, ts):
        """The time column of text and line output."""
        if self.time == "wall":
            w = ts + wall_offset_ns()
            return wall_second(w // 1_000_000_000, False) + "%06d" % (w % 1_000_000_000 // 1000)
        if self.time == "delta":
            prev, self.prev_ts = self.prev_ts, ts
            return delta_text(0 if prev is None else ts - prev)
        return f"{ts // 1_000_000_000}.{ts % 1_000_000_000 // 1000:06d}"

    def stack_frames(self, kstack):
        """(the frames as raw text, a note or "") of an event's kernel stack."""
        n, addrs = kstack
        if n < 0:
            return None, f"cannot read the kernel stack: {_errno(n)}"
        sym = self.symbols or (lambda a: f"0x{a:x}")
        return [sym(a) for a in addrs], ""

    def _suffix(self, ev):
        """Text and line: what follows the values: the duration, the kernel stack."""
        out = ""
        if ev.dur is not None:
            out += f" ({duration_text(ev.dur)})"
        if ev.kstack is not None:
            frames, note = self.stack_frames(ev.kstack)
            if self.fmt == "line":
                out += " kstack: " + (" <- ".join(map(terminal_text, frames)) if frames is not None
                                      else f"? /* {note} */")
            else:
                out += "\n  kstack:" + ("".join("\n    " + terminal_text(f) for f in frames)
                                        if frames is not None else f" ? /* {note} */")
        return out

    def header(self):
        return HEADER if self.fmt == "text" else None

    # ---------------------------------------------------------------- values
    def _render(self, btf, tid, data):
        r = make_renderer(btf, tid, "ksnoop", self.flags)
        return r.render(data).rstrip("\n")

    def value_text(self, cap, btf):
        """``(the rendered value, a note or "")`` for one captured value."""
        v = cap.value
        what = type_name(btf, v.type_id)
        err = errno_kind(btf, v)
        if v.kind == SCALAR:
            if cap.status < 0:
                return "?", f"cannot read {v.name}: {_errno(cap.status)}"
            name = errno_of(err, None, cap.data) if err else None
            if name and err == ERR_PTR:
                return f"({what})ERR_PTR(-{name})", ""
            text = self._render(btf, v.show_type, cap.data)
            return text + (f" (-{name})" if name else ""), ""
        if v.kind == REGS:
            return self._render(btf, v.type_id, cap.data[:v.full_size]), ""
        if v.kind in (DEREF, STRING):
            if cap.ptr == 0 and cap.status >= 0:
                return f"({what})NULL", ""
            if cap.status < 0 and err == ERR_PTR and err_ptr_name(cap.ptr):
                return f"({what})ERR_PTR(-{err_ptr_name(cap.ptr)})", ""
            if cap.status < 0:
                ptr = f"({what})0x{cap.ptr:x}" if cap.ptr else f"({what})?"
                return ptr, (f"Cannot show '{v.name}' as '{what}'. Userspace/invalid ptr? "
                             f"(read failed: {_errno(cap.status)})")
            if v.kind == STRING:
                raw = cap.data[:max(cap.status - 1, 0)] if cap.status else b""
                note = ""
                if cap.status >= v.size and b"\0" not in cap.data[:v.size - 1]:
                    note = f"string truncated at {v.size - 1} bytes"
                return c_string(raw), note
            # A capture cut at --size is marked by the renderer itself ("/* N of M bytes */").
            return "*" + self._render(btf, v.show_type, cap.data), ""
        if v.kind == MEMORY:
            if cap.status < 0:
                return "?", f"cannot read {v.name}: {_errno(cap.status)}"
            return self._render(btf, v.show_type, cap.data), ""
        raise AssertionError(v.kind)

    # ---------------------------------------------------------------- events
    def event(self, ev):
        if self.fmt == "json":
            return self._json(ev)
        btf = ev.func.btf
        ts = self.time_text(ev.ts_ns)
        # kernel-supplied names reach a terminal only escaped
        comm, func = terminal_text(ev.comm), terminal_text(ev.func.name)
        parts = []
        for cap in ev.values:
            text, note = self.value_text(cap, btf)
            parts.append((cap.value.name, text, note))
        if self.fmt == "line":
            # entry values inside the parentheses, return values after "=>":
            #   f(a = 1)   f() => return = (int)0   f(a = 1) => return = (int)0
            def join(at_return):
                return ", ".join(f"{n} = {t}" + (f" /* {note} */" if note else "")
                                 for (n, t, note), cap in zip(parts, ev.values)
                                 if cap.value.at_return == at_return)
            ret = f" => {join(True)}" if ev.kind != ENTRY else ""
            return (f"{comm:<16} {ev.tgid:>7} {ev.cpu:>4} {ts:>16} "
                    f"{func}({join(False)}){ret}{self._suffix(ev)}")
        lines = [f"{comm:<16} {ev.tgid:>7} {ev.cpu:>4} {ts:>16} {func}("]
        for i, (name, text, note) in enumerate(parts):
            body = text.replace("\n", "\n  ")
            comma = "," if i < len(parts) - 1 else ""
            lines.append(f"  {name} = {body}{comma}" + (f" /* {note} */" if note else ""))
        lines.append(");" + self._suffix(ev))
        return "\n".join(lines)

    def _json(self, ev):
        btf = ev.func.btf
        values, notes = {}, {}
        for cap in ev.values:
            v = cap.value
            values[v.name], note = self._json_value(cap, btf)
            if note:
                notes[v.name] = note
        obj = {"time": ev.ts_ns / 1e9, "wall": wall_iso(ev.ts_ns), "comm": ev.comm, "pid": ev.tgid,
               "tid": ev.tid, "cpu": ev.cpu, "function": ev.func.name, "event": KIND_NAMES[ev.kind],
               "values": values}
        if ev.kind != ENTRY:
            obj["duration_ns"] = ev.dur
        errnos = {}
        for cap in ev.values:
            err = errno_kind(btf, cap.value)
            if err and cap.value.kind in (DEREF, STRING):
                name = errno_of(err, cap.ptr, b"")
            elif err and cap.status >= 0:
                name = errno_of(err, None, cap.data)
            else:
                name = None
            if name:
                errnos[cap.value.name] = name
        if errnos:
            obj["errno"] = errnos
        if ev.kstack is not None:
            frames, note = self.stack_frames(ev.kstack)
            obj["kstack"] = frames
            if note:
                notes["kstack"] = note
        if notes:
            obj["notes"] = notes
        return json_dumps(obj)

    def _json_value(self, cap, btf):
        v = cap.value
        if v.kind in (DEREF, STRING) and (cap.status < 0 or cap.ptr == 0):
            text, note = self.value_text(cap, btf)
            if errno_kind(btf, v) == ERR_PTR and err_ptr_name(cap.ptr):
                note = ""
            return (None if cap.ptr == 0 else f"0x{cap.ptr:x}"), note
        if v.kind in (SCALAR, MEMORY) and cap.status < 0:
            return None, self.value_text(cap, btf)[1]
        if v.kind == STRING:
            raw = cap.data[:max(cap.status - 1, 0)]
            return json_string(raw), ""
        tid = v.show_type if v.kind != REGS else v.type_id
        data = cap.data if v.kind != REGS else cap.data[:v.full_size]
        text = make_renderer(btf, tid, "json").render(data)
        note = f"{v.size} bytes of {v.full_size}" if v.kind in (DEREF, MEMORY) and v.full_size > v.size else ""
        return json.loads(text), note


def describe_plan(plan):
    """Human-readable plan, for --dry-run."""
    out = []
    for fp in plan.funcs:
        where = f" [{fp.module}]" if fp.module else ""
        addr = f" at 0x{fp.addr:x}" if fp.addr else ""
        if fp.stash:
            mode = "stash: entry values held until return, one event per call"
        else:
            mode = " and ".join(k for k, vals in (("entry", fp.entry), ("return", fp.ret)) if vals)
            mode = (mode or "entry") + " events" + ("" if fp.entry or fp.ret else " (no values: "
                                                    "one event per call)")
        out.append(f"{fp.name}{where}{addr}: {mode}")
        if getattr(fp, "backend_why", ""):  # how it is attached, and why (kernel/backend.py)
            kind = "fentry/fexit" if fp.probe == "fentry" else (
                "kprobe-multi" if fp.multi else "kprobe/kretprobe")
            out.append(f"  backend {kind}: {fp.backend_why}")
        for label, vals in (("entry", fp.entry), ("return", fp.ret)):
            for v in vals:
                preds = " and ".join(f"{p.op} {p.value}" for p in v.preds)
                size = f", {v.size} of {v.full_size} bytes" if v.kind in (DEREF, MEMORY) else ""
                size = f", up to {v.size - 1} bytes" if v.kind == STRING else size
                out.append(f"  {label:6} {v.name}: {type_name(fp.btf, v.type_id)} ({v.kind}{size})"
                           + (f" if {preds}" if preds else ""))
        for cond in getattr(fp, "conds", ()):
            out.append(f"  {'return' if cond.at_return else 'entry':6} condition: "
                       f"{terminal_text(cond.text)}")
        for note in fp.notes:
            out.append(f"  not traced: {note}")
    return "\n".join(out)


__all__ = ["Formatter", "FORMATS", "TIMES", "duration_text", "errno_name", "wall_iso",
           "describe_plan", "ENTRY", "RETURN", "CALL", "Kind"]
