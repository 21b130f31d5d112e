"""count and hist on a real kernel's functions (the VM test bed: `make guest`).

One workload (UDP datagrams to loopback from this process: ip_send_skb once
per datagram) is watched at once by ``count``, ``hist`` of the duration, a
``hist`` of skb->len, ``count --by comm`` and, for the cost comparison,
``trace`` of one scalar, each with the default backend (fentry/fexit where
the kernel allows them) and with ``--backend kprobe``; every tracer is
filtered to this process, so the exact answers are known.  With
kernel.bpf_stats_enabled=1 the kernel times every program: count's
kernel-side cost per call must not exceed the trace's, which sends one
scalar event per call, on either backend.
"""

import json
import os
import tempfile
import time

import bpfprogs
import pytest
from guestbed import skip_reason
from workload import UDP_PAYLOAD, ksnoop, send_udp, wait_ready

DATAGRAMS = 2000
SKB_LEN = UDP_PAYLOAD + 8 + 20  # UDP and IP headers
STATS = "/proc/sys/kernel/bpf_stats_enabled"
# the backends this run covers (tests/vm/guest-suite.sh picks them per kernel to keep
# the CI within its time budget): "auto" is the default (fentry/fexit where the kernel
# allows them), "kprobe" is --backend kprobe; each has its own count, hist and trace
BACKENDS = tuple(os.environ.get("KSNOOP_GUEST_BACKENDS", "auto,kprobe").split(","))
SUFFIX = {"auto": "", "kprobe": "_kp"}
PAIRS = [(f"count{SUFFIX[b]}", f"trace{SUFFIX[b]}") for b in BACKENDS]
COSTS = tuple(name for pair in PAIRS for name in pair)  # programs timed by the kernel


@pytest.fixture(scope="module")
def run():
    why = skip_reason()
    if why:
        pytest.skip(why)
    work = tempfile.mkdtemp(prefix="ksnoop-agg-guest-")
    me = str(os.getpid())
    j = ("-o", "json", "-p", me)
    kp = ("--backend", "kprobe")
    per_backend = []
    for b in BACKENDS:
        how = {"auto": (), "kprobe": kp}[b]
        per_backend += [
            ksnoop(f"count{SUFFIX[b]}", work, "count", *j, *how, "ip_send_skb"),
            ksnoop(f"duration{SUFFIX[b]}", work, "hist", *j, *how, "ip_send_skb"),
            ksnoop(f"trace{SUFFIX[b]}", work, "trace", *j, *how, "ip_send_skb(skb->len)"),
        ]
    tracers = {t.name: t for t in per_backend + [
        ksnoop("len", work, "hist", *j, *kp, "--of", "skb->len", "ip_send_skb"),
        ksnoop("comm", work, "count", *j, "--by", "comm", "ip_send_skb(skb->len == 84)"),
    ]}
    with open(STATS) as f:
        was = f.read().strip()
    result = {"tracers": tracers}
    try:
        for t in tracers.values():
            t.start()
        wait_ready(tracers.values())
        with open(STATS, "w") as f:
            f.write("1")
        ids = {name: bpfprogs.prog_ids(tracers[name].proc.pid) for name in COSTS}
        before = {name: bpfprogs.run_stats(i) for name, i in ids.items()}
        send_udp(DATAGRAMS)
        time.sleep(2)
        after = {name: bpfprogs.run_stats(i) for name, i in ids.items()}
        result["cost"] = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
                          for name in ids}
        result["types"] = {name: {p["type"] for p in bpfprogs.programs(i)} for name, i in ids.items()}
    finally:
        with open(STATS, "w") as f:
            f.write(was)
        for t in tracers.values():
            t.stop()
    return result


def report(run, name):
    t = run["tracers"][name]
    assert t.returncode == 0 and "Traceback" not in t.stderr, (name, t.stderr[-2000:])
    (rep,) = [json.loads(line) for line in t.stdout.splitlines()]
    return rep, t.stderr


@pytest.mark.parametrize("name", [c for c, _ in PAIRS])
def test_count_is_exact(run, name):
    rep, err = report(run, name)
    assert rep["counts"] == [{"function": "ip_send_skb", "count": DATAGRAMS}]
    assert f"ksnoop: {DATAGRAMS} calls counted" in err


@pytest.mark.parametrize("name", [c.replace("count", "duration") for c, _ in PAIRS])
def test_hist_of_duration_sums_to_count(run, name):
    counted = report(run, name.replace("duration", "count"))[0]["total"]
    rep, err = report(run, name)
    (h,) = rep["histograms"]
    assert rep["of"] == "duration" and rep["unit"] == "ns"
    assert h["function"] == "ip_send_skb" and h["count"] == counted == DATAGRAMS
    assert h["unreadable"] == 0 and h["buckets"] and h["buckets"][0]["low"] >= 1  # no call takes 0 ns
    assert sum(b["count"] for b in h["buckets"]) == counted
    assert "missed returns" not in err or ", 0 missed returns" in err, err


def test_hist_of_a_member(run):
    rep, _ = report(run, "len")
    (h,) = rep["histograms"]
    assert h["buckets"] == [{"low": 64, "high": 127, "count": DATAGRAMS}]  # every skb->len is 84
    assert SKB_LEN == 84


def test_count_by_comm_with_a_predicate(run):
    rep, _ = report(run, "comm")
    comm = open("/proc/self/comm").read().strip()
    assert rep["counts"] == [{"function": "ip_send_skb", "value": comm, "count": DATAGRAMS}]


@pytest.mark.parametrize("count,trace", PAIRS)
def test_count_costs_no_more_than_a_traced_scalar(run, count, trace):
    """Kernel-side time per run of each program (bpf_stats), on the same calls."""
    (c_ns, c_runs), (t_ns, t_runs) = run["cost"][count], run["cost"][trace]
    assert c_runs >= DATAGRAMS and t_runs >= DATAGRAMS, run["cost"]
    per_count, per_trace = c_ns / c_runs, t_ns / t_runs
    print(f"\nkernel-side ns per call ({count}, {trace}): count {per_count:.0f}, trace of one scalar "
          f"{per_trace:.0f}, ratio {per_count / per_trace:.2f} (runs: {c_runs}, {t_runs})")
    assert per_count <= per_trace, run["cost"]
    events = [json.loads(line) for line in run["tracers"][trace].stdout.splitlines()]
    assert len(events) == DATAGRAMS and {e["values"]["skb->len"] for e in events} == {SKB_LEN}


def test_backends_as_asked(run):
    """The default is fentry/fexit where this kernel lets ksnoop load them; --backend kprobe is kprobes."""
    from ksnoop.kernel.features import tracing_programs
    from ksnoop.kernel.files import Kernel

    fentry, _ = tracing_programs(Kernel())
    want = {"count": {"tracing"} if fentry else {"kprobe"}, "count_kp": {"kprobe"}}
    for count, trace in PAIRS:
        assert run["types"][count] == run["types"][trace] == want[count], (count, run["types"])
