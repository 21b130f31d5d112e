"""Event bytes -> output text, with code generated once per event layout.

``FastFormatter(plan, fmt).format(buf, offset, size)`` gives exactly the text
``Formatter(fmt).event(Decoder(plan).decode(buf[offset:offset + size]))``
gives (output.py and events.py stay the reference, and the fallback), without
building Event and Captured objects or looking anything up per event:

- for each event layout a Python function is generated that unpacks the
  header and every plain scalar with one ``struct`` call each and fills one
  format string; the static parts (function name, value names, casts,
  separators, the JSON keys) are in that string already;
- a scalar is put inline only when its text, for a set of probe values, is
  the renderer's own (checked when the layout is compiled); other values call
  a per-value function made once: the ksnoop-style renderer (its compiled fast
  path) for text and line, ``jsonout.compile_json`` for JSON (straight from
  the bytes, no JSON parse), and ``escape`` for strings, task and function
  names;
- the text of the task name, process, [thread,] and CPU fields is cached per
  their raw values, and the text of the seconds while they stay the same;
- ``buf`` may be a ``bytes`` object or the mapped ring buffer itself: nothing
  is copied but the values that are rendered from a slice.

A layout whose code cannot be generated falls back to the reference path.
"""

import struct

from ..btf import Kind
from ..btf import format as L
from ..btf.cdecl import type_name
from ..errors import KsnoopError
from ..render import make_renderer
from ..render.escape import c_string, json_dumps, json_string, terminal_text
from ..render.text import Names, TreeText
from ..render.textgen import compile_text
from .events import Decoder
from .fastparts import ERRNO_SUFFIX, errno_fn, errno_json, kstack_fn, suffix
from .jsonout import _quote, compile_json
from .output import (
    ERR_PTR,
    Formatter,
    _errno,
    delta_text,
    err_ptr_name,
    errno_kind,
    wall_offset_ns,
    wall_second,
)
from .plan import DEREF, MEMORY, REGS, SCALAR, STRING
from .wire import ENTRY, HEADER_FIELDS, HEADER_SIZE, KIND_NAMES, NO_DURATION

__all__ = ["FastFormatter"]


def _header_fields():
    """name -> (offset, struct code) of the header's fields (wire.HEADER_FIELDS)."""
    at, pos = {}, 0
    for _, code, name in HEADER_FIELDS:
        at[name] = (pos, code)
        pos += struct.calcsize("<" + code)
    assert pos == HEADER_SIZE
    return at


_AT = _header_fields()
# func and kind, next to each other: the key of an event's layout
assert _AT["kind"][0] == _AT["func"][0] + struct.calcsize("<" + _AT["func"][1])
_KEY_OFFSET = _AT["func"][0]
_KEY = struct.Struct("<" + _AT["func"][1] + _AT["kind"][1])
_HEAD_CACHE_MAX = 4096  # (task, pid, cpu) texts kept
STATUS = struct.Struct("<i")
PTR_STATUS = struct.Struct("<Qi")
_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
          (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


def _pct(text):
    return text.replace("%", "%%")


class _Scalar:
    """How a scalar type prints inline: struct ``code``, and for text and JSON a
    (format piece, Python expression template) pair; ``{v}`` in a template is
    the value's variable, ``{T}``, ``{J}``, ``{L}`` constants in ``consts``."""

    def __init__(self, code, text, json, consts=None):
        self.code, self.text, self.json, self.consts = code, text, json, consts or {}


def _scalar(btf, tid, flags, names, indent):
    """An inline recipe for scalars of type ``tid`` (read from 8 bytes), or None.
    ``indent``: nested lines of a value are indented (the text format)."""
    t = btf[btf.resolve(tid)]
    label = "(%s)" % names(tid)
    if t.kind == Kind.PTR:
        return _Scalar("Q", (_pct(label) + "0x%016x", "{v}"), ('"0x%x"', "{v}"))
    if t.kind == Kind.INT and t.size in (1, 2, 4, 8) and not t.bit_offset and t.bits == 8 * t.size:
        code = _CODES[(t.size, bool(t.encoding & L.INT_SIGNED))]
        if t.encoding & L.INT_BOOL:
            return _Scalar(code, ("%s", "{L} + ('true' if {v} else 'false')"),
                           ("%s", "('true' if {v} else 'false')"), {"L": label})
        return _Scalar(code, (_pct(label) + "%d", "{v}"), ("%d", "{v}"))
    if t.kind in (Kind.ENUM, Kind.ENUM64) and t.size in (1, 2, 4, 8):
        code = _CODES[(t.size, bool(t.kflag))]
        r = make_renderer(btf, tid, "ksnoop", flags)
        j = make_renderer(btf, tid, "json")
        st = struct.Struct("<" + code)
        texts, jsons = {}, {}
        for ev in t.values:
            data = (ev.value & ((1 << 8 * t.size) - 1)).to_bytes(t.size, "little") + bytes(8)
            v = st.unpack_from(data)[0]
            text = r.render(data).rstrip("\n")
            texts[v] = text.replace("\n", "\n  ") if indent else text
            jsons[v] = j.render(data)
        return _Scalar(code, ("%s", "({T}.get({v}) or {L} + str({v}))"),
                       ("%s", "({J}.get({v}) or str({v}))"), {"T": texts, "J": jsons, "L": label})
    return None


_HEADER_READS = [(_AT[name][0], _AT[name][1], name) for name in ("ts", "tgid", "tid", "cpu", "comm")]


def _unpacker(reads):
    """One struct format reading every (offset, code, variable) of ``reads``
    (which do not overlap), and the variables in its order."""
    fmt, pos, names = "<", 0, []
    for off, code, name in sorted(reads):
        if off < pos:
            raise ValueError(f"overlapping reads at {off}")
        fmt += ("%dx" % (off - pos) if off > pos else "") + code
        pos = off + struct.calcsize("<" + code)
        names.append(name)
    return fmt, names


def _no_newline_in_names(btf):
    """Whether no string of ``btf`` (nor of its base) holds a newline: then no
    type, member or enumerator name does, and a rendered value has newlines only
    where the renderer breaks lines."""
    while btf is not None:
        if b"\n" in btf.data[btf.str_start:btf.str_start + btf.str_len]:
            return False
        btf = btf.base
    return True


def _probes(code):
    size = struct.calcsize("<" + code)
    signed = code.islower()
    top = (1 << (8 * size - 1)) - 1 if signed else (1 << (8 * size)) - 1
    vals = {0, 1, 2, 84, top, top // 3}
    if signed:
        vals |= {-1, -22, -top - 1}
    return sorted(vals)


class _Layout:
    """Generates the function of one event layout in one format."""

    def __init__(self, ff, fp, ev):
        self.ff, self.fp, self.ev = ff, fp, ev
        self.fmt = ff.fmt
        self.btf = fp.btf
        self.ns = dict(ff.ns)
        self.n = 0

    def const(self, value, prefix="K"):
        self.n += 1
        name = f"{prefix}{self.n}"
        self.ns[name] = value
        return name

    # ----------------------------------------------------------- scalars
    def inline(self, tid):
        """(format piece, expression template, constants) for scalars of type tid,
        when the inline text equals the renderer's for every probe value; else None."""
        flags = self.ff.formatter.flags
        json_out = self.fmt == "json"
        sc = _scalar(self.btf, tid, flags, self.ff.names(self.btf), self.fmt == "text")
        if sc is None:
            return None
        env = {k: self.const(v, k) for k, v in sc.consts.items()}
        piece, tmpl = sc.json if json_out else sc.text
        r = make_renderer(self.btf, tid, "json" if json_out else "ksnoop", flags)
        st = struct.Struct("<" + sc.code)
        check = compile(self.expr(tmpl, "v", env), "<ksnoop inline check>", "eval")
        for v in _probes(sc.code) + sorted(sc.consts.get("T", ())):
            data = st.pack(v) + bytes(8)
            want = r.render(data)
            if not json_out:
                want = want.rstrip("\n")
                if self.fmt == "text":
                    want = want.replace("\n", "\n  ")
            if piece % eval(check, self.ns, {"v": v}) != want:  # noqa: S307 - our own code
                return None
        return sc.code, piece, tmpl, env

    @staticmethod
    def expr(tmpl, var, env):
        """The Python expression of template ``tmpl`` for variable ``var``."""
        e = tmpl.replace("{v}", var)
        for k, name in env.items():
            e = e.replace("{%s}" % k, name)
        return e

    # ----------------------------------------------------------- values
    def slot(self, i, s, code):
        """Code for slot ``i``: returns (text piece, args, note expression or None)
        and appends the lines computing them to ``code``."""
        v = s.value
        err = errno_kind(self.btf, v)
        if v.kind == SCALAR and err != ERR_PTR:
            src = s.ptr if s.status < 0 else s.data
            inl = self.inline(v.show_type)
            if inl is not None:
                code_, piece, tmpl, env = inl
                var = f"v{i}"
                self.reads.append((src, code_, var))  # read with the header
                expr = self.expr(tmpl, var, env)
                if err:  # an int return: its errno name after the number
                    self.inline_errnos.append((v.name, var, f"s{i}" if s.status >= 0 else None))
                    if self.fmt != "json" and s.status < 0:
                        return piece + "%s", [expr, f"ESFX.get({var}, '')"], None
                    if self.fmt != "json":
                        expr = f"{piece!r} % ({expr},) + ESFX.get({var}, '')"
                        piece = "%s"
                if s.status < 0:  # a register: always there
                    return piece, [expr], None
                self.reads.append((s.status, "i", f"s{i}"))
                failed = "null" if self.fmt == "json" else "?"
                code.append(f"if s{i} >= 0: t{i} = {piece!r} % ({expr},); n{i} = ''")
                code.append(f"else: t{i} = {failed!r}; n{i} = cannot_read({v.name!r}, s{i})")
                return "%s", [f"t{i}"], f"n{i}"
        fn = self.const(self.value_fn(s), "V")
        code.append(f"t{i}, n{i} = {fn}(b, o)")
        return "%s", [f"t{i}"], f"n{i}"

    def value_fn(self, s):
        """A function (b, o) -> (text, note) for one slot (json: the value's JSON text)."""
        v, btf = s.value, self.btf
        json_out = self.fmt == "json"
        indent = (lambda text: text.replace("\n", "\n  ")) if self.fmt == "text" else (lambda text: text)
        what = type_name(btf, v.type_id)
        tid = v.type_id if v.kind == REGS else v.show_type
        if v.kind == REGS:
            have = min(s.size, v.full_size)
        elif s.data < 0:  # a scalar register: its 8 bytes are the value
            have = 8
        else:
            have = s.size
        render = self.render_fn(tid, have)
        ptr_at, status_at, data_at, size = s.ptr, s.status, s.data, s.size
        name = v.name
        err = errno_kind(btf, v)
        if v.kind in (SCALAR, MEMORY, REGS):
            cut = (f"{v.size} bytes of {v.full_size}"
                   if json_out and v.kind == MEMORY and v.full_size > v.size else "")
            src = ptr_at if data_at < 0 else data_at
            if err and not json_out:
                render = errno_fn(render, err, src, what)
            if status_at < 0:
                def value(b, o):
                    return render(b, o + src), cut
                return value
            failed = "null" if json_out else "?"

            def value(b, o):
                st = STATUS.unpack_from(b, o + status_at)[0]
                if st < 0:
                    return failed, cannot_read(name, st)
                return render(b, o + src), cut
            return value
        # DEREF, STRING: a pointer, the status of reading it, what was read
        null = "null" if json_out else indent(f"({what})NULL")
        cut = (f"{v.size} bytes of {v.full_size}"
               if json_out and v.kind == DEREF and v.full_size > v.size else "")
        vsize = v.size

        def unreadable(p, st):
            if err == ERR_PTR and p >= (1 << 64) - 4095:
                if json_out:
                    return '"0x%x"' % p, ""
                return f"({what})ERR_PTR(-{err_ptr_name(p)})", ""
            note = (f"Cannot show '{name}' as '{what}'. Userspace/invalid ptr? "
                    f"(read failed: {_errno(st)})")
            if json_out:
                return ("null" if p == 0 else '"0x%x"' % p), note
            return indent(f"({what})0x{p:x}" if p else f"({what})?"), note

        if v.kind == STRING:
            def value(b, o):
                p, st = PTR_STATUS.unpack_from(b, o + ptr_at)
                if st < 0:
                    return unreadable(p, st)
                if p == 0:
                    return null, ""
                start = o + data_at
                raw = b[start:start + min(max(st - 1, 0), size)]
                if json_out:
                    return _quote(json_string(raw)), ""
                note = ""
                if st >= vsize and b"\0" not in b[start:start + min(max(vsize - 1, 0), size)]:
                    note = f"string truncated at {vsize - 1} bytes"
                return c_string(raw), note
            return value

        star = "" if json_out else "*"

        def value(b, o):
            p, st = PTR_STATUS.unpack_from(b, o + ptr_at)
            if st < 0:
                return unreadable(p, st)
            if p == 0:
                return null, ""
            return star + render(b, o + data_at), cut
        return value

    def render_fn(self, tid, have):
        """(b, offset) -> the rendered text of ``have`` captured bytes of type tid, as
        output.Formatter shows it (text: without the final newline, nested lines
        indented; json: the JSON text)."""
        btf = self.btf
        if self.fmt == "json":
            fn = compile_json(btf, tid, have)
            if fn is not None:
                return fn
            r = make_renderer(btf, tid, "json")
            return lambda b, o: r.render(b[o:o + have])
        flags = self.ff.formatter.flags
        r = make_renderer(btf, tid, "ksnoop", flags)
        if self.fmt == "line":
            return lambda b, o: r.render(b[o:o + have]).rstrip("\n")
        if have >= r.size and _no_newline_in_names(btf):
            # the value's nested lines indented by the renderer itself, rather than
            # by replacing every newline: the same text when no BTF name has one
            fast = compile_text(btf, tid, flags, TreeText(btf, flags, indent="  "))
            if fast is not None:
                return lambda b, o: fast(b, o).rstrip("\n")
        return lambda b, o: r.render(b[o:o + have]).rstrip("\n").replace("\n", "\n  ")

    # ----------------------------------------------------------- events
    def build(self):
        ev, fp, fmt = self.ev, self.fp, self.fmt
        self.reads = list(_HEADER_READS)  # (offset, struct code, variable): one unpack
        self.inline_errnos = []  # (value name, variable, status variable) of inline int returns
        if ev.dur >= 0:
            self.reads.append((ev.dur, "Q", "dur"))
        # the text of the task, process and CPU fields, kept per (comm, pid, [tid,] cpu)
        who = "comm, tgid, tid, cpu" if fmt == "json" else "comm, tgid, cpu"
        code = [f"h = HEAD.get(({who}))", f"if h is None: h = new_head({who})"]
        slots = [(s, *self.slot(i, s, code)) for i, s in enumerate(ev.slots)]
        if fmt == "json":
            fmt_str, args = self.json(slots, code)
        else:
            if self.ff.formatter.time == "delta":
                code.append("d = 0 if PREV[0] is None else ts - PREV[0]")
                code.append("PREV[0] = ts")
                head = "%s%16s " + _pct(terminal_text(fp.name)) + "("
                args = ["h", "delta_text(d)"]
            else:
                # seconds.microseconds (boot) or HH:MM:SS.microseconds (wall),
                # right-aligned in 16 columns; the text of the second (with the
                # spaces before it) is kept while it stays the same
                code.append("d = ts - SEC[0]")
                code.append("if not 0 <= d < 1000000000: d = new_second(ts)")
                head = "%s%s%06d " + _pct(terminal_text(fp.name)) + "("
                args = ["h", "SEC[1]", "d // 1000"]
            fmt_str = head + (self.line(slots, args) if fmt == "line" else self.text(slots, args))
            fmt_str += suffix(self, code, args)
        fmt_, names = _unpacker(self.reads)
        code[:0] = [f"if size < {ev.size}: short({fp.name!r}, size, {ev.size})",
                    f"{', '.join(names)}, = {self.const(struct.Struct(fmt_), 'S')}.unpack_from(b, o)"]
        src = ["def event(b, o, size):"] + ["    " + line for line in code]
        src.append(f"    return {fmt_str!r} % ({', '.join(args)},)")
        text = "\n".join(src) + "\n"
        exec(compile(text, f"<ksnoop event {fp.name} {KIND_NAMES[ev.kind]} {fmt}>", "exec"),  # noqa: S102
             self.ns)
        fn = self.ns["event"]
        fn.source = text
        return fn

    @staticmethod
    def _note(note, args):
        if note is None:
            return ""
        args.append(f"(' /* %s */' % {note} if {note} else '')")
        return "%s"

    def line(self, slots, args):
        def join(at_return):
            out = []
            for s, piece, a, note in slots:
                if s.value.at_return == at_return:
                    args.extend(a)
                    out.append(_pct(s.value.name) + " = " + piece + self._note(note, args))
            return ", ".join(out)
        entry = join(False) + ")"
        return entry + (" => " + join(True) if self.ev.kind != ENTRY else "")

    def text(self, slots, args):
        out = []
        for i, (s, piece, a, note) in enumerate(slots):
            args.extend(a)
            comma = "," if i < len(slots) - 1 else ""
            out.append("  " + _pct(s.value.name) + " = " + piece + comma + self._note(note, args))
        return "\n" + "".join(line + "\n" for line in out) + ");"

    def json(self, slots, code):
        fp, ev = self.fp, self.ev
        last = {}  # name -> the last slot of that name, in the order names first appear
        for s, piece, a, _ in slots:
            last[s.value.name] = (piece, a)
        # the wall clock: the text of the second kept while it stays the same
        code.append("w = ts - WSEC[0]")
        code.append("if not 0 <= w < 1000000000: w = new_wall_second(ts)")
        fmt_str = ('{"time":%r,"wall":"%s%06dZ",%s,"function":'
                   + _pct(_quote(fp.name)) + ',"event":' + _pct(_quote(KIND_NAMES[ev.kind]))
                   + ',"values":{')
        args = ["ts / 1e9", "WSEC[1]", "w // 1000", "h"]
        for i, (name, (piece, a)) in enumerate(last.items()):
            fmt_str += ("," if i else "") + _pct(_quote(name)) + ":" + piece
            args.extend(a)
        fmt_str += "}"
        if ev.kind != ENTRY:
            fmt_str += ',"duration_ns":%s'
            args.append(f"(str(dur) if dur != {NO_DURATION} else 'null')")
        errnos = errno_json(self)
        if errnos is not None:
            fmt_str += "%s"
            args.append(errnos)
        noted = [(s.value.name, note) for s, _, _, note in slots if note is not None]
        if ev.kstack >= 0:
            code.append(f"ks, ksn = {self.const(kstack_fn(self), 'KS')}(b, o)")
            fmt_str += ',"kstack":%s'
            args.append("ks or 'null'")
            noted.append(("kstack", "ksn"))
        fmt_str += "%s}"
        if noted:
            code.append("notes = {}")
            for name, note in noted:
                code.append(f"if {note}: notes[{name!r}] = {note}")
            args.append("(',\"notes\":' + json_dumps(notes)) if notes else ''")
        else:
            args.append("''")
        return fmt_str, args


class FastFormatter:
    """Formats the events of one plan: ``format(buf, offset=0, size=None) -> str``,
    the text of the event at ``buf[offset:offset + size]``."""

    def __init__(self, plan, fmt="text", formatter=None):
        self.fmt = fmt
        self.formatter = formatter or Formatter(fmt)
        self.decoder = Decoder(plan)
        self._names = {}
        self._heads = {}
        self.frame_texts = {}  # -K: address -> its frame's text, escaped for the format
        self.ns = {"STATUS": STATUS, "HEAD": self._heads, "new_head": self._new_head,
                   "SEC": [0, ""], "new_second": self._new_second, "json_dumps": json_dumps,
                   "cannot_read": cannot_read, "short": self._short,
                   "WSEC": [0, ""], "new_wall_second": self._new_wall_second,
                   "PREV": [None], "delta_text": delta_text, "ESFX": ERRNO_SUFFIX}
        if self.formatter.time == "wall":
            self.ns["new_second"] = self._new_wall_text_second
        self._fns = {}  # (func, kind) -> the layout's function, made at its first event
        self.format = self._dispatcher()

    def names(self, btf):
        n = self._names.get(id(btf))
        if n is None:
            n = self._names[id(btf)] = Names(btf)
        return n

    def _compile(self, fp, ev):
        try:
            fn = _Layout(self, fp, ev).build()
        except Exception:  # noqa: BLE001 - an odd layout is formatted the reference way
            fn = None
        if fn is not None:
            return fn
        decode, event = self.decoder.decode, self.formatter.event

        def reference(b, o, size):
            return event(decode(bytes(b[o:o + size])))
        return reference

    def _new_second(self, ts):
        """ts - (its second in ns), with SEC set to that second and the text before
        the microseconds: "%16s" of "SEC.uuuuuu" is "%9d." of SEC, then uuuuuu."""
        sec = ts // 1_000_000_000
        base = sec * 1_000_000_000
        self.ns["SEC"][:] = [base, "%9d." % sec]
        return ts - base

    def _wall_second(self, ts, iso):
        """ts - (its wall-clock second, in event-clock ns), and that second's text."""
        off = wall_offset_ns()
        w = ts + off
        sec = w // 1_000_000_000
        base = sec * 1_000_000_000 - off
        return base, wall_second(sec, iso)

    def _new_wall_second(self, ts):
        """JSON's "wall": WSEC set to the second of ``ts`` and its ISO text."""
        base, text = self._wall_second(ts, True)
        self.ns["WSEC"][:] = [base, text]
        return ts - base

    def _new_wall_text_second(self, ts):
        """--time wall: SEC set to the wall-clock second of ``ts`` and the text
        before the microseconds (" HH:MM:SS.", right-aligned as "%16s" puts it)."""
        base, text = self._wall_second(ts, False)
        self.ns["SEC"][:] = [base, "%10s" % text]
        return ts - base

    def _new_head(self, raw, tgid, *tid_cpu):
        """The text of the header fields before the time (text, line) or after it
        (json): the task name (escaped), the process, [the thread,] the CPU."""
        comm = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        if self.fmt == "json":
            text = '"comm":%s,"pid":%d,"tid":%d,"cpu":%d' % (_quote(comm), tgid, *tid_cpu)
        else:
            text = "%-16s %7d %4d " % (terminal_text(comm), tgid, *tid_cpu)
        if len(self._heads) >= _HEAD_CACHE_MAX:
            self._heads.clear()
        self._heads[(raw, tgid, *tid_cpu)] = text
        return text

    @staticmethod
    def _short(name, size, need):
        raise KsnoopError(f"short event for {name}: {size} of {need} bytes")

    def _dispatcher(self):
        """``format(b, o=0, size=None)``: the output text of the event at
        ``b[o:o + size]`` (a closure: everything it needs is a local)."""
        fns, layout_fn = self._fns, self.layout_fn
        key_of, key_at, header_size = _KEY.unpack_from, _KEY_OFFSET, HEADER_SIZE

        def format(b, o=0, size=None):
            if size is None:
                size = len(b) - o
            if size < header_size:
                raise KsnoopError(f"short event: {size} bytes")
            key = key_of(b, o + key_at)
            fn = fns.get(key)
            if fn is None:
                fn = layout_fn(key)
            return fn(b, o, size)
        return format

    def collector(self, texts, bad, abort, chunk, full):
        """``handle(b, o, size)`` for a buffer reader: appends the text of the event
        at ``b[o:o + size]`` to the list ``texts`` and calls ``full()`` when it holds
        ``chunk`` texts; an event that cannot be formatted goes to ``bad(exc)``; an
        exception that is not an Exception (Ctrl-C) calls ``abort()`` and propagates.
        One call per event: the dispatch of ``format`` is done in place."""
        fns, layout_fn, append = self._fns, self.layout_fn, texts.append
        key_of, key_at, header_size = _KEY.unpack_from, _KEY_OFFSET, HEADER_SIZE

        def handle(b, o, size):
            try:
                if size < header_size:
                    raise KsnoopError(f"short event: {size} bytes")
                fn = fns.get(key_of(b, o + key_at))
                if fn is None:
                    fn = layout_fn(key_of(b, o + key_at))
                append(fn(b, o, size))
            except Exception as e:  # a malformed event must not end the trace
                bad(e)
                return
            except BaseException:
                abort()
                raise
            if len(texts) >= chunk:
                full()
        return handle

    def layout_fn(self, key):
        """The function formatting events of layout ``key`` (func, kind)."""
        fn = self._fns.get(key)
        if fn is None:
            try:
                fp, ev = self.decoder.layouts[key]
            except KeyError:
                raise KsnoopError(f"event for unknown function/kind {key[0]}/{key[1]}") from None
            fn = self._fns[key] = self._compile(fp, ev)
        return fn



# -2 -> " (-ENOENT)": what follows an int return value in -4095..-1
def cannot_read(name, status):
    return f"cannot read {name}: {_errno(status)}"
