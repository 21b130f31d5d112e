#!/usr/bin/env python3
"""Kernel-side cost of tracing, ours against the reference ksnoop, measured
by the kernel itself.  Runs INSIDE the VM test bed (root, kprobes):
`bench/run-guest.sh` boots the guest and runs it.

For each spec, our ksnoop and the reference (/usr/sbin/ksnoop) trace
ip_send_skb at the same time, on the same workload (DATAGRAMS UDP datagrams
to 127.0.0.1, ROUNDS times, paced).  With kernel.bpf_stats_enabled=1 the kernel accounts
run_time_ns and run_cnt per BPF program; `bpftool prog show --json` is read
just before and just after the workload, and each tool's programs are found
through the prog_id lines of its own /proc/PID/fdinfo (and checked by name:
ours ksnoop_entry_N / ksnoop_return_N, the reference's kprobe_entry and
kprobe_return).

    cost per traced call = sum over the tool's programs of delta run_time_ns
                           / number of calls of the traced function
                           (= delta run_cnt of the entry program)

Everything a tool runs counts: the reference attaches a return program even
for entry-only specs, and that program runs on every return.

Bytes per event (spec ip_send_skb(skb->len)): ours from our event layout
(ksnoop/layout.py) plus the buffer's per-record framing; the reference's
from the BTF of its loaded program: it sends the first
sizeof(struct trace) - sizeof(trace.buf) + captured bytes of its struct trace
(output_trace() in libbpf-tools ksnoop.bpf.c trims the buffer tail) through
bpf_perf_event_output, framed by the perf sample header.

Targets: cost per call ours <= 0.5x the reference's, for both specs; bytes
per event ours <= 1/10 of the reference's.  Exit 1 if one is missed.
Timings under TCG are 10-30x native: only the ratios mean anything.

    python3 bench/guest_cost.py [--datagrams N] [--rounds R] [--batch B]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "guest"))

import workload  # noqa: E402  (tests/guest/workload.py: tracers, readiness, traffic)

FUNC = "ip_send_skb"
SPECS = [("all", f"{FUNC}(skb->len)"),
         ("reject", f"{FUNC}(skb->len == 1)")]
COST_TARGET = 0.5
BYTES_TARGET = 0.1
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
OURS_PREFIXES = ("ksnoop_entry_", "ksnoop_return_")  # BCC keeps 15 chars: both fit for N < 10
REF_NAMES = ("kprobe_entry", "kprobe_return")
RINGBUF_HDR = 8  # BPF_RINGBUF_HDR_SZ; records are rounded up to 8 bytes
PERF_SAMPLE_HDR = 8 + 4  # struct perf_event_header + u32 size of PERF_SAMPLE_RAW; padded to 8


def _align8(n):
    return (n + 7) & ~7


def bpftool_json(*args):
    out = subprocess.run(["bpftool", "--json", *args], check=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE).stdout
    return json.loads(out)


def progs():
    return {p["id"]: p for p in bpftool_json("prog", "show")}


def prog_ids_of(pid):
    """IDs of the BPF programs process ``pid`` holds open (from fdinfo)."""
    ids = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if not os.readlink(os.path.join(fd_dir, fd)).startswith("anon_inode:bpf-prog"):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                m = re.search(r"^prog_id:\s*(\d+)", f.read(), re.M)
        except OSError:
            continue
        if m:
            ids.add(int(m.group(1)))
    return ids


def tool_stats(ids, before, after):
    """{name: (calls, ns, xlated bytes)} for the programs ``ids`` between two snapshots."""
    out = {}
    for i in sorted(ids):
        a, b = after.get(i), before.get(i)
        if a is None or b is None:
            raise RuntimeError(f"program {i} disappeared during the measurement")
        if "run_time_ns" not in a:
            raise RuntimeError("bpftool shows no run_time_ns: kernel.bpf_stats_enabled is off")
        out[f"{a.get('name', '?')}#{i}"] = (a["run_cnt"] - b.get("run_cnt", 0),
                                            a["run_time_ns"] - b.get("run_time_ns", 0),
                                            a.get("bytes_xlated", 0))
    return out


def check_names(stats, allowed, who):
    for key in stats:
        name = key.split("#")[0]
        if not any(name.startswith(a) for a in allowed):
            raise RuntimeError(f"{who} holds an unexpected program {key!r} "
                               f"(expected names starting with {allowed})")


def entry_calls(stats, entry_prefix):
    calls = [c for key, (c, _, _) in stats.items() if key.startswith(entry_prefix)]
    if len(calls) != 1:
        raise RuntimeError(f"expected one {entry_prefix}* program, found {sorted(stats)}")
    return calls[0]


def paced_udp(count, batch):
    """``count`` datagrams in batches of ``batch`` with a short pause between,
    so that both readers keep up (a full perf buffer makes the reference's
    output fail early, which would understate its cost)."""
    while count > 0:
        workload.send_udp(min(batch, count))
        count -= batch
        time.sleep(0.02)


def round_ratios(snaps, ours_ids, ref_ids):
    out = []
    for b, a in zip(snaps, snaps[1:]):
        o, r = tool_stats(ours_ids, b, a), tool_stats(ref_ids, b, a)
        oc, rc = entry_calls(o, "ksnoop_entry_"), entry_calls(r, "kprobe_entry")
        if oc and rc:
            out.append((sum(v[1] for v in o.values()) / oc) / (sum(v[1] for v in r.values()) / rc))
    return out


def measure(label, spec, work, datagrams, rounds, batch):
    ours = workload.ksnoop(f"ours_{label}", work, "trace", "-o", "line", spec)
    ref = workload.reference(f"ref_{label}", work, "trace", spec)
    tracers = [ours, ref]
    t0 = time.monotonic()
    for t in tracers:
        t.start()
    try:
        try:
            workload.wait_ready(tracers, timeout=400)
        except RuntimeError:
            for t in tracers:
                if t.proc.poll() is None:
                    fds = sorted({os.readlink(f"/proc/{t.proc.pid}/fd/{fd}").split("[")[0]
                                  for fd in os.listdir(f"/proc/{t.proc.pid}/fd")})
                    print(f"{t.name}: open fds {fds}; stderr {t.stderr[-500:]!r}", file=sys.stderr)
            raise
        ready_s = time.monotonic() - t0
        ours_ids, ref_ids = prog_ids_of(ours.proc.pid), prog_ids_of(ref.proc.pid)
        snaps = [progs()]
        t1 = time.monotonic()
        for _ in range(rounds):
            paced_udp(datagrams, batch)
            snaps.append(progs())
        send_s = time.monotonic() - t1
        before, after = snaps[0], snaps[-1]
        # the reference's BTF goes away with it: dump it now
        btf_ids = sorted({after[i].get("btf_id") for i in ref_ids if i in after} - {None})
        ref_btf = (btf_ids[0], bpftool_json("btf", "dump", "id", str(btf_ids[0]), "format", "raw")
                   ["types"]) if btf_ids else None
        time.sleep(2)  # let the readers drain before SIGINT
    finally:
        for t in tracers:
            t.stop()
    o, r = tool_stats(ours_ids, before, after), tool_stats(ref_ids, before, after)
    check_names(o, OURS_PREFIXES, "our ksnoop")
    check_names(r, REF_NAMES, "the reference")
    m = re.search(r"ksnoop: (\d+) events, (\d+) lost", ours.stderr)
    ours_events = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    ref_events = len(re.findall(rf"\b{FUNC}\(", ref.stdout))
    ref_lost = sum(int(n) for n in re.findall(r"lost (\d+) events", ref.stdout + ref.stderr))
    return dict(label=label, spec=spec, ours=o, ref=r, ready_s=ready_s, send_s=send_s,
                rounds=round_ratios(snaps, ours_ids, ref_ids),
                ours_calls=entry_calls(o, "ksnoop_entry_"), ref_calls=entry_calls(r, "kprobe_entry"),
                ours_events=ours_events, ref_events=(ref_events, ref_lost),
                ref_btf=ref_btf)


def our_event_bytes(spec):
    """(event payload bytes, bytes per buffer record, buffer kind) for ``spec``."""
    from ksnoop.kernel.features import ringbuf_supported
    from ksnoop.kernel.files import Kernel
    from ksnoop.trace.job import prepare
    from ksnoop.trace.wire import layouts_for

    kernel = Kernel()
    prepared = prepare([spec], kernel, limit=2048)
    (fp,) = prepared.plan.funcs
    (ev,) = layouts_for(fp)  # entry-only spec: one event per call
    value_bytes = sum(v.size for v in fp.entry + fp.ret)
    if ringbuf_supported(kernel.vmlinux):
        return ev.size, _align8(ev.size + RINGBUF_HDR), "ringbuf", value_bytes
    return ev.size, _align8(ev.size + PERF_SAMPLE_HDR), "perf", value_bytes


def reference_event_bytes(btf_id, types, captured):
    """Bytes the reference passes to bpf_perf_event_output for one event that
    captured ``captured`` bytes, from its program's BTF (struct trace)."""
    by_id = {t["id"]: t for t in types}
    traces = [t for t in types if t["kind"] == "STRUCT" and t.get("name") == "trace"]
    if len(traces) != 1:
        raise RuntimeError(f"BTF {btf_id}: expected one struct trace, found {len(traces)}")
    st = traces[0]
    buf = [m for m in st["members"] if m["name"] == "buf"]
    if len(buf) != 1 or by_id[buf[0]["type_id"]]["kind"] != "ARRAY":
        raise RuntimeError(f"BTF {btf_id}: struct trace has no char buf[] member")
    buf_size = by_id[buf[0]["type_id"]]["nr_elems"]  # MAX_TRACE_BUF (char elements)
    # output_trace(): trace_len = sizeof(*trace) + trace->buf_len - MAX_TRACE_BUF
    sent = st["size"] - buf_size + captured
    return st["size"], buf_size, sent, _align8(sent + PERF_SAMPLE_HDR)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datagrams", type=int, default=3000, help="per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10, help="datagrams between 20 ms pauses")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("guest_cost.py: needs root")
    from ksnoop.kernel.features import kprobes_available
    ok, why = kprobes_available()
    if not ok:
        sys.exit(f"guest_cost.py: cannot attach kprobes here ({why}): run bench/run-guest.sh")
    with open(STATS_SYSCTL) as f:
        old_stats = f.read().strip()
    with open(STATS_SYSCTL, "w") as f:
        f.write("1")
    work = tempfile.mkdtemp(prefix="ksnoop-bench-")
    try:
        results = [measure(label, spec, work, args.datagrams, args.rounds, args.batch) for label, spec in SPECS]
        ref_btf = results[0]["ref_btf"]
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(old_stats)

    failed = []
    print(f"kernel-side BPF cost per traced call, {FUNC}, {args.rounds} rounds of "
          f"{args.datagrams} UDP datagrams to 127.0.0.1 (batches of {args.batch}), "
          "both tools tracing concurrently (TCG: compare ratios only)")
    for res in results:
        print(f"\n[{res['label']}] spec {res['spec']!r}  (both attached after "
              f"{res['ready_s']:.0f} s; workload {res['send_s']:.1f} s)")
        print(f"  {'tool':10} {'program':22} {'runs':>7} {'run_time_ns':>13} {'ns/run':>8} "
              f"{'xlated B':>9}")
        for who, stats in (("ours", res["ours"]), ("reference", res["ref"])):
            for key, (cnt, ns, xl) in stats.items():
                print(f"  {who:10} {key:22} {cnt:7d} {ns:13d} {ns / cnt if cnt else 0:8.0f} {xl:9d}")
        o_ns = sum(ns for _, ns, _ in res["ours"].values())
        r_ns = sum(ns for _, ns, _ in res["ref"].values())
        r_entry_ns = sum(ns for k, (_, ns, _) in res["ref"].items() if k.startswith("kprobe_entry"))
        oc, rc = res["ours_calls"], res["ref_calls"]
        if min(oc, rc) < args.datagrams * args.rounds:
            failed.append(f"{res['label']}: a tool missed calls (ours {oc}, reference {rc}, "
                          f"{args.datagrams * args.rounds} datagrams sent): not attached for the whole workload?")
            if not oc or not rc:
                continue
        ours_pc, ref_pc = o_ns / oc, r_ns / rc
        ratio = ours_pc / ref_pc
        ok = ratio <= COST_TARGET
        print(f"  traced calls: ours {oc}, reference {rc}")
        print(f"  events shown: ours {res['ours_events'][0]} ({res['ours_events'][1]} lost), "
              f"reference {res['ref_events'][0]} ({res['ref_events'][1]} lost)")
        print(f"  per traced call: ours {ours_pc:8.0f} ns   reference {ref_pc:8.0f} ns "
              f"(its entry program alone {r_entry_ns / rc:.0f} ns)")
        print("  per-round ratios: " + ", ".join(f"{x:.3f}" for x in res["rounds"]))
        print(f"  ratio ours/reference = {ratio:.3f} (target <= {COST_TARGET}): "
              f"{'OK' if ok else 'MISSED'}")
        if not ok:
            failed.append(f"{res['label']}: cost ratio {ratio:.3f}")

    spec = SPECS[0][1]
    ev, rec, kind, captured = our_event_bytes(spec)
    print(f"\nbytes per event, {spec!r}:")
    if ref_btf is None:
        print("  reference: BTF of its program not found")
        failed.append("reference BTF not found")
    else:
        ref_btf, types = ref_btf
        size, buf, sent, ref_rec = reference_event_bytes(ref_btf, types, captured)
        print(f"  ours      event {ev:5d} B  + {kind} framing = {rec:5d} B per record "
              "(ksnoop/layout.py)")
        print(f"  reference event {sent:5d} B  + perf framing    = {ref_rec:5d} B per record "
              f"(BTF id {ref_btf}: struct trace {size} B - buf[{buf}] + {captured} captured)")
        ratio = rec / ref_rec
        ok = ratio <= BYTES_TARGET and ev / sent <= BYTES_TARGET
        print(f"  ratio ours/reference = {ev / sent:.4f} (event), {ratio:.4f} (record); "
              f"target <= {BYTES_TARGET}: {'OK' if ok else 'MISSED'}")
        if not ok:
            failed.append(f"bytes ratio {ratio:.4f}")
    if failed:
        print("\nMISSED: " + "; ".join(failed))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
