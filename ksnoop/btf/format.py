"""BTF on-disk layout: constants, kinds and struct layouts.  No I/O here."""

import enum
import struct

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")  # magic version flags hdr_len type_off type_len str_off str_len
TYPE = struct.Struct("<III")  # name_off info size_or_type
U32 = struct.Struct("<I")
S32 = struct.Struct("<i")
ARRAY = struct.Struct("<III")  # type index_type nelems
MEMBER = struct.Struct("<III")  # name_off type offset
ENUM = struct.Struct("<Ii")  # name_off val
ENUM64 = struct.Struct("<III")  # name_off val_lo32 val_hi32
PARAM = struct.Struct("<II")  # name_off type
VARSECINFO = struct.Struct("<III")  # type offset size


class Kind(enum.IntEnum):
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# INT encoding bits
INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

# Kinds whose third header word is a size (the others reference a type id).
SIZED_KINDS = frozenset(
    {Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT, Kind.DATASEC}
)
# Kinds that are transparent wrappers around another type.
QUALIFIERS = frozenset({Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})


def extra_size(kind, vlen):
    """Bytes that follow the 12-byte common header for a type of this kind."""
    if kind == Kind.INT:
        return 4
    if kind == Kind.ARRAY:
        return 12
    if kind in (Kind.STRUCT, Kind.UNION, Kind.ENUM64, Kind.DATASEC):
        return 12 * vlen
    if kind in (Kind.ENUM, Kind.FUNC_PROTO):
        return 8 * vlen
    if kind in (Kind.VAR, Kind.DECL_TAG):
        return 4
    if kind in (
        Kind.PTR, Kind.FWD, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST,
        Kind.RESTRICT, Kind.FUNC, Kind.FLOAT, Kind.TYPE_TAG,
    ):
        return 0
    return None  # unknown kind
