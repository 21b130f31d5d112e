"""A BPF ring buffer read in place: its pages mapped into this process.

BCC (through libbpf) hands each record of a ring buffer to a Python callback
through ctypes, and the callback copies it (``ctypes.string_at``): measured
here that costs about 1.9 us per record, most of the user-space budget of an
event at the rates a tracer must keep up with.  The ring is plain shared
memory, so it is read here directly, as libbpf itself does:

- page 0 of the map (read-write) holds the consumer position, page 1
  (read-only) the producer position, and the data pages follow, mapped twice
  in a row, so a record that wraps around the end is still contiguous;
- a record is an 8-byte header (u32 length with a BUSY bit while the producer
  writes it and a DISCARD bit, u32 page offset) and its bytes, padded to 8;
- records up to the producer position are handed to ``handle(buf, offset,
  size)`` in place (``buf`` is the mapping: only valid during the call), and
  the consumer position is advanced as they are consumed, at least every
  ``flush_bytes``, so the kernel can reuse the space while a long batch is
  still being handled.

The loads must not be reordered (producer position, then a record's header,
then its bytes): x86-64 keeps loads in order, and this reader is only used
there (``supported()``); elsewhere the caller keeps BCC's reader.

The consumer position must change in one 8-byte store: the kernel reads it
at any moment, and a position it sees as 0 (or any value far behind) makes
the ring look full, so the event being sent is lost.  ``struct.pack_into``
zeroes its destination before writing the value (measured: about one event
in a thousand stores lost at 50,000 events/s); an item of a ``memoryview``
cast to "Q" is written with one 8-byte copy.
"""

import mmap
import os
import select
import struct

__all__ = ["RingReader", "supported"]

_POS = struct.Struct("<Q")  # for reading positions only (see above on storing one)
_LEN = struct.Struct("<I")
_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = 8  # the record header; records are padded to 8 bytes
assert _HDR == 8  # as written out in consume()'s loop


def supported():
    """Whether this machine's memory ordering lets plain loads read the ring."""
    return os.uname().machine in ("x86_64", "amd64")


class RingReader:
    """The ring buffer map ``map_fd`` whose data area is ``size`` bytes."""

    def __init__(self, map_fd, size):
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring buffer size {size} is not a power of two of whole pages")
        page = mmap.PAGESIZE
        self.size = size
        self.page = page
        self.delivered = 0  # records handed to handle() (one that raised included)
        self.bytes = 0
        self.flush_bytes = max(min(size // 16, 64 * 1024), _HDR)
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            self._data = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=page)
        except BaseException:
            self._cons.close()
            raise
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms):
        """Wait until the kernel signals data (or ``timeout_ms`` passes)."""
        return bool(self._epoll.poll(max(timeout_ms, 0) / 1000.0))

    def pending(self):
        """Bytes between the consumer and the producer position."""
        return _POS.unpack_from(self._data, 0)[0] - _POS.unpack_from(self._cons, 0)[0]

    def consume(self, handle, budget=None):
        """Hand every committed record to ``handle(buf, offset, size)``; returns
        how many.  Stops at a record the producer is still writing, or after
        ``budget`` bytes (default: the ring's size, so that a producer faster
        than the handler cannot keep this call going for ever).  If ``handle``
        raises, that record counts as consumed and the exception propagates;
        the records after it stay in the ring."""
        with memoryview(self._cons) as whole, whole[:8].cast("Q") as cons_pos:
            return self._consume(handle, budget, cons_pos)

    def _consume(self, handle, budget, cons_pos):
        """consume(), ``cons_pos[0]`` being the consumer position (one 8-byte item)."""
        data = self._data
        length_of, page, mask, flush = _LEN.unpack_from, self.page, self.size - 1, self.flush_bytes
        start = stored = cons_pos[0]  # the position ``base`` stands for
        limit = start + (self.size if budget is None else budget)
        at = base = page + (start & mask)
        # Per record, as little Python as possible (each operation costs about as
        # much as the call of ``handle``): offsets in the mapping instead of ring
        # positions (the records from ``base`` to ``end`` lie one after the other,
        # the data being mapped twice), the step of the last size seen kept, the
        # headers of a run of records of that size read at once, and the bytes
        # counted per run.
        n = counted = 0  # records handed over; of them, those in self.bytes already
        seen, step = 0, _HDR
        try:
            while True:
                start += at - base
                base = at
                prod = _POS.unpack_from(data, 0)[0]
                stop = prod if prod < limit else limit
                if start >= stop:
                    break
                at = base = page + (start & mask)
                end = base + (stop - start)
                while at < end:
                    part = at + flush if at + flush < end else end
                    while at < part:
                        hdr, = length_of(data, at)
                        if hdr == seen:  # committed, not discarded, as long as the last
                            # the headers where the records starting before ``part``
                            # would be if all had this size, read in one go; used up
                            # to the first that is not this size, committed (the
                            # records after it are elsewhere: read again, one by one)
                            k = (part - at + step - 1) // step
                            with memoryview(data) as whole, whole[at:at + k * step] as run, \
                                    run.cast("I") as words:
                                heads = words[::step >> 2].tolist()
                            for hdr in heads:
                                if hdr != seen:
                                    break
                                o = at + 8
                                at += step
                                n += 1
                                handle(data, o, hdr)
                        elif hdr < _DISCARD:  # committed, another size
                            self.bytes += seen * (n - counted)
                            counted, seen, step = n, hdr, (hdr + 15) & -8
                        elif hdr & _BUSY:
                            return n
                        else:
                            at += ((hdr & ~_DISCARD) + 15) & -8
                    stored = cons_pos[0] = start + (at - base)
        finally:
            cons = start + (at - base)
            if cons != stored:
                cons_pos[0] = cons
            self.delivered += n
            self.bytes += seen * (n - counted)
        return n

    def close(self):
        self._epoll.close()
        self._data.close()
        self._cons.close()
