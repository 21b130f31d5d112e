"""Calls in flight, on the BPF side: which entry a return belongs to.

One contract for every program that pairs a return with its entry (trace's
durations and stash, count/hist's stash): a call is keyed by task, function
and call depth (``struct ksnoop_stash_key``, in the template ksnoop.bpf.c),
so that a recursive call never takes its caller's entry; at kprobes the
entry's stack pointer is kept too, so that a missed return or a missed
entry never pairs a return with another call's entry (``ksnoop_leave``).
"""

from .plan import TRACEPOINT
from .wire import NO_DURATION

STASH_ENTRIES = 10240  # tasks with a call in flight (depth map)
STASH_DEPTH = 64  # calls of one function in flight per task, told apart
WALK = 4  # entries of nested calls whose returns were missed, dropped at one return
SP_SLACK = 8  # a return's stack pointer is its entry's, or one word above (kretprobe)

CALLS_C = """/*
 * Calls in flight (ksnoop_stash_key): per task and function, the number of
 * calls in flight (ksnoop_depth, key (function << 32) | tid); an entry takes
 * the key at the current depth and adds one, its return takes one off and
 * finds the same key, so a recursive call never takes its caller's entry.
 * ksnoop_start holds each call's entry time under that key (stashed events
 * hold it in their header).
 */
#define KSNOOP_STASH_DEPTH %(depth)d
#define KSNOOP_NO_DURATION %(none)dULL
BPF_TABLE("lru_hash", u64, u32, ksnoop_depth, %(entries)d);

static __always_inline void ksnoop_push(struct ksnoop_stash_key *k, u64 id, u32 func)
{
	u64 dk = ((u64)func << 32) | (u32)id;
	u32 *dp = ksnoop_depth.lookup(&dk);
	u32 depth = dp ? *dp : 0;
	k->tid = (u32)id;
	k->func = func;
	k->depth = depth & (KSNOOP_STASH_DEPTH - 1);
	depth++;
	if (dp)
		*dp = depth;
	else
		ksnoop_depth.update(&dk, &depth);
}

/* 0 and the key of the returning call's entry; -1 when no entry was seen. */
static __always_inline int ksnoop_pop(struct ksnoop_stash_key *k, u64 id, u32 func)
{
	u64 dk = ((u64)func << 32) | (u32)id;
	u32 *dp = ksnoop_depth.lookup(&dk);
	if (!dp || *dp == 0)
		return -1;
	u32 depth = *dp - 1;
	*dp = depth;
	k->tid = (u32)id;
	k->func = func;
	k->depth = depth & (KSNOOP_STASH_DEPTH - 1);
	return 0;
}
%(start)s"""


START_C = """
/* A call's entry: when it started, and the stack pointer there (kprobes; 0: none). */
struct ksnoop_start_v {
	u64 ts;
	u64 sp;
};
BPF_TABLE("lru_hash", struct ksnoop_stash_key, struct ksnoop_start_v, ksnoop_start, %(entries)d);
#define KSNOOP_WALK %(walk)d
#define KSNOOP_SP_SLACK %(slack)d

/* At an entry: the call's key; remember when it started, and where in the stack. */
static __always_inline void ksnoop_enter(struct ksnoop_stash_key *k, u64 id, u32 func, u64 sp)
{
	ksnoop_push(k, id, func);
	struct ksnoop_start_v v = { .ts = bpf_ktime_get_ns(), .sp = sp };
	ksnoop_start.update(k, &v);
}

/*
 * At a return: how long the call took and (in k) the key its entry used, or
 * KSNOOP_NO_DURATION when its entry was not seen.  With stack pointers
 * (kprobes: at the entry sp points at the return address, at the return it
 * is the same or one word above), the last entry may be deeper in the stack
 * (a lower address) than the return: a call nested in this one whose return
 * was missed (a kretprobe out of instances): it is dropped and the next one
 * down tried.  It may be higher up: then this return belongs to a call
 * nested in that one whose entry was missed: it takes none.  So no return
 * takes another call's entry.
 */
static __always_inline u64 ksnoop_leave(struct ksnoop_stash_key *k, u64 id, u32 func, u64 sp)
{
	u64 dk = ((u64)func << 32) | (u32)id;
	u32 *dp = ksnoop_depth.lookup(&dk);
	if (!dp)
		return KSNOOP_NO_DURATION;
	u32 depth = *dp;
	k->tid = (u32)id;
	k->func = func;
#pragma unroll
	for (int i = 0; i < KSNOOP_WALK; i++) {
		if (depth == 0)
			break;
		k->depth = (depth - 1) & (KSNOOP_STASH_DEPTH - 1);
		struct ksnoop_start_v *v = ksnoop_start.lookup(k);
		if (!v) {
			*dp = depth - 1;
			return KSNOOP_NO_DURATION;
		}
		u64 esp = v->sp;
		if (sp && esp && esp > sp)
			return KSNOOP_NO_DURATION;
		if (sp && esp && sp - esp > KSNOOP_SP_SLACK) {
			ksnoop_start.delete(k);
			depth--;
			continue;
		}
		u64 dur = bpf_ktime_get_ns() - v->ts;
		ksnoop_start.delete(k);
		*dp = depth - 1;
		return dur;
	}
	*dp = depth;
	return KSNOOP_NO_DURATION;
}"""


def calls_c(start=True):
    """The maps and helpers of calls in flight (stash keys; ``start``: entry
    times too)."""
    values = {"depth": STASH_DEPTH, "none": NO_DURATION, "entries": STASH_ENTRIES, "walk": WALK,
              "slack": SP_SLACK}
    return CALLS_C % dict(values, start=START_C % values if start else "")


def needs_calls(fp):
    """Whether a function's programs track calls in flight: a return is traced."""
    return fp.probe != TRACEPOINT and bool(fp.stash or fp.ret)
