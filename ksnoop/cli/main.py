"""The ksnoop command line: thin click commands over the library.

Errors: a KsnoopError becomes one line on stderr and its exit code (1 for
runtime problems, 2 for usage); a SpecError also shows the spec with a caret
under the bad token.  No traceback reaches the user.
"""

import os
import sys

import click

from .. import __version__
from ..errors import KsnoopError, Terminated
from .options import CONTEXT, debug_option, report, report_line


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
      count   count calls in the kernel, per function or per value (--by)
      hist    power-of-two histograms of a value or of durations (--of)
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


from .count import count_cmd  # noqa: E402
from .hist import hist_cmd  # noqa: E402
from .info import info_cmd  # noqa: E402
from .render import render_cmd  # noqa: E402
from .trace import trace_cmd  # noqa: E402

for _cmd in (info_cmd, trace_cmd, count_cmd, hist_cmd, render_cmd):
    cli.add_command(_cmd)


def _run(argv):
    """Run the command line; every outcome becomes an exit code here, not in click
    (click's own main() would turn a closed pipe and Ctrl-C into exit 1)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        with cli.make_context("ksnoop", args) as ctx:
            cli.invoke(ctx)
        sys.stdout.flush()
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        # One line, like every other error (click would add a usage block).
        report_line(e.format_message())
        return e.exit_code
    except click.exceptions.Abort:  # click's prompt interrupted (ksnoop has none)
        return 130
    except KsnoopError as e:
        report(e)
        return e.exit_code
    except BrokenPipeError:
        # Reader went away (ksnoop ... | head): a normal end.  Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (KeyboardInterrupt, Terminated):
        click.echo("ksnoop: interrupted", err=True)
        return 130
    except OSError as e:
        where = f"{e.filename}: " if e.filename else "cannot write output: " if _stdout_broken(e) else ""
        click.echo(f"ksnoop: {where}{e.strerror or e}", err=True)
        return 1


def _stdout_broken(err):
    """An OSError that came from writing our output (ENOSPC on > /dev/full, EIO on a tty)."""
    import traceback

    return any(f.name in ("echo", "write", "flush") for f in traceback.extract_tb(err.__traceback__))


def _on_terminate(signum, frame):
    raise Terminated(128 + signum)


def main(argv=None):
    import signal

    # Ctrl-C even when started as a background job (shells ignore SIGINT there);
    # SIGTERM/SIGHUP like Ctrl-C until a trace installs its own handlers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_terminate)
    rc = _run(argv)
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(rc if isinstance(rc, int) else 0)
