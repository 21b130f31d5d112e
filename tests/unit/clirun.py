"""The ksnoop command line run in-process, for tests that run it hundreds of times.

``run_cli(argv)`` calls ``ksnoop.cli.main.main`` with its own stdin (empty),
stdout and stderr, and returns ``(exit code, stdout bytes, stderr text)``.
A run still going after ``timeout`` seconds is interrupted with ``Hung`` (a
BaseException, so no ``except Exception`` in the code under test swallows
it); signal handlers that main() installs are put back afterwards.
"""

import io
import os
import signal
import sys
from contextlib import contextmanager


class Hung(BaseException):
    """A run took longer than its deadline."""


@contextmanager
def deadline(seconds, what):
    # KSNOOP_TIME_SCALE: how much slower this machine is (the VM test bed runs
    # under TCG, 10-30x slower; tests/vm/guest-suite.sh sets it)
    seconds *= float(os.environ.get("KSNOOP_TIME_SCALE", "1"))

    def on_alarm(signum, frame):
        raise Hung(f"{what}: still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cli(argv, timeout=10.0):
    from ksnoop.cli.main import main

    argv = [str(a) for a in argv]
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    out, err = io.BytesIO(), io.BytesIO()
    streams = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(out, encoding="utf-8", errors="backslashreplace",
                                  write_through=True)
    sys.stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace",
                                  write_through=True)
    code = None
    try:
        with deadline(timeout, "ksnoop " + " ".join(argv)):
            try:
                main(argv)
            except SystemExit as e:
                code = e.code
    finally:
        mine = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = streams
        for stream in mine:  # a dropped wrapper would close the buffer under it
            stream.flush()
            stream.detach()
        for s, h in saved.items():
            signal.signal(s, h)
    return code, out.getvalue(), err.getvalue().decode("utf-8", "replace")


def completed(*argv, timeout=60.0):
    """run_cli as a subprocess.CompletedProcess with text output: for tests
    that only look at the exit code, stdout and stderr (the command line as a
    real process is tested in test_hostile_cli.py and the host tier)."""
    import subprocess

    code, out, err = run_cli(argv, timeout)
    return subprocess.CompletedProcess(["ksnoop", *map(str, argv)], code,
                                       out.decode("utf-8", "replace"), err)


def assert_one_error_line(code, err, argv=()):
    """Exit 1 with exactly one ``ksnoop: ...`` line on stderr, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, f"ksnoop {' '.join(map(str, argv))}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("ksnoop: "), err
    return lines[0]
