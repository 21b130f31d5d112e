"""Bitfields: where one lives, how wide, signed or not, and how to read it.

The one definition every part of ksnoop uses for a bitfield's value: the
resolver (range of a predicate literal), codegen (the C that extracts it in
BPF, sign extension included), the decoder and the text renderer.  The
kernel-exact renderer uses only the unsigned ``raw`` bits, as the kernel does.

A field is signed when its declared type (through typedefs and qualifiers) is
a signed INT, or an ENUM/ENUM64 whose kind flag says signed; bool is never
signed.  Bits are numbered little-endian: the field occupies bits
``shift .. shift + width - 1`` of the little-endian integer made of the bytes
starting at ``offset``.
"""

from dataclasses import dataclass

from . import format as L
from .format import Kind

_MODS = frozenset({Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})


def _declared(btf, tid):
    t = btf[tid]
    for _ in range(64):
        if t.kind not in _MODS:
            break
        t = btf[t.type]
    return t


def is_signed(t):
    """Whether a (resolved) bitfield base type sign-extends."""
    if t.kind == Kind.INT:
        return bool(t.encoding & L.INT_SIGNED) and not t.encoding & L.INT_BOOL
    if t.kind in (Kind.ENUM, Kind.ENUM64):
        return bool(t.kflag)
    return False


@dataclass(frozen=True, slots=True)
class Bitfield:
    offset: int  # byte offset of the first byte holding the field
    shift: int  # bit position of the field in that byte (0..7)
    width: int  # number of bits (1..128)
    signed: bool

    # ------------------------------------------------------------ building
    @classmethod
    def at(cls, bit_offset, width, signed):
        """A field at ``bit_offset`` bits from the start of its container."""
        if width < 1:
            raise ValueError(f"bitfield width {width}")
        return cls(bit_offset // 8, bit_offset % 8, width, bool(signed))

    @classmethod
    def of_member(cls, btf, member, base_bits=0):
        """The bitfield ``member`` (with ``bitfield_size``) of a struct or union;
        ``base_bits`` is where that struct starts inside the container counted from."""
        return cls.at(base_bits + member.bit_offset, member.bitfield_size,
                      is_signed(_declared(btf, member.type)))

    @classmethod
    def of_int(cls, t, base_bits=0):
        """An INT type whose encoding has a bit offset or an odd bit count."""
        return cls.at(base_bits + t.bit_offset, t.bits, is_signed(t))

    # ------------------------------------------------------------ facts
    @property
    def nbytes(self):
        """Bytes to read, from ``offset``, to hold the whole field."""
        return (self.shift + self.width + 7) // 8

    @property
    def mask(self):
        return (1 << self.width) - 1

    @property
    def lo(self):
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self):
        return (1 << (self.width - 1)) - 1 if self.signed else self.mask

    def fits(self, value):
        """Whether ``value`` is a value this field can hold (a predicate literal)."""
        return self.lo <= value <= self.hi

    # ------------------------------------------------------------ values
    def raw_of(self, word):
        """The field's bits, zero-extended, from the integer read at ``offset``."""
        return (word >> self.shift) & self.mask

    def value_of(self, word):
        """The field's value (sign-extended if signed) from the integer read at ``offset``."""
        v = (word >> self.shift) & self.mask
        if self.signed and v >> (self.width - 1):
            v -= 1 << self.width
        return v

    def raw(self, data, base=0):
        """Zero-extended bits of the field in ``data`` (the container at ``base``)."""
        start = base + self.offset
        return self.raw_of(int.from_bytes(data[start:start + self.nbytes], "little"))

    def value(self, data, base=0):
        """The field's value in ``data`` (the container at ``base``)."""
        start = base + self.offset
        return self.value_of(int.from_bytes(data[start:start + self.nbytes], "little"))

    # ------------------------------------------------------------ code
    def c_expr(self, word):
        """A C expression of type u64: the field's value from the u64 C expression
        ``word`` (the ``nbytes`` at ``offset``, little-endian, upper bytes zero),
        sign-extended to 64 bits when signed.  Needs ``shift + width <= 64``."""
        if self.shift + self.width > 64:
            raise ValueError(f"a {self.width}-bit field at bit {self.shift} needs more than 64 bits")
        left = 64 - self.shift - self.width
        right = 64 - self.width
        if self.signed:
            return f"(u64)((s64)((u64)({word}) << {left}) >> {right})"
        return f"(((u64)({word}) << {left}) >> {right})"

    def py_expr(self, word):
        """A Python expression: the field's value from the int expression ``word``."""
        expr = f"(({word}) >> {self.shift}) & {self.mask}" if self.shift else f"({word}) & {self.mask}"
        if self.signed:
            half = 1 << (self.width - 1)
            expr = f"((({expr}) ^ {half}) - {half})"
        return expr


__all__ = ["Bitfield", "is_signed"]
