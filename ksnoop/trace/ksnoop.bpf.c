/*
 * ksnoop: BPF program generated for one trace plan.
 *
 * The runtime prepends the output buffer (KSNOOP_OUTPUT) and the lost-event
 * counter; this template supplies the event layouts, the per-CPU scratch
 * event, the stash maps and one entry/return program per traced function.
 * Each $$name placeholder is filled in by ksnoop/codegen.py from the plan.
 */

/* Every event starts with this header (ksnoop/layout.py: HEADER_FIELDS). */
struct ksnoop_hdr {
${header_fields}
} __attribute__((packed, aligned(8)));

${event_structs}

/*
 * One event is built per CPU at a time, too big for the 512-byte BPF stack:
 * a per-CPU array, or for events over 32 KiB (the per-CPU value limit) an
 * array with one slot per possible CPU (KSNOOP_SCRATCH_SLOT picks it).
 */
struct ksnoop_scratch_t {
	u8 buf[${scratch_size}];
};
${scratch_map}

/*
 * One call in flight: the task, the function, and the call's depth (how many
 * calls of the function the task had in flight when it was made), so that a
 * recursive call never takes its caller's entry.  Stashed entry values and
 * entry times are kept under it (codegen.CALLS_C: ksnoop_push, ksnoop_pop).
 */
struct ksnoop_stash_key {
	u32 tid;
	u16 func;
	u16 depth;
};
${maps}

static __always_inline void ksnoop_fill_hdr(struct ksnoop_hdr *h, u64 id, u16 func, u8 kind)
{
	h->ts = bpf_ktime_get_ns();
	h->tgid = id >> 32;
	h->tid = (u32)id;
	h->cpu = bpf_get_smp_processor_id();
	h->func = func;
	h->kind = kind;
	h->flags = 0;
	bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

${programs}
