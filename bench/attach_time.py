#!/usr/bin/env python3
"""Time to attach every ``tcp_*`` function: our ksnoop against bpftrace's
``kprobe:tcp_*``, in one guest run.  Runs INSIDE the VM test bed (root):
`bench/run-backends.sh` boots the guest and runs it.

Both tools are started ROUNDS times each, alternately, on an idle system
(no tcp traffic), and each reports its own phases:

* bpftrace prints "Attaching N probes..." just before it loads and attaches
  its programs, and runs BEGIN right after the last is attached; BEGIN
  prints ``nsecs`` (CLOCK_MONOTONIC, the clock of time.monotonic()), and
  the line "Attaching" is timestamped as it is read.  Its attach time is
  the difference: program loads plus attaches.
* ksnoop prints "compiled in A s, loaded N programs in B s, attached in C s";
  its attach time, comparable with bpftrace's, is B + C (load through the
  verifier, then attach).  With kprobe-multi (6.12) all functions share one
  program and one link per side.

Also printed: the time from start until each tool is ready (its compile
included), and how many functions each attached.  Target: ours <= 1.5x
bpftrace's attach time (median over rounds) where the kernel has
kprobe-multi.  Exit 1 if missed.

    python3 bench/attach_time.py [--rounds R] [--pattern 'tcp_*'] [--spec SPEC]
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TARGET = 1.5
TIMEOUT_S = 1800


def _reader(stream, lines):
    for line in iter(stream.readline, ""):
        lines.append((time.monotonic(), line.rstrip("\n")))


def _run_until(argv, ready, env=None):
    """Start argv, collect (time, line) of stdout and stderr until ``ready``
    (a function of the lines) says so; then SIGINT it.  (t0, out, err)."""
    out, err = [], []
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    threads = [threading.Thread(target=_reader, args=(p.stdout, out), daemon=True),
               threading.Thread(target=_reader, args=(p.stderr, err), daemon=True)]
    for th in threads:
        th.start()
    try:
        while not ready(out, err):
            if p.poll() is not None:
                time.sleep(0.5)
                raise RuntimeError(f"{argv[0]} exited {p.returncode}: "
                                   + "\n".join(ln for _, ln in err[-20:]))
            if time.monotonic() - t0 > TIMEOUT_S:
                raise RuntimeError(f"{argv[0]}: not ready after {TIMEOUT_S} s")
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for th in threads:
            th.join(5)
    return t0, out, err


def bpftrace(pattern):
    prog = f'BEGIN {{ printf("ready %lld\\n", nsecs); }} kprobe:{pattern} {{ @[probe] = count(); }}'
    t0, out, err = _run_until(["bpftrace", "-e", prog],
                              lambda o, e: any(ln.startswith("ready ") for _, ln in o))
    every = sorted(out + err)
    attaching = next((t, ln) for t, ln in every if ln.startswith("Attaching "))
    ready_ns = next(int(ln.split()[1]) for _, ln in out if ln.startswith("ready "))
    n = int(re.search(r"Attaching (\d+) probe", attaching[1]).group(1))
    return {"attach": ready_ns / 1e9 - attaching[0], "ready": ready_ns / 1e9 - t0, "count": n - 1}


def ksnoop(spec, backend):
    argv = [sys.executable, "-m", "ksnoop", "trace", "-o", "json", "--backend", backend, spec]
    t0, out, err = _run_until(argv, lambda o, e: any("ksnoop: tracing" in ln for _, ln in e))
    t_ready, line = next((t, ln) for t, ln in err if "ksnoop: tracing" in ln)
    m = re.search(r"tracing (\d+) functions? \(compiled in ([\d.]+) s, loaded (\d+) programs in "
                  r"([\d.]+) s, attached in ([\d.]+) s\)", line)
    if not m:
        raise RuntimeError(f"unexpected line: {line!r}")
    notes = [ln for _, ln in err if "functions match" in ln]
    return {"attach": float(m.group(4)) + float(m.group(5)), "link": float(m.group(5)),
            "compile": float(m.group(2)), "ready": t_ready - t0, "count": int(m.group(1)),
            "programs": int(m.group(3)), "note": notes[0] if notes else ""}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pattern", default="tcp_*")
    ap.add_argument("--spec", default=None, help="our spec (default: the pattern, every argument)")
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    from ksnoop.kernel.features import kprobe_multi
    from ksnoop.kernel.files import Kernel

    multi, why = kprobe_multi(Kernel())
    spec = args.spec or args.pattern
    print(f"kernel {os.uname().release}: kprobe-multi {'yes' if multi else 'no (' + why + ')'}")
    ours, theirs = [], []
    for r in range(args.rounds):
        pair = [("bpftrace", lambda: bpftrace(args.pattern)), ("ksnoop", lambda: ksnoop(spec, args.backend))]
        for who, run in (pair if r % 2 == 0 else pair[::-1]):
            got = run()
            (ours if who == "ksnoop" else theirs).append(got)
            print(f"  round {r + 1} {who}: " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items()))
    a = statistics.median(x["attach"] for x in ours)
    b = statistics.median(x["attach"] for x in theirs)
    ratio = a / b
    print(f"attach (load + attach): ksnoop {a:.2f} s for {ours[0]['count']} functions, bpftrace "
          f"{b:.2f} s for {theirs[0]['count']} probes: {ratio:.2f}x (target <= {TARGET}x where the "
          "kernel has kprobe-multi)")
    print(f"start to ready: ksnoop {statistics.median(x['ready'] for x in ours):.2f} s (compile "
          f"{statistics.median(x['compile'] for x in ours):.2f} s), bpftrace "
          f"{statistics.median(x['ready'] for x in theirs):.2f} s")
    if multi and ratio > TARGET:
        print(f"MISSED: attach {ratio:.2f}x > {TARGET}x")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
