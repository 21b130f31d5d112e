#!/usr/bin/env python3
"""Wall time of `ksnoop info FUNC...`: ours (the console script, as a
subprocess) against the reference C tool (/usr/sbin/ksnoop), cold and warm.

  cold  every run of ours gets a fresh, empty cache directory, so it builds
        the BTF type index from scratch (and writes it out, as a first run
        does).  The OS page cache and Python's .pyc files stay warm: "cold"
        means ksnoop's own cache only.
  warm  every run of ours shares one cache directory filled by a first run.

The cache directory is chosen through the environment variables ksnoop
honours (KSNOOP_CACHE_DIR and XDG_CACHE_HOME, both pointed into a temporary
directory, so the user's ~/.cache is never read or written); after the cold
runs the bench checks that ksnoop really wrote its cache there, otherwise
the "cold" numbers would be warm ones and it fails.  The reference has no
cache: it is timed the same way in both phases, interleaved with ours.

Runs alternate between the two tools, and which one goes first alternates
from pair to pair, so drift and cache effects hit both equally.  Printed:
median, min and max of each, and the ratio of the medians.

Outputs are compared line by line with the reference's; a difference is
excused only when the model of the reference's known defects, applied to our
line, gives exactly the reference's line (tools/ref_ksnoop.expected, judged
by tools/info_compare.judge, as in the full comparison).  Any other
difference fails the bench, and so does a function the reference hangs on
(refused up front: it cannot be timed).

Target: warm ratio ours/reference <= 1.5 (cold is reported, no target).
Exit 1 if the target is missed or the outputs differ unexplained.

    .venv/bin/python bench/info_speed.py [--runs N] [FUNC...]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import bpftool_btf  # noqa: E402  (tools/: bpftool's raw BTF dump, read independently of ksnoop)
import info_compare  # noqa: E402  (tools/: how the reference's output is judged)
import ref_ksnoop  # noqa: E402  (tools/: the model of the reference's known defects)

OURS = os.path.join(ROOT, ".venv", "bin", "ksnoop")
REFERENCE = ref_ksnoop.REFERENCE
VMLINUX = info_compare.VMLINUX
TARGET = 1.5
REF_TIMEOUT_S = 60


def cache_env(base):
    """An environment whose ksnoop cache lives under ``base`` (and nowhere else)."""
    env = dict(os.environ, KSNOOP_CACHE_DIR=os.path.join(base, "ksnoop"), XDG_CACHE_HOME=base)
    env.pop("KSNOOP_NO_CACHE", None)
    return env


def timed(argv, env=None, encoding="utf-8"):
    """(seconds, stdout) of one run; the reference's bytes are read as latin-1,
    as tools/ref_ksnoop.py models them (it can print stray bytes)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=env, timeout=REF_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        sys.exit(f"{argv[0]} did not finish in {REF_TIMEOUT_S} s")
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{argv[0]} failed ({p.returncode}): {p.stderr.decode(errors='replace').strip()}")
    return dt, p.stdout.decode(encoding, errors="replace")


def files_under(path):
    return sum(len(files) for _, _, files in os.walk(path))


def alternate(runs, ours, ref):
    """``runs`` pairs; each calls ours() and ref() (each returns seconds),
    in the order ours-first, ref-first, ours-first, ..."""
    o, r = [], []
    for i in range(runs):
        if i % 2 == 0:
            o.append(ours())
            r.append(ref())
        else:
            r.append(ref())
            o.append(ours())
    return o, r


def differences(raw, funcs, ours_out, ref_out):
    """([(func, ours line, reference line, reason)] not explained, Counter of
    the known reference defects that explain the other differing lines).

    As tools/info_compare.py judges: the model of the reference's defects
    (tools/ref_ksnoop.expected) applied to our line must give exactly the
    reference's line."""
    ours_lines, ref_lines = ours_out.splitlines(), ref_out.splitlines()
    if len(ours_lines) != len(funcs) or len(ref_lines) != len(funcs):
        return [("*", ours_out, ref_out,
                 f"{len(ours_lines)} lines from ours, {len(ref_lines)} from the reference, "
                 f"{len(funcs)} functions asked")], Counter()
    bad, excused = [], Counter()
    for name, o, t in zip(funcs, ours_lines, ref_lines):
        if o == t:
            continue
        try:
            expect = ref_ksnoop.expected(raw, name, o)
        except ref_ksnoop.Unmodeled as e:
            bad.append((name, o, t, f"not a known defect's shape: {e}"))
            continue
        why = info_compare.judge(expect, ref_ksnoop.Printed(t, False))
        if why:
            bad.append((name, o, t, why))
        else:
            excused.update(expect.classes)
    return bad, excused


def report(label, ours, ref):
    mo, mr = statistics.median(ours), statistics.median(ref)
    print(f"  {label}")
    print(f"    {'':10} {'median':>9} {'min':>9} {'max':>9}")
    print(f"    {'ours':10} {mo * 1e3:7.1f}ms {min(ours) * 1e3:7.1f}ms {max(ours) * 1e3:7.1f}ms")
    print(f"    {'reference':10} {mr * 1e3:7.1f}ms {min(ref) * 1e3:7.1f}ms {max(ref) * 1e3:7.1f}ms")
    return mo / mr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("funcs", nargs="*", default=["ip_send_skb"], metavar="FUNC")
    ap.add_argument("--runs", type=int, default=20, help="pairs of runs per phase")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if not os.access(OURS, os.X_OK):
        sys.exit(f"{OURS} missing: run `make setup`")
    if not os.access(REFERENCE, os.X_OK):
        sys.exit(f"{REFERENCE} missing (Debian package libbpf-tools)")
    raw = bpftool_btf.Raw(bpftool_btf.bpftool(VMLINUX, "raw"))
    for name in args.funcs:
        if name not in raw.funcs:
            sys.exit(f"{name}: not a function in vmlinux BTF")
        if ref_ksnoop.hangs(raw, name):
            sys.exit(f"{name}: the reference hangs on this prototype; choose another function")

    ours_argv = [OURS, "info", *args.funcs]
    ref_argv = [REFERENCE, "info", *args.funcs]
    work = tempfile.mkdtemp(prefix="ksnoop-info-bench-")
    try:
        # warm-up of everything but ksnoop's cache: page cache, .pyc files
        timed(ours_argv, cache_env(os.path.join(work, "warmup")))
        _, ref_out = timed(ref_argv, encoding="latin-1")

        cold_dirs = []

        def ours_cold():
            d = os.path.join(work, f"cold{len(cold_dirs)}")
            os.mkdir(d)  # fresh and empty
            cold_dirs.append(d)
            dt, out = timed(ours_argv, cache_env(d))
            outputs.add(out)
            return dt

        warm_env = cache_env(os.path.join(work, "warm"))

        def ours_warm():
            dt, out = timed(ours_argv, warm_env)
            outputs.add(out)
            return dt

        def ref():
            dt, out = timed(ref_argv, encoding="latin-1")
            ref_outputs.add(out)
            return dt

        outputs, ref_outputs = set(), {ref_out}
        cold = alternate(args.runs, ours_cold, ref)
        not_written = [d for d in cold_dirs if files_under(d) == 0]
        timed(ours_argv, warm_env)  # fill the warm cache
        warm_files = files_under(os.path.join(work, "warm"))
        warm = alternate(args.runs, ours_warm, ref)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    failed = []
    print(f"ksnoop info {' '.join(args.funcs)}: {args.runs} runs of each tool per phase, "
          "alternating (which tool goes first alternates too)")
    cold_ratio = report("cold (ours: fresh empty cache dir each run; reference: no cache)", *cold)
    print(f"    ratio ours/reference = {cold_ratio:.2f} (no target)")
    warm_ratio = report(f"warm (ours: cache dir filled by a first run, {warm_files} files)", *warm)
    ok = warm_ratio <= TARGET
    print(f"    ratio ours/reference = {warm_ratio:.2f} (target <= {TARGET}): "
          f"{'OK' if ok else 'MISSED'}")
    if not ok:
        failed.append(f"warm ratio {warm_ratio:.2f}")
    if not_written:
        failed.append(f"{len(not_written)} cold runs wrote no cache under the directory given "
                      "through KSNOOP_CACHE_DIR/XDG_CACHE_HOME: the cold phase was not cold")
    if not warm_files:
        failed.append("the warm cache directory stayed empty: the warm phase was not warm")
    if len(outputs) != 1 or len(ref_outputs) != 1:
        failed.append(f"outputs changed from run to run ({len(outputs)} of ours, "
                      f"{len(ref_outputs)} of the reference)")
    diffs, excused = [], Counter()
    for o in sorted(outputs):
        for r in sorted(ref_outputs):
            bad, classes = differences(raw, args.funcs, o, r)
            diffs += bad
            excused |= classes
    print(f"  output: {'identical to' if not diffs and not excused else 'compared with'} "
          f"the reference's" + (f" (differences excused by known reference defects: "
                                f"{', '.join(sorted(excused))})" if excused else ""))
    for name, o, t, reason in diffs:
        print(f"  DIFF {name}: {reason}\n    ours: {o}\n    ref:  {t}")
    if diffs:
        failed.append(f"{len(diffs)} unexplained output differences")
    if failed:
        print("MISSED: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
