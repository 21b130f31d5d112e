"""What every command shares: click settings, option decorators, error lines."""

import unicodedata

import click

from ..errors import SpecError
from ..render.escape import terminal_text

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)


def debug_option(f):
    return click.option("-d", "--debug", is_flag=True, help="Show what ksnoop does (plan, generated C, BCC).")(f)


def btf_option(f):
    return click.option(
        "--btf", "btf_path", metavar="FILE", type=click.Path(dir_okay=False),
        help="Read types from FILE (raw BTF, or an ELF vmlinux/.ko with a .BTF section) "
             "instead of the running kernel.")(f)


def report_line(message):
    """``ksnoop: message`` on stderr; whatever the message quotes (a spec, a name,
    a file name) is escaped so that no control character reaches the terminal."""
    click.echo(f"ksnoop: {terminal_text(str(message))}", err=True)


def _width(text):
    """Terminal columns of already-escaped text (wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else
               0 if unicodedata.combining(ch) else 1 for ch in text)


def caret_lines(text, pos, length):
    """The spec on one line, escaped (a newline shows as \\n, a tab as \\t), and a
    caret line under the bad token that stays aligned whatever the characters."""
    before = terminal_text(text[:pos])
    token = terminal_text(text[pos:pos + length]) or " "
    after = terminal_text(text[pos + length:])
    return before + token + after, " " * _width(before) + "^" * max(1, _width(token))


def report(err):
    """One line on stderr for an error (plus the caret display for spec errors)."""
    if isinstance(err, SpecError) and err.text:
        report_line(err.message)
        shown, carets = caret_lines(err.text, err.pos, err.length)
        click.echo(f"  {shown}", err=True)
        click.echo(f"  {carets}", err=True)
    else:
        report_line(err)


def fall_back_to_kprobes(e, backend, backends):
    """After AttachError ``e``: with ``--backend auto``, a function whose
    fentry/fexit the kernel refused (a check ksnoop cannot make beforehand,
    e.g. a notrace function) gets kprobes next time: say so and return, for
    the caller to try again.  Anything else is raised again."""
    refused = getattr(e, "fentry", None)
    if backend != "auto" or not refused or refused in backends.refused:
        raise e
    backends.refused.add(refused)
    click.echo(f"ksnoop: note: {refused}: {e}; using kprobes for it", err=True)
