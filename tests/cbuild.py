"""gcc for the tests that run generated C natively, with the executables kept
by everything gcc is given: the compiler (its path, size and time), the flags
and the source text.

The unit tier compiles a few hundred small programs.  Under TCG (the unit tier
inside the guest, tests/vm/guest-suite.sh) one gcc run costs 5-12 s, and the
guest sees the host's files: the programs the host's run of the same tests
built are found by the same key there (the same gcc binary given the same
source and flags; a test whose C depends on the running kernel's BTF writes
other C there, and is compiled there).  The tests still run each program and
check what it prints.

KSNOOP_TEST_CC_CACHE: the directory (default build/test-cc in the tree; a
read-only one is only read, as in the guest); "off": no cache.
"""

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEEP = 4000  # programs kept; past this, the least recently used half goes
_compiler = None


def _cache_dir():
    d = os.environ.get("KSNOOP_TEST_CC_CACHE", os.path.join(ROOT, "build", "test-cc"))
    return None if d == "off" else d


def _gcc():
    global _compiler
    if _compiler is None:
        path = os.path.realpath(shutil.which("gcc") or "gcc")
        st = os.stat(path)
        _compiler = (path, f"{path} {st.st_size} {st.st_mtime_ns}")
    return _compiler


def build(src, exe, flags=("-O1", "-w")):
    """Compile the C text ``src`` into the executable ``exe``; returns gcc's
    CompletedProcess (returncode 0 and empty output on a cache hit)."""
    gcc, ident = _gcc()
    key = hashlib.sha256("\0".join((ident, *flags, src)).encode()).hexdigest()
    cache = _cache_dir()
    kept = os.path.join(cache, key) if cache else None
    if kept and os.path.exists(kept):
        shutil.copyfile(kept, exe)
        os.chmod(exe, 0o755)
        with contextlib.suppress(OSError):  # a read-only cache: the guest's view of the host's
            os.utime(kept)  # recently used
        return subprocess.CompletedProcess([gcc], 0, "", "")
    c_file = exe + ".c"
    with open(c_file, "w") as f:
        f.write(src)
    cc = subprocess.run([gcc, *flags, "-o", exe, c_file], capture_output=True, text=True)
    if cc.returncode == 0 and cache:
        _keep(cache, exe, kept)
    return cc


def _keep(cache, exe, kept):
    try:
        os.makedirs(cache, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".new-")
    except OSError:
        return  # not writable here: compiled, not kept
    with os.fdopen(fd, "wb") as out, open(exe, "rb") as f:
        shutil.copyfileobj(f, out)
    os.replace(tmp, kept)  # whole or not at all, whoever else stores it (xdist workers)
    names = os.listdir(cache)
    if len(names) > KEEP:
        paths = [os.path.join(cache, n) for n in names]
        paths.sort(key=lambda p: os.stat(p).st_mtime if os.path.exists(p) else 0)
        for p in paths[:len(paths) // 2]:
            with contextlib.suppress(OSError):  # another worker's pruning got it first
                os.unlink(p)
