#!/usr/bin/env python3
"""Check `ksnoop info` against the reference /usr/sbin/ksnoop info and bpftool.

    .venv/bin/python tools/info_compare.py                # every FUNC in vmlinux BTF
    .venv/bin/python tools/info_compare.py --sample 3000  # a random sample (seed printed)
    .venv/bin/python tools/info_compare.py --btf FILE     # compile check only, any BTF file

Two checks of the lines the ksnoop CLI prints:

1. Reference: the reference runs (unbuffered, a known-good function first) on
   every function; what it prints must equal, byte for byte, what a model of
   its known defects (tools/ref_ksnoop.py) makes of ksnoop's line: a
   difference is excused only by the exact symptom of a known defect of the
   part concerned.  Where the model says the reference hangs, it must print
   exactly the line up to the hanging part and then spin (it is killed).
2. Compile: every line, renamed, is compiled after `bpftool btf dump ... format
   c` with a static assertion that its type is the function type spelled from
   `bpftool btf dump ... format raw`; parameter names and count must be the
   raw dump's (tools/bpftool_btf.py).  This is the check of the functions the
   reference hangs on, and of the parameters it does not print.

Exit status 1 if anything is unexplained.
"""

import argparse
import os
import random
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpftool_btf  # noqa: E402
import ref_ksnoop  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VMLINUX = "/sys/kernel/btf/vmlinux"
MAX_FUNC_TRACES = 64  # the reference takes at most this many functions per run


def python():
    venv = os.path.join(ROOT, ".venv", "bin", "python")
    return venv if os.access(venv, os.X_OK) else sys.executable


def ksnoop_lines(names, btf_path=None, chunk=4000):
    """{name: the line `ksnoop info` prints for it}, through the real CLI."""
    out = {}
    extra = ["--btf", btf_path] if btf_path else []
    for i in range(0, len(names), chunk):
        part = names[i:i + chunk]
        res = subprocess.run([python(), "-m", "ksnoop", "info", *extra, *part], cwd=ROOT,
                             capture_output=True, text=True)
        lines = res.stdout.splitlines()
        if res.returncode != 0 or len(lines) != len(part):
            raise RuntimeError(f"ksnoop info failed ({res.returncode}): {res.stderr.strip()[:500]}")
        out.update(zip(part, lines))
    return out


@dataclass
class Report:
    checked: int = 0
    identical: int = 0
    hung: int = 0
    classes: Counter = field(default_factory=Counter)  # defect -> functions it explains
    failures: list = field(default_factory=list)  # (name, ours, reference's, reason)


def schedule(names, hanging, batch):
    """Batches of at most ``batch`` names: those the model expects the
    reference to hang on go last in a batch, one per batch, so a hang costs no
    re-run of the names after it."""
    normal = [n for n in names if n not in hanging]
    stuck = [n for n in names if n in hanging]
    batches = [normal[i:i + batch - 1] for i in range(0, len(normal), batch - 1)] or [[]]
    for i, name in enumerate(stuck):
        if i < len(batches):
            batches[i].append(name)
        else:
            batches.append([name])
    return [b for b in batches if b]


def choose_sentinel(raw, ours):
    """A function the reference prints at once and the model agrees on."""
    pools = [ours, lambda: ksnoop_lines([n for n in sorted(raw.funcs)[:200]
                                          if len(raw.proto(n).params) <= 2])]
    for pool in pools:
        lines = pool() if callable(pool) else pool
        for name in sorted(lines):
            try:
                e = ref_ksnoop.expected(raw, name, lines[name])
            except ref_ksnoop.Unmodeled:
                continue
            if not e.hangs and e.text == lines[name] and len(raw.proto(name).params) <= 2:
                return name, e.text
    raise RuntimeError("no function to start the reference with")


def compare(names, raw, ours, jobs=2, batch=50, stall_cpu=0.3):
    """Compare the reference with the model applied to ksnoop's ``ours``."""
    report = Report(checked=len(names))
    expect = {}
    for name in names:
        try:
            expect[name] = ref_ksnoop.expected(raw, name, ours[name])
        except ref_ksnoop.Unmodeled as e:
            report.failures.append((name, ours[name], None, f"not a known defect's shape: {e}"))
    sentinel, sentinel_text = choose_sentinel(raw, ours)
    hanging = {n for n, e in expect.items() if e.hangs}
    batches = schedule([n for n in names if n in expect], hanging, min(batch, MAX_FUNC_TRACES - 1))
    printed = {}
    with ThreadPoolExecutor(jobs) as pool:
        for got, first in pool.map(lambda b: ref_ksnoop.run(b, sentinel, stall_cpu), batches):
            printed.update(got)
            if first is not None and first != sentinel_text:
                report.failures.append((sentinel, ours[sentinel], first, "the first function differs"))
    for name, e in expect.items():
        p = printed.get(name)
        why = judge(e, p)
        if why:
            report.failures.append((name, ours[name], getattr(p, "text", None), why))
        elif p.text == ours[name]:
            report.identical += 1
        else:
            report.hung += p.hung
            report.classes.update(e.classes)
    return report


def judge(e, p):
    """Why the reference's output ``p`` (a ref_ksnoop.Printed, or why there
    is none) is not what the model ``e`` expects; None when it is exactly."""
    if not isinstance(p, ref_ksnoop.Printed):
        return p or "the reference was not run"
    if p.hung != e.hangs:
        why = "the reference hung" if p.hung else "the reference did not hang"
        return f"{why}; the model expected {e.text!r}"
    if p.text != e.text:
        return f"the model of the reference's defects gives {e.text!r}"
    return None


def _stop(raw, tid):
    """(pointer count, the type the reference stops at) for one type."""
    ptrs = 0
    while raw[tid].kind in ("PTR", "CONST", "VOLATILE", "RESTRICT"):
        ptrs += raw[tid].kind == "PTR"
        tid = raw[tid].type
    return ptrs, raw[tid]


def representatives(raw):
    """{defect: (function, parameter index or None)}: the first function, by
    name, whose BTF triggers each reference defect among the parameters the
    reference prints, from BTF alone (so any kernel has its own)."""
    found = {}
    for name in sorted(raw.funcs):
        params = raw.proto(name).params
        shown = params[:ref_ksnoop.MAX_ARGS]
        want = {}
        if len(params) > ref_ksnoop.MAX_VALUES:
            want["many-args"] = None
        if shown and shown[-1] == ("", 0):
            want["variadic"] = len(shown) - 1
        for j, (_, tid) in enumerate(shown):
            ptrs, stop = _stop(raw, tid)
            if ptrs > 1:
                want.setdefault("multi-ptr", j)
            if stop.kind == "FWD":
                want.setdefault("fwd", j)
            if stop.kind == "TYPE_TAG":
                want.setdefault("type-tag", j)
        if any(k not in found for k in want) and not ref_ksnoop.hangs(raw, name):
            for k, j in want.items():
                found.setdefault(k, (name, j))
        elif "hang" not in found and ref_ksnoop.hangs(raw, name) and shown:
            found["hang"] = (name, None)
        if "hang-return" not in found:
            ret = ref_ksnoop.type_to_value(raw, "", raw.proto(name).type)
            if ref_ksnoop.type_text(raw, ret.type_id) is ref_ksnoop.HANG:
                found["hang-return"] = (name, None)
    return found


def hang_set(raw):
    """Every function the model says the reference hangs on."""
    return sorted(n for n in raw.funcs if ref_ksnoop.hangs(raw, n))


def print_compile(result, out=sys.stdout):
    print(f"compile check ({result.compiler}, {result.seconds:.1f} s): {result.checked} prototypes, "
          f"{len(result.failures)} failures", file=out)
    for name, text, reason in result.failures[:50]:
        print(f"CC {name}: {reason}\n  ours: {text}", file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", type=int, default=0, help="check N random functions (0: all)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=2, help="reference processes at once")
    ap.add_argument("--btf", default=None, help="a BTF file: compile check only")
    args = ap.parse_args()
    btf_path = args.btf or VMLINUX
    raw = bpftool_btf.Raw(bpftool_btf.bpftool(btf_path, "raw"))
    names = sorted(raw.funcs)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    if args.sample:
        names = sorted(random.Random(seed).sample(names, min(args.sample, len(names))))
        print(f"sample of {len(names)} functions, seed {seed}")
    ours = ksnoop_lines(names, args.btf)
    cc = bpftool_btf.check(ours, btf_path, raw=raw)
    print_compile(cc)
    bad = bool(cc.failures)
    if args.btf is None:
        if not os.access(ref_ksnoop.REFERENCE, os.X_OK):
            print(f"{ref_ksnoop.REFERENCE} not installed (Debian package libbpf-tools)", file=sys.stderr)
            return 2
        r = compare(names, raw, ours, jobs=args.jobs)
        print(f"reference: {r.checked} functions, {r.identical} identical, "
              f"{r.checked - r.identical - len(r.failures)} differ only by known reference defects "
              f"({r.hung} of them hang), {len(r.failures)} unexplained")
        for d, n in sorted(r.classes.items()):
            print(f"  {d}: {n} functions")
        for name, o, t, reason in r.failures[:50]:
            print(f"DIFF {name}: {reason}\n  ours: {o}\n  ref:  {t!r}")
        bad = bad or bool(r.failures)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
