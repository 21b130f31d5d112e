#!/usr/bin/env python3
"""Wall time of `ksnoop info FUNC`: ours (the console script, as a subprocess)
against the reference C tool (/usr/sbin/ksnoop), warm cache.

One warm-up run of each first, then RUNS alternating runs of each; prints
the medians and ours/reference.  Target: ratio <= 1.5.  Exit 1 if missed.

    .venv/bin/python bench/info_speed.py [--runs N] [FUNC]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, ".venv", "bin", "ksnoop")
REFERENCE = "/usr/sbin/ksnoop"
TARGET = 1.5


def timed(argv):
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{argv[0]} failed ({p.returncode}): {p.stderr.decode(errors='replace').strip()}")
    return dt, p.stdout.decode(errors="replace").strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("func", nargs="?", default="ip_send_skb")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    if not os.access(OURS, os.X_OK):
        sys.exit(f"{OURS} missing: run `make setup`")
    ours_argv = [OURS, "info", args.func]
    ref_argv = [REFERENCE, "info", args.func]
    _, ours_out = timed(ours_argv)  # warm-up: page cache, index cache, .pyc
    _, ref_out = timed(ref_argv)
    ours, ref = [], []
    for _ in range(args.runs):  # alternate so drift hits both equally
        ours.append(timed(ours_argv)[0])
        ref.append(timed(ref_argv)[0])
    mo, mr = statistics.median(ours), statistics.median(ref)
    ratio = mo / mr
    ok = ratio <= TARGET
    print(f"ksnoop info {args.func}: median of {args.runs} runs, warm cache")
    print(f"  {'':10} {'median':>9} {'min':>9} {'max':>9}")
    print(f"  {'ours':10} {mo * 1e3:7.1f}ms {min(ours) * 1e3:7.1f}ms {max(ours) * 1e3:7.1f}ms")
    print(f"  {'reference':10} {mr * 1e3:7.1f}ms {min(ref) * 1e3:7.1f}ms {max(ref) * 1e3:7.1f}ms")
    print(f"  ratio ours/reference = {ratio:.2f} (target <= {TARGET}): {'OK' if ok else 'MISSED'}")
    if ours_out != ref_out:
        print(f"  note: outputs differ:\n    ours: {ours_out}\n    ref:  {ref_out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
