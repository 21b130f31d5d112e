"""In-kernel aggregation for ``ksnoop count`` and ``ksnoop hist``: the plan and its C.

No event leaves the kernel.  Once a program's task filters and predicates
passed (read and tested by codegen's own machinery: each value read once, in
the order written), it adds one to a map:

* ``count``: a per-CPU array with one counter per function, or with ``--by``
  a per-CPU hash keyed by (function, value): a number, a pointer, a string, or
  the task's ``comm``, ``pid`` or ``tid``;
* ``hist``: a per-CPU array of power-of-two buckets per function, of a number
  in the spec (``--of``) or of the call's ``duration`` in nanoseconds.

Per-CPU maps make the counts exact without atomics (a program does not
migrate while it runs and does not nest into itself); user space sums the
CPUs.  Nothing is ever deleted, so an interval's counts are the difference of
two readings, exact too.  A new key that does not fit a full hash is counted
in ``ksnoop_agg_overflow`` and reported.  What a return program needs from
the entry (a duration's start, an entry value to key on, the fact that the
entry predicates held) is stashed per task and call depth, as trace's stash
mode does.
"""

import fnmatch
import struct
from dataclasses import dataclass, replace

from ..btf import Kind
from ..errors import SpecError, UsageError
from .plan import DEREF, MEMORY, SCALAR, STRING, TRACEPOINT
from .spec import ValueSpec, parse

COUNT, HIST = "count", "hist"
# What is aggregated besides a value of the spec.
CALLS, VALUE, COMM, PID, TID, DURATION = "calls", "value", "comm", "pid", "tid", "duration"
TASK_KEYS = (COMM, PID, TID)

DEFAULT_KEYS = 10240  # distinct keys of count --by (the hash's entries)
MAX_KEYS = 1 << 20
DEFAULT_KEY_BYTES = 64  # bytes of a string key, NUL included
MAX_KEY_BYTES = 128  # a key is built on the 512-byte BPF stack
STRING_LIMIT = 256  # bytes of a string a condition compares (as trace reads them)
COMM_LEN = 16

STASH_TOTAL = 65536  # calls in flight stashed (a duration's start...), shared out among functions
STASH_MIN, STASH_MAX = 512, 10240  # per function

# Histogram slots per function: values below zero, zero, then [2^k, 2^(k+1))
# for k = 0..63, then values that could not be read.
SLOT_NEGATIVE, SLOT_ZERO, SLOT_FIRST, SLOT_UNREADABLE = 0, 1, 2, 66
HIST_SLOTS = 67

# Key status: 0, a NULL string pointer, or the negative errno of a failed read.
STATUS_NULL = 1

COUNTS_MAP, CALLS_MAP, HIST_MAP, OVERFLOW_MAP = (
    "ksnoop_agg_counts", "ksnoop_agg_calls", "ksnoop_agg_hist", "ksnoop_agg_overflow")


@dataclass(frozen=True)
class Aggregation:
    """What the user asked for: ``count [--by VALUE]`` or ``hist [--of VALUE]``."""

    kind: str  # COUNT or HIST
    value: str = ""  # the --by / --of text ("": count calls; hist of duration)
    keys: int = DEFAULT_KEYS
    key_bytes: int = DEFAULT_KEY_BYTES

    @property
    def option(self):
        return "--by" if self.kind == COUNT else "--of"


@dataclass(frozen=True)
class AggFunc:
    """One function's aggregation program(s)."""

    fp: object  # FuncPlan holding only the values read: predicated ones and ``value``
    value: object  # the plan.Value aggregated (None for calls, task keys, duration)
    at_return: bool  # the map is updated at return (else at entry)
    stash: bool  # the entry program stashes for the return program
    str_bytes: int = 0  # bytes of a string key read for this function (0: not a string)


@dataclass(frozen=True)
class AggPlan:
    plan: object  # TracePlan of the reduced FuncPlans (indexes as in ``funcs``)
    agg: Aggregation
    source: str  # CALLS, VALUE, COMM, PID, TID or DURATION
    funcs: tuple  # AggFunc, one per plan function, by index
    str_bytes: int  # the key's string bytes (0: no string in the key)
    notes: tuple = ()  # one-line remarks for stderr

    @property
    def stash_entries(self):
        """Calls in flight each stashing function's map holds (preallocated LRU)."""
        n = sum(1 for f in self.funcs if f.stash)
        return max(STASH_MIN, min(STASH_MAX, STASH_TOTAL // max(n, 1)))

    @property
    def label(self):
        """What is counted by or measured, as shown: ``comm``, ``skb->len``, ``duration``."""
        if self.source == CALLS:
            return ""
        return self.source if self.source != VALUE else self.agg.value.strip()


# ------------------------------------------------------------------ planning
def _shift(vs, d):
    """A parsed ValueSpec moved ``d`` characters to the right."""
    steps = tuple(replace(s, pos=s.pos + d, op_pos=s.op_pos + d) for s in vs.steps)
    return replace(vs, steps=steps, pos=vs.pos + d, end=vs.end + d)


def _option_value(spec, option, text):
    """(the spec's text with `` --by VALUE`` appended, the ValueSpec of VALUE in it),
    so that an error in VALUE is shown under it, after the spec it applies to."""
    full = f"{spec.text} {option} {text}"
    start = len(full) - len(text)
    if not text:
        raise SpecError(f"{option} needs a value", full, start - 1, 1)
    try:
        parsed = parse(f"x({text})")
    except SpecError as e:
        pos = min(max(e.pos - 2, 0), len(text))
        message = e.message.replace("found ')'", "found its end") if e.pos - 2 >= len(text) else e.message
        raise SpecError(message, full, start + pos, e.length) from None
    vs = parsed.values[0]
    if len(parsed.values) != 1 or not isinstance(vs, ValueSpec):
        raise SpecError(f"{option} takes one value, not a list or a condition", full, start, len(text))
    if vs.predicate is not None:
        raise SpecError(f"{option} takes a value, not a comparison (comparisons go in the spec)",
                        full, start, len(text))
    return full, _shift(vs, start - 2)


def _source(agg, specs):
    text = agg.value.strip()
    if agg.kind == COUNT:
        if not text:
            return CALLS
        if text == DURATION:
            raise UsageError("count --by duration: a duration is not a key; "
                             "hist --of duration shows how durations are distributed")
        return text if text in TASK_KEYS else VALUE
    if text in TASK_KEYS:
        raise UsageError(f"hist --of {text}: {text} is not a quantity (count --by {text} counts by it)")
    if not text or text == DURATION:
        tps = [s.label for s in specs if s.probe == TRACEPOINT]
        if tps:
            what = "hist --of duration" if text else "hist without --of (durations)"
            raise UsageError(f"{what}: {tps[0]} is a tracepoint, which has no duration; "
                             "--of VALUE makes a histogram of one of its arguments")
        return DURATION
    return VALUE


def is_char_array(btf, tid):
    t = btf[btf.resolve(tid)]
    if t.kind != Kind.ARRAY:
        return False
    e = btf[btf.resolve(t.elem_type)]
    return e.kind == Kind.INT and e.size == 1


def _key_bytes(spec_vs, agg, v, fp):
    """Bytes of a string key read for value ``v`` (0: a number or pointer key);
    SpecError when ``v`` cannot be a key (or, for hist, is not a number)."""
    spec, vs = spec_vs
    what = f"{v.name} of {fp.name}"
    if agg.kind == HIST:
        if v.kind != SCALAR:
            kind = "a pointer" if v.kind in (DEREF, STRING) else "not a number"
            raise spec.error(f"hist --of needs a number, but {what} is {kind}", vs.pos, vs.end - vs.pos)
        return 0
    if v.kind in (SCALAR, DEREF):
        return 0
    if v.kind == STRING or v.kind == MEMORY and is_char_array(fp.btf, v.type_id):
        return min(v.size, agg.key_bytes)
    raise spec.error(f"count --by needs a number, a pointer or a string, but {what} is a struct, "
                     "union or (non-char) array", vs.pos, vs.end - vs.pos)


def _origin(specs, value_specs, fp):
    """(spec, its --by/--of ValueSpec) that a function plan came from."""
    for spec, vs in zip(specs, value_specs):
        if spec.label == fp.name:
            return spec, vs
    for spec, vs in zip(specs, value_specs):
        if spec.is_pattern and fnmatch.fnmatchcase(fp.name, spec.func):
            return spec, vs
    raise AssertionError(f"no spec for {fp.name}")


def _lean(v, tested):
    """A pointer whose target no condition compares: the target is not copied."""
    if v.kind in (DEREF, STRING) and v.name not in tested:
        return replace(v, size=8)
    return v


def cond_names(fp):
    """Names of the values the function's conditions test."""
    from .codegen import _tests

    return {t.value for c in fp.conds for t in _tests(c.expr)}


def build(spec_texts, agg, kernel, arch=None, backends=None):
    """Specs + an Aggregation -> AggPlan.  Values a spec names without a test
    are not read (unless one is the --by/--of value): a note says so.
    ``backends`` (kernel.backend.Backends) as for trace; None: kprobes."""
    from .resolve import resolve

    if not 8 <= agg.key_bytes <= MAX_KEY_BYTES:
        raise UsageError(f"string keys take 8 to {MAX_KEY_BYTES} bytes, not {agg.key_bytes}")
    if not 1 <= agg.keys <= MAX_KEYS:
        raise UsageError(f"--max-keys must be between 1 and {MAX_KEYS}")
    specs = [parse(text) for text in spec_texts]
    source = _source(agg, specs)
    notes, reduced, value_specs = [], [], []
    for spec in specs:
        tested = [item for item in spec.values
                  if not isinstance(item, ValueSpec) or item.predicate is not None]
        dropped = [item.path for item in spec.values
                   if isinstance(item, ValueSpec) and item.predicate is None]
        text = spec.text
        if source == VALUE:
            text, vs = _option_value(spec, agg.option, agg.value.strip())
            value_specs.append(vs)
            dropped = [d for d in dropped if d != vs.path]
            tested.append(vs)
        if dropped:
            notes.append(f"{spec.label}: {', '.join(dropped)} not read (not tested, and not the "
                         f"{agg.option} value)")
        reduced.append(replace(spec, text=text, values=tuple(tested), explicit=True))
    plan = resolve(reduced, kernel, limit=STRING_LIMIT, arch=arch, backends=backends)
    notes = list(plan.notes) + notes
    funcs, fps = [], []
    for fp in plan.funcs:
        tested = cond_names(fp)
        value, nbytes = None, 0
        if source == VALUE:
            spec_vs = _origin(reduced, value_specs, fp)
            side = fp.ret if spec_vs[1].is_return else fp.entry
            (value,) = [v for v in side if v.name == spec_vs[1].path]
            nbytes = _key_bytes(spec_vs, agg, value, fp)
        fp = replace(fp, entry=tuple(_lean(v, tested) for v in fp.entry),
                     ret=tuple(_lean(v, tested) for v in fp.ret), stash=False)
        if value is not None:
            value = next(v for v in (fp.ret if value.at_return else fp.entry) if v.name == value.name)
        if fp.probe == TRACEPOINT:
            at_return = stash = False
        else:
            need_ret = bool(fp.ret) or any(c.at_return for c in fp.conds) or source == DURATION
            need_entry = bool(fp.entry) or any(not c.at_return for c in fp.conds) or source == DURATION
            at_return, stash = need_ret, need_ret and need_entry
        funcs.append(AggFunc(fp, value, at_return, stash, nbytes))
        fps.append(fp)
    str_bytes = COMM_LEN if source == COMM else max((f.str_bytes for f in funcs), default=0)
    plan = replace(plan, funcs=tuple(fps))
    return AggPlan(plan, agg, source, tuple(funcs), (str_bytes + 7) & ~7, tuple(notes))


def generate(aplan, machine, filters):
    """(C text, [(function plan, entry program or None, return program or None)])."""
    from .aggcode import Generator
    from .codegen import generate as codegen_generate

    return codegen_generate(aplan.plan, machine, filters, generator=Generator(aplan))


# ------------------------------------------------------------------ reading
@dataclass(frozen=True)
class Key:
    """One key of the count hash, decoded."""

    func: int
    status: int
    num: int
    raw: bytes  # the string, up to its NUL (b"" when the key has none)


def key_struct(aplan):
    return struct.Struct(f"<IiQ{aplan.str_bytes}s" if aplan.str_bytes else "<IiQ")


_KEY_STRUCTS = {}


def decode_key(aplan, data):
    st = _KEY_STRUCTS.get(aplan.str_bytes)
    if st is None:
        st = _KEY_STRUCTS[aplan.str_bytes] = key_struct(aplan)
    if aplan.str_bytes:
        func, status, num, raw = st.unpack_from(data)
        return Key(func, status, num, raw.split(b"\0", 1)[0])
    func, status, num = st.unpack_from(data)
    return Key(func, status, num, b"")


def slot_range(slot):
    """(low, high) inclusive of a histogram slot's values; None for the unreadable slot."""
    if slot == SLOT_NEGATIVE:
        return (None, -1)
    if slot == SLOT_ZERO:
        return (0, 0)
    if SLOT_FIRST <= slot < SLOT_UNREADABLE:
        k = slot - SLOT_FIRST
        return (1 << k, (1 << (k + 1)) - 1)
    return None


def describe(aplan):
    """Human-readable plan, for --dry-run."""
    from ..btf.cdecl import type_name

    a = aplan
    what = {CALLS: "count calls", COMM: "count by task name (comm)", PID: "count by process (pid)",
            TID: "count by thread (tid)", DURATION: "histogram of the call's duration (ns)"}
    out = []
    for af in a.funcs:
        fp = af.fp
        if a.source == VALUE:
            head = (f"count by {af.value.name}" if a.agg.kind == COUNT
                    else f"histogram of {af.value.name}")
        else:
            head = what[a.source]
        where = (f"at entry and return (entry stashed per task and call depth, {a.stash_entries} "
                 "calls in flight)" if af.stash
                 else "at return" if af.at_return else "at entry")
        addr = f" at 0x{fp.addr:x}" if fp.addr else ""
        out.append(f"{fp.name}{addr}: {head}, {where}")
        if fp.backend_why:  # how it is attached, and why (kernel/backend.py)
            kind = "fentry/fexit" if fp.probe == "fentry" else "kprobe-multi" if fp.multi else "kprobe/kretprobe"
            out.append(f"  backend {kind}: {fp.backend_why}")
        for side, vals in (("entry", fp.entry), ("return", fp.ret)):
            for v in vals:
                preds = " and ".join(f"{p.op} {p.value}" for p in v.preds)
                role = "key" if af.value is not None and v.name == af.value.name else "test"
                kind = "string" if af.value is not None and v.name == af.value.name and \
                    af.str_bytes else v.kind
                out.append(f"  {side:6} {v.name}: {type_name(fp.btf, v.type_id)} ({kind}, {role})"
                           + (f" if {preds}" if preds else ""))
        for c in fp.conds:
            out.append(f"  {'return' if c.at_return else 'entry':6} condition: {c.text}")
    if a.agg.kind == HIST:
        out.append(f"map: per-CPU array of {HIST_SLOTS} power-of-two buckets per function")
    elif a.source == CALLS:
        out.append("map: per-CPU array, one counter per function")
    else:
        out.append(f"map: per-CPU hash of up to {a.agg.keys} keys"
                   + (f" (strings compared on {a.str_bytes} bytes)" if a.str_bytes else ""))
    return "\n".join(out)
