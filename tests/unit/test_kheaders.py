"""ksnoop.kernel.headers: C text from BTF, and the header tree on disk (no root needed)."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from ksnoop import cachedir
from ksnoop.kernel import arch
from ksnoop.kernel import headers as kheaders

VMLINUX = "/sys/kernel/btf/vmlinux"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """HOME and TMPDIR inside this test's tmp; this run's private directory made fresh."""
    for var in ("KSNOOP_CACHE_DIR", "XDG_CACHE_HOME", "KSNOOP_NO_CACHE"):
        monkeypatch.delenv(var, raising=False)
    os.mkdir(tmp_path / "tmp")
    os.chmod(tmp_path / "tmp", 0o1777)  # like /tmp
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(cachedir, "_scratch", {"pid": None, "path": None})
    return monkeypatch


def _private(path):
    """Every entry of the tree at ``path`` is ours and not writable by group/others."""
    for top, dirs, files in os.walk(path):
        for name in [""] + dirs + files:
            st = os.lstat(os.path.join(top, name))
            assert st.st_uid == os.getuid()
            assert stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o022, os.path.join(top, name)
    return True


def _plant(tree_dir, marker="#error ksnoop-test: planted header used\n"):
    """A tree an attacker prepared: the only file the old code looked for, poisoned."""
    os.makedirs(os.path.join(tree_dir, "include/asm"))
    with open(os.path.join(tree_dir, "include/asm/ptrace.h"), "w") as f:
        f.write(marker)
    return marker


def _ptrace(root):
    with open(os.path.join(root, "include/asm/ptrace.h")) as f:
        return f.read()


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
    assert _private(tmp_path / "cache")
    inode = os.stat(root).st_ino
    assert kheaders.ensure_header_tree(btf) == root  # reused
    assert os.stat(root).st_ino == inode
    assert [n for n in os.listdir(tmp_path / "cache") if n.startswith(".")] == []  # no leftovers


def test_planted_tree_at_the_old_tmp_fallback_is_never_used(btf, tmp_path, cache_env):
    """The reported attack: the cache is unwritable, and someone created the
    predictable fallback <tmp>/ksnoop-<uid> first, with a header of their own."""
    (tmp_path / "file").write_text("not a directory")
    cache_env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "file/cache"))  # unwritable, even for root
    name = f"kheaders-{kheaders.tree_digest(btf, arch.current())}"
    planted = tmp_path / f"tmp/ksnoop-{os.getuid()}" / name
    marker = _plant(planted)
    root = kheaders.ensure_header_tree(btf)
    assert marker not in _ptrace(root) and "struct pt_regs {" in _ptrace(root)
    assert os.path.dirname(root) != str(planted.parent)
    assert root.startswith(str(tmp_path / "tmp/ksnoop-")) and _private(os.path.dirname(root))
    assert stat.S_IMODE(os.lstat(os.path.dirname(root)).st_mode) == 0o700
    assert _ptrace(planted) == marker  # untouched


def test_cache_writable_by_others_is_bypassed(btf, tmp_path, cache_env):
    cache = tmp_path / "cache"
    name = f"kheaders-{kheaders.tree_digest(btf, arch.current())}"
    marker = _plant(cache / name)
    os.chmod(cache, 0o777)
    cache_env.setenv("KSNOOP_CACHE_DIR", str(cache))
    root = kheaders.ensure_header_tree(btf)
    assert not root.startswith(str(cache)) and marker not in _ptrace(root)
    assert _ptrace(cache / name) == marker  # not ours to clean up


def test_tree_that_is_a_symlink_is_not_followed(btf, tmp_path, cache_env):
    cache = tmp_path / "cache"
    os.mkdir(cache, 0o700)
    cache_env.setenv("KSNOOP_CACHE_DIR", str(cache))
    marker = _plant(tmp_path / "theirs")
    name = f"kheaders-{kheaders.tree_digest(btf, arch.current())}"
    os.symlink(tmp_path / "theirs", cache / name)
    root = kheaders.ensure_header_tree(btf)
    assert root == str(cache / name) and not os.path.islink(root)
    assert marker not in _ptrace(root) and _ptrace(tmp_path / "theirs") == marker


def test_no_safe_place_is_one_line(btf, tmp_path, cache_env):
    from ksnoop.errors import KsnoopError

    (tmp_path / "file").write_text("not a directory")
    cache_env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "file/cache"))
    os.chmod(tmp_path / "tmp", 0o777)  # not sticky: anyone could swap our directory
    with pytest.raises(KsnoopError) as e:
        kheaders.ensure_header_tree(btf)
    assert str(e.value) == (
        f"no safe place for the kernel header tree: {tmp_path}/file/cache: Not a directory; "
        f"private temporary directory: {tmp_path}/tmp is writable by group or others (mode 0777)")


def _edit_ptrace(root):
    with open(os.path.join(root, "include/asm/ptrace.h"), "a") as f:
        f.write("#error modified after build\n")


def _group_writable(root):
    os.chmod(os.path.join(root, "include/asm/page.h"), 0o666)


def _extra_header(root):
    with open(os.path.join(root, "include/linux/bpf.h"), "w") as f:
        f.write("#error extra header\n")


def _retarget_link(root):
    link = os.path.join(root, "include/uapi/linux/types.h")
    os.unlink(link)
    os.symlink(os.path.join(os.path.dirname(root), "elsewhere.h"), link)


def _file_made_symlink(root):
    page = os.path.join(root, "include/asm/page.h")
    os.rename(page, page + ".real")
    os.symlink(page + ".real", page)


@pytest.mark.parametrize("tamper", [_edit_ptrace, _group_writable, _extra_header, _retarget_link,
                                    _file_made_symlink], ids=lambda f: f.__name__[1:])
def test_tree_changed_after_build_is_rebuilt(btf, tmp_path, cache_env, tamper):
    cache_env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "cache"))
    root = kheaders.ensure_header_tree(btf)
    tamper(root)
    assert kheaders.ensure_header_tree(btf) == root
    assert _private(root) and "#error" not in _ptrace(root)
    assert not os.path.exists(os.path.join(root, "include/linux/bpf.h"))
    page = os.path.join(root, "include/asm/page.h")
    assert stat.S_ISREG(os.lstat(page).st_mode)
    assert os.readlink(os.path.join(root, "include/uapi/linux/types.h")) == \
        "/usr/include/linux/types.h"
    assert [n for n in os.listdir(tmp_path / "cache")
            if not n.startswith("btf-")] == [os.path.basename(root)]  # the old tree is gone
    fresh = kheaders.tree_contents(btf, arch.current())
    assert kheaders.tree_matches(root, fresh)
    tamper(root)
    assert not kheaders.tree_matches(root, fresh)


def test_concurrent_first_runs_agree(tmp_path):
    """Runs racing to build the same tree all get a complete, checked tree."""
    code = ("import sys; from ksnoop.btf import BTF; from ksnoop.kernel import headers as h; "
            "print(h.ensure_header_tree(BTF(open(sys.argv[1], 'rb').read())))")
    env = dict(os.environ, KSNOOP_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", code, VMLINUX], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    (root,) = {out.strip() for out, _ in outs}
    assert root.startswith(str(tmp_path / "cache/kheaders-")) and _private(root)
    assert [n for n in os.listdir(tmp_path / "cache") if n.startswith(".")] == []


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
