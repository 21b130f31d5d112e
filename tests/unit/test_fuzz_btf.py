"""Fuzzing ``--btf`` files and render input (issue #11, defect 15).

Files: a seeded generator of BTF blobs (random type records that reference
each other any which way, including themselves, with sizes, lengths and
offsets from the edge of every range; and valid blobs truncated, with single
and multi-byte flips, a wrong magic or random header fields) run through
``ksnoop info --btf`` and ``ksnoop render --btf`` in-process: only exit codes
0/1/2, no traceback, every stderr line a ``ksnoop: `` line, each run within a
deadline.

Render input: random bytes (any length, short ones included) for random types
of the running kernel, through all three styles under random flags: no
exception at all.

Seeded: the seed is printed (``-s`` or on failure); rerun one with
KSNOOP_FUZZ_SEED=N.  KSNOOP_FUZZ_FILES sets how many files (default 400),
KSNOOP_FUZZ_TYPES how many kernel types (default 300).
"""

import os
import random
import struct
import time

import pytest
from btfwriter import KINDS, BTFWriter, demo_types
from clirun import run_cli

from ksnoop.btf import BTF, Kind
from ksnoop.errors import KsnoopError
from ksnoop.render import Renderer

SEED = int(os.environ.get("KSNOOP_FUZZ_SEED") or random.randrange(1 << 32))
N_FILES = int(os.environ.get("KSNOOP_FUZZ_FILES", "400"))
N_TYPES = int(os.environ.get("KSNOOP_FUZZ_TYPES", "300"))
DEADLINE = 30.0  # seconds for one command; every one takes milliseconds
STYLES = ("ksnoop", "kernel", "json")
HDR = struct.Struct("<HBBIIIII")

NAMES = ["int", "char", "s0", "s1", "u0", "t0", "t1", "e0", "f0", "f1", "f2", "x", "", "long int"]
FUNCS = ["f0", "f1", "f2"]
SIZES = [0, 1, 2, 3, 4, 8, 16, 255, 4096, 0x7FFFFFFF, 0xFFFFFFFF]
COUNTS = [0, 1, 2, 7, 255, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]
EDGES = [0, 1, 4, 8, 23, 24, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


class BlobGen:
    """Random BTF blobs, valid in structure and anything in meaning."""

    def __init__(self, rng):
        self.rng = rng

    def pick(self, values):
        """One of the edge values, or anything up to the largest (capped at 2^20)."""
        r = self.rng
        return r.choice(values) if r.random() < 0.6 else r.randrange(min(max(values), 1 << 20) + 1)

    def ref(self, n):
        """A type id: usually one of the blob's, sometimes void, itself-ish or dangling."""
        r = self.rng
        roll = r.random()
        if roll < 0.85:
            return r.randrange(1, n + 1)
        if roll < 0.93:
            return 0
        return r.choice([n + 1, n + 7, 0xFFFFFFFF, 1 << 31])

    def name(self):
        return self.rng.choice(NAMES)

    def records(self):
        r = self.rng
        n = r.randrange(1, 40)
        w = BTFWriter()
        kinds = list(KINDS)
        for i in range(n):
            kind = r.choice(kinds) if r.random() < 0.5 else r.choice(
                ["int", "ptr", "array", "struct", "union", "typedef", "const", "func_proto", "func"])
            self.record(w, kind, n, i)
        for name in FUNCS:  # some functions info can look for
            if r.random() < 0.7:
                params = [(self.name(), self.ref(n)) for _ in range(r.randrange(9))]
                w.func(name, w.func_proto(self.ref(n), params))
        return w.build()

    def record(self, w, kind, n, i):
        r = self.rng
        ref = lambda: self.ref(n)  # noqa: E731
        if kind == "int":
            w.int(self.name(), self.pick(SIZES), bits=r.randrange(256), offset=r.randrange(256),
                  signed=r.random() < 0.5, char=r.random() < 0.2, bool=r.random() < 0.1)
        elif kind == "ptr":
            w.ptr(ref())
        elif kind == "array":
            w.array(ref(), self.pick(COUNTS), r.choice([0, ref()]))
        elif kind in ("struct", "union"):
            nmembers = r.choice([0, 1, 2, 3, 5, 8, 300]) if r.random() < 0.9 else r.randrange(40)
            same = ref()
            members = []
            for k in range(nmembers):
                mtype = same if r.random() < 0.5 else ref()
                off = r.choice([0, 8 * k, 32 * k, self.pick(EDGES) & 0xFFFFFF])
                bits = r.choice([0, 0, 0, 1, 3, 8, 64, 128, 255])
                members.append((r.choice(["", "a", "b", f"m{k}"]), mtype, off, bits))
            getattr(w, kind)(self.name(), self.pick(SIZES), members,
                             kflag=r.random() < 0.3)
        elif kind in ("enum", "enum64"):
            values = [(f"E{k}", r.choice([0, 1, -1, 1 << 31, (1 << 32) - 1, r.randrange(100)]))
                      for k in range(r.randrange(6))]
            if kind == "enum":
                values = [(nm, v if -(1 << 31) <= v < 1 << 32 else 0) for nm, v in values]
            getattr(w, kind)(self.name(), values, size=r.choice([0, 1, 2, 3, 4, 8, 16]),
                             signed=r.random() < 0.5)
        elif kind == "fwd":
            w.fwd(self.name(), union=r.random() < 0.5)
        elif kind == "typedef":
            w.typedef(self.name() or "t", ref())
        elif kind in ("volatile", "const", "restrict"):
            getattr(w, kind)(ref())
        elif kind == "type_tag":
            w.type_tag("user", ref())
        elif kind == "func_proto":
            params = [(self.name(), ref()) for _ in range(r.choice([0, 1, 2, 7, 40]))]
            if r.random() < 0.2:
                params.append(("", 0))
            w.func_proto(ref(), params)
        elif kind == "func":
            w.func(r.choice(FUNCS + ["g"]), ref(), linkage=r.randrange(4))
        elif kind == "var":
            w.var(self.name(), ref(), linkage=r.randrange(3))
        elif kind == "datasec":
            w.datasec(".data", self.pick(SIZES),
                      [(ref(), self.pick(EDGES), self.pick(EDGES)) for _ in range(r.randrange(4))])
        elif kind == "float":
            w.float("double", r.choice([0, 2, 4, 8, 12, 16, 255]))
        elif kind == "decl_tag":
            w.decl_tag("tag", ref(), component_idx=r.choice([-1, 0, 1, 1000]))

    def valid(self):
        return demo_types()[0] if self.rng.random() < 0.3 else self.records()

    # ------------------------------------------------------------ mutations
    def truncated(self, blob):
        return blob[:self.rng.randrange(len(blob))]

    def flipped(self, blob, count):
        b = bytearray(blob)
        for _ in range(count):
            pos = self.rng.randrange(len(b))
            b[pos] = self.rng.choice([0, 0xFF, 0x80, 0x7F, self.rng.randrange(256), b[pos] ^ 1])
        return bytes(b)

    def wrong_magic(self, blob):
        magic = self.rng.choice([b"\x7fELF", b"\x9f\xeb", b"\0\0", b"\xeb\x9f\x01"])
        return magic + blob[len(magic):]

    def header(self, blob):
        fields = list(HDR.unpack_from(blob))
        for _ in range(self.rng.randrange(1, 4)):
            k = self.rng.randrange(1, len(fields))
            if k == 1:
                fields[k] = self.rng.choice([0, 1, 2, 255])
            elif k == 2:
                fields[k] = self.rng.randrange(256)
            else:
                fields[k] = self.rng.choice(EDGES + [len(blob), len(blob) - 24, fields[k] + 4,
                                                     fields[k] - 1]) & 0xFFFFFFFF
        return HDR.pack(*fields) + blob[HDR.size:]

    def blob(self):
        """(how it was made, bytes)."""
        r = self.rng
        roll = r.random()
        base = self.valid()
        if roll < 0.40:
            return "records", base
        if roll < 0.52:
            return "truncated", self.truncated(base)
        if roll < 0.67:
            return "byte flip", self.flipped(base, 1)
        if roll < 0.82:
            return "byte flips", self.flipped(base, r.randrange(2, 12))
        if roll < 0.87:
            return "magic", self.wrong_magic(base)
        return "header", self.header(base)


def commands(rng, f, blob, data):
    """The runs for one file: info on some functions, render of some types, the
    input often a whole number of objects so that the renderers do run."""
    out = [["info", "--btf", f] + rng.sample(FUNCS + ["nope"], rng.randrange(1, 4))]
    try:
        btf = BTF(blob, use_cache=False)
        ntypes = len(btf)
    except KsnoopError:
        btf, ntypes = None, 45
    for k in range(2):
        tid = rng.randrange(1, max(ntypes, 2))
        ty = f"btf:{tid}" if rng.random() < 0.7 else rng.choice(
            ["struct s0", "union u0", "t0", "t1", "int", "char *", "s0 **", "enum e0", "btf:0"])
        size = -1
        if btf is not None and rng.random() < 0.7:
            try:
                size = btf.size_of(tid)
            except KsnoopError:
                pass
        count = rng.choice([1, 2, 3])
        if 0 < size <= 4096:
            length = size * count
        else:
            length = rng.choice([0, 1, 4, 8, 16, 64, 300])
        path = data.with_name(f"{data.name}{k}")
        path.write_bytes(bytes(rng.choice([0, 0xFF, rng.randrange(256)]) for _ in range(length)))
        argv = ["render", "--btf", f, ty, path, "-f", rng.choice(STYLES)]
        argv += [o for o in ("--compact", "--noname", "--zero", "--ptr-raw") if rng.random() < 0.3]
        out.append(argv)
    return out


def test_btf_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KSNOOP_CACHE_DIR", str(tmp_path / "cache"))
    print(f"fuzz seed {SEED} ({N_FILES} files); rerun with KSNOOP_FUZZ_SEED={SEED}")
    rng = random.Random(SEED)
    gen = BlobGen(rng)
    f, data = tmp_path / "fuzz.btf", tmp_path / "data"
    codes = {0: 0, 1: 0, 2: 0}
    kinds = {}
    slowest = (0.0, None)
    t0 = time.monotonic()
    for i in range(N_FILES):
        how, blob = gen.blob()
        kinds[how] = kinds.get(how, 0) + 1
        f.write_bytes(blob)
        for argv in commands(rng, f, blob, data):
            where = f"seed {SEED}, file {i} ({how}), ksnoop {' '.join(map(str, argv))}"
            started = time.monotonic()
            code, out, err = run_cli(argv, timeout=DEADLINE)
            took = time.monotonic() - started
            slowest = max(slowest, (took, where))
            assert code in (0, 1, 2), f"{where}: exit {code}\n{err}"
            assert "Traceback" not in err, f"{where}:\n{err}"
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert all(ln.startswith("ksnoop: ") for ln in lines), f"{where}:\n{err}"
            assert (code == 0) == (not lines), f"{where}: exit {code}\n{err}"
            codes[code] += 1
    with capsys.disabled():
        print(f"\nfuzz seed {SEED}: {N_FILES} BTF files {kinds}, exit codes {codes}, "
              f"{time.monotonic() - t0:.1f} s, slowest {slowest[0]:.2f} s ({slowest[1]})")
    # the corpus must reach the renderers and the error paths both, or it proves little
    assert codes[0] > N_FILES // 20 and codes[1] > N_FILES // 5, codes


VMLINUX = "/sys/kernel/btf/vmlinux"


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF")
def test_render_input_for_kernel_types(vmlinux_btf, capsys):
    btf = vmlinux_btf
    rng = random.Random(SEED ^ 0x15)
    by_kind = {}
    for k in (Kind.STRUCT, Kind.UNION, Kind.ARRAY, Kind.TYPEDEF, Kind.INT, Kind.ENUM, Kind.PTR,
              Kind.ENUM64, Kind.CONST, Kind.FLOAT, Kind.FWD, Kind.FUNC_PROTO, Kind.VAR):
        by_kind[k] = btf.ids(k)
    weights = {Kind.STRUCT: 8, Kind.UNION: 4, Kind.ARRAY: 4, Kind.TYPEDEF: 4}
    kinds = [k for k in by_kind if by_kind[k]]
    t0 = time.monotonic()
    rendered = 0
    for i in range(N_TYPES):
        kind = rng.choices(kinds, [weights.get(k, 1) for k in kinds])[0]
        tid = rng.choice(by_kind[kind])
        size = btf.size_of(tid)
        length = rng.choice([0, 1, 7, size // 2, size - 1, size, size + 3, rng.randrange(size + 1)])
        length = max(0, min(length, 8192))
        fill = rng.random()
        data = bytes(0 if rng.random() < fill else rng.randrange(256) for _ in range(length))
        for style in STYLES:
            flags = rng.randrange(16)
            where = f"seed {SEED}, type {i}: btf:{tid} ({kind.name}), {length} bytes, {style}, flags {flags}"
            try:
                text = Renderer(btf, tid, style, flags).render(data)
            except Exception as e:  # noqa: BLE001 - any exception is the failure reported
                raise AssertionError(f"{where}: {type(e).__name__}: {e}") from e
            assert isinstance(text, str), where
            rendered += 1
    with capsys.disabled():
        print(f"\nfuzz seed {SEED}: {rendered} renders of {N_TYPES} kernel types, "
              f"{time.monotonic() - t0:.1f} s")
