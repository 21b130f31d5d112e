"""ksnoop's one cache-directory rule, and safe file operations inside it.

Where: ``$KSNOOP_CACHE_DIR``, else ``$XDG_CACHE_HOME/ksnoop`` (when that is an
absolute path), else ``~/.cache/ksnoop``.  ``KSNOOP_NO_CACHE`` (any non-empty
value) turns the persistent cache off.

Trust: what is in the cache ends up in a BPF program that root loads, so a
cache path is used only if nobody but the current user can change it:

- the cache root (created mode 0700 when missing) is a directory owned by the
  current user and not writable by group or others; if the configured path is
  a symlink, the link itself must be owned by the current user too;
- every directory above the root's real path is owned by root or the current
  user, and not writable by group or others unless it is sticky (like /tmp);
- entries inside are checked with ``lstat``/``O_NOFOLLOW`` (never through a
  symlink), must belong to the current user and must not be writable by group
  or others; new files are written to a private temporary file in the same
  directory and renamed into place.

When no persistent cache is usable (refused by the rule above, or it cannot be
created: an unwritable or missing home), ``scratch()`` provides a fresh
private directory made by ``tempfile.mkdtemp`` (unique, mode 0700), used for
this run only and removed at exit.  ``roots()`` yields these in that order and
says why it skipped one, so that a caller left with nothing can say in one
line why no safe place exists.
"""

import atexit
import os
import shutil
import stat
import tempfile

from .errors import KsnoopError

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class UnsafeCacheError(KsnoopError):
    """A cache path exists but someone other than the current user could change it."""


def configured():
    """The configured persistent cache directory (absolute, not checked), or None."""
    if os.environ.get("KSNOOP_NO_CACHE"):
        return None
    base = os.environ.get("KSNOOP_CACHE_DIR")
    if base:
        return os.path.abspath(base)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "ksnoop")
    home = os.path.expanduser("~")
    if not os.path.isabs(home) or home == "/":
        return None  # no home: never a path relative to the working directory
    return os.path.join(home, ".cache", "ksnoop")


def persistent():
    """The persistent cache directory, created if needed, or None if unusable.

    The path returned is the real path (no symlinks), already checked.
    """
    try:
        return _persistent()
    except (OSError, UnsafeCacheError):
        return None


def _persistent():
    path = configured()
    if path is None:
        raise UnsafeCacheError("the cache is disabled (KSNOOP_NO_CACHE) or there is no home")
    return secure_dir(path, create=True)


_scratch = {"pid": None, "path": None}


def scratch():
    """A private directory for this run only (mode 0700), removed at exit."""
    if _scratch["path"] is not None and _scratch["pid"] == os.getpid():
        return _scratch["path"]
    path = tempfile.mkdtemp(prefix="ksnoop-")
    try:
        real = secure_dir(path, create=False)
    except (OSError, UnsafeCacheError):
        shutil.rmtree(path, ignore_errors=True)
        raise
    _scratch.update(pid=os.getpid(), path=real)
    atexit.register(_remove_scratch, os.getpid(), real)
    return real


def _remove_scratch(pid, path):
    if os.getpid() == pid:  # never from a forked child
        shutil.rmtree(path, ignore_errors=True)


def roots(explicit=None, problems=None):
    """Yield the safe directories to use, best first: the persistent cache, then
    (made only if it is asked for) this run's private directory.

    ``explicit`` replaces the configured persistent directory.  Why a
    directory was skipped is appended to ``problems`` (a list), for one line.
    """
    problems = [] if problems is None else problems
    try:
        first = secure_dir(explicit, create=True) if explicit else _persistent()
    except (OSError, UnsafeCacheError) as e:
        problems.append(_describe(e))
    else:
        yield first
    try:
        second = scratch()
    except (OSError, UnsafeCacheError) as e:
        problems.append("private temporary directory: " + _describe(e))
    else:
        yield second


def _describe(e):
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return where + (e.strerror or str(e))
    return str(e)


# ------------------------------------------------------------------ checks
def entry_problem(st, path):
    """Why an lstat/fstat result at ``path`` must not be trusted, or None."""
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not by uid {os.getuid()}"
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & _OTHERS_WRITE:
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def secure_dir(path, create=True):
    """The real path of directory ``path`` if only the current user can change it.

    With ``create``, missing directories are made (mode 0700) first.  Raises
    ``UnsafeCacheError`` (or ``OSError`` when it cannot be made or read).
    """
    path = os.path.abspath(path)
    if create:
        _make_dirs(path)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) and st.st_uid != os.getuid():
        raise UnsafeCacheError(f"{path} is a symlink owned by uid {st.st_uid}")
    real = os.path.realpath(path)
    _check_ancestors(real)
    st = os.lstat(real)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCacheError(f"{real} is not a directory")
    problem = entry_problem(st, real)
    if problem:
        raise UnsafeCacheError(problem)
    return real


def _make_dirs(path):
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o700)
        except FileExistsError:
            pass  # made meanwhile: checked like any other


def _check_ancestors(real):
    """Every directory above ``real``: a real directory only root or we can change."""
    trusted = {0, os.getuid()}
    ancestors = ["/"]
    for name in real.strip("/").split("/")[:-1]:
        ancestors.append(os.path.join(ancestors[-1], name))
    for cur in ancestors:
        st = os.lstat(cur)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeCacheError(f"{cur} is not a directory")
        if st.st_uid not in trusted:
            raise UnsafeCacheError(f"{cur} is owned by uid {st.st_uid}")
        if st.st_mode & _OTHERS_WRITE and not st.st_mode & stat.S_ISVTX:
            raise UnsafeCacheError(
                f"{cur} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


# ------------------------------------------------------------------- files
def read_file(path):
    """Bytes of the regular file ``path`` if it is ours and private, else None.

    Never follows a symlink at ``path``; never blocks on a FIFO.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or entry_problem(st, path):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def create_file(path, data):
    """Write ``data`` to the new file ``path`` (mode 0600; fails if anything is there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def replace_file(directory, name, data):
    """Atomically set ``directory/name`` to ``data``: a private temporary file, renamed.

    ``directory`` must already be checked (``secure_dir``).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def private_tempdir(directory, prefix):
    """A new private (0700) directory inside the checked ``directory``."""
    return tempfile.mkdtemp(prefix=prefix, dir=directory)
