"""The parts of a fast-formatted event beyond its values (fastout.py's
``_Layout`` calls these): the errno name of a return value, the call's
duration and the kernel stack (-K), each the reference's text
(output.Formatter) byte for byte."""

import struct

from ..render.escape import json_dumps, terminal_text
from .jsonout import _quote
from .output import ERR_INT4, ERR_PTR, _errno, err_ptr_name, errno_kind, errno_name
from .plan import DEREF, STRING
from .wire import KSTACK_FRAMES, NO_DURATION

_U64 = struct.Struct("<Q")
_S32 = struct.Struct("<i")
_S64 = struct.Struct("<q")
STATUS = _S32
# -2 -> " (-ENOENT)": what follows an int return value in -4095..-1
ERRNO_SUFFIX = {n: f" (-{errno_name(n)})" for n in range(-4095, 0)}


def errno_fn(render, err, src, what):
    """``render`` of a return value, with its errno name: ``(int)-2 (-ENOENT)``,
    ``(T *)ERR_PTR(-ENOENT)``."""
    if err == ERR_PTR:
        def value(b, o):
            p = _U64.unpack_from(b, o)[0]
            if p >= (1 << 64) - 4095:
                return f"({what})ERR_PTR(-{err_ptr_name(p)})"
            return render(b, o)
        return value
    st = _S32 if err == ERR_INT4 else _S64

    def value(b, o):
        n = st.unpack_from(b, o)[0]
        if -4096 < n < 0:
            return render(b, o) + f" (-{errno_name(n)})"
        return render(b, o)
    return value

def errno_json(lay):
    """A Python expression giving ``,"errno":{...}`` for the layout's return
    values that carry an errno (the reference's "errno" object), or None."""
    inline = lay.inline_errnos
    if len(inline) == 1 and len([s for s in lay.ev.slots if errno_kind(lay.btf, s.value)]) == 1:
        (name, var, status), = inline
        table = lay.const({n: ',"errno":' + json_dumps({name: errno_name(n)})
                            for n in range(-4095, 0)}, "EJ")
        expr = f"{table}.get({var}, '')"
        return f"({expr} if {status} >= 0 else '')" if status else expr
    fn = errno_json_fn(lay)
    return None if fn is None else f"{lay.const(fn, 'ER')}(b, o)"

def errno_json_fn(lay):
    """(b, o) -> ``,"errno":{...}`` for the layout's return values that carry
    an errno (the reference's "errno" object), or None when none can."""
    parts = []
    for s in lay.ev.slots:
        err = errno_kind(lay.btf, s.value)
        if not err:
            continue
        name = s.value.name
        if s.value.kind in (DEREF, STRING):
            parts.append((name, None, s.ptr, _U64, True))
        else:
            parts.append((name, s.status, s.ptr if s.data < 0 else s.data,
                          _U64 if err == ERR_PTR else _S32 if err == ERR_INT4 else _S64,
                          err == ERR_PTR))
    if not parts:
        return None

    def errnos(b, o):
        out = {}
        for name, status_at, at, st, ptr in parts:
            if status_at is not None and status_at >= 0 and STATUS.unpack_from(b, o + status_at)[0] < 0:
                continue
            n = st.unpack_from(b, o + at)[0]
            found = err_ptr_name(n) if ptr else errno_name(n)
            if found:
                out[name] = found
        return (',"errno":' + json_dumps(out)) if out else ""
    return errnos

def kstack_fn(lay):
    """(b, o) -> the text of the event's kernel stack (the reference's)."""
    at, data = lay.ev.kstack, lay.ev.kstack_data
    fmt, ff = lay.fmt, lay.ff
    sym = ff.formatter.symbols or (lambda a: f"0x{a:x}")
    cache = ff.frame_texts

    def frame(a):
        t = cache.get(a)
        if t is None:
            raw = sym(a)
            t = cache[a] = _quote(raw) if fmt == "json" else terminal_text(raw)
        return t

    def kstack(b, o):
        n = _S32.unpack_from(b, o + at)[0]
        if n < 0:
            note = f"cannot read the kernel stack: {_errno(n)}"
            if fmt == "json":
                return None, note
            return (" kstack: ? /* %s */" if fmt == "line" else "\n  kstack: ? /* %s */") % note, note
        k = min(n // 8, KSTACK_FRAMES)
        frames = [frame(a) for a in struct.unpack_from("<%dQ" % k, b, o + data)]
        if fmt == "json":
            return "[" + ",".join(frames) + "]", ""
        if fmt == "line":
            return " kstack: " + " <- ".join(frames), ""
        return "\n  kstack:" + "".join(["\n    " + f for f in frames]), ""
    return kstack

def suffix(lay, code, args):
    """Text and line: the duration and the kernel stack after the values."""
    ev = lay.ev
    piece = ""
    if ev.dur >= 0:
        piece += "%s"
        args.append(f"(' (%d.%03dus)' % (dur // 1000, dur % 1000) if dur != {NO_DURATION} else '')")
    if ev.kstack >= 0:
        fn = lay.const(kstack_fn(lay), "KS")
        code.append(f"ks, _ = {fn}(b, o)")
        piece += "%s"
        args.append("ks")
    return piece
