"""Issue #7, defect 5, end to end: header trees someone else prepared are never
compiled into the BPF program root loads (`ksnoop trace --dry-run` through the
real verifier), and the cache still works for a non-root user with only
CAP_BPF+CAP_PERFMON whose home is unwritable."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest
from hostenv import bpf_skip_reason

pytestmark = pytest.mark.host

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OTHER = 65534  # nobody
POISON = "#error PLANTED_HEADER_COMPILED\n"


@pytest.fixture(scope="module", autouse=True)
def host_ok():
    reason = bpf_skip_reason("BPF program load")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tree_name(vmlinux_btf):
    from ksnoop.kernel import arch
    from ksnoop.kernel import headers as kheaders

    return f"kheaders-{kheaders.tree_digest(vmlinux_btf, arch.current())}"


@pytest.fixture
def env(tmp_path):
    """HOME and XDG_CACHE_HOME unwritable (even for root), TMPDIR a /tmp of our own."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("KSNOOP_CACHE_DIR", "XDG_CACHE_HOME", "KSNOOP_NO_CACHE")}
    (tmp_path / "file").write_text("not a directory")
    e["HOME"] = str(tmp_path / "file/home")
    e["XDG_CACHE_HOME"] = str(tmp_path / "file/xdg")
    os.mkdir(tmp_path / "tmp")
    os.chmod(tmp_path / "tmp", 0o1777)
    e["TMPDIR"] = str(tmp_path / "tmp")
    e["PYTHONPATH"] = ROOT
    return e


def plant(tree_dir, owner=OTHER):
    """What an unprivileged user can prepare: a tree with a poisoned asm/ptrace.h."""
    os.makedirs(tree_dir / "include/asm")
    (tree_dir / "include/asm/ptrace.h").write_text(POISON)
    top = tree_dir.parent
    for path in [top] + [p for p in top.rglob("*")]:
        os.lchown(path, owner, owner)


def dry_run(env, *args, user=()):
    p = subprocess.run([*user, sys.executable, "-m", "ksnoop", "trace", "--dry-run", "-d",
                        *args, "ip_send_skb"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "PLANTED_HEADER" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert "loaded 2 programs through the verifier" in p.stderr.splitlines()[-1]
    (kdir,) = [line.split("=", 1)[1] for line in p.stderr.splitlines()
               if line.startswith("ksnoop: BCC_KERNEL_SOURCE=")]
    return kdir


def test_planted_tree_at_the_old_tmp_fallback_is_not_compiled(env, tmp_path, tree_name):
    """The report: root's cache is unwritable, so the old code fell back to
    <tmp>/ksnoop-0, which another user had created with a header of theirs."""
    planted = tmp_path / "tmp/ksnoop-0" / tree_name
    plant(planted)
    kdir = dry_run(env)
    assert os.path.dirname(kdir) != str(planted.parent)
    assert os.path.dirname(kdir).startswith(str(tmp_path / "tmp/ksnoop-"))  # this run's own
    assert (planted / "include/asm/ptrace.h").read_text() == POISON  # left alone
    assert os.listdir(tmp_path / "tmp") == ["ksnoop-0"]  # this run's directory was removed


def test_cache_root_owned_by_someone_else_is_not_used(env, tmp_path, tree_name):
    plant(tmp_path / "cache" / tree_name)
    env["KSNOOP_CACHE_DIR"] = str(tmp_path / "cache")
    kdir = dry_run(env)
    assert not kdir.startswith(str(tmp_path / "cache"))
    assert os.listdir(tmp_path / "tmp") == []


def test_correct_tree_owned_by_someone_else_is_replaced(env, tmp_path, tree_name, vmlinux_btf):
    """Even a tree with exactly the right bytes is not trusted when another
    user owns it (they could change it between our check and BCC's read)."""
    from ksnoop.kernel import arch
    from ksnoop.kernel import headers as kheaders

    cache = tmp_path / "cache"
    os.mkdir(cache, 0o700)
    tree = kheaders.tree_contents(vmlinux_btf, arch.current())
    os.mkdir(cache / tree_name, 0o755)
    kheaders.write_tree(str(cache / tree_name), tree)
    for path in [cache / tree_name] + list((cache / tree_name).rglob("*")):
        os.lchown(path, OTHER, OTHER)
    env["KSNOOP_CACHE_DIR"] = str(cache)
    assert dry_run(env) == str(cache / tree_name)
    assert os.lstat(cache / tree_name).st_uid == 0  # rebuilt by us
    assert kheaders.tree_matches(str(cache / tree_name), tree)
    assert [n for n in os.listdir(cache) if not n.startswith("btf-")] == [tree_name]  # no leftovers


@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv (util-linux) not installed")
def test_non_root_with_cap_bpf_and_unwritable_home(env, tree_name):
    """Issue #11 relies on this: CAP_BPF+CAP_PERFMON, no root, no writable home."""
    user = ["setpriv", f"--reuid={OTHER}", f"--regid={OTHER}", "--clear-groups",
            "--inh-caps=+bpf,+perfmon", "--ambient-caps=+bpf,+perfmon"]
    top = tempfile.mkdtemp(prefix="ksnoop-test-nonroot-")  # in /tmp: nobody can reach it
    try:
        os.chown(top, OTHER, OTHER)
        env = dict(env, TMPDIR=top, HOME="/nonexistent", XDG_CACHE_HOME="/nonexistent")
        kdir = dry_run(env, user=user)
        assert kdir.startswith(f"{top}/ksnoop-") and os.listdir(top) == []  # removed at exit
        home = os.path.join(top, "home")
        os.mkdir(home, 0o700)
        os.chown(home, OTHER, OTHER)
        env["HOME"] = env["XDG_CACHE_HOME"] = home
        kdir = dry_run(env, user=user)  # a writable home: a persistent cache
        assert kdir == os.path.join(home, "ksnoop", tree_name)
        st = os.lstat(kdir)
        assert st.st_uid == OTHER and stat.S_IMODE(st.st_mode) == 0o700
        assert [n for n in os.listdir(os.path.dirname(kdir)) if n.startswith("btf-")]
        assert dry_run(env, user=user) == kdir  # and reused
    finally:
        shutil.rmtree(top)
