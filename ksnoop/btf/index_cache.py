"""On-disk cache of a BTF blob's type index, keyed by the blob's content.

Walking 130k variable-length records in Python costs ~100 ms; loading two
arrays from a cache file costs ~1 ms.  The cache is best effort: any problem
reading or writing it just means the index is rebuilt.  It lives in ksnoop's
cache directory (``ksnoop.cachedir``: the one rule for where, and for which
files are trusted); with no safe persistent directory nothing is cached.

File: a version line, a digest of the key and the arrays (so a truncated or
damaged file is noticed), then the record offsets and name offsets as two
equal ``u32`` arrays.  A file is used only if it also agrees with the BTF it
indexes: the first record starts the type section, the last one ends it, and
their name offsets are the ones in the data.
"""

import hashlib
import os
from array import array

from .. import cachedir
from . import format as L

_VERSION = b"ksnoop-btf-index-2\n"
_DIGEST = 16


def key_for(data, base_key=None):
    if os.environ.get("KSNOOP_NO_CACHE"):
        return None
    h = hashlib.blake2b(data, digest_size=16)
    if base_key:
        h.update(base_key.encode())
    return h.hexdigest()


def _name(key):
    return f"btf-{key}.idx"


def _digest(key, body):
    h = hashlib.blake2b(key.encode(), digest_size=_DIGEST)
    h.update(body)
    return h.digest()


def load(key, btf):
    """(offsets, name_offs) for ``btf`` (its header parsed) from the cache, or None."""
    root = cachedir.persistent()
    if root is None:
        return None
    blob = cachedir.read_file(os.path.join(root, _name(key)))
    if blob is None or not blob.startswith(_VERSION):
        return None
    head = len(_VERSION) + _DIGEST
    body = memoryview(blob)[head:]
    if len(body) % 8 or blob[len(_VERSION):head] != _digest(key, body):
        return None
    half = len(body) // 2
    offsets, name_offs = array("I"), array("I")
    offsets.frombytes(body[:half])
    name_offs.frombytes(body[half:])
    return (offsets, name_offs) if _agrees(btf, offsets, name_offs) else None


def _agrees(btf, offsets, name_offs):
    """Cheap consistency of an index with the BTF's type section."""
    start, end, data = btf.type_start, btf.type_end, btf.data
    if not offsets:
        return start == end
    if offsets[0] != start or len(offsets) > (end - start) // 12:
        return False
    last = offsets[-1]
    if not start <= last <= end - 12:
        return False
    for i in (0, len(offsets) - 1):
        if L.U32.unpack_from(data, offsets[i])[0] != name_offs[i]:
            return False
    info = L.U32.unpack_from(data, last + 4)[0]
    extra = L.extra_size((info >> 24) & 0x1F, info & 0xFFFF)
    return extra is not None and last + 12 + extra == end


def store(key, offsets, name_offs):
    root = cachedir.persistent()
    if root is None:
        return
    body = offsets.tobytes() + name_offs.tobytes()
    try:
        cachedir.replace_file(root, _name(key), _VERSION + _digest(key, body) + body)
    except OSError:
        pass  # best effort: the index is rebuilt next time
