"""Backends through the host kernel's real verifier (nothing attached: the
host has neither kprobes nor fentry; the guest tier attaches them).

* a kprobe-multi dispatcher (several functions, one program, a switch on the
  link's cookie) is loaded with the kprobe-multi attach type ksnoop's own
  bpf(2) call gives it;
* stack arguments read at a kprobe pass the verifier;
* this host refuses fentry programs: --backend auto says so and uses
  kprobes, --backend fentry fails in one line, and a refusal that only shows
  at load (the host refusing what ksnoop was told it allows) makes auto
  fall back to kprobes for that function.
"""

import ctypes
import os
import subprocess
import sys

import pytest
from backendstub import Fixed
from click.testing import CliRunner
from hostenv import bpf_skip_reason

from ksnoop.kernel import backend, bpfsys, features
from ksnoop.kernel.files import Kernel
from ksnoop.trace.codegen import (
    MULTI_ENTRY,
    MULTI_PROGS,
    MULTI_RETURN,
    MULTI_RETURN_BASE,
    Machine,
    generate,
)
from ksnoop.trace.job import attach_points
from ksnoop.trace.resolve import resolve
from ksnoop.trace.spec import parse

pytestmark = pytest.mark.host
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module", autouse=True)
def host_ok():
    reason = bpf_skip_reason("BPF program load")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e["KSNOOP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    return e


def ksnoop(env, *args):
    p = subprocess.run([sys.executable, "-m", "ksnoop", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


MULTI = Fixed(backend.Choice(backend.KPROBE, True, "test"))


def test_multi_dispatcher_loads_with_the_kprobe_multi_attach_type():
    """With predicates: dispatchers and the programs they tail-call load with
    the kprobe-multi attach type; the program array holds each program at its
    function's slot."""
    from ksnoop.trace.runtime import MultiKprobe, Session

    kernel = Kernel()
    plan = resolve([parse("ip_send_skb(skb->len > 0, return)"), parse("vfs_read(count > 10)"),
                    parse("do_mmap(pgoff > 0)")], kernel, backends=MULTI)
    c_text, progs = generate(plan, Machine(self_tgid=os.getpid(), ncpus=kernel.possible_cpus()))
    points = attach_points(progs)
    assert all(isinstance(p, MultiKprobe) and not p.recipes for p in points)
    assert sorted((p.fn, p.funcs, p.retprobe) for p in points) == [
        (MULTI_ENTRY, ("ip_send_skb", "vfs_read", "do_mmap"), False),
        (MULTI_RETURN, ("ip_send_skb",), True)]
    with Session(c_text, points, btf=kernel.vmlinux) as s:
        times = s.load_only()
        assert times.programs == 2 + 4
        names = {bpfsys.prog_info(fd).name for fd in s._own.fds.values()}
        assert names == {MULTI_ENTRY, "ksnoop_return_m", "ksnoop_entry_0", "ksnoop_entry_1",
                         "ksnoop_entry_2", "ksnoop_return_0"}
        table = s._bpf[MULTI_PROGS.encode()]
        filled = []
        for slot in range(2 * MULTI_RETURN_BASE):
            try:
                table[ctypes.c_int(slot)]
            except KeyError:
                continue
            filled.append(slot)
        assert filled == [0, 1, 2, MULTI_RETURN_BASE]


def test_generic_multi_program_passes_the_verifier():
    """Without predicates: one generic program per side, whatever the number
    of functions, with each function's recipe in its map (every tcp_*
    function here: 2 programs, not one or two per function)."""
    from ksnoop.trace.multigen import RECIPES
    from ksnoop.trace.runtime import Session

    kernel = Kernel()
    plan = resolve([parse("tcp_*"), parse("vfs_read(file->f_path.dentry->d_name.name, buf)")],
                   kernel, backends=MULTI)
    assert len(plan.funcs) > 100
    c_text, progs = generate(plan, Machine(self_tgid=os.getpid(), ncpus=kernel.possible_cpus()))
    points = attach_points(progs)
    assert sorted(p.fn for p in points) == [MULTI_ENTRY, MULTI_RETURN]
    assert all(p.recipes and not p.members for p in points)
    with Session(c_text, points, btf=kernel.vmlinux) as s:
        assert s.load_only().programs == 2
        # both sides' recipes, set by one batch command each, read back one by one
        table = s._bpf[RECIPES.encode()]
        for p in points:
            for slot, raw in p.recipes:
                assert bytes(table[ctypes.c_int(slot)]) == raw


def test_stack_arguments_pass_the_verifier(env):
    rc, out, err = ksnoop(env, "trace", "--dry-run", "--backend", "kprobe",
                          "do_mmap(pgoff, populate, uf->next, len > 0)",
                          "ZSTD_adjustCParams(cPar, cPar.windowLog > 10)")
    assert rc == 0, err
    assert "  entry  pgoff: long unsigned int (scalar)" in out
    assert "do_mmap at 0x" in out and "  backend kprobe/kretprobe: --backend kprobe" in out
    assert err.strip().splitlines()[-1].startswith("loaded 2 programs through the verifier")


def test_auto_uses_kprobes_where_fentry_is_refused_and_says_why(env):
    ok, why = features.tracing_programs(Kernel())
    if ok:
        pytest.fail("this host now loads fentry programs: the guest tier covers them; "
                    "this test is about a host that refuses them")
    rc, out, err = ksnoop(env, "trace", "--dry-run", "ip_send_skb(skb->len)")
    assert rc == 0, err
    assert out.splitlines()[1] == f"  backend kprobe/kretprobe: {why}"
    rc, out, err = ksnoop(env, "trace", "--dry-run", "--backend", "fentry", "ip_send_skb(skb->len)")
    assert rc == 2 and "Traceback" not in err
    assert err.splitlines()[0] == f"ksnoop: ip_send_skb cannot be traced with fentry/fexit: {why}"


def test_a_refusal_at_load_falls_back_to_kprobes(monkeypatch, tmp_path):
    """Told that tracing programs load (they do not here), auto picks fentry;
    the kernel refuses the program at load; the function is traced with
    kprobes instead, with a note."""
    from ksnoop.cli.main import cli

    monkeypatch.setenv("KSNOOP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(features, "tracing_programs", lambda k: (True, ""))
    res = CliRunner().invoke(cli, ["trace", "--dry-run", "ip_send_skb(skb->len)",
                                   "vfs_read(count)"])
    assert res.exit_code == 0, res.output
    assert ("ksnoop: note: ip_send_skb: kernel rejected BPF program ksnoop_entry_0: "
            "Operation not permitted; using kprobes for it") in res.output
    assert ("ksnoop: note: vfs_read: kernel rejected BPF program ksnoop_entry_1: "
            "Operation not permitted; using kprobes for it") in res.output
    assert "  backend kprobe/kretprobe: the kernel refused its fentry program" in res.output


def test_count_falls_back_to_kprobes_as_trace_does(monkeypatch, tmp_path):
    """The same fallback, through count's own command (cli/options.py has the one rule)."""
    from ksnoop.cli.main import cli

    monkeypatch.setenv("KSNOOP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(features, "tracing_programs", lambda k: (True, ""))
    res = CliRunner().invoke(cli, ["count", "--dry-run", "ip_send_skb(skb->len > 0)"])
    assert res.exit_code == 0, res.output
    assert ("ksnoop: note: ip_send_skb: kernel rejected BPF program ksnoop_entry_0: "
            "Operation not permitted; using kprobes for it") in res.output
    res = CliRunner().invoke(cli, ["count", "--dry-run", "--backend", "fentry", "ip_send_skb"])
    assert res.exit_code != 0 and "using kprobes" not in res.output, res.output
