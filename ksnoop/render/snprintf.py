"""Kernel-exact rendering: the text ``bpf_snprintf_btf()`` produces, byte for byte.

This is a faithful model of the kernel's ``btf_show`` machinery
(kernel/bpf/btf.c: btf_show_* and the *_show functions), quirks included: the global
"array member" bit, stride 0 for arrays of pointers and of arrays, enums that
always read 4 bytes, the zero-suppression dry runs, the 80-byte name buffer,
the COMPACT union delimiter that depends on the last shown type, and the
32-byte "safe" copy window the kernel reads every value through.

It works on raw bytes rather than on a decoded value tree because several of
those quirks depend on bytes the type does not own (a 1-byte enum reads the
following 3 bytes out of the copy window; a pointer array re-reads element 0).

Output is a ``str`` in which every character is one byte (latin-1): the kernel
prints bytes 0xa0-0xff of char arrays raw.  ``.encode("latin-1")`` gives the
exact bytes.

Pointers: without ``PTR_RAW`` the kernel prints a per-boot keyed hash that
user space cannot compute; pass ``ptr_hash`` (a function from the pointer
value to 16 hex digits) to reproduce it, otherwise the raw value is printed.

Crafted BTF: the kernel only shows types its BTF verifier accepted, so a type
``BTF.check`` refuses (one that contains itself, arrays past 4 GiB, members
past the end of their struct) is a BTFError here too.  Accepted types can
still ask for unbounded work that the kernel would do in C: elements of an
array that lie past the data are skipped one by one by the kernel, and the
model stops at the first one that cannot touch the data, which leaves the
text and the state exactly as the rest would; past that, one render takes at
most ``step_budget(len(data))`` steps (overlapping members by the thousand,
pointer arrays re-read at stride 0) and raises RenderError beyond it.
"""

from ..btf import Kind
from ..btf import format as L
from ..btf.bitfield import Bitfield
from ..errors import RenderError

COMPACT, NONAME, PTR_RAW, ZERO = 1, 2, 4, 8
ALL_FLAGS = COMPACT | NONAME | PTR_RAW | ZERO

EINVAL, ENOENT, EFAULT = 22, 2, 14

SAFE_SIZE = 32  # BTF_SHOW_OBJ_SAFE_SIZE
BASE_TYPE_SIZE = 16  # BTF_SHOW_OBJ_BASE_TYPE_SIZE
MAX_ITER = 10  # BTF_SHOW_MAX_ITER
NAME_MAX = 79  # BTF_SHOW_NAME_SIZE - 1
INT_CHAR = L.INT_CHAR

_MODIFIERS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})
_HAS_SIZE = frozenset(
    {Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.DATASEC, Kind.FLOAT, Kind.ENUM64}
)
_UNSUPPORTED = frozenset({Kind.FWD, Kind.FUNC, Kind.FUNC_PROTO, Kind.FLOAT, Kind.DECL_TAG})
_INDENTS = " " * 32
_U64 = (1 << 64) - 1
# Kinds whose show reads its value through the safe window first (so an item
# wholly past the data fails there, with no output).
_READ_FIRST = frozenset({Kind.INT, Kind.PTR, Kind.ARRAY, Kind.STRUCT, Kind.UNION,
                         Kind.ENUM, Kind.ENUM64, Kind.DATASEC})

# Steps (shown items, successful or not) of one render: real kernel types take
# at most ~72 per byte of data (vmlinux 6.18; zero suppression's dry runs show
# deep types several times), 557k for the biggest.
STEP_BASE = 1 << 16
STEP_PER_BYTE = 256


def step_budget(nbytes):
    return STEP_BASE + STEP_PER_BYTE * max(nbytes, 0)


def _isprint(c):
    # the kernel's _ctype table: ASCII printables and Latin-1 0xa0-0xff
    return 0x20 <= c <= 0x7E or c >= 0xA0


class _TypeCache:
    """Per-BTF facts the show code asks for over and over."""

    def __init__(self, btf):
        self.btf = btf
        self.names = {}
        self.sizes = {}
        self.skipped = {}

    def type(self, tid):
        btf = self.btf
        if tid < 0 or tid >= len(btf):
            return None
        return btf[tid]

    def skip_modifiers(self, tid):
        """btf_type_skip_modifiers(): (id, type) past typedefs and qualifiers."""
        hit = self.skipped.get(tid)
        if hit is None:
            key = tid
            t = self.type(tid)
            n = 0
            while t is not None and t.kind in _MODIFIERS and n < 64:
                tid = t.type
                t = self.type(tid)
                n += 1
            hit = self.skipped[key] = (tid, t)
        return hit

    def resolve_size(self, t):
        """btf_resolve_size(): total byte size, or None for types without one."""
        hit = self.sizes.get(t.id, False)
        if hit is not False:
            return hit
        size = None
        nelems = 1
        cur = t
        for _ in range(32):  # MAX_RESOLVE_DEPTH
            k = cur.kind
            if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FLOAT, Kind.ENUM64):
                size = cur.size * nelems
                break
            if k == Kind.PTR:
                size = 8 * nelems
                break
            if k in _MODIFIERS:
                cur = self.type(cur.type)
            elif k == Kind.ARRAY:
                nelems *= cur.nelems
                cur = self.type(cur.elem_type)
            else:
                break
            if cur is None:
                break
        if size is not None and size > 0xFFFFFFFF:
            size = None
        self.sizes[t.id] = size
        return size


class _Show:
    """One bpf_snprintf_btf() call: the kernel's struct btf_show, in Python."""

    def __init__(self, cache, flags, data, ptr_hash):
        self.cache = cache
        self.flags = flags
        self.compact = bool(flags & COMPACT)
        self.noname = bool(flags & NONAME)
        self.ptr_raw = bool(flags & PTR_RAW)
        self.zero = bool(flags & ZERO)
        self.nl = "" if self.compact else "\n"
        self.ptr_hash = ptr_hash
        self.data = data
        self.avail = len(data)
        self.out = []
        self.steps_left = step_budget(self.avail)
        self.top = 0  # the type asked for, for messages
        # show->state
        self.depth = 0
        self.depth_to_show = 0
        self.depth_check = 0
        self.array_member = False
        self.array_terminated = False
        self.array_encoding = 0
        self.type = None
        self.type_id = 0
        self.member = None
        self.status = 0
        # show->obj
        self.obj_size = 0
        self.obj_head = 0
        self.obj_data = None
        self.safe = bytearray(SAFE_SIZE)
        self.dispatch = {
            Kind.INT: self.int_show,
            Kind.PTR: self.ptr_show,
            Kind.ARRAY: self.array_show,
            Kind.STRUCT: self.struct_show,
            Kind.UNION: self.struct_show,
            Kind.ENUM: self.enum_show,
            Kind.ENUM64: self.enum64_show,
            Kind.VAR: self.var_show,
            Kind.DATASEC: self.datasec_show,
        }

    # ------------------------------------------------------------ primitives
    def indent(self):
        if self.compact:
            return ""
        d = self.depth
        return _INDENTS if d >= 32 else _INDENTS[:d]

    def delim(self):
        if self.depth == 0:
            return ""
        if self.compact and self.type is not None and self.type.kind == Kind.UNION:
            return "|"
        return ","

    def name(self):
        if self.array_member:
            return ""
        m = self.member
        if m is not None:
            key = (m.name, m.type)
        else:
            key = ("", self.type_id)
        names = self.cache.names
        hit = names.get(key)
        if hit is None:
            hit = names[key] = self._make_name(*key)
        return hit[1] if self.noname else hit[0]

    def _make_name(self, member, tid):
        """(full name, NONAME name) as btf_show_name() builds them."""
        cache = self.cache
        t = cache.type(tid)
        if t is None:
            return ("", "")
        name = None
        seen_typedef = seen_array = seen_ptr = False
        parens = ""
        nptr = narr = 0
        for _ in range(MAX_ITER):
            k = t.kind
            if k == Kind.TYPEDEF:
                if name is None:
                    name = t.name
                seen_typedef = True
                tid = t.type
            elif k == Kind.ARRAY:
                seen_array = True
                parens = "["
                narr = min(narr + 1, MAX_ITER)
                tid = t.elem_type
            elif k == Kind.PTR:
                seen_ptr = True
                nptr = min(nptr + 1, MAX_ITER)
                tid = t.type
            else:
                tid = 0
            if not tid:
                break
            t = cache.type(tid)
            for _ in range(MAX_ITER):  # bounded: crafted BTF may loop its qualifiers
                if t is None or t.kind not in _MODIFIERS or t.kind == Kind.TYPEDEF:
                    break
                t = cache.type(t.type)
            else:
                return ("", "")
            if t is None:
                return ("", "")
        else:
            return ("", "")
        if name is None:
            name = t.name if t.kind != Kind.UNKN else ""
        prefix = ""
        if t.kind in (Kind.STRUCT, Kind.UNION):
            prefix = "struct" if t.kind == Kind.STRUCT else "union"
            if not seen_array:
                parens = "{"
        elif t.kind in (Kind.ENUM, Kind.ENUM64):
            prefix = "enum"
        if seen_ptr:
            parens = ""
        if seen_typedef:
            prefix = ""
        label = f".{member} = " if member else ""
        full = "%s(%s%s%s%s%s%s)%s" % (
            label, prefix, " " if prefix and name else "", name,
            " " if nptr else "", "*" * nptr, "[]" * narr, parens,
        )
        raw = full.encode("utf-8", "replace")
        if len(raw) > NAME_MAX:
            full = raw[:NAME_MAX].decode("utf-8", "replace")
        return (full, parens)

    def emit(self, text):
        if not self.depth_check:
            self.out.append(text)

    def type_value(self, text, nonzero):
        if nonzero or self.zero or self.depth == 0:
            if not self.depth_check:
                self.out.append(self.indent() + self.name() + text + self.delim() + self.nl)
            if self.depth > self.depth_to_show:
                self.depth_to_show = self.depth

    def type_values(self, text):
        if not self.depth_check:
            self.out.append(self.indent() + self.name() + text + self.delim() + self.nl)
        if self.depth > self.depth_to_show:
            self.depth_to_show = self.depth

    # ------------------------------------------------------- the safe window
    def obj_safe(self, t, off):
        """btf_show_obj_safe(): position of ``off`` in the safe buffer, or None."""
        size = self.cache.resolve_size(t)
        if size is None:
            self.status = -EINVAL
            return None
        if self.depth == 0:
            self.obj_size = size
            self.obj_head = off
        else:
            n = size if size < BASE_TYPE_SIZE else BASE_TYPE_SIZE
            od = self.obj_data
            if od is not None and off >= od and off + n < od + SAFE_SIZE:
                return off - od
        left = self.obj_head + self.obj_size - off
        if left > SAFE_SIZE:
            left = SAFE_SIZE
        if left < 0 or off < 0 or off + left > self.avail:
            self.status = -EFAULT
            return None
        self.safe[0:left] = self.data[off:off + left]
        self.status = 0
        self.obj_data = off
        return 0

    def read(self, pos, n):
        """Bytes from the safe buffer (bytes past its end read as zero)."""
        chunk = bytes(self.safe[pos:pos + n])
        if len(chunk) < n:
            chunk += bytes(n - len(chunk))
        return int.from_bytes(chunk, "little")

    def start_type(self, t, tid, off):
        self.type = t
        self.type_id = tid
        return self.obj_safe(t, off)

    def end_type(self):
        self.type = None
        self.type_id = 0

    def start_aggr(self, t, tid, off):
        pos = self.start_type(t, tid, off)
        if pos is None:
            return None
        if not self.depth_check:
            self.out.append(self.indent() + self.name() + self.nl)
        self.depth += 1
        return pos

    def end_aggr(self, suffix):
        self.depth -= 1
        if not self.depth_check:
            self.out.append(self.indent() + suffix + self.delim() + self.nl)
        self.end_type()

    # ----------------------------------------------------------------- kinds
    def step(self):
        self.steps_left -= 1
        if self.steps_left < 0:
            self.over_budget()

    def over_budget(self):
        raise RenderError(f"{self.cache.btf.describe(self.top)}: more than "
                          f"{step_budget(self.avail)} items to show for {self.avail} bytes")

    def show(self, t, tid, off, bits_offset):
        if t is None:
            return
        self.steps_left -= 1  # self.step(), inline: this runs once per item shown
        if self.steps_left < 0:
            self.over_budget()
        k = t.kind
        fn = self.dispatch.get(k)
        if fn is not None:
            fn(t, tid, off, bits_offset)
        elif k in _MODIFIERS:
            _, rt = self.cache.skip_modifiers(tid)
            if rt is not None and rt.kind != Kind.UNKN:
                self.show(rt, tid, off, bits_offset)
        elif k in _UNSUPPORTED or k == Kind.UNKN:
            self.emit("<unsupported kind:%u>" % int(k))

    def int128_print(self, value):
        upper, lower = value >> 64, value & _U64
        if upper == 0:
            self.type_value("0x%x" % lower, lower != 0)
        else:
            self.type_values("0x%x%016x" % (upper, lower))

    def bitfield_show(self, pos, bits_offset, nr_bits):
        # The kernel prints every bitfield zero-extended, whatever its type's
        # signedness (btf_bitfield_show): only the raw bits are used here.
        if not nr_bits:  # a 0-bit INT: the kernel's shifts by 128 are undefined in C
            raise RenderError(f"{self.cache.btf.describe(self.type_id)}: a 0-bit integer "
                              "has no defined kernel output")
        bf = Bitfield.at(bits_offset, nr_bits, signed=False)
        self.int128_print(bf.raw_of(self.read(pos, bf.nbytes)))

    def int_show(self, t, tid, off, bits_offset):
        pos = self.start_type(t, tid, off)
        if pos is None:
            return
        nr_bits = t.bits
        sign = t.encoding & L.INT_SIGNED
        if bits_offset or t.bit_offset or nr_bits & 7:
            total = bits_offset + t.bit_offset
            self.bitfield_show(pos + (total >> 3), total & 7, nr_bits)
        elif nr_bits in (64, 32, 16):
            v = self.read(pos, nr_bits >> 3)
            if sign and v >> (nr_bits - 1):
                v -= 1 << nr_bits
            self.type_value(str(v), v != 0)
        elif nr_bits == 128:
            self.int128_print(self.read(pos, 16))
        elif nr_bits == 8:
            done = False
            if self.array_encoding == INT_CHAR:
                if self.array_terminated:
                    done = True
                else:
                    c = self.data[off] if off < self.avail else 0
                    if c == 0:
                        self.array_terminated = True
                        done = True
                    elif _isprint(c):
                        self.type_value("'" + chr(self.read(pos, 1)) + "'", True)
                        done = True
            if not done:
                v = self.read(pos, 1)
                if sign and v >= 0x80:
                    v -= 0x100
                self.type_value(str(v), v != 0)
        else:
            total = bits_offset + t.bit_offset
            self.bitfield_show(pos + (total >> 3), total & 7, nr_bits)
        self.end_type()

    def ptr_show(self, t, tid, off, bits_offset):
        pos = self.start_type(t, tid, off)
        if pos is None:
            return
        v = self.read(pos, 8)
        if self.ptr_raw or self.ptr_hash is None:
            text = "0x%016x" % v
        else:
            text = "0x" + self.ptr_hash(v)
        self.type_value(text, v != 0)
        self.end_type()

    def enum_show(self, t, tid, off, bits_offset):
        pos = self.start_type(t, tid, off)
        if pos is None:
            return
        u = self.read(pos, 4)
        for ev in t.values:
            if (ev.value & 0xFFFFFFFF) == u:
                self.type_value(ev.name, True)
                self.end_type()
                return
        if t.kflag and u >= 0x80000000:
            self.type_value(str(u - (1 << 32)), True)
        else:
            self.type_value(str(u), u != 0)
        self.end_type()

    def enum64_show(self, t, tid, off, bits_offset):
        pos = self.start_type(t, tid, off)
        if pos is None:
            return
        u = self.read(pos, 8)
        for ev in t.values:
            if (ev.value & _U64) == u:
                self.type_value(ev.name, True)
                self.end_type()
                return
        if t.kflag and u >> 63:
            self.type_value(str(u - (1 << 64)), True)
        else:
            self.type_value(str(u), u != 0)
        self.end_type()

    def var_show(self, t, tid, off, bits_offset):
        # The kernel follows resolved_ids here, which vmlinux BTF lacks; we
        # show the variable's type instead.
        rid, rt = self.cache.skip_modifiers(t.type)
        if rt is not None and rt.kind != Kind.UNKN:
            self.show(rt, rid, off, bits_offset)

    def datasec_show(self, t, tid, off, bits_offset):
        if self.start_type(t, tid, off) is None:
            return
        self.type_value('section ("%s") = {' % t.name, True)
        for i, vsi in enumerate(t.members):
            var = self.cache.type(vsi.type)
            if i:
                self.emit(",")
            self.show(var, vsi.type, off + vsi.offset, bits_offset)
        self.end_type()

    def _dry_run_then(self, body, t, tid, off, bits_offset):
        """The zero-suppression protocol shared by struct and array show."""
        m = self.member
        if self.depth > 0 and not self.zero:
            if not self.depth_check:
                self.depth_check = self.depth + 1
                self.depth_to_show = 0
            body(t, tid, off, bits_offset)
            self.member = m
            if self.depth_check != self.depth + 1:
                return
            self.depth_check = 0
            if self.depth_to_show <= self.depth:
                return
        body(t, tid, off, bits_offset)

    def struct_show(self, t, tid, off, bits_offset):
        self._dry_run_then(self._struct_body, t, tid, off, bits_offset)

    def _struct_body(self, t, tid, off, bits_offset):
        if self.start_aggr(t, tid, off) is None:
            return
        cache = self.cache
        for m in t.members:
            mt = cache.type(m.type)
            self.member = m
            boff = m.bit_offset
            if m.bitfield_size:
                self.step()
                pos = self.start_type(mt, m.type, off + (boff >> 3))
                if pos is not None:
                    self.bitfield_show(pos, boff & 7, m.bitfield_size)
                self.end_type()
            else:
                self.show(mt, m.type, off + (boff >> 3), boff & 7)
            self.member = None
        self.end_aggr("}")

    def array_show(self, t, tid, off, bits_offset):
        self._dry_run_then(self._array_body, t, tid, off, bits_offset)

    def _array_body(self, t, tid, off, bits_offset):
        elem_id = t.elem_type
        _, et = self.cache.skip_modifiers(elem_id)
        elem_size = 0
        encoding = 0
        if et is not None and et.kind in _HAS_SIZE:
            elem_size = et.size
        if et is not None and et.kind == Kind.INT:
            encoding = et.encoding
            if elem_size == 1:
                encoding = INT_CHAR
        self.array_encoding = encoding
        self.array_terminated = False
        if self.start_aggr(t, tid, off) is None:
            return
        if et is not None:
            # From avail + SAFE_SIZE on no element reaches the data (nor the
            # window, which ends before that): each fails at its first read,
            # prints nothing and sets the state just as the one before it did.
            # The kernel walks them all; the model stops after the first.
            past = self.avail + SAFE_SIZE if elem_size and et.kind in _READ_FIRST else None
            for _ in range(t.nelems):
                if past is not None and off >= past:
                    self.array_member = True
                    self.member = None
                    self.show(et, elem_id, off, bits_offset)
                    self.array_member = False
                    self.member = None
                    break
                self.array_member = True
                self.member = None
                self.show(et, elem_id, off, bits_offset)
                off += elem_size
                self.array_member = False
                self.member = None
                if self.array_terminated:
                    break
        self.array_encoding = 0
        self.array_terminated = False
        self.end_aggr("]")


class KernelRenderer:
    """Renders bytes as ``bpf_snprintf_btf(type_id, flags)`` would.

    Build once per (btf, type_id, flags); call ``render(data)`` or
    ``snprintf(data, size)`` per object.  ``data`` shorter than the type
    behaves like memory that faults past its end: the kernel skips the items
    it cannot copy and returns -EFAULT.
    """

    _caches = {}

    def __init__(self, btf, type_id, flags=0, ptr_hash=None):
        if flags & ~ALL_FLAGS:
            raise RenderError(f"unknown bpf_snprintf_btf flags 0x{flags & ~ALL_FLAGS:x}")
        if type_id <= 0 or type_id >= len(btf):
            raise RenderError(f"no type with id {type_id}")
        self.btf = btf
        self.type_id = type_id
        self.flags = flags
        self.ptr_hash = ptr_hash
        cache = self._caches.get(id(btf))
        if cache is None or cache.btf is not btf:
            cache = self._caches[id(btf)] = _TypeCache(btf)
        self.cache = cache
        btf.check(type_id)  # types the kernel's verifier refuses never reach its show code
        self.type = btf[type_id]
        self.size = cache.resolve_size(self.type)

    def show(self, data):
        """(text, status): the full text and the kernel's error status (0 or -errno)."""
        s = _Show(self.cache, self.flags, data, self.ptr_hash)
        s.top = self.type_id
        s.show(self.type, self.type_id, 0, 0)
        return "".join(s.out), s.status

    def render(self, data):
        """The full text (as a latin-1 str, one char per byte)."""
        return self.show(data)[0]

    def snprintf(self, data, size):
        """(bytes written without the NUL, return value) for a buffer of ``size`` bytes."""
        text, status = self.show(data)
        raw = text.encode("latin-1", "replace")
        kept = raw[:size - 1] if size > 0 else b""
        return kept, (status if status else len(raw))


def render_kernel(btf, type_id, data, flags=0, ptr_hash=None):
    """One-shot convenience: the kernel's text for ``data`` as ``type_id``."""
    return KernelRenderer(btf, type_id, flags, ptr_hash).render(data)
