"""Event wire format end to end, without a kernel: plan -> layout -> hand-packed
bytes (struct.pack at the layout's offsets) -> Decoder -> Formatter text/line/json,
and the C structs codegen emits agree with the layout byte for byte."""

import json
import os
import re
import struct

import pytest
from btfwriter import abi_corners

from ksnoop.errors import KsnoopError
from ksnoop.kernel.files import Kernel
from ksnoop.trace.codegen import Machine, event_struct, generate
from ksnoop.trace.events import Decoder
from ksnoop.trace.output import Formatter, describe_plan
from ksnoop.trace.resolve import resolve
from ksnoop.trace.spec import parse
from ksnoop.trace.wire import CALL, ENTRY, HEADER, HEADER_SIZE, RETURN, layouts_for

MACHINE = Machine(self_tgid=1, ncpus=4)  # a stand-in: codegen takes machine facts as input

VMLINUX = "/sys/kernel/btf/vmlinux"
pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF")

SPECS = [
    "do_sys_openat2(dfd, filename, how, how->flags, return)",  # 0: entry + return events
    "ip_send_skb(net, skb->len, skb->dev->name, skb->pkt_type, return < 0)",  # 1: stash
    "current_time(return)",  # 2: 16-byte struct in rax:rdx
]
# a 12-byte struct in two registers: 6.18 has one, 6.1 and 6.12 do not, so the
# function is 6.18's prototype in a crafted BTF (btfwriter.abi_corners)
CORNER_SPECS = ["ZSTD_CCtx_setFParams(fparams)"]
LIMIT = 64
EFAULT = -14


@pytest.fixture(scope="module")
def plan():
    kernel = Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent")
    return resolve([parse(s) for s in SPECS], kernel, limit=LIMIT)


@pytest.fixture(scope="module")
def corner_plan(tmp_path_factory):
    d = tmp_path_factory.mktemp("corners")
    (d / "vmlinux").write_bytes(abi_corners())
    kernel = Kernel(btf_path=str(d / "vmlinux"), sys_btf=str(d), kallsyms_path="/nonexistent")
    return resolve([parse(s) for s in CORNER_SPECS], kernel, limit=LIMIT)


def layout(plan, func, kind):
    (ev,) = [ev for ev in layouts_for(plan.funcs[func]) if ev.kind == kind]
    return ev


def event(ev, comm=b"cat", ts=1_500_000_123_456, tgid=42, tid=43, cpu=1):
    buf = bytearray(ev.size)
    HEADER.pack_into(buf, 0, ts, tgid, tid, cpu, ev.func, ev.kind, 0, comm)
    return buf


def fmt(plan, buf):
    ev = Decoder(plan).decode(bytes(buf))
    return ev, {f: Formatter(f).event(ev) for f in ("text", "line", "json")}


# ------------------------------------------------------------------ layouts
def test_layout_kinds(plan, corner_plan):
    assert [ev.kind for ev in layouts_for(plan.funcs[0])] == [ENTRY, RETURN]
    assert [ev.kind for ev in layouts_for(plan.funcs[1])] == [CALL]
    assert plan.funcs[1].stash
    assert [ev.kind for ev in layouts_for(plan.funcs[2])] == [RETURN]
    assert [ev.kind for ev in layouts_for(corner_plan.funcs[0])] == [ENTRY]


def test_slots_are_aligned_and_do_not_overlap(plan, corner_plan):
    for fp in plan.funcs + corner_plan.funcs:
        for ev in layouts_for(fp):
            at = HEADER_SIZE
            for s in ev.slots:
                assert s.offset == at and s.offset % 8 == 0
                parts = sorted(p for p in (s.ptr, s.status, s.data) if p >= 0)
                assert parts[0] == s.offset
                at = s.offset + 8 * ((max(parts) - s.offset + (s.size if s.data == max(parts)
                                                               else 8) + 7) // 8)
            assert ev.tail == at


_FIELD = re.compile(r"^\t(u8|u64|s32|struct ksnoop_hdr) (\w+)(?:\[(\d+)\])?;$")
_ASSERT = re.compile(r"__builtin_offsetof\(struct (\w+), (\w+)\) == (\d+)")
_SIZE = re.compile(r"sizeof\(struct (\w+)\) == (\d+)")


def c_offsets(text):
    """Offsets of a packed C struct computed from its declarations (not its asserts)."""
    sizes = {"u8": 1, "u64": 8, "s32": 4, "struct ksnoop_hdr": HEADER_SIZE}
    offsets, at = {}, 0
    for line in text.splitlines():
        m = _FIELD.match(line)
        if m:
            ctype, name, count = m.groups()
            offsets[name] = at
            at += sizes[ctype] * (int(count) if count else 1)
    return offsets, at


def test_emitted_c_struct_matches_the_layout(plan, corner_plan):
    n = 0
    for fp in plan.funcs + corner_plan.funcs:
        c_text, _ = generate(plan if fp in plan.funcs else corner_plan, MACHINE)
        for ev in layouts_for(fp):
            text = event_struct(ev)
            assert text in c_text
            asserts = {(s, f): int(o) for s, f, o in _ASSERT.findall(text)}
            (size,) = [(s, int(z)) for s, z in _SIZE.findall(text)]
            assert size == (ev.c_name, ev.size)
            expected = {}
            for i, s in enumerate(ev.slots):
                for part in ("ptr", "status", "data"):
                    if getattr(s, part) >= 0:
                        expected[(ev.c_name, f"v{i}_{part}")] = getattr(s, part)
            assert asserts == expected
            # The declarations themselves put every field where the assert says.
            declared, total = c_offsets(text)
            assert total == ev.size and declared["hdr"] == 0
            for (_, name), off in asserts.items():
                assert declared[name] == off
            n += 1
    assert n == 5


def test_header_struct_is_40_bytes(plan):
    c_text, _ = generate(plan, MACHINE)
    body = c_text.split("struct ksnoop_hdr {", 1)[1].split("}", 1)[0]
    decl = "\n".join("\t" + line.strip() for line in body.strip().splitlines())
    fields = re.findall(r"\t(u64|u32|u16|u8|char) (\w+)(?:\[(\d+)\])?;", decl)
    sizes = {"u64": 8, "u32": 4, "u16": 2, "u8": 1, "char": 1}
    assert sum(sizes[t] * int(n or 1) for t, _, n in fields) == HEADER_SIZE == HEADER.size
    assert [f[1] for f in fields] == ["ts", "tgid", "tid", "cpu", "func", "kind", "flags", "comm"]


# ------------------------------------------------------------------- decode
def openat_entry(plan, filename=(0xFFFF888000001000, b"/etc/hosts\0"),
                 how=(0xFFFF888000002000, 0), flags=(0, 0x8000)):
    ev = layout(plan, 0, ENTRY)
    buf = event(ev)
    dfd, fname, howv, hflags = ev.slots
    struct.pack_into("<q", buf, dfd.ptr, -100)
    ptr, data = filename
    status = len(data) if isinstance(data, bytes) else data
    struct.pack_into("<Qi", buf, fname.ptr, ptr, status)
    if isinstance(data, bytes):
        buf[fname.data:fname.data + len(data)] = data
    struct.pack_into("<Qi", buf, howv.ptr, how[0], how[1])
    if how[1] == 0 and how[0]:
        struct.pack_into("<QQQ", buf, howv.data, 0o100000, 0o644, 0)
    struct.pack_into("<i", buf, hflags.status, flags[0])
    struct.pack_into("<Q", buf, hflags.data, flags[1])
    return buf


def test_decode_header_and_values(plan):
    ev, _ = fmt(plan, openat_entry(plan))
    assert (ev.ts_ns, ev.tgid, ev.tid, ev.cpu, ev.comm, ev.kind) == (
        1_500_000_123_456, 42, 43, 1, "cat", ENTRY)
    assert ev.func is plan.funcs[0]
    assert [c.value.name for c in ev.values] == ["dfd", "filename", "how", "how->flags"]
    dfd, fname, how, flags = ev.values
    assert dfd.ptr == (1 << 64) - 100 and dfd.data == struct.pack("<q", -100)
    assert (fname.ptr, fname.status) == (0xFFFF888000001000, 11)
    assert flags.ptr is None and flags.data == struct.pack("<Q", 0x8000)


def test_format_good_event(plan):
    _, out = fmt(plan, openat_entry(plan))
    assert out["text"] == "\n".join([
        "cat                   42    1      1500.000123 do_sys_openat2(",
        "  dfd = (int)-100,",
        '  filename = "/etc/hosts",',
        "  how = *(struct open_how){",
        "   .flags = (__u64)32768,",
        "   .mode = (__u64)420,",
        "  },",
        "  how->flags = (__u64)32768",
        ");"])
    assert out["line"] == (
        'cat                   42    1      1500.000123 do_sys_openat2(dfd = (int)-100, '
        'filename = "/etc/hosts", how = *(struct open_how){.flags = (__u64)32768,'
        '.mode = (__u64)420,}, how->flags = (__u64)32768)')
    assert {k: v for k, v in json.loads(out["json"]).items() if k != "wall"} == {
        "time": 1500.000123456, "comm": "cat", "pid": 42, "tid": 43, "cpu": 1,
        "function": "do_sys_openat2", "event": "entry",
        "values": {"dfd": -100, "filename": "/etc/hosts",
                   "how": {"flags": 32768, "mode": 420, "resolve": 0}, "how->flags": 32768}}


def test_failed_reads_are_said(plan):
    buf = openat_entry(plan, filename=(0x7FFE0000, EFAULT), how=(0xFFFF888000002000, EFAULT),
                       flags=(EFAULT, 0))
    _, out = fmt(plan, buf)
    lines = out["text"].splitlines()
    assert lines[2] == ("  filename = (char *)0x7ffe0000, /* Cannot show 'filename' as 'char *'. "
                        "Userspace/invalid ptr? (read failed: -EFAULT) */")
    assert lines[3] == ("  how = (struct open_how *)0xffff888000002000, /* Cannot show 'how' as "
                        "'struct open_how *'. Userspace/invalid ptr? (read failed: -EFAULT) */")
    assert lines[4] == "  how->flags = ? /* cannot read how->flags: -EFAULT */"
    assert "Userspace/invalid ptr? (read failed: -EFAULT) */, how = " in out["line"]
    j = json.loads(out["json"])
    assert j["values"]["filename"] == "0x7ffe0000" and j["values"]["how->flags"] is None
    assert j["notes"]["how"].startswith("Cannot show 'how' as 'struct open_how *'. "
                                        "Userspace/invalid ptr?")
    assert j["notes"]["how->flags"] == "cannot read how->flags: -EFAULT"


def test_failed_hop_gives_no_pointer(plan):
    """A pointer hop that faults leaves ptr 0 with a negative status: unreadable, not NULL."""
    _, out = fmt(plan, openat_entry(plan, how=(0, EFAULT)))
    assert "how = (struct open_how *)?, /* Cannot show 'how'" in out["text"]


def test_null_pointers(plan):
    buf = openat_entry(plan, filename=(0, 0), how=(0, 0))
    _, out = fmt(plan, buf)
    lines = out["text"].splitlines()
    assert lines[2:4] == ["  filename = (char *)NULL,", "  how = (struct open_how *)NULL,"]
    j = json.loads(out["json"])
    assert j["values"]["filename"] is None and j["values"]["how"] is None
    assert "notes" not in j


def test_codegen_does_not_read_through_null(plan):
    """The NULL display needs status 0 for a NULL pointer, so the C must not read it."""
    c_text, _ = generate(plan, MACHINE)
    assert "_str(e->v1_data, 256" not in c_text  # LIMIT
    # a string is read only through a non-NULL pointer, as user or kernel memory by its address
    assert ("if (!e->v1_status && e->v1_ptr) e->v1_status = (s64)e->v1_ptr >= 0 ? "
            f"bpf_probe_read_user_str(e->v1_data, {LIMIT}, (void *)(e->v1_ptr + 0)) : "
            f"bpf_probe_read_kernel_str(e->v1_data, {LIMIT}, (void *)(e->v1_ptr + 0));") in c_text
    assert ("if (!e->v2_status && e->v2_ptr) e->v2_status = "
            "bpf_probe_read_kernel(e->v2_data, 24, (void *)(e->v2_ptr + 0));") in c_text


def test_strings(plan):
    ev = layout(plan, 0, ENTRY)
    fname = ev.slots[1]
    assert fname.size == LIMIT
    buf = openat_entry(plan, filename=(0xFFFF1, b'a"b\\c\n\x01\0'))
    _, out = fmt(plan, buf)
    assert out["text"].splitlines()[2] == '  filename = "a\\"b\\\\c\\n\\001",'  # escape.c_string
    assert json.loads(out["json"])["values"]["filename"] == 'a"b\\c\n\x01'
    # A string that filled the buffer is said to be truncated.
    buf = openat_entry(plan, filename=(0xFFFF1, b"x" * (LIMIT - 1) + b"\0"))
    _, out = fmt(plan, buf)
    assert out["text"].splitlines()[2] == (
        f'  filename = "{"x" * (LIMIT - 1)}", /* string truncated at {LIMIT - 1} bytes */')
    # Empty string.
    _, out = fmt(plan, openat_entry(plan, filename=(0xFFFF1, b"\0")))
    assert out["text"].splitlines()[2] == '  filename = "",'


def test_return_event(plan):
    ev = layout(plan, 0, RETURN)
    buf = event(ev, comm=b"cat\0garbage")
    struct.pack_into("<q", buf, ev.slots[0].ptr, -2)
    e, out = fmt(plan, buf)
    assert e.comm == "cat" and e.kind == RETURN
    # do_sys_openat2 returns long in the guests' 6.1 and 6.12, int in the host's 6.18
    rtype = Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent").vmlinux[
        plan.funcs[0].ret[0].type_id].name
    assert rtype in ("int", "long int")
    assert out["text"].splitlines()[1:] == [f"  return = ({rtype})-2 (-ENOENT)", "); (0.000us)"]
    assert out["line"].endswith(f"do_sys_openat2() => return = ({rtype})-2 (-ENOENT) (0.000us)")
    j = json.loads(out["json"])
    assert (j["event"], j["values"]) == ("return", {"return": -2})


def test_stash_event_with_truncated_struct(plan):
    ev = layout(plan, 1, CALL)
    net, length, name, pkt_type, ret = ev.slots
    buf = event(ev, comm=b"ping", ts=2_000_000_000, tgid=7, tid=8, cpu=0)
    struct.pack_into("<Qi", buf, net.ptr, 0xFFFF888000003000, 0)
    struct.pack_into("<I", buf, net.data, 5)  # net->passive.refs.counter
    struct.pack_into("<i", buf, length.status, 0)
    struct.pack_into("<I", buf, length.data, 84)
    struct.pack_into("<i", buf, name.status, 0)
    buf[name.data:name.data + 3] = b"lo\0"
    struct.pack_into("<iQ", buf, pkt_type.status, 0, 0)
    struct.pack_into("<Q", buf, pkt_type.data, 4)
    struct.pack_into("<q", buf, ret.ptr, -22)
    e, out = fmt(plan, buf)
    assert e.kind == CALL
    net_size = plan.funcs[1].entry[0].full_size
    assert out["text"].splitlines() == [
        "ping                   7    0         2.000000 ip_send_skb(",
        "  net = *(struct net){",
        "   .passive = (refcount_t){",
        "    .refs = (atomic_t){",
        "     .counter = (int)5,",
        "    },",
        "   },",
        f"  }} /* {LIMIT} of {net_size} bytes */,",
        "  skb->len = (unsigned int)84,",
        '  skb->dev->name = (char[16])"lo",',
        "  skb->pkt_type = (__u8)4,",
        "  return = (int)-22 (-EINVAL)",
        "); (0.000us)"]
    assert out["text"].count(f"{LIMIT} of {net_size}") == 1  # said once, not twice
    # one line: entry values in the parentheses, return values after "=>"
    assert out["line"].endswith(
        '(unsigned int)84, skb->dev->name = (char[16])"lo", skb->pkt_type = (__u8)4) '
        "=> return = (int)-22 (-EINVAL) (0.000us)")
    j = json.loads(out["json"])
    assert j["event"] == "call"
    assert j["notes"] == {"net": f"{LIMIT} bytes of {net_size}"}
    assert j["values"]["net"]["__truncated__"] == {"have": LIMIT, "size": net_size}
    assert {k: j["values"][k] for k in ("skb->len", "skb->dev->name", "skb->pkt_type",
                                        "return")} == {
        "skb->len": 84, "skb->dev->name": "lo", "skb->pkt_type": 4, "return": -22}


def test_memory_read_failure(plan):
    ev = layout(plan, 1, CALL)
    buf = event(ev)
    struct.pack_into("<i", buf, ev.slots[2].status, EFAULT)
    _, out = fmt(plan, buf)
    assert "  skb->dev->name = ?, /* cannot read skb->dev->name: -EFAULT */" in out["text"]
    assert json.loads(out["json"])["values"]["skb->dev->name"] is None


def test_struct_returned_in_two_registers(plan):
    ev = layout(plan, 2, RETURN)
    buf = event(ev)
    struct.pack_into("<qq", buf, ev.slots[0].data, 1700000000, 999)
    _, out = fmt(plan, buf)
    assert out["text"].splitlines()[1:] == [
        "  return = (struct timespec64){", "   .tv_sec = (time64_t)1700000000,",
        "   .tv_nsec = (long int)999,", "  }", "); (0.000us)"]
    assert json.loads(out["json"])["values"] == {"return": {"tv_sec": 1700000000,
                                                            "tv_nsec": 999}}


def test_struct_argument_in_registers(corner_plan):
    ev = layout(corner_plan, 0, ENTRY)
    buf = event(ev)
    struct.pack_into("<iii", buf, ev.slots[0].data, 1, 0, 1)
    _, out = fmt(corner_plan, buf)
    assert json.loads(out["json"])["values"] == {
        "fparams": {"contentSizeFlag": 1, "checksumFlag": 0, "noDictIDFlag": 1}}
    assert "12 bytes" not in out["text"] and "of 16" not in out["text"]


def test_bad_events_raise_ksnoop_errors(plan):
    d = Decoder(plan)
    with pytest.raises(KsnoopError, match="short event: 10 bytes"):
        d.decode(b"\0" * 10)
    buf = bytearray(HEADER_SIZE)
    HEADER.pack_into(buf, 0, 0, 0, 0, 0, 99, ENTRY, 0, b"")
    with pytest.raises(KsnoopError, match="unknown function/kind 99/1"):
        d.decode(bytes(buf))
    ev = layout(plan, 0, ENTRY)
    with pytest.raises(KsnoopError, match=f"short event for do_sys_openat2: 50 of {ev.size} bytes"):
        d.decode(bytes(event(ev))[:50])


def test_text_header_only_for_text():
    assert Formatter("text").header().split() == ["TASK", "PID", "CPU#", "TIMESTAMP", "FUNCTION"]
    assert Formatter("line").header() is None and Formatter("json").header() is None


def test_describe_plan(plan):
    text = describe_plan(plan)
    assert "ip_send_skb: stash: entry values held until return" in text
    assert "  return return: int (scalar) if < 0" in text
    assert f"  entry  filename: char * (string, up to {LIMIT - 1} bytes)" in text
    net = plan.funcs[1].entry[0]
    assert f"  entry  net: struct net * (deref, {LIMIT} of {net.full_size} bytes)" in text
    p = resolve([parse("ip_send_skb(skb->len > 1, skb->len < 9)")],
                Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent"))
    assert "  entry  skb->len: unsigned int (scalar) if > 1 and < 9" in describe_plan(p)


def test_scratch_map_per_cpu_or_one_slot_per_cpu(plan):
    """Per-CPU map values are limited to 32 KiB: a bigger event gets a CPU-indexed array."""
    c_text, _ = generate(plan, Machine(self_tgid=1, ncpus=3))
    assert "BPF_PERCPU_ARRAY(ksnoop_scratch, struct ksnoop_scratch_t, 1);" in c_text
    assert "#define KSNOOP_SCRATCH_SLOT 0" in c_text
    kernel = Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent")
    big = resolve([parse("wakeup_kcompactd(pgdat)")], kernel, limit=65536)
    c_text, _ = generate(big, Machine(self_tgid=1, ncpus=3))
    assert "BPF_ARRAY(ksnoop_scratch, struct ksnoop_scratch_t, 3);" in c_text
    assert "#define KSNOOP_SCRATCH_SLOT bpf_get_smp_processor_id()" in c_text
    assert "u32 slot = KSNOOP_SCRATCH_SLOT;" in c_text
    size = int(re.search(r"u8 buf\[(\d+)\];", c_text).group(1))
    assert size == layouts_for(big.funcs[0])[0].size > 32768


@pytest.mark.parametrize("text,n", [("0-1\n", 2), ("0\n", 1), ("0-3,8\n", 9), ("0,2-5", 6)])
def test_possible_cpus(tmp_path, text, n):
    from ksnoop.kernel.files import possible_cpus

    f = tmp_path / "possible"
    f.write_text(text)
    assert possible_cpus(str(f)) == n
    assert possible_cpus(str(tmp_path / "missing")) == (os.cpu_count() or 1)
