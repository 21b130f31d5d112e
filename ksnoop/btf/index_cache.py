"""On-disk cache of a BTF blob's type index, keyed by the blob's content.

Walking 130k variable-length records in Python costs ~100 ms; loading two
arrays from a cache file costs ~1 ms.  The cache is best effort: any problem
reading or writing it just means the index is rebuilt.
"""

import hashlib
import os
from array import array

_VERSION = b"ksnoop-btf-index-1\n"


def cache_dir():
    """ksnoop's cache directory: $KSNOOP_CACHE_DIR, else $XDG_CACHE_HOME/ksnoop."""
    base = os.environ.get("KSNOOP_CACHE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "ksnoop")


def key_for(data, base_key=None):
    if os.environ.get("KSNOOP_NO_CACHE"):
        return None
    h = hashlib.blake2b(data, digest_size=16)
    if base_key:
        h.update(base_key.encode())
    return h.hexdigest()


def _path(key):
    return os.path.join(cache_dir(), f"btf-{key}.idx")


def load(key):
    try:
        with open(_path(key), "rb") as f:
            blob = f.read()
    except OSError:
        return None
    if not blob.startswith(_VERSION):
        return None
    body = memoryview(blob)[len(_VERSION):]
    if len(body) % 8:
        return None
    half = len(body) // 2
    offsets, name_offs = array("I"), array("I")
    offsets.frombytes(body[:half])
    name_offs.frombytes(body[half:])
    return offsets, name_offs


def store(key, offsets, name_offs):
    path = _path(key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(_VERSION + offsets.tobytes() + name_offs.tobytes())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
