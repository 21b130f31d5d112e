#!/usr/bin/env python3
"""Soak test: ksnoop traces a tracepoint at a steady rate for a long time.

A paced C workload (tests/workload/syscall_loop.c) calls getppid() at RATE
calls per second for SECONDS; ksnoop traces ``tp:sys_enter(id == 110, ...)``
for that process and writes its output to /dev/null.  Checked at the end:

- nothing lost, and events printed = calls made, exactly;
- resident memory flat: RSS at the end at most 10% above RSS after the
  warm-up (the first minute, or the first fifth of a shorter run).

    tools/soak.py [--seconds 600] [--rate 50000] [--format json]

Prints one line per sample and a summary; exit 0 when every check holds.
Needs root (BPF) and gcc.  x86_64 (getppid is syscall 110).
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GETPPID = 110


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rate", type=int, default=50_000)
    ap.add_argument("--format", choices=["text", "line", "json"], default="json")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--max-growth", type=float, default=0.10)
    args = ap.parse_args()

    exe = os.path.join(tempfile.mkdtemp(prefix="ksnoop-soak-"), "syscall_loop")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(ROOT, "tests/workload/syscall_loop.c")],
                   check=True)
    calls = int(args.seconds * args.rate)
    work = subprocess.Popen([exe, str(calls), str(args.rate)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    env = dict(os.environ, PYTHONPATH=ROOT)
    with open(os.devnull, "w") as devnull:
        ks = subprocess.Popen([sys.executable, "-m", "ksnoop", "trace", "-o", args.format,
                               "-p", str(work.pid), f"tp:sys_enter(id == {GETPPID}, regs->di)"],
                              stdout=devnull, stderr=subprocess.PIPE, text=True, env=env)
        for line in ks.stderr:
            if line.startswith("ksnoop: tracing"):
                break
        else:
            work.kill()
            sys.exit("ksnoop did not start")
        t0 = time.monotonic()
        work.stdin.write("\n")
        work.stdin.flush()
        warmup = min(60.0, args.seconds / 5)
        samples = []
        while work.poll() is None:
            time.sleep(min(args.sample, max(0.5, args.seconds / 20)))
            t, rss = time.monotonic() - t0, rss_kib(ks.pid)
            samples.append((t, rss))
            print(f"{t:7.1f} s  rss {rss / 1024:7.1f} MiB", flush=True)
        made = int(work.stdout.read().split()[0])
        took = time.monotonic() - t0
        time.sleep(1.0)  # let the consumer catch up before stopping
        end_rss = rss_kib(ks.pid)
        ks.send_signal(signal.SIGINT)
        err = ks.stderr.read()
        ks.wait(timeout=120)
    m = re.search(r"ksnoop: (\d+) events, (\d+) lost", err)
    if not m:
        sys.exit("no summary from ksnoop:\n" + err)
    events, lost = int(m.group(1)), int(m.group(2))
    base = next((rss for t, rss in samples if t >= warmup), samples[0][1] if samples else end_rss)
    growth = (end_rss - base) / base if base else 0.0
    print(f"\n{made} calls in {took:.1f} s ({made / took:,.0f}/s), format {args.format}")
    print(f"events {events}, lost {lost}; RSS after warm-up ({warmup:.0f} s) {base / 1024:.1f} MiB, "
          f"at the end {end_rss / 1024:.1f} MiB ({growth:+.1%})")
    failures = []
    if lost:
        failures.append(f"{lost} events lost")
    if events != made:
        failures.append(f"events {events} != calls {made}")
    if growth > args.max_growth:
        failures.append(f"RSS grew {growth:.1%} (more than {args.max_growth:.0%})")
    if failures:
        print("FAIL: " + "; ".join(failures))
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
