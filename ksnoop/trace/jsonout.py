"""JSON text of one BTF type, compiled: bytes -> the text ``render/json.py`` gives.

``render/json.py`` decodes the bytes into a value tree (``render/values.py``),
turns it into Python values and serialises them (``escape.json_dumps``).  For
trace output that costs a tree per event.  ``compile_json(btf, tid, have)``
instead generates one Python function per (type, captured length): it reads
every scalar with one ``struct`` call per run of bytes and fills one format
string, so the JSON text comes straight from the bytes.  The result is
byte-identical to ``escape.json_dumps(render.json.to_python(tree))`` with the
``__truncated__`` marker ``render_json`` adds when ``have < size``:

- what is Missing in the tree (past the captured ``have`` bytes) is known
  before any event arrives, since every event of a layout captures the same
  number of bytes, so the key order of every object, merged anonymous members
  and duplicate names included, is worked out once, by the rules of
  ``to_python`` applied to the type;
- strings (char arrays) go through ``escape.json_string`` (the one printer of
  kernel bytes) and are quoted by ``_quote``, the string encoder that
  ``json.dumps(ensure_ascii=True)`` itself uses;
- anything unusual (odd-sized integers and enums, a char array cut by the end
  of the capture, members past the end of their struct in crafted BTF, types
  too big to unroll) either goes through the tree for that one value or makes
  ``compile_json`` return None, and the caller uses the tree.
"""

import json.encoder
import math
import struct

from ..btf import Kind
from ..btf import format as L
from ..btf.bitfield import Bitfield
from ..render import values as D
from ..render.escape import json_dumps, json_string
from ..render.json import to_python
from ..render.pynames import PyNames
from ..render.values import value_budget

__all__ = ["compile_json"]

# The string encoder of json.dumps(..., ensure_ascii=True), i.e. of escape.json_dumps:
# json_dumps(s) == _quote(s) for every str s (checked by the tests).
_quote = json.encoder.encode_basestring_ascii

_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
          (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}
_SCALARS = (Kind.INT, Kind.PTR, Kind.ENUM, Kind.ENUM64, Kind.FLOAT)
_MISSING = object()
MAX_ITEMS = 40000  # leaves and nodes per compiled type; bigger types use the tree


class _Unsupported(Exception):
    pass


# --------------------------------------------------------------- helpers
def jstr(b, start, n):
    """A char array's JSON string: its bytes up to the first NUL."""
    raw = b[start:start + n]
    nul = raw.find(b"\0")
    return _quote(json_string(raw if nul < 0 else raw[:nul]))


def jfloat(v):
    return repr(v) if math.isfinite(v) else _quote(str(v))


def lst_int(vals):
    return ",".join(map(str, vals))


def lst_bool(vals):
    return ",".join(["true" if v else "false" for v in vals])


def lst_ptr(vals):
    return ",".join(['"0x%x"' % v for v in vals])


def lst_float(vals):
    return ",".join(map(jfloat, vals))


def lst_enum(vals, names):
    return ",".join([names.get(v) or str(v) for v in vals])


# --------------------------------------------------------------- analysis
class _Frame:
    """Scalar reads of one generated function, grouped into struct unpacks."""

    def __init__(self, gen, base):
        self.gen, self.base, self.leaves = gen, base, {}

    def var(self, off, code):
        v = self.leaves.get((off, code))
        if v is None:
            v = self.leaves[(off, code)] = self.gen.fresh("v")
        return v

    def header(self):
        runs = []  # [end, [(off, code, var)...]]: leaves that do not overlap, in order
        for (off, code), var in sorted(self.leaves.items()):
            for run in runs:
                if run[0] <= off:
                    run[1].append((off, code, var))
                    run[0] = off + struct.calcsize("<" + code)
                    break
            else:
                runs.append([off + struct.calcsize("<" + code), [(off, code, var)]])
        lines = []
        for _, items in runs:
            fmt, pos = "<", items[0][0]
            for off, code, _ in items:
                fmt += "x" * (off - pos) + code
                pos = off + struct.calcsize("<" + code)
            st = self.gen.const(struct.Struct(fmt), "S")
            names = ", ".join(v for _, _, v in items)
            lines.append(f"{names}, = {st}.unpack_from(b, {self.base} + {items[0][0]})")
        return lines


class _Gen(PyNames):
    def __init__(self, btf):
        self.btf = btf
        self.dec = D.Decoder(btf)
        self.ns = {"jstr": jstr, "jfloat": jfloat, "lst_int": lst_int, "lst_bool": lst_bool,
                   "lst_ptr": lst_ptr, "lst_float": lst_float, "lst_enum": lst_enum,
                   "slow": self.slow}
        self.n = 0
        self.items = 0
        self.values = 0  # the values values.Decoder would make for the same bytes
        self.missing = 0  # Missing values met so far
        self.elem_fns = {}  # type id -> name of its compiled full-size function, or None

    def slow(self, b, off, tid, size):
        """One odd scalar through the tree (the very value render/json.py gives)."""
        return json_dumps(to_python(self.dec.decode(tid, b, off, off + size)))

    def tick(self, n=1):
        self.items += n
        if self.items > MAX_ITEMS:
            raise _Unsupported("too big")

    # Items mirror values.Decoder._node + json.to_python, with ``end`` known statically:
    #   ("lit", text)  ("read", off, code, kind, names)  ("bits", start, bitfield, kind, names)
    #   ("str", off, n)  ("slow", off, tid, size)  ("obj", {key: item})
    #   ("list", [parts]) with parts ("scalars", off, n, code, kind, names),
    #   ("loop", off, n, stride, elem tid) or an item
    def node(self, tid, off, end):
        item = self._node(tid, off, end)
        if item is _MISSING:
            self.missing += 1
        return item

    def _node(self, tid, off, end):
        self.tick()
        self.values += 1  # as values.Decoder counts against its budget
        dec = self.dec
        t = dec.resolve(tid)
        k = t.kind
        if k == Kind.STRUCT or k == Kind.UNION:
            if off >= end and t.size:
                return _MISSING
            out = {}
            for i, m in enumerate(t.members):
                if m.bitfield_size:
                    child = self.bitfield(m, off, end)
                else:
                    child = self.node(m.type, off + m.bit_offset // 8, end)
                if child is _MISSING:
                    continue
                if m.name:
                    out[m.name] = child
                elif child[0] == "obj":
                    for key, item in child[1].items():
                        out.setdefault(key, item)
                else:
                    out[f"<anon {i}>"] = child
            return ("obj", out)
        if k == Kind.ARRAY:
            et = dec.resolve(t.elem_type)
            n = t.nelems
            if D.is_char_elem(et):
                if off >= end and n:
                    return _MISSING
                if off + n > end:
                    raise _Unsupported("char array cut by the end of the capture")
                return ("str", off, n)
            stride = dec.size_of(t.elem_type)
            if off >= end and n and stride:
                return _MISSING
            return ("list", self.elements(t.elem_type, et, off, n, stride, end))
        if k not in _SCALARS:
            return ("lit", "null")
        size = 8 if k == Kind.PTR else t.size
        if off + size > end:
            return _MISSING
        if k == Kind.PTR:
            return ("read", off, "Q", "ptr", None)
        if k == Kind.INT:
            if t.bit_offset or t.bits != 8 * size or size not in (1, 2, 4, 8):
                return ("slow", off, tid, size)
            return ("read", off, _CODES[(size, t.signed)], "bool" if t.encoding & L.INT_BOOL else "int", None)
        if k == Kind.FLOAT:
            if size not in (4, 8):
                return ("slow", off, tid, size)
            return ("read", off, "f" if size == 4 else "d", "float", None)
        if size not in (1, 2, 4, 8):
            return ("slow", off, tid, size)
        return ("read", off, _CODES[(size, bool(t.kflag))], "enum", self.names(t))

    def names(self, t):
        return self.const({v: _quote(name) for v, name in self.dec._enum_names(t).items()}, "E")

    def bitfield(self, m, base, end):
        self.values += 1
        bf = Bitfield.of_member(self.btf, m)
        start = base + bf.offset
        if start + bf.nbytes > end:
            self.missing += 1
            return _MISSING
        t = self.dec.resolve(m.type)
        if t.kind in (Kind.ENUM, Kind.ENUM64):
            return ("bits", start, bf, "enum", self.names(t))
        kind = "bool" if t.kind == Kind.INT and t.encoding & L.INT_BOOL else "int"
        return ("bits", start, bf, kind, None)

    def elements(self, elem_tid, et, off, n, stride, end):
        """Parts of a list: the elements inside the capture in one go, the rest one by one."""
        whole = n if stride == 0 else max(0, min(n, (end - off) // stride))
        # values.Decoder: only the elements that start inside the data
        present = n if stride == 0 else min(n, -(-(end - off) // stride))
        parts = []
        if whole:
            values = self.values
            if et.kind in _SCALARS:
                item = self.node(elem_tid, off, off + stride)
                if item[0] != "read" or struct.calcsize("<" + item[2]) != stride:
                    raise _Unsupported("odd array element")
                parts.append(("scalars", off, whole, item[2], item[3], item[4]))
                each = self.values - values
            else:
                fn, each = self.element_fn(elem_tid, stride)
                parts.append(("loop", off, whole, stride, fn))
            self.values = values + each * whole  # one function, ``whole`` times
        for i in range(whole, present):
            item = self.node(elem_tid, off + i * stride, end)
            if item is not _MISSING:
                parts.append(item)
        return parts

    def element_fn(self, tid, stride):
        """(name of a compiled function for one whole element of type tid, the
        values one element decodes to)."""
        if tid in self.elem_fns:
            if self.elem_fns[tid] is None:
                raise _Unsupported("type contains itself")
            return self.elem_fns[tid]
        self.elem_fns[tid] = None
        missing, values = self.missing, self.values
        item = self.node(tid, 0, stride)
        if self.missing != missing:  # crafted BTF: something lies past the element's size
            raise _Unsupported("element does not fit its own size")
        name = self.function(item, self.fresh("F"), limit=stride)
        self.elem_fns[tid] = (name, self.values - values)
        return self.elem_fns[tid]

    # ----------------------------------------------------------- emission
    def emit(self, fr, item, parts, args):
        """Append the format-string pieces and arguments of one item."""
        kind = item[0]
        if kind == "lit":
            parts.append(item[1].replace("%", "%%"))
        elif kind == "read":
            _, off, code, what, names = item
            self.value(fr.var(off, code), what, names, parts, args)
        elif kind == "bits":
            _, start, bf, what, names = item
            unit = next((u for u in (1, 2, 4, 8) if u >= bf.nbytes), 0)
            if unit and start + unit <= fr.limit:
                word = fr.var(start, _CODES[(unit, False)])
            else:
                word = f"int.from_bytes(b[{fr.base} + {start}:{fr.base} + {start + bf.nbytes}], 'little')"
            self.value(Bitfield(0, bf.shift, bf.width, bf.signed).py_expr(word), what, names,
                       parts, args)
        elif kind == "str":
            parts.append("%s")
            args.append(f"jstr(b, {fr.base} + {item[1]}, {item[2]})")
        elif kind == "slow":
            _, off, tid, size = item
            parts.append("%s")
            args.append(f"slow(b, {fr.base} + {off}, {tid}, {size})")
        elif kind == "obj":
            parts.append("{")
            for i, (key, child) in enumerate(item[1].items()):
                parts.append(("," if i else "") + _quote(key).replace("%", "%%") + ":")
                self.emit(fr, child, parts, args)
            parts.append("}")
        elif kind == "list":
            parts.append("[")
            for i, part in enumerate(item[1]):
                if i:
                    parts.append(",")
                if part[0] == "scalars":
                    _, off, n, code, what, names = part
                    st = self.const(struct.Struct("<%d%s" % (n, code)), "S")
                    vals = f"{st}.unpack_from(b, {fr.base} + {off})"
                    parts.append("%s")
                    args.append(f"lst_enum({vals}, {names})" if what == "enum"
                                else f"lst_{what}({vals})")
                elif part[0] == "loop":
                    _, off, n, stride, fn = part
                    parts.append("%s")
                    args.append(f"','.join([{fn}(b, {fr.base} + {off} + i * {stride}) "
                                f"for i in range({n})])")
                else:
                    self.emit(fr, part, parts, args)
            parts.append("]")
        else:  # pragma: no cover - every item kind is handled above
            raise AssertionError(kind)

    @staticmethod
    def value(expr, what, names, parts, args):
        if what == "int":
            parts.append("%d")
            args.append(expr)
        elif what == "ptr":
            parts.append('"0x%x"')
            args.append(expr)
        elif what == "bool":
            parts.append("%s")
            args.append(f"('true' if {expr} else 'false')")
        elif what == "enum":
            parts.append("%s")
            args.append(f"({names}.get({expr}) or str({expr}))")
        else:
            parts.append("%s")
            args.append(f"jfloat({expr})")

    def function(self, item, name, limit):
        """Generate ``def name(b, p=0)`` returning the JSON text of ``item``; the
        function may read ``limit`` bytes from ``p``."""
        fr = _Frame(self, "p")
        fr.limit = limit
        parts, args = [], []
        self.emit(fr, item, parts, args)
        fmt = "".join(parts)
        src = [f"def {name}(b, p=0):"]
        src += ["    " + line for line in fr.header()]
        if args:
            src.append(f"    return {fmt!r} % ({', '.join(args)},)")
        else:
            src.append(f"    return {fmt.replace('%%', '%')!r}")
        text = "\n".join(src) + "\n"
        exec(compile(text, f"<ksnoop json {name}>", "exec"), self.ns)  # noqa: S102
        self.ns[name].source = text
        return name


def compile_json(btf, tid, have=None):
    """``fn(buf, offset=0) -> str``: the JSON text of type ``tid`` at ``buf[offset:]``,
    of which ``have`` bytes were captured (None: the whole type), as
    ``render.Renderer(btf, tid, "json").render(buf[offset:offset + have])`` gives.
    None when the type is better served by the tree (see the module docstring)."""
    try:
        btf.check(tid)  # a type the renderers refuse is left to them (the same error)
        size = btf.size_of(tid)
        end = size if have is None else min(max(have, 0), size)
        gen = _Gen(btf)
        item = gen.node(tid, 0, end)
        if gen.values > value_budget(end):  # the tree would refuse it: let it say so
            return None
        if item is _MISSING:
            item = ("lit", "null")
        if have is not None and have < size and item[0] == "obj":
            fields = dict(item[1])
            fields["__truncated__"] = ("lit", json_dumps({"have": max(have, 0), "size": size}))
            item = ("obj", fields)
        name = gen.function(item, "render_json", limit=end)
        return gen.ns[name]
    except (_Unsupported, RecursionError):
        return None
    except Exception:  # noqa: BLE001 - odd BTF: the tree renderer says what it can
        return None
