#!/usr/bin/env python3
"""Kernel-side cost of rejecting a call: conditions and task filters.

Each variant traces ``tp:sys_enter`` with a spec or filter that rejects every
call, while a C workload (tests/workload/syscall_loop.c) makes CALLS getppid()
calls as fast as it can; the cost per call is the program's run_time_ns /
run_cnt (kernel.bpf_stats_enabled=1).  Printed side by side with the ratios
the issue sets:

- a compound condition of three comparisons, all evaluated, against one
  comparison (target: at most 1.3x);
- -c/--comm (a plain name, and a glob) and --cgroup against -p (target: at
  most 1.2x).

Runs on any kernel with raw tracepoints (this host, or the VM test bed:
bench/run-filters.sh).  Needs root and gcc.  ``--rounds`` starts every
variant's tracer afresh that many times, ``--runs`` runs the workload that
many times per tracer (cheaper under TCG, where compiling dominates); the
median of all is kept.  A program that ran fewer times than the workload
called is an error (the cost would be of some other traffic).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import bpfprogs  # noqa: E402  (tests/bpfprogs.py: a process's BPF programs and their stats)

NO_PID = 4194000  # a pid no process has (below PID_MAX_LIMIT)


def one(exe, calls, spec, args, runs):
    """ns per program run, for each of ``runs`` workload runs, under one
    ksnoop variant (started, so compiled, once: under TCG a compile costs
    far more than a run)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    ks = subprocess.Popen([sys.executable, "-m", "ksnoop", "trace", "-o", "line", *args, spec],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    for line in ks.stderr:
        if line.startswith("ksnoop: tracing"):
            break
    else:
        sys.exit(f"ksnoop did not start for {spec} {args}")
    ids = bpfprogs.prog_ids(ks.pid)
    assert len(ids) == 1, ids
    out = []
    for _ in range(runs):
        t0, n0 = bpfprogs.run_stats(ids)
        subprocess.run([exe, str(calls), "0"], input="\n", capture_output=True, text=True,
                       check=True)
        t1, n1 = bpfprogs.run_stats(ids)
        if n1 - n0 < calls:
            sys.exit(f"{spec} {args}: the program ran {n1 - n0} times for {calls} calls")
        out.append((t1 - t0) / (n1 - n0))
    ks.send_signal(signal.SIGINT)
    ks.communicate(timeout=60)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3,
                    help="tracers started afresh per variant (the order alternates)")
    ap.add_argument("--runs", type=int, default=1, help="workload runs per tracer")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ksnoop-bench-")
    exe = os.path.join(tmp, "syscall_loop")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(ROOT, "tests/workload/syscall_loop.c")],
                   check=True)
    cg_root = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(cg_root, "cgroup.controllers")):  # a bare VM guest
        subprocess.run(["mount", "-t", "cgroup2", "none", cg_root], check=True)
    cgroup = os.path.join(cg_root, f"ksnoop-bench-{os.getpid()}")
    os.mkdir(cgroup)
    variants = [
        ("one comparison", "tp:sys_enter(id == 999999)", []),
        ("three comparisons", "tp:sys_enter(id > 0 && id < 100000 && id == 999999)", []),
        ("-p", "tp:sys_enter(id)", ["-p", str(NO_PID)]),
        ("-c name", "tp:sys_enter(id)", ["-c", "no_such_task"]),
        ("-c glob", "tp:sys_enter(id)", ["-c", "no*such?task"]),
        ("--cgroup", "tp:sys_enter(id)", ["--cgroup", cgroup]),
    ]
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        stats_were = f.read().strip()
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
    results = {name: [] for name, _, _ in variants}
    try:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else list(reversed(variants))
            for name, spec, extra in order:
                costs = one(exe, args.calls, spec, extra, args.runs)
                results[name] += costs
                print(f"round {r + 1}: {name:18} " + " ".join(f"{ns:7.1f}" for ns in costs)
                      + " ns/run", flush=True)
    finally:
        subprocess.run(["sysctl", "-q", f"kernel.bpf_stats_enabled={stats_were}"], check=True)
        os.rmdir(cgroup)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nkernel-side cost of a rejected call (median of {args.rounds} rounds x "
          f"{args.runs} runs, {args.calls} getppid() calls each), kernel {os.uname().release}:")
    for name in med:
        print(f"  {name:18} {med[name]:7.1f} ns")
    checks = [("three comparisons / one", med["three comparisons"] / med["one comparison"], 1.3),
              ("-c name / -p", med["-c name"] / med["-p"], 1.2),
              ("-c glob / -p", med["-c glob"] / med["-p"], 1.2),
              ("--cgroup / -p", med["--cgroup"] / med["-p"], 1.2)]
    failed = False
    for label, ratio, target in checks:
        ok = ratio <= target
        failed |= not ok
        print(f"  {label:26} {ratio:5.2f}x (target <= {target}x) {'ok' if ok else 'OVER'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
