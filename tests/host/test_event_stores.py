"""The event structs' stores, in the bytecode BCC really produces.

Every member of an event sits at its natural alignment (trace/wire.py), and
the struct says so (aligned(8)): each value is stored whole.  Declared only
packed, clang stores every member byte by byte, shifting the value right
(8 instructions per pointer where one does): slower, and refused by the
verifier where the value is a pointer it tracks (fentry's struct pointer
arguments: "pointer arithmetic with >>= operator prohibited", which made
--backend auto fall back to kprobes on 6.1).  The host cannot load fentry
programs, so this checks the instructions of the kprobe programs, compiled
from the same event structs.
"""

import os
import struct

import pytest
from backendstub import Fixed
from hostenv import bpf_skip_reason

from ksnoop.kernel import backend
from ksnoop.kernel.files import Kernel
from ksnoop.trace.codegen import Machine, generate
from ksnoop.trace.job import attach_points
from ksnoop.trace.resolve import resolve
from ksnoop.trace.spec import parse
from ksnoop.trace.wire import layouts_for

pytestmark = pytest.mark.host

STX_DW, STX_B = 0x7B, 0x73  # BPF_STX | BPF_MEM | BPF_DW / BPF_B


@pytest.fixture(scope="module", autouse=True)
def host_ok():
    reason = bpf_skip_reason("BPF program load")
    if reason:
        pytest.skip(reason)


def stores(raw):
    """(opcode, offset) of every store instruction."""
    out = []
    for at in range(0, len(raw), 8):
        op, _regs, off, _imm = struct.unpack_from("<BBhi", raw, at)
        if op in (STX_DW, STX_B):
            out.append((op, off))
    return out


def test_pointers_and_scalars_are_stored_whole():
    from ksnoop.trace.runtime import Session

    kernel = Kernel()
    plan = resolve([parse("ip_send_skb(net, skb, skb->len)")], kernel,
                   backends=Fixed(backend.Choice(backend.KPROBE, False, "test")))
    c_text, progs = generate(plan, Machine(self_tgid=os.getpid(), ncpus=kernel.possible_cpus()))
    (fp,) = plan.funcs
    entry = next(ev for ev in layouts_for(fp) if ev.kind == 1)
    with Session(c_text, attach_points(progs), btf=kernel.vmlinux) as s:
        s.load_only()
        found = stores(s._bpf.dump_func("ksnoop_entry_0"))
    ptrs = [slot.ptr for slot in entry.slots if slot.ptr >= 0]  # net, skb
    assert len(ptrs) == 2, entry
    for at in ptrs:
        assert (STX_DW, at) in found, (at, found)
    # nothing at all is stored a byte at a time: the header's and the slots'
    # members are whole words (the header's u8 kind and flags are set as one)
    words = [(slot.ptr, 8) for slot in entry.slots if slot.ptr >= 0] + \
            [(slot.status, 4) for slot in entry.slots if slot.status >= 0]
    for at, size in words:
        assert not [off for op, off in found if op == STX_B and at <= off < at + size], (at, found)
