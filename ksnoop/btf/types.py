"""Typed, lazily parsed BTF.

``BTF(data, base=None, name="")`` checks the header and builds (or loads
from cache) an index of where each type record starts; records are parsed
into immutable ``Type`` objects only when asked for.  ``base`` is the BTF a
split BTF (a module's) builds on.
"""

from array import array
from dataclasses import dataclass

from ..errors import BTFError
from . import format as L
from . import index_cache
from .format import Kind


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: int


@dataclass(frozen=True, slots=True)
class EnumValue:
    name: str
    value: int


@dataclass(frozen=True, slots=True)
class VarSecInfo:
    type: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Type:
    """One BTF type record.  Fields not used by a kind keep their default."""

    id: int
    kind: Kind
    name: str = ""
    size: int = 0  # byte size for sized kinds
    type: int = 0  # referenced type id (PTR, TYPEDEF, qualifiers, FUNC, VAR, ...)
    kflag: bool = False
    vlen: int = 0
    encoding: int = 0  # INT
    bits: int = 0  # INT
    bit_offset: int = 0  # INT
    elem_type: int = 0  # ARRAY
    index_type: int = 0  # ARRAY
    nelems: int = 0  # ARRAY
    members: tuple = ()  # STRUCT/UNION: Member; DATASEC: VarSecInfo
    values: tuple = ()  # ENUM/ENUM64: EnumValue
    params: tuple = ()  # FUNC_PROTO: Param
    linkage: int = 0  # FUNC (vlen), VAR
    component_idx: int = -1  # DECL_TAG

    @property
    def signed(self):
        if self.kind == Kind.INT:
            return bool(self.encoding & L.INT_SIGNED)
        if self.kind in (Kind.ENUM, Kind.ENUM64):
            return self.kflag
        return False

    @property
    def is_variadic(self):
        return bool(self.params) and self.params[-1].type == 0 and not self.params[-1].name


VOID = Type(id=0, kind=Kind.UNKN, name="void")


class BTF:
    """A BTF blob, optionally split on top of a base blob (module BTF)."""

    def __init__(self, data, base=None, name="", use_cache=True):
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.base = base
        self.name = name
        self._parse_header()
        self.start_id = len(base) if base is not None else 1
        self.str_base = base._total_str_len if base is not None else 0
        self._total_str_len = self.str_base + self.str_len
        key = None
        if use_cache:
            key = index_cache.key_for(self.data, base._cache_key if base is not None else None)
        self._cache_key = key
        cached = index_cache.load(key, self) if key else None
        if cached is not None:
            self._offsets, self._name_offs = cached
        else:
            self._offsets, self._name_offs = self._build_index()
            if key:
                index_cache.store(key, self._offsets, self._name_offs)
        self._types = {}
        self._by_name = None
        self._lookups = 0

    # ----------------------------------------------------------------- header
    def _parse_header(self):
        data = self.data
        if len(data) < L.HEADER.size:
            raise BTFError(f"{self._what()}: truncated header ({len(data)} bytes)")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            L.HEADER.unpack_from(data, 0)
        )
        if magic != L.MAGIC:
            if magic == 0x9FEB:
                raise BTFError(f"{self._what()}: big-endian BTF is not supported")
            raise BTFError(f"{self._what()}: bad magic 0x{magic:04x} (not BTF)")
        if version != 1:
            raise BTFError(f"{self._what()}: unsupported BTF version {version}")
        if hdr_len < L.HEADER.size or hdr_len > len(data):
            raise BTFError(f"{self._what()}: bad header length {hdr_len}")
        end = len(data) - hdr_len
        if type_off + type_len > end or str_off + str_len > end:
            raise BTFError(f"{self._what()}: section extends past end of data (truncated?)")
        if type_off % 4:
            raise BTFError(f"{self._what()}: misaligned type section")
        self.type_start = hdr_len + type_off
        self.type_end = self.type_start + type_len
        self.str_start = hdr_len + str_off
        self.str_len = str_len
        if str_len and data[self.str_start + str_len - 1] != 0:
            raise BTFError(f"{self._what()}: string section is not NUL-terminated")
        if self.base is None and str_len and data[self.str_start] != 0:
            raise BTFError(f"{self._what()}: string section does not start with an empty string")

    def _what(self):
        return self.name or "BTF"

    def _build_index(self):
        data, pos, end = self.data, self.type_start, self.type_end
        offsets, name_offs = array("I"), array("I")
        unpack = L.TYPE.unpack_from
        extra = {}
        while pos < end:
            if pos + 12 > end:
                raise BTFError(f"{self._what()}: truncated type record at byte {pos}")
            name_off, info, _ = unpack(data, pos)
            kind_vlen = info & 0x1F00FFFF
            size = extra.get(kind_vlen)
            if size is None:
                kind = (info >> 24) & 0x1F
                size = L.extra_size(kind, info & 0xFFFF)
                if size is None:
                    tid = self.start_id + len(offsets)
                    raise BTFError(f"{self._what()}: unknown BTF kind {kind} at type id {tid}")
                extra[kind_vlen] = size
            offsets.append(pos)
            name_offs.append(name_off)
            pos += 12 + size
        if pos != end:
            raise BTFError(f"{self._what()}: truncated type record at byte {end}")
        return offsets, name_offs

    # ---------------------------------------------------------------- strings
    def string(self, off):
        if off < self.str_base:
            return self.base.string(off)
        local = off - self.str_base
        if local >= self.str_len:
            raise BTFError(f"{self._what()}: string offset {off} out of range")
        start = self.str_start + local
        endp = self.data.index(b"\0", start)
        return self.data[start:endp].decode("utf-8", "replace")

    # ------------------------------------------------------------------ types
    def __len__(self):
        """One more than the highest type id (id 0 is void)."""
        return self.start_id + len(self._offsets)

    @property
    def own_ids(self):
        return range(self.start_id, len(self))

    def __contains__(self, tid):
        return 0 <= tid < len(self)

    def __getitem__(self, tid):
        if tid < self.start_id:
            if tid == 0:
                return VOID
            if self.base is None or tid < 0:
                raise BTFError(f"{self._what()}: no type with id {tid}")
            return self.base[tid]
        t = self._types.get(tid)
        if t is None:
            idx = tid - self.start_id
            if idx >= len(self._offsets):
                raise BTFError(f"{self._what()}: no type with id {tid}")
            t = self._types[tid] = self._parse(tid, self._offsets[idx])
        return t

    def _parse(self, tid, pos):
        data = self.data
        name_off, info, st = L.TYPE.unpack_from(data, pos)
        kind = Kind((info >> 24) & 0x1F)
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        name = self.string(name_off)
        p = pos + 12
        common = dict(id=tid, kind=kind, name=name, kflag=kflag, vlen=vlen)
        if kind in L.SIZED_KINDS:
            common["size"] = st
        else:
            common["type"] = st
        if kind == Kind.INT:
            (enc,) = L.U32.unpack_from(data, p)
            return Type(**common, encoding=(enc >> 24) & 0x0F, bit_offset=(enc >> 16) & 0xFF,
                        bits=enc & 0xFF)
        if kind == Kind.ARRAY:
            elem, index, nelems = L.ARRAY.unpack_from(data, p)
            return Type(**common, elem_type=elem, index_type=index, nelems=nelems)
        if kind in (Kind.STRUCT, Kind.UNION):
            members = []
            for i in range(vlen):
                moff, mtype, offset = L.MEMBER.unpack_from(data, p + 12 * i)
                if kflag:
                    members.append(Member(self.string(moff), mtype, offset & 0xFFFFFF, offset >> 24))
                else:
                    members.append(Member(self.string(moff), mtype, offset, 0))
            return Type(**common, members=tuple(members))
        if kind == Kind.ENUM:
            vals = []
            for i in range(vlen):
                voff, val = L.ENUM.unpack_from(data, p + 8 * i)
                if not kflag:
                    val &= 0xFFFFFFFF
                vals.append(EnumValue(self.string(voff), val))
            return Type(**common, values=tuple(vals))
        if kind == Kind.ENUM64:
            vals = []
            for i in range(vlen):
                voff, lo, hi = L.ENUM64.unpack_from(data, p + 12 * i)
                val = (hi << 32) | lo
                if kflag and val >= 1 << 63:
                    val -= 1 << 64
                vals.append(EnumValue(self.string(voff), val))
            return Type(**common, values=tuple(vals))
        if kind == Kind.FUNC_PROTO:
            params = tuple(
                Param(self.string(n), t)
                for n, t in (L.PARAM.unpack_from(data, p + 8 * i) for i in range(vlen))
            )
            return Type(**common, params=params)
        if kind == Kind.FUNC:
            return Type(**common, linkage=vlen)
        if kind == Kind.VAR:
            (linkage,) = L.U32.unpack_from(data, p)
            return Type(**common, linkage=linkage)
        if kind == Kind.DATASEC:
            secs = tuple(VarSecInfo(*L.VARSECINFO.unpack_from(data, p + 12 * i)) for i in range(vlen))
            return Type(**common, members=secs)
        if kind == Kind.DECL_TAG:
            (idx,) = L.S32.unpack_from(data, p)
            return Type(**common, component_idx=idx)
        return Type(**common)

    def kind_of(self, tid):
        """The kind of a type without building its record (fast path)."""
        if tid < self.start_id:
            if tid == 0:
                return Kind.UNKN
            if self.base is None or tid < 0:
                raise BTFError(f"{self._what()}: no type with id {tid}")
            return self.base.kind_of(tid)
        if tid >= len(self):
            raise BTFError(f"{self._what()}: no type with id {tid}")
        (info,) = L.U32.unpack_from(self.data, self._offsets[tid - self.start_id] + 4)
        return Kind((info >> 24) & 0x1F)

    def ids(self, kind=None):
        """Ids of this blob's own types (not the base's), optionally of one kind."""
        if kind is None:
            return list(self.own_ids)
        data, unpack, k = self.data, L.U32.unpack_from, int(kind)
        return [self.start_id + i for i, off in enumerate(self._offsets)
                if (unpack(data, off + 4)[0] >> 24) & 0x1F == k]

    # ------------------------------------------------------------ name lookup
    def find(self, name, kind=None):
        """Ids of every type called ``name`` (base first), optionally of one kind."""
        found = self.base.find(name, kind) if self.base is not None else []
        if not name:
            return found
        self._lookups += 1
        if self._by_name is None and self._lookups > 64:
            self._by_name = self._build_name_map()
        if self._by_name is not None:
            own = self._by_name.get(name, ())
        else:
            own = self._scan_name(name)
        if kind is not None:
            own = [t for t in own if self.kind_of(t) == kind]
        return found + list(own)

    def _string_offsets(self, name):
        """Every offset (in the combined base + own string space) holding ``name``."""
        found = self.base._string_offsets(name) if self.base is not None else []
        # surrogateescape: a name from a non-UTF-8 command line is looked up as the
        # bytes it was (and is simply not found), instead of failing to encode.
        needle = b"\0" + name.encode("utf-8", "surrogateescape") + b"\0"
        strings = self.data[self.str_start:self.str_start + self.str_len]
        at = strings.find(needle)
        while at >= 0:
            found.append(self.str_base + at + 1)
            at = strings.find(needle, at + 1)
        return found

    def _scan_name(self, name):
        # A split blob's names may live in the base's string section (dedup
        # reuses the base's strings), so the base's offsets are searched too.
        ids = []
        for off in self._string_offsets(name):
            i = -1
            while True:
                try:
                    i = self._name_offs.index(off, i + 1)
                except ValueError:
                    break
                ids.append(self.start_id + i)
        return sorted(ids)

    def _build_name_map(self):
        by_off = {}
        for i, off in enumerate(self._name_offs):
            if off:
                by_off.setdefault(off, []).append(self.start_id + i)
        return {self.string(off): ids for off, ids in by_off.items()}

    def names(self, kind=None):
        """(name, id) for this blob's own named types, optionally of one kind."""
        wanted = set(self.ids(kind)) if kind is not None else None
        out = []
        for i, off in enumerate(self._name_offs):
            tid = self.start_id + i
            if off and (wanted is None or tid in wanted):
                out.append((self.string(off), tid))
        return out

    # ------------------------------------------------------------ type chains
    def skip_qualifiers(self, tid):
        """Follow CONST/VOLATILE/RESTRICT/TYPE_TAG."""
        for _ in range(64):
            t = self[tid]
            if t.kind not in L.QUALIFIERS:
                return tid
            tid = t.type
        raise BTFError(f"{self._what()}: type chain loops at id {tid}")

    def resolve(self, tid):
        """Follow typedefs and qualifiers to the underlying type id."""
        for _ in range(64):
            t = self[tid]
            if t.kind not in L.QUALIFIERS and t.kind != Kind.TYPEDEF:
                return tid
            tid = t.type
        raise BTFError(f"{self._what()}: type chain loops at id {tid}")

    def size_of(self, tid):
        """Byte size of a type (arrays multiplied out, pointers 8).  A size past
        4 GiB (array lengths that overflow, which the kernel refuses) is a BTFError."""
        mult, top = 1, tid
        for _ in range(64):
            t = self[self.resolve(tid)]
            if t.kind == Kind.ARRAY:
                mult *= t.nelems
                tid = t.elem_type
                continue
            if t.kind == Kind.PTR:
                size = 8 * mult
            elif t.kind in L.SIZED_KINDS:
                size = t.size * mult
            else:
                return 0
            if size > MAX_SIZE:
                raise BTFError(f"{self._what()}: {self.describe(top)} is larger than 4 GiB "
                               f"({size} bytes: array lengths overflow)")
            return size
        raise BTFError(f"{self._what()}: type chain loops at id {tid}")

    def describe(self, tid):
        """A type for messages: ``struct sk_buff (id 4242)``, ``array (id 7)``."""
        t = self[tid]
        kind = "enum" if t.kind == Kind.ENUM64 else t.kind.name.lower()
        name = t.name if len(t.name) <= 64 else t.name[:61] + "..."
        if name and t.kind in (Kind.INT, Kind.FLOAT):
            return f"{name} (id {tid})"  # int, long unsigned int, double
        return f"{kind} {name} (id {tid})" if name else f"{kind} (id {tid})"

    # ------------------------------------------------------------- validation
    # What the kernel's BTF verifier refuses and the walkers of types
    # (renderers, declarations, member search) must never meet: a type that
    # contains itself by value, arrays past 4 GiB, members past the end of
    # their struct, integers wider than their size.  Checked lazily, once
    # per type, on the types reachable by value from the one asked about
    # (pointers end the walk, so checking a type costs its own layout).
    _checked = None  # type id -> nesting height, for types check() accepted

    def check(self, tid):
        """Raise BTFError unless ``tid`` and every type it contains by value (through
        typedefs, qualifiers, array elements, members, variables) is well formed:
        no loop, nesting at most MAX_NESTING deep, sizes that add up."""
        done = self._checked
        if done is None:
            done = self._checked = {}
        if tid in done:
            return
        stack = [[tid, self._contents(tid), 0]]  # [id, children left, height so far]
        path = {tid}
        while stack:
            top = stack[-1]
            if top[1]:
                child = top[1].pop()
                height = done.get(child)
                if height is not None:
                    top[2] = max(top[2], height + 1)
                    continue
                if child in path:
                    loop = [f[0] for f in stack[[f[0] for f in stack].index(child):]] + [child]
                    shown = " -> ".join(map(str, loop[:8])) + (" ..." if len(loop) > 8 else "")
                    raise BTFError(f"{self._what()}: {self.describe(child)} contains itself "
                                   f"(ids {shown})")
                if len(stack) > MAX_NESTING:
                    raise BTFError(f"{self._what()}: {self.describe(tid)} nests types more than "
                                   f"{MAX_NESTING} levels deep")
                path.add(child)
                stack.append([child, self._contents(child), 0])
                continue
            stack.pop()
            cur, height = top[0], top[2]
            path.discard(cur)
            if height > MAX_NESTING:
                raise BTFError(f"{self._what()}: {self.describe(cur)} nests types more than "
                               f"{MAX_NESTING} levels deep")
            self._check_layout(cur)
            done[cur] = height
            if stack:
                stack[-1][2] = max(stack[-1][2], height + 1)

    def _contents(self, tid):
        """Ids of the types a value of type ``tid`` is made of (not pointed to)."""
        t = self[tid]
        k = t.kind
        if k in L.QUALIFIERS or k in (Kind.TYPEDEF, Kind.VAR):
            return [t.type]
        if k == Kind.ARRAY:
            return [t.elem_type]
        if k in (Kind.STRUCT, Kind.UNION, Kind.DATASEC):
            return list(dict.fromkeys(m.type for m in t.members))
        return []

    def _check_layout(self, tid):
        """The kernel verifier's size rules for one type whose contents are checked."""
        t = self[tid]
        k = t.kind
        if k == Kind.ARRAY:
            esize = self.size_of(t.elem_type)
            if t.nelems * esize > MAX_SIZE:
                raise BTFError(f"{self._what()}: {self.describe(tid)} of {t.nelems} elements of "
                               f"{esize} bytes is larger than 4 GiB")
        elif k in (Kind.STRUCT, Kind.UNION):
            for m in t.members:
                r = self[self.resolve(m.type)]
                if m.bitfield_size:
                    start, end = m.bit_offset, m.bit_offset + m.bitfield_size
                    if r.kind not in (Kind.INT, Kind.ENUM, Kind.ENUM64) or m.bitfield_size > (
                            r.bits if r.kind == Kind.INT else 8 * r.size):
                        raise BTFError(f"{self._what()}: bitfield {m.name!r} of "
                                       f"{self.describe(tid)} is {m.bitfield_size} bits of "
                                       f"{self.describe(r.id)}")
                elif r.kind == Kind.INT:  # an int member may use fewer bits than its size
                    start = m.bit_offset + r.bit_offset
                    end = start + r.bits
                else:
                    start, end = m.bit_offset, m.bit_offset + 8 * self.size_of(m.type)
                if r.kind == Kind.INT and end - start + start % 8 > 128:
                    raise BTFError(f"{self._what()}: member {m.name!r} of {self.describe(tid)} "
                                   f"spans more than 128 bits")
                if (end + 7) // 8 > t.size:
                    name = f"member {m.name!r}" if m.name else "an anonymous member"
                    raise BTFError(f"{self._what()}: {name} of {self.describe(tid)} ends at byte "
                                   f"{(end + 7) // 8}, past its size {t.size}")
        elif k in (Kind.ENUM, Kind.ENUM64):
            if t.size not in (1, 2, 4, 8):
                raise BTFError(f"{self._what()}: {self.describe(tid)} has size {t.size} "
                               "(not 1, 2, 4 or 8)")
        elif k == Kind.INT:
            bits = t.bit_offset + t.bits
            if bits > 128 or (bits + 7) // 8 > t.size:
                raise BTFError(f"{self._what()}: {self.describe(tid)} has {t.bits} bits at bit "
                               f"{t.bit_offset}, more than its size {t.size} holds")


MAX_SIZE = 0xFFFFFFFF  # the kernel refuses types larger than U32_MAX bytes
# How deep types may contain types (typedefs, qualifiers, arrays and members
# each count one level); vmlinux 6.18's deepest is 32.  Renderers recurse once
# per level, so this bounds their stack.
MAX_NESTING = 64
