"""Tracepoints typed by BTF and wildcard specs, resolved against the running
kernel's BTF without root (--btf semantics: kallsyms is not read)."""

import os
import subprocess
import sys

import pytest

from ksnoop.btf import Kind
from ksnoop.errors import SpecError
from ksnoop.kernel.files import Kernel
from ksnoop.kernel.functions import find_tracepoint, tracepoint_signature
from ksnoop.trace.codegen import Machine, generate
from ksnoop.trace.plan import SCALAR, TRACEPOINT
from ksnoop.trace.resolve import resolve
from ksnoop.trace.spec import parse

VMLINUX = "/sys/kernel/btf/vmlinux"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MACHINE = Machine(self_tgid=1, ncpus=2)


@pytest.fixture(scope="module")
def kernel():
    return Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent/kallsyms")


def _traceiter_params(btf, name):
    """The tracepoint's argument names, read straight from BTF (independently of ksnoop)."""
    (fid,) = btf.find("__traceiter_" + name, Kind.FUNC)
    return [p.name for p in btf[btf[fid].type].params][1:]


def test_tracepoint_arguments_come_from_btf(kernel):
    tp = find_tracepoint(kernel, "sched_switch")
    names = [n for n, _ in tp.params]
    assert names == _traceiter_params(kernel.vmlinux, "sched_switch")
    assert {"prev", "next"} <= set(names)
    line = tracepoint_signature(tp)
    assert line.startswith("tp:sched_switch(") and "struct task_struct *prev" in line


def test_tracepoint_values_read_raw_tracepoint_arguments(kernel):
    plan = resolve([parse("tp:sched_switch(prev->pid, next->pid > 0)")], kernel)
    (fp,) = plan.funcs
    assert fp.probe == TRACEPOINT and fp.name == "tp:sched_switch" and fp.target == "sched_switch"
    assert not fp.ret and not fp.stash
    index = _traceiter_params(kernel.vmlinux, "sched_switch").index("prev")
    prev = next(v for v in fp.entry if v.name == "prev->pid")
    assert prev.kind == SCALAR and prev.reg == f"ctx->args[{index}]"
    c, probes = generate(plan, MACHINE)
    assert "int ksnoop_entry_0(struct bpf_raw_tracepoint_args *ctx)" in c
    assert probes[0][2] is None  # no return program


def test_tracepoint_errors(kernel):
    with pytest.raises(SpecError, match="it has no return value"):
        resolve([parse("tp:sched_switch(prev, return)")], kernel)
    with pytest.raises(SpecError, match="no such tracepoint"):
        resolve([parse("tp:no_such_tracepoint_xyz")], kernel)
    with pytest.raises(SpecError, match="has no argument 'nope'"):
        resolve([parse("tp:sched_switch(nope)")], kernel)


def test_wildcard_traces_matches_that_take_the_values(kernel):
    btf = kernel.vmlinux
    matches = sorted(n for n, _ in btf.names(Kind.FUNC) if n.startswith("tcp_v4_"))
    with_sk = [n for n in matches
               if "sk" in [p.name for p in btf[btf[btf.find(n, Kind.FUNC)[0]].type].params]]
    assert len(with_sk) >= 2, "this kernel should have several tcp_v4_* functions taking sk"
    plan = resolve([parse("tcp_v4_*(sk)")], kernel)
    assert [fp.name for fp in plan.funcs] == with_sk
    assert [fp.index for fp in plan.funcs] == list(range(len(with_sk)))
    (note,) = plan.notes
    assert note.startswith(f"tcp_v4_*: {len(matches)} functions match, {len(with_sk)} traced")
    if len(matches) > len(with_sk):
        assert f"{len(matches) - len(with_sk)} no argument 'sk'" in note


def test_wildcard_that_traces_nothing_is_an_error(kernel):
    with pytest.raises(SpecError, match="no function matches"):
        resolve([parse("no_such_prefix_xyz_*")], kernel)
    with pytest.raises(SpecError, match="no matching function can be traced"):
        resolve([parse("tcp_v4_*(no_such_argument_name)")], kernel)


def test_a_function_is_traced_once_across_specs(kernel):
    plan = resolve([parse("tcp_v4_connect(sk)"), parse("tcp_v4_*(sk)")], kernel)
    names = [fp.name for fp in plan.funcs]
    assert names.count("tcp_v4_connect") == 1
    assert "1 traced by an earlier spec" in plan.notes[0]


def test_info_tracepoints_and_patterns():
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "ksnoop", "info", "--btf", VMLINUX, "tp:sched_switch",
                        "tp:sched_process_*", "tcp_v4_conn*"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("tp:sched_switch(")
    assert sum(ln.startswith("tp:sched_process_") for ln in lines) >= 3
    assert any("tcp_v4_connect(" in ln for ln in lines)


def test_void_void_functions_get_one_event_per_call(kernel):
    """void f(void): no values, yet one entry event per call (never nothing)."""
    from ksnoop.trace.wire import ENTRY, layouts_for

    btf = kernel.vmlinux
    name = next(n for n, fid in btf.names(Kind.FUNC)
                if not btf[btf[fid].type].params and btf[btf[fid].type].type == 0)
    plan = resolve([parse(name)], kernel)
    (fp,) = plan.funcs
    assert not fp.entry and not fp.ret
    (ev,) = layouts_for(fp)
    assert ev.kind == ENTRY and ev.slots == ()
    c, probes = generate(plan, MACHINE)
    assert probes[0][1] == "ksnoop_entry_0" and "int ksnoop_entry_0(" in c
