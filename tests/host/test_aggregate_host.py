"""count and hist end to end on the host kernel, through real tracepoints.

The workload (tests/workload/syscall_loop.c) calls getppid() (syscall 110 on
x86_64) as fast as one core goes, after every ksnoop is attached; each ksnoop
is filtered to the workload's pid, so the exact answers are known: calls
made, the workload's name and pid, getppid's return value (the test's pid).
Also: interval reports, -n, the map-full overflow, string keys and string
conditions (tp:sched_process_exec), every program shape through the real
verifier, stops by signal and by a closed pipe.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import bpfprogs
import pytest
from hostenv import syscall_loop

pytestmark = pytest.mark.host
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GETPPID = 110
SPEC = f"tp:sys_enter(id == {GETPPID})"
CALLS = 2_000_000


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    return syscall_loop(tmp_path_factory)


def ksnoop_proc(argv, stdout=subprocess.PIPE):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "ksnoop", *argv], stdout=stdout, stderr=subprocess.PIPE,
                            text=True, env=env)


def wait_started(ks, head):
    for line in ks.stderr:
        head.append(line)
        if line.startswith("ksnoop: tracing"):
            return
    pytest.fail("ksnoop did not start: " + "".join(head))


class Workload:
    """The workload and the ksnoops watching it ("{pid}" in an argument is its pid)."""

    def __init__(self, loop, count, rate=0):
        self.work = subprocess.Popen([loop, str(count), str(rate)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.pid = self.work.pid
        self.watchers = {}

    def watch(self, name, *argv, stdout=subprocess.PIPE):
        argv = [a.replace("{pid}", str(self.pid)) for a in argv]
        ks = ksnoop_proc(argv, stdout=stdout)
        self.watchers[name] = (ks, [])
        return ks

    def go(self):
        try:
            for ks, head in self.watchers.values():
                wait_started(ks, head)
            out, _ = self.work.communicate("\n", timeout=300)
        except BaseException:
            self.kill()
            raise
        return int(out.split()[0])

    def stop(self, sig=signal.SIGINT):
        """{name: (returncode, stdout, stderr)} once every ksnoop has stopped."""
        time.sleep(0.3)
        for ks, _ in self.watchers.values():
            if ks.poll() is None:
                ks.send_signal(sig)
        out = {}
        for name, (ks, head) in self.watchers.items():
            o, e = ks.communicate(timeout=120)
            out[name] = (ks.returncode, o, "".join(head) + e)
        return out

    def kill(self):
        self.work.kill()
        for ks, _ in self.watchers.values():
            ks.kill()


def json_reports(text):
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def big_run(loop):
    """One workload of CALLS getppid() calls at full speed, watched by every
    aggregation the acceptance names, in every output format."""
    w = Workload(loop, CALLS)
    w.watch("count", "count", "-p", "{pid}", SPEC)  # text into a pipe
    w.watch("hist", "hist", "-o", "json", "-p", "{pid}", "--of", "id", SPEC)
    w.watch("comm", "count", "--color", "-p", "{pid}", "--by", "comm", SPEC)  # bars, as on a terminal
    w.watch("pid", "count", "-o", "json", "-p", "{pid}", "--by", "pid", SPEC)
    # two tracepoints counted at once: each has its own counter
    w.watch("two", "count", "-p", "{pid}", SPEC, f"tp:sys_exit(ret == {os.getpid()})")
    made = w.go()
    return made, w.pid, w.stop()


def ok(result):
    rc, out, err = result
    assert rc == 0 and "Traceback" not in err, err
    return out, err


def test_count_is_exact(big_run):
    made, _, res = big_run
    out, err = ok(res["count"])
    assert made == CALLS
    assert out.splitlines() == ["FUNCTION        COUNT", f"tp:sys_enter  {CALLS}"]
    assert f"ksnoop: {CALLS} calls counted\n" in err


def test_hist_of_a_scalar_sums_to_the_calls(big_run):
    made, _, res = big_run
    out, err = ok(res["hist"])
    (rep,) = json_reports(out)
    assert rep["kind"] == "hist" and rep["of"] == "id" and rep["final"] is True and rep["total"] == made
    (h,) = rep["histograms"]
    assert h["function"] == "tp:sys_enter" and h["count"] == made and h["unreadable"] == 0
    assert h["buckets"] == [{"low": 64, "high": 127, "count": made}]  # 110 is in [64, 128)
    assert f"ksnoop: {made} values in the histogram" in err


def test_count_by_comm_with_bars(big_run):
    made, _, res = big_run
    out, err = ok(res["comm"])
    lines = [re.sub(r"\033\[[0-9;]*m", "", ln) for ln in out.splitlines()]
    assert lines[0].split() == ["FUNCTION", "COMM", "COUNT"]
    assert len(lines) == 2 and lines[1].split()[:3] == ["tp:sys_enter", "syscall_loop", str(made)]
    assert "\033[" in out and lines[1].rstrip().endswith("█")
    assert f"ksnoop: {made} calls counted under 1 key, 0 not counted" in err


def test_count_by_pid_json(big_run):
    made, pid, res = big_run
    out, _ = ok(res["pid"])
    (rep,) = json_reports(out)
    assert rep["by"] == "pid" and rep["overflow"] == 0 and rep["total"] == made
    assert rep["counts"] == [{"function": "tp:sys_enter", "value": pid, "count": made}]


def test_two_tracepoints_each_counted(big_run):
    made, _, res = big_run
    out, _ = ok(res["two"])
    rows = dict(ln.split() for ln in out.splitlines()[1:])
    assert rows == {"tp:sys_enter": str(made), "tp:sys_exit": str(made)}


def test_task_filters(loop):
    """trace's -t and -c choose the tasks for count and hist too."""
    w = Workload(loop, 20_000)
    w.watch("comm", "count", "-o", "json", "-c", "syscall_l*", "--by", "comm", SPEC)
    w.watch("tid", "hist", "-o", "json", "-t", "{pid}", "--of", "id", SPEC)
    made = w.go()
    res = w.stop()
    (rep,) = json_reports(ok(res["comm"])[0])
    assert rep["counts"] == [{"function": "tp:sys_enter", "value": "syscall_loop", "count": made}]
    (rep,) = json_reports(ok(res["tid"])[0])
    assert rep["total"] == made == 20_000


def test_interval_reports(loop):
    """Every 0.4 s a report of that interval only; they add up to the calls."""
    w = Workload(loop, 30_000, rate=15_000)
    w.watch("i", "count", "-o", "json", "-i", "0.4", "-p", "{pid}", "--by", "comm", SPEC)
    w.watch("h", "hist", "-i", "0.4", "-p", "{pid}", "--of", "id", SPEC)
    made = w.go()
    res = w.stop()
    reps = json_reports(ok(res["i"])[0])
    assert len(reps) >= 4, reps
    assert [r["interval"] for r in reps] == list(range(1, len(reps) + 1))
    assert [r["final"] for r in reps] == [False] * (len(reps) - 1) + [True]
    assert all(0.3 < r["seconds"] < 1.5 for r in reps[:-1])
    assert sum(r["total"] for r in reps) == made == 30_000
    busy = [r for r in reps if r["total"]]
    assert len(busy) >= 3 and all(r["counts"][0]["value"] == "syscall_loop" for r in busy)
    text = ok(res["h"])[0]
    heads = re.findall(r"^\[\d\d:\d\d:\d\d\] interval (\d+) \(\d+\.\d\d s(, last)?\)$", text, re.M)
    assert len(heads) >= 4 and heads[-1][1] == ", last"
    assert sum(int(n) for n in re.findall(r"^tp:sys_enter: id, (\d+) values?$", text, re.M)) == made


def test_reports_limit_stops_by_itself(loop):
    w = Workload(loop, 100_000, rate=20_000)
    ks = w.watch("n", "count", "-o", "json", "-i", "0.3", "-n", "2", "-p", "{pid}", SPEC)
    w.go()
    out, err = ks.communicate(timeout=60)
    assert ks.returncode == 0, err
    reps = json_reports(out)
    assert [(r["interval"], r["final"]) for r in reps] == [(1, False), (2, True)]


def test_map_full_is_reported(loop):
    """One key fits: getppid (the first syscall after the start) is counted,
    the workload's later write and exit_group are not, and say so."""
    w = Workload(loop, 1000)
    w.watch("full", "count", "-o", "json", "--max-keys", "1", "-p", "{pid}", "--by", "id", "tp:sys_enter")
    made = w.go()
    out, err = ok(w.stop()["full"])
    (rep,) = json_reports(out)
    assert rep["counts"] == [{"function": "tp:sys_enter", "value": GETPPID, "count": made}]
    assert rep["overflow"] >= 2
    assert f"ksnoop: {made} calls counted under 1 key, {rep['overflow']} not counted (the map of 1 keys " \
           "was full: raise --max-keys)" in err


def test_string_keys_and_string_conditions(loop):
    """Executions of a program with a unique name, counted by the file name
    (a char *), by the new task's comm (a char array) and under a string
    condition."""
    tmp = tempfile.mkdtemp(prefix="/tmp/ksa-")
    procs = {}
    try:
        exe = os.path.join(tmp, "ksnoop-agg-true")
        shutil.copy("/bin/true", exe)
        procs.update({
            "file": ksnoop_proc(["count", "-o", "json", "--by", "bprm->filename", "tp:sched_process_exec"]),
            "comm": ksnoop_proc(["count", "-o", "json", "--by", "p->comm", "tp:sched_process_exec"]),
            "cond": ksnoop_proc(["count", "-o", "json", "--by", "pid",
                                 f'tp:sched_process_exec(bprm->filename == "{exe}")']),
        })
        heads = {}
        for name, ks in procs.items():
            heads[name] = []
            wait_started(ks, heads[name])
        for _ in range(25):
            assert subprocess.run([exe]).returncode == 0
        time.sleep(0.3)
        reports = {}
        for name, ks in procs.items():
            ks.send_signal(signal.SIGINT)
            out, err = ks.communicate(timeout=60)
            assert ks.returncode == 0, err
            (reports[name],) = json_reports(out)
    finally:
        shutil.rmtree(tmp)
        for ks in procs.values():
            if ks.poll() is None:
                ks.kill()
    by_file = {r["value"]: r["count"] for r in reports["file"]["counts"]}
    assert by_file[exe] == 25
    by_comm = {r["value"]: r["count"] for r in reports["comm"]["counts"]}
    assert by_comm["ksnoop-agg-true"] == 25, by_comm  # comm: the name (15 bytes fit)
    cond = reports["cond"]
    assert cond["total"] == 25 and len(cond["counts"]) == 25 and all(r["count"] == 1 for r in cond["counts"])


# Every program shape, loaded through the real verifier (kprobe programs load
# on the host; only their attach needs a kernel with kprobes).
DRY = [
    ["count", SPEC],
    ["count", SPEC, "--by", "comm"],
    ["count", "tp:sys_enter", "--by", "tid"],
    ["count", "tp:sys_enter", "--by", "regs"],
    ["hist", "tp:sys_enter", "--of", "regs->di"],
    ["count", "ip_send_skb", "--by", "skb->len"],
    ["count", "ip_send_skb", "--by", "skb->dev->name"],
    ["count", "ip_send_skb(skb->len > 100)", "--by", "skb->sk"],
    ["count", 'ip_send_skb(skb->dev->name == "lo")', "--by", "skb->dev->name"],
    ["hist", "ip_send_skb"],
    ["hist", "ip_send_skb(return == 0)"],
    ["hist", "ip_send_skb", "--of", "return"],
    ["count", "ip_send_skb(skb->len > 10)", "--by", "return"],
    ["count", "do_sys_openat2(return < 0)", "--by", "filename"],
    ["hist", 'do_sys_openat2(filename ~ "/etc/*")'],
    ["count", 'do_sys_openat2(filename == "/etc/passwd" || return < 0)', "--by", "how->flags"],
    ["count", "-s", "128", "do_sys_openat2", "--by", "filename"],
    ["hist", "vfs_read(count > 0)", "--of", "count"],
    ["count", "ip_send_skb", "udp_sendmsg", "tp:sys_enter"],
    ["hist", "ip_send_skb", "udp_sendmsg", "--of", "duration"],
]


@pytest.mark.parametrize("args", DRY, ids=[" ".join(a) for a in DRY])
def test_dry_run_through_the_verifier(loop, args):
    p = subprocess.run([sys.executable, "-m", "ksnoop", *args, "--dry-run"], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert p.returncode == 0, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert re.match(r"loaded \d+ programs through the verifier", last), p.stderr
    first = next(a for a in args[1:] if "(" in a or a[0].isalpha())
    assert p.stdout.startswith(first.split("(")[0]), p.stdout


def test_sigterm_reports_and_detaches(loop):
    w = Workload(loop, 5000)
    ks = w.watch("t", "count", "-p", "{pid}", SPEC)
    made = w.go()
    ours = bpfprogs.prog_ids(ks.pid)
    assert ours and ours <= set(bpfprogs.shown())
    out, err = ok(w.stop(signal.SIGTERM)["t"])
    assert out.splitlines()[1].split() == ["tp:sys_enter", str(made)]
    for _ in range(50):  # freeing is RCU-deferred
        if not ours & set(bpfprogs.shown()):
            break
        time.sleep(0.05)
    assert not ours & set(bpfprogs.shown()), "programs left loaded after ksnoop exited"


def test_closed_pipe_ends_quietly(loop):
    w = Workload(loop, 200_000, rate=20_000)
    ks = w.watch("p", "count", "-i", "0.2", "-p", "{pid}", SPEC)
    w.work.stdin.write("\n")
    w.work.stdin.flush()
    wait_started(ks, w.watchers["p"][1])
    assert ks.stdout.readline()
    ks.stdout.close()  # like `| head -1`
    err = ks.stderr.read()
    assert ks.wait(timeout=60) == 0, err
    assert "Traceback" not in err
    w.work.kill()


def test_closed_pipe_without_reports_is_noticed(loop):
    """No -i: nothing is written until the end, so only watching the pipe
    tells ksnoop that nobody will read its report."""
    w = Workload(loop, 10)
    ks = w.watch("p", "count", "-p", "{pid}", SPEC)
    wait_started(ks, w.watchers["p"][1])
    ks.stdout.close()
    try:
        ks.wait(timeout=3)
    except subprocess.TimeoutExpired:
        ks.kill()
        pytest.fail("ksnoop kept counting for nobody")
    finally:
        w.work.kill()
    err = ks.stderr.read()
    assert ks.returncode == 0, err
    assert "Traceback" not in err
