"""Raw bytes + a BTF type id -> a typed value tree.

Every node keeps ``tid``, the type id it was declared with (typedefs and
qualifiers included, so renderers can print ``u32`` rather than ``unsigned
int``).  Bytes the caller did not supply (a truncated capture) become
``Missing`` nodes; nothing here raises on short data.

Nodes:
  Int(value, bits, signed, is_bool, bitfield)   integers, bools and bitfields
  Enum(value, name)                             name is None when no enumerator matches
  Ptr(value)                                    never dereferenced
  Float(value)
  String(raw, size)                             a char array: bytes up to the first NUL
  Array(elems, stride)                          elems is a list of nodes
  Record(fields, is_union)                      fields: list of (member name or "", node)
  Missing(offset, size)                         not in the supplied bytes
  Opaque(kind)                                  a kind with no value (FUNC, FWD, void, ...)

Bounded work on any BTF: a type is checked (``BTF.check``: no type that
contains itself, nesting at most MAX_NESTING deep, sizes that add up) before
its first decode; an array decodes only the elements that start inside the
data, the rest become one ``Missing``; and one decode makes at most
``value_budget(len(data))`` nodes (types whose members overlap, or arrays of
empty structs, can hold far more values than bytes), past which it raises
RenderError.
"""

import struct

from ..btf import Kind
from ..btf import format as L
from ..btf.bitfield import Bitfield
from ..errors import RenderError

_MODS = frozenset({Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})
_FLOATS = {4: struct.Struct("<f"), 8: struct.Struct("<d")}


class Node:
    __slots__ = ("tid",)

    def __init__(self, tid):
        self.tid = tid

    def __repr__(self):
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}(tid={self.tid}, {fields})"

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k in ("tid",) + self.__slots__)

    __hash__ = None


class Int(Node):
    __slots__ = ("value", "bits", "signed", "is_bool", "bitfield")

    def __init__(self, tid, value, bits, signed, is_bool=False, bitfield=False):
        super().__init__(tid)
        self.value, self.bits, self.signed = value, bits, signed
        self.is_bool, self.bitfield = is_bool, bitfield


class Enum(Node):
    __slots__ = ("value", "name")

    def __init__(self, tid, value, name):
        super().__init__(tid)
        self.value, self.name = value, name


class Ptr(Node):
    __slots__ = ("value",)

    def __init__(self, tid, value):
        super().__init__(tid)
        self.value = value


class Float(Node):
    __slots__ = ("value",)

    def __init__(self, tid, value):
        super().__init__(tid)
        self.value = value


class String(Node):
    __slots__ = ("raw", "size")

    def __init__(self, tid, raw, size):
        super().__init__(tid)
        self.raw, self.size = raw, size


class Array(Node):
    __slots__ = ("elems",)

    def __init__(self, tid, elems):
        super().__init__(tid)
        self.elems = elems


class Record(Node):
    __slots__ = ("fields", "is_union")

    def __init__(self, tid, fields, is_union):
        super().__init__(tid)
        self.fields, self.is_union = fields, is_union


class Missing(Node):
    __slots__ = ("offset", "size")

    def __init__(self, tid, offset, size):
        super().__init__(tid)
        self.offset, self.size = offset, size


class Opaque(Node):
    __slots__ = ("kind",)

    def __init__(self, tid, kind):
        super().__init__(tid)
        self.kind = kind


def is_char_elem(t):
    """Arrays of these print as C strings: plain ``char`` (or the CHAR encoding)."""
    return (t.kind == Kind.INT and t.size == 1 and t.bits == 8
            and (t.name == "char" or bool(t.encoding & L.INT_CHAR)))


def enum_names(t):
    """value -> first enumerator name, for ENUM (by the enum's size) and ENUM64."""
    names = {}
    mask = (1 << (8 * t.size)) - 1 if t.size in (1, 2, 4, 8) else (1 << 32) - 1
    for ev in t.values:
        names.setdefault(ev.value & mask if not t.kflag else ev.value, ev.name)
    return names


def _sext(v, bits):
    return v - (1 << bits) if v >> (bits - 1) else v


# Values one decode (or one compiled render) may produce: real kernel types
# have at most ~35 per byte (vmlinux 6.18: 77k values for its biggest, 96 KB;
# 273 for an 8-byte union of 34 function pointers; 47 for an empty struct),
# so this is generous for them and still bounds crafted types whose members
# overlap by the thousand.
BUDGET_BASE = 1 << 14
BUDGET_PER_BYTE = 64


def value_budget(nbytes):
    """How many values a value of ``nbytes`` bytes may decode to."""
    return BUDGET_BASE + BUDGET_PER_BYTE * max(nbytes, 0)


class Decoder:
    """Decodes values of one BTF; caches per-type facts across calls."""

    def __init__(self, btf):
        self.btf = btf
        self._enums = {}
        self._left = 0  # values the current decode may still make
        self._top, self._nbytes = 0, 0  # the current decode's type and data size

    def resolve(self, tid):
        btf = self.btf
        t = btf[tid]
        n = 0
        while t.kind in _MODS and n < 64:
            t = btf[t.type]
            n += 1
        return t

    def size_of(self, tid):
        return self.btf.size_of(tid)

    def decode(self, tid, data, off=0, end=None):
        """The value of type ``tid`` at ``data[off:]``; bytes past ``end`` are missing."""
        if end is None:
            end = len(data)
        self.btf.check(tid)
        self._top, self._nbytes = tid, max(end - off, 0)
        self._left = value_budget(self._nbytes)
        return self._node(tid, data, off, end)

    def _over_budget(self):
        return RenderError(f"{self.btf.describe(self._top)} holds more values than can be rendered "
                           f"from {self._nbytes} bytes (over {value_budget(self._nbytes)})")

    def _node(self, tid, data, off, end):
        self._left -= 1
        if self._left < 0:
            raise self._over_budget()
        t = self.resolve(tid)
        k = t.kind
        if k == Kind.STRUCT or k == Kind.UNION:
            if off >= end and t.size:
                return Missing(tid, off, t.size)
            fields = []
            for m in t.members:
                if m.bitfield_size:
                    fields.append((m.name, self._bitfield(m, data, off, end)))
                else:
                    fields.append((m.name, self._node(m.type, data, off + m.bit_offset // 8, end)))
            return Record(tid, fields, k == Kind.UNION)
        if k == Kind.ARRAY:
            et = self.resolve(t.elem_type)
            if is_char_elem(et):
                if off >= end and t.nelems:
                    return Missing(tid, off, t.nelems)
                raw = data[off:min(off + t.nelems, end)]
                nul = raw.find(b"\0")
                if nul < 0 and off + t.nelems > end:
                    return Missing(tid, off, t.nelems)
                return String(tid, bytes(raw if nul < 0 else raw[:nul]), t.nelems)
            stride = self.size_of(t.elem_type)
            n = t.nelems
            if off >= end and n and stride:
                return Missing(tid, off, stride * n)
            # Only the elements that start inside the data; the rest is one Missing.
            present = min(n, -(-(end - off) // stride)) if stride else n
            elems = [self._node(t.elem_type, data, off + i * stride, end) for i in range(present)]
            if present < n:
                elems.append(Missing(t.elem_type, off + present * stride, (n - present) * stride))
            return Array(tid, elems)
        size = 8 if k == Kind.PTR else t.size
        if k not in (Kind.INT, Kind.PTR, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
            return Opaque(tid, k)
        if off + size > end:
            return Missing(tid, off, size)
        if k == Kind.INT and not t.bits:
            return Int(tid, 0, 0, t.signed, bool(t.encoding & L.INT_BOOL))  # a 0-bit integer
        raw = int.from_bytes(data[off:off + size], "little")
        if k == Kind.INT:
            bits = t.bits
            if t.bit_offset or bits != 8 * size:
                raw = Bitfield.of_int(t).value(data, off)
            elif t.signed:
                raw = _sext(raw, bits)
            return Int(tid, raw, bits, t.signed, bool(t.encoding & L.INT_BOOL))
        if k == Kind.PTR:
            return Ptr(tid, raw)
        if k == Kind.FLOAT:
            fs = _FLOATS.get(size)
            return Float(tid, fs.unpack(data[off:off + size])[0] if fs else float("nan"))
        if t.kflag:
            raw = _sext(raw, 8 * size)
        return Enum(tid, raw, self._enum_names(t).get(raw))

    def _enum_names(self, t):
        names = self._enums.get(t.id)
        if names is None:
            names = self._enums[t.id] = enum_names(t)
        return names

    def _bitfield(self, m, data, base, end):
        self._left -= 1
        if self._left < 0:
            raise self._over_budget()
        bf = Bitfield.of_member(self.btf, m)
        start = base + bf.offset
        if start + bf.nbytes > end:
            return Missing(m.type, start, bf.nbytes)
        v = bf.value(data, base)
        t = self.resolve(m.type)
        if t.kind in (Kind.ENUM, Kind.ENUM64):
            return Enum(m.type, v, self._enum_names(t).get(v))
        is_bool = t.kind == Kind.INT and bool(t.encoding & L.INT_BOOL)
        return Int(m.type, v, m.bitfield_size, bf.signed, is_bool, bitfield=True)


def decode(btf, tid, data, off=0, end=None):
    """One-shot: the value tree of ``data`` as type ``tid``."""
    return Decoder(btf).decode(tid, data, off, end)
