"""The `ksnoop` text style: the kernel's layout without the kernel's defects.

Layout (flags 0; COMPACT drops indentation and newlines, NONAME drops the
``.name = (type)`` labels, ZERO prints zero values too; pointers are always
raw):

    (struct sk_buff){
     .next = (struct sk_buff *)0xffff888004a1e200,
     .len = (unsigned int)84,
     .cb = (char[48])"lo",
     .ports = (u16[4])[80, [3] = 443],
     .frags = (skb_frag_t[17])[
      [2] = {
       .len = (unsigned int)5,
      },
     ],
    }

- one space of indentation per level; every nested item ends with ",";
- arrays show their dimensions; arrays of scalars (ints, enums, pointers,
  strings) print on one line, arrays of aggregates one element per line;
- zero elements are skipped and the next shown element is prefixed with its
  index (``[3] = 443``), so positions are never lost;
- arrays of ``char`` read as C strings up to the first NUL, escaped by
  ``escape.c_string`` (the one printer of kernel bytes, as in trace output);
- bitfields print like their declared type (signed, enum names); bools
  print ``true``/``false``;
- zero suppression as in the kernel: a nested zero scalar, NULL pointer,
  empty string or all-zero aggregate is left out, unless ZERO;
- a capture shorter than the type renders what is there and ends with
  ``/* N of M bytes */``.

Two implementations give identical text: ``TreeText`` renders a decoded value
tree (any data, including truncated captures), ``textgen.compile_text``
generates Python code for one type (full-size data, the fast path).
"""


from ..btf import Kind, cdecl
from . import values as D
from .escape import c_string

COMPACT, NONAME, PTR_RAW, ZERO = 1, 2, 4, 8

_SCALAR_KINDS = frozenset({Kind.INT, Kind.PTR, Kind.ENUM, Kind.ENUM64, Kind.FLOAT})


def cstr(chunk):
    """C string literal of a char array's bytes, or None when it is empty."""
    nul = chunk.find(b"\0")
    if nul == 0 or not chunk:
        return None
    return c_string(chunk if nul < 0 else chunk[:nul])


def cstr_z(chunk):
    nul = chunk.find(b"\0")
    return c_string(chunk if nul < 0 else chunk[:nul])


# Inline lists: items of an array of scalars.  ``None``: nothing to show.
def join_items(texts, nonzero, zero):
    if zero:
        return ", ".join(texts)
    parts = []
    nx = 0
    for i, nz in enumerate(nonzero):
        if nz:
            parts.append(texts[i] if i == nx else "[%d] = %s" % (i, texts[i]))
            nx = i + 1
    return ", ".join(parts) if parts else None


def items_int(vals, zero):
    if zero:
        return ", ".join(map(str, vals))
    if not any(vals):
        return None
    return join_items([str(v) for v in vals], vals, False)


def items_bool(vals, zero):
    return join_items(["true" if v else "false" for v in vals], vals, zero)


def items_ptr(vals, zero):
    if not zero and not any(vals):
        return None
    return join_items(["0x%016x" % v for v in vals], vals, zero)


def items_float(vals, zero):
    return join_items([repr(v) for v in vals], [v != 0 for v in vals], zero)


def items_enum(vals, names, zero):
    texts = [names.get(v) or str(v) for v in vals]
    return join_items(texts, [v != 0 or v in names for v in vals], zero)


def items_str(chunks, zero):
    texts = [cstr_z(c) for c in chunks]
    return join_items(texts, [t != '""' for t in texts], zero)


class Names:
    """Cast names of types: ``u32``, ``char[16]``, ``struct sk_buff *``, ``struct``."""

    def __init__(self, btf):
        self.btf = btf
        self._cache = {}

    def __call__(self, tid):
        hit = self._cache.get(tid)
        if hit is None:
            try:
                name = cdecl.type_name(self.btf, tid)
            except Exception:  # noqa: BLE001 - a name is only decoration
                name = "?"
            hit = self._cache[tid] = name.replace(" {...}", "").replace(" [", "[")
        return hit


class Style:
    """The flag-dependent pieces shared by both implementations."""

    def __init__(self, btf, flags, indent=""):
        self.btf = btf
        self.flags = flags
        self.compact = bool(flags & COMPACT)
        # put before every line but the first (trace text output nests values this way)
        self.indent = "" if self.compact else indent
        self.noname = bool(flags & NONAME)
        self.zero = bool(flags & ZERO)
        self.nl = "" if self.compact else "\n"
        self.names = Names(btf)
        self.decoder = D.Decoder(btf)

    def ind(self, depth):
        """Indentation of a nested line (depth >= 1); the top level's closing line
        gets ``indent`` alone."""
        return "" if self.compact or not depth else self.indent + " " * depth

    def label(self, name, tid):
        """``.name = (type)`` for a member (anonymous: ``(type)``)."""
        if self.noname:
            return ""
        if name:
            return ".%s = (%s)" % (name, self.names(tid))
        return "(%s)" % self.names(tid)

    def top_label(self, tid):
        return "" if self.noname else "(%s)" % self.names(tid)

    def array_shape(self, tid):
        """('inline', elem type) or ('lines', elem type) for an array type."""
        t = self.decoder.resolve(tid)
        et = self.decoder.resolve(t.elem_type)
        if et.kind in _SCALAR_KINDS or (et.kind == Kind.ARRAY and D.is_char_elem(
                self.decoder.resolve(et.elem_type))):
            return "inline", et
        return "lines", et


class TreeText:
    """Value tree -> ksnoop text."""

    def __init__(self, btf, flags=0, indent=""):
        self.s = Style(btf, flags, indent)

    # ------------------------------------------------------------ scalars
    def scalar(self, node):
        """(text, nonzero) of a scalar node."""
        if isinstance(node, D.Int):
            if node.is_bool:
                return ("true" if node.value else "false"), node.value != 0
            return str(node.value), node.value != 0
        if isinstance(node, D.Enum):
            if node.name is not None:
                return node.name, True
            return str(node.value), node.value != 0
        if isinstance(node, D.Ptr):
            return "0x%016x" % node.value, node.value != 0
        if isinstance(node, D.Float):
            return repr(node.value), node.value != 0
        if isinstance(node, D.String):
            return c_string(node.raw), bool(node.raw)
        if isinstance(node, D.Opaque):
            return "<%s>" % Kind(node.kind).name.lower(), True
        return "<missing>", True

    def inline_items(self, node):
        texts, nzs = [], []
        for e in node.elems:
            if isinstance(e, D.Missing):
                break
            t, nz = self.scalar(e)
            texts.append(t)
            nzs.append(nz)
        return join_items(texts, nzs, self.s.zero)

    # ------------------------------------------------------------ nesting
    def member(self, node, depth, label, out, desig=""):
        """Append the lines of a nested item; ``label`` already formatted."""
        s = self.s
        if isinstance(node, D.Missing):
            return
        ind = s.ind(depth)
        if isinstance(node, D.Record):
            self._block(ind + desig + label, "{", "}", self.fields, node, depth, out)
            return
        if isinstance(node, D.Array):
            shape, _ = s.array_shape(node.tid)
            if shape == "inline":
                items = self.inline_items(node)
                if items is not None:
                    out.append(ind + desig + label + "[" + items + "]," + s.nl)
                return
            self._block(ind + desig + label, "[", "]", self.elements, node, depth, out)
            return
        text, nz = self.scalar(node)
        if nz or s.zero:
            out.append(ind + desig + label + text + "," + s.nl)

    def _block(self, head, opener, closer, body, node, depth, out):
        """``head{`` + the body's lines + ``},``; dropped when the body is empty
        (unless zeros are shown)."""
        s = self.s
        mark = len(out)
        out.append(head + opener + s.nl)
        body(node, depth + 1, out)
        if len(out) == mark + 1 and not s.zero:
            del out[mark:]
        else:
            out.append(s.ind(depth) + closer + "," + s.nl)

    def fields(self, node, depth, out):
        label = self.s.label
        for name, child in node.fields:
            self.member(child, depth, label(name, child.tid), out)

    def elements(self, node, depth, out):
        nx = 0
        for i, e in enumerate(node.elems):
            before = len(out)
            self.member(e, depth, "", out, "" if i == nx else "[%d] = " % i)
            if len(out) != before:
                nx = i + 1

    def top(self, node, out):
        s = self.s
        label = s.top_label(node.tid)
        if isinstance(node, D.Record):
            out.append(label + "{" + s.nl)
            self.fields(node, 1, out)
            out.append(s.indent + "}")
        elif isinstance(node, D.Array):
            shape, _ = s.array_shape(node.tid)
            if shape == "inline":
                out.append(label + "[" + (self.inline_items(node) or "") + "]")
            else:
                out.append(label + "[" + s.nl)
                self.elements(node, 1, out)
                out.append(s.indent + "]")
        else:
            out.append(label + self.scalar(node)[0])

    def render_node(self, node, have=None, size=None):
        out = []
        self.top(node, out)
        if have is not None and size is not None and have < size:
            out.append(" /* %d of %d bytes */" % (max(have, 0), size))
        out.append(self.s.nl)
        return "".join(out)

    def slow_member(self, data, off, tid, depth, label, out):
        """Decode and append one member (the compiled code's fallback)."""
        self.member(self.s.decoder.decode(tid, data, off), depth, label, out)


# One pass, left to right, one style per token: the digits of "(char[8])",
# of a string or of a comment are part of that token, never numbers.
_COLOUR_TOKENS = r"""
    (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<comment>/\*.*?\*/)
  | (?P<cast>\([A-Za-z_][^()=\n]*?\))
  | (?<![\w>.-])(?P<member>\.?[A-Za-z_]\w*(?:(?:->|\.)[A-Za-z_]\w*)*)(?=\ =\ )
  | (?<![\w.])(?P<pointer>0x[0-9a-f]+)(?![\w.])
  | (?<![\w.])(?P<number>-?\d+)(?![\w.])
"""


def colourize(text):
    """A rich ``Text`` of ksnoop-style output with syntax colours (imports rich):
    member and value names, casts, numbers, strings, pointers, comments."""
    import re

    from rich.text import Text

    t = Text(text)
    t.highlight_regex(re.compile(_COLOUR_TOKENS, re.X), style_prefix="ksnoop.")
    return t


THEME = {
    "ksnoop.member": "bold cyan", "ksnoop.cast": "green", "ksnoop.string": "yellow",
    "ksnoop.pointer": "magenta", "ksnoop.number": "bright_blue", "ksnoop.comment": "dim red",
}
