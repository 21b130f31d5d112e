"""The fast path of the text style: ``compile_text`` generates Python code
that renders one BTF type from full-size data, giving exactly the text that
``text.TreeText`` gives for the decoded tree (the tests compare the two on
every kernel type); types it would serve badly (huge or odd) are left to the
tree renderer (None).
"""

import struct

from ..btf import Kind
from ..btf.bitfield import Bitfield, is_signed
from . import values as D
from .pynames import PyNames
from .text import (
    TreeText,
    cstr,
    cstr_z,
    items_bool,
    items_enum,
    items_float,
    items_int,
    items_ptr,
    items_str,
)

_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
          (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


class _Frame:
    def __init__(self, gen, base):
        self.gen, self.base, self.leaves = gen, base, {}

    def var(self, off, code):
        key = (off, code)
        v = self.leaves.get(key)
        if v is None:
            v = self.leaves[key] = self.gen.fresh("v")
        return v

    def header(self):
        groups = []
        for (off, code), var in sorted(self.leaves.items()):
            size = struct.calcsize("<" + code)
            for g in groups:
                if g[0] <= off:
                    g[1].append((off, code, var))
                    g[0] = off + size
                    break
            else:
                groups.append([off + size, [(off, code, var)]])
        lines = []
        for _, items in groups:
            fmt, pos = "<", items[0][0]
            for off, code, _ in items:
                gap = off - pos
                fmt += ("%dx" % gap if gap else "") + code
                pos = off + struct.calcsize("<" + code)
            names = ", ".join(v for _, _, v in items)
            st = self.gen.const(struct.Struct(fmt), "S")
            lines.append(f"{names}, = {st}.unpack_from(b, {self.base} + {items[0][0]})")
        return lines


class _Gen(PyNames):
    """Generates one Python function rendering one type in the ksnoop style."""

    MAX_LINES = 60000  # members in the generated code

    def __init__(self, btf, flags, tree):
        self.s = tree.s
        self.tree = tree
        self.ns = {"cstr": cstr, "cstr_z": cstr_z, "items_int": items_int,
                   "items_bool": items_bool, "items_ptr": items_ptr, "items_float": items_float,
                   "items_enum": items_enum, "items_str": items_str, "slow": tree.slow_member}
        self.n = 0
        self.lines = 0
        # Values the generated code shows per call, counted as the decoder
        # counts them (each loop multiplies its body): at most the decoder's
        # budget for the type's size, so a call costs what a decode may.
        self.mult = 1
        self.cost = 0
        self.limit = 0

    def spend(self, values):
        self.cost += self.mult * values
        if self.cost > self.limit:
            raise _TooBig()

    # ------------------------------------------------------------ helpers
    def _scalar_read(self, fr, t, off):
        """(expr, kind) reading a scalar of resolved type t at static offset off."""
        k = t.kind
        if k == Kind.PTR:
            return fr.var(off, "Q"), "ptr"
        if k == Kind.INT:
            if t.bit_offset or t.bits != 8 * t.size or t.size not in (1, 2, 4, 8):
                return None, None
            return fr.var(off, _CODES[(t.size, t.signed)]), "bool" if t.encoding & 4 else "int"
        if k in (Kind.ENUM, Kind.ENUM64) and t.size in (1, 2, 4, 8):
            return fr.var(off, _CODES[(t.size, t.kflag)]), "enum"
        if k == Kind.FLOAT and t.size in (4, 8):
            return fr.var(off, "f" if t.size == 4 else "d"), "float"
        return None, None

    def _emit_value(self, code, pi, expr, kind, t, pre, post):
        """Append code that shows value ``expr`` between the literal pre/post."""
        z = self.s.zero
        if kind == "enum":
            names = self.const(self.s.decoder._enum_names(t), "E")
            nv = self.fresh("n")
            code.append(f"{pi}{nv} = {names}.get({expr})")
            code.append(f"{pi}if {nv} is not None: a({pre!r} + {nv} + {post!r})")
            code.append(f"{pi}{'else' if z else f'elif {expr}'}: a({pre!r} + str({expr}) + {post!r})")
            return
        if kind == "ptr":
            body = f"a({_fstring(pre, '0x{' + expr + ':016x}', post)})"
        elif kind == "bool":
            body = f"a({pre!r} + ('true' if {expr} else 'false') + {post!r})"
        elif kind == "float":
            body = f"a({_fstring(pre, '{' + expr + '!r}', post)})"
        else:
            body = f"a({_fstring(pre, '{' + expr + '}', post)})"
        code.append(f"{pi}{body}" if z else f"{pi}if {expr}: {body}")

    # ------------------------------------------------------------ members
    def member(self, fr, code, pi, tid, off, depth, label, bitfield=None, limit=None):
        s = self.s
        self.lines += 1
        if self.lines > self.MAX_LINES:
            raise _TooBig()
        self.spend(1)
        t = s.decoder.resolve(tid)
        ind = s.ind(depth)
        k = t.kind
        if bitfield is not None:
            return self.bitfield(fr, code, pi, t, off, bitfield, ind + label, "," + s.nl, limit)
        if k in (Kind.STRUCT, Kind.UNION):
            return self.record(fr, code, pi, t, off, depth, ind + label + "{" + s.nl,
                               ind + "}," + s.nl)
        if k == Kind.ARRAY:
            return self.array(fr, code, pi, tid, t, off, depth, label, "," + s.nl)
        expr, kind = self._scalar_read(fr, t, off)
        if expr is None:
            code.append(f"{pi}slow(b, {fr.base} + {off}, {tid}, {depth}, {label!r}, o)")
            return
        self._emit_value(code, pi, expr, kind, t, ind + label, "," + s.nl)

    def bitfield(self, fr, code, pi, t, off_bits, nbits, pre, post, limit):
        bf = Bitfield.at(off_bits, nbits, is_signed(t))
        start, nbytes = bf.offset, bf.nbytes
        unit = next((u for u in (1, 2, 4, 8) if u >= nbytes), 16)
        if unit == 16 or start + unit > limit:
            raw = f"(int.from_bytes(b[{fr.base} + {start}:{fr.base} + {start + nbytes}], 'little'))"
        else:
            raw = fr.var(start, _CODES[(unit, False)])
        x = self.fresh("x")
        code.append(f"{pi}{x} = {bf.py_expr(raw)}")
        if t.kind in (Kind.ENUM, Kind.ENUM64):
            kind = "enum"
        elif t.kind == Kind.INT and t.encoding & 4:
            kind = "bool"
        else:
            kind = "int"
        self._emit_value(code, pi, x, kind, t, pre, post)

    def fields(self, fr, code, pi, t, off, depth):
        label = self.s.label
        for m in t.members:
            if m.bitfield_size:
                self.member(fr, code, pi, m.type, off * 8 + m.bit_offset, depth,
                            label(m.name, m.type), bitfield=m.bitfield_size,
                            limit=off + t.size)
            else:
                self.member(fr, code, pi, m.type, off + m.bit_offset // 8, depth,
                            label(m.name, m.type))

    def record(self, fr, code, pi, t, off, depth, open_line, close_line, top=False):
        if top or self.s.zero:
            code.append(f"{pi}a({open_line!r})")
            self.fields(fr, code, pi, t, off, depth + 1)
            code.append(f"{pi}a({close_line!r})")
            return
        mark = self.fresh("m")
        code.append(f"{pi}{mark} = len(o); a({open_line!r})")
        self.fields(fr, code, pi, t, off, depth + 1)
        code.append(f"{pi}if len(o) == {mark} + 1: del o[{mark}]")
        code.append(f"{pi}else: a({close_line!r})")

    def inline_items(self, fr, code, pi, t, et, off):
        """Code computing the items text of an inline array into a fresh variable."""
        z = self.s.zero
        n = t.nelems
        it = self.fresh("t")
        self.spend(n)
        if et.kind == Kind.ARRAY:  # array of char arrays
            w = self.s.decoder.size_of(t.elem_type)
            code.append(f"{pi}{it} = items_str([b[{fr.base} + {off} + i * {w}:{fr.base} + {off}"
                        f" + (i + 1) * {w}] for i in range({n})], {z})")
            return it
        if n == 0:  # a zero-length array (__u8 x[0]): "[]" with ZERO, else left out
            code.append(f"{pi}{it} = {'' if z else None!r}")
            return it
        probe = _Frame(self, fr.base)
        _, kind = self._scalar_read(probe, et, 0)
        if kind is None:
            return None
        c = next(iter(probe.leaves))[1]
        st = self.const(struct.Struct("<%d%s" % (n, c)), "S")
        vals = f"{st}.unpack_from(b, {fr.base} + {off})"
        if kind == "enum":
            names = self.const(self.s.decoder._enum_names(et), "E")
            code.append(f"{pi}{it} = items_enum({vals}, {names}, {z})")
        else:
            code.append(f"{pi}{it} = items_{kind}({vals}, {z})")
        return it

    def array(self, fr, code, pi, tid, t, off, depth, label, post, desig=None, top=False):
        s = self.s
        ind = s.ind(depth)
        shape, et = s.array_shape(tid)
        if shape == "inline":
            if s.decoder.resolve(t.elem_type).kind != Kind.ARRAY and D.is_char_elem(et):
                it = self.fresh("t")
                fn = "cstr_z" if (s.zero or top) else "cstr"
                code.append(f"{pi}{it} = {fn}(b[{fr.base} + {off}:{fr.base} + {off + t.nelems}])")
                head = ind + label
                if top:
                    code.append(f"{pi}a({head!r} + {it})")
                else:
                    self._guarded(code, pi, it, head, post, desig)
                return
            it = self.inline_items(fr, code, pi, t, et, off)
            if it is None:
                if top or desig is not None:
                    raise _TooBig()
                code.append(f"{pi}slow(b, {fr.base} + {off}, {tid}, {depth}, {label!r}, o)")
                return
            if top:
                code.append(f"{pi}a({ind + label + '['!r} + ({it} or '') + ']')")
                return
            self._guarded(code, pi, it, ind + label + "[", "]" + post, desig)
            return
        # one element per line
        stride = s.decoder.size_of(t.elem_type)
        open_line = ind + label + "[" + s.nl
        close_line = (s.indent if top else ind) + "]" + post
        mark = self.fresh("m")
        if desig is not None:
            code.append(f"{pi}{mark} = len(o); a(None)")
        else:
            code.append(f"{pi}{mark} = len(o); a({open_line!r})")
        nx, i = self.fresh("nx"), self.fresh("i")
        code.append(f"{pi}{nx} = 0")
        code.append(f"{pi}for {i} in range({t.nelems}):")
        sub = _Frame(self, self.fresh("e"))
        body = []
        saved, self.mult = self.mult, self.mult * t.nelems
        try:
            self.spend(1)  # the loop itself runs once per element, even on empty ones
            self.element(sub, body, pi + "    ", t.elem_type, depth + 1, i, nx)
        finally:
            self.mult = saved
        code.append(f"{pi}    {sub.base} = {fr.base} + {off} + {i} * {stride}")
        code.extend(pi + "    " + line for line in sub.header())
        code.extend(body)
        self._close(code, pi, mark, open_line, close_line, desig, top)

    def _guarded(self, code, pi, var, pre, post, desig):
        """a(pre + var + post) when var is not None, with the element designator."""
        if desig is None:
            code.append(f"{pi}if {var} is not None: a({pre!r} + {var} + {post!r})")
            return
        i, nx = desig
        code.append(f"{pi}if {var} is not None:")
        code.append(f"{pi}    a(({pre!r} if {i} == {nx} else {pre[:len(pre) - len(pre.lstrip())]!r}"
                    f" + '[%d] = ' % {i} + {pre.lstrip()!r}) + {var} + {post!r}); {nx} = {i} + 1")

    def _close(self, code, pi, mark, open_line, close_line, desig, top):
        z = self.s.zero
        if desig is not None:
            i, nx = desig
            ind = open_line[:len(open_line) - len(open_line.lstrip())]
            rest = open_line.lstrip()
            fix = (f"o[{mark}] = {open_line!r} if {i} == {nx} else "
                   f"{ind!r} + '[%d] = ' % {i} + {rest!r}")
            if z:
                code.append(f"{pi}{fix}; a({close_line!r}); {nx} = {i} + 1")
            else:
                code.append(f"{pi}if len(o) == {mark} + 1: del o[{mark}]")
                code.append(f"{pi}else:")
                code.append(f"{pi}    {fix}; a({close_line!r}); {nx} = {i} + 1")
            return
        if z or top:
            code.append(f"{pi}a({close_line!r})")
        else:
            code.append(f"{pi}if len(o) == {mark} + 1: del o[{mark}]")
            code.append(f"{pi}else: a({close_line!r})")

    def element(self, fr, code, pi, elem_tid, depth, i, nx):
        """One element of a one-per-line array (a record or an array)."""
        s = self.s
        et = s.decoder.resolve(elem_tid)
        ind = s.ind(depth)
        if et.kind in (Kind.STRUCT, Kind.UNION):
            open_line, close_line = ind + "{" + s.nl, ind + "}," + s.nl
            mark = self.fresh("m")
            code.append(f"{pi}{mark} = len(o); a(None)")
            self.fields(fr, code, pi, et, 0, depth + 1)
            self._close(code, pi, mark, open_line, close_line, (i, nx), False)
        elif et.kind == Kind.ARRAY:
            self.array(fr, code, pi, elem_tid, et, 0, depth, "", "," + s.nl, desig=(i, nx))
        else:
            code.append(f"{pi}slow(b, {fr.base}, {elem_tid}, {depth}, '', o)")

    # ---------------------------------------------------------------- top
    def build(self, tid):
        s = self.s
        t = s.decoder.resolve(tid)
        self.limit = D.value_budget(s.decoder.size_of(tid))
        fr = _Frame(self, "p")
        code = []
        label = s.top_label(tid)
        pi = "    "
        if t.kind in (Kind.STRUCT, Kind.UNION):
            self.record(fr, code, pi, t, 0, 0, label + "{" + s.nl, s.indent + "}", top=True)
        elif t.kind == Kind.ARRAY:
            self.array(fr, code, pi, tid, t, 0, 0, label, "", top=True)
        else:
            expr, kind = self._scalar_read(fr, t, 0)
            if expr is None:
                return None
            saved, s.zero = s.zero, True
            try:
                self._emit_value(code, pi, expr, kind, t, label, "")
            finally:
                s.zero = saved
        src = ["def render(b, p=0):", "    o = []; a = o.append"]
        src += [pi + line for line in fr.header()]
        src += code
        src.append(f"    a({s.nl!r})")
        src.append("    return ''.join(o)")
        text = "\n".join(src) + "\n"
        exec(compile(text, f"<ksnoop render type {tid}>", "exec"), self.ns)  # noqa: S102
        fn = self.ns["render"]
        fn.source = text
        return fn


def _fstring(pre, field, post):
    """An f-string literal: ``pre`` and ``post`` as they are around the replacement
    field ``field`` (whose expression is a plain variable name), the fastest way
    CPython builds such a line (measured: about a third less than ``+ str() +``)."""
    def lit(text):
        return text.replace("{", "{{").replace("}", "}}")
    return "f" + repr(lit(pre) + field + lit(post))


class _TooBig(Exception):
    pass


def compile_text(btf, tid, flags=0, tree=None):
    """A function ``render(buf, offset=0) -> str`` for full-size data, or None
    when the type is better served by the tree renderer (huge or odd types)."""
    btf.check(tid)  # loops and impossible sizes are the BTF's fault: BTFError
    tree = tree or TreeText(btf, flags)
    try:
        return _Gen(btf, flags, tree).build(tid)
    except (_TooBig, RecursionError):
        return None
