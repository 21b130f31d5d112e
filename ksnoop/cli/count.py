"""``ksnoop count SPEC... [--by VALUE]``: calls counted in the kernel.

The options both aggregation commands take (``count`` and ``hist``) and the
code that runs them are here too.
"""

import sys

import click

from .options import CONTEXT, debug_option, fall_back_to_kprobes
from .trace import PID_MAX_LIMIT, Seconds


def aggregate_options(f):
    """Options of count and hist (as trace's, where they mean the same)."""
    decorators = [
        click.argument("specs", nargs=-1, required=True, metavar="SPEC..."),
        click.option("-p", "--pid", type=click.IntRange(1, PID_MAX_LIMIT), default=None,
                     help="Only calls made by process PID (its thread group id)."),
        click.option("-t", "--tid", type=click.IntRange(1, PID_MAX_LIMIT), default=None,
                     help="Only calls made by thread TID."),
        click.option("-c", "--comm", metavar="GLOB", default=None,
                     help="Only tasks whose name (comm) matches GLOB (* and ?)."),
        click.option("--cgroup", metavar="PATH", type=click.Path(file_okay=False), default=None,
                     help="Only tasks in the cgroup v2 directory PATH or below it."),
        click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text",
                     show_default=True,
                     help="text: a table (with bars on a terminal); json: one object per report."),
        click.option("-i", "--interval", type=Seconds(), default=None, metavar="SECONDS",
                     help="Print what each SECONDS counted (and the rest at exit); "
                          "default: one report at exit."),
        click.option("-n", "--reports", "max_reports", type=click.IntRange(min=1), default=None,
                     help="Stop after N reports (with -i)."),
        click.option("--duration", type=Seconds(), default=None, metavar="SECONDS",
                     help="Stop after SECONDS."),
        click.option("--color/--no-color", "colour", default=None,
                     help="Bars and colour (default: when stdout is a terminal)."),
        click.option("--backend", type=click.Choice(["auto", "fentry", "kprobe"]), default="auto",
                     show_default=True,
                     help="How functions are traced: fentry/fexit where the kernel allows it, "
                          "else kprobes (as trace)."),
        click.option("--dry-run", is_flag=True,
                     help="Resolve, generate, compile and load through the verifier; print the "
                          "plan; attach nothing."),
        click.option("--dump-bpf", is_flag=True, help="Print the generated BPF C and exit."),
        debug_option,
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def run_aggregation(agg, specs, pid, tid, comm, cgroup, fmt, interval, max_reports, duration, colour,
                    backend, dry_run, dump_bpf, debug):
    """What count and hist do once their options are parsed."""
    from ..errors import AttachError
    from ..kernel.arch import current as current_arch
    from ..kernel.backend import Backends
    from ..kernel.files import Kernel
    from ..trace.aggjob import Aggregator, prepare
    from ..trace.filters import check_comm_glob
    from ..trace.plan import Filters

    if comm is not None:
        check_comm_glob(comm)
    if max_reports and not interval:
        raise click.BadParameter("needs -i/--interval (without it there is one report, at exit)",
                                 param_hint="'-n/--reports'")
    ctx = click.get_current_context()
    debug = debug or bool(ctx.obj and ctx.obj.get("debug"))
    kernel = Kernel()
    filters = Filters(pid=pid or 0, tid=tid or 0, comm=comm or "", cgroup=cgroup or "")
    backends = Backends(kernel, backend, current_arch().machine)
    while True:
        prepared = prepare(specs, kernel, agg, filters, backends)
        for note in prepared.aplan.notes:
            click.echo(f"ksnoop: note: {note}", err=True)
        if dump_bpf:
            click.echo(prepared.c_text, nl=False)
            return
        runner = Aggregator(prepared, kernel, fmt=fmt, interval=interval or 0.0,
                            duration=duration or 0.0, max_reports=max_reports or 0,
                            colour=sys.stdout.isatty() if colour is None else colour, debug=debug)
        try:
            if dry_run:
                text, times = runner.dry_run()
                click.echo(text)
                click.echo(f"loaded {times.programs} programs through the verifier: compile "
                           f"{times.compile_s:.2f} s, load {times.load_s:.3f} s", err=True)
            else:
                runner.run()
            return
        except AttachError as e:
            fall_back_to_kprobes(e, backend, backends)


@click.command("count", context_settings=CONTEXT)
@aggregate_options
@click.option("--by", "by", metavar="VALUE", default=None,
              help="One count per distinct VALUE: a value as in a spec (argument, member path "
                   "or return; a number, pointer or string), or comm, pid or tid.")
@click.option("--max-keys", type=click.IntRange(1, 1 << 20), default=10240, show_default=True,
              help="Distinct --by values the kernel map holds; calls of further values are "
                   "counted as not counted, and reported.")
@click.option("-s", "--size", "key_bytes", type=click.IntRange(8, 128), default=64,
              show_default=True, help="Bytes of a string --by value compared (NUL included).")
def count_cmd(specs, by, max_keys, key_bytes, **options):
    """Count calls in the kernel: per function, or per value with --by.

    \b
    SPEC is as for trace: FUNC, FUNC(VALUE, ...) or tp:TRACEPOINT(...).
    Predicates in the spec choose which calls count (all must hold); values
    named without a predicate are not read.  --by VALUE counts per distinct
    value: a number, a pointer, a string (char *, or a char array such as
    dev->name), or the task's comm, pid or tid.  No event leaves the kernel:
    per-CPU maps count exactly, and the table (with bars on a terminal) is
    printed at exit, or every -i SECONDS for that interval.  A summary goes
    to stderr: calls counted, and calls not counted because the map of
    --max-keys values was full.

    \b
    Examples:
      ksnoop count ip_send_skb udp_sendmsg
      ksnoop count 'tp:sys_enter' --by comm -i 1
      ksnoop count 'do_sys_openat2(return < 0)' --by filename
      ksnoop count 'ip_send_skb(skb->len > 1000)' --by skb->dev->name
      ksnoop count -o json 'tp:sys_enter' --by id --duration 5 | jq .counts
    """
    from ..trace.aggregate import COUNT, Aggregation

    run_aggregation(Aggregation(COUNT, by or "", keys=max_keys, key_bytes=key_bytes), specs, **options)
