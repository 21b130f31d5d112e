"""``ksnoop info FUNC...``: C prototypes and which arguments can be traced."""

import sys

import click

from ..errors import KsnoopError, SpecError
from .options import CONTEXT, btf_option, debug_option, report

MAX_SUGGESTED = 5  # close-match searches cost ~0.1 s each: only for the first few misses


@click.command("info", context_settings=CONTEXT)
@click.argument("functions", nargs=-1, required=True, metavar="FUNC...")
@btf_option
@click.option("--how", is_flag=True,
              help="After each function, a comment line: whether and how it would be traced "
                   "here (fentry/fexit, kprobe/kretprobe or kprobe-multi, as --backend auto "
                   "picks) and why, and where its stack arguments are read.")
@debug_option
def info_cmd(functions, btf_path, how, debug):
    """Show the C prototype of each FUNC, one line each.

    FUNC is a kernel function, tp:NAME a tracepoint (its arguments as BTF
    types them), and either may hold the wildcards * and ? to list every
    match.  Parameters that cannot be read at function entry (floating
    point, empty structs) are listed in a trailing comment; arguments passed
    on the stack are read there.  An unknown name is reported on stderr and
    the others are still printed; the exit code is then 1.

    \b
    Example:
      ksnoop info ip_send_skb tcp_sendmsg
      ksnoop info tp:sched_switch 'tp:sched_*' 'udp_send*'
      ksnoop info --btf /boot/vmlinux-6.1 ip_rcv
      ksnoop info --how do_mmap 'tcp_*'
    """
    from ..kernel.arch import current as current_arch
    from ..kernel.backend import Backends
    from ..kernel.files import Kernel

    kernel = Kernel(btf_path=btf_path)
    kernel.vmlinux  # noqa: B018 - a bad BTF file is one error, not one per name
    backends = Backends(kernel, "auto", current_arch().machine) if how else None
    failed = 0
    for name in functions:
        try:
            lines = _lines(kernel, name, suggest_close=failed < MAX_SUGGESTED, backends=backends)
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


def _lines(kernel, name, suggest_close, backends=None):
    """The prototype line(s) ``ksnoop info NAME`` prints (with ``backends``: each
    followed by how it would be traced)."""
    import fnmatch

    from ..errors import SymbolError
    from ..kernel.functions import (
        find_function,
        find_tracepoint,
        function_names,
        tracepoint_names,
    )

    tracepoint = name.startswith(("tp:", "tracepoint:"))
    bare = name.split(":", 1)[1] if tracepoint else name
    if "*" in bare or "?" in bare:
        pool = tracepoint_names(kernel) if tracepoint else function_names(kernel)[0]
        matches = sorted(n for n in pool if fnmatch.fnmatchcase(n, bare))
        if not matches:
            raise SymbolError(f"{name}: nothing matches")
        if tracepoint:
            return _tp_lines([find_tracepoint(kernel, n) for n in matches], backends)
        return _fn_lines(kernel, [find_function(kernel, n) for n in matches], backends, True)
    if tracepoint:
        return _tp_lines([find_tracepoint(kernel, bare)], backends)
    return _fn_lines(kernel, [find_function(kernel, name, suggest_close=suggest_close)], backends,
                     False)


def _fn_lines(kernel, fns, backends, pattern):
    from ..kernel.functions import how_traced, signature

    out = []
    for fn in fns:
        out.append(signature(fn))
        if backends is not None:
            out.append(how_traced(kernel, fn, backends, pattern))
    return out


def _tp_lines(tps, backends):
    from ..kernel.functions import tracepoint_signature

    out = []
    for tp in tps:
        out.append(tracepoint_signature(tp))
        if backends is not None:
            out.append("  /* raw tracepoint */")
    return out
