#!/usr/bin/env python3
"""Kernel-side cost of tracing, ours against the reference ksnoop, measured
by the kernel itself.  Runs INSIDE the VM test bed (root, kprobes):
`bench/run-guest.sh` boots the guest and runs it.

For each spec, ROUNDS rounds.  In each round our ksnoop and the reference
(/usr/sbin/ksnoop) trace ip_send_skb at the same time, on the same workload
(DATAGRAMS UDP datagrams to 127.0.0.1, paced so that both readers keep up).
Ours runs with --backend kprobe unless told otherwise: the reference uses
kprobes, so both programs run under the same hook and the ratio compares
the programs' work (bench/backend_cost.py compares ksnoop's backends).
Both tools are started afresh every round, one after the other: the first
is started and waited for until it is attached, then the second.  Which
tool attaches first alternates from round to round (ROUNDS must be even),
because the order matters: the kernel chains kprobes on one address and
runs the one registered last first, so the first to run pays for the cold
cache lines of the probe path.  Per-round ratios are printed with the order,
and the mean ratio of each order.

Cost.  With kernel.bpf_stats_enabled=1 the kernel accounts run_time_ns and
run_cnt per BPF program; `bpftool prog show --json` is read just before and
just after the workload, and each tool's programs are found through the
prog_id lines of its own /proc/PID/fdinfo (and checked by name: ours
ksnoop_entry_N / ksnoop_return_N, the reference's kprobe_entry and
kprobe_return).

    cost per traced call = sum over rounds and over the tool's programs of
                           delta run_time_ns / sum of delta run_cnt of the
                           entry program (= calls of the traced function)

Everything a tool runs counts: the reference attaches a return program even
for entry-only specs, and that program runs on every return.

Bytes.  Measured in each tool's own kernel-to-user buffers (bench/rings.py):
the buffers' byte counters (perf: data_head of each CPU's ring; BPF ring
buffer: producer_pos) are read before and after the workload, which gives
the bytes each tool's programs wrote, framing included, per traced call.
After the workload a short burst of CENSUS datagrams is sent and the records
it produced are walked in the rings: their types, sizes in the ring and
payload sizes (the bytes handed to bpf_perf_event_output or
bpf_ringbuf_output; perf rounds these up so that records stay 8-aligned).
Cross-checks, printed but not used for the targets: the payload our event
layout predicts (ksnoop/trace/wire.py), and the fixed part of the
reference's struct trace from the BTF of its loaded program (its
output_trace() sends sizeof(struct trace) - sizeof(trace.buf) + the bytes
captured).

Targets: cost per call ours <= 0.5x the reference's, for both specs; bytes
per traced call ours <= 1/10 of the reference's, for the ring bytes and for
the payload.  Exit 1 if one is missed.  Timings under TCG are 10-30x
native: only the ratios mean anything.

    python3 bench/guest_cost.py [--datagrams N] [--rounds R] [--batch B] [--backend B]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "guest"))

import rings  # noqa: E402  (bench/rings.py: bytes in the tools' buffers)
import workload  # noqa: E402  (tests/guest/workload.py: tracers, readiness, traffic)

FUNC = "ip_send_skb"
SPECS = [("all", f"{FUNC}(skb->len)"),
         ("reject", f"{FUNC}(skb->len == 1)")]
COST_TARGET = 0.5
BYTES_TARGET = 0.1
CENSUS = 20  # datagrams whose records are walked in the rings
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
OURS_PREFIXES = ("ksnoop_entry_", "ksnoop_return_")  # BCC keeps 15 chars: both fit for N < 10
REF_NAMES = ("kprobe_entry", "kprobe_return")
ATTACH_TIMEOUT_S = 400


def bpftool_json(*args):
    out = subprocess.run(["bpftool", "--json", *args], check=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE).stdout
    return json.loads(out)


def tool_stats(ids, before, after):
    """{name#id: (runs, ns, xlated bytes)} for the programs ``ids`` between two snapshots."""
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


def attach(tracer):
    """Start ``tracer`` and wait until it is attached; seconds taken."""
    t0 = time.monotonic()
    tracer.start()
    try:
        workload.wait_ready([tracer], timeout=ATTACH_TIMEOUT_S)
    except RuntimeError:
        if tracer.proc.poll() is None:
            fds = sorted({os.readlink(f"/proc/{tracer.proc.pid}/fd/{fd}").split("[")[0]
                          for fd in os.listdir(f"/proc/{tracer.proc.pid}/fd")})
            print(f"{tracer.name}: open fds {fds}; stderr {tracer.stderr[-500:]!r}", file=sys.stderr)
        raise
    return time.monotonic() - t0


class Tool:
    """One tracer of a round: its programs and its buffers."""

    def __init__(self, who, tracer, entry_prefix, names):
        self.who, self.tracer = who, tracer
        self.entry_prefix, self.names = entry_prefix, names
        self.ids = self.rings = None

    def found(self):
        self.ids = workload.bpfprogs.prog_ids(self.tracer.proc.pid)
        self.rings = rings.rings_of(self.tracer.proc.pid)

    def stats(self, before, after):
        s = tool_stats(self.ids, before, after)
        check_names(s, self.names, self.who)
        return s


def measure_round(label, spec, work, idx, ours_first, datagrams, batch, backend):
    ours = Tool("our ksnoop", workload.ksnoop(f"ours_{label}{idx}", work, "trace", "-o", "line",
                                              "--backend", backend, spec),
                "ksnoop_entry_", OURS_PREFIXES)
    ref = Tool("the reference", workload.reference(f"ref_{label}{idx}", work, "trace", spec),
               "kprobe_entry", REF_NAMES)
    order = [ours, ref] if ours_first else [ref, ours]
    started, ready = [], {}
    try:
        for tool in order:
            started.append(tool.tracer)
            ready[tool.who] = attach(tool.tracer)
        for tool in (ours, ref):
            tool.found()
        heads0 = [rings.heads(t.rings) for t in (ours, ref)]
        before = workload.bpfprogs.shown()
        t1 = time.monotonic()
        paced_udp(datagrams, batch)
        send_s = time.monotonic() - t1
        after = workload.bpfprogs.shown()
        heads1 = [rings.heads(t.rings) for t in (ours, ref)]
        paced_udp(CENSUS, 1)  # one at a time: no tool loses any of these
        time.sleep(0.5)
        census_after = workload.bpfprogs.shown()
        heads2 = [rings.heads(t.rings) for t in (ours, ref)]
        censuses = [rings.census(t.rings, h1, h2) for t, h1, h2 in zip((ours, ref), heads1, heads2)]
        ref_btf = None
        btf_ids = sorted({after[i].get("btf_id") for i in ref.ids if i in after} - {None})
        if btf_ids:  # the reference's BTF goes away with it: dump it now
            ref_btf = (btf_ids[0], bpftool_json("btf", "dump", "id", str(btf_ids[0]),
                                                "format", "raw")["types"])
        vias = {k: sorted({r.via for r in t.rings}) for k, t in (("ours", ours), ("ref", ref))}
        time.sleep(2)  # let the readers drain before SIGINT
    finally:
        for tool in (ours, ref):
            if tool.rings:
                rings.close(tool.rings)
        for t in started:
            t.stop()
    res = dict(idx=idx, first="ours" if ours_first else "reference", ready=ready,
               send_s=send_s, ref_btf=ref_btf, vias=vias)
    for key, tool, h0, h1, census in zip(("ours", "ref"), (ours, ref), heads0, heads1, censuses):
        st = tool.stats(before, after)
        cst = tool.stats(after, census_after)
        res[key] = dict(stats=st, calls=entry_calls(st, tool.entry_prefix),
                        ns=sum(ns for _, ns, _ in st.values()),
                        bytes=rings.written(h0, h1), census=census,
                        census_calls=entry_calls(cst, tool.entry_prefix),
                        buffers=Counter(f"{r.kind} ring of {r.data_size} B" for r in tool.rings))
    m = re.search(r"ksnoop: (\d+) events, (\d+) lost", ours.tracer.stderr)
    res["ours"]["shown"] = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    res["ref"]["shown"] = (len(re.findall(rf"\b{FUNC}\(", ref.tracer.stdout)),
                           sum(int(n) for n in re.findall(r"lost (\d+) events",
                                                          ref.tracer.stdout + ref.tracer.stderr)))
    return res


def our_payload(spec):
    """Event payload bytes ksnoop's layout predicts for an entry-only ``spec``."""
    from ksnoop.kernel.files import Kernel
    from ksnoop.trace.job import prepare
    from ksnoop.trace.wire import layouts_for

    (fp,) = prepare([spec], Kernel(), limit=2048).plan.funcs
    return [ev.size for ev in layouts_for(fp)]


def reference_fixed(types):
    """(sizeof(struct trace), elements of trace.buf) from the reference's BTF."""
    by_id = {t["id"]: t for t in types}
    traces = [t for t in types if t["kind"] == "STRUCT" and t.get("name") == "trace"]
    if len(traces) != 1:
        raise RuntimeError(f"expected one struct trace in the reference's BTF, found {len(traces)}")
    buf = [m for m in traces[0]["members"] if m["name"] == "buf"]
    if len(buf) != 1 or by_id[buf[0]["type_id"]]["kind"] != "ARRAY":
        raise RuntimeError("the reference's struct trace has no buf[] member")
    return traces[0]["size"], by_id[buf[0]["type_id"]]["nr_elems"]


def census_text(census):
    if census is None:
        return "not taken (ring wrapped)"
    if not census:
        return "no records"
    return ", ".join(f"{n} x {kind} {size} B in ring ({'lost ' if kind == 'lost' else ''}"
                     f"{payload}{'' if kind == 'lost' else ' B payload'})"
                     for (kind, size, payload), n in sorted(census.items()))


def census_of(rounds, key):
    """The census of all ``rounds`` together, or None if a ring wrapped."""
    total = Counter()
    for res in rounds:
        if res[key]["census"] is None:
            return None
        total.update(res[key]["census"])
    return total


def per_event(census):
    """(records, mean bytes in the ring, mean payload bytes) of the samples."""
    samples = [(n, size, payload) for (kind, size, payload), n in census.items() if kind == "sample"]
    n = sum(c for c, _, _ in samples)
    if not n:
        return 0, None, None
    return n, sum(c * s for c, s, _ in samples) / n, sum(c * p for c, _, p in samples) / n


def print_round(res):
    print(f"  round {res['idx'] + 1}: {res['first']} attached first "
          f"(ours after {res['ready']['our ksnoop']:.0f} s, reference after "
          f"{res['ready']['the reference']:.0f} s; workload {res['send_s']:.1f} s)")
    for key, who in (("ours", "ours"), ("ref", "reference")):
        for name, (cnt, ns, xl) in res[key]["stats"].items():
            print(f"    {who:10} {name:22} {cnt:7d} {ns:13d} {ns / cnt if cnt else 0:8.0f} {xl:9d}")


def report_spec(label, spec, rounds, args, failed):
    print(f"\n[{label}] spec {spec!r}")
    print(f"    {'tool':10} {'program':22} {'runs':>7} {'run_time_ns':>13} {'ns/run':>8} "
          f"{'xlated B':>9}")
    sent = args.datagrams
    for res in rounds:
        print_round(res)
        o, r = res["ours"], res["ref"]
        if min(o["calls"], r["calls"]) < sent:
            failed.append(f"{label} round {res['idx'] + 1}: a tool missed calls (ours "
                          f"{o['calls']}, reference {r['calls']}, {sent} datagrams sent)")
        res["ratio"] = (o["ns"] / o["calls"]) / (r["ns"] / r["calls"]) if o["calls"] and r["calls"] else None
        print(f"    calls ours {o['calls']}, reference {r['calls']}; events shown ours "
              f"{o['shown'][0]} ({o['shown'][1]} lost), reference {r['shown'][0]} "
              f"({r['shown'][1]} lost); cost ratio ours/reference "
              + (f"{res['ratio']:.3f}" if res["ratio"] is not None else "n/a"))
    oc = sum(res["ours"]["calls"] for res in rounds)
    rc = sum(res["ref"]["calls"] for res in rounds)
    if not oc or not rc:
        failed.append(f"{label}: no calls traced")
        return
    ours_pc = sum(res["ours"]["ns"] for res in rounds) / oc
    ref_pc = sum(res["ref"]["ns"] for res in rounds) / rc
    ref_entry = sum(ns for res in rounds for k, (_, ns, _) in res["ref"]["stats"].items()
                    if k.startswith("kprobe_entry")) / rc
    ratio = ours_pc / ref_pc
    print(f"  per traced call, all rounds: ours {ours_pc:8.0f} ns   reference {ref_pc:8.0f} ns "
          f"(its entry program alone {ref_entry:.0f} ns)")
    for first in ("ours", "reference"):
        rs = [res["ratio"] for res in rounds if res["first"] == first and res["ratio"] is not None]
        if rs:
            print(f"  mean ratio when {first} attached first: {sum(rs) / len(rs):.3f} "
                  f"({', '.join(f'{x:.3f}' for x in rs)})")
    ok = ratio <= COST_TARGET
    print(f"  cost ratio ours/reference = {ratio:.3f} (target <= {COST_TARGET}): "
          f"{'OK' if ok else 'MISSED'}")
    if not ok:
        failed.append(f"{label}: cost ratio {ratio:.3f}")
    for key, who in (("ours", "ours"), ("ref", "reference")):
        calls = sum(res[key]["calls"] for res in rounds)
        b = sum(res[key]["bytes"] for res in rounds)
        kinds = ", ".join(f"{n} x {k}" for k, n in sorted(rounds[0][key]["buffers"].items()))
        print(f"  {who:9} buffers ({kinds}, read via {', '.join(rounds[0]['vias'][key])}): "
              f"{b} B written for {calls} calls = {b / calls:.1f} B/call")


def report_bytes(label, spec, rounds, failed):
    """Bytes per event and per traced call of the spec whose every call is an event."""
    print(f"\nbytes per event, {spec!r} (measured in the buffers):")
    per_call, ring, payload = {}, {}, {}
    for key, who in (("ours", "ours"), ("ref", "reference")):
        calls = sum(res[key]["calls"] for res in rounds)
        per_call[key] = sum(res[key]["bytes"] for res in rounds) / calls
        census = census_of(rounds, key)
        census_calls = sum(res[key]["census_calls"] for res in rounds)
        n, ring[key], payload[key] = per_event(census) if census is not None else (0, None, None)
        if n > census_calls:  # one event per call at most: more means a ring counted twice
            failed.append(f"{who}: {n} records for {census_calls} calls in the census")
        print(f"  {who:9} census of {len(rounds)} x {CENSUS} paced datagrams ({census_calls} calls): "
              f"{census_text(census)}")
        print(f"  {'':9} workload: {per_call[key]:.1f} B in the buffer per traced call "
              "(lost events write nothing but a small LOST record)")
    print(f"  cross-check: ksnoop/trace/wire.py predicts {our_payload(spec)} B per event")
    btf = next((res["ref_btf"] for res in rounds if res["ref_btf"]), None)
    if btf:
        size, buf = reference_fixed(btf[1])
        print(f"  cross-check: the reference's BTF (id {btf[0]}): struct trace {size} B with "
              f"buf[{buf}], so {size - buf} B + captured bytes per event (before perf padding)")
    ratios = {}
    if ring["ours"] and ring["ref"]:
        ratios["bytes in the ring per event"] = ring["ours"] / ring["ref"]
        ratios["payload per event"] = payload["ours"] / payload["ref"]
    if per_call["ref"]:
        ratios["bytes in the ring per traced call (workload)"] = per_call["ours"] / per_call["ref"]
    for what, r in ratios.items():
        print(f"  ratio ours/reference, {what} = {r:.4f}")
    ok = len(ratios) == 3 and all(r <= BYTES_TARGET for r in ratios.values())
    print(f"  target <= {BYTES_TARGET} for each: {'OK' if ok else 'MISSED'}"
          + ("" if len(ratios) == 3 else " (not all measured)"))
    if not ok:
        failed.append(f"{label}: bytes per event")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datagrams", type=int, default=4000, help="per round")
    ap.add_argument("--rounds", type=int, default=2, help="per spec; even (orders alternate)")
    ap.add_argument("--batch", type=int, default=5, help="datagrams between 20 ms pauses")
    ap.add_argument("--backend", choices=["kprobe", "fentry", "auto"], default="kprobe",
                    help="our ksnoop's --backend (default kprobe: the reference's hook)")
    args = ap.parse_args()
    if args.rounds < 2 or args.rounds % 2:
        ap.error("--rounds must be even and at least 2: each attach order gets half the rounds")
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
    results = {}
    try:
        for label, spec in SPECS:
            results[label] = [measure_round(label, spec, work, i, i % 2 == 0, args.datagrams, args.batch,
                                            args.backend)
                              for i in range(args.rounds)]
    finally:
        with open(STATS_SYSCTL, "w") as f:
            f.write(old_stats)

    failed = []
    print(f"kernel-side BPF cost per traced call, {FUNC}, ours with --backend {args.backend}: "
          f"per spec {args.rounds} rounds of "
          f"{args.datagrams} UDP datagrams to 127.0.0.1 (batches of {args.batch}), both tools "
          "tracing concurrently, started afresh each round, attach order alternating "
          "(TCG: compare ratios only)")
    for label, spec in SPECS:
        report_spec(label, spec, results[label], args, failed)
    report_bytes(SPECS[0][0], SPECS[0][1], results[SPECS[0][0]], failed)
    if failed:
        print("\nMISSED: " + "; ".join(failed))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
