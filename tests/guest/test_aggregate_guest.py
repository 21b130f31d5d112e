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
import re
import subprocess
import tempfile
import time

import pytest
from workload import UDP_PAYLOAD, ksnoop, send_udp, wait_ready

DATAGRAMS = 2000
SKB_LEN = UDP_PAYLOAD + 8 + 20  # UDP and IP headers
STATS = "/proc/sys/kernel/bpf_stats_enabled"
COSTS = ("count", "trace", "count_kp", "trace_kp")  # programs timed by the kernel


def _why_not():
    """Skip outside the VM test bed (no root, or no kprobes as on the host);
    inside it (KSNOOP_VM=1) the test bed must attach kprobes, or fail."""
    if os.geteuid() != 0:
        return "needs root"
    from ksnoop.kernel.features import kprobes_available

    ok, why = kprobes_available()
    if ok:
        return None
    if os.environ.get("KSNOOP_VM") == "1":
        pytest.fail(f"the VM test bed cannot attach kprobes: {why}", pytrace=False)
    return f"cannot attach kprobes here (the guest tier runs in the VM test bed: make guest): {why}"


def _prog_ids(pid):
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                m = re.search(r"^prog_id:\s*(\d+)", f.read(), re.M)
        except OSError:
            continue
        if m:
            ids.add(int(m.group(1)))
    return ids


def _progs(ids):
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True)
    progs = [p for p in json.loads(out.stdout) if p["id"] in ids]
    assert len(progs) == len(ids), (ids, out.stdout[:2000])
    return progs


def _run_stats(ids):
    """(run_time_ns, run_cnt) summed over programs ``ids``."""
    progs = _progs(ids)
    return sum(p.get("run_time_ns", 0) for p in progs), sum(p.get("run_cnt", 0) for p in progs)


@pytest.fixture(scope="module")
def run():
    why = _why_not()
    if why:
        pytest.skip(why)
    work = tempfile.mkdtemp(prefix="ksnoop-agg-guest-")
    me = str(os.getpid())
    j = ("-o", "json", "-p", me)
    kp = ("--backend", "kprobe")
    tracers = {t.name: t for t in [
        ksnoop("count", work, "count", *j, "ip_send_skb"),
        ksnoop("count_kp", work, "count", *j, *kp, "ip_send_skb"),
        ksnoop("duration", work, "hist", *j, "ip_send_skb"),
        ksnoop("duration_kp", work, "hist", *j, *kp, "ip_send_skb"),
        ksnoop("len", work, "hist", *j, *kp, "--of", "skb->len", "ip_send_skb"),
        ksnoop("comm", work, "count", *j, "--by", "comm", "ip_send_skb(skb->len == 84)"),
        ksnoop("trace", work, "trace", *j, "ip_send_skb(skb->len)"),
        ksnoop("trace_kp", work, "trace", *j, *kp, "ip_send_skb(skb->len)"),
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
        ids = {name: _prog_ids(tracers[name].proc.pid) for name in COSTS}
        before = {name: _run_stats(i) for name, i in ids.items()}
        send_udp(DATAGRAMS)
        time.sleep(2)
        after = {name: _run_stats(i) for name, i in ids.items()}
        result["cost"] = {name: (after[name][0] - before[name][0], after[name][1] - before[name][1])
                          for name in ids}
        result["types"] = {name: {p["type"] for p in _progs(i)} for name, i in ids.items()}
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


@pytest.mark.parametrize("name", ["count", "count_kp"])
def test_count_is_exact(run, name):
    rep, err = report(run, name)
    assert rep["counts"] == [{"function": "ip_send_skb", "count": DATAGRAMS}]
    assert f"ksnoop: {DATAGRAMS} calls counted" in err


@pytest.mark.parametrize("name", ["duration", "duration_kp"])
def test_hist_of_duration_sums_to_count(run, name):
    counted = report(run, "count")[0]["total"]
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


@pytest.mark.parametrize("count,trace", [("count", "trace"), ("count_kp", "trace_kp")])
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
    assert run["types"]["count_kp"] == run["types"]["trace_kp"] == {"kprobe"}
    assert run["types"]["count"] == run["types"]["trace"] == ({"tracing"} if fentry else {"kprobe"})
