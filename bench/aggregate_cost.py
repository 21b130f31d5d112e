#!/usr/bin/env python3
"""Kernel-side cost per call of in-kernel aggregation against a traced event, on the host.

One workload (tests/workload/syscall_loop.c: getppid() at a steady rate)
runs while several ksnoop processes are attached to the same tracepoint,
``tp:sys_enter``, all filtered to the workload's pid:

  trace    ksnoop trace 'tp:sys_enter(id == 110)'       one scalar event per call
  count    ksnoop count 'tp:sys_enter(id == 110)'       a per-CPU array counter
  by-comm  ksnoop count ... --by comm                  a per-CPU hash keyed by comm
  by-pid   ksnoop count ... --by pid                   a per-CPU hash keyed by pid
  hist     ksnoop hist  ... --of id                    a log2 bucket of a per-CPU array
  idle     ksnoop count -p <a sleeping process> ...    the filter alone (no call passes it)

Attached together, every program runs for exactly the same tracepoint hits
(the workload's and everybody else's), so their kernel times compare
directly.  With ``kernel.bpf_stats_enabled=1`` the kernel sums each
program's run time; per workload call:

  (run_time_ns - other_hits * idle_ns_per_run) / workload_calls

where other_hits = run_cnt - workload_calls (hits of other processes, which
leave at the pid filter, costing what ``idle`` costs per run).  Printed: each
program's numbers and its cost relative to ``trace``.  The counts must be
exact (count = calls made, hist sums to it) and the trace may miss at most
0.1% of its events (else it would be measured doing less than it should).  Exit 1 when count
costs more per call than trace.

    sudo .venv/bin/python bench/aggregate_cost.py [--calls N] [--rate R] [--runs K]
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import bpfprogs  # noqa: E402  (tests/bpfprogs.py: a process's BPF programs and their stats)

SPEC = "tp:sys_enter(id == 110)"  # getppid on x86_64
STATS = "/proc/sys/kernel/bpf_stats_enabled"
TRACE_SLACK = 0.001  # events the trace may miss (its cost is then measured doing 0.1% less)


def ksnoop_argv(name, pid):
    base = [sys.executable, "-m", "ksnoop"]
    return {
        "trace": base + ["trace", "-o", "line", "-P", "4096", "-p", pid, SPEC],
        "count": base + ["count", "-p", pid, SPEC],
        "by-comm": base + ["count", "-p", pid, "--by", "comm", SPEC],
        "by-pid": base + ["count", "-p", pid, "--by", "pid", SPEC],
        "hist": base + ["hist", "-p", pid, "--of", "id", SPEC],
        "idle": base + ["count", "-p", pid, SPEC],
    }[name]


def one_run(loop, calls, rate, names, workdir):
    sleeper = subprocess.Popen(["sleep", "1000"])
    work = subprocess.Popen([loop, str(calls), str(rate)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = {}
    try:
        for name in names:
            pid = str(sleeper.pid if name == "idle" else work.pid)
            out = open(os.path.join(workdir, f"{name}.out"), "w+")
            err = open(os.path.join(workdir, f"{name}.err"), "w+")
            procs[name] = (subprocess.Popen(ksnoop_argv(name, pid), stdout=out, stderr=err, env=env,
                                            cwd=ROOT), out, err)
        deadline = time.monotonic() + 300
        for name, (p, _, err) in procs.items():
            while True:
                err.seek(0)
                if "ksnoop: tracing" in err.read():
                    break
                if p.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    sys.exit(f"{name} did not start: {err.read()[-2000:]}")
                time.sleep(0.2)
        ids = {name: bpfprogs.prog_ids(p.pid) for name, (p, _, _) in procs.items()}
        before = {name: bpfprogs.run_stats(i) for name, i in ids.items()}
        made = int(work.communicate("\n", timeout=600)[0].split()[0])
        time.sleep(0.5)
        after = {name: bpfprogs.run_stats(i) for name, i in ids.items()}
        # Stop the trace only once it has printed what it can: a stop while its
        # consumer is behind would end it early, and the check would refuse it.
        _, out, _ = procs["trace"]
        lines, still = -1, 0
        while still < 4:
            n = sum(1 for _ in open(out.name))
            lines, still = n, (still + 1 if n == lines else 0)
            if n >= made:
                break
            time.sleep(0.5)
        for p, _, _ in procs.values():
            p.send_signal(signal.SIGINT)
        texts = {}
        for name, (p, out, err) in procs.items():
            p.wait(timeout=120)
            out.seek(0)
            err.seek(0)
            texts[name] = (out.read(), err.read())
    finally:
        sleeper.kill()
        sleeper.wait()
        for p, _, _ in procs.values():
            if p.poll() is None:
                p.kill()
    check(made, calls, texts)
    return {name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
            for name in names}, made


def check(made, calls, texts):
    """The measured programs did all their work: exact counts, no lost events."""
    if made != calls:
        sys.exit(f"the workload made {made} calls, not {calls}")
    out, err = texts["count"]
    m = re.search(r"tp:sys_enter\s+(\d+)", out)
    if not m or int(m.group(1)) != made:
        sys.exit(f"count reported {m and m.group(1)} for {made} calls:\n{out}{err}")
    out, err = texts["hist"]
    m = re.search(r"(\d+) values", out)
    if not m or int(m.group(1)) != made:
        sys.exit(f"hist summed to {m and m.group(1)} for {made} calls:\n{out}{err}")
    out, err = texts["trace"]
    m = re.search(r"ksnoop: (\d+) events, (\d+) lost", err)
    if not m or int(m.group(1)) < made * (1 - TRACE_SLACK):
        sys.exit(f"trace printed/lost {m and m.groups()} for {made} calls (lower --rate):\n{err[-2000:]}")
    if int(m.group(1)) != made:
        print(f"  note: trace printed {m.group(1)} events ({m.group(2)} lost) for {made} calls")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=300_000)
    ap.add_argument("--rate", type=int, default=100_000,
                    help="calls per second (the trace's events must fit its 16 MiB-per-CPU buffer)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root")
    names = ["trace", "count", "by-comm", "by-pid", "hist", "idle"]
    with tempfile.TemporaryDirectory() as tmp:
        loop = os.path.join(tmp, "syscall_loop")
        subprocess.run(["gcc", "-O2", "-o", loop, os.path.join(ROOT, "tests/workload/syscall_loop.c")],
                       check=True)
        with open(STATS) as f:
            was = f.read().strip()
        with open(STATS, "w") as f:
            f.write("1")
        per_call = {n: [] for n in names}
        try:
            for run in range(args.runs):
                stats, made = one_run(loop, args.calls, args.rate, names, tmp)
                idle_ns, idle_cnt = stats["idle"]
                idle_per_run = idle_ns / idle_cnt if idle_cnt else 0.0
                print(f"run {run + 1}: {made} workload calls; the filter alone costs "
                      f"{idle_per_run:.1f} ns per run")
                for n in names:
                    ns, cnt = stats[n]
                    others = cnt - made if n != "idle" else 0
                    cost = (ns - others * idle_per_run) / made if n != "idle" else idle_per_run
                    per_call[n].append(cost)
                    print(f"  {n:8} run_cnt {cnt:>9}  run_time {ns / 1e6:9.2f} ms  "
                          f"{ns / max(cnt, 1):7.1f} ns/run  {cost:7.1f} ns per workload call")
        finally:
            with open(STATS, "w") as f:
                f.write(was)
    base = statistics.median(per_call["trace"])
    print(f"\nkernel-side cost per call (median of {args.runs} runs), relative to trace:")
    for n in names:
        if n == "idle":
            continue
        med = statistics.median(per_call[n])
        print(f"  {n:8} {med:7.1f} ns  ratio {med / base:.2f}")
    ratio = statistics.median(per_call["count"]) / base
    if ratio > 1.0:
        print(f"FAIL: count costs {ratio:.2f}x a traced scalar event per call")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
