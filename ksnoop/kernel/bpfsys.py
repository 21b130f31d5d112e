"""The few bpf(2) commands ksnoop issues itself (BCC has no call for them).

BCC 0.26 loads a tracing (fentry/fexit) program only under a name that is
the traced function's (``kfunc__NAME``, vmlinux only) and creates no
kprobe-multi links, so ksnoop loads BCC's compiled instructions with its
own ``BPF_PROG_LOAD`` (program name kept, module BTF allowed) and creates
the links itself.  Layouts are the uapi ``union bpf_attr``'s (x86_64 and
arm64 alike), only the fields used here.
"""

import ctypes as ct
import os
import struct
from dataclasses import dataclass

NR_BPF = {"x86_64": 321, "aarch64": 280}

# commands
PROG_LOAD, OBJ_GET_INFO_BY_FD, RAW_TRACEPOINT_OPEN = 5, 15, 17
BTF_GET_FD_BY_ID, BTF_GET_NEXT_ID, MAP_UPDATE_BATCH, LINK_CREATE = 19, 23, 26, 28

# program types and attach types
PROG_TYPE_KPROBE, PROG_TYPE_TRACING = 2, 26
TRACE_FENTRY, TRACE_FEXIT, TRACE_KPROBE_MULTI = 24, 25, 42
KPROBE_MULTI_RETURN = 1  # BPF_F_KPROBE_MULTI_RETURN

ATTR_SIZE = 144  # sizeof(union bpf_attr) in the uapi headers of 6.x
LOG_SIZE = 1 << 20
ENOTSUPP = 524  # the kernel's internal "not supported" (no errno name in libc)


class BPFError(OSError):
    """A refused bpf(2) command: ``errno``, ``strerror`` and the verifier ``log``."""

    def __init__(self, errno, what, log=""):
        text = "operation not supported by this kernel" if errno == ENOTSUPP else os.strerror(errno)
        super().__init__(errno, f"{what}: {text}")
        self.reason = text  # without what was being done
        self.log = log


_libc = None


def _sys(cmd, attr, what):
    global _libc
    if _libc is None:
        _libc = ct.CDLL(None, use_errno=True)
        _libc.syscall.restype = ct.c_long
    nr = NR_BPF.get(os.uname().machine)
    if nr is None:
        raise BPFError(38, what)  # ENOSYS: not an architecture ksnoop knows
    buf = ct.create_string_buffer(bytes(attr), ATTR_SIZE)
    ret = _libc.syscall(ct.c_long(nr), ct.c_int(cmd), buf, ct.c_uint(ATTR_SIZE))
    if ret < 0:
        raise BPFError(ct.get_errno(), what)
    return ret, buf


def prog_load(prog_type, insns, name, *, expected_attach_type=0, attach_btf_id=0,
              attach_btf_obj_fd=0, license=b"GPL", log=True):
    """Load ``insns`` (bytes of struct bpf_insn); the program's fd.  On refusal
    BPFError carries the verifier's log (when ``log``)."""
    code = ct.create_string_buffer(bytes(insns), len(insns))
    lic = ct.create_string_buffer(license)
    logbuf = ct.create_string_buffer(LOG_SIZE if log else 1)
    attr = bytearray(ATTR_SIZE)

    def attempt(level):
        struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(insns) // 8, ct.addressof(code),
                         ct.addressof(lic), level, LOG_SIZE if level else 0,
                         ct.addressof(logbuf) if level else 0)
        attr[48:64] = name.encode()[:15].ljust(16, b"\0")
        struct.pack_into("<I", attr, 68, expected_attach_type)
        struct.pack_into("<II", attr, 108, attach_btf_id, attach_btf_obj_fd)
        return _sys(PROG_LOAD, attr, f"loading BPF program {name}")[0]

    try:
        return attempt(0)  # no log: a verifier log costs verification time
    except BPFError as e:
        if not log or e.errno == 1:  # EPERM: not allowed at all, a log says no more
            raise
        try:
            return attempt(1)  # the same refusal again, now with the verifier's reasons
        except BPFError as e2:
            e2.log = logbuf.value.decode("utf-8", "replace")
            raise e2 from None


def attach_tracing(prog_fd, what):
    """Attach a loaded fentry/fexit program (to the function it was loaded
    for); the fd whose close detaches it."""
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("<QI", attr, 0, 0, prog_fd)
    return _sys(RAW_TRACEPOINT_OPEN, attr, what)[0]


def map_update_batch(map_fd, keys, values, what):
    """Set elements of a map with u32 keys in one command: ``keys`` (ints)
    and ``values`` (the packed values, in the keys' order)."""
    n = len(keys)
    kbuf = ct.create_string_buffer(struct.pack(f"<{n}I", *keys), max(n * 4, 1))
    vbuf = ct.create_string_buffer(values, max(len(values), 1))
    attr = bytearray(ATTR_SIZE)
    # struct { in_batch, out_batch, keys, values: u64; count, map_fd: u32; elem_flags, flags: u64 }
    struct.pack_into("<QQQQIIQQ", attr, 0, 0, 0, ct.addressof(kbuf), ct.addressof(vbuf), n, map_fd, 0, 0)
    _sys(MAP_UPDATE_BATCH, attr, what)


def link_kprobe_multi(prog_fd, symbols, cookies, retprobe, what, addrs=()):
    """One kprobe-multi link of a loaded program to every function in
    ``symbols`` (each call gets its cookie); the link's fd.  With ``addrs``
    (the functions' kallsyms addresses, in the same order) the kernel is
    given those: it need not look every name up among all its symbols (on
    the 6.12 guest, 0.08 s instead of 0.18-0.35 s for 388 tcp_* functions)."""
    n = len(symbols)
    cks = (ct.c_uint64 * n)(*cookies)
    if addrs:
        assert len(addrs) == n
        where = (ct.c_uint64 * n)(*addrs)
        syms_p, addrs_p = 0, ct.addressof(where)
    else:
        names = [ct.create_string_buffer(s.encode()) for s in symbols]
        syms = (ct.c_char_p * n)(*[ct.cast(b, ct.c_char_p) for b in names])
        syms_p, addrs_p = ct.addressof(syms), 0
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("<IIII", attr, 0, prog_fd, 0, TRACE_KPROBE_MULTI, 0)
    struct.pack_into("<IIQQQ", attr, 16, KPROBE_MULTI_RETURN if retprobe else 0, n,
                     syms_p, addrs_p, ct.addressof(cks))
    return _sys(LINK_CREATE, attr, what)[0]


def _obj_info(fd, size):
    info = ct.create_string_buffer(size)
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, fd, size, ct.addressof(info))
    _sys(OBJ_GET_INFO_BY_FD, attr, "reading BPF object info")
    return info


@dataclass(frozen=True)
class ProgInfo:
    name: str
    run_time_ns: int
    run_cnt: int
    recursion_misses: int  # calls the program skipped because it was already running on the CPU


def prog_info(fd):
    raw = _obj_info(fd, 232).raw
    name = raw[64:80].split(b"\0", 1)[0].decode("ascii", "replace")
    return ProgInfo(name, *struct.unpack_from("<QQQ", raw, 192))


def btf_obj_fd(module):
    """An fd of the kernel BTF object called ``module`` (a loaded module's),
    for attaching to its functions; BPFError if there is none."""
    attr = bytearray(ATTR_SIZE)
    next_id = 0
    while True:
        struct.pack_into("<I", attr, 0, next_id)
        try:
            _, buf = _sys(BTF_GET_NEXT_ID, attr, "listing BTF objects")
        except BPFError as e:
            if e.errno == 2:  # ENOENT: no more
                raise BPFError(2, f"module {module}: no BTF object loaded") from None
            raise
        next_id = struct.unpack_from("<I", buf.raw, 4)[0]
        fattr = bytearray(ATTR_SIZE)
        struct.pack_into("<I", fattr, 0, next_id)
        try:
            fd = _sys(BTF_GET_FD_BY_ID, fattr, "opening a BTF object")[0]
        except BPFError:
            continue  # gone meanwhile
        name = ct.create_string_buffer(64)
        info = ct.create_string_buffer(32)
        struct.pack_into("<QIIQI", info, 0, 0, 0, 0, ct.addressof(name), 64)
        iattr = bytearray(ATTR_SIZE)
        struct.pack_into("<IIQ", iattr, 0, fd, 32, ct.addressof(info))
        try:
            _sys(OBJ_GET_INFO_BY_FD, iattr, "reading BTF object info")
        except BPFError:
            os.close(fd)
            continue
        if name.value.decode("ascii", "replace") == module:
            return fd
        os.close(fd)


# r0 = 0; exit: a program that does nothing, for probing what the kernel allows
NOTHING = bytes.fromhex("b700000000000000" "9500000000000000")
