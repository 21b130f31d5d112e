"""Bytes a tracer's BPF programs write into its kernel-to-user buffers,
read from the buffers themselves (used by bench/guest_cost.py).

Both kinds of buffer keep a byte counter that only grows, advanced by the
kernel by the size of every record it writes:

  perf buffer  one ring per CPU, mmapped by the tool; the first page is
               struct perf_event_mmap_page, whose data_head (offset 1024) is
               that counter.  The rings are found in /proc/PID/maps (mappings
               of anon_inode:[perf_event]) and read through /proc/PID/mem, or
               where the kernel refuses that, through the tool's own ring fds
               (see PerfRing); nothing is allocated on the tool's events.
  BPF ringbuf  one ring per map; the page after the consumer page holds
               producer_pos, the counter.  The map is found through
               /proc/PID/fdinfo (map_type 27), its fd duplicated with
               pidfd_getfd() and mapped read-only (producer page and data).

The difference of the counters over a workload is the exact number of bytes
written, framing included (perf: header, raw-size word, padding, and any
PERF_RECORD_LOST records; ringbuf: 8-byte header, padding to 8, discarded
records).  `census` walks the records written between two readings and
reports each one's type, size in the ring and payload size: the perf sample's
raw size word (the bytes given to bpf_perf_event_output, rounded so that the
record stays 8-aligned) or the ringbuf header's length (exactly the bytes
given to bpf_ringbuf_output).  Records stay intact after the tool consumed
them until the producer wraps around, so a census is taken only over a span
shorter than the ring, right after it was written.
"""

import ctypes
import mmap
import os
import re
import struct
from collections import Counter

PAGE = mmap.PAGESIZE
SYS_PIDFD_GETFD = 438  # x86_64 (and every arch using the generic table)
BPF_MAP_TYPE_RINGBUF = 27
RINGBUF_HDR = 8
RINGBUF_BUSY = 1 << 31
RINGBUF_DISCARD = 1 << 30
PERF_HEAD_OFF = 1024  # offsetof(struct perf_event_mmap_page, data_head)
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9


class PerfRing:
    """One CPU's perf ring of process ``pid``, mapped there at ``start``.

    Read through /proc/PID/mem where the kernel allows it (6.1, the VM test
    bed's kernel, does: the ring's pages are ordinary pages there); newer
    kernels (6.18 here) map the ring so that /proc/PID/mem cannot read it:
    then ``fd`` (the tool's perf event fd for this ring) is duplicated and
    mapped here too, read-only, with the very size the tool mapped, which
    shares the tool's ring."""

    kind = "perf"

    def __init__(self, pid, start, length, fd=None):
        self.pid, self.start, self.length = pid, start, length
        self._mem = self._fd = self._map = None
        if fd is None:
            self._mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
            self.via = "/proc/PID/mem"
        else:
            self._fd = pidfd_getfd(pid, fd)
            self._map = mmap.mmap(self._fd, length, prot=mmap.PROT_READ)
            self.via = "its fd, mapped read-only"
        off, size = struct.unpack("<QQ", self._read_abs(PERF_HEAD_OFF + 16, 16))
        # data_offset/data_size: set by the kernel since 4.1; older ones leave 0
        self.data_off = off or PAGE
        self.data_size = size or (length - PAGE)

    def _read_abs(self, off, n):
        """``n`` bytes at offset ``off`` of the tool's mapping."""
        if self._map is not None:
            return self._map[off:off + n]
        data = os.pread(self._mem, n, self.start + off)
        if len(data) != n:
            raise OSError(f"short read of /proc/{self.pid}/mem at {self.start + off:#x}")
        return data

    def head(self):
        return struct.unpack("<Q", self._read_abs(PERF_HEAD_OFF, 8))[0]

    def _read(self, pos, n):
        off = pos % self.data_size
        first = min(n, self.data_size - off)
        data = self._read_abs(self.data_off + off, first)
        if first < n:
            data += self._read_abs(self.data_off, n - first)
        return data

    def records(self, pos0, pos1):
        """[(type, bytes in the ring, payload bytes or lost count)] from pos0 to pos1."""
        out, pos = [], pos0
        while pos < pos1:
            rtype, _misc, size = struct.unpack("<IHH", self._read(pos, 8))
            if size < 8:
                raise RuntimeError(f"perf ring of {self.pid}: bad record size {size} at {pos}")
            if rtype == PERF_RECORD_SAMPLE:
                (raw,) = struct.unpack("<I", self._read(pos + 8, 4))
                out.append(("sample", size, raw))
            elif rtype == PERF_RECORD_LOST:
                _id, lost = struct.unpack("<QQ", self._read(pos + 8, 16))
                out.append(("lost", size, lost))
            else:
                out.append((f"type{rtype}", size, 0))
            pos += size
        return out

    def close(self):
        if self._map is not None:
            self._map.close()
        for fd in (self._mem, self._fd):
            if fd is not None:
                os.close(fd)


class RingBuf:
    """A BPF ring buffer map held open by process ``pid`` as fd ``fd``."""

    kind = "ringbuf"

    def __init__(self, pid, fd, max_entries):
        self.pid, self.data_size = pid, max_entries
        self._fd = pidfd_getfd(pid, fd)
        # producer page + data pages (the kernel maps the data twice in a row,
        # so a record that wraps reads contiguously)
        self._map = mmap.mmap(self._fd, PAGE + 2 * max_entries, prot=mmap.PROT_READ, offset=PAGE)
        self.via = "its map fd, mapped read-only"

    def head(self):
        return struct.unpack_from("<Q", self._map, 0)[0]

    def records(self, pos0, pos1):
        """[(type, bytes in the ring, payload bytes)] from pos0 to pos1."""
        out, pos = [], pos0
        mask = self.data_size - 1
        while pos < pos1:
            (hdr,) = struct.unpack_from("<I", self._map, PAGE + (pos & mask))
            if hdr & RINGBUF_BUSY:
                raise RuntimeError(f"ringbuf of {self.pid}: record at {pos} not committed yet")
            length = hdr & ~(RINGBUF_BUSY | RINGBUF_DISCARD)
            size = (length + RINGBUF_HDR + 7) & ~7
            out.append(("discarded" if hdr & RINGBUF_DISCARD else "sample", size, length))
            pos += size
        return out

    def close(self):
        self._map.close()
        os.close(self._fd)


def pidfd_getfd(pid, fd):
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        new = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if new < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd({pid}, {fd}): {os.strerror(err)}")
        return new
    finally:
        os.close(pidfd)


def _fds(pid):
    """{fd: (link target, fdinfo text)} of process ``pid``."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                out[int(fd)] = (target, f.read())
        except OSError:
            continue
    return out


def _perf_rings(pid, fds):
    regions = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if line.rstrip().endswith("anon_inode:[perf_event]"):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                regions.append((lo, hi - lo))
    if not regions:
        return []
    rings = []
    try:
        for lo, n in regions:
            rings.append(PerfRing(pid, lo, n))
        return rings
    except OSError:
        close(rings)
    # Which perf event fds own the rings?  A tool also holds perf events that
    # attach its kprobes, and mapping one of those would give it a ring.  The
    # ring fds are the perf events it waits on through epoll (libbpf's
    # perf_buffer does), listed as tfd in the epoll fd's fdinfo.
    polled = set()
    for target, info in fds.values():
        if target == "anon_inode:[eventpoll]":
            polled |= {int(m) for m in re.findall(r"^tfd:\s*(\d+)", info, re.M)}
    ring_fds = sorted(fd for fd in polled if fds.get(fd, ("",))[0] == "anon_inode:[perf_event]")
    sizes = {n for _, n in regions}
    if len(ring_fds) != len(regions) or len(sizes) != 1:
        raise RuntimeError(f"process {pid}: cannot read its {len(regions)} perf rings "
                           f"(/proc/PID/mem refused; {len(ring_fds)} perf fds under epoll)")
    (size,) = sizes
    return [PerfRing(pid, 0, size, fd=fd) for fd in ring_fds]


def rings_of(pid):
    """Every perf ring and BPF ring buffer that process ``pid`` reads."""
    fds = _fds(pid)
    rings = _perf_rings(pid, fds)
    seen = set()  # a tool may hold one map through several fds: count each map once
    for fd, (target, info) in sorted(fds.items()):
        if not target.startswith("anon_inode:bpf-map"):
            continue
        mtype = re.search(r"^map_type:\s*(\d+)", info, re.M)
        map_id = re.search(r"^map_id:\s*(\d+)", info, re.M)
        if not (mtype and int(mtype.group(1)) == BPF_MAP_TYPE_RINGBUF):
            continue
        if map_id:
            if map_id.group(1) in seen:
                continue
            seen.add(map_id.group(1))
        size = int(re.search(r"^max_entries:\s*(\d+)", info, re.M).group(1))
        rings.append(RingBuf(pid, fd, size))
    return rings


def heads(rings):
    return [r.head() for r in rings]


def written(before, after):
    """Bytes written into all the rings between two ``heads`` readings."""
    return sum(a - b for b, a in zip(before, after))


def census(rings, before, after):
    """Counter of (type, bytes in the ring, payload bytes) -> records, over
    the records written between two ``heads`` readings; None if a ring
    was written more than once around (records overwritten)."""
    out = Counter()
    for ring, b, a in zip(rings, before, after):
        if a - b > ring.data_size:
            return None
        out.update(ring.records(b, a))
    return out


def close(rings):
    for r in rings:
        r.close()
