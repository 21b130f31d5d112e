"""The `kernel` renderer on hand-built BTF: the format doc's verified strings and quirks.

(tests/host/test_kernel_oracle.py compares it with the real helper on vmlinux.)
"""

import struct

import pytest
from btfwriter import demo_types

from ksnoop.btf import BTF
from ksnoop.errors import RenderError
from ksnoop.render.snprintf import KernelRenderer, render_kernel

BLOB, IDS = demo_types()


@pytest.fixture(scope="module")
def btf():
    return BTF(BLOB, use_cache=False)


def demo_bytes():
    d = bytearray(120)
    struct.pack_into("<i", d, 0, -7)
    d[4:7] = b"lo\n"
    struct.pack_into("<Q", d, 16, 0xFFFF888001234560)
    struct.pack_into("<I", d, 24, 2)
    struct.pack_into("<I", d, 28, 5 | (0x1D << 3))
    d[29] = 1
    struct.pack_into("<Q", d, 32, 5)
    struct.pack_into("<III", d, 40, 0, 6, 0)
    struct.pack_into("<IIII", d, 52, 0, 2, 3, 0)
    struct.pack_into("<QQ", d, 72, 0, 0xFFFF888000000010)
    d[88] = 1
    struct.pack_into("<i", d, 92, 3)
    struct.pack_into("<5I", d, 96, 0, 0, 1, 0, 0)
    return bytes(d)


def test_selftest_strings(btf):
    data = struct.pack("<Ii", 3, -1)
    be = IDS["btf_enum"]
    assert render_kernel(btf, be, data, 1) == "(struct btf_enum){.name_off = (__u32)3,.val = (__s32)-1,}"
    assert render_kernel(btf, be, data, 0) == \
        "(struct btf_enum){\n .name_off = (__u32)3,\n .val = (__s32)-1,\n}\n"
    assert render_kernel(btf, be, data, 2) == "{\n 3,\n -1,\n}\n"
    insn = bytes([1, 0x32]) + struct.pack("<hi", 4, 5)
    assert render_kernel(btf, IDS["bpf_insn"], insn, 1) == (
        "(struct bpf_insn){.code = (__u8)1,.dst_reg = (__u8)0x2,.src_reg = (__u8)0x3,"
        ".off = (__s16)4,.imm = (__s32)5,}")
    assert render_kernel(btf, IDS["bpf_insn"], insn, 3) == "{1,0x2,0x3,4,5,}"
    lh = struct.pack("<QQ", 1, 0)
    assert render_kernel(btf, IDS["list_head"], lh, 5) == \
        "(struct list_head){.next = (struct list_head *)0x0000000000000001,}"
    assert render_kernel(btf, IDS["atomic_t"], bytes(4), 1) == "(atomic_t){}"
    assert render_kernel(btf, IDS["int"], bytes(4), 1) == "(int)0"
    cmd = IDS["bpf_cmd"]
    assert render_kernel(btf, cmd, bytes(4), 1) == "(enum bpf_cmd)BPF_MAP_CREATE"
    assert render_kernel(btf, cmd, struct.pack("<i", 2000), 1) == "(enum bpf_cmd)2000"
    assert render_kernel(btf, cmd, struct.pack("<i", -1), 1) == "(enum bpf_cmd)4294967295"
    assert render_kernel(btf, IDS["sign"], struct.pack("<i", -5), 1) == "(enum sign)-5"


def test_quirks_compact(btf):
    text = render_kernel(btf, IDS["demo"], demo_bytes(), 1 | 4)
    assert text == (
        "(struct demo){.a = (int)-7,.name = (char[])['l','o',10,],"
        ".next = (struct list_head *)0xffff888001234560,.cmd = (enum bpf_cmd)BPF_MAP_UPDATE_ELEM,"
        ".f1 = (unsigned int)0x5,.f2 = (int)0x1d,.fe = (enum bpf_cmd)0x1,"
        "(union){.x = (u64)5,.y = (unsigned int)5,},.gids = (kgid_t[])[6,},],"
        ".m = (unsigned int[][])[(unsigned int[])[2,],(unsigned int[])[2,],],"
        ".ok = (bool)1,.c = ()3,.cb = (__u32[])[1,],}")


def test_quirks_zero_noncompact(btf):
    text = render_kernel(btf, IDS["demo"], demo_bytes(), 8 | 4)
    # pointer array: stride 0 and no opening "[" ; struct elements: no "{"
    assert " .ptrs = (struct list_head *[])\n  0x0000000000000000,\n  0x0000000000000000,\n ],\n" in text
    assert " .gids = (kgid_t[])[\n  \n   0,\n  },\n" in text
    assert text.endswith(" .cb = (__u32[])[\n  0,\n  0,\n  1,\n  0,\n  0,\n ],\n}\n")


def test_unsupported_and_pointers(btf):
    assert render_kernel(btf, IDS["func"], b"") == "<unsupported kind:12>"
    assert render_kernel(btf, IDS["fwd"], b"") == "<unsupported kind:7>"
    assert render_kernel(btf, IDS["void *"], struct.pack("<Q", 0xABC), 5) == "( *)0x0000000000000abc"
    hashed = KernelRenderer(btf, IDS["void *"], 1, ptr_hash=lambda v: "%016x" % (v ^ 1))
    assert hashed.render(struct.pack("<Q", 0xABC)) == "( *)0x0000000000000abd"


def test_truncation_is_snprintf_like(btf):
    r = KernelRenderer(btf, IDS["btf_enum"], 1)
    data = struct.pack("<Ii", 3, -1)
    full = r.render(data).encode()
    assert r.snprintf(data, 10) == (full[:9], len(full))
    assert r.snprintf(data, 1) == (b"", len(full))
    assert r.snprintf(data, len(full) + 1) == (full, len(full))


def test_short_data_faults_like_the_kernel(btf):
    r = KernelRenderer(btf, IDS["btf_enum"], 1)
    text, status = r.show(b"\x03\0")
    assert status == -14 and text == ""
    text, status = KernelRenderer(btf, IDS["demo"], 1 | 4).show(demo_bytes()[:40])
    assert status == -14 and text.startswith("(struct demo){.a = (int)-7,")


def test_errors(btf):
    with pytest.raises(RenderError):
        KernelRenderer(btf, IDS["int"], 16)
    with pytest.raises(RenderError):
        KernelRenderer(btf, 0, 0)
