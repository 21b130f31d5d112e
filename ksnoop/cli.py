"""The ksnoop command line: thin click commands over the library.

Errors: a KsnoopError becomes one line on stderr and its exit code (1 for
runtime problems, 2 for usage); a SpecError also shows the spec with a caret
under the bad token.  No traceback reaches the user.
"""

import os
import sys

import click

from . import __version__
from .errors import KsnoopError, SpecError

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)


def debug_option(f):
    return click.option("-d", "--debug", is_flag=True, help="Show what ksnoop does (plan, generated C, BCC).")(f)


def btf_option(f):
    return click.option(
        "--btf", "btf_path", metavar="FILE", type=click.Path(dir_okay=False),
        help="Read types from FILE (raw BTF, or an ELF vmlinux/.ko with a .BTF section) "
             "instead of the running kernel.")(f)


class DefaultTraceGroup(click.Group):
    """Commands match by unique prefix; anything else is a trace spec."""

    def parse_args(self, ctx, args):
        # "ksnoop -p 42 ip_send_skb": options the group does not know start a trace.
        group_opts = {o for p in self.params for o in p.opts + p.secondary_opts}
        group_opts.update(ctx.help_option_names)
        for i, arg in enumerate(args):
            if not arg.startswith("-") or arg == "--":
                break
            if arg.split("=", 1)[0] not in group_opts:
                args = args[:i] + ["trace"] + args[i:]
                break
        return super().parse_args(ctx, args)

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        matches = [c for c in self.list_commands(ctx) if c.startswith(name)]
        if len(matches) == 1:
            return super().get_command(ctx, matches[0])
        return None

    def resolve_command(self, ctx, args):
        if args and self.get_command(ctx, args[0]) is None:
            return "trace", self.get_command(ctx, "trace"), args
        return super().resolve_command(ctx, args)


@click.group(cls=DefaultTraceGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "-V", "--version", prog_name="ksnoop")
@debug_option
@click.pass_context
def cli(ctx, debug):
    """Trace kernel function arguments and return values, typed by BTF.

    \b
    Commands (a unique prefix is enough; no command means "trace"):
      info    show functions' C prototypes and which arguments can be traced
      trace   trace calls of functions (the default)
      render  print raw bytes as a kernel type
      help    show help for a command

    \b
    Example:
      ksnoop info ip_send_skb
      ksnoop "ip_send_skb(skb->len == 84, skb, return)"
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def make_kernel(btf_path):
    from .kernel import Kernel

    return Kernel(btf_path=btf_path)


@cli.command("info", context_settings=CONTEXT)
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
    from .functions import find_function
    from .info import signature

    kernel = make_kernel(btf_path)
    failed = 0
    for name in functions:
        try:
            line = signature(find_function(kernel, name))
        except KsnoopError as e:
            if isinstance(e, SpecError) or e.exit_code != 1:
                raise
            report(e)
            failed += 1
            continue
        click.echo(line)
    if failed:
        sys.exit(1)


@cli.command("trace", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("-p", "--pid", type=click.IntRange(min=1), default=None,
              help="Only calls made by process PID (its thread group id).")
@click.option("-P", "--pages", type=click.IntRange(min=1), default=64, show_default=True,
              help="Buffer pages per CPU (a power of two).")
@click.option("-s", "--size", "limit", type=click.IntRange(8, 65536), default=2048,
              show_default=True, help="Bytes captured per value; larger objects are truncated "
              "and the output says so.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "line", "json"]),
              default="text", show_default=True,
              help="text: multi-line, like the RFC; line: one line per event, return "
                   "values after '=>' (for grep); json: one JSON object per line (for jq).")
@click.option("-n", "--count", "max_events", type=click.IntRange(min=1), default=None,
              help="Stop after N events.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Stop after SECONDS.")
@click.option("--buffer", type=click.Choice(["auto", "ringbuf", "perf"]), default="auto",
              show_default=True, help="BPF ring buffer where the kernel has it, else perf buffer.")
@click.option("--color/--no-color", "colour", default=None,
              help="Colour the text and line output (default: when stdout is a terminal).")
@click.option("--dry-run", is_flag=True,
              help="Resolve, generate, compile and load through the verifier; print the plan; "
                   "attach nothing.")
@click.option("--dump-bpf", is_flag=True, help="Print the generated BPF C and exit.")
@debug_option
def trace_cmd(specs, pid, pages, limit, fmt, max_events, duration, buffer, colour, dry_run,
              dump_bpf, debug):
    """Trace calls of kernel functions.

    \b
    SPEC is FUNC or FUNC(VALUE, ...); a VALUE is an argument name, a member
    path (skb->len, skb->dev->name, how->flags) or "return", optionally with
    a predicate: == != > >= < <= and a number (decimal, 0x hex, negative).
    Predicates compare with the value's C type (so "return < 0" works) and
    all must hold for an event to be shown.  With no VALUE list, every
    argument is shown at entry and the return value at return.  Pointers to
    structs are shown as the struct they point to (up to --size bytes);
    char pointers as strings.  When predicates and both entry and return
    values are named, entry values are held until the return and shown
    together (stash mode).  Events go to stdout; lost events, missed
    returns and a summary go to stderr.

    \b
    Examples:
      ksnoop trace ip_send_skb
      ksnoop "ip_send_skb(skb->len == 84, skb)"
      ksnoop "do_sys_openat2(filename, return < 0)" -o line
      ksnoop -o json "tcp_sendmsg(size > 1000)" | jq .values.size
    """
    from .kernel import Kernel
    from .trace import Tracer, prepare

    if pages & (pages - 1):
        raise click.BadParameter(f"{pages} is not a power of two", param_hint="'-P/--pages'")
    ctx = click.get_current_context()
    debug = debug or bool(ctx.obj and ctx.obj.get("debug"))
    kernel = Kernel()
    prepared = prepare(specs, kernel, limit=limit, pid=pid or 0)
    if dump_bpf:
        click.echo(prepared.c_text, nl=False)
        return
    tracer = Tracer(prepared, kernel, fmt=fmt, pages=pages, buffer=buffer, debug=debug,
                    max_events=max_events or 0, duration=duration or 0.0,
                    colour=sys.stdout.isatty() if colour is None else colour)
    if dry_run:
        text, times = tracer.dry_run()
        click.echo(text)
        click.echo(f"loaded {times.programs} programs through the verifier: compile "
                   f"{times.compile_s:.2f} s, load {times.load_s:.3f} s", err=True)
        return
    # A shell starts background jobs with SIGINT ignored; `kill -INT` must still stop us.
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    tracer.run()


@cli.command("help", context_settings=CONTEXT)
@click.argument("command", required=False)
@click.pass_context
def help_cmd(ctx, command):
    """Show help for COMMAND (or for ksnoop)."""
    parent = ctx.parent
    if command is None:
        click.echo(parent.get_help())
        return
    cmd = cli.get_command(parent, command)
    if cmd is None:
        raise click.UsageError(f"no such command: {command!r}")
    with click.Context(cmd, info_name=cmd.name, parent=parent) as sub:
        click.echo(cmd.get_help(sub))


def report(err):
    """One line on stderr for an error (plus the caret display for spec errors)."""
    if isinstance(err, SpecError) and err.text:
        click.echo(f"ksnoop: {err.message}", err=True)
        click.echo(f"  {err.text}", err=True)
        click.echo("  " + " " * err.pos + "^" * err.length, err=True)
    else:
        click.echo(f"ksnoop: {err}", err=True)


from .cmd_render import render_cmd  # noqa: E402
cli.add_command(render_cmd)


def main(argv=None):
    try:
        rc = cli.main(args=argv, prog_name="ksnoop", standalone_mode=False)
    except KsnoopError as e:
        report(e)
        rc = e.exit_code
    except click.exceptions.Abort:
        click.echo("ksnoop: aborted", err=True)
        rc = 1
    except click.ClickException as e:
        e.show()
        rc = e.exit_code
    except BrokenPipeError:
        # Reader went away (ksnoop ... | head): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        rc = 0
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc if isinstance(rc, int) else 0)
