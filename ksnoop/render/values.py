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
"""

import struct

from ..btf import Kind
from ..btf import format as L
from ..btf.bitfield import Bitfield

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


class Decoder:
    """Decodes values of one BTF; caches per-type facts across calls."""

    def __init__(self, btf):
        self.btf = btf
        self._enums = {}

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
        return self._node(tid, data, off, end)

    def _node(self, tid, data, off, end):
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
            if off >= end and t.nelems and stride:
                return Missing(tid, off, stride * t.nelems)
            return Array(tid, [self._node(t.elem_type, data, off + i * stride, end)
                               for i in range(t.nelems)])
        size = 8 if k == Kind.PTR else t.size
        if k not in (Kind.INT, Kind.PTR, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
            return Opaque(tid, k)
        if off + size > end:
            return Missing(tid, off, size)
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
