"""Drive tracers against real kernel activity: start them, wait until they
are attached, make the traced functions run, stop them, collect the output.

Used by tests/guest (inside the VM test bed) and by bench/guest_cost.py.
"""

import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))  # bpfprogs, also for bench/ scripts

import bpfprogs  # noqa: E402

KSNOOP = [sys.executable, "-m", "ksnoop"]
REFERENCE = "/usr/sbin/ksnoop"
UDP_PAYLOAD = 56  # skb->len at ip_send_skb = 56 + 8 (UDP) + 20 (IP) = 84


class Tracer:
    """One tracer process whose stdout/stderr go to files in ``workdir``."""

    def __init__(self, name, argv, workdir, ready_text, stop_signal=signal.SIGINT):
        self.name = name
        self.stop_signal = stop_signal
        self.argv = argv
        self.out_path = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        self.ready_text = ready_text
        self.proc = None
        self.returncode = None

    def start(self):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, cwd=ROOT, env=env,
                                         stdin=subprocess.DEVNULL)
        return self

    def ready(self):
        if self.ready_text is None:
            return self.proc.poll() is None and _attached(self.proc.pid)
        with open(self.err_path, errors="replace") as f:
            return self.ready_text in f.read()

    def stop(self, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
        return self.returncode

    def bpf_programs(self):
        """The BPF programs this tracer's process holds, as `bpftool -j prog
        show` describes them (name, run_cnt, ...): tests/bpfprogs.py."""
        return bpfprogs.programs(bpfprogs.prog_ids(self.proc.pid))

    @property
    def stdout(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    @property
    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()


def _attached(pid):
    """The reference prints nothing when ready: look for its kprobes instead.

    It holds a BPF program fd once loaded; libbpf attaches through the kprobe
    PMU with a BPF link (an ``anon_inode:bpf_link`` fd), which leaves no line
    in kprobe_events, so a link fd also counts as attached."""
    try:
        kinds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    if not any(k.startswith("anon_inode:bpf-prog") for k in kinds):
        return False
    return any(k.startswith("anon_inode:bpf_link") for k in kinds) or _probe_count() > 0


def _probe_count():
    try:
        with open("/sys/kernel/tracing/kprobe_events") as f:
            return len(f.read().splitlines())
    except OSError:
        return 1  # kprobe PMU: nothing to count, the program fd is enough


def _backend():
    """--backend for ksnoop tracers: $KSNOOP_BACKEND (set per run by the guest tests), if set."""
    b = os.environ.get("KSNOOP_BACKEND")
    return ["--backend", b] if b else []


def ksnoop(name, workdir, *args, stop_signal=signal.SIGINT):
    args = list(args)
    if "--backend" not in args:
        args += _backend()
    return Tracer(name, KSNOOP + args, workdir, "ksnoop: tracing", stop_signal)


def ksnoop_piped(name, workdir, pipe, *args):
    """ksnoop ARGS | PIPE (a shell pipeline, e.g. "head -n 2")."""
    import shlex

    cmd = " ".join(shlex.quote(a) for a in KSNOOP + list(args) + _backend()) + " | " + pipe
    return Tracer(name, ["sh", "-c", cmd], workdir, "ksnoop: tracing")


def reference(name, workdir, *args):
    return Tracer(name, ["stdbuf", "-oL", REFERENCE, *args], workdir, None)


def wait_ready(tracers, timeout=900, settle=3.0):
    deadline = time.monotonic() + timeout
    pending = list(tracers)
    while pending and time.monotonic() < deadline:
        for t in list(pending):
            if t.proc.poll() is not None:
                raise RuntimeError(f"{t.name} exited early ({t.proc.returncode}): {t.stderr[-2000:]}")
            if t.ready():
                pending.remove(t)
        time.sleep(0.5)
    if pending:
        raise RuntimeError(f"not attached after {timeout}s: {[t.name for t in pending]}")
    time.sleep(settle)  # the reference attaches after opening its programs


def send_udp(count, payload=UDP_PAYLOAD, port=9999):
    """Send ``count`` datagrams from one new socket; returns its local port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(count):
            s.sendto(b"k" * payload, ("127.0.0.1", port))
        return s.getsockname()[1]
    finally:
        s.close()


class bpf_stats:
    """kernel.bpf_stats_enabled=1 for the block (the kernel counts run_cnt and
    run_time_ns per program only meanwhile), then the previous setting."""

    PATH = "/proc/sys/kernel/bpf_stats_enabled"

    def __enter__(self):
        with open(self.PATH) as f:
            self.before = f.read().strip()
        with open(self.PATH, "w") as f:
            f.write("1")
        return self

    def __exit__(self, *exc):
        with open(self.PATH, "w") as f:
            f.write(self.before)


def open_files(paths):
    for p in paths:
        try:
            with open(p, "rb"):
                pass
        except OSError:
            pass


def dummy_device(name="ksnoop0"):
    """Load the dummy module and create a device; returns a function that
    makes the module's ndo_get_stats64 run once per call."""
    subprocess.run(["modprobe", "dummy"], check=True)
    if not os.path.exists(f"/sys/class/net/{name}"):  # made by an earlier run of the fixture
        subprocess.run(["ip", "link", "add", name, "type", "dummy"], check=True)

    def poke():
        subprocess.run(["ip", "-s", "link", "show", name], check=True, stdout=subprocess.DEVNULL)

    return poke
