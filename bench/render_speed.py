#!/usr/bin/env python3
"""Measured render rates: in-process (Renderer.render) and through `ksnoop render`.

Targets (one core): >= 20,000 struct sk_buff/s in the ksnoop style with
realistic random bytes, and >= 300,000 int/s.  Prints one line per
measurement and exits 1 if a target is missed.

    .venv/bin/python bench/render_speed.py [--btf FILE] [--quick]
"""

import argparse
import os
import random
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


def through_cli(type_name, data, size, btf_path):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        cmd = [sys.executable, "-m", "ksnoop", "render", type_name, f.name, "--no-color"]
        if btf_path:
            cmd += ["--btf", btf_path]
        base = [sys.executable, "-m", "ksnoop", "render", type_name, "/dev/null"]
        if btf_path:
            base += ["--btf", btf_path]
        t0 = time.perf_counter()
        subprocess.run(base, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        total = time.perf_counter() - t0
    n = len(data) // size
    return n / total, n / max(total - startup, 1e-9), startup


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--btf", default=None, help="BTF file (default: the running kernel)")
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    args = ap.parse_args()
    with open(args.btf or "/sys/kernel/btf/vmlinux", "rb") as f:
        btf = BTF(f.read(), name="vmlinux")
    rng = random.Random(42)
    seconds = 0.5 if args.quick else 2.0
    failed = False
    for name, target in TARGETS.items():
        kind = Kind.STRUCT if name.startswith("struct ") else Kind.INT
        tid = btf.find(name.split()[-1], kind)[0]
        size = btf.size_of(tid)
        count = 20000 if name != "int" else 300000
        if args.quick:
            count //= 4
        data = objects(name, count, rng, size)
        rate = in_process(btf, tid, data, size, seconds)
        wall, steady, startup = through_cli(name, data, size, args.btf)
        ok = rate >= target and steady >= target
        failed |= not ok
        print(f"{name:16} in-process {rate:>11,.0f}/s   ksnoop render: {wall:>11,.0f}/s "
              f"wall ({count:,} objects), {steady:>11,.0f}/s after {startup * 1000:.0f} ms "
              f"startup   target {target:,}/s {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
