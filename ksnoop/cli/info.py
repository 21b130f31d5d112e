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

    FUNC is a kernel function, tp:NAME a tracepoint (its arguments as BTF
    types them), and either may hold the wildcards * and ? to list every
    match.  Parameters that cannot be read at function entry (past the
    argument registers, or aggregates passed on the stack) are listed in a
    trailing comment.  An unknown name is reported on stderr and the others
    are still printed; the exit code is then 1.

    \b
    Example:
      ksnoop info ip_send_skb tcp_sendmsg
      ksnoop info tp:sched_switch 'tp:sched_*' 'udp_send*'
      ksnoop info --btf /boot/vmlinux-6.1 ip_rcv
    """
    from ..kernel.files import Kernel

    kernel = Kernel(btf_path=btf_path)
    kernel.vmlinux  # noqa: B018 - a bad BTF file is one error, not one per name
    failed = 0
    for name in functions:
        try:
            lines = _lines(kernel, name, suggest_close=failed < MAX_SUGGESTED)
        except KsnoopError as e:
            if isinstance(e, SpecError) or e.exit_code != 1:
                raise
            report(e)
            failed += 1
            continue
        for line in lines:
            click.echo(line)
    if failed:
        sys.exit(1)


def _lines(kernel, name, suggest_close):
    """The prototype line(s) ``ksnoop info NAME`` prints."""
    import fnmatch

    from ..errors import SymbolError
    from ..kernel.functions import (
        find_function,
        find_tracepoint,
        function_names,
        signature,
        tracepoint_names,
        tracepoint_signature,
    )

    tracepoint = name.startswith(("tp:", "tracepoint:"))
    bare = name.split(":", 1)[1] if tracepoint else name
    if "*" in bare or "?" in bare:
        pool = tracepoint_names(kernel) if tracepoint else function_names(kernel)[0]
        matches = sorted(n for n in pool if fnmatch.fnmatchcase(n, bare))
        if not matches:
            raise SymbolError(f"{name}: nothing matches")
        if tracepoint:
            return [tracepoint_signature(find_tracepoint(kernel, n)) for n in matches]
        return [signature(find_function(kernel, n)) for n in matches]
    if tracepoint:
        return [tracepoint_signature(find_tracepoint(kernel, bare))]
    return [signature(find_function(kernel, name, suggest_close=suggest_close))]
