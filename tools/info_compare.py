#!/usr/bin/env python3
"""Compare `ksnoop info` with the reference /usr/sbin/ksnoop info, function by function.

    tools/info_compare.py                 # every FUNC in vmlinux BTF (~25 min)
    tools/info_compare.py --sample 3000   # a random sample (seed printed)

A difference is accepted only in the part of the line (return type, one
parameter, the trailing comment) whose BTF shape triggers a known reference
defect:

  hang        a parameter or the return type leads (through pointers and
              qualifiers) to a nameless type: function pointer, array, or
              anonymous struct/union/enum; the reference loops forever
  many-args   more than 5 parameters: the reference prints garbage past the 5th
  variadic    the reference prints "..." as "void "
  multi-ptr   `char **` printed as `char *` (pointer levels collapsed)
  fwd         a forward-declared struct printed without its `struct` keyword
  type-tag    a BTF type tag (e.g. address_space(1)) printed as if it were a type
  stack-arg   an aggregate passed on the stack: we add a "not traceable" note

Every other difference is a failure.  Exit status 1 if any.
"""

import argparse
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ksnoop.kernel import callconv  # noqa: E402
from ksnoop.btf import BTF, Kind  # noqa: E402
from ksnoop.kernel.functions import (
    Function,  # noqa: E402
    signature,  # noqa: E402
)

REFERENCE = "/usr/sbin/ksnoop"
SKIP = {Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT}


def chain_kinds(btf, tid):
    """Kinds met from tid through pointers and qualifiers, and the pointer depth."""
    kinds, depth = [], 0
    for _ in range(32):
        t = btf[tid]
        kinds.append(t)
        if t.kind == Kind.PTR:
            depth += 1
        if t.kind not in SKIP:
            break
        tid = t.type
    return kinds, depth


def type_defects(btf, tid):
    """The reference defects one parameter's (or the return's) type triggers."""
    if tid == 0:
        return set()
    found = set()
    kinds, depth = chain_kinds(btf, tid)
    last = kinds[-1]
    if depth > 1:
        found.add("multi-ptr")
    if last.kind == Kind.FWD:
        found.add("fwd")
    if last.kind == Kind.TYPE_TAG:
        found.add("type-tag")
    if last.id != 0 and not last.name:
        found.add("hang")
    return found


def defects(btf, fid):
    """The reference defects this function's prototype triggers."""
    proto = btf[btf[fid].type]
    found = set()
    if len(proto.params) > 5:
        found.add("many-args")
    if proto.is_variadic:
        found.add("variadic")
    for tid in [proto.type] + [p.type for p in proto.params]:
        found |= type_defects(btf, tid)
    if any(not s.traceable for s in callconv.assign(btf, proto)):
        found.add("stack-arg")
    return found


def split_line(name, line):
    """(return part, [parameters], trailing comment) of one info line."""
    at = line.index(name + "(")
    inner = line[at + len(name) + 1:line.rindex(");")]
    comment = ""
    if "/*" in inner:
        inner, comment = inner[:inner.index("/*")].rstrip(), inner[inner.index("/*"):]
    params, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            params.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    if cur.strip():
        params.append(cur.strip())
    return line[:at], params, comment


def unexplained(btf, fid, name, ours, theirs):
    """Why ours and the reference's lines differ other than by a known reference
    defect of the very part that differs; None when every difference is explained."""
    proto = btf[btf[fid].type]
    if theirs is None:
        # it loops on nameless types, and reads garbage type ids past the 5th parameter
        return None if defects(btf, fid) & {"hang", "many-args"} else "the reference failed or hung"
    o_ret, o_params, o_comment = split_line(name, ours)
    t_ret, t_params, t_comment = split_line(name, theirs)
    if o_ret != t_ret and not type_defects(btf, proto.type):
        return f"return type: {o_ret!r} vs {t_ret!r}"
    many = len(proto.params) > 5
    for i, (o, t) in enumerate(zip(o_params, t_params)):
        if o == t or (many and i >= 5):
            continue
        if i < len(proto.params):
            p = proto.params[i]
            if p.type == 0 and not p.name:  # "..." printed as "void "
                continue
            if type_defects(btf, p.type):
                continue
        return f"parameter {i + 1}: {o!r} vs {t!r}"
    if len(o_params) != len(t_params) and not many:
        return f"{len(o_params)} parameters vs {len(t_params)}"
    if o_comment != t_comment and not (many or "stack-arg" in defects(btf, fid)):
        return f"comment: {o_comment!r} vs {t_comment!r}"
    return None


def run_reference(names, timeout=60):
    """name -> the reference's line, or None where it failed or hung."""
    if not names:
        return {}
    try:
        out = subprocess.run([REFERENCE, "info", *names], capture_output=True, text=True,
                             timeout=timeout, errors="replace")
        lines = out.stdout.splitlines()
        if out.returncode == 0 and len(lines) == len(names):
            return dict(zip(names, lines))
    except subprocess.TimeoutExpired:
        pass
    if len(names) == 1:
        return {names[0]: None}
    half = len(names) // 2
    return {**run_reference(names[:half], timeout), **run_reference(names[half:], timeout)}


def compare(btf, names, batch=50, jobs=2):
    """(checked, accepted-by-defect counts, failures[(name, ours, ref, reason)])."""
    from concurrent.futures import ThreadPoolExecutor

    ids = {}
    for name in names:
        ids.setdefault(name, btf.find(name, Kind.FUNC)[0])
    hangs = [n for n in names if "hang" in defects(btf, ids[n])]
    runnable = [n for n in names if n not in set(hangs)]
    chunks = [runnable[i:i + batch] for i in range(0, len(runnable), batch)]
    ref = {n: None for n in hangs}
    with ThreadPoolExecutor(jobs) as pool:
        for part in pool.map(run_reference, chunks):
            ref.update(part)
    accepted, failures = {}, []
    for name in names:
        ours = signature(Function(name, btf, ids[name], ""))
        theirs = ref[name]
        if theirs == ours:
            continue
        reason = unexplained(btf, ids[name], name, ours, theirs)
        if reason is None:
            for d in defects(btf, ids[name]):
                accepted[d] = accepted.get(d, 0) + 1
        else:
            failures.append((name, ours, theirs, reason))
    return len(names), accepted, failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", type=int, default=0, help="compare N random functions (0: all)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    args = ap.parse_args()
    if not os.access(REFERENCE, os.X_OK):
        print(f"{REFERENCE} not installed (Debian package libbpf-tools)", file=sys.stderr)
        return 2
    with open(args.btf, "rb") as f:
        btf = BTF(f.read(), name="vmlinux")
    names = sorted({btf[i].name for i in btf.ids(Kind.FUNC)})
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    if args.sample:
        names = random.Random(seed).sample(names, min(args.sample, len(names)))
        print(f"sample of {len(names)} functions, seed {seed}")
    checked, accepted, failures = compare(btf, names)
    print(f"{checked} functions compared, {checked - sum(1 for _ in failures)} agree or differ "
          f"only by a known reference defect; {len(failures)} unexplained differences")
    for d, n in sorted(accepted.items()):
        print(f"  reference defect {d}: {n} functions")
    for name, ours, theirs, reason in failures[:50]:
        print(f"DIFF {name}: {reason}\n  ours: {ours}\n  ref:  {theirs}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
