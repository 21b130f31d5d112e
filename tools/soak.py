#!/usr/bin/env python3
"""Soak test: ksnoop traces a tracepoint at a steady rate for a long time.

A paced C workload (tests/workload/syscall_loop.c) calls getppid() at RATE
calls per second for SECONDS; ksnoop traces ``tp:sys_enter(id == 110, ...)``
for that process, and this script reads and counts its output as it comes
(the events printed, counted apart from ksnoop's own summary).  Checked at
the end:

- nothing lost: ksnoop reports 0 lost;
- every count exact: events printed = events in ksnoop's summary = calls the
  workload made (its own count) = SECONDS x RATE;
- a steady rate: the calls took at most 10% longer than SECONDS;
- resident memory flat: after the warm-up (the first minute, or the first
  fifth of a shorter run) ksnoop's RSS never exceeds its RSS at the end of
  the warm-up by 10% or more (sampled every --sample seconds, and at the end).

    tools/soak.py [--seconds 600] [--rate 50000] [--format json] [--pages N] [--result FILE]

Prints one line per sample, the figures, then PASS or FAIL: ...; exit 0 when
every check holds, 1 otherwise.  --result writes the figures and the verdict
as JSON.  Needs root (BPF) and gcc.  x86_64 (getppid is syscall 110).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GETPPID = 110
SPEC = f"tp:sys_enter(id == {GETPPID}, regs->di)"
# once per event in each output format, and nowhere else
MARKERS = {"json": b'"values":{"id":110,', "line": b"id = (long int)110,",
           "text": b"id = (long int)110,"}


def rss_kib(pid):
    """VmRSS of process ``pid`` in KiB, or 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class OutputCounter(threading.Thread):
    """Reads a pipe to its end, counting ``marker`` (across read boundaries)."""

    def __init__(self, fd, marker):
        super().__init__(daemon=True)
        self.fd, self.marker, self.count, self.nbytes = fd, marker, 0, 0

    def run(self):
        keep = len(self.marker) - 1
        tail = b""
        while True:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                break
            self.nbytes += len(chunk)
            data = tail + chunk
            self.count += data.count(self.marker)
            # a marker cannot end inside the kept tail (it is shorter than one)
            tail = data[-keep:] if keep else b""
        os.close(self.fd)


def loadavg():
    """The 1-minute load average (other work competing for the CPUs)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return 0.0


def cpu_seconds(pid):
    """User + system CPU time of process ``pid`` so far, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_workload():
    exe = os.path.join(tempfile.mkdtemp(prefix="ksnoop-soak-"), "syscall_loop")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(ROOT, "tests/workload/syscall_loop.c")],
                   check=True)
    return exe


def soak(seconds, rate, fmt="json", sample=10.0, max_growth=0.10, pages=None, log=lambda s: None):
    """Run the soak; return its figures and verdict as a dict."""
    exe = build_workload()
    calls = int(seconds * rate)
    work = subprocess.Popen([exe, str(calls), str(rate)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    env = dict(os.environ, PYTHONPATH=ROOT)
    rfd, wfd = os.pipe()
    size = ["-P", str(pages)] if pages else []
    ks = subprocess.Popen([sys.executable, "-m", "ksnoop", "trace", "-o", fmt, "--no-color", *size,
                           "-p", str(work.pid), SPEC],
                          stdout=wfd, stderr=subprocess.PIPE, text=True, env=env)
    os.close(wfd)
    counter = OutputCounter(rfd, MARKERS[fmt])
    counter.start()
    try:
        for line in ks.stderr:
            if line.startswith("ksnoop: tracing"):
                break
        else:
            raise RuntimeError("ksnoop did not start: " + (ks.stderr.read() or "no output"))
        warmup = min(60.0, seconds / 5)
        t0, cpu0 = time.monotonic(), cpu_seconds(ks.pid)
        work.stdin.write("\n")
        work.stdin.flush()
        samples, loads = [], []
        step = min(sample, max(0.5, seconds / 20))
        while work.poll() is None:
            time.sleep(step)
            t, rss = time.monotonic() - t0, rss_kib(ks.pid)
            samples.append((t, rss))
            loads.append(loadavg())
            log(f"{t:7.1f} s  rss {rss / 1024:7.1f} MiB  printed {counter.count}  load {loads[-1]:.2f}")
        made, took = work.stdout.read().split()[:2]
        made, took = int(made), float(took)
        time.sleep(1.0)  # let the consumer catch up before stopping
        end_rss = rss_kib(ks.pid)
        t_end = time.monotonic() - t0
        cpu = (cpu_seconds(ks.pid) - cpu0) / t_end
        samples.append((t_end, end_rss))
        ks.send_signal(signal.SIGINT)
        err = ks.stderr.read()
        ks.wait(timeout=120)
    finally:
        for p in (work, ks):
            if p.poll() is None:
                p.kill()
                p.wait()
    counter.join(timeout=60)
    m = re.search(r"ksnoop: (\d+) events, (\d+) lost", err)
    if not m:
        raise RuntimeError("no summary from ksnoop:\n" + err)
    events, lost = int(m.group(1)), int(m.group(2))
    after = [rss for t, rss in samples if t >= warmup]
    base = after[0] if after else end_rss
    peak = max(after) if after else end_rss
    growth = (peak - base) / base if base else 0.0
    res = {"seconds": seconds, "rate": rate, "format": fmt, "pages": pages, "calls": calls,
           "made": made,
           "took_s": round(took, 3), "events": events, "printed": counter.count, "lost": lost,
           "warmup_s": warmup, "rss_warmup_kib": base, "rss_peak_kib": peak,
           "rss_end_kib": end_rss, "growth": round(growth, 4), "ksnoop_cpu": round(cpu, 3),
           "load_max": max(loads, default=0.0),
           "samples": [(round(t, 1), rss) for t, rss in samples]}
    failures = []
    if lost:
        failures.append(f"{lost} events lost")
    if not made == events == counter.count == calls:
        failures.append(f"counts differ: calls asked {calls}, made {made}, events {events}, "
                        f"printed {counter.count}")
    if took > seconds * 1.10:
        failures.append(f"not a steady {rate}/s: {made} calls took {took:.1f} s")
    if growth >= max_growth:
        failures.append(f"RSS grew {growth:.1%} after the warm-up (limit {max_growth:.0%})")
    res["failures"] = failures
    res["verdict"] = "FAIL" if failures else "PASS"
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rate", type=int, default=50_000)
    ap.add_argument("--format", choices=sorted(MARKERS), default="json")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--max-growth", type=float, default=0.10)
    ap.add_argument("--pages", type=int, help="ksnoop -P (buffer pages per CPU; default: ksnoop's)")
    ap.add_argument("--result", help="write the figures and the verdict to this file as JSON")
    args = ap.parse_args()
    if not (args.seconds > 0 and args.rate > 0):
        ap.error("--seconds and --rate must be positive")
    try:
        res = soak(args.seconds, args.rate, args.format, args.sample, args.max_growth, args.pages,
                   log=lambda s: print(s, flush=True))
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print(f"soak: {e}", file=sys.stderr)
        sys.exit(1)
    if args.result:
        with open(args.result, "w") as f:
            json.dump(res, f, indent=1)
    print(f"\n{res['made']} calls in {res['took_s']:.1f} s ({res['made'] / res['took_s']:,.0f}/s), "
          f"format {res['format']}, -P {res['pages'] or 'default'}; ksnoop used "
          f"{res['ksnoop_cpu']:.0%} of a CPU; load average up to {res['load_max']:.2f}")
    print(f"events {res['events']}, printed {res['printed']}, lost {res['lost']}; "
          f"RSS after warm-up ({res['warmup_s']:.0f} s) {res['rss_warmup_kib'] / 1024:.1f} MiB, "
          f"peak after it {res['rss_peak_kib'] / 1024:.1f} MiB, "
          f"at the end {res['rss_end_kib'] / 1024:.1f} MiB ({res['growth']:+.1%})")
    print(res["verdict"] + (": " + "; ".join(res["failures"]) if res["failures"] else ""))
    sys.exit(1 if res["failures"] else 0)


if __name__ == "__main__":
    main()
