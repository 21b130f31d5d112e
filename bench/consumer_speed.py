#!/usr/bin/env python3
"""Events per second through the trace consumer, in process: event bytes ->
output text (decode + format, no buffer reading), and the same with the
tracer's output path (batches written to /dev/null).

Cases (one event layout each, resolved against the running kernel's BTF):

  scalars2   ``ksys_lseek(fd, offset)``: two scalar values (registers)
  mixed      ``do_sys_openat2(dfd, filename, how, how->flags)``: a scalar, a
             string, a struct pointer and a member read from memory
  skb        ``ip_send_skb(skb)``: a whole ``struct sk_buff`` (232 bytes of
             bench/render_speed.py's realistic bytes, ``random.Random(42)``)

The old consumer is the ksnoop package of git revision ``--old`` (default:
BASELINE, the last commit before the compiled consumer), extracted with
``git archive`` into a temporary directory; the new one is this working tree.
Each runs in its own subprocess, with the same event bytes; old and new
outputs are compared byte for byte (a difference fails the run).  Rates are
per CPU second of the measuring process (``time.process_time``), so a busy
machine slows both alike; wall rates are printed too.

Targets for the new consumer (decode + format): skb text 30,000/s, skb json
20,000/s, scalars2 line and json 400,000/s.  Exits 1 if one is missed.

    .venv/bin/python bench/consumer_speed.py [--old REV] [--seconds S] [--quick]
"""

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = "d346bdd"  # before the compiled consumer
VMLINUX = "/sys/kernel/btf/vmlinux"

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


def rate(fn, events, seconds):
    """(events per CPU second, events per wall second) of fn(data) over the pool."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        for data in events:
            fn(data)
        n += len(events)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall >= seconds:
            return n / max(cpu, 1e-9), n / wall


def worker(root, seconds):
    sys.path.insert(0, root)
    import io

    from ksnoop.kernel.files import Kernel
    from ksnoop.trace import wire
    from ksnoop.trace.events import Decoder
    from ksnoop.trace.job import Prepared, Tracer
    from ksnoop.trace.output import Formatter
    from ksnoop.trace.resolve import resolve
    from ksnoop.trace.spec import parse

    try:
        from ksnoop.trace.fastout import FastFormatter
    except ImportError:
        FastFormatter = None

    kernel = Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent")
    results = []
    for case, (spec, fmts) in CASES.items():
        plan = resolve([parse(spec)], kernel, limit=2048)
        events = make_events(case, plan, wire)
        for fmt in fmts:
            if FastFormatter is not None:
                ff = FastFormatter(plan, fmt)

                def fmt_one(data, ff=ff):
                    return ff.format(data, 0, len(data))
            else:
                dec, f = Decoder(plan), Formatter(fmt)

                def fmt_one(data, dec=dec, f=f):
                    return f.event(dec.decode(data))
            texts = [fmt_one(d) for d in events]
            cpu, wall = rate(fmt_one, events, seconds)
            # the tracer's consumer path: event in, batched write to /dev/null
            with open(os.devnull, "w") as null:
                t = Tracer(Prepared(plan, "", []), kernel=None, fmt=fmt, out=null, err=io.StringIO())
                if hasattr(t, "_on_record"):
                    def consume(data, t=t):
                        t._on_record(data, 0, len(data))
                    flush = t._flush_output
                else:
                    def consume(data, t=t):
                        t._on_event(-1, data)
                    flush = null.flush
                n, t0, c0 = 0, time.perf_counter(), time.process_time()
                while time.perf_counter() - t0 < seconds:
                    for data in events:
                        consume(data)
                    flush()
                    n += len(events)
                tracer_cpu = n / max(time.process_time() - c0, 1e-9)
            results.append({"case": case, "fmt": fmt, "cpu": cpu, "wall": wall,
                            "tracer": tracer_cpu, "texts": texts})
    print(json.dumps(results))


# ------------------------------------------------------------------ driver
def run_worker(root, seconds):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", root,
                           "--seconds", str(seconds)], capture_output=True, text=True,
                          cwd=root)
    if proc.returncode:
        raise SystemExit(f"worker for {root} failed:\n{proc.stderr}")
    return {(r["case"], r["fmt"]): r for r in json.loads(proc.stdout)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default=BASELINE, help="git revision of the old consumer")
    ap.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    ap.add_argument("--quick", action="store_true", help="0.4 s per measurement")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    seconds = 0.4 if args.quick else args.seconds
    if args.worker:
        worker(args.worker, seconds)
        return 0
    with tempfile.TemporaryDirectory() as old_root:
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.old, "ksnoop"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old_root], input=archive, check=True)
        old = run_worker(old_root, seconds)
    new = run_worker(ROOT, seconds)
    failed = False
    print(f"{'case':10} {'format':6} {'old /s':>10} {'new /s':>10} {'x':>6}   "
          f"{'old+write':>10} {'new+write':>10}   (per CPU second; wall: old, new)")
    for key, n in new.items():
        o = old[key]
        same = o["texts"] == n["texts"]
        target = TARGETS.get(key)
        ok = same and (target is None or n["cpu"] >= target)
        failed |= not ok
        note = "" if same else "  OUTPUT DIFFERS"
        if target:
            note += f"  target {target:,} {'ok' if n['cpu'] >= target else 'MISSED'}"
        print(f"{key[0]:10} {key[1]:6} {o['cpu']:>10,.0f} {n['cpu']:>10,.0f} "
              f"{n['cpu'] / o['cpu']:>6.1f}   {o['tracer']:>10,.0f} {n['tracer']:>10,.0f}   "
              f"({o['wall']:,.0f}, {n['wall']:,.0f}){note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
