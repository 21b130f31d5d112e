"""ksnoop.cachedir: where the cache lives and which paths in it are trusted;
the BTF index cache built on it (no root needed, except where marked)."""

import os
import stat
import subprocess
import sys

import pytest

from ksnoop import cachedir
from ksnoop.btf import BTF, index_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OTHER_UID = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another uid")


@pytest.fixture
def env(monkeypatch, tmp_path):
    for var in ("KSNOOP_CACHE_DIR", "XDG_CACHE_HOME", "KSNOOP_NO_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    os.mkdir(tmp_path / "home", 0o700)
    # a private scratch directory of this test's own, under this test's tmp
    monkeypatch.setattr(cachedir, "_scratch", {"pid": None, "path": None})
    monkeypatch.setattr(cachedir.tempfile, "tempdir", str(tmp_path))
    return monkeypatch


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------------ where
def test_configured_keeps_the_knobs(env, tmp_path):
    assert cachedir.configured() == str(tmp_path / "home/.cache/ksnoop")
    env.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute paths only
    assert cachedir.configured() == str(tmp_path / "home/.cache/ksnoop")
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cachedir.configured() == str(tmp_path / "xdg/ksnoop")
    env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "explicit"))
    assert cachedir.configured() == str(tmp_path / "explicit")
    env.setenv("KSNOOP_NO_CACHE", "1")
    assert cachedir.configured() is None and cachedir.persistent() is None


def test_persistent_is_created_private(env, tmp_path):
    root = cachedir.persistent()
    assert root == str(tmp_path / "home/.cache/ksnoop")
    assert mode(root) == 0o700 and mode(tmp_path / "home/.cache") == 0o700
    assert os.lstat(root).st_uid == os.getuid()


# ------------------------------------------------------------------ trust
@pytest.mark.parametrize("bad_mode", [0o770, 0o707, 0o777, 0o1777])
def test_root_writable_by_group_or_others_is_refused(env, tmp_path, bad_mode):
    root = tmp_path / "cache"
    os.mkdir(root)
    os.chmod(root, bad_mode)
    env.setenv("KSNOOP_CACHE_DIR", str(root))
    assert cachedir.persistent() is None
    with pytest.raises(cachedir.UnsafeCacheError, match="writable by group or others"):
        cachedir.secure_dir(str(root))
    problems = []
    (only,) = cachedir.roots(problems=problems)  # bypassed: this run's private directory
    assert only == cachedir.scratch() and not only.startswith(str(root))
    assert problems == [f"{root} is writable by group or others (mode {bad_mode:04o})"]


def test_scratch_is_made_only_when_needed(env, tmp_path):
    it = cachedir.roots()
    assert next(it) == str(tmp_path / "home/.cache/ksnoop")
    assert [n for n in os.listdir(tmp_path) if n.startswith("ksnoop-")] == []
    assert next(it) == cachedir.scratch()


def test_writable_ancestor_is_refused_unless_sticky(env, tmp_path):
    shared = tmp_path / "shared"
    os.mkdir(shared)
    os.mkdir(shared / "cache", 0o700)
    env.setenv("KSNOOP_CACHE_DIR", str(shared / "cache"))
    os.chmod(shared, 0o777)  # anyone may rename our cache away and put theirs there
    assert cachedir.persistent() is None
    with pytest.raises(cachedir.UnsafeCacheError, match=f"{shared} is writable"):
        cachedir.secure_dir(str(shared / "cache"))
    os.chmod(shared, 0o1777)  # like /tmp: only the owner of an entry may rename it
    assert cachedir.persistent() == str(shared / "cache")


def test_symlinked_root_is_checked_at_its_target(env, tmp_path):
    os.mkdir(tmp_path / "real", 0o700)
    os.symlink(tmp_path / "real", tmp_path / "link")
    env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "link"))
    assert cachedir.persistent() == str(tmp_path / "real")  # our link, our dir: fine
    os.chmod(tmp_path / "real", 0o777)
    assert cachedir.persistent() is None  # the target is what counts


@as_root
def test_symlinked_root_owned_by_someone_else_is_refused(env, tmp_path):
    os.mkdir(tmp_path / "real", 0o700)  # ours and private: only the link is foreign
    os.symlink(tmp_path / "real", tmp_path / "link")
    os.lchown(tmp_path / "link", OTHER_UID, OTHER_UID)
    env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "link"))
    assert cachedir.persistent() is None
    with pytest.raises(cachedir.UnsafeCacheError, match=f"symlink owned by uid {OTHER_UID}"):
        cachedir.secure_dir(str(tmp_path / "link"))


@as_root
@pytest.mark.parametrize("where", ["root", "ancestor"])
def test_root_or_ancestor_owned_by_someone_else_is_refused(env, tmp_path, where):
    os.makedirs(tmp_path / "up/cache", 0o700)
    os.chown(tmp_path / ("up/cache" if where == "root" else "up"), OTHER_UID, OTHER_UID)
    env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "up/cache"))
    assert cachedir.persistent() is None
    with pytest.raises(cachedir.UnsafeCacheError, match=f"owned by uid {OTHER_UID}"):
        cachedir.secure_dir(str(tmp_path / "up/cache"))


def test_read_file_trusts_only_our_private_regular_files(env, tmp_path):
    d = cachedir.persistent()
    good = os.path.join(d, "good")
    cachedir.replace_file(d, "good", b"data")
    assert cachedir.read_file(good) == b"data" and mode(good) == 0o600
    assert [n for n in os.listdir(d) if n != "good"] == []  # no temporary left
    os.symlink(good, os.path.join(d, "link"))
    assert cachedir.read_file(os.path.join(d, "link")) is None  # O_NOFOLLOW
    os.mkfifo(os.path.join(d, "fifo"), 0o600)
    assert cachedir.read_file(os.path.join(d, "fifo")) is None  # and it did not block
    os.chmod(good, 0o620)
    assert cachedir.read_file(good) is None
    if os.geteuid() == 0:
        os.chmod(good, 0o600)
        os.chown(good, OTHER_UID, OTHER_UID)
        assert cachedir.read_file(good) is None
    with pytest.raises(FileExistsError):  # create_file never writes through what is there
        cachedir.create_file(os.path.join(d, "link"), b"x")
    assert open(good, "rb").read() == b"data"


# ------------------------------------------------------------ no safe place
def test_unwritable_home_falls_back_to_a_private_directory(env, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    env.setenv("HOME", str(tmp_path / "file/home"))
    assert cachedir.persistent() is None
    (only,) = cachedir.roots()
    assert os.path.dirname(only) == str(tmp_path) and os.path.basename(only).startswith("ksnoop-")
    assert mode(only) == 0o700 and cachedir.scratch() == only  # one per run


def test_nothing_safe_says_why(env, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "file/cache"))
    os.mkdir(tmp_path / "tmp")
    os.chmod(tmp_path / "tmp", 0o777)  # a TMPDIR where anyone can rename entries
    env.setattr(cachedir.tempfile, "tempdir", str(tmp_path / "tmp"))
    problems = []
    assert list(cachedir.roots(problems=problems)) == []
    assert problems == [f"{tmp_path}/file/cache: Not a directory",
                        f"private temporary directory: {tmp_path}/tmp is writable by group or "
                        "others (mode 0777)"]
    assert os.listdir(tmp_path / "tmp") == []  # the refused directory was removed


def test_scratch_is_removed_at_exit(tmp_path):
    code = ("import os; from ksnoop import cachedir; d = cachedir.scratch(); "
            "open(os.path.join(d, 'f'), 'w').close(); print(d)")
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.startswith(f"{tmp_path}/ksnoop-") and not os.path.exists(out)


# ------------------------------------------------------------- BTF index
def _index_file(root):
    (name,) = [n for n in os.listdir(root) if n.startswith("btf-") and n.endswith(".idx")]
    return os.path.join(root, name)


def _truncate(blob, key):
    return blob[:-8]


def _flip(blob, key):
    mid = len(blob) // 2
    return blob[:mid] + bytes([blob[mid] ^ 0x40]) + blob[mid + 1:]


def _shifted(blob, key):
    """Well-formed (right digest) but inconsistent with the BTF: offsets moved."""
    from array import array

    head = len(index_cache._VERSION) + index_cache._DIGEST
    body = blob[head:]
    offsets, names = array("I"), array("I")
    offsets.frombytes(body[:len(body) // 2])
    names.frombytes(body[len(body) // 2:])
    offsets = array("I", [o + 4 for o in offsets])
    body = offsets.tobytes() + names.tobytes()
    return index_cache._VERSION + index_cache._digest(key, body) + body


@pytest.mark.parametrize("damage", [_truncate, _flip, _shifted], ids=lambda f: f.__name__[1:])
def test_damaged_index_is_rebuilt(vmlinux_btf, env, tmp_path, damage):
    env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "cache"))
    data = vmlinux_btf.data
    BTF(data, name="vmlinux")
    path = _index_file(tmp_path / "cache")
    good = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(damage(good, os.path.basename(path)[4:-4]))
    again = BTF(data, name="vmlinux")
    assert again._offsets == vmlinux_btf._offsets and again._name_offs == vmlinux_btf._name_offs
    assert again[len(again) - 1] == vmlinux_btf[len(vmlinux_btf) - 1]
    assert open(path, "rb").read() == good  # and the cache file was rewritten


def _forged(blob, key):
    """An index that passes every content check (digest, first and last
    records) but is wrong in the middle: only the trust rule can refuse it."""
    from array import array

    head = len(index_cache._VERSION) + index_cache._DIGEST
    body = blob[head:]
    offsets = array("I")
    offsets.frombytes(body[:len(body) // 2])
    offsets[1], offsets[2] = offsets[2], offsets[1]
    body = offsets.tobytes() + body[len(body) // 2:]
    return index_cache._VERSION + index_cache._digest(key, body) + body


def test_index_not_ours_or_through_a_symlink_is_not_used(vmlinux_btf, env, tmp_path):
    env.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "cache"))
    BTF(vmlinux_btf.data, name="vmlinux")
    path = _index_file(tmp_path / "cache")
    key = os.path.basename(path)[4:-4]
    with open(path, "rb") as f:
        forged = _forged(f.read(), key)
    with open(path, "wb") as f:
        f.write(forged)
    loaded = index_cache.load(key, vmlinux_btf)
    assert loaded is not None and loaded[0] != vmlinux_btf._offsets  # private: taken as is
    os.chmod(path, 0o666)
    assert index_cache.load(key, vmlinux_btf) is None
    os.chmod(path, 0o600)
    os.chmod(tmp_path / "cache", 0o770)
    assert index_cache.load(key, vmlinux_btf) is None  # nor in a directory others can write
    os.chmod(tmp_path / "cache", 0o700)
    os.rename(path, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", path)
    assert index_cache.load(key, vmlinux_btf) is None
    again = BTF(vmlinux_btf.data, name="vmlinux")  # rebuilt; the link replaced by a private file
    assert again._offsets == vmlinux_btf._offsets
    assert stat.S_ISREG(os.lstat(path).st_mode) and stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert index_cache.load(key, vmlinux_btf)[0] == vmlinux_btf._offsets
    if os.geteuid() == 0:
        os.chown(path, OTHER_UID, OTHER_UID)
        assert index_cache.load(key, vmlinux_btf) is None
