"""The questions users ask (issue 9), on real traffic in the VM test bed:
conditions, strings, task and cgroup filters, latency, stacks, times and
errno names.

One workload drives five tracers at once (each BCC compile costs tens of
seconds under TCG, so there are as few tracers as the options allow, each
tracing several specs):

- ``conds`` (-K, JSON): a compound condition keeping the middle of three
  datagram sizes, an ``||`` keeping the other two, a bit test on
  how->flags (O_CREAT) of openat, and ip_send_skb with its return
  (durations, stacks, wall times);
- ``glob`` (JSON): a glob on getname's user string (a tracer of its own: a
  glob's loop is the costliest program for the verifier);
- ``comm`` (-c, line): do_sys_openat2(filename, return == -ENOENT) for one
  named process, which opens a missing file as this process does too;
- ``cgroup`` (--cgroup, JSON): udp_sendmsg of a process started in a fresh
  cgroup, while this process sends too;
- ``slow`` (--min-latency, JSON): clock_nanosleep through a wildcard (a
  kprobe-multi link where the kernel has them), slept 1 ms five times and
  600 ms once by one process: only the slow call is shown.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import pytest
from guestbed import skip_reason
from workload import bpf_stats, ksnoop, wait_ready

MISSING = "/nonexistent/ksnoop-questions-file"
SIZES = (50, 200, 400)  # udp_sendmsg's len: only 200 is > 100 && < 300
PORT = 9998
COMM = "ksnpcomm"
CGROUP_ROOT = "/sys/fs/cgroup"
SLOW_NS = 150_000_000  # --min-latency 150ms: 1 ms sleeps are dropped, a 600 ms one kept
HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = tuple(os.environ.get("KSNOOP_GUEST_BACKENDS", "auto,kprobe").split(","))




def _send(sizes, port=PORT):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in sizes:
            s.sendto(b"q" * n, ("127.0.0.1", port))
    finally:
        s.close()


class Run(dict):
    """The tracers by name, plus the workload's facts."""


@pytest.fixture(scope="module", params=BACKENDS)
def run(request):
    why = skip_reason()
    if why:
        pytest.skip(why)
    if not os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        subprocess.run(["mount", "-t", "cgroup2", "none", CGROUP_ROOT], check=False)
    if not os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        pytest.fail("no cgroup v2 hierarchy at /sys/fs/cgroup")
    os.environ["KSNOOP_BACKEND"] = request.param
    work = tempfile.mkdtemp(prefix="ksnoop-questions-")
    cgroup = tempfile.mkdtemp(prefix="ksnoop-q-", dir=CGROUP_ROOT)
    comm_exe = os.path.join(work, COMM)
    shutil.copy("/bin/cat", comm_exe)
    created = os.path.join(work, "created-file")
    # the globbed file in a directory of its own: the pattern is that directory
    # then * (the tracers' output files are elsewhere; a * followed by many
    # literal characters is too complex for the verifier, as
    # tests/host/test_dry_run.py shows)
    glob_dir = tempfile.mkdtemp(prefix="ksnoop-g-")
    globbed = os.path.join(glob_dir, "hit")
    j = ("-o", "json")
    tracers = Run((t.name, t) for t in [
        ksnoop("conds", work, *j, "-K",
               "udp_sendmsg(len > 100 && len < 300)",
               "inet_sendmsg(size == 50 || size == 400)",
               "ip_send_skb(skb->len, return)",
               "do_sys_openat2(filename, how->flags & 0x40)"),
        ksnoop("glob", work, *j, f'getname(filename ~ "{glob_dir}/*")'),
        ksnoop("comm", work, "-o", "line", "--time", "wall", "-c", COMM,
               "do_sys_openat2(filename, return == -ENOENT)"),
        ksnoop("cgroup", work, *j, "--cgroup", cgroup, "udp_sendmsg(len)"),
        ksnoop("slow", work, *j, "--min-latency", "150ms", "__x64_sys_clock_nanosle*(return)"),
    ])
    with bpf_stats():
        for t in tracers.values():
            t.start()
        try:
            # the glob's tracer may fail alone (its verdict is its own test's)
            wait_ready([t for t in tracers.values() if t.name != "glob"])
            glob = tracers["glob"]
            while glob.proc.poll() is None and not glob.ready():
                time.sleep(0.5)
            tracers.t0 = time.time()
            _send(SIZES)
            # opens: one with O_CREAT, one without, a globbed name, the missing file
            with open(created, "w"):
                pass
            with open("/etc/hostname", "rb"):
                pass
            with open(globbed, "w"):
                pass
            try:
                open(MISSING, "rb")
            except OSError:
                pass
            named = subprocess.run([comm_exe, MISSING], capture_output=True)
            tracers.comm_pid_rc = named.returncode
            # a process in the fresh cgroup sends one datagram of 77 bytes
            child = subprocess.Popen(
                [sys.executable, "-c", "import sys, socket\n"
                 "sys.stdin.readline()\n"
                 f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'c' * 77, "
                 f"('127.0.0.1', {PORT}))"], stdin=subprocess.PIPE, text=True)
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(child.pid))
            child.communicate("\n", timeout=300)
            tracers.cgroup_pid = child.pid
            _send([77])  # the same size, from outside the cgroup
            # five quick sleeps and one slow one, by one process
            sleeper = subprocess.run(
                [sys.executable, "-c", "import os, time\n"
                 "for _ in range(5): time.sleep(0.001)\n"
                 "time.sleep(0.6)\n"
                 "print(os.getpid())"], capture_output=True, text=True, check=True)
            tracers.sleeper_pid = int(sleeper.stdout)
            time.sleep(3)
            tracers.t1 = time.time()
            tracers.programs = tracers["slow"].bpf_programs()
        finally:
            for t in tracers.values():
                t.stop()
            try:
                os.rmdir(cgroup)
            except OSError:
                pass
    tracers.created, tracers.globbed = created, globbed
    return tracers


def events(tracer, func=None, pid=None):
    out = []
    for line in tracer.stdout.splitlines():
        ev = json.loads(line)
        if (func is None or ev["function"] == func) and (pid is None or ev["pid"] == pid):
            out.append(ev)
    return out


def test_tracers_exit_cleanly(run):
    for name, t in run.items():
        if name == "glob":
            continue  # test_glob_on_a_user_string
        assert t.returncode == 0, (name, t.stderr[-3000:])
        assert "Traceback" not in t.stderr, name
        assert re.search(r"ksnoop: \d+ events, 0 lost", t.stderr), (name, t.stderr)


def test_compound_condition_keeps_the_middle_size(run):
    evs = events(run["conds"], "udp_sendmsg", os.getpid())
    assert [e["values"]["len"] for e in evs] == [200]


def test_or_keeps_the_other_sizes(run):
    evs = events(run["conds"], "inet_sendmsg", os.getpid())
    assert [e["values"]["size"] for e in evs] == [50, 400]


def test_bit_test_on_open_flags(run):
    names = [e["values"]["filename"] for e in events(run["conds"], "do_sys_openat2", os.getpid())]
    assert run.created in names and run.globbed in names  # both opened with O_CREAT
    assert "/etc/hostname" not in names and MISSING not in names
    assert all(e["values"]["how->flags"] & 0x40
               for e in events(run["conds"], "do_sys_openat2", os.getpid()))


def test_glob_on_a_user_string(run):
    t = run["glob"]
    assert t.returncode == 0 and "ksnoop: tracing" in t.stderr, t.stderr[-3000:]
    names = [e["values"]["filename"] for e in events(run["glob"], "getname", os.getpid())]
    assert names and set(names) == {run.globbed}


def test_return_events_carry_durations_and_stacks(run):
    evs = events(run["conds"], "ip_send_skb", os.getpid())
    rets = [e for e in evs if e["event"] == "return"]
    assert len(rets) == len(SIZES) + 1  # and the datagram sent beside the cgroup's
    assert all(isinstance(e["duration_ns"], int) and 0 < e["duration_ns"] < 10**10 for e in rets)
    for e in evs:
        frames = e["kstack"]
        assert frames and all(isinstance(f, str) for f in frames), e
        assert "notes" not in e or "kstack" not in e["notes"]
        if e["event"] == "entry":  # the caller of ip_send_skb is on the stack
            assert any(f.startswith(("udp_send_skb+0x", "udp_sendmsg+0x")) for f in frames), frames


def test_json_wall_time(run):
    for e in events(run["conds"]):
        wall = datetime.strptime(e["wall"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert run.t0 - 5 <= wall.timestamp() <= run.t1 + 5, (e["wall"], run.t0, run.t1)
        assert isinstance(e["time"], float)


def test_comm_filter_and_enoent_by_name(run):
    assert run.comm_pid_rc != 0  # cat could not open the missing file
    lines = run["comm"].stdout.splitlines()
    assert lines and all(line.startswith(COMM + " ") for line in lines), lines
    (line,) = [line for line in lines if MISSING in line]  # this process's open is not shown
    assert f'do_sys_openat2(filename = "{MISSING}") => ' in line, line
    assert re.search(r"return = \((long int|int)\)-2 \(-ENOENT\) \(\d+\.\d{3}us\)$", line), line
    # --time wall: the time column is UTC time of day
    assert re.match(rf"{COMM} +\d+ +\d+ +\d\d:\d\d:\d\d\.\d{{6}} do_sys_openat2\(", line), line


def test_cgroup_filter_keeps_only_the_process_in_the_cgroup(run):
    evs = events(run["cgroup"])
    assert [(e["pid"], e["values"]["len"]) for e in evs] == [(run.cgroup_pid, 77)]


def test_min_latency_keeps_only_the_slow_call(run):
    evs = events(run["slow"], pid=run.sleeper_pid)
    assert len(evs) == 1, evs
    (e,) = evs
    assert e["duration_ns"] >= SLOW_NS and e["values"]["return"] == 0
    # every event shown lasted long enough (other processes' long sleeps too)
    assert all(ev["duration_ns"] >= SLOW_NS for ev in events(run["slow"]))
    # the fast calls were dropped in BPF: the programs ran for them
    runs = sum(p.get("run_cnt", 0) for p in run.programs)
    assert runs >= 2 * 6, run.programs
