"""What every command shares: click settings, option decorators, error lines."""

import click

from ..errors import SpecError

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)


def debug_option(f):
    return click.option("-d", "--debug", is_flag=True, help="Show what ksnoop does (plan, generated C, BCC).")(f)


def btf_option(f):
    return click.option(
        "--btf", "btf_path", metavar="FILE", type=click.Path(dir_okay=False),
        help="Read types from FILE (raw BTF, or an ELF vmlinux/.ko with a .BTF section) "
             "instead of the running kernel.")(f)


def report(err):
    """One line on stderr for an error (plus the caret display for spec errors)."""
    if isinstance(err, SpecError) and err.text:
        click.echo(f"ksnoop: {err.message}", err=True)
        click.echo(f"  {err.text}", err=True)
        click.echo("  " + " " * err.pos + "^" * err.length, err=True)
    else:
        click.echo(f"ksnoop: {err}", err=True)
