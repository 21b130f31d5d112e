"""The `kernel` renderer against the real bpf_snprintf_btf(), byte for byte.

Hundreds of vmlinux types of every kind, each with zero, random and realistic
bytes (real kernel memory: the current task and objects it points to), under
all 16 flag combinations, plus truncation at small buffer sizes.  Hashed
pointers are reproduced exactly by asking the kernel how it hashes each value.
Skips only when not root or without BTF; a failing bpf() call (even the
verifier refusing the oracle's own programs) fails with the kernel's message.
"""

import random
import time

import pytest
from oracle import IN_MAX, R0, KernelOracle, OracleError, OracleUnavailable, _exit, _mov

from ksnoop.btf import Kind
from ksnoop.render.snprintf import COMPACT, PTR_RAW, KernelRenderer

pytestmark = pytest.mark.host

SEED = 20240611
ANCHORS = [
    ("task_struct", Kind.STRUCT), ("sk_buff", Kind.STRUCT), ("mm_struct", Kind.STRUCT),
    ("file", Kind.STRUCT), ("inode", Kind.STRUCT), ("sock", Kind.STRUCT),
    ("net_device", Kind.STRUCT), ("bpf_prog_info", Kind.STRUCT), ("btf_enum", Kind.STRUCT),
    ("bpf_insn", Kind.STRUCT), ("__sk_buff", Kind.STRUCT), ("list_head", Kind.STRUCT),
    ("lpm_trie_node", Kind.STRUCT), ("group_info", Kind.STRUCT), ("cred", Kind.STRUCT),
    ("siphash_key_t", Kind.TYPEDEF), ("atomic_t", Kind.TYPEDEF), ("spinlock_t", Kind.TYPEDEF),
    ("bpf_cmd", Kind.ENUM), ("rw_hint", Kind.ENUM), ("bpf_attr", Kind.UNION),
    ("lookup_by_table_id_t", Kind.TYPEDEF), ("in6_addr", Kind.STRUCT),
    ("nft_meta", Kind.STRUCT), ("bpf_map", Kind.STRUCT), ("page", Kind.STRUCT),
]
# How many types of each kind to sample (None: all of them).
SAMPLE = {
    Kind.STRUCT: 150, Kind.UNION: 50, Kind.ENUM: 45, Kind.ENUM64: None, Kind.TYPEDEF: 50,
    Kind.INT: None, Kind.PTR: 25, Kind.ARRAY: 60, Kind.CONST: 20, Kind.VOLATILE: None,
    Kind.RESTRICT: None, Kind.TYPE_TAG: None, Kind.FUNC: 4, Kind.FUNC_PROTO: 4,
    Kind.FWD: 4, Kind.DECL_TAG: 4, Kind.FLOAT: None,
}
# Objects reachable from the current task, read as realistic bytes.
CHASE = [("mm", "mm_struct"), ("files", "files_struct"), ("fs", "fs_struct"),
         ("signal", "signal_struct"), ("sighand", "sighand_struct"), ("real_cred", "cred"),
         ("nsproxy", "nsproxy"), ("real_parent", "task_struct"), ("thread_pid", "pid")]


@pytest.fixture(scope="module")
def btf(vmlinux_btf):
    return vmlinux_btf


@pytest.fixture(scope="module")
def oracle(btf):
    """Skipped only when not root; any bpf() failure (the verifier rejecting the
    oracle's own programs included) fails the test with the kernel's words."""
    try:
        o = KernelOracle()
    except OracleUnavailable as e:
        pytest.skip(f"kernel oracle unavailable: {e}")
    o.void_ptr_id = next(i for i in btf.ids(Kind.PTR) if btf[i].type == 0)
    yield o
    o.close()


def _safe_to_show(btf, renderer_size, tid):
    """Types the kernel can show without tripping over its own bugs."""
    t = btf[tid]
    if t.kind in (Kind.VAR, Kind.DATASEC):
        return False  # btf_var_show() follows resolved_ids, absent for vmlinux
    cur = t
    for _ in range(64):
        if cur.kind in (Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
            if cur.type == 0:
                return False  # a modifier of void: NULL ops in the kernel
            cur = btf[cur.type]
            continue
        break
    if cur.kind in (Kind.FWD, Kind.FUNC, Kind.FUNC_PROTO, Kind.FLOAT, Kind.DECL_TAG):
        return t.kind == cur.kind  # unsupported kinds only directly
    return renderer_size is not None and renderer_size <= IN_MAX


def pick_types(btf):
    rng = random.Random(SEED)
    chosen = []
    for name, kind in ANCHORS:
        chosen += btf.find(name, kind)[:1]
    for kind, n in SAMPLE.items():
        ids = btf.ids(kind)
        rng.shuffle(ids)
        if kind == Kind.ENUM:
            small = [i for i in ids if btf[i].size != 4 or btf[i].kflag]
            ids = small + [i for i in ids if i not in set(small)]
        chosen += ids if n is None else ids[:n]
    out, seen = [], set()
    for tid in chosen:
        if tid in seen:
            continue
        seen.add(tid)
        size = KernelRenderer(btf, tid).size
        if _safe_to_show(btf, size, tid):
            out.append(tid)
    return out


def realistic_pool(btf, oracle):
    """Real kernel objects: {struct name: bytes} and one pool of all their bytes."""
    ts = btf.find("task_struct", Kind.STRUCT)[0]
    task = oracle.read_kernel(0, btf.size_of(ts))
    assert task, "could not read the current task_struct"
    objs = {"task_struct": task}
    members = {m.name: m for m in btf[ts].members}
    for member, sname in CHASE:
        m = members.get(member)
        sids = btf.find(sname, Kind.STRUCT)
        if m is None or not sids:
            continue
        addr = int.from_bytes(task[m.bit_offset // 8:m.bit_offset // 8 + 8], "little")
        if addr >> 47 != 0x1FFFF:
            continue
        data = oracle.read_kernel(addr, btf.size_of(sids[0]))
        if data:
            objs.setdefault(sname, data)
    # every chased object was read: otherwise "real" bytes quietly shrink to the task's
    missing = {sname for _, sname in CHASE} - set(objs)
    assert not missing, f"could not read the current task's {sorted(missing)}"
    pool = b"".join(objs.values())
    return objs, pool


def patterns(btf, tid, size, objs, pool, rng):
    out = [("zero", bytes(size)), ("random", rng.randbytes(size))]
    t = btf[btf.resolve(tid)]
    if t.kind == Kind.STRUCT and t.name in objs and len(objs[t.name]) == size:
        out.append(("real", objs[t.name]))
    elif size:
        reps = pool * (size // len(pool) + 2)
        start = rng.randrange(len(pool)) & ~7
        out.append(("real", reps[start:start + size]))
    return out


def _first_diff(a, b):
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"at byte {n}: kernel {a[max(0, n - 60):n + 40]!r} ours {b[max(0, n - 60):n + 40]!r}"


def test_kernel_renderer_matches_bpf_snprintf_btf(btf, oracle):
    t0 = time.monotonic()
    types = pick_types(btf)
    objs, pool = realistic_pool(btf, oracle)
    rng = random.Random(SEED + 1)
    renderers = {}
    diffs, compared = [], 0
    kinds = set()
    for tid in types:
        size = KernelRenderer(btf, tid).size or 0
        kinds.add(btf[tid].kind)
        for pname, data in patterns(btf, tid, size, objs, pool, rng):
            oracle.set_input(data)
            for flags in range(16):
                r = renderers.get((tid, flags))
                if r is None:
                    r = renderers[(tid, flags)] = KernelRenderer(
                        btf, tid, flags, ptr_hash=oracle.ptr_hash)
                want, ret = oracle.snprintf(tid, flags)
                text, status = r.show(data)
                got = text.encode("latin-1")
                compared += 1
                if want != got or ret != len(got) or status:
                    diffs.append(f"[{tid}] {btf[tid].kind.name} {btf[tid].name!r} flags={flags} "
                                 f"{pname}: ret {ret} vs {len(got)} {_first_diff(want, got)}")
        del renderers[(tid, 0)]
    elapsed = time.monotonic() - t0
    print(f"\noracle: {len(types)} types ({len(kinds)} kinds) x 16 flag combos x up to 3 byte "
          f"patterns = {compared} renders compared, {len(diffs)} differences, {elapsed:.1f}s")
    assert not diffs, f"{len(diffs)} differences, first ones:\n" + "\n".join(diffs[:8])
    assert len(types) > 300 and compared > 10000


def test_truncation_matches(btf, oracle):
    rng = random.Random(SEED + 2)
    types = pick_types(btf)[::3]
    diffs, compared = [], 0
    for tid in types:
        size = KernelRenderer(btf, tid).size or 0
        data = rng.randbytes(size)
        oracle.set_input(data)
        for flags in (PTR_RAW, PTR_RAW | COMPACT, PTR_RAW | 2 | 8):
            r = KernelRenderer(btf, tid, flags)
            full = r.render(data).encode("latin-1")
            for buf in sorted({1, 2, 3, 7, 16, len(full) // 2, len(full), len(full) + 1}):
                if buf < 1:
                    continue
                want = oracle.snprintf(tid, flags, buf)
                got = r.snprintf(data, buf)
                compared += 1
                if want != got:
                    diffs.append(f"[{tid}] {btf[tid].name!r} flags={flags} size={buf}: "
                                 f"kernel {want!r:.120} ours {got!r:.120}")
    print(f"\ntruncation: {compared} buffer sizes compared, {len(diffs)} differences")
    assert not diffs, "\n".join(diffs[:8])


def test_error_returns(btf, oracle):
    oracle.set_input(bytes(16))
    assert oracle.snprintf(0, 0)[1] == -22
    assert oracle.snprintf(len(btf) + 10, 0)[1] == -2
    assert oracle.snprintf(1, 16)[1] == -22


def test_a_refused_oracle_program_fails_with_the_verifier_log(oracle):
    """Not a skip: the verifier's own words reach the failure message."""
    bad = _mov(R0, 2) + _exit()  # reads r2, which is never written
    with pytest.raises(OracleError) as info:
        oracle._load(bad, "bad")
    msg = str(info.value)
    assert msg.startswith("bpf(load bad program) failed: EACCES")
    assert "verifier log:" in msg and "R2 !read_ok" in msg
