"""Render kernel values: raw bytes + a BTF type id -> text.

Styles:
  ``ksnoop``  readable text (see render/text.py), the default for humans;
  ``kernel``  exactly what bpf_snprintf_btf() prints (see render/kernel.py);
  ``json``    one JSON value per object (see render/json.py).

Flags (as bpf_snprintf_btf's): COMPACT 1, NONAME 2, PTR_RAW 4, ZERO 8.

The tracer builds one ``Renderer`` per (btf, type id, style, flags) with
``make_renderer`` (cached) and then calls ``renderer.render(data)`` per event.
``data`` holds the value's bytes from ``offset``; if fewer than
``renderer.size`` bytes are there (a truncated capture), what is there is
rendered and the rest is marked; ``None`` or ``b""`` means unreadable.
"""

from ..errors import RenderError
from .snprintf import ALL_FLAGS, COMPACT, NONAME, PTR_RAW, ZERO

STYLES = ("ksnoop", "kernel", "json")

__all__ = ["Renderer", "make_renderer", "render", "STYLES",
           "COMPACT", "NONAME", "PTR_RAW", "ZERO"]


class Renderer:
    """Renders values of one type in one style; build once, call ``render`` often."""

    def __init__(self, btf, type_id, style="ksnoop", flags=0, ptr_hash=None):
        if style not in STYLES:
            raise RenderError(f"unknown output format {style!r} (use {', '.join(STYLES)})")
        if flags & ~ALL_FLAGS:
            raise RenderError(f"unknown render flags 0x{flags & ~ALL_FLAGS:x}")
        if not 0 < type_id < len(btf):
            raise RenderError(f"no type with id {type_id}")
        self.btf, self.type_id, self.style, self.flags = btf, type_id, style, flags
        btf.check(type_id)  # a type the kernel would refuse (loops, bad sizes): BTFError
        self.size = btf.size_of(type_id)
        self._fast = None
        if style == "kernel":
            from .snprintf import KernelRenderer

            self._kernel = KernelRenderer(btf, type_id, flags, ptr_hash)
        else:
            from .values import Decoder

            self._decoder = Decoder(btf)
            if style == "ksnoop":
                from .text import TreeText
                from .textgen import compile_text

                self._tree = TreeText(btf, flags)
                self._fast = compile_text(btf, type_id, flags, self._tree)

    @property
    def newline_needed(self):
        """True when ``render`` output does not end in a newline (compact, json)."""
        return self.style == "json" or bool(self.flags & COMPACT)

    def render(self, data, offset=0):
        """The text of the value at ``data[offset:offset + size]``."""
        if data is None:
            data = b""
        elif not isinstance(data, bytes):
            data = bytes(data)
        size = self.size
        have = len(data) - offset
        fast = self._fast
        if fast is not None and have >= size:
            return fast(data, offset)
        if self.style == "kernel":
            return self._kernel.render(data[offset:offset + size])
        node = self._decoder.decode(self.type_id, data, offset, offset + min(max(have, 0), size))
        if self.style == "json":
            from .json import render_json

            return render_json(node, have, size)
        return self._tree.render_node(node, have, size)

    def render_many(self, data, count, sep="", offset=0):
        """``count`` values stored back to back from ``offset``, joined, each followed by ``sep``."""
        size = self.size
        if not isinstance(data, bytes):
            data = bytes(data)
        fast = self._fast
        if fast is not None and len(data) >= offset + count * size:
            texts = [fast(data, offset + i * size) for i in range(count)]
        else:
            texts = [self.render(data[:offset + (i + 1) * size], offset + i * size)
                     for i in range(count)]
        if sep:
            return sep.join(texts) + sep
        return "".join(texts)


_CACHE = {}


def make_renderer(btf, type_id, style="ksnoop", flags=0, ptr_hash=None):
    """A cached Renderer for (btf, type_id, style, flags)."""
    key = (id(btf), type_id, style, flags, ptr_hash)
    r = _CACHE.get(key)
    if r is None or r.btf is not btf:
        r = _CACHE[key] = Renderer(btf, type_id, style, flags, ptr_hash)
    return r


def render(btf, type_id, data, style="ksnoop", flags=0):
    """One value, one call (uses the renderer cache)."""
    return make_renderer(btf, type_id, style, flags).render(data)
