"""C for the task filters every program starts with: never ksnoop itself,
then -p PID, -t TID, -c/--comm GLOB and --cgroup (cheapest test first).

A comm glob is compiled for the pattern at hand: a plain name is a masked
compare of the name and its NUL with the first one or two 64-bit words of
the 16-byte comm, a name followed by one ``*`` is a masked compare of the
name, and any other glob runs as a bit-parallel NFA unrolled over the 16
bytes (one bit per pattern position), so no loop reaches the verifier.

The comm is read straight from the task (``bpf_get_current_task_btf()`` and
one load per 64-bit word it compares, the second only when the first
matched) where the kernel has that helper and its BTF places
``task_struct.comm`` (``Filters.comm_off``, ``with_comm_offset``), since a
rejection then costs about what a -p rejection does; otherwise, and with no
BTF offset, by ``bpf_get_current_comm()`` (a helper call that copies and pads
all 16 bytes).
"""

import dataclasses

from ..btf import Kind
from ..errors import UsageError

COMM_LEN = 16  # TASK_COMM_LEN, NUL included
MAX_GLOB = 48  # pattern characters (one NFA state each, in a u64)
CGROUP_MAP = "ksnoop_cgroup"


def check_comm_glob(pattern):
    """UsageError for a glob ksnoop cannot compile; the pattern otherwise."""
    if not pattern:
        raise UsageError("--comm: the pattern is empty")
    if len(pattern) > MAX_GLOB:
        raise UsageError(f"--comm: the pattern is longer than {MAX_GLOB} characters")
    if "[" in pattern or "\\" in pattern:
        raise UsageError("--comm: only * and ? are wildcards ([...] and backslash escapes are not supported)")
    try:
        raw = pattern.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("--comm: the pattern is not valid text") from None
    if any(b == 0 for b in raw):
        raise UsageError("--comm: the pattern holds a NUL byte")
    return pattern


def _words(raw):
    """Two little-endian u64 of a 16-byte comm."""
    raw = raw.ljust(COMM_LEN, b"\0")[:COMM_LEN]
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def _masked_compare(raw, load):
    """The comm starts with ``raw`` (a name and its NUL: equals the name):
    masked u64 compares, each word read by ``load(i)`` just before its own."""
    lo, hi = _words(raw)
    n = len(raw)
    out = []
    for i, (word, mask) in enumerate(((lo, (1 << (8 * min(n, 8))) - 1),
                                      (hi, (1 << (8 * max(n - 8, 0))) - 1))):
        if mask:
            out += load(i)
            out.append(f"\tif ((ksnoop_comm.w[{i}] & 0x{mask:x}ULL) != 0x{word & mask:x}ULL) return 0;")
    return out


def _closure(raw, var, ind):
    """A '*' may match nothing: reaching position i means reaching i + 1 too."""
    return [f"{ind}{var} |= (({var} >> {i}) & 1ULL) << {i + 1};" for i, b in enumerate(raw)
            if b == ord("*")]


def _step(raw, state, nxt, ind):
    """One byte ``c`` through the NFA: ``nxt`` from ``state`` (bit i = matched up to i).

    Branch-free: a byte comparison is arithmetic (``((c ^ b) - 1) >> 63`` is 1
    exactly when c == b), so the verifier sees one path per byte, not one per
    outcome of every comparison (which made loops over long strings too big)."""
    out = [f"{ind}{nxt} = 0;"]
    for i, b in enumerate(raw):
        bit = f"({state} & (1ULL << {i}))"
        if b == ord("*"):
            out.append(f"{ind}{nxt} |= {bit};")
        elif b == ord("?"):
            out.append(f"{ind}{nxt} |= {bit} << 1;")
        else:
            out.append(f"{ind}{nxt} |= ({bit} << 1) & -((((u64)c ^ {b}ULL) - 1) >> 63);")
    return out + _closure(raw, nxt, ind) + [f"{ind}{state} = {nxt};"]


def _nfa(raw, load=lambda i: []):
    """A glob over the 16 comm bytes as an unrolled bit-parallel NFA: the comm
    matches when bit len(pattern) is set at its NUL (or after all 16 bytes).
    ``load(i)``: lines that read the comm's word i, put before its first byte."""
    out = ["\t{", "\t\tu64 s = 1ULL, n = 0;", "\t\tu8 c;", "\t\tint end = 0;"]
    out += _closure(raw, "s", "\t\t")
    for k in range(COMM_LEN):
        if k % 8 == 0:
            out += ["\t" + line for line in load(k // 8)]
        out.append(f"\t\tc = ksnoop_comm.c[{k}];")
        out.append("\t\tif (c == 0) end = 1;")
        out.append("\t\tif (!end) {")
        out += _step(raw, "s", "n", "\t\t\t")
        out.append("\t\t\tif (!s) return 0;  /* no way left to match: reject early */")
        out.append("\t\t}")
    out.append(f"\t\tif (!(s & (1ULL << {len(raw)}))) return 0;")
    out.append("\t}")
    return out


def comm_filter(pattern, comm_off=-1):
    """C lines that return 0 unless the current task's comm matches ``pattern``;
    ``comm_off``: where task_struct keeps comm (-1: read by bpf_get_current_comm)."""
    raw = check_comm_glob(pattern).encode("utf-8")
    out = ["\tunion { char c[16]; u64 w[2]; } ksnoop_comm;"]
    if comm_off < 0:
        # No initialiser: the helper writes all 16 bytes (the name, NUL-padded).
        out.append("\tbpf_get_current_comm(&ksnoop_comm.c, sizeof(ksnoop_comm.c));")
        load = lambda i: []  # noqa: E731
    else:
        # a BTF pointer: each word is one plain load (the verifier checks it is
        # inside task_struct.comm)
        out.append("\tchar *ksnoop_task = (char *)bpf_get_current_task_btf();")
        load = lambda i: [f"\tksnoop_comm.w[{i}] = *(u64 *)(ksnoop_task + {int(comm_off) + 8 * i});"]  # noqa: E731
    wild = [i for i, b in enumerate(raw) if b in b"*?"]
    if not wild:
        if len(raw) >= COMM_LEN:
            return ["\treturn 0;"]  # no comm is that long
        return out + _masked_compare(raw + b"\0", load)
    if wild == [len(raw) - 1] and raw.endswith(b"*"):
        prefix = raw[:-1]
        if len(prefix) >= COMM_LEN:
            return ["\treturn 0;"]
        return out + _masked_compare(prefix, load) if prefix else []  # "*": every name
    return out + _nfa(raw, load)


def with_comm_offset(filters, kernel):
    """``filters`` with ``comm_off`` set when a comm glob can be matched on the
    task's own comm: the kernel has bpf_get_current_task_btf (5.11) and its BTF
    places task_struct.comm, a 16-byte array, at a byte offset."""
    if not filters.comm or filters.comm_off >= 0:
        return filters
    btf = kernel.vmlinux
    if not btf.find("bpf_get_current_task_btf", Kind.FUNC):
        return filters
    for tid in btf.find("task_struct", Kind.STRUCT):
        for m in btf[tid].members:
            if (m.name == "comm" and not m.bitfield_size and m.bit_offset % 64 == 0
                    and btf.size_of(m.type) == COMM_LEN):
                return dataclasses.replace(filters, comm_off=m.bit_offset // 8)
    return filters


def task_filter(filters, self_tgid):
    """The lines every program starts with (after ``u64 id = bpf_get_current_pid_tgid();``)."""
    out = [f"\tif ((id >> 32) == {int(self_tgid)}) return 0;"]
    if filters.pid:
        out.append(f"\tif ((id >> 32) != {int(filters.pid)}) return 0;")
    if filters.tid:
        out.append(f"\tif ((u32)id != {int(filters.tid)}) return 0;")
    if filters.cgroup:
        out.append(f"\tif ({CGROUP_MAP}.check_current_task(0) != 1) return 0;")
    if filters.comm:
        out += comm_filter(filters.comm, filters.comm_off)
    return out


def maps(filters):
    """Map declarations the filters need."""
    return [f"BPF_CGROUP_ARRAY({CGROUP_MAP}, 1);"] if filters.cgroup else []


def glob_match(raw, data, cap, result, indent):
    """C lines that set ``result`` (an existing int) to 1 when the NUL-terminated
    bytes at ``data`` (at most ``cap`` of them) match the glob ``raw``: the same
    bit-parallel NFA as a comm glob, in a bounded loop."""
    if len(raw) > 63:
        raise UsageError("a glob is longer than 63 characters")
    inner = indent + "\t\t"
    out = [f"{indent}{{", f"{indent}\tu64 st = 1ULL, nx = 0;"]
    out += _closure(raw, "st", indent + "\t")
    out.append(f"{indent}\tfor (int k = 0; k < {cap}; k++) {{")
    out.append(f"{inner}u8 c = {data}[k];")
    out.append(f"{inner}if (c == 0) break;")
    out += _step(raw, "st", "nx", inner)
    out.append(f"{inner}if (!st) break;")
    out.append(f"{indent}\t}}")
    out.append(f"{indent}\t{result} = (st >> {len(raw)}) & 1;")
    out.append(f"{indent}}}")
    return out
