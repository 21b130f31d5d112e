#!/usr/bin/env python3
"""Events per second through the trace consumer: event bytes -> output text.

In process (the default): decode + format per event, no buffer reading, no
writing (``FastFormatter.format``; before it, ``Formatter.event(Decoder.decode())``),
and the tracer's own path (its record handler, output batches written to
/dev/null).  Cases, one event layout each, resolved against the running
kernel's BTF:

  scalars2   ``ksys_lseek(fd, offset)``: two scalar values (registers)
  mixed      ``do_sys_openat2(dfd, filename, how, how->flags)``: a scalar, a
             string, a struct pointer and a member read from memory
  skb        ``ip_send_skb(skb)``: a whole ``struct sk_buff`` (232 bytes of
             bench/render_speed.py's realistic bytes, ``random.Random(42)``)

The old consumer is the ksnoop package of git revision ``--old`` (default:
BASELINE, the last commit before the fast consumer), extracted with ``git
archive``; the new one is this working tree.  Each runs in its own
subprocess with the same event bytes, ``--rounds`` times, alternating, and
the best round counts (the machine is shared: the best is the least
disturbed); old and new outputs are compared byte for byte (JSON: object by
object, members the new consumer adds, such as "wall", aside).  Rates are per
CPU second of the measuring process.

``--instructions``: instructions per event instead (valgrind's callgrind,
counting each case between two markers), exact and independent of the load.

End to end (a real tracepoint, a paced workload, against bpftrace): see
bench/lossless_rate.py.

Targets for the new consumer in process: skb text 30,000/s, skb json
20,000/s, scalars2 line and json 400,000/s.  Exits 1 if one is missed (or if
outputs differ).

    .venv/bin/python bench/consumer_speed.py [--old REV] [--rounds R] [--seconds S]
                                             [--instructions]
"""

import argparse
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = "d346bdd"  # before the fast consumer
VMLINUX = "/sys/kernel/btf/vmlinux"
PYTHON = os.path.realpath(sys.executable)  # valgrind needs the binary, not a wrapper

CASES = {
    "scalars2": ("ksys_lseek(fd, offset)", ("line", "text", "json")),
    "mixed": ("do_sys_openat2(dfd, filename, how, how->flags)", ("line", "text", "json")),
    "skb": ("ip_send_skb(skb)", ("line", "text", "json")),
}
TARGETS = {("skb", "text"): 30000, ("skb", "json"): 20000,
           ("scalars2", "line"): 400000, ("scalars2", "json"): 400000}
POOL = 256  # distinct events per case, cycled


# ------------------------------------------------------------------ worker
def make_events(case, plan, wire):
    """POOL event byte strings for the case's one layout."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from render_speed import realistic

    rng = random.Random(42)
    (ev,) = wire.layouts_for(plan.funcs[0])
    comms = [b"curl", b"nginx: worker", b"ksoftirqd/0", b"python3", b"systemd-resolve"]
    out = []
    for i in range(POOL):
        b = bytearray(ev.size)
        wire.HEADER.pack_into(b, 0, 1_700_000_000_000 + i * 1_234_567, 1000 + i % 50,
                              1000 + i % 70, i % 2, ev.func, ev.kind, 0, comms[i % len(comms)])
        for s in ev.slots:
            v = s.value
            if v.kind == "scalar" and s.status < 0:
                struct.pack_into("<Q", b, s.ptr, rng.choice((3, 4, 250, 1 << 20, 1 << 40)))
            elif v.kind == "scalar":
                struct.pack_into("<iQ", b, s.status, 0, rng.choice((0, 0x8000, 0o100101)))
            elif v.kind == "string":
                name = rng.choice((b"/etc/hosts", b"/usr/lib/x86_64-linux-gnu/libc.so.6",
                                   b"/proc/self/stat"))
                struct.pack_into("<Qi", b, s.ptr, 0xFFFF888000100000 + i * 64, len(name) + 1)
                b[s.data:s.data + len(name)] = name
            elif v.kind == "deref":
                struct.pack_into("<Qi", b, s.ptr, 0xFFFF888000200000 + i * 256, 0)
                b[s.data:s.data + s.size] = realistic(rng, s.size)
        out.append(bytes(b))
    return out


_KERNELS = {}


def consumers(root, case, fmt):
    """(events, format one event, tracer handler, flush) for the ksnoop at ``root``."""
    sys.path.insert(0, root)
    import io

    from ksnoop.kernel.files import Kernel
    from ksnoop.trace import wire
    from ksnoop.trace.events import Decoder
    from ksnoop.trace.job import Prepared, Tracer
    from ksnoop.trace.output import Formatter
    from ksnoop.trace.resolve import resolve
    from ksnoop.trace.spec import parse

    if root not in _KERNELS:
        _KERNELS[root] = Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent")
    plan = resolve([parse(CASES[case][0])], _KERNELS[root], limit=2048)
    events = make_events(case, plan, wire)
    try:
        from ksnoop.trace.fastout import FastFormatter
    except ImportError:  # the old consumer
        dec, f = Decoder(plan), Formatter(fmt)

        def one(data):
            return f.event(dec.decode(data))
    else:
        ff = FastFormatter(plan, fmt)

        def one(data):
            return ff.format(data, 0, len(data))
    null = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker
    t = Tracer(Prepared(plan, "", []), kernel=None, fmt=fmt, out=null, err=io.StringIO())
    if hasattr(t, "_flush_output"):
        handle, flush = t._on_record, t._flush_output
    else:
        def handle(data, off, size):
            t._on_event(-1, data)
        flush = null.flush
    return events, one, handle, flush


def rate(fn, events, seconds):
    """Events per CPU second of fn over the pool, and per wall second."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        for data in events:
            fn(data)
        n += len(events)
        wall = time.perf_counter() - t0
        if wall >= seconds:
            return n / max(time.process_time() - c0, 1e-9), n / wall


def worker(root, seconds):
    results = []
    for case, (_, fmts) in CASES.items():
        for fmt in fmts:
            events, one, handle, flush = consumers(root, case, fmt)
            texts = [one(d) for d in events]
            cpu, wall = rate(one, events, seconds)

            def batch(data, handle=handle, flush=flush, last=events[-1]):
                handle(data, 0, len(data))
                if data is last:  # once per pass over the pool, as once per poll
                    flush()
            tracer_cpu, _ = rate(batch, events, seconds)
            results.append({"case": case, "fmt": fmt, "cpu": cpu, "wall": wall,
                            "tracer": tracer_cpu, "texts": texts})
    print(json.dumps(results))


def count_worker(root):
    """Under callgrind (--dump-before=getppid): every case formats COUNTS[case]
    events between two getppid() calls, so each case's instructions are one dump."""
    ready = [(case, fmt, consumers(root, case, fmt)) for case, (_, fmts) in CASES.items()
             for fmt in fmts]
    for _, _, (events, one, _, _) in ready:  # compiled and cached before counting
        for data in events:
            one(data)
    for case, _, (events, one, _, _) in ready:
        os.getppid()
        for i in range(COUNTS[case]):
            one(events[i % POOL])
    os.getppid()
    print(json.dumps([[case, fmt] for case, fmt, _ in ready]))


# ------------------------------------------------------------------ driver
def run_worker(root, seconds):
    proc = subprocess.run([PYTHON, os.path.abspath(__file__), "--worker", root,
                           "--seconds", str(seconds)], capture_output=True, text=True, cwd=root)
    if proc.returncode:
        raise SystemExit(f"worker for {root} failed:\n{proc.stderr}")
    return {(r["case"], r["fmt"]): r for r in json.loads(proc.stdout)}


COUNTS = {"scalars2": 20000, "mixed": 5000, "skb": 500}  # events per case under callgrind


def instructions(root):
    """{(case, fmt): instructions per event} of the consumer at ``root``."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={out}",
             PYTHON, os.path.abspath(__file__), "--count", root],
            capture_output=True, text=True, cwd=root, env=dict(os.environ, PYTHONHASHSEED="0"))
        if proc.returncode:
            raise SystemExit(f"valgrind run failed:\n{proc.stderr[-2000:]}")
        keys = [tuple(k) for k in json.loads(proc.stdout)]
        counts = {}
        for i, key in enumerate(keys):  # dump 1 is the set-up, then one per case
            with open(f"{out}.{i + 2}") as f:
                total = int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1))
            counts[key] = total / COUNTS[key[0]]
        return counts


def same_output(fmt, old, new):
    """Text and line byte for byte; JSON object by object, where the new consumer
    may add members (e.g. "wall") but must keep every old member as it was."""
    if fmt != "json":
        return old == new
    if len(old) != len(new):
        return False
    for o, n in zip(old, new):
        o, n = json.loads(o), json.loads(n)
        if any(k not in n or n[k] != v for k, v in o.items()):
            return False
    return True


def in_process(old_root, args):
    old, new = {}, {}
    for _ in range(args.rounds):
        for root, best in ((old_root, old), (ROOT, new)):
            for key, r in run_worker(root, args.seconds).items():
                b = best.setdefault(key, r)
                b["cpu"], b["tracer"] = max(b["cpu"], r["cpu"]), max(b["tracer"], r["tracer"])
    failed = False
    print(f"{'case':10} {'format':6} {'old /s':>10} {'new /s':>10} {'x':>6}   "
          f"{'old tracer':>10} {'new tracer':>10}   (events per CPU second, best of {args.rounds})")
    for key, n in new.items():
        o = old[key]
        same = same_output(key[1], o["texts"], n["texts"])
        target = TARGETS.get(key)
        ok = same and (target is None or n["cpu"] >= target)
        failed |= not ok
        note = "" if same else "  OUTPUT DIFFERS"
        if target:
            note += f"  target {target:,} {'ok' if n['cpu'] >= target else 'MISSED'}"
        print(f"{key[0]:10} {key[1]:6} {o['cpu']:>10,.0f} {n['cpu']:>10,.0f} "
              f"{n['cpu'] / o['cpu']:>6.1f}   {o['tracer']:>10,.0f} {n['tracer']:>10,.0f}{note}")
    return failed


def instruction_counts(old_root):
    if not shutil.which("valgrind"):
        raise SystemExit("--instructions needs valgrind")
    old, new = instructions(old_root), instructions(ROOT)
    print(f"{'case':10} {'format':6} {'old instr/event':>16} {'new instr/event':>16} {'x':>6}")
    for (case, fmt), w in new.items():
        o = old[(case, fmt)]
        print(f"{case:10} {fmt:6} {o:>16,.0f} {w:>16,.0f} {o / w:>6.1f}")
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default=BASELINE, help="git revision of the old consumer")
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="old/new rounds (the best counts)")
    ap.add_argument("--instructions", action="store_true", help="callgrind instruction counts")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--count", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.seconds)
        return 0
    if args.count:
        count_worker(args.count)
        return 0
    with tempfile.TemporaryDirectory() as old_root:
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.old, "ksnoop"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old_root], input=archive, check=True)
        failed = instruction_counts(old_root) if args.instructions else in_process(old_root, args)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
