"""Least privilege on the host kernel: CAP_BPF + CAP_PERFMON suffice (no root,
no CAP_SYS_ADMIN); with less, one line naming what is missing, exit 1."""

import os
import subprocess
import sys

import pytest
from hostenv import bpf_skip_reason

pytestmark = pytest.mark.host
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOBODY = 65534


@pytest.fixture(scope="module", autouse=True)
def host():
    reason = bpf_skip_reason("setpriv to an unprivileged user")
    if reason:
        pytest.skip(reason)


def as_nobody(caps, *args, home="/nonexistent"):
    """ksnoop run as uid 65534 holding exactly ``caps`` (e.g. "+bpf,+perfmon")."""
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if caps:
        prefix += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT, "HOME": home, "LANG": "C.UTF-8"}
    return subprocess.run(prefix + ["--", sys.executable, "-m", "ksnoop", *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd="/")


def test_bpf_and_perfmon_are_enough_for_a_dry_run():
    p = as_nobody("+bpf,+perfmon", "trace", "--dry-run", "ip_send_skb(skb->len > 0, skb, return)")
    assert p.returncode == 0, p.stderr
    assert "loaded 2 programs through the verifier" in p.stderr
    status = as_nobody("+bpf,+perfmon", "info", "ip_send_skb")
    assert status.returncode == 0 and "ip_send_skb(" in status.stdout


@pytest.mark.parametrize("caps,missing", [("+bpf", "CAP_PERFMON"), ("+perfmon", "CAP_BPF"),
                                          ("", "CAP_BPF and CAP_PERFMON")])
def test_missing_capabilities_are_named(caps, missing):
    p = as_nobody(caps, "trace", "--dry-run", "ip_send_skb")
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ksnoop: permission denied"), p.stderr
    assert f"missing {missing})" in lines[0]
    assert "Traceback" not in p.stderr


def test_events_bigger_than_the_ring_buffer_are_refused(vmlinux_btf):
    """-P 1 -s 65536: each event would be lost; refused before attaching, naming -P."""
    from ksnoop.btf import Kind

    target = None
    for name, fid in vmlinux_btf.names(Kind.FUNC):
        proto = vmlinux_btf[vmlinux_btf[fid].type]
        if not proto.params or not proto.params[0].name:
            continue
        t = vmlinux_btf[vmlinux_btf.resolve(proto.params[0].type)]
        if t.kind == Kind.PTR:
            pointee = vmlinux_btf[vmlinux_btf.resolve(t.type)]
            if pointee.kind == Kind.STRUCT and pointee.size > 65536:
                target = f"{name}({proto.params[0].name})"
                break
    assert target, "no function takes a pointer to a struct over 64 KiB in this kernel"
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "ksnoop", "trace", "--dry-run", "--buffer", "ringbuf",
                        "-P", "1", "-s", "65536", target], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 1, p.stderr
    assert "-P/--pages" in p.stderr and "ring buffer" in p.stderr
