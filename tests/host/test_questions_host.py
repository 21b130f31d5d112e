"""Issue 9 on the host, end to end through a real tracepoint: kernel stacks
(-K), the time column (--time wall|delta) and JSON's wall time, with the
paced getppid() workload (tests/workload/syscall_loop.c).  Durations need
function returns: they are the guest tier's (tests/guest/test_questions_guest.py).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from hostenv import bpf_skip_reason

pytestmark = pytest.mark.host
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = "tp:sys_enter(id == 110)"  # getppid on x86_64
CALLS = 5


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    reason = bpf_skip_reason("raw tracepoints")
    if reason:
        pytest.skip(reason)
    if os.uname().machine != "x86_64":
        pytest.fail("the workload's syscall number (getppid = 110) is x86_64's")
    exe = tmp_path_factory.mktemp("workload") / "syscall_loop"
    subprocess.run(["gcc", "-O2", "-o", str(exe), os.path.join(ROOT, "tests/workload/syscall_loop.c")],
                   check=True)
    return str(exe)


def trace(loop, *args, count=CALLS, rate=200):
    """(stdout, stderr, wall seconds before, after) of ksnoop ARGS SPEC -p PID
    while the workload makes ``count`` calls."""
    work = subprocess.Popen([loop, str(count), str(rate)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    ks = subprocess.Popen([sys.executable, "-m", "ksnoop", "trace", "-p", str(work.pid),
                           "--no-color", *args, SPEC], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    head = []
    for line in ks.stderr:
        head.append(line)
        if line.startswith("ksnoop: tracing"):
            break
    else:
        work.kill()
        pytest.fail("ksnoop did not start: " + "".join(head))
    before = time.time()
    out, _ = work.communicate("\n", timeout=120)
    assert int(out.split()[0]) == count
    time.sleep(0.5)
    after = time.time()
    ks.send_signal(signal.SIGINT)
    out, err = ks.communicate(timeout=60)
    assert ks.returncode == 0, err
    assert re.search(rf"ksnoop: {count} events, 0 lost", err), err
    return out, "".join(head) + err, before, after


def test_kstack_in_json_text_and_line(loop):
    out, _, _, _ = trace(loop, "-K", "-o", "json")
    evs = [json.loads(line) for line in out.splitlines()]
    assert len(evs) == CALLS
    for e in evs:
        frames = e["kstack"]
        assert isinstance(frames, list) and all(isinstance(f, str) for f in frames)
        # the system call's path into the tracepoint, symbolized from kallsyms
        assert any(re.fullmatch(r"do_syscall_64\+0x[0-9a-f]+", f) for f in frames), frames
        assert "notes" not in e
    out, _, _, _ = trace(loop, "-K", "-o", "line")
    lines = out.splitlines()
    assert len(lines) == CALLS
    assert all(re.search(r"\) kstack: .*<- do_syscall_64\+0x[0-9a-f]+( <- |$)", ln) for ln in lines), lines
    out, _, _, _ = trace(loop, "-K")
    assert out.count("\n  kstack:\n") == CALLS
    assert len(re.findall(r"^    do_syscall_64\+0x[0-9a-f]+$", out, re.M)) == CALLS


def test_no_kstack_without_the_option(loop):
    out, _, _, _ = trace(loop, "-o", "json", count=2)
    assert all("kstack" not in json.loads(line) for line in out.splitlines())


def test_json_wall_beside_time(loop):
    out, _, before, after = trace(loop, "-o", "json")
    evs = [json.loads(line) for line in out.splitlines()]
    offset = time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)
    for e in evs:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["wall"]), e["wall"]
        wall = datetime.strptime(e["wall"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert before - 1 <= wall.timestamp() <= after + 1
        assert abs(wall.timestamp() - (e["time"] + offset)) < 0.05  # one clock, converted once


def test_time_wall_and_delta_columns(loop):
    out, _, before, after = trace(loop, "-o", "line", "--time", "wall")
    cols = [line.split()[3] for line in out.splitlines()]
    assert len(cols) == CALLS
    day = datetime.fromtimestamp(before, timezone.utc).strftime("%Y-%m-%d")
    for c in cols:
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6}", c), c
        t = datetime.strptime(f"{day} {c}", "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
        assert before - 1 <= t.timestamp() <= after + 1 or t.timestamp() < before - 80000  # midnight
    # 130 calls at 1000/s, made in batches of 64: two waits of about 64 ms
    out, _, _, _ = trace(loop, "-o", "line", "--time", "delta", count=130, rate=1000)
    deltas = [float(line.split()[3]) for line in out.splitlines()]
    assert deltas[0] == 0 and all(d >= 0 for d in deltas), deltas
    assert len([d for d in deltas if d > 0.03]) == 2 and 0.1 < sum(deltas) < 2, deltas
    out, _, _, _ = trace(loop, "--time", "delta", count=2)  # text: the same column
    assert re.search(r"^syscall_loop +\d+ +\d+ +0\.000000 tp:sys_enter\($", out, re.M), out


def test_min_latency_on_a_tracepoint_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "ksnoop", "trace", "--min-latency", "1ms", SPEC],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT),
                       timeout=120)
    assert r.returncode == 2 and "--min-latency" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("min_ns, kstack", [(0, True), (50_000, True), (50_000, False)])
def test_latency_and_stack_programs_pass_the_verifier(min_ns, kstack):
    """Every program shape durations, --min-latency and -K give, through the
    host's verifier: compiled kprobe programs (entry-only timing, stash,
    return events) and the generic kprobe-multi programs (recipes with
    entry times, durations and stacks)."""
    reason = bpf_skip_reason("kprobe programs")
    if reason:
        pytest.skip(reason)
    from backendstub import Fixed

    from ksnoop.kernel import backend
    from ksnoop.kernel.files import Kernel
    from ksnoop.trace.codegen import MULTI_ENTRY, MULTI_RETURN, Machine, generate
    from ksnoop.trace.job import attach_points, with_options
    from ksnoop.trace.plan import Filters
    from ksnoop.trace.resolve import resolve
    from ksnoop.trace.runtime import Session
    from ksnoop.trace.spec import parse

    kernel = Kernel()
    machine = Machine(self_tgid=os.getpid(), ncpus=kernel.possible_cpus())
    compiled = ["ksys_read(return)", "vfs_read(count, return)", "ksys_write(fd)",
                "do_sys_openat2(filename, return == -2)"]
    generic = ["ksys_read(return)", "vfs_write(return)"] + ([] if min_ns else ["ksys_write(fd)"])
    multi = Fixed(backend.Choice(backend.KPROBE, True, "test"))
    for backends, specs in ((None, compiled), (multi, generic)):
        plan = with_options(resolve([parse(t) for t in specs], kernel, backends=backends), min_ns,
                            kstack)
        c_text, progs = generate(plan, machine, Filters(min_ns=min_ns))
        points = attach_points(progs)
        if backends is multi:
            assert sorted(p.fn for p in points if p.recipes) == [MULTI_ENTRY, MULTI_RETURN]
            assert not any(p.members for p in points)
        with Session(c_text, points, btf=kernel.vmlinux) as s:
            # compiled: every function an entry program (values or its start
            # time), and a return program where the return is traced
            want = 2 if backends else sum(1 + bool(fp.stash or fp.ret) for fp in plan.funcs)
            assert s.load_only().programs == want
