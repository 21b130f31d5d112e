"""``ksnoop render TYPE [FILE]``: print raw bytes as a kernel type."""

import sys

import click

from ..btf.cdecl import parse_type_name
from ..errors import BTFError, KsnoopError, UsageError
from .options import CONTEXT

_CHUNK = 1 << 16
def _read_chunks(stream):
    """Chunks as they arrive (no waiting for a full buffer on pipes)."""
    read = getattr(stream, "read1", None) or stream.read
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _open_input(path):
    if path is None or path == "-":
        return getattr(sys.stdin, "buffer", sys.stdin), False
    try:
        return open(path, "rb"), True
    except OSError as e:
        raise KsnoopError(f"{path}: {e.strerror}") from None


class _Output:
    """Writes rendered text: colour through rich on a terminal, plain bytes otherwise.

    The kernel style is a str of one character per byte (latin-1): into a pipe
    or a file it is written as those bytes, exactly what bpf_snprintf_btf()
    prints; on a terminal (``terminal``) every byte other than printable ASCII
    and newline is shown as ``\\ooo`` (escape.terminal_bytes), so the kernel's
    raw bytes of char arrays (0xa0-0xff) show as what they are and nothing in
    the output can act on the terminal.  The other styles print kernel bytes
    through escape.c_string / escape.json_dumps already, so they are written
    the same way to a terminal and to a pipe.
    """

    def __init__(self, style, colour, terminal=False):
        self.stream = getattr(sys.stdout, "buffer", sys.stdout)
        self.encoding = "latin-1" if style == "kernel" and not terminal else "utf-8"
        self.escape = None
        if style == "kernel" and terminal:
            from ..render.escape import terminal_bytes

            self.escape = terminal_bytes
        self.console = None
        if colour:
            from rich.console import Console
            from rich.theme import Theme

            from ..render.text import THEME

            self.console = Console(theme=Theme(THEME), highlight=False, soft_wrap=True)

    def write(self, text):
        if self.console is not None:
            from ..render.text import colourize

            self.console.print(colourize(text), end="")
            return
        if self.escape is not None:
            text = self.escape(text)
        self.stream.write(text.encode(self.encoding, "replace"))
        self.stream.flush()


@click.command("render", context_settings=CONTEXT)
@click.argument("type_name", metavar="TYPE")
@click.argument("path", metavar="[FILE]", required=False, type=click.Path(dir_okay=False,
                                                                           allow_dash=True))
@click.option("-f", "--format", "style", type=click.Choice(["ksnoop", "kernel", "json"]),
              default="ksnoop", show_default=True, help="Output style.")
@click.option("--compact", is_flag=True, help="No indentation or newlines inside an object.")
@click.option("--noname", is_flag=True, help="No member names or type casts.")
@click.option("--zero", is_flag=True, help="Show zero values too.")
@click.option("--ptr-raw", is_flag=True,
              help="kernel format: raw pointers (user space cannot reproduce the kernel's "
                   "hashed ones, so pointers are always raw here).")
@click.option("--btf", "btf_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Read types from FILE (raw BTF, or ELF with a .BTF section) "
                   "instead of the running kernel.")
@click.option("--color/--no-color", "colour", default=None,
              help="Colour the ksnoop format (default: when stdout is a terminal).")
def render_cmd(type_name, path, style, compact, noname, zero, ptr_raw, btf_path, colour):
    """Print the raw bytes in FILE (or stdin) as kernel type TYPE.

    TYPE is a C type name ('struct sk_buff', int, u32, 'unsigned int',
    'struct task_struct *') or btf:ID.  The input may hold several objects
    back to back; each is printed as soon as its bytes arrive.  A short last
    object is an error (exit 1).

    \b
    Example:
      head -c 224 /tmp/skb.bin | ksnoop render 'struct sk_buff'
      printf '\\x2a\\0\\0\\0' | ksnoop render int --format json
    """
    from ..kernel.files import Kernel
    from ..render import COMPACT, NONAME, PTR_RAW, ZERO, Renderer

    btf = Kernel(btf_path=btf_path).vmlinux
    try:
        tid = parse_type_name(btf, type_name)
    except BTFError as e:
        raise UsageError(str(e)) from None
    flags = (COMPACT if compact else 0) | (NONAME if noname else 0) | (
        PTR_RAW if ptr_raw else 0) | (ZERO if zero else 0)
    renderer = Renderer(btf, tid, style, flags)
    size = renderer.size
    if size <= 0:
        raise UsageError(f"type {type_name!r} has no size; nothing to render")
    terminal = sys.stdout.isatty()
    if colour is None:
        colour = style == "ksnoop" and terminal
    out = _Output(style, colour and style == "ksnoop", terminal)
    stream, owned = _open_input(path)
    try:
        left = _render_stream(stream, renderer, out)
    finally:
        if owned:
            stream.close()
    if left:
        raise KsnoopError(f"input ends inside an object: last {type_name} has "
                          f"{left} of {size} bytes")


def _render_stream(stream, renderer, out):
    """Render every complete object; return how many bytes are left over."""
    size = renderer.size
    sep = "\n" if renderer.newline_needed else ""
    render_many = renderer.render_many
    pending = b""
    for chunk in _read_chunks(stream):
        data = pending + chunk if pending else bytes(chunk)
        count = len(data) // size
        if count:
            out.write(render_many(data, count, sep))
        pending = data[count * size:]
    return len(pending)
