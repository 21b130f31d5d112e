#!/usr/bin/env python3
"""Measured render rates: in-process (Renderer.render) and through `ksnoop render`.

In-process: Renderer.render in a loop for a fixed time.  Through the CLI:
the slope between two input sizes, N and 4N objects in a file given to
`ksnoop render TYPE FILE` (a subprocess each); both pay the same start-up,
so 3N / (t(4N) - t(N)) is the steady rate with start-up taken out, with
no separate start-up run to subtract.  Medians of REPEATS runs per size,
alternating sizes.  The intercept (estimated start-up) and the plain wall
rate at 4N are printed too.

Targets (one core): >= 20,000 struct sk_buff/s in the ksnoop style with
realistic random bytes, and >= 300,000 int/s, both in-process and for the
CLI slope.  Prints one line per measurement and exits 1 if a target is missed.

    .venv/bin/python bench/render_speed.py [--btf FILE] [--quick] [--repeats R]
"""

import argparse
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ksnoop.btf import BTF, Kind  # noqa: E402
from ksnoop.render import Renderer  # noqa: E402

TARGETS = {"struct sk_buff": 20000, "int": 300000}
SMALL = {"struct sk_buff": 10000, "int": 300000}  # N; the large input is 4N


def realistic(rng, size):
    """Bytes that look like a live kernel object: NULLs, kernel pointers, small numbers."""
    out = bytearray()
    while len(out) < size:
        r = rng.random()
        if r < 0.40:
            out += bytes(8)
        elif r < 0.70:
            out += struct.pack("<Q", 0xFFFF888000000000 + (rng.getrandbits(28) << 6))
        elif r < 0.95:
            out += struct.pack("<II", rng.randrange(1000), rng.randrange(3))
        else:
            out += rng.randbytes(8)
    return bytes(out[:size])


def objects(name, count, rng, size):
    if name == "int":
        return b"".join(struct.pack("<i", rng.randrange(-1000, 100000)) for _ in range(count))
    pool = [realistic(rng, size) for _ in range(256)]
    return b"".join(pool[i % 256] for i in range(count))


def in_process(btf, tid, data, size, seconds):
    r = Renderer(btf, tid, "ksnoop")
    n = len(data) // size
    done, t0 = 0, time.perf_counter()
    while True:
        for i in range(n):
            r.render(data, i * size)
        done += n
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed


def render_once(type_name, path, btf_path):
    """Wall seconds of one `ksnoop render TYPE FILE` subprocess."""
    cmd = [sys.executable, "-m", "ksnoop", "render", type_name, path, "--no-color"]
    if btf_path:
        cmd += ["--btf", btf_path]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def through_cli(type_name, small, large, btf_path, repeats):
    """Steady rate of `ksnoop render` from the slope between two input sizes.

    ``small`` holds N objects, ``large`` the same objects 4 times (4N).  Both
    runs pay the same start-up (interpreter, imports, BTF open), so
    (t(4N) - t(N)) is the time of 3N objects alone.  Each size is run
    ``repeats`` times, alternating, and the medians are used.
    Returns (objects/s of the slope, objects/s wall at 4N, intercept s, times)."""
    n_small, n_large = small[0], large[0]
    t_small, t_large = [], []
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for name, (_, data) in (("small", small), ("large", large)):
            paths.append(os.path.join(d, f"{name}.bin"))
            with open(paths[-1], "wb") as f:
                f.write(data)
        render_once(type_name, paths[0], btf_path)  # warm-up: page cache, .pyc, BTF index cache
        for i in range(repeats):
            order = [(paths[0], t_small), (paths[1], t_large)]
            for path, out in (order if i % 2 == 0 else order[::-1]):
                out.append(render_once(type_name, path, btf_path))
    ts, tl = statistics.median(t_small), statistics.median(t_large)
    if tl <= ts:
        sys.exit(f"render_speed.py: {type_name}: {n_large} objects took no longer than {n_small} "
                 f"({tl:.3f} s vs {ts:.3f} s): too noisy to take a slope")
    slope = (n_large - n_small) / (tl - ts)
    intercept = ts - n_small / slope
    return slope, n_large / tl, intercept, (ts, tl)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--btf", default=None, help="BTF file (default: the running kernel)")
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    ap.add_argument("--repeats", type=int, default=3, help="CLI runs per input size")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    with open(args.btf or "/sys/kernel/btf/vmlinux", "rb") as f:
        btf = BTF(f.read(), name="vmlinux")
    rng = random.Random(42)
    seconds = 0.5 if args.quick else 2.0
    failed = False
    for name, target in TARGETS.items():
        kind = Kind.STRUCT if name.startswith("struct ") else Kind.INT
        tid = btf.find(name.split()[-1], kind)[0]
        size = btf.size_of(tid)
        count = SMALL[name] // (4 if args.quick else 1)
        data = objects(name, count, rng, size)
        rate = in_process(btf, tid, data, size, seconds)
        slope, wall, intercept, (ts, tl) = through_cli(
            name, (count, data), (4 * count, data * 4), args.btf, args.repeats)
        ok = rate >= target and slope >= target
        failed |= not ok
        print(f"{name:16} in-process {rate:>11,.0f}/s   ksnoop render: {slope:>11,.0f}/s slope "
              f"({count:,} objects {ts:.3f} s, {4 * count:,} objects {tl:.3f} s; "
              f"intercept {intercept * 1000:.0f} ms), {wall:>11,.0f}/s wall at {4 * count:,}   "
              f"target {target:,}/s {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
