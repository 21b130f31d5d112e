"""Unusual kernels on the host (issue 11), each in its own mount namespace
(unshare), so the host's mounts are left as they are: tracefs not mounted
(ksnoop mounts it where it needs it and can, mounts nothing over something
else, and traces tracepoints without it); no BTF (one line, exit 1).
The kernels' own refusals (lockdown, kprobes without tracefs, the JIT off,
unprivileged users) are tested in the VM test bed: tests/guest/test_hostile_guest.py."""

import os
import subprocess
import sys

import pytest
from hostenv import bpf_skip_reason

pytestmark = pytest.mark.host
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNMOUNT = ("for m in /sys/kernel/debug/tracing /sys/kernel/debug /sys/kernel/tracing; do "
           "umount -l $m 2>/dev/null; done; "
           "if grep -q ' - tracefs ' /proc/self/mountinfo; then echo 'still mounted' >&2; exit 99; fi")
PROBE = ("from ksnoop.kernel.features import ensure_tracefs; print(ensure_tracefs()); "
         "print(sum(' - tracefs ' in l for l in open('/proc/self/mountinfo')))")


@pytest.fixture(scope="module", autouse=True)
def host():
    reason = bpf_skip_reason("mount namespaces")
    if reason:
        pytest.skip(reason)


def in_namespace(script, *argv):
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = f"{script} && exec \"$@\""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd, "sh",
                           *argv], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


def test_tracefs_not_mounted_is_mounted():
    p = in_namespace(UNMOUNT, sys.executable, "-c", PROBE)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["/sys/kernel/tracing", "1"]


def test_nothing_is_mounted_over_another_mount():
    """Something else at /sys/kernel/tracing (or an empty tracefs, as lockdown
    leaves it): no second mount stacked on it each run, and None."""
    p = in_namespace(UNMOUNT + " && mount -t tmpfs -o ro,size=4k none /sys/kernel/tracing",
                     sys.executable, "-c", PROBE)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["None", "0"]


def test_tracepoints_need_no_tracefs():
    """Raw tracepoints attach without tracefs, and none is mounted for them."""
    p = in_namespace(UNMOUNT, sys.executable, "-m", "ksnoop", "trace", "-n", "3", "-o", "line",
                     "tp:sys_enter(id)")
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 3 and "Traceback" not in p.stderr


@pytest.mark.parametrize("args", [("info", "ip_send_skb"), ("trace", "--dry-run", "ip_send_skb"),
                                  ("trace", "-n", "1", "tp:sys_enter(id)"),
                                  ("count", "--duration", "1", "tp:sys_enter")])
def test_no_btf_is_one_line(args):
    """/sys/kernel/btf/vmlinux absent (a kernel without CONFIG_DEBUG_INFO_BTF):
    one line naming the way out (--btf), exit 1."""
    p = in_namespace("mount -t tmpfs -o ro,size=4k none /sys/kernel/btf",
                     sys.executable, "-m", "ksnoop", *args)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "no BTF" in lines[0] and "--btf FILE" in lines[0], p.stderr
