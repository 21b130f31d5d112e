"""Real kprobe traces on a real kernel (the VM test bed: `make guest`).

One workload run drives every tracer at once (TCG makes each BCC compile
cost tens of seconds, so they compile in parallel and share one workload):
UDP datagrams to loopback (ip_send_skb, udp_sendmsg), opens of an existing
and a missing file (do_sys_openat2, getname: a user pointer), and a dummy
device's stats (a module function).  Then each test checks one tracer's
output, and the reference ksnoop's, on the same workload.
"""

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from guestbed import skip_reason
from workload import (
    KSNOOP,
    UDP_PAYLOAD,
    bpf_stats,
    dummy_device,
    ksnoop,
    ksnoop_piped,
    open_files,
    reference,
    send_udp,
    wait_ready,
)

DATAGRAMS = 5
MISSING = "/nonexistent/ksnoop-test-file"




class Run(dict):
    """The tracers by name, plus facts of the workload taken while it ran."""


# tracers whose programs' run counts are read while they are still attached
WATCHED = ("reject", "stash_none")


# every test runs once per backend, on its own workload (tests/guest/test_backends_guest.py
# checks which backend each got)
# (KSNOOP_GUEST_BACKENDS narrows it: tests/vm/guest-suite.sh keeps the CI in budget)
BACKENDS = tuple(os.environ.get("KSNOOP_GUEST_BACKENDS", "auto,kprobe").split(","))


@pytest.fixture(scope="module", params=BACKENDS)
def run(request):
    why = skip_reason()
    if why:
        pytest.skip(why)
    os.environ["KSNOOP_BACKEND"] = request.param  # workload.ksnoop() passes it on
    work = tempfile.mkdtemp(prefix="ksnoop-guest-")
    poke_dummy = dummy_device()
    j = "-o", "json"
    tracers = Run((t.name, t) for t in [
        ksnoop("default", work, *j, "ip_send_skb", "getname(filename)",
               "dummy_get_stats64(dev->name, dev->ifindex)", "udp_sendmsg(len)"),
        ksnoop("skb", work, *j, "ip_send_skb(skb)", "do_sys_openat2(filename, return < 0)"),
        ksnoop("sk", work, *j, "ip_send_skb(skb->sk)"),
        ksnoop("len", work, *j, "ip_send_skb(skb->len, return)"),
        ksnoop("pred_text", work, "ip_send_skb(skb->len == 84, skb)"),
        ksnoop("stash_none", work, *j, "ip_send_skb(skb, return != 0)"),
        ksnoop("stash_hit", work, *j, "ip_send_skb(skb->len, skb->sk->__sk_common.skc_family, return == 0)"),
        ksnoop("reject", work, *j, "ip_send_skb(skb->len == 1)"),
        reference("ref_len", work, "trace", "ip_send_skb(skb->len, return)"),
        reference("ref_skb", work, "trace", "ip_send_skb(skb)"),
        ksnoop("pid", work, *j, "-p", str(os.getpid()), "udp_sendmsg(len)",
               stop_signal=signal.SIGTERM),
        ksnoop_piped("head", work, "head -n 2", "-o", "line", "ip_send_skb(skb->len)"),
    ])
    with bpf_stats():
        for t in tracers.values():
            t.start()
        try:
            wait_ready(tracers.values())
            # one socket per call: the local ports identify the sockets
            tracers.ports = [send_udp(DATAGRAMS)]
            # `head -n 2` has its lines: ksnoop must end by itself, without further
            # traffic (it watches its pipe); what it saw is what "sk" saw until then
            try:
                tracers["head"].proc.wait(60)
                tracers.head_gone = time.clock_gettime(time.CLOCK_MONOTONIC)
            except subprocess.TimeoutExpired:
                tracers.head_gone = None
            tracers.ports.append(send_udp(2, payload=UDP_PAYLOAD + 100))  # skb->len 184: rejected by == 84
            # another process's datagram: not seen by the -p tracer
            subprocess.run([sys.executable, "-c", "import workload; workload.send_udp(1)"],
                           cwd=os.path.dirname(os.path.abspath(__file__)), check=True)
            open_files(["/etc/hostname", MISSING])
            for _ in range(3):
                poke_dummy()
            time.sleep(3)
            tracers.programs = {name: tracers[name].bpf_programs() for name in WATCHED}
        finally:
            for t in tracers.values():
                t.stop()
    return tracers


def events(tracer, func=None):
    out = []
    for line in tracer.stdout.splitlines():
        ev = json.loads(line)
        if func is None or ev["function"] == func:
            out.append(ev)
    return out


def mine(evs):
    """Events caused by the test's own process (the workload runs in pytest)."""
    return [e for e in evs if e["pid"] == os.getpid()]


def test_all_tracers_exit_cleanly_with_summary(run):
    for name, t in run.items():
        if name == "head":
            continue
        assert t.returncode == 0, (name, t.stderr[-2000:])
        assert "Traceback" not in t.stderr, name
        if not name.startswith("ref"):
            assert re.search(r"ksnoop: \d+ events, 0 lost", t.stderr), (name, t.stderr)


def test_default_trace_shows_all_args_then_return(run):
    evs = mine(events(run["default"], "ip_send_skb"))
    entries = [e for e in evs if e["event"] == "entry"]
    returns = [e for e in evs if e["event"] == "return"]
    assert len(entries) == len(returns) == DATAGRAMS + 2
    assert set(entries[0]["values"]) == {"net", "skb"}
    assert entries[0]["values"]["skb"]["len"] == 84
    assert all(e["values"]["return"] == 0 for e in returns)
    # struct net is larger than the 2048-byte default capture: truncation is said
    assert re.fullmatch(r"2048 bytes of \d+", entries[0]["notes"]["net"])
    assert "skb" not in entries[0].get("notes", {})


def test_two_functions_at_once(run):
    evs = mine(events(run["default"]))
    sizes = [e["values"]["len"] for e in evs if e["function"] == "udp_sendmsg" and e["event"] == "entry"]
    assert sizes == [UDP_PAYLOAD] * DATAGRAMS + [UDP_PAYLOAD + 100] * 2


def test_module_function(run):
    evs = [e for e in events(run["default"], "dummy_get_stats64") if e["event"] == "entry"]
    assert len(evs) >= 3
    assert evs[0]["values"]["dev->name"] == "ksnoop0"
    with open("/sys/class/net/ksnoop0/ifindex") as f:
        assert {e["values"]["dev->ifindex"] for e in evs} == {int(f.read())}


def test_user_string_argument_shows_the_opened_names(run):
    """getname(filename) gets a user-space char *: read as a user string, it
    is the very path the workload opened."""
    evs = mine(events(run["default"], "getname"))
    assert evs, run["default"].stderr
    names = [e["values"]["filename"] for e in evs]
    assert "/etc/hostname" in names and MISSING in names, names
    assert not any(e.get("notes", {}).get("filename") for e in evs if e["values"]["filename"]
                   in ("/etc/hostname", MISSING))


def test_skb_shown_as_struct(run):
    evs = mine(events(run["skb"], "ip_send_skb"))
    assert len(evs) == DATAGRAMS + 2
    assert [e["values"]["skb"]["len"] for e in evs] == [84] * DATAGRAMS + [184] * 2


def test_member_pointer(run):
    evs = mine(events(run["sk"]))
    assert len(evs) == DATAGRAMS + 2
    # the sending sockets' own facts: AF_INET, bound to the local ports the
    # workload's getsockname() reported (5 datagrams from one, 2 from another)
    common = [e["values"]["skb->sk"]["__sk_common"] for e in evs]
    assert {c["skc_family"] for c in common} == {socket.AF_INET}
    assert [c["skc_num"] for c in common] == \
        [run.ports[0]] * DATAGRAMS + [run.ports[1]] * 2


def test_member_scalar_and_return(run):
    evs = mine(events(run["len"]))
    assert [e["values"].get("skb->len") for e in evs if e["event"] == "entry"] == \
        [84] * DATAGRAMS + [184] * 2
    assert [e["values"]["return"] for e in evs if e["event"] == "return"] == [0] * (DATAGRAMS + 2)


def test_predicate_then_struct_in_text(run):
    text = run["pred_text"].stdout
    assert text.startswith("TASK ")
    calls = re.findall(r"^\S+ +\d+ +\d+ +\d+\.\d{6} ip_send_skb\($", text, re.M)
    assert len(calls) >= DATAGRAMS
    assert "skb->len = (unsigned int)84," in text
    assert "skb = *(struct sk_buff){" in text
    assert "(unsigned int)184" not in text


def _run_counts(run, name):
    """{program name: run_cnt} of tracer ``name``'s programs, read while attached."""
    progs = run.programs[name]
    return {p["name"]: p.get("run_cnt", 0) for p in progs}


def _ran(counts, full_name):
    """run_cnt of the program called ``full_name`` (names may be cut to 15 chars)."""
    hits = [n for n in counts if n and full_name.startswith(n) and len(n) >= min(15, len(full_name))]
    assert len(hits) == 1, (full_name, counts)
    return counts[hits[0]]


# every ip_send_skb of the workload: ours (DATAGRAMS + 2) and the other process's 1
ALL_SENDS = DATAGRAMS + 3


def test_stash_return_predicate_false_emits_nothing(run):
    """Silence must mean "rejected", not "never ran": both programs ran on
    every send (the kernel's own run counts) and sent nothing."""
    assert run["stash_none"].stdout == ""
    assert re.search(r"ksnoop: 0 events, 0 lost", run["stash_none"].stderr)
    counts = _run_counts(run, "stash_none")
    assert len(counts) == 2, counts
    assert _ran(counts, "ksnoop_entry_0") >= ALL_SENDS
    assert _ran(counts, "ksnoop_return_0") >= ALL_SENDS


def test_stash_combines_entry_and_return(run):
    evs = mine(events(run["stash_hit"]))
    assert len(evs) == DATAGRAMS + 2
    assert all(e["event"] == "call" for e in evs)
    assert [e["values"]["skb->len"] for e in evs] == [84] * DATAGRAMS + [184] * 2
    assert all(e["values"]["return"] == 0 for e in evs)
    assert all(e["values"]["skb->sk->__sk_common.skc_family"] == 2 for e in evs)  # AF_INET


def test_rejecting_predicate(run):
    """No output, and the entry program (the only one: no return values) did
    run for every send: the predicate rejected them, the probe was there."""
    assert run["reject"].stdout == ""
    assert re.search(r"ksnoop: 0 events, 0 lost", run["reject"].stderr)
    counts = _run_counts(run, "reject")
    assert len(counts) == 1, counts
    assert _ran(counts, "ksnoop_entry_0") >= ALL_SENDS


def test_signed_return_predicate_catches_enoent(run):
    """Only failed opens: the missing file, with ENOENT; /etc/hostname opened fine."""
    evs = mine(events(run["skb"], "do_sys_openat2"))
    assert evs and all(e["values"]["return"] < 0 for e in evs)
    failed = {e["values"]["filename"]: e["values"]["return"] for e in evs}
    assert failed.get(MISSING) == -errno.ENOENT, failed
    assert "/etc/hostname" not in failed


# what each backend's run saw, by test: on a kernel where the reference is
# blind, each backend is checked against the other's run (same workload)
SEEN = {}


def _reference_blind():
    """The reference ksnoop finds a function by the kprobe's address minus the
    int3 (its KSNOOP_IP_FIX): on a kernel built with IBT the probe sits after
    an endbr64, that is no function's address, and it traces nothing."""
    try:
        with open(f"/boot/config-{os.uname().release}") as f:
            return "CONFIG_X86_KERNEL_IBT=y" in f.read().split()
    except OSError:
        return False


def _same_as_other_backend(test, values):
    """Record this backend's values; equal to every other backend's so far."""
    seen = SEEN.setdefault(test, {})
    seen[os.environ["KSNOOP_BACKEND"]] = values
    for other, theirs in seen.items():
        assert values == theirs, (os.environ["KSNOOP_BACKEND"], other)


def test_same_events_and_values_as_reference(run):
    ref = run["ref_len"].stdout
    ref_lens = [int(x) for x in re.findall(r"skb->len = \s*\(unsigned int\)(\d+)", ref)]
    ref_rets = [int(x) for x in re.findall(r"return = \s*\(int\)(-?\d+)", ref)]
    ours = events(run["len"])
    our_lens = [e["values"]["skb->len"] for e in ours if e["event"] == "entry"]
    our_rets = [e["values"]["return"] for e in ours if e["event"] == "return"]
    _same_as_other_backend("len", (our_lens, our_rets))
    if not ref_lens and _reference_blind():
        # every send of the workload, in order: ours, then the other process's
        sends = [UDP_PAYLOAD + 28] * DATAGRAMS + [UDP_PAYLOAD + 128] * 2 + [UDP_PAYLOAD + 28]
        assert (our_lens, our_rets) == (sends, [0] * len(sends))
        return
    assert len(ref_lens) >= DATAGRAMS + 2, ref[-2000:]
    assert our_lens == ref_lens
    assert our_rets == ref_rets


def test_pid_filter_and_sigterm(run):
    evs = events(run["pid"])
    assert {e["pid"] for e in evs} == {os.getpid()}
    assert len([e for e in evs if e["event"] == "entry"]) == DATAGRAMS + 2


def test_closed_pipe_stops_cleanly(run):
    t = run["head"]
    assert t.returncode == 0
    assert len(t.stdout.splitlines()) == 2
    assert "ip_send_skb(skb->len = (unsigned int)84)" in t.stdout
    assert "Traceback" not in t.stderr
    assert run.head_gone is not None, "ksnoop | head -n 2 did not end within 60 s of head"
    # output goes to a pipe in batches (one write per poll): head took its two lines
    # from what was written; what was read but not written is counted lost (every
    # ip_send_skb call until ksnoop ended, as the "sk" tracer saw them, is either)
    m = re.search(r"ksnoop: (\d+) events, (\d+) lost", t.stderr)
    assert m and int(m.group(1)) >= 2, t.stderr
    before_end = [e for e in events(run["sk"]) if e["time"] < run.head_gone]
    assert int(m.group(1)) + int(m.group(2)) == len(before_end) >= DATAGRAMS, t.stderr


def test_everything_detached_afterwards(run):
    with open("/sys/kernel/tracing/kprobe_events") as f:
        assert "bcc" not in f.read()
    progs = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True).stdout
    assert "ksnoop_" not in progs


def test_info_on_module_function(run):
    res = subprocess.run(KSNOOP + ["info", "dummy_get_stats64"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ("void dummy_get_stats64(struct net_device *dev, "
                          "struct rtnl_link_stats64 *stats);\n")


def _reference_events(text, func):
    """[(pid, {member: int})] from the reference's btf_dump output: the integer
    members it printed for each event (pointers and nested names skipped)."""
    out = []
    for block in re.split(r"\n(?=\s*\d+\s+\d+\s+\d+ \w+\()", text):
        head = re.match(r"\s*\d+\s+\d+\s+(\d+) (\w+)\(", block)
        if not head or head.group(2) != func:
            continue
        members = {}
        for name, value in re.findall(r"^\s*\.(\w+) = \([^()]*\)(-?(?:0x[0-9a-f]+|\d+)),?$",
                                      block, re.M):
            members.setdefault(name, int(value, 0))  # bitfields print in hex
        out.append((int(head.group(1)), members))
    return out


def test_same_struct_values_as_reference(run):
    """`ip_send_skb(skb)` by both tools: every integer member of struct sk_buff
    that the reference prints has the same value in our capture."""
    ref = [m for pid, m in _reference_events(run["ref_skb"].stdout, "ip_send_skb")
           if pid == os.getpid()]
    ours = [e["values"]["skb"] for e in mine(events(run["skb"], "ip_send_skb"))]
    stable = [{k: skb[k] for k in ("len", "tail", "end", "truesize")} for skb in ours]
    _same_as_other_backend("skb", stable)  # the same datagrams make the same skbs
    if not ref and _reference_blind():
        assert [m["len"] for m in stable] == [UDP_PAYLOAD + 28] * DATAGRAMS + [UDP_PAYLOAD + 128] * 2
        return
    assert len(ref) == len(ours) == DATAGRAMS + 2, run["ref_skb"].stdout[-3000:]
    compared = 0
    for theirs, skb in zip(sorted(ref, key=lambda m: m.get("len", 0)),
                           sorted(ours, key=lambda m: m["len"])):
        common = [k for k, v in theirs.items() if isinstance(skb.get(k), int)]
        assert {"len", "tail", "end", "truesize"} <= set(common), (sorted(theirs), sorted(skb))
        assert {k: skb[k] for k in common} == {k: theirs[k] for k in common}
        compared += len(common)
    assert compared >= 4 * (DATAGRAMS + 2)


def test_programs_are_of_the_chosen_backend(run):
    """--backend auto: fentry/fexit (tracing programs) where the kernel allows
    them; --backend kprobe: kprobe programs.  Same tests, same values either way."""
    from ksnoop.kernel.features import tracing_programs
    from ksnoop.kernel.files import Kernel

    fentry = os.environ["KSNOOP_BACKEND"] == "auto" and tracing_programs(Kernel())[0]
    for name in WATCHED:
        assert {p["type"] for p in run.programs[name]} == {"tracing" if fentry else "kprobe"}, name


def test_auto_never_fell_back_to_kprobes(run):
    """A fentry program the kernel refuses makes auto trace that function with
    kprobes, with a note: no generated program may be refused."""
    for name, t in run.items():
        assert "using kprobes for it" not in t.stderr, (name, t.stderr[-1000:])
