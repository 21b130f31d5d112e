"""``ksnoop info FUNC...``: C prototypes and which arguments can be traced."""

import sys

import click

from ..errors import KsnoopError, SpecError
from .options import CONTEXT, btf_option, debug_option, report

MAX_SUGGESTED = 5  # close-match searches cost ~0.1 s each: only for the first few misses


@click.command("info", context_settings=CONTEXT)
@click.argument("functions", nargs=-1, required=True, metavar="FUNC...")
@btf_option
@debug_option
def info_cmd(functions, btf_path, debug):
    """Show the C prototype of each FUNC, one line each.

    Parameters that cannot be read at function entry (past the argument
    registers, or aggregates passed on the stack) are listed in a trailing
    comment.  An unknown function is reported on stderr and the others are
    still printed; the exit code is then 1.

    \b
    Example:
      ksnoop info ip_send_skb tcp_sendmsg
      ksnoop info --btf /boot/vmlinux-6.1 ip_rcv
    """
    from ..kernel.files import Kernel
    from ..kernel.functions import find_function, signature

    kernel = Kernel(btf_path=btf_path)
    kernel.vmlinux  # noqa: B018 - a bad BTF file is one error, not one per name
    failed = 0
    for name in functions:
        try:
            line = signature(find_function(kernel, name, suggest_close=failed < MAX_SUGGESTED))
        except KsnoopError as e:
            if isinstance(e, SpecError) or e.exit_code != 1:
                raise
            report(e)
            failed += 1
            continue
        click.echo(line)
    if failed:
        sys.exit(1)
