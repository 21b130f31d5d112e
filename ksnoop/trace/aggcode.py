"""The C of ``ksnoop count`` / ``ksnoop hist`` programs (see aggregate.py).

A ``Generator`` is codegen.generate's ``generator``: codegen keeps the
template, the task filters and the probe kinds; values are read and
predicates and conditions tested by codegen's own ``_capture`` (each value
read once, in the order written), into an event that never leaves the
kernel; then, instead of sending the event, the program updates a map.

* One program (at entry, or at return when only return values or return
  conditions matter): the event is on the stack (or, when large, in a per-CPU
  scratch array), the key on the stack.
* Entry and return (a duration, or tests on both sides): the entry program
  fills a stash entry (start time, key, the event's entry values) per task
  and call depth; the return program completes it in the map and counts.
"""

from .aggregate import (
    CALLS,
    CALLS_MAP,
    COMM,
    COMM_LEN,
    COUNT,
    COUNTS_MAP,
    DURATION,
    HIST,
    HIST_MAP,
    HIST_SLOTS,
    OVERFLOW_MAP,
    PID,
    SLOT_NEGATIVE,
    SLOT_UNREADABLE,
    STATUS_NULL,
    TID,
    cond_names,
)
from .codegen import _capture, _operand, _prologue, _with_header
from .plan import DEREF, MEMORY, SCALAR, STRING
from .wire import CALL, ENTRY, RETURN, event_layout

STACK_EVENT_MAX = 256  # bytes of event (or stash entry) built on the stack; more go to scratch

_SHARED_C = r"""
/* 1 for 0, else 2 + floor(log2(v)): the histogram slot of a non-negative value */
static __always_inline u32 ksnoop_agg_slot(u64 v)
{
	u32 r = 0, s;
	if (!v)
		return 1;
	s = (v > 0xffffffffULL) << 5; v >>= s; r |= s;
	s = (v > 0xffffULL) << 4; v >>= s; r |= s;
	s = (v > 0xffULL) << 3; v >>= s; r |= s;
	s = (v > 0xfULL) << 2; v >>= s; r |= s;
	s = (v > 0x3ULL) << 1; v >>= s; r |= s;
	r |= (u32)(v >> 1);
	return 2 + r;
}
"""

_COUNT_C = r"""
/* One more call for this key; a new key that does not fit is an overflow. */
static __always_inline void ksnoop_agg_count(struct ksnoop_agg_key *k)
{
	u64 *n = ksnoop_agg_counts.lookup(k);
	if (n) {
		*n += 1;
		return;
	}
	u64 one = 1;  /* sets this CPU's counter only: the others start at 0 */
	if (ksnoop_agg_counts.update(k, &one)) {
		u32 zero = 0;
		u64 *o = ksnoop_agg_overflow.lookup(&zero);
		if (o)
			*o += 1;
	}
}
"""

_HIST_C = r"""
static __always_inline void ksnoop_agg_hist_add(u32 func, u32 slot)
{
	u32 i = func * KSNOOP_HIST_SLOTS + slot;
	u64 *n = ksnoop_agg_hist.lookup(&i);
	if (n)
		*n += 1;
}
"""


def _layout(af):
    fp = af.fp
    if af.stash:
        return event_layout(fp.index, CALL, fp.entry + fp.ret, fp.conds)
    if af.at_return:
        return event_layout(fp.index, RETURN, fp.ret, [c for c in fp.conds if c.at_return])
    return event_layout(fp.index, ENTRY, fp.entry, [c for c in fp.conds if not c.at_return])


def _struct_size(ev):
    """An upper bound of ``_ev_struct``'s size."""
    return sum(8 + 8 + ((s.size + 7) & ~7) for s in ev.slots)


def _ev_struct(name, ev):
    """The values one function reads, as a naturally aligned struct (the
    members codegen's reading code fills: vN_ptr, vN_status, vN_data)."""
    lines = [f"struct {name} {{"]
    for i, s in enumerate(ev.slots):
        if s.ptr >= 0:
            lines.append(f"\tu64 v{i}_ptr;")
        if s.status >= 0:
            lines.append(f"\ts32 v{i}_status;")
        if s.data >= 0:
            lines.append(f"\tu8 v{i}_data[{s.size}] __attribute__((aligned(8)));")
    if not ev.slots:
        lines.append("\tu64 none;")
    lines.append("};")
    return "\n".join(lines)


class Generator:
    """The aggregation programs of an AggPlan."""

    def __init__(self, aplan):
        self.a = aplan
        self.layouts = [_layout(af) for af in aplan.funcs]
        # codegen declares trace's map of calls in flight for the stash programs
        self.calls = any(af.stash for af in aplan.funcs)

    @property
    def _keyed(self):
        return self.a.agg.kind == COUNT and self.a.source != CALLS

    def _scratch_size(self, af, ev):
        size = _struct_size(ev) + (24 + self.a.str_bytes if af.stash else 0)
        return size if size > STACK_EVENT_MAX else 0

    def shared(self):
        a, n = self.a, max(len(self.a.funcs), 1)
        key = ["struct ksnoop_agg_key {", "\tu32 func;",
               "\ts32 status;  /* 0; 1: a NULL string pointer; < 0: -errno of a failed read */",
               "\tu64 num;  /* a number or pointer, a pid or tid */"]
        if a.str_bytes:
            key.append(f"\tchar str[{a.str_bytes}];  /* a string or task name, NUL-padded */")
        key.append("};")
        maps = [f"BPF_PERCPU_ARRAY({OVERFLOW_MAP}, u64, 1);"]
        if a.agg.kind == HIST:
            maps += [f"#define KSNOOP_HIST_SLOTS {HIST_SLOTS}",
                     f"BPF_PERCPU_ARRAY({HIST_MAP}, u64, {n * HIST_SLOTS});"]
        elif self._keyed:
            maps.append(f"BPF_PERCPU_HASH({COUNTS_MAP}, struct ksnoop_agg_key, u64, {a.agg.keys});")
        else:
            maps.append(f"BPF_PERCPU_ARRAY({CALLS_MAP}, u64, {n});")
        scratch = max((self._scratch_size(af, ev) for af, ev in zip(a.funcs, self.layouts)), default=0)
        if scratch:
            maps.append(f"struct ksnoop_agg_scratch_t {{ u8 buf[{scratch}]; }};\n"
                        "BPF_PERCPU_ARRAY(ksnoop_agg_scratch, struct ksnoop_agg_scratch_t, 1);")
        maps.append(_SHARED_C)
        if a.agg.kind == HIST:
            maps.append(_HIST_C)
        elif self._keyed:
            maps.append(_COUNT_C)
        return ["\n".join(key)], maps

    # -- pieces of a program
    def _place(self, af, ev, ctype, var):
        """Lines declaring ``var``, a pointer to a ``ctype`` on the stack or in scratch."""
        if self._scratch_size(af, ev):
            return ["\tu32 zero = 0;",
                    f"\t{ctype} *{var} = ({ctype} *)ksnoop_agg_scratch.lookup(&zero);",
                    f"\tif (!{var}) return 0;"]
        return [f"\t{ctype} {var}_buf;", f"\t{ctype} *{var} = &{var}_buf;"]

    def _fill(self, af, ev, k="k"):
        """Lines that put the aggregated value, read into ``e``, into key ``k``."""
        v = af.value
        (i, slot), = [(i, s) for i, s in enumerate(ev.slots) if s.value.name == v.name]
        if v.kind == SCALAR:
            status = f"e->v{i}_status" if slot.status >= 0 else "0"
            return [f"\t{k}->status = {status};",
                    f"\t{k}->num = (u64)({v.ctype})({_operand(slot, i)});"]
        if v.kind == DEREF:
            return [f"\t{k}->status = e->v{i}_status;", f"\t{k}->num = e->v{i}_ptr;"]
        if v.kind == MEMORY:  # a char array, copied up to its NUL and padded
            out = [f"\t{k}->status = e->v{i}_status;", f"\tif (!{k}->status) {{", "\t\tu8 c, end = 0;"]
            for j in range(af.str_bytes):
                out += [f"\t\tc = e->v{i}_data[{j}];", "\t\tif (!c) end = 1;",
                        f"\t\t{k}->str[{j}] = end ? 0 : c;"]
            return out + ["\t}"]
        assert v.kind == STRING
        read = "bpf_probe_read_user_str" if v.user else "bpf_probe_read_kernel_str"
        return [f"\t{k}->status = e->v{i}_status;",
                f"\tif (!{k}->status && !e->v{i}_ptr)",
                f"\t\t{k}->status = {STATUS_NULL};",
                f"\tif (!{k}->status) {{",
                f"\t\tlong n = {read}({k}->str, {af.str_bytes}, (void *)(e->v{i}_ptr + {v.read_off}));",
                "\t\tif (n < 0)",
                f"\t\t\t{k}->status = n;",
                "\t}"]

    def _task_key(self, k="k"):
        src = self.a.source
        if src == COMM:
            return [f"\tbpf_get_current_comm({k}->str, {COMM_LEN});"]
        if src == PID:
            return [f"\t{k}->num = id >> 32;"]
        if src == TID:
            return [f"\t{k}->num = (u32)id;"]
        return []

    def _add(self, af, k="k", duration=None):
        """Lines that count the call in the map."""
        i = af.fp.index
        if self.a.agg.kind == COUNT:
            if not self._keyed:
                return ["\t{", f"\t\tu32 i = {i};", f"\t\tu64 *n = {CALLS_MAP}.lookup(&i);",
                        "\t\tif (n)", "\t\t\t*n += 1;", "\t}"]
            return [f"\tksnoop_agg_count({k});"]
        if duration is not None:
            return [f"\tksnoop_agg_hist_add({i}, ksnoop_agg_slot({duration}));"]
        slot = f"ksnoop_agg_slot({k}->num)"
        if af.value.ctype.startswith("s"):
            slot = f"((s64){k}->num < 0 ? {SLOT_NEGATIVE} : {slot})"
        return [f"\tksnoop_agg_hist_add({i}, {k}->status ? {SLOT_UNREADABLE} : {slot});"]

    def _needs_key(self, af):
        return self._keyed or (self.a.agg.kind == HIST and af.value is not None)

    # -- programs
    def function(self, fp, gen):
        af = self.a.funcs[fp.index]
        ev = self.layouts[fp.index]
        evname = f"ksnoop_agg_ev_{fp.index}"
        structs = [_ev_struct(evname, ev)]
        copy = cond_names(fp)  # what conditions compare is copied; nothing else
        if af.stash:
            return self._stash_programs(af, ev, gen, structs, copy)
        name = f"ksnoop_{'return' if af.at_return else 'entry'}_{fp.index}"
        out = _prologue(name, fp, gen)
        place = self._place(af, ev, f"struct {evname}", "e") if ev.slots else []
        out += _with_header(_capture(ev, af.at_return, "return 0;", "\t", copy=copy, early=True), [],
                            event=place)
        if self._needs_key(af):
            out += ["\tstruct ksnoop_agg_key key;", "\t__builtin_memset(&key, 0, sizeof(key));",
                    "\tstruct ksnoop_agg_key *k = &key;", f"\tk->func = {fp.index};"]
            if af.value is not None:
                out += self._fill(af, ev)
            out += self._task_key()
        out += self._add(af) + ["\treturn 0;", "}"]
        names = (None, name) if af.at_return else (name, None)
        return structs, [], ["\n".join(out)], *names

    def _stash_programs(self, af, ev, gen, structs, copy):
        fp, i = af.fp, af.fp.index
        st_type = f"struct ksnoop_agg_stash_{i}"
        structs.append(f"{st_type} {{\n\tu64 ts;\n\tstruct ksnoop_agg_key key;\n"
                       f"\tstruct ksnoop_agg_ev_{i} ev;\n}};")
        stash = f"ksnoop_agg_stash_{i}"
        n = self.a.stash_entries
        maps = [f"BPF_TABLE(\"lru_hash\", struct ksnoop_stash_key, {st_type}, {stash}, {n});"]
        fail = f"{{ {stash}.delete(&sk); return 0; }}"
        value_at = None if af.value is None else af.value.at_return
        # calls in flight: trace's own key (codegen.CALLS_C: task, function, depth)
        entry = _prologue(f"ksnoop_entry_{i}", fp, gen) + [
            "\tstruct ksnoop_stash_key sk;",
            f"\tksnoop_push(&sk, id, {i});"]
        entry += self._place(af, ev, st_type, "st")
        entry += ["\t__builtin_memset(st, 0, sizeof(*st));" if not self._scratch_size(af, ev)
                  else "\t__builtin_memset(&st->key, 0, sizeof(st->key));",
                  f"\tstruct ksnoop_agg_ev_{i} *e = &st->ev;"]
        entry += _with_header(_capture(ev, False, fail, "\t", copy=copy), [])
        entry += ["\tstruct ksnoop_agg_key *k = &st->key;", f"\tk->func = {i};"]
        if value_at is False:
            entry += self._fill(af, ev)
        if self.a.source == DURATION:
            entry.append("\tst->ts = bpf_ktime_get_ns();")
        entry += [f"\t{stash}.update(&sk, st);", "\treturn 0;", "}"]
        ret = _prologue(f"ksnoop_return_{i}", fp, gen)
        if self.a.source == DURATION:
            ret.append("\tu64 now = bpf_ktime_get_ns();")
        ret += ["\tstruct ksnoop_stash_key sk;",
                f"\tif (ksnoop_pop(&sk, id, {i})) return 0;",
                f"\t{st_type} *st = {stash}.lookup(&sk);",
                "\tif (!st) return 0;",
                f"\tstruct ksnoop_agg_ev_{i} *e = &st->ev;"]
        ret += _with_header(_capture(ev, True, fail, "\t", copy=copy), [])
        ret.append("\tstruct ksnoop_agg_key *k = &st->key;")
        if value_at is True:
            ret += self._fill(af, ev)
        ret += self._task_key()
        ret += self._add(af, duration="now - st->ts" if self.a.source == DURATION else None)
        ret += [f"\t{stash}.delete(&sk);", "\treturn 0;", "}"]
        return structs, maps, ["\n".join(entry), "\n".join(ret)], f"ksnoop_entry_{i}", f"ksnoop_return_{i}"


__all__ = ["Generator"]
