#!/usr/bin/env python3
"""Spec to loaded program on the host: four functions, through the real verifier.

1. The full path as a user sees it: `ksnoop trace --dry-run SPEC1..SPEC4`
   (our console script, a subprocess; median of RUNS after one warm-up).
   Target: < 1.5 s.  Side by side: the reference `/usr/sbin/ksnoop trace
   SPEC1..SPEC4`, which opens, relocates and loads its programs and then
   fails to attach (the host has no kprobes): the same work up to the
   attach, plus a failed attach that costs nothing measurable.
2. In-process breakdown (median of RUNS): import of bcc, BTF open, parse +
   resolve, codegen, header tree, BCC compile, load (verifier).

Needs root (CAP_BPF).  Exit 1 if the target is missed.

    sudo .venv/bin/python bench/load_speed.py [--runs N]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OURS = os.path.join(ROOT, ".venv", "bin", "ksnoop")
REFERENCE = "/usr/sbin/ksnoop"
SPECS = ["ip_send_skb(skb->len == 84, skb)", "tcp_sendmsg(size > 1000)",
         "do_sys_openat2(filename, return < 0)", "udp_sendmsg(sk, len)"]
TARGET_S = 1.5


def timed(argv, expect_ok=True):
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    err = p.stderr.decode(errors="replace")
    if expect_ok and p.returncode != 0:
        sys.exit(f"{' '.join(argv[:2])} failed ({p.returncode}): {err.strip()[-1000:]}")
    return dt, p.returncode, err


def in_process_once():
    """One spec-to-loaded pass in this process, timed per stage (seconds)."""
    from ksnoop.kernel.files import Kernel
    from ksnoop.trace.codegen import Machine, generate
    from ksnoop.trace.resolve import resolve
    from ksnoop.trace.runtime import Probe, Session
    from ksnoop.trace.spec import parse

    t = {}
    t0 = time.perf_counter()
    kernel = Kernel()
    kernel.vmlinux.find("ip_send_skb")  # make the lazy BTF open happen here
    t1 = time.perf_counter()
    plan = resolve([parse(s) for s in SPECS], kernel, limit=2048)
    t2 = time.perf_counter()
    c_text, progs = generate(plan, Machine(os.getpid(), kernel.possible_cpus()))
    probes = [Probe(fp.name, e, r, module=fp.module or None) for fp, e, r in progs]
    t3 = time.perf_counter()
    with Session(c_text, probes, btf=kernel.vmlinux) as s:
        times = s.load_only()
    t4 = time.perf_counter()
    t["BTF open"] = t1 - t0
    t["parse + resolve"] = t2 - t1
    t["codegen"] = t3 - t2
    t["header tree"] = times.header_tree_s
    t["compile (BCC/clang)"] = times.compile_s
    t["load (verifier)"] = times.load_s
    t["session close etc."] = (t4 - t3) - times.header_tree_s - times.compile_s - times.load_s
    t["total in-process"] = t4 - t0
    return t, times.programs, len(c_text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("load_speed.py: needs root (BPF program load)")
    if not os.access(OURS, os.X_OK):
        sys.exit(f"{OURS} missing: run `make setup`")

    ours_argv = [OURS, "trace", "--dry-run", *SPECS]
    ref_argv = [REFERENCE, "trace", *SPECS]
    timed(ours_argv)  # warm-up: header tree, BTF index cache, .pyc
    _, ref_rc, ref_err = timed(ref_argv, expect_ok=False)
    ref_loaded = "Could not attach" in ref_err  # got as far as the attach: loaded
    ours, ref = [], []
    for _ in range(args.runs):
        ours.append(timed(ours_argv)[0])
        ref.append(timed(ref_argv, expect_ok=False)[0])
    mo, mr = statistics.median(ours), statistics.median(ref)
    ok = mo < TARGET_S

    print(f"spec -> loaded programs, {len(SPECS)} functions: " + "  ".join(SPECS))
    print(f"full path, subprocess, median of {args.runs} (min..max):")
    print(f"  ours      ksnoop trace --dry-run   {mo:6.3f} s  ({min(ours):.3f}..{max(ours):.3f})")
    print(f"  reference ksnoop trace (to attach) {mr:6.3f} s  ({min(ref):.3f}..{max(ref):.3f})"
          + ("" if ref_loaded else f"  [did not reach attach: rc {ref_rc}]"))
    print(f"  ratio ours/reference = {mo / mr:.2f} (informational)")
    print(f"  target ours < {TARGET_S} s: {'OK' if ok else 'MISSED'}")

    runs = [in_process_once() for _ in range(args.runs)]
    # the first pass also pays for importing bcc/ksnoop; note it separately
    print(f"in-process breakdown, median of {args.runs} passes "
          f"({runs[0][1]} programs, {runs[0][2]} bytes of generated C):")
    for key in runs[0][0]:
        vals = [r[0][key] for r in runs]
        print(f"  {key:22} {statistics.median(vals) * 1e3:8.1f} ms   (first pass {vals[0] * 1e3:.1f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    t0 = time.perf_counter()
    import ksnoop.trace.runtime  # noqa: F401,E402  (imports bcc)
    IMPORT_S = time.perf_counter() - t0
    print(f"(import ksnoop.trace.runtime + bcc in this process: {IMPORT_S * 1e3:.0f} ms)")
    sys.exit(main())
