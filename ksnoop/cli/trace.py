"""``ksnoop trace SPEC...``: trace calls (the default command)."""

import math
import sys

import click

from .options import CONTEXT, debug_option, fall_back_to_kprobes

PID_MAX_LIMIT = 4 * 1024 * 1024  # the kernel's highest possible pid (64-bit)
MAX_PAGES = 4096  # 16 MiB of buffer per CPU
MAX_DURATION = 10_000_000.0  # seconds (about 115 days)


class Seconds(click.ParamType):
    """A finite, positive number of seconds (no nan, inf or 1e309)."""

    name = "seconds"

    def convert(self, value, param, ctx):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_DURATION:
            self.fail(f"{value!r} is not between 0 and {MAX_DURATION:.0f} seconds", param, ctx)
        return seconds


class Latency(click.ParamType):
    """A duration with its unit: 50us, 2ms, 1.5s, 800ns -> nanoseconds (> 0)."""

    name = "time"
    UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
    MAX_NS = 1 << 62

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        unit = next((u for u in ("ns", "us", "ms", "s") if text.endswith(u)), None)
        number = text[:-len(unit)] if unit else ""
        try:
            ns = round(float(number) * self.UNITS[unit]) if unit and number.strip() == number \
                else None
        except (ValueError, OverflowError):
            ns = None
        if ns is None or not 0 < ns <= self.MAX_NS:
            self.fail(f"{value!r} is not a time such as 50us, 2ms or 1s (ns, us, ms or s; "
                      "more than 0)", param, ctx)
        return ns


@click.command("trace", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("-p", "--pid", type=click.IntRange(1, PID_MAX_LIMIT), default=None,
              help="Only calls made by process PID (its thread group id).")
@click.option("-t", "--tid", type=click.IntRange(1, PID_MAX_LIMIT), default=None,
              help="Only calls made by thread TID.")
@click.option("-c", "--comm", metavar="GLOB", default=None,
              help="Only tasks whose name (comm) matches GLOB (* and ?), e.g. 'nginx*'.")
@click.option("--cgroup", metavar="PATH", type=click.Path(file_okay=False), default=None,
              help="Only tasks in the cgroup v2 directory PATH or below it "
                   "(e.g. /sys/fs/cgroup/system.slice/docker-ID.scope).")
@click.option("--min-latency", "min_ns", type=Latency(), default=None, metavar="TIME",
              help="Only calls lasting at least TIME (50us, 2ms, 1s), decided in BPF; each "
                   "call is one event, entry values held until its return.")
@click.option("-K", "--kstack", is_flag=True,
              help="Add the kernel stack to each event, as function+0xoff [module].")
@click.option("--time", "time_mode", type=click.Choice(["boot", "wall", "delta"]), default="boot",
              show_default=True,
              help="Time column of text and line output: seconds since boot, wall clock "
                   "(UTC, HH:MM:SS.micro), or seconds since the previous event.  JSON has "
                   "both time (since boot) and wall (ISO 8601 UTC).")
@click.option("-P", "--pages", type=click.IntRange(1, MAX_PAGES), default=64, show_default=True,
              help=f"Buffer pages per CPU (a power of two, at most {MAX_PAGES}).")
@click.option("-s", "--size", "limit", type=click.IntRange(8, 65536), default=2048,
              show_default=True, help="Bytes captured per value; larger objects are truncated "
              "and the output says so.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "line", "json"]),
              default="text", show_default=True,
              help="text: multi-line, like the RFC; line: one line per event, return "
                   "values after '=>' (for grep); json: one JSON object per line (for jq).")
@click.option("-n", "--count", "max_events", type=click.IntRange(min=1), default=None,
              help="Stop after N events.")
@click.option("--duration", type=Seconds(), default=None,
              metavar="SECONDS", help="Stop after SECONDS.")
@click.option("--buffer", type=click.Choice(["auto", "ringbuf", "perf"]), default="auto",
              show_default=True, help="BPF ring buffer where the kernel has it, else perf buffer.")
@click.option("--color/--no-color", "colour", default=None,
              help="Colour the text and line output (default: when stdout is a terminal).")
@click.option("--backend", type=click.Choice(["auto", "fentry", "kprobe"]), default="auto",
              show_default=True,
              help="auto: per function, fentry/fexit where the kernel allows it, else "
                   "kprobe/kretprobe; a wildcard's functions share one kprobe-multi link where "
                   "the kernel has them.  fentry: fentry/fexit only (an error where "
                   "impossible).  kprobe: kprobes only.")
@click.option("--dry-run", is_flag=True,
              help="Resolve, generate, compile and load through the verifier; print the plan "
                   "and each function's backend and why; attach nothing.")
@click.option("--dump-bpf", is_flag=True, help="Print the generated BPF C and exit.")
@debug_option
def trace_cmd(specs, pid, tid, comm, cgroup, min_ns, kstack, time_mode, pages, limit, fmt, max_events,
              duration, buffer, colour, backend, dry_run, dump_bpf, debug):
    """Trace calls of kernel functions, or kernel tracepoints.

    \b
    SPEC is TARGET or TARGET(VALUE, ...).  TARGET is a function, a function
    pattern with * and ? (every match taking the named values), or tp:NAME
    for a tracepoint (arguments typed by BTF; no return value).  A VALUE is
    an argument name, a member path (skb->len, skb->dev->name, how->flags,
    skb->cb[0]) or "return", optionally with a predicate: == != > >= < <=
    and a C integer literal (decimal, 0x hex, 0 or 0o octal, 0b binary,
    negative, u/l/ll suffixes in either order), an enum constant or an
    errno name (-ENOENT); a string value == or != a "quoted string", or ~
    a "glob" (* and ?); a bit test (flags & 0x40).  A VALUE may also be a
    condition combining such comparisons with && || ! and parentheses
    (every value it names is shown).  Predicates compare with the value's
    C type (so "return < 0" works), are decided in BPF, and all must hold
    for an event to be shown.  With no VALUE list, every
    argument is shown at entry and the return value at return.  Pointers to
    structs are shown as the struct they point to (up to --size bytes);
    char pointers as strings.  When predicates and both entry and return
    values are named, entry values are held until the return and shown
    together (stash mode).  Return and stash events show the call's
    duration, e.g. "(12.345us)" (JSON: duration_ns); --min-latency keeps
    only slow calls.  -K adds the kernel stack.  A return value in
    -4095..-1 shows its errno name, "(int)-2 (-ENOENT)", an error pointer
    "ERR_PTR(-ENOENT)" (JSON: "errno": {"return": "ENOENT"}).  Events go to
    stdout; lost events, missed returns and a summary go to stderr.
    Ctrl-C, SIGTERM or SIGHUP stop it without dropping anything already read
    (a second one interrupts at once).

    \b
    Examples:
      ksnoop trace ip_send_skb
      ksnoop "ip_send_skb(skb->len == 84, skb)"
      ksnoop "udp_sendmsg(len > 100 && len < 300, sk)"
      ksnoop 'do_sys_openat2(filename ~ "/etc/*", return == -ENOENT)'
      ksnoop "do_sys_openat2(filename, how->flags & 0x40)"
      ksnoop -c "nginx*" --cgroup /sys/fs/cgroup/system.slice "tcp_sendmsg(size)"
      ksnoop "do_sys_openat2(filename, return < 0)" -o line
      ksnoop -o json "tcp_sendmsg(size > 1000)" | jq .values.size
      ksnoop "tp:sched_switch(prev->pid, next->comm)"
      ksnoop "udp_send*(sk)"
      ksnoop --min-latency 2ms "vfs_fsync(file->f_path.dentry->d_name.name)"
      ksnoop -K -n 1 "ip_send_skb(skb->len)"
      ksnoop --time wall -o line "do_sys_openat2(filename, return == -ENOENT)"
      ksnoop -o json "vfs_read(count)" | jq '{wall, duration_ns}'
    """
    from ..kernel.files import Kernel
    from ..trace.job import Tracer, prepare

    if pages & (pages - 1):
        raise click.BadParameter(f"{pages} is not a power of two", param_hint="'-P/--pages'")
    ctx = click.get_current_context()
    debug = debug or bool(ctx.obj and ctx.obj.get("debug"))
    kernel = Kernel()
    from ..trace.filters import check_comm_glob
    from ..trace.plan import Filters

    if comm is not None:
        check_comm_glob(comm)
    filters = Filters(pid=pid or 0, tid=tid or 0, comm=comm or "", cgroup=cgroup or "",
                      min_ns=min_ns or 0)
    from ..errors import AttachError
    from ..kernel.arch import current as current_arch
    from ..kernel.backend import Backends

    backends = Backends(kernel, backend, current_arch().machine)
    while True:
        prepared = prepare(specs, kernel, limit=limit, filters=filters, backends=backends,
                           kstack=kstack)
        if dump_bpf:
            click.echo(prepared.c_text, nl=False)
            return
        tracer = Tracer(prepared, kernel, fmt=fmt, pages=pages, buffer=buffer, debug=debug,
                        max_events=max_events or 0, duration=duration or 0.0,
                        colour=sys.stdout.isatty() if colour is None else colour, time=time_mode)
        try:
            if dry_run:
                _dry_run(tracer, prepared)
            else:
                tracer.run()
            return
        except AttachError as e:
            fall_back_to_kprobes(e, backend, backends)


def _dry_run(tracer, prepared):
    text, times = tracer.dry_run()
    for note in prepared.plan.notes:
        click.echo(f"ksnoop: {note}", err=True)
    click.echo(text)  # each function's backend and why included
    click.echo(f"loaded {times.programs} programs through the verifier: compile "
               f"{times.compile_s:.2f} s, load {times.load_s:.3f} s", err=True)
