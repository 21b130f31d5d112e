"""The kernel's own bpf_snprintf_btf(), callable from Python on chosen bytes.

No compiler needed: two tiny BPF_PROG_TYPE_SYSCALL programs are assembled by
hand and loaded with the bpf(2) syscall, then run with BPF_PROG_TEST_RUN.  All
data goes through one mmap-able array map value shared with this process:

    [0, 64)              parameters (type id, flags, buffer size, result, ...)
    [64, 72)             a lone pointer, for asking the kernel how it hashes it
    [IN_OFF, OUT_OFF)    the input object
    [OUT_OFF, VALUE)     the output string

``snprintf`` runs the real helper on the input bytes; ``read_kernel`` copies
kernel memory (by default the current task_struct) with bpf_probe_read_kernel;
``ptr_hash`` learns the per-boot hashed form of a pointer value.
"""

import ctypes
import errno
import mmap
import os
import struct

NR_BPF = 321  # x86_64
BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_PROG_TEST_RUN = 0, 5, 10
BPF_MAP_TYPE_ARRAY = 2
BPF_F_MMAPABLE = 1 << 10
BPF_PROG_TYPE_SYSCALL = 31
BPF_F_SLEEPABLE = 1 << 4
BPF_PSEUDO_MAP_VALUE = 2
HELPER_GET_CURRENT_TASK = 35
HELPER_PROBE_READ_KERNEL = 113
HELPER_SNPRINTF_BTF = 149

HASH_OFF = 64
IN_OFF = 4096
IN_MAX = 64 * 1024
OUT_OFF = IN_OFF + IN_MAX
VALUE_SIZE = 2 * 1024 * 1024
OUT_MAX = VALUE_SIZE - OUT_OFF

# parameter block
P_TYPE_ID, P_FLAGS, P_SIZE, P_RESULT, P_SRC, P_LEN = 0, 4, 8, 16, 24, 32

R0, R1, R2, R3, R4, R5, R6, R7, R10 = 0, 1, 2, 3, 4, 5, 6, 7, 10


class OracleUnavailable(Exception):
    """The host cannot run the oracle: not root.  The only excuse."""


class OracleError(AssertionError):
    """A bpf() call of the oracle failed: the map, a program (with the
    verifier's log) or a test run.  A broken oracle is a failed test."""


def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _ld_map_value(dst, fd, offset=0):
    return _insn(0x18, dst, BPF_PSEUDO_MAP_VALUE, 0, fd) + _insn(0, 0, 0, 0, offset)


def _ldx_w(dst, src, off):
    return _insn(0x61, dst, src, off)


def _ldx_dw(dst, src, off):
    return _insn(0x79, dst, src, off)


def _stx_dw(dst, src, off):
    return _insn(0x7B, dst, src, off)


def _stx_w(dst, src, off):
    return _insn(0x63, dst, src, off)


def _st_w(dst, off, imm):
    return _insn(0x62, dst, 0, off, imm)


def _mov(dst, src):
    return _insn(0xBF, dst, src)


def _mov_imm(dst, imm):
    return _insn(0xB7, dst, 0, 0, imm)


def _add_imm(dst, imm):
    return _insn(0x07, dst, 0, 0, imm)


def _jlt_imm(dst, imm, off):
    return _insn(0xA5, dst, 0, off, imm)


def _jgt_imm(dst, imm, off):
    return _insn(0x25, dst, 0, off, imm)


def _jne_imm(dst, imm, off):
    return _insn(0x55, dst, 0, off, imm)


def _call(helper):
    return _insn(0x85, 0, 0, 0, helper)


def _exit():
    return _insn(0x95)


def _assemble(parts):
    """parts: list of bytes (one or two insns) or ("jump", builder, label)."""
    return b"".join(parts)


def snprintf_program(fd, in_off):
    body = [
        _ld_map_value(R6, fd),
        _ldx_w(R4, R6, P_SIZE),
        _jlt_imm(R4, 1, 16),
        _jgt_imm(R4, OUT_MAX, 15),
        _mov(R7, R6),
        _add_imm(R7, in_off),
        _stx_dw(R10, R7, -16),
        _ldx_w(R2, R6, P_TYPE_ID),
        _stx_w(R10, R2, -8),
        _st_w(R10, -4, 0),
        _mov(R1, R6),
        _add_imm(R1, OUT_OFF),
        _mov(R2, R4),
        _mov(R3, R10),
        _add_imm(R3, -16),
        _mov_imm(R4, 16),
        _ldx_w(R5, R6, P_FLAGS),
        _call(HELPER_SNPRINTF_BTF),
        _stx_dw(R6, R0, P_RESULT),
        _mov_imm(R0, 0),
        _exit(),
    ]
    return _assemble(body)


def read_program(fd):
    body = [
        _ld_map_value(R6, fd),
        _ldx_dw(R3, R6, P_SRC),
        _jne_imm(R3, 0, 2),
        _call(HELPER_GET_CURRENT_TASK),
        _mov(R3, R0),
        _ldx_w(R2, R6, P_LEN),
        _jlt_imm(R2, 1, 5),
        _jgt_imm(R2, IN_MAX, 4),
        _mov(R1, R6),
        _add_imm(R1, IN_OFF),
        _call(HELPER_PROBE_READ_KERNEL),
        _stx_dw(R6, R0, P_RESULT),
        _mov_imm(R0, 0),
        _exit(),
    ]
    return _assemble(body)


class KernelOracle:
    def __init__(self):
        if os.geteuid() != 0:
            raise OracleUnavailable("needs root (CAP_BPF + CAP_PERFMON)")
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._fds = []
        self._hashes = {}
        self.mem = None
        self.void_ptr_id = None
        try:
            attr = struct.pack("<IIIII", BPF_MAP_TYPE_ARRAY, 4, VALUE_SIZE, 1, BPF_F_MMAPABLE)
            self.map_fd = self._bpf(BPF_MAP_CREATE, attr, "map create")
            self.mem = mmap.mmap(self.map_fd, VALUE_SIZE, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            self.prog = self._load(snprintf_program(self.map_fd, IN_OFF), "snprintf")
            self.hash_prog = self._load(snprintf_program(self.map_fd, HASH_OFF), "hash")
            self.read_prog = self._load(read_program(self.map_fd), "read")
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- syscalls
    def _bpf(self, cmd, attr, what):
        buf = ctypes.create_string_buffer(attr.ljust(160, b"\0"), 160)
        ret = self._libc.syscall(NR_BPF, cmd, buf, 160)
        if ret < 0:
            err = ctypes.get_errno()
            raise OracleError(f"bpf({what}) failed: {errno.errorcode.get(err, err)} "
                              f"({os.strerror(err)})")
        if cmd != BPF_PROG_TEST_RUN:
            self._fds.append(ret)
        return ret

    def _load(self, insns, name):
        code = ctypes.create_string_buffer(insns, len(insns))
        lic = ctypes.create_string_buffer(b"GPL")
        log = ctypes.create_string_buffer(65536)
        attr = struct.pack(
            "<IIQQIIQII16s", BPF_PROG_TYPE_SYSCALL, len(insns) // 8, ctypes.addressof(code),
            ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, BPF_F_SLEEPABLE,
            name.encode()[:15],
        )
        try:
            return self._bpf(BPF_PROG_LOAD, attr, f"load {name} program")
        except OracleError as e:
            verifier = log.value.decode(errors="replace").strip()
            raise OracleError(f"{e}; verifier log:\n{verifier or '(empty)'}") from None

    def _run(self, prog):
        attr = struct.pack("<I", prog)
        self._bpf(BPF_PROG_TEST_RUN, attr, "test run")

    def _params(self, **kw):
        m = self.mem
        if "type_id" in kw:
            struct.pack_into("<I", m, P_TYPE_ID, kw["type_id"])
        if "flags" in kw:
            struct.pack_into("<I", m, P_FLAGS, kw["flags"])
        if "size" in kw:
            struct.pack_into("<I", m, P_SIZE, kw["size"])
        if "src" in kw:
            struct.pack_into("<Q", m, P_SRC, kw["src"])
        if "length" in kw:
            struct.pack_into("<I", m, P_LEN, kw["length"])
        struct.pack_into("<q", m, P_RESULT, -99999)

    def _result(self):
        return struct.unpack_from("<q", self.mem, P_RESULT)[0]

    # -------------------------------------------------------------------- API
    def set_input(self, data):
        if len(data) > IN_MAX:
            raise ValueError("input too large for the oracle")
        self.mem[IN_OFF:IN_OFF + len(data)] = data
        # bytes after the object: deterministic, and visible only to reads
        # the kernel makes past the object (it should make none)
        tail = min(64, IN_MAX - len(data))
        self.mem[IN_OFF + len(data):IN_OFF + len(data) + tail] = b"\xa5" * tail

    def snprintf(self, type_id, flags, size=OUT_MAX):
        """Run bpf_snprintf_btf on the current input: (bytes written, return value)."""
        self._params(type_id=type_id, flags=flags, size=size)
        self._run(self.prog)
        ret = self._result()
        if ret < 0:
            return b"", ret
        n = min(ret, size - 1)
        out = self.mem[OUT_OFF:OUT_OFF + n]
        if self.mem[OUT_OFF + n] != 0:
            raise AssertionError("kernel output is not NUL-terminated where expected")
        return out, ret

    def read_kernel(self, addr, length):
        """Kernel memory at ``addr`` (0: the current task_struct), or None if unreadable."""
        self._params(src=addr, length=length)
        self._run(self.read_prog)
        if self._result() != 0:
            return None
        return bytes(self.mem[IN_OFF:IN_OFF + length])

    def ptr_hash(self, value):
        """The 16 hex digits the kernel prints for pointer ``value`` without PTR_RAW."""
        hit = self._hashes.get(value)
        if hit is None:
            struct.pack_into("<Q", self.mem, HASH_OFF, value)
            self._params(type_id=self.void_ptr_id, flags=3, size=64)
            self._run(self.hash_prog)
            n = self._result()
            text = bytes(self.mem[OUT_OFF:OUT_OFF + n]).decode()
            if not (text.startswith("0x") and len(text) == 18):
                raise AssertionError(f"unexpected hashed pointer text {text!r}")
            hit = self._hashes[value] = text[2:]
        return hit

    def close(self):
        if self.mem is not None:
            self.mem.close()
            self.mem = None
        for fd in self._fds:
            os.close(fd)
        self._fds = []
