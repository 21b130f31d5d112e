"""``ksnoop hist SPEC... [--of VALUE]``: power-of-two histograms made in the kernel."""

import click

from .count import aggregate_options, run_aggregation
from .options import CONTEXT


@click.command("hist", context_settings=CONTEXT)
@aggregate_options
@click.option("--of", "of", metavar="VALUE", default=None,
              help="A number in the spec (argument, member path or return), or duration "
                   "(nanoseconds from entry to return; the default for functions).")
def hist_cmd(specs, of, **options):
    """Power-of-two histogram of a value, or of call durations, per function.

    \b
    SPEC is as for trace: FUNC, FUNC(VALUE, ...) or tp:TRACEPOINT(...).
    Predicates in the spec choose which calls count.  --of VALUE is a
    number the spec can name (an argument, a member path or return);
    --of duration (the default for functions) is the time from entry to
    return in nanoseconds, kept per task and call depth.  Tracepoints have
    no duration.  Buckets are [0], [1], [2, 4), [4, 8), ... (K = 1024),
    plus one for negative values and one for values that could not be read.
    Printed at exit, or every -i SECONDS for that interval: a table with
    bars on a terminal, plain text in a pipe, one JSON object per report
    with -o json.

    \b
    Examples:
      ksnoop hist ip_send_skb
      ksnoop hist ip_send_skb --of skb->len -i 1
      ksnoop hist 'tp:sys_enter(id == 0)' --of regs->dx
      ksnoop hist 'vfs_read(return > 0)' --of return -o json
    """
    from ..trace.aggregate import HIST, Aggregation

    run_aggregation(Aggregation(HIST, of or ""), specs, **options)
