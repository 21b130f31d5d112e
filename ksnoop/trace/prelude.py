"""The C that runtime.Session puts before the generated code: the output
buffer (BPF ring buffer or perf buffer), the lost-event counter, and
KSNOOP_OUTPUT, the one way a program sends an event."""

RINGBUF = "ringbuf"
PERF = "perf"


def prelude(buffer, pages, ncpus=1):
    """The C prepended to generated code: buffer map, lost counter, KSNOOP_OUTPUT.

    ``pages``: the whole ring buffer (ring buffer) or the pages per CPU (perf)."""
    if buffer == RINGBUF:
        decl = f"BPF_RINGBUF_OUTPUT(events, {pages});"
        # Waking the reader costs more than the whole probe (an irq_work per
        # event), so each CPU counts the bytes it wrote since its last wakeup
        # (ksnoop_unread, per CPU) and wakes the reader only after a quarter of
        # its share of the ring (ring / CPUs); poll() drains the rest every
        # poll interval.  All CPUs together thus leave at most a quarter of
        # the ring unannounced.
        wake = max(pages * 4096 // (4 * max(ncpus, 1)), 512)
        send = ("u64 flags = BPF_RB_NO_WAKEUP;\n"
                "\tint idx = 0;\n"
                "\tu64 *unread = ksnoop_unread.lookup(&idx);\n"
                "\tif (unread) {\n"
                "\t\t*unread += size;\n"
                f"\t\tif (*unread >= {wake}) {{\n"
                "\t\t\tflags = BPF_RB_FORCE_WAKEUP;\n"
                "\t\t\t*unread = 0;\n"
                "\t\t}\n\t}\n"
                "\tint ret = events.ringbuf_output(data, size, flags);\n"
                "\tif (ret) {\n\t\tint zero = 0;\n"
                "\t\tu64 *n = ksnoop_lost.lookup(&zero);\n"
                "\t\tif (n)\n\t\t\t*n += 1;\n\t}\n\treturn ret;")
    else:
        decl = "BPF_PERF_OUTPUT(events);"
        send = "return events.perf_submit(ctx, data, size);  /* losses: perf lost records */"
    return (
        "/* ksnoop runtime prelude */\n"
        f"#define KSNOOP_BUFFER_RINGBUF {1 if buffer == RINGBUF else 0}\n"
        f"{decl}\n"
        "BPF_PERCPU_ARRAY(ksnoop_lost, u64, 1);\n"
        "BPF_PERCPU_ARRAY(ksnoop_unread, u64, 1);\n"
        "static inline __attribute__((always_inline))\n"
        "int ksnoop_output(void *ctx, void *data, u32 size)\n"
        f"{{\n\t{send}\n}}\n"
        "#define KSNOOP_OUTPUT(ctx, data, size) "
        "ksnoop_output((void *)(ctx), (void *)(data), (size))\n"
        "/* end of prelude */\n\n"
    )
