"""The `ksnoop` text style: the kernel's layout without the kernel's defects.

Layout (flags 0; COMPACT drops indentation and newlines, NONAME drops the
``.name = (type)`` labels, ZERO prints zero values too; pointers are always
raw):

    (struct sk_buff){
     .next = (struct sk_buff *)0xffff888004a1e200,
     .len = (unsigned int)84,
     .cb = (char[48])"lo",
     .ports = (u16[4])[80, [3] = 443],
     .frags = (skb_frag_t[17])[
      [2] = {
       .len = (unsigned int)5,
      },
     ],
    }

- one space of indentation per level; every nested item ends with ",";
- arrays show their dimensions; arrays of scalars (ints, enums, pointers,
  strings) print on one line, arrays of aggregates one element per line;
- zero elements are skipped and the next shown element is prefixed with its
  index (``[3] = 443``), so positions are never lost;
- arrays of ``char`` read as C strings up to the first NUL, escaped by
  ``escape.c_string`` (the one printer of kernel bytes, as in trace output);
- bitfields print like their declared type (signed, enum names); bools
  print ``true``/``false``;
- zero suppression as in the kernel: a nested zero scalar, NULL pointer,
  empty string or all-zero aggregate is left out, unless ZERO;
- a capture shorter than the type renders what is there and ends with
  ``/* N of M bytes */``.

Two implementations give identical text: ``TreeText`` renders a decoded value
tree (any data, including truncated captures), ``compile_text`` generates
Python code for one type (full-size data, the fast path).
"""

import struct

from ..btf import Kind, cdecl
from ..btf.bitfield import Bitfield, is_signed
from . import values as D
from .escape import c_string

COMPACT, NONAME, PTR_RAW, ZERO = 1, 2, 4, 8

_SCALAR_KINDS = frozenset({Kind.INT, Kind.PTR, Kind.ENUM, Kind.ENUM64, Kind.FLOAT})


def cstr(chunk):
    """C string literal of a char array's bytes, or None when it is empty."""
    nul = chunk.find(b"\0")
    if nul == 0 or not chunk:
        return None
    return c_string(chunk if nul < 0 else chunk[:nul])


def cstr_z(chunk):
    nul = chunk.find(b"\0")
    return c_string(chunk if nul < 0 else chunk[:nul])


# Inline lists: items of an array of scalars.  ``None``: nothing to show.
def join_items(texts, nonzero, zero):
    if zero:
        return ", ".join(texts)
    parts = []
    nx = 0
    for i, nz in enumerate(nonzero):
        if nz:
            parts.append(texts[i] if i == nx else "[%d] = %s" % (i, texts[i]))
            nx = i + 1
    return ", ".join(parts) if parts else None


def items_int(vals, zero):
    if zero:
        return ", ".join(map(str, vals))
    if not any(vals):
        return None
    return join_items([str(v) for v in vals], vals, False)


def items_bool(vals, zero):
    return join_items(["true" if v else "false" for v in vals], vals, zero)


def items_ptr(vals, zero):
    if not zero and not any(vals):
        return None
    return join_items(["0x%016x" % v for v in vals], vals, zero)


def items_float(vals, zero):
    return join_items([repr(v) for v in vals], [v != 0 for v in vals], zero)


def items_enum(vals, names, zero):
    texts = [names.get(v) or str(v) for v in vals]
    return join_items(texts, [v != 0 or v in names for v in vals], zero)


def items_str(chunks, zero):
    texts = [cstr_z(c) for c in chunks]
    return join_items(texts, [t != '""' for t in texts], zero)


class Names:
    """Cast names of types: ``u32``, ``char[16]``, ``struct sk_buff *``, ``struct``."""

    def __init__(self, btf):
        self.btf = btf
        self._cache = {}

    def __call__(self, tid):
        hit = self._cache.get(tid)
        if hit is None:
            try:
                name = cdecl.type_name(self.btf, tid)
            except Exception:  # noqa: BLE001 - a name is only decoration
                name = "?"
            hit = self._cache[tid] = name.replace(" {...}", "").replace(" [", "[")
        return hit


class Style:
    """The flag-dependent pieces shared by both implementations."""

    def __init__(self, btf, flags, indent=""):
        self.btf = btf
        self.flags = flags
        self.compact = bool(flags & COMPACT)
        # put before every line but the first (trace text output nests values this way)
        self.indent = "" if self.compact else indent
        self.noname = bool(flags & NONAME)
        self.zero = bool(flags & ZERO)
        self.nl = "" if self.compact else "\n"
        self.names = Names(btf)
        self.decoder = D.Decoder(btf)

    def ind(self, depth):
        """Indentation of a nested line (depth >= 1); the top level's closing line
        gets ``indent`` alone."""
        return "" if self.compact or not depth else self.indent + " " * depth

    def label(self, name, tid):
        """``.name = (type)`` for a member (anonymous: ``(type)``)."""
        if self.noname:
            return ""
        if name:
            return ".%s = (%s)" % (name, self.names(tid))
        return "(%s)" % self.names(tid)

    def top_label(self, tid):
        return "" if self.noname else "(%s)" % self.names(tid)

    def array_shape(self, tid):
        """('inline', elem type) or ('lines', elem type) for an array type."""
        t = self.decoder.resolve(tid)
        et = self.decoder.resolve(t.elem_type)
        if et.kind in _SCALAR_KINDS or (et.kind == Kind.ARRAY and D.is_char_elem(
                self.decoder.resolve(et.elem_type))):
            return "inline", et
        return "lines", et


class TreeText:
    """Value tree -> ksnoop text."""

    def __init__(self, btf, flags=0, indent=""):
        self.s = Style(btf, flags, indent)

    # ------------------------------------------------------------ scalars
    def scalar(self, node):
        """(text, nonzero) of a scalar node."""
        if isinstance(node, D.Int):
            if node.is_bool:
                return ("true" if node.value else "false"), node.value != 0
            return str(node.value), node.value != 0
        if isinstance(node, D.Enum):
            if node.name is not None:
                return node.name, True
            return str(node.value), node.value != 0
        if isinstance(node, D.Ptr):
            return "0x%016x" % node.value, node.value != 0
        if isinstance(node, D.Float):
            return repr(node.value), node.value != 0
        if isinstance(node, D.String):
            return c_string(node.raw), bool(node.raw)
        if isinstance(node, D.Opaque):
            return "<%s>" % Kind(node.kind).name.lower(), True
        return "<missing>", True

    def inline_items(self, node):
        texts, nzs = [], []
        for e in node.elems:
            if isinstance(e, D.Missing):
                break
            t, nz = self.scalar(e)
            texts.append(t)
            nzs.append(nz)
        return join_items(texts, nzs, self.s.zero)

    # ------------------------------------------------------------ nesting
    def member(self, node, depth, label, out, desig=""):
        """Append the lines of a nested item; ``label`` already formatted."""
        s = self.s
        if isinstance(node, D.Missing):
            return
        ind = s.ind(depth)
        if isinstance(node, D.Record):
            self._block(ind + desig + label, "{", "}", self.fields, node, depth, out)
            return
        if isinstance(node, D.Array):
            shape, _ = s.array_shape(node.tid)
            if shape == "inline":
                items = self.inline_items(node)
                if items is not None:
                    out.append(ind + desig + label + "[" + items + "]," + s.nl)
                return
            self._block(ind + desig + label, "[", "]", self.elements, node, depth, out)
            return
        text, nz = self.scalar(node)
        if nz or s.zero:
            out.append(ind + desig + label + text + "," + s.nl)

    def _block(self, head, opener, closer, body, node, depth, out):
        """``head{`` + the body's lines + ``},``; dropped when the body is empty
        (unless zeros are shown)."""
        s = self.s
        mark = len(out)
        out.append(head + opener + s.nl)
        body(node, depth + 1, out)
        if len(out) == mark + 1 and not s.zero:
            del out[mark:]
        else:
            out.append(s.ind(depth) + closer + "," + s.nl)

    def fields(self, node, depth, out):
        label = self.s.label
        for name, child in node.fields:
            self.member(child, depth, label(name, child.tid), out)

    def elements(self, node, depth, out):
        nx = 0
        for i, e in enumerate(node.elems):
            before = len(out)
            self.member(e, depth, "", out, "" if i == nx else "[%d] = " % i)
            if len(out) != before:
                nx = i + 1

    def top(self, node, out):
        s = self.s
        label = s.top_label(node.tid)
        if isinstance(node, D.Record):
            out.append(label + "{" + s.nl)
            self.fields(node, 1, out)
            out.append(s.indent + "}")
        elif isinstance(node, D.Array):
            shape, _ = s.array_shape(node.tid)
            if shape == "inline":
                out.append(label + "[" + (self.inline_items(node) or "") + "]")
            else:
                out.append(label + "[" + s.nl)
                self.elements(node, 1, out)
                out.append(s.indent + "]")
        else:
            out.append(label + self.scalar(node)[0])

    def render_node(self, node, have=None, size=None):
        out = []
        self.top(node, out)
        if have is not None and size is not None and have < size:
            out.append(" /* %d of %d bytes */" % (max(have, 0), size))
        out.append(self.s.nl)
        return "".join(out)

    def slow_member(self, data, off, tid, depth, label, out):
        """Decode and append one member (the compiled code's fallback)."""
        self.member(self.s.decoder.decode(tid, data, off), depth, label, out)


# ----------------------------------------------------------------- compiler
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


class _Gen:
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

    def fresh(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, value, prefix="K"):
        name = self.fresh(prefix)
        self.ns[name] = value
        return name

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


# One pass, left to right, one style per token: the digits of "(char[8])",
# of a string or of a comment are part of that token, never numbers.
_COLOUR_TOKENS = r"""
    (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<comment>/\*.*?\*/)
  | (?P<cast>\([A-Za-z_][^()=\n]*?\))
  | (?<![\w>.-])(?P<member>\.?[A-Za-z_]\w*(?:(?:->|\.)[A-Za-z_]\w*)*)(?=\ =\ )
  | (?<![\w.])(?P<pointer>0x[0-9a-f]+)(?![\w.])
  | (?<![\w.])(?P<number>-?\d+)(?![\w.])
"""


def colourize(text):
    """A rich ``Text`` of ksnoop-style output with syntax colours (imports rich):
    member and value names, casts, numbers, strings, pointers, comments."""
    import re

    from rich.text import Text

    t = Text(text)
    t.highlight_regex(re.compile(_COLOUR_TOKENS, re.X), style_prefix="ksnoop.")
    return t


THEME = {
    "ksnoop.member": "bold cyan", "ksnoop.cast": "green", "ksnoop.string": "yellow",
    "ksnoop.pointer": "magenta", "ksnoop.number": "bright_blue", "ksnoop.comment": "dim red",
}
