"""Trace events -> text, one-line text, or JSON lines.

Values are rendered in user space from the captured bytes by ksnoop.render,
so the kernel only copies bytes.  Unreadable pointers, truncated captures and
failed reads are said in the output, never dropped.  Strings, task names and
function names are printed by ksnoop.render.escape, the one printer of kernel
bytes (the same as ``ksnoop render``).
"""

import json

from ..btf import Kind
from ..btf.cdecl import type_name
from ..render import COMPACT, make_renderer
from ..render.escape import c_string, json_dumps, json_string, terminal_text
from .plan import DEREF, MEMORY, REGS, SCALAR, STRING
from .wire import CALL, ENTRY, KIND_NAMES, RETURN

FORMATS = ("text", "line", "json")
HEADER = f"{'TASK':<16} {'PID':>7} {'CPU#':>4} {'TIMESTAMP':>16} FUNCTION"


def _errno(status):
    import errno

    code = -status
    return f"-{errno.errorcode[code]}" if code in errno.errorcode else f"error {status}"


class Formatter:
    """Turns Events into output text in one of FORMATS."""

    def __init__(self, fmt="text"):
        self.fmt = fmt
        self.flags = COMPACT if fmt == "line" else 0

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
        if v.kind == SCALAR:
            if cap.status < 0:
                return "?", f"cannot read {v.name}: {_errno(cap.status)}"
            return self._render(btf, v.show_type, cap.data), ""
        if v.kind == REGS:
            return self._render(btf, v.type_id, cap.data[:v.full_size]), ""
        if v.kind in (DEREF, STRING):
            if cap.ptr == 0 and cap.status >= 0:
                return f"({what})NULL", ""
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
        ts = f"{ev.ts_ns // 1_000_000_000}.{ev.ts_ns % 1_000_000_000 // 1000:06d}"
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
                    f"{func}({join(False)}){ret}")
        lines = [f"{comm:<16} {ev.tgid:>7} {ev.cpu:>4} {ts:>16} {func}("]
        for i, (name, text, note) in enumerate(parts):
            body = text.replace("\n", "\n  ")
            comma = "," if i < len(parts) - 1 else ""
            lines.append(f"  {name} = {body}{comma}" + (f" /* {note} */" if note else ""))
        lines.append(");")
        return "\n".join(lines)

    def _json(self, ev):
        btf = ev.func.btf
        values, notes = {}, {}
        for cap in ev.values:
            v = cap.value
            values[v.name], note = self._json_value(cap, btf)
            if note:
                notes[v.name] = note
        obj = {"time": ev.ts_ns / 1e9, "comm": ev.comm, "pid": ev.tgid, "tid": ev.tid,
               "cpu": ev.cpu, "function": ev.func.name, "event": KIND_NAMES[ev.kind],
               "values": values}
        if notes:
            obj["notes"] = notes
        return json_dumps(obj)

    def _json_value(self, cap, btf):
        v = cap.value
        if v.kind in (DEREF, STRING) and (cap.status < 0 or cap.ptr == 0):
            text, note = self.value_text(cap, btf)
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


__all__ = ["Formatter", "FORMATS", "describe_plan", "ENTRY", "RETURN", "CALL", "Kind"]
