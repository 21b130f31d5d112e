#!/usr/bin/env python3
"""The highest event rate ksnoop and bpftrace print without losing an event.

One paced workload (tests/workload/syscall_loop.c: getppid() COUNT times at
RATE calls per second), one tracepoint (``raw_syscalls:sys_enter``), two
scalar values per event (the syscall number and the first argument
register), traced by

  ksnoop line   ``ksnoop trace -p PID -o line "tp:sys_enter(id == 110, regs->di)"``
  ksnoop json   the same with ``-o json``
  bpftrace      ``tracepoint:raw_syscalls:sys_enter /pid == PID && args->id == 110/
                { printf("%ld %lu\\n", args->id, args->args[0]); }``

each printing to a file and stopped by SIGINT once the workload is done and
the file has not grown for a second.  Rates double from ``--start`` (50,000/s): 50k,
100k, 200k, 400k, 800k, ...; at every rate each tool still in the race
traces a fresh workload of RATE x ``--seconds`` calls (the tools take turns,
in an order rotating from rate to rate).  A step is lossless when the tool
printed exactly as many event lines as the workload made calls AND reported
no loss itself (ksnoop: "N events, M lost" in its summary on stderr;
bpftrace: "Lost N events").  A tool leaves the race at its first lossy
step; the run ends when every tool has left it.

The workload reports the calls it made and the time it took: a step whose
achieved rate falls short of the requested one by more than ``--tolerance``
(the traced workload cannot go that fast on this machine) is reported as
unreached and counts neither way; the tool leaves the race there too (a
higher rate cannot be reached either).  The table shows, per step and tool:
lines printed, loss reported, achieved rate and the tracer's CPU seconds
(user + system, from attach to exit); then each tool's highest lossless
rate and the ratios ksnoop line / bpftrace and ksnoop json / bpftrace.

    sudo .venv/bin/python bench/lossless_rate.py [--start 50000] [--seconds 2.5]
                                                 [--tries 1] [--max 6400000]

Run it on an idle machine (no VM: ``flock /tmp/ks/vm.lock ...``).  Exits 1
if ksnoop's highest lossless rate is below bpftrace's for either format.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable  # the venv's (its site-packages hold click and rich)
SPEC = "tp:sys_enter(id == 110, regs->di)"  # getppid on x86_64
BPFTRACE = ('tracepoint:raw_syscalls:sys_enter /pid == %d && args->id == 110/ '
            '{ printf("%%ld %%lu\\n", args->id, args->args[0]); }')
TOOLS = ("ksnoop line", "ksnoop json", "bpftrace")
# what one event's line starts with or contains, per tool (other lines: notes, headers)
EVENT_LINE = {
    "ksnoop line": re.compile(rb"^.* tp:sys_enter\(id = \(long int\)110, regs->di = ", re.M),
    "ksnoop json": re.compile(rb'^\{.*"function":"tp:sys_enter".*"values":\{"id":110,', re.M),
    "bpftrace": re.compile(rb"^110 \d+$", re.M),
}
READY = {"ksnoop line": "ksnoop: tracing", "ksnoop json": "ksnoop: tracing",
         "bpftrace": "Attaching"}


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1][:200] if lines else "(nothing on stderr)"


def cpu_seconds(pid):
    """User + system CPU seconds of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command(tool, pid):
    if tool == "bpftrace":
        return ["bpftrace", "-e", BPFTRACE % pid]
    return [PYTHON, "-m", "ksnoop", "trace", "-p", str(pid), "-o", tool.split()[1], SPEC]


def wait_for(paths, text, proc, seconds):
    """Until ``text`` appears in one of the files (False: the tool exited or timed out)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in paths:
            with open(path, errors="replace") as f:
                if text in f.read(65536):
                    return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def settle(path, seconds=15.0, quiet=1.0):
    """Wait until ``path`` stops growing for ``quiet`` seconds (at most ``seconds``)."""
    size, since, deadline = -1, time.monotonic(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = os.path.getsize(path)
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


class Step:
    """One tool tracing one paced workload."""

    def __init__(self, tool, rate, calls, made, elapsed, printed, lost, cpu, error=""):
        self.tool, self.rate, self.calls = tool, rate, calls
        self.made, self.elapsed = made, elapsed
        self.printed, self.lost, self.cpu, self.error = printed, lost, cpu, error
        self.detail = ""

    @property
    def achieved(self):
        return self.made / self.elapsed if self.elapsed > 0 else 0.0

    def reached(self, tolerance):
        return self.made == self.calls and self.achieved >= self.rate * (1 - tolerance)

    @property
    def lossless(self):
        return not self.error and self.lost == 0 and self.printed == self.made


def run_step(tool, loop, rate, seconds, workdir):
    """Trace RATE x seconds getppid() calls paced at RATE with ``tool``."""
    calls = max(int(rate * seconds), 1)
    out_path, err_path = os.path.join(workdir, "out"), os.path.join(workdir, "err")
    work = subprocess.Popen([loop, str(calls), str(rate)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        tracer = subprocess.Popen(command(tool, work.pid), stdout=out, stderr=err, cwd=ROOT,
                                  env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        if not wait_for((out_path, err_path), READY[tool], tracer, 120):
            work.kill()
            work.communicate()
            with open(err_path, errors="replace") as f:
                return Step(tool, rate, calls, 0, 0.0, 0, 0, 0.0,
                            error=f"did not start: {last_line(f.read())}")
        time.sleep(0.3)  # past the ready line: attached
        c0 = cpu_seconds(tracer.pid)
        done, _ = work.communicate("go\n")
        settle(out_path)
        cpu = cpu_seconds(tracer.pid) - c0
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=120)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
        if work.poll() is None:
            work.kill()
            work.wait()
    made, elapsed = done.split()
    with open(out_path, "rb") as f:
        body = f.read()
    with open(err_path, errors="replace") as f:
        err_text = f.read()
    printed = len(EVENT_LINE[tool].findall(body))
    if tool == "bpftrace":
        lost = sum(int(n) for n in re.findall(r"Lost (\d+) events", body.decode(errors="replace")
                                              + err_text))
        error = ""
    else:
        m = re.search(r"ksnoop: (\d+) events, (\d+) lost", err_text)
        lost = int(m.group(2)) if m else 0
        # the part of it reported while tracing (the buffer was full); the rest was
        # consumed but not printed (the stop interrupted its formatting or writing)
        buffer_lost = sum(int(n) for n in re.findall(r"ksnoop: lost (\d+) events \(total",
                                                      err_text))
        error = "" if m else f"no summary: {last_line(err_text)}"
        if m and int(m.group(1)) != printed:
            error = f"summary says {m.group(1)} events, {printed} lines printed"
    step = Step(tool, rate, calls, int(made), float(elapsed), printed, lost, cpu, error)
    if tool != "bpftrace" and lost:
        step.detail = f"{buffer_lost:,} reported while tracing, {lost - buffer_lost:,} at the stop"
    return step


def unpaced_rate(loop):
    """getppid() calls per second of the untraced workload, as fast as one core goes."""
    calls = 2_000_000
    out = subprocess.run([loop, str(calls), "0"], input="go\n", capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]) / float(out[1])


def fmt_rate(r):
    return f"{r / 1e6:g}M" if r >= 1e6 and r % 100_000 == 0 else f"{r / 1000:g}k"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", type=int, default=50_000, help="first rate, calls/s")
    ap.add_argument("--max", type=int, default=6_400_000, help="highest rate tried")
    ap.add_argument("--seconds", type=float, default=2.5, help="length of each step")
    ap.add_argument("--tries", type=int, default=1,
                    help="steps per tool and rate; lossless only if every one is")
    ap.add_argument("--tolerance", type=float, default=0.03,
                    help="achieved rate may fall short of the requested one by this fraction")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, of: "
                    + ", ".join(TOOLS))
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",")]
    if any(t not in TOOLS for t in tools):
        ap.error(f"--tools: choose from {', '.join(TOOLS)}")
    if os.geteuid() != 0:
        raise SystemExit("lossless_rate.py needs root (it loads BPF programs)")
    if "bpftrace" in tools and not shutil.which("bpftrace"):
        raise SystemExit("bpftrace is not installed")
    with tempfile.TemporaryDirectory() as d:
        loop = os.path.join(d, "syscall_loop")
        subprocess.run(["gcc", "-O2", "-o", loop,
                        os.path.join(ROOT, "tests/workload/syscall_loop.c")], check=True)
        bare = unpaced_rate(loop)
        print(f"{os.cpu_count()} CPUs, kernel {os.uname().release}, load "
              f"{os.getloadavg()[0]:.2f}; untraced workload: {bare:,.0f} getppid()/s on one core")
        print(f"{'rate/s':>7} {'tool':12} {'calls':>10} {'printed':>10} {'lost':>8} "
              f"{'achieved/s':>11} {'CPU s':>6}  verdict")
        best = {t: 0 for t in tools}
        stopped = {}
        rate, turn = args.start, 0
        while len(stopped) < len(tools) and rate <= args.max:
            racing = [t for t in tools if t not in stopped]
            order = racing[turn % len(racing):] + racing[:turn % len(racing)]
            turn += 1
            verdicts = {}
            for _ in range(args.tries):
                for tool in order:
                    if verdicts.get(tool, "lossless") != "lossless":
                        continue
                    s = run_step(tool, loop, rate, args.seconds, d)
                    if s.error:
                        verdict = f"error: {s.error}"
                    elif not s.reached(args.tolerance):
                        verdict = "unreached"  # counts neither way (lossless or not)
                        extra = "lossless" if s.lossless else "lost events"
                    elif s.lossless:
                        verdict = "lossless"
                    else:
                        verdict = "LOST"
                    verdicts[tool] = verdict
                    note = f" (asked {rate:,}/s; {extra})" if verdict == "unreached" else ""
                    note += f" [{s.detail}]" if s.detail else ""
                    print(f"{fmt_rate(rate):>7} {tool:12} {s.made:>10,} {s.printed:>10,} "
                          f"{s.lost:>8,} {s.achieved:>11,.0f} {s.cpu:>6.2f}  {verdict}{note}",
                          flush=True)
            for tool, verdict in verdicts.items():
                if verdict == "lossless":
                    best[tool] = rate
                else:
                    stopped[tool] = verdict
            rate *= 2
    print()
    print("highest lossless rate (calls/s):")
    for tool in tools:
        why = stopped.get(tool, f"no loss up to --max {args.max:,}")
        print(f"  {tool:12} {best[tool]:>10,}   (next rate: {why})")
    failed = False
    if "bpftrace" in best:
        b = best["bpftrace"]
        for tool in ("ksnoop line", "ksnoop json"):
            if tool not in best:
                continue
            if not b:
                failed = True
                print(f"  {tool} / bpftrace: no ratio (bpftrace lossless at no rate tried)")
                continue
            # a tool stopped by an unreached rate, not by a loss, might go faster:
            # its rate is a lower bound (bpftrace's: the ratio's upper bound)
            low, high = stopped.get(tool) == "unreached", stopped.get("bpftrace") == "unreached"
            bound = {(True, True): "  (inconclusive: both stopped by unreached rates)",
                     (True, False): "  (at least: ksnoop stopped by an unreached rate)",
                     (False, True): "  (at most: bpftrace stopped by an unreached rate)"}
            ok = best[tool] >= b
            failed |= not ok
            print(f"  {tool} / bpftrace: {best[tool] / b:.1f}x  target >= 1.0x: "
                  f"{'ok' if ok else 'MISSED'}{bound.get((low, high), '')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
