"""Backends on a real kernel (the VM test bed): fentry/fexit, kprobes and
kprobe-multi give the same values; arguments passed on the stack are read
right; a wildcard traces several functions on real traffic.

One workload drives every tracer at once: an mmap() of a file at a known
offset and UDP datagrams to loopback (ip_send_skb and udp_send_skb both
run).  do_mmap has 9 parameters in 6.12 (pgoff, the 7th, is on the stack at
entry) and 8 in 6.1 (pgoff in the last register, populate and uf on the
stack); the pointer ``populate`` is followed either way.
"""

import ctypes
import json
import mmap
import os
import re
import socket
import subprocess
import tempfile
import time

import bpfprogs
import pytest
from guestbed import skip_reason
from workload import KSNOOP, UDP_PAYLOAD, ksnoop, send_udp, wait_ready

PAGE = mmap.PAGESIZE
MAP_PAGES, MAP_OFFSET_PAGES = 3, 5  # a distinctive length and offset
DATAGRAMS = 4
MMAP_SPEC = "do_mmap(pgoff, len, file->f_inode->i_ino, populate, return)"
WILD_SPEC = "*p_send_skb(skb->len)"  # ip_send_skb and udp_send_skb
# member chains: fentry reads them by plain loads (the verifier checks them
# against BTF), kprobes by bpf_probe_read_kernel.  skb->next is NULL for a
# datagram sent alone, so that read fails on the way; pkt_type is a bitfield.
CHAIN_SPEC = ("ip_send_skb(skb->len > 0, skb->next->len, skb->sk->__sk_common.skc_family, "
              "skb->pkt_type, skb->sk->sk_socket->file->f_inode->i_ino, skb->len < 100000)")




def _fentry_do_mmap():
    """(bool, why): whether this kernel's trampolines take do_mmap (its stack
    arguments), asked the way ksnoop asks (a do-nothing program attached)."""
    from ksnoop.btf import Kind
    from ksnoop.kernel import features
    from ksnoop.kernel.files import Kernel

    k = Kernel()
    ok, why = features.tracing_programs(k)
    if not ok:
        return ok, why
    return features.fentry_attaches("do_mmap", k.vmlinux.find("do_mmap", Kind.FUNC)[0])


def _do_mmap_params():
    """do_mmap's parameter names, as this kernel's BTF has them."""
    from ksnoop.btf import Kind
    from ksnoop.kernel.files import Kernel

    btf = Kernel().vmlinux
    return [p.name for p in btf[btf[btf.find("do_mmap", Kind.FUNC)[0]].type].params]


def _kprobe_multi():
    from ksnoop.kernel import features
    from ksnoop.kernel.files import Kernel

    return features.kprobe_multi(Kernel())[0]


@pytest.fixture(scope="module")
def bed():
    why = skip_reason()
    if why:
        pytest.skip(why)
    work = tempfile.mkdtemp(prefix="ksnoop-backends-")
    j = ("-o", "json")
    tracers = {t.name: t for t in [
        ksnoop("mmap_auto", work, *j, MMAP_SPEC, "--backend", "auto"),
        ksnoop("mmap_kprobe", work, *j, MMAP_SPEC, "--backend", "kprobe"),
        ksnoop("wild_auto", work, *j, WILD_SPEC, "--backend", "auto"),
        ksnoop("wild_kprobe", work, *j, WILD_SPEC, "--backend", "kprobe"),
        ksnoop("chain_fentry", work, *j, CHAIN_SPEC, "--backend", "fentry"),
        ksnoop("chain_kprobe", work, *j, CHAIN_SPEC, "--backend", "kprobe"),
    ]}
    fentry_ok, fentry_why = _fentry_do_mmap()
    if fentry_ok:
        tracers["mmap_fentry"] = ksnoop("mmap_fentry", work, *j, MMAP_SPEC, "--backend", "fentry")
    path = os.path.join(work, "mapped")
    with open(path, "wb") as f:
        f.write(b"k" * PAGE * (MAP_OFFSET_PAGES + MAP_PAGES))
    bed = {"tracers": tracers, "fentry": (fentry_ok, fentry_why), "ino": os.stat(path).st_ino}
    for t in tracers.values():
        t.start()
    try:
        wait_ready(tracers.values())
        bed["links"] = {name: bpfprogs.link_types(t.proc.pid) for name, t in tracers.items()}
        with open(path, "r+b") as f:
            m = mmap.mmap(f.fileno(), MAP_PAGES * PAGE, offset=MAP_OFFSET_PAGES * PAGE)
            bed["addr"] = ctypes.addressof(ctypes.c_char.from_buffer(m))
            m.close()
        send_udp(DATAGRAMS)
        time.sleep(3)
    finally:
        for t in tracers.values():
            t.stop()
    return bed


def _events(t):
    return [json.loads(line) for line in t.stdout.splitlines()]


def _my_mmap(t):
    """(entry, return) events of the workload's own mmap() (its length is distinctive)."""
    evs = [e for e in _events(t) if e["pid"] == os.getpid()]
    for i, e in enumerate(evs):
        if e["event"] == "entry" and e["values"]["len"] == MAP_PAGES * PAGE:
            ret = next(r for r in evs[i + 1:] if r["event"] == "return" and r["tid"] == e["tid"])
            return e, ret
    raise AssertionError(f"{t.name}: no do_mmap of {MAP_PAGES * PAGE} bytes: {t.stderr[-2000:]}")


@pytest.mark.parametrize("name", ["mmap_auto", "mmap_kprobe", "mmap_fentry"])
def test_do_mmap_stack_argument_is_the_real_offset(bed, name):
    if name not in bed["tracers"]:
        # only where the kernel's trampoline cannot take do_mmap: then --backend
        # fentry must refuse in one line, not trace wrong values
        res = subprocess.run(KSNOOP + ["trace", "--dry-run", "--backend", "fentry", MMAP_SPEC],
                             capture_output=True, text=True)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.startswith("ksnoop: do_mmap cannot be traced with fentry/fexit: "
                                     "this kernel's trampoline does not take it"), res.stderr
        return
    t = bed["tracers"][name]
    assert t.returncode == 0, t.stderr[-2000:]
    entry, ret = _my_mmap(t)
    assert entry["values"]["pgoff"] == MAP_OFFSET_PAGES
    assert entry["values"]["file->f_inode->i_ino"] == bed["ino"]
    assert isinstance(entry["values"]["populate"], int)  # the pointer on the stack was followed
    assert "notes" not in entry, entry
    assert ret["values"]["return"] == bed["addr"]


def test_plain_loads_read_what_the_helper_reads(bed):
    """The same chains, fentry's plain loads against kprobes' helper: the same
    values, and a NULL pointer on the way fails the read the same way."""
    got = {}
    for name in ("chain_fentry", "chain_kprobe"):
        t = bed["tracers"][name]
        assert t.returncode == 0, t.stderr[-2000:]
        evs = [e for e in _events(t) if e["pid"] == os.getpid()]
        got[name] = [(e["values"], e.get("notes")) for e in evs]
    assert len(got["chain_fentry"]) == DATAGRAMS, got
    assert got["chain_fentry"] == got["chain_kprobe"]
    values, notes = got["chain_fentry"][0]
    assert values["skb->len"] == UDP_PAYLOAD + 28
    assert values["skb->next->len"] is None
    assert notes["skb->next->len"] == "cannot read skb->next->len: -ERANGE", notes
    assert values["skb->sk->__sk_common.skc_family"] == socket.AF_INET
    assert values["skb->pkt_type"] == 0  # PACKET_HOST
    assert values["skb->sk->sk_socket->file->f_inode->i_ino"] > 0
    assert set(notes) == {"skb->next->len"}, notes


def test_backends_agree_on_do_mmap(bed):
    got = {name: _my_mmap(t)[0]["values"] for name, t in bed["tracers"].items()
           if name.startswith("mmap_")}
    del_populate = [{k: v for k, v in vals.items() if k != "populate"} for vals in got.values()]
    assert all(v == del_populate[0] for v in del_populate), got


@pytest.mark.parametrize("name", ["wild_auto", "wild_kprobe"])
def test_wildcard_traces_several_functions_on_real_traffic(bed, name):
    t = bed["tracers"][name]
    assert t.returncode == 0, t.stderr[-2000:]
    assert re.search(r"ksnoop: \*p_send_skb: \d+ functions match, \d+ traced", t.stderr), t.stderr
    assert re.search(r"attached in \d+\.\d+ s", t.stderr), t.stderr
    evs = [e for e in _events(t) if e["pid"] == os.getpid()]
    funcs = {e["function"] for e in evs}
    assert {"ip_send_skb", "udp_send_skb"} <= funcs, (funcs, t.stderr[-2000:])
    lens = [e["values"]["skb->len"] for e in evs if e["function"] == "ip_send_skb"]
    assert lens == [UDP_PAYLOAD + 28] * DATAGRAMS


def test_dry_run_says_which_backend_and_why(bed):
    res = subprocess.run(KSNOOP + ["trace", "--dry-run", "ip_send_skb(skb->len)", MMAP_SPEC,
                                   WILD_SPEC], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines, func = {}, None
    for line in res.stdout.splitlines():
        if not line.startswith(" "):
            func = line.split()[0]
        elif line.startswith("  backend "):
            lines[func] = line[len("  backend "):]
    assert lines["ip_send_skb"].startswith("fentry/fexit: "), res.stdout
    fentry_ok, why = bed["fentry"]
    if fentry_ok:
        assert lines["do_mmap"].startswith("fentry/fexit: ")
    else:
        assert lines["do_mmap"] == f"kprobe/kretprobe: this kernel's trampoline does not take it ({why})"
    # ip_send_skb is named alone, so the wildcard traces udp_send_skb only
    want = "kprobe-multi: " if _kprobe_multi() else "fentry/fexit: "
    assert lines["udp_send_skb"].startswith(want), res.stdout


def test_the_kernel_holds_the_links_each_backend_makes(bed):
    """fentry/fexit programs are attached by "tracing" links, a wildcard's
    functions by one kprobe-multi link where the kernel has them; kprobes
    (BCC's perf events) hold no link."""
    links, multi = bed["links"], _kprobe_multi()
    assert links["mmap_kprobe"] == []
    assert links["mmap_auto"] == (["tracing", "tracing"] if bed["fentry"][0] else [])
    if "mmap_fentry" in links:
        assert links["mmap_fentry"] == ["tracing", "tracing"]
    # entry values only: one program per function; both functions share a multi link
    assert links["wild_auto"] == (["kprobe_multi"] if multi else ["tracing", "tracing"])
    assert links["wild_kprobe"] == (["kprobe_multi"] if multi else [])


def test_info_how(bed):
    res = subprocess.run(KSNOOP + ["info", "--how", "do_mmap", "ip_send_skb"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("long unsigned int do_mmap(")
    assert lines[0].endswith(", struct list_head *uf);")  # no "not traceable" note any more
    # do_mmap's parameters are 8-byte scalars (8 of them in 6.1, 9 since vm_flags
    # joined): the 7th and later are on the stack, one 8-byte slot each
    stack = _do_mmap_params()[6:]
    assert stack, "do_mmap has no stack arguments on this kernel"
    if bed["fentry"][0]:
        where = ", ".join(f"{name} (ctx[{6 + k}])" for k, name in enumerate(stack))
        assert lines[1] == ("  /* fentry/fexit: the kernel allows tracing programs and the function "
                            f"is in BTF; on the stack, copied by the trampoline: {where} */")
    else:
        where = ", ".join(f"{name} (sp+{8 + 8 * k})" for k, name in enumerate(stack))
        assert lines[1].startswith("  /* kprobe/kretprobe: this kernel's trampoline does not take it")
        assert lines[1].endswith(f"; on the stack, read at entry: {where} */")
    assert lines[3] == ("  /* fentry/fexit: the kernel allows tracing programs and the function "
                        "is in BTF */")
