"""ksnoop.kernel.headers: C text from BTF, and the header tree on disk (no root needed)."""

import os
import shutil
import subprocess

import pytest

from ksnoop.kernel import arch
from ksnoop.kernel import headers as kheaders

VMLINUX = "/sys/kernel/btf/vmlinux"


@pytest.fixture(scope="module")
def btf(vmlinux_btf):
    return vmlinux_btf


@pytest.fixture
def x86(btf):
    if os.uname().machine != "x86_64":
        pytest.skip("checks x86_64 member names")
    return arch.ARCHES["x86_64"]


def test_arch_table():
    x = arch.ARCHES["x86_64"]
    assert x.arg_regs == ("di", "si", "dx", "cx", "r8", "r9")
    assert x.arg(0) == "ctx->di" and x.ret() == "ctx->ax"
    assert (x.ip_reg, x.sp_reg) == ("ip", "sp")
    a = arch.ARCHES["aarch64"]
    assert a.arg(7, ctx="regs") == "regs->regs[7]" and a.ret() == "ctx->regs[0]"
    with pytest.raises(Exception, match="argument 7"):
        x.arg(6)


def test_pt_regs_has_kernel_member_names(btf, x86):
    text = kheaders.ptrace_h(btf, x86)
    body = text[text.index("struct pt_regs {"):]
    body = body[:body.index("\n};") + 3]
    for reg in x86.arg_regs + (x86.ret_reg, x86.ip_reg, x86.sp_reg, "orig_ax", "flags"):
        assert f"long unsigned int {reg};" in body
    # offsets come straight from BTF and are checked at compile time
    assert "_Static_assert(sizeof(struct pt_regs) == 168" in text
    assert "__builtin_offsetof(struct pt_regs, di) == 112" in text
    assert "__builtin_offsetof(struct pt_regs, ax) == 80" in text


def test_struct_text_handles_arrays_anonymous_members_and_bitfields(btf):
    text = kheaders.struct_text(btf, ["sk_buff"])
    sk = text[text.index("struct sk_buff {"):]
    assert "\tchar cb[48];" in sk  # array
    assert "\tunion {\n\t\tstruct {\n" in sk  # nested anonymous members
    assert "__u8 cloned : 1;" in sk  # bitfield
    assert "void (*destructor)(struct sk_buff *);" in sk  # function pointer
    assert "struct sock;" in text  # only reached through a pointer: forward declared
    assert text.index("struct rb_node {") < text.index("struct sk_buff {")  # deps first


def test_missing_struct_is_a_btf_error(btf):
    from ksnoop.errors import BTFError

    with pytest.raises(BTFError, match="no_such_struct"):
        kheaders.struct_text(btf, ["no_such_struct"])


def test_tree_layout_and_reuse(btf, tmp_path, monkeypatch):
    monkeypatch.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "cache"))
    a = arch.current()
    root = kheaders.ensure_header_tree(btf)
    assert root.startswith(str(tmp_path / "cache")) and "kheaders-" in root
    for rel in ("include/linux/kconfig.h", "include/linux/types.h", "include/linux/log2.h",
                "include/asm/ptrace.h", "include/asm/page.h", "include/uapi/linux/bpf.h"):
        assert os.path.isfile(os.path.join(root, rel)), rel
    assert os.path.getsize(os.path.join(root, "include/uapi/linux/bpf.h")) < 100  # stub
    assert os.path.islink(os.path.join(root, "include/uapi/linux/types.h"))
    assert os.path.realpath(os.path.join(root, "arch", a.kernel_arch, "include/uapi")) == \
        os.path.realpath(f"/usr/include/{a.multiarch}")
    assert "CONFIG_BPF_SYSCALL" in open(os.path.join(root, "include/linux/kconfig.h")).read()
    assert kheaders.ensure_header_tree(btf) == root  # reused
    assert [n for n in os.listdir(tmp_path / "cache") if n.startswith(".")] == []  # no leftovers


def test_unwritable_cache_falls_back_to_tmp(btf, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("KSNOOP_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(kheaders.tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    root = kheaders.ensure_header_tree(btf)
    assert root.startswith(str(tmp_path / "tmp"))


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc not installed")
def test_tree_compiles_and_layout_asserts_hold(btf, x86, tmp_path, monkeypatch):
    """The layout checks in ptrace.h pass, and big structs round-trip too."""
    monkeypatch.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "cache"))
    root = kheaders.ensure_header_tree(btf)
    extra = tmp_path / "extra.h"
    extra.write_text(kheaders.struct_text(btf, ["sk_buff", "task_struct", "inode", "sock"]))
    src = tmp_path / "t.c"
    src.write_text('#include <linux/types.h>\n#include <asm/page.h>\n#include "extra.h"\n'
                   "int f(struct pt_regs *r) { return r->di + PAGE_SIZE; }\n")
    out = subprocess.run(
        ["gcc", "-fsyntax-only", "-include", "include/linux/kconfig.h", "-I", "include",
         "-I", f"arch/{x86.kernel_arch}/include/uapi", "-I", "include/uapi",
         "-I", str(tmp_path), str(src)],
        cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
