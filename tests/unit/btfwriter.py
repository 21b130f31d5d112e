"""A small BTF writer for tests: blobs from declarative tuples, every kind, split BTF.

    w = BTFWriter()
    i = w.int("int", 4, signed=True)                     # ids are returned in order
    p = w.ptr(0)                                         # void *
    s = w.struct("pair", 8, [("a", i, 0), ("b", i, 32)])
    blob = w.build()

or, all at once (ids count from 1, or from the base's type count for split BTF):

    blob = build_btf([
        ("int", "int", 4, {"signed": True}),             # 1
        ("struct", "pair", 8, [("a", 1, 0), ("b", 1, 32)]),  # 2
        ("ptr", 2),                                      # 3
    ])

Members are (name, type, bit_offset[, bitfield_size]); a struct gets kflag
when any member has a bitfield size (or kflag=True).  Enum values are
(name, value).  For split BTF pass ``base=`` the base writer (or its
``(type_count, str_len)``); names already in the base string table are reused.
"""

import struct

KINDS = {
    "int": 1, "ptr": 2, "array": 3, "struct": 4, "union": 5, "enum": 6, "fwd": 7,
    "typedef": 8, "volatile": 9, "const": 10, "restrict": 11, "func": 12, "func_proto": 13,
    "var": 14, "datasec": 15, "float": 16, "decl_tag": 17, "type_tag": 18, "enum64": 19,
}
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4


class BTFWriter:
    def __init__(self, base=None):
        if base is None:
            self.first_id, self.str_base, self.base_strings = 1, 0, {}
        elif isinstance(base, BTFWriter):
            self.first_id = base.first_id + len(base.types)
            self.str_base = base.str_base + len(base.strtab)
            self.base_strings = dict(base.base_strings, **base.strings)
        else:
            self.first_id, self.str_base = base
            self.base_strings = {}
        self.types = []  # encoded records
        self.strtab = bytearray(b"\0")
        self.strings = {"": self.str_base}

    # ---------------------------------------------------------------- strings
    def _str(self, s):
        if s in self.base_strings:
            return self.base_strings[s]
        off = self.strings.get(s)
        if off is None:
            off = self.strings[s] = self.str_base + len(self.strtab)
            self.strtab += s.encode() + b"\0"
        return off

    def _add(self, kind, name, vlen, size_or_type, extra=b"", kflag=False):
        info = (int(bool(kflag)) << 31) | (KINDS[kind] << 24) | vlen
        self.types.append(struct.pack("<III", self._str(name), info, size_or_type) + extra)
        return self.first_id + len(self.types) - 1

    @property
    def next_id(self):
        return self.first_id + len(self.types)

    # ------------------------------------------------------------------ kinds
    def int(self, name, size, bits=None, signed=False, char=False, bool=False, offset=0):
        enc = (INT_SIGNED if signed else 0) | (INT_CHAR if char else 0) | (INT_BOOL if bool else 0)
        bits = 8 * size if bits is None else bits
        return self._add("int", name, 0, size, struct.pack("<I", (enc << 24) | (offset << 16) | bits))

    def ptr(self, type):
        return self._add("ptr", "", 0, type)

    def array(self, elem, nelems, index=0):
        return self._add("array", "", 0, 0, struct.pack("<III", elem, index, nelems))

    def _record(self, kind, name, size, members, kflag):
        kflag = kflag or any(len(m) > 3 and m[3] for m in members)
        extra = b""
        for m in members:
            mname, mtype, boff = m[:3]
            bsize = m[3] if len(m) > 3 else 0
            off = (bsize << 24) | boff if kflag else boff
            extra += struct.pack("<III", self._str(mname), mtype, off)
        return self._add(kind, name, len(members), size, extra, kflag)

    def _patch_members(self, name, size, members, kind="struct"):
        """The encoding of a record, for filling in a forward-declared slot."""
        rec_id = self._record(kind, name, size, members, False)
        return self.types.pop(rec_id - self.first_id)

    def struct(self, name, size, members, kflag=False):
        return self._record("struct", name, size, members, kflag)

    def union(self, name, size, members, kflag=False):
        return self._record("union", name, size, members, kflag)

    def enum(self, name, values, size=4, signed=False):
        extra = b"".join(struct.pack("<Ii" if v < 0 else "<II", self._str(n), v)
                         for n, v in values)
        return self._add("enum", name, len(values), size, extra, signed)

    def enum64(self, name, values, size=8, signed=False):
        extra = b""
        for n, v in values:
            v &= (1 << 64) - 1
            extra += struct.pack("<III", self._str(n), v & 0xFFFFFFFF, v >> 32)
        return self._add("enum64", name, len(values), size, extra, signed)

    def fwd(self, name, union=False):
        return self._add("fwd", name, 0, 0, kflag=union)

    def typedef(self, name, type):
        return self._add("typedef", name, 0, type)

    def volatile(self, type):
        return self._add("volatile", "", 0, type)

    def const(self, type):
        return self._add("const", "", 0, type)

    def restrict(self, type):
        return self._add("restrict", "", 0, type)

    def type_tag(self, name, type):
        return self._add("type_tag", name, 0, type)

    def func_proto(self, ret, params=()):
        extra = b"".join(struct.pack("<II", self._str(n), t) for n, t in params)
        return self._add("func_proto", "", len(params), ret, extra)

    def func(self, name, proto, linkage=1):
        return self._add("func", name, linkage, proto)

    def var(self, name, type, linkage=1):
        return self._add("var", name, 0, type, struct.pack("<I", linkage))

    def datasec(self, name, size, vars=()):
        extra = b"".join(struct.pack("<III", t, o, s) for t, o, s in vars)
        return self._add("datasec", name, len(vars), size, extra)

    def float(self, name, size):
        return self._add("float", name, 0, size)

    def decl_tag(self, name, type, component_idx=-1):
        return self._add("decl_tag", name, 0, type, struct.pack("<i", component_idx))

    def add(self, spec):
        """One declarative tuple: (kind, *args[, {keyword args}])."""
        kind, *args = spec
        kw = args.pop() if args and isinstance(args[-1], dict) else {}
        return getattr(self, kind)(*args, **kw)

    # ------------------------------------------------------------------ blob
    def build(self):
        types = b"".join(self.types)
        strs = bytes(self.strtab)
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs))
        return hdr + types + strs


def build_btf(specs, base=None):
    """A BTF blob from a list of declarative tuples (see the module docstring)."""
    w = BTFWriter(base)
    for spec in specs:
        w.add(spec)
    return w.build()


def demo_types():
    """A small kernel-like type set used by the render tests: (blob, {name: id})."""
    w = BTFWriter()
    ids = {}
    ids["int"] = w.int("int", 4, signed=True)
    ids["unsigned int"] = w.int("unsigned int", 4)
    ids["char"] = w.int("char", 1)
    ids["unsigned char"] = w.int("unsigned char", 1)
    ids["short"] = w.int("short int", 2, signed=True)
    ids["ulong"] = w.int("long unsigned int", 8)
    ids["llu"] = w.int("long long unsigned int", 8)
    ids["_Bool"] = w.int("_Bool", 1, bool=True)
    ids["__int128"] = w.int("__int128 unsigned", 16)
    ids["__u8"] = w.typedef("__u8", ids["unsigned char"])
    ids["__u32"] = w.typedef("__u32", ids["unsigned int"])
    ids["__s32"] = w.typedef("__s32", ids["int"])
    ids["__s16"] = w.typedef("__s16", ids["short"])
    ids["u64"] = w.typedef("u64", ids["llu"])
    ids["bool"] = w.typedef("bool", ids["_Bool"])
    ids["gid_t"] = w.typedef("gid_t", ids["unsigned int"])
    ids["btf_enum"] = w.struct("btf_enum", 8, [("name_off", ids["__u32"], 0),
                                               ("val", ids["__s32"], 32)])
    ids["bpf_insn"] = w.struct("bpf_insn", 8, [
        ("code", ids["__u8"], 0), ("dst_reg", ids["__u8"], 8, 4), ("src_reg", ids["__u8"], 12, 4),
        ("off", ids["__s16"], 16), ("imm", ids["__s32"], 32)])
    ids["list_head"] = w.struct("list_head", 16, [])
    ids["list_head *"] = w.ptr(ids["list_head"])
    w.types[ids["list_head"] - 1] = BTFWriter._patch_members(
        w, "list_head", 16, [("next", ids["list_head *"], 0), ("prev", ids["list_head *"], 64)])
    anon = w.struct("", 4, [("counter", ids["int"], 0)])
    ids["atomic_t"] = w.typedef("atomic_t", anon)
    ids["bpf_cmd"] = w.enum("bpf_cmd", [("BPF_MAP_CREATE", 0), ("BPF_MAP_LOOKUP_ELEM", 1),
                                        ("BPF_MAP_UPDATE_ELEM", 2)])
    ids["sign"] = w.enum("sign", [("NEG", -1), ("POS", 1)], signed=True)
    kg = w.struct("", 4, [("val", ids["gid_t"], 0)])
    ids["kgid_t"] = w.typedef("kgid_t", kg)
    ids["char[8]"] = w.array(ids["char"], 8, ids["int"])
    ids["kgid_t[3]"] = w.array(ids["kgid_t"], 3, ids["int"])
    row = w.array(ids["unsigned int"], 2, ids["int"])
    ids["unsigned int[2][2]"] = w.array(row, 2, ids["int"])
    ids["list_head *[2]"] = w.array(ids["list_head *"], 2, ids["int"])
    ids["u32[5]"] = w.array(ids["__u32"], 5, ids["int"])
    ids["const int"] = w.const(ids["int"])
    ids["union anon"] = w.union("", 8, [("x", ids["u64"], 0), ("y", ids["unsigned int"], 0)])
    ids["demo"] = w.struct("demo", 120, [
        ("a", ids["int"], 0), ("name", ids["char[8]"], 32), ("next", ids["list_head *"], 128),
        ("cmd", ids["bpf_cmd"], 192), ("f1", ids["unsigned int"], 224, 3),
        ("f2", ids["int"], 227, 5), ("fe", ids["bpf_cmd"], 232, 2),
        ("", ids["union anon"], 256), ("gids", ids["kgid_t[3]"], 320),
        ("m", ids["unsigned int[2][2]"], 416), ("ptrs", ids["list_head *[2]"], 576),
        ("ok", ids["bool"], 704), ("c", ids["const int"], 736), ("cb", ids["u32[5]"], 768),
    ])
    ids["func_proto"] = w.func_proto(ids["int"], [("x", ids["int"])])
    ids["func"] = w.func("do_thing", ids["func_proto"])
    ids["fwd"] = w.fwd("opaque")
    ids["float"] = w.float("double", 8)
    ids["void *"] = w.ptr(0)
    ids["e64"] = w.enum64("big", [("HUGE", 1 << 40)])
    return w.build(), ids


def abi_corners():
    """Functions with calling-convention corners that the host's 6.18 kernel
    has and the guests' 6.1 and 6.12 BTF lack, with their 6.18 prototypes (so
    the unit tier checks them on every kernel):

      size_t ZSTD_CCtx_setFParams(ZSTD_CCtx *cctx, ZSTD_frameParameters fparams);
          a 12-byte struct by value, in two registers
      ZSTD_compressionParameters ZSTD_adjustCParams(ZSTD_compressionParameters cPar,
                                                    long long unsigned int srcSize, size_t dictSize);
          a 28-byte struct returned in memory (a hidden pointer in the first
          register) and passed by value on the stack
      int __io_run_local_work(struct io_ring_ctx *ctx, io_tw_token_t tw, int min_events,
                              int max_events);
          an empty struct by value, passed in nothing
    """
    w = BTFWriter()
    i32 = w.int("int", 4, signed=True)
    u32 = w.int("unsigned int", 4)
    ulong = w.int("long unsigned int", 8)
    ullong = w.int("long long unsigned int", 8)
    size_t = w.typedef("size_t", ulong)
    cctx_s = w.struct("ZSTD_CCtx_s", 16, [("stage", i32, 0), ("cParamsChanged", i32, 32),
                                          ("consumedSrcSize", ullong, 64)])
    cctx = w.typedef("ZSTD_CCtx", cctx_s)
    fparams = w.typedef("ZSTD_frameParameters", w.struct("", 12, [
        ("contentSizeFlag", i32, 0), ("checksumFlag", i32, 32), ("noDictIDFlag", i32, 64)]))
    w.func("ZSTD_CCtx_setFParams", w.func_proto(size_t, [("cctx", w.ptr(cctx)),
                                                         ("fparams", fparams)]))
    strategy = w.typedef("ZSTD_strategy", w.enum("", [("ZSTD_fast", 1), ("ZSTD_btultra2", 9)]))
    names = ("windowLog", "chainLog", "hashLog", "searchLog", "minMatch", "targetLength")
    cpar = w.typedef("ZSTD_compressionParameters", w.struct(
        "", 28, [(n, u32, 32 * k) for k, n in enumerate(names)] + [("strategy", strategy, 192)]))
    w.func("ZSTD_adjustCParams", w.func_proto(cpar, [("cPar", cpar), ("srcSize", ullong),
                                                     ("dictSize", size_t)]))
    ring = w.struct("io_ring_ctx", 8, [("flags", u32, 0), ("cq_extra", i32, 32)])
    token = w.typedef("io_tw_token_t", w.struct("io_tw_state", 0, []))
    w.func("__io_run_local_work", w.func_proto(i32, [("ctx", w.ptr(ring)), ("tw", token),
                                                     ("min_events", i32), ("max_events", i32)]))
    return w.build()
