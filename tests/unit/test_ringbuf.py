"""ringbuf.RingReader on a ring laid out as the kernel maps a BPF ring buffer.

The reader works on offsets in the mapping and keeps the size of the last
record it saw: records of one size, discarded or busy records of that same
size, size changes, the consumer position published during a long batch.
"""

import mmap
import os
import struct
import time

from ksnoop.trace.ringbuf import RingReader

TIME_SCALE = float(os.environ.get("KSNOOP_TIME_SCALE", "1"))  # the TCG guest: 30

BUSY, DISCARD = 1 << 31, 1 << 30


class Ring:
    """Consumer page, producer page, then the data area twice in a row."""

    def __init__(self, size, page=4096, flush=64):
        self.size, self.page, self.prod = size, page, 0
        self.data = bytearray(page + 2 * size)
        self.cons = bytearray(page)
        r = RingReader.__new__(RingReader)
        r.size, r.page, r.delivered, r.bytes, r.flush_bytes = size, page, 0, 0, flush
        r._data, r._cons = self.data, self.cons
        self.reader = r

    def write(self, payload, flags=0):
        rec = struct.pack("<II", len(payload) | flags, 0) + payload
        pos = self.prod & (self.size - 1)
        if pos + len(rec) <= self.size:
            for base in (self.page, self.page + self.size):
                self.data[base + pos:base + pos + len(rec)] = rec
        else:
            for i, byte in enumerate(rec):
                pos = (self.prod + i) & (self.size - 1)
                self.data[self.page + pos] = self.data[self.page + self.size + pos] = byte
        at = self.prod
        self.prod += (len(payload) + 15) & ~7
        struct.pack_into("<Q", self.data, 0, self.prod)
        return at

    def set_flags(self, at, flags):
        """Change a record's header flags (the producer committing or discarding it)."""
        for base in (self.page, self.page + self.size):
            off = base + (at & (self.size - 1))
            hdr = struct.unpack_from("<I", self.data, off)[0] & ~(BUSY | DISCARD)
            struct.pack_into("<I", self.data, off, hdr | flags)

    @property
    def consumer(self):
        return struct.unpack_from("<Q", self.reader._cons)[0]


def collect(got):
    def handle(buf, off, size):
        got.append(bytes(buf[off:off + size]))
    return handle


def test_same_size_discarded_and_busy_records_are_not_delivered():
    ring = Ring(1 << 12)
    got = []
    ring.write(b"a" * 12)
    ring.write(b"x" * 12, DISCARD)  # the length the reader just saw, with a flag
    ring.write(b"b" * 12)
    busy = ring.write(b"c" * 12, BUSY)
    ring.write(b"d" * 12)
    assert ring.reader.consume(collect(got)) == 2
    assert got == [b"a" * 12, b"b" * 12]
    assert ring.consumer == busy  # stops at the record being written
    ring.set_flags(busy, 0)  # committed now
    assert ring.reader.consume(collect(got)) == 2
    assert got[2:] == [b"c" * 12, b"d" * 12] and ring.consumer == ring.prod
    assert (ring.reader.delivered, ring.reader.bytes) == (4, 48)
    # the same inside one run of same-size records (their headers read at once)
    ring = Ring(1 << 12, flush=1 << 12)
    got = []
    for p in (b"e" * 16, b"f" * 16):
        ring.write(p)
    busy = ring.write(b"g" * 16, BUSY)
    ring.write(b"y" * 16, DISCARD)
    ring.write(b"h" * 16)
    assert ring.reader.consume(collect(got)) == 2 and ring.consumer == busy
    ring.set_flags(busy, 0)
    assert ring.reader.consume(collect(got)) == 2
    assert got == [b"e" * 16, b"f" * 16, b"g" * 16, b"h" * 16]


def test_size_changes_and_empty_records_count_exactly():
    ring = Ring(1 << 12)
    sent = [b"", b"p" * 3, b"p" * 3, b"", b"q" * 40, b"q" * 40, b"q" * 40, b"r", b""]
    for p in sent:
        ring.write(p)
    got = []
    assert ring.reader.consume(collect(got)) == len(sent)
    assert got == sent and ring.consumer == ring.prod
    assert ring.reader.bytes == sum(map(len, sent))


def test_records_past_the_producer_are_not_read():
    """Past the producer position lie the records of the ring's previous lap,
    with headers that look committed and of the same size: never delivered."""
    ring = Ring(1 << 12, flush=1 << 12)  # one run of headers covers everything
    for i in range(20):
        ring.write(bytes([i]) * 24)
    struct.pack_into("<Q", ring.data, 0, 5 * 32)  # the producer is at record 5
    got = []
    assert ring.reader.consume(collect(got)) == 5
    assert got == [bytes([i]) * 24 for i in range(5)] and ring.consumer == 5 * 32
    struct.pack_into("<Q", ring.data, 0, 13 * 32)
    assert ring.reader.consume(collect(got)) == 8
    assert got[5:] == [bytes([i]) * 24 for i in range(5, 13)]


def test_consumer_position_published_during_a_long_batch():
    """The kernel may reuse space while the batch is still being handled: the
    position is stored at least every flush_bytes, not only at the end."""
    ring = Ring(1 << 12, flush=64)
    for i in range(40):
        ring.write(bytes([i]) * 24)  # 32 bytes a record
    seen = []

    def handle(buf, off, size):
        seen.append((off - ring.page - 8, ring.consumer))

    assert ring.reader.consume(handle) == 40
    for at, published in seen:
        assert at - 64 <= published <= at  # never ahead of a record being handled
    assert ring.consumer == 40 * 32


def test_exception_consumes_its_record_and_resumes_after_it():
    ring = Ring(1 << 8)
    for round_ in range(12):  # around the ring several times, wrapping records
        for i in range(3):
            ring.write(bytes([round_, i]) * 10)
        calls = []

        def fail_second(buf, off, size, calls=calls):
            calls.append(bytes(buf[off:off + size]))
            if len(calls) == 2:
                raise KeyboardInterrupt

        try:
            ring.reader.consume(fail_second)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the handler's exception was swallowed")
        rest = []
        assert ring.reader.consume(collect(rest)) == 1
        assert calls + rest == [bytes([round_, i]) * 10 for i in range(3)]
        assert ring.consumer == ring.prod


def test_consumer_position_never_seen_going_back():
    """The kernel reads the consumer position at any moment: a store that passes
    through another value (struct.pack_into zeroes its destination first, then
    writes) shows it a consumer far behind, the ring looks full, and the event
    being sent is lost.  A second process watches the position, whole, as the
    kernel would, while the reader stores it once per record."""
    shared = mmap.mmap(-1, mmap.PAGESIZE)  # shared with the watcher after fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the watcher
        code = 1
        try:
            os.close(r)
            with memoryview(shared) as m, m[:16].cast("Q") as words:
                last = back = 0
                while not words[1]:  # until told to stop
                    now = words[0]
                    if now < last:
                        back += 1
                    last = now
            os.write(w, b"%d" % back)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        ring = Ring(1 << 16, flush=8)  # one store per record
        ring.reader._cons = shared
        # a second and 10,000 stores at least, however slow the machine (the
        # TCG guest makes about 7,000 a second); then a hang guard, not a timing
        stores, start = 0, time.monotonic()
        while ((time.monotonic() - start < 1.0 or stores <= 10_000)
               and time.monotonic() - start < 60 * TIME_SCALE):
            for _ in range(64):
                ring.write(b"x" * 24)
            stores += ring.reader.consume(lambda b, o, s: None)
        assert ring.consumer == ring.prod and stores > 10_000
    finally:
        struct.pack_into("<Q", shared, 8, 1)
        seen = os.read(r, 64)
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert status == 0 and seen == b"0", f"the position went back {seen.decode()} times"
