"""Compile, load, attach and poll BPF programs: the only module that imports bcc.

The C contract (what generated C may use)
-----------------------------------------
``Session`` compiles ``PRELUDE + c_text`` with BCC against the header tree of
``ksnoop.kheaders`` (``BCC_KERNEL_SOURCE``; never /lib/modules).  The
generated C must not declare the output buffer; it may assume:

* ``KSNOOP_OUTPUT(ctx, data, size)`` - send ``size`` bytes at ``data`` to user
  space; an int expression, 0 on success.  ``ctx`` is the program's context
  (``struct pt_regs *`` in a kprobe).  ``size`` must be a constant or bounded
  (verifier rule).  A failed send is counted as lost automatically.
* ``KSNOOP_BUFFER_RINGBUF`` is defined to 1 or 0 (``#if`` on it if needed).
* the buffer map is called ``events`` (``BPF_RINGBUF_OUTPUT(events, N)`` or
  ``BPF_PERF_OUTPUT(events)``) and the lost counter ``ksnoop_lost``
  (``BPF_PERCPU_ARRAY(ksnoop_lost, u64, 1)``): do not reuse these names, nor
  the ``ksnoop_output`` helper function name.
* everything BCC itself provides: its helpers (``bpf_probe_read_kernel``,
  ``bpf_get_current_pid_tgid``, ...), map macros (``BPF_HASH`` ...),
  ``PT_REGS_PARM1..6(ctx)`` / ``PT_REGS_RC(ctx)``;
* types: ``u8..u64``, ``s8..s64``, ``__u8..__s64``, ``size_t``, ``ssize_t``,
  ``uintptr_t``, ``bool``, ``struct pt_regs`` with the kernel's member names
  (``ctx->di`` ...; see ``ksnoop.arch``), ``PAGE_SIZE``; no other kernel
  types.  Extra includes may only name uapi headers
  (``#include <uapi/linux/...>``, ``<linux/...>`` that exist in uapi).

Entry and return programs are ``int NAME(struct pt_regs *ctx)``; they are
loaded as ``BPF_PROG_TYPE_KPROBE`` and attached with ``attach_kprobe`` /
``attach_kretprobe`` (``maxactive`` raised, which makes BCC create the probe
through tracefs ``kprobe_events``, so ``missed_returns()`` can read
``kprobe_profile``).

Events and losses
-----------------
``poll(timeout_ms)`` calls ``on_event(cpu, data: bytes)`` per event (``cpu``
is -1 for the ring buffer, which does not record it: put the CPU in the event
if you need it), or ``on_record(buf, offset, size)`` when given (the event is
``buf[offset:offset + size]``; ``buf`` is only valid during the call: on
x86-64 it is the ring buffer itself, mapped and read in place by
``ringbuf.RingReader`` rather than copied record by record through BCC's
ctypes callback), and ``on_lost(count)`` when events were dropped: for the perf
buffer, the kernel's per-CPU lost records; for the ring buffer, the increase
of ``ksnoop_lost`` since the last poll.  An exception raised by a callback
(``BrokenPipeError`` from a closed stdout, say) stops delivery and is
re-raised by ``poll`` (once BCC's C code has returned); the records after it
stay in the ring buffer for ``drain()``.
"""

import contextlib
import ctypes as ct
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional

from ..errors import AttachError, Terminated
from ..kernel import arch as arch_mod
from ..kernel import bpfsys
from ..kernel import headers as kheaders
from ..kernel.features import (
    ensure_tracefs,
    kprobe_misses,
    kprobe_refusal_hint,
    kprobes_available,
    privilege_problem,
    ringbuf_supported,
)
from ..kernel.lockdown import load_refusal_hint
from .buildlog import captured_stderr, compile_reason, first_error, scoped_env, verifier_reason
from .codegen import MULTI_PROGS
from .links import Fentry, MultiKprobe, OwnPrograms
from .multigen import RECIPES
from .prelude import PERF, RINGBUF, prelude

try:  # Debian's python3-bpfcc; absent on machines that only run unit tests
    import bcc
    from bcc import BPF
except ImportError:  # pragma: no cover - depends on the machine
    bcc = BPF = None

_DEBUG_PREPROCESSOR = 0x4


@dataclass(frozen=True)
class Probe:
    """A kprobe and/or kretprobe on kernel function ``func``."""

    func: str
    entry_fn: Optional[str] = None
    return_fn: Optional[str] = None
    module: Optional[str] = None

    @property
    def target(self):  # what kprobe_events / the kprobe PMU is told
        return f"{self.module}:{self.func}" if self.module else self.func


@dataclass(frozen=True)
class RawTracepoint:
    """A raw tracepoint program (``int fn(struct bpf_raw_tracepoint_args *ctx)``).

    Works on kernels without kprobes; used by the host tests.
    """

    tracepoint: str
    fn: str


@dataclass
class Stats:
    events: int = 0
    lost: int = 0
    bytes: int = 0


@dataclass
class LoadTimes:
    header_tree_s: float = 0.0
    compile_s: float = 0.0
    load_s: float = 0.0
    programs: int = 0


def default_maxactive():
    return min(4096, max(64, 4 * (os.cpu_count() or 1)))


def _pow2_at_least(n):
    p = 1
    while p < n:
        p <<= 1
    return p


# ------------------------------------------------------------------ session
class Session:
    """One compiled BPF object: its programs, probes and output buffer.

    ``with Session(text, probes, btf=btf) as s: s.attach(); s.poll(100)``.
    """

    def __init__(self, c_text, probes, *, btf, buffer="auto", pages=64,
                 on_event=None, on_lost=None, maxactive=None, debug=False,
                 arch=None, log=None, cgroup=None, on_record=None):
        if BPF is None:
            raise AttachError("BCC's Python module is missing (Debian: python3-bpfcc)")
        self.c_text = c_text
        self.probes = list(probes)
        self.btf = btf
        self.arch = arch or arch_mod.current()
        if buffer == "auto":
            buffer = RINGBUF if ringbuf_supported(btf) else PERF
        if buffer not in (RINGBUF, PERF):
            raise ValueError(f"buffer must be 'auto', {RINGBUF!r} or {PERF!r}")
        if pages < 1 or pages & (pages - 1):
            raise ValueError(f"pages must be a power of two, not {pages}")
        self.buffer = buffer
        self.pages = pages  # per CPU; the ring buffer gets pages * CPUs in total
        self.on_event = on_event
        self.on_record = on_record
        self.on_lost = on_lost
        self._ring = None  # ringbuf.RingReader: the ring buffer mapped here
        self.maxactive = default_maxactive() if maxactive is None else maxactive
        self.debug = debug
        self.log = log or (lambda text: sys.stderr.write(text + "\n"))  # debug output
        self.cgroup = cgroup  # --cgroup directory (the program must declare ksnoop_cgroup)
        self.times = LoadTimes()
        self.notes = []  # one-line remarks (fallbacks taken) for the caller to show
        self._stats = Stats()
        self._bpf = None
        self._fns = {}
        self._own = OwnPrograms()  # fentry/fexit and kprobe-multi programs (links.py)
        self._attached = []  # (kind, key, fd)
        self._lost_seen = 0
        self._buffer_open = False
        self._pending = None
        self._discarded = 0  # records consumed after a callback failed: lost
        self._unreported_lost = 0  # counted while a callback failure was pending
        self._closed = False
        self._loaded = False  # load_only() has run
        self._old_handlers = {}

    # -- text
    @property
    def ring_pages(self):
        return _pow2_at_least(self.pages * (os.cpu_count() or 1))

    @property
    def prelude_lines(self):
        return self.source().count("\n") - self.c_text.count("\n")

    def source(self):
        pages = self.ring_pages if self.buffer == RINGBUF else self.pages
        return prelude(self.buffer, pages, os.cpu_count() or 1) + self.c_text

    # -- compile and load
    def _compile(self):
        if self._bpf is not None:
            return
        if self._closed:
            raise AttachError("session is closed")
        problem = privilege_problem()
        if problem:
            raise AttachError(problem)
        t0 = time.perf_counter()
        kdir = kheaders.ensure_header_tree(self.btf, self.arch)
        t1 = time.perf_counter()
        text = self.source()
        flags = self.debug if isinstance(self.debug, int) and not isinstance(
            self.debug, bool) else (_DEBUG_PREPROCESSOR if self.debug else 0)
        if self.debug:
            self.log(f"ksnoop: BCC_KERNEL_SOURCE={kdir}\n{text}")
        with scoped_env(BCC_KERNEL_SOURCE=kdir, ARCH=None), \
                captured_stderr(not self.debug) as err:
            try:
                self._bpf = BPF(text=text.encode(), debug=flags)
            except Exception:  # BCC raises bare Exception for compile failures
                self._bpf = None
        if self._bpf is None:
            exc = AttachError("BPF compile failed: " + compile_reason(
                err[0], self.prelude_lines))
            exc.details = err[0]
            raise exc from None
        self.times.header_tree_s = t1 - t0
        self.times.compile_s = time.perf_counter() - t1
        if self.cgroup:
            self._set_cgroup(self.cgroup)

    def _set_cgroup(self, path):
        """Point the cgroup filter's map (ksnoop_cgroup, from trace/filters.py) at ``path``."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise AttachError(f"--cgroup {path}: {e.strerror}") from None
        try:
            self._bpf[b"ksnoop_cgroup"][0] = fd
        except Exception as e:  # BCC raises bare Exception when the kernel refuses the fd
            raise AttachError(f"--cgroup {path}: not a cgroup v2 directory ({e})") from None
        finally:
            os.close(fd)

    def _load(self, name, prog_type):
        if name in self._fns:
            return self._fns[name]
        with captured_stderr(not self.debug) as err:
            try:
                fn = self._bpf.load_func(name.encode(), prog_type)
            except Exception as e:  # BCC: bare Exception with errno text
                fn, why = None, str(e)
        if fn is None:
            detail = verifier_reason(err[0]) or why
            hint = load_refusal_hint(err[0] + why)
            exc = AttachError(hint or f"kernel rejected BPF program {name}: {detail}")
            exc.details = err[0]
            raise exc
        self._fns[name] = fn
        return fn

    def load_only(self):
        """Compile and load every program through the verifier; attach nothing.
        Once: attach() calls it again, which then does nothing."""
        if self._loaded:
            return self.times
        self._compile()
        t0 = time.perf_counter()
        for p in self.probes:
            if isinstance(p, RawTracepoint):
                self._load(p.fn, BPF.RAW_TRACEPOINT)
                continue
            if isinstance(p, (Fentry, MultiKprobe)):
                self._own.load(p, self._insns)
                for slot, name in getattr(p, "members", ()):  # the dispatcher's tail calls
                    self._bpf[MULTI_PROGS.encode()][ct.c_int(slot)] = ct.c_int(self._own.fds[name])
                if getattr(p, "recipes", ()):  # a generic program's recipes, in one command
                    self._set_recipes(p.recipes)
                continue
            for name in (p.entry_fn, p.return_fn):
                if name:
                    self._load(name, BPF.KPROBE)
        self.times.load_s = time.perf_counter() - t0
        self.times.programs = len(self._fns) + len(self._own.fds)
        self._loaded = True
        return self.times

    def _set_recipes(self, recipes):
        table = self._bpf[RECIPES.encode()]
        try:
            bpfsys.map_update_batch(table.map_fd, [slot for slot, _ in recipes],
                                    b"".join(raw for _, raw in recipes), "setting the recipes")
        except bpfsys.BPFError as e:
            raise AttachError(f"cannot set the generic program's recipes: {e.reason}") from None

    # -- attach
    def attach(self):
        """Load (if needed) and attach every probe, then open the buffer."""
        self.load_only()
        kprobes = [p for p in self.probes if isinstance(p, Probe)]
        if kprobes:
            problem = privilege_problem()
            if problem:
                raise AttachError(problem)
            ok, why = kprobes_available()
            if not ok:
                raise AttachError(why)
            maxactive = self.maxactive
            if maxactive > 0 and any(p.return_fn for p in kprobes) and not ensure_tracefs():
                self.notes.append("tracefs unavailable: kretprobes use the kernel's default "
                                  "maxactive and missed returns are not counted")
                maxactive = 0
        for p in self.probes:
            if isinstance(p, RawTracepoint):
                self._attach_raw_tp(p)
                continue
            if isinstance(p, (Fentry, MultiKprobe)):
                self._own.attach(p, lambda what, fd: self._attached.append(("link", what, fd)))
                continue
            if p.entry_fn:
                self._attach_kprobe(p, p.entry_fn, retprobe=False, maxactive=0)
            if p.return_fn:
                self._attach_kprobe(p, p.return_fn, retprobe=True, maxactive=maxactive)
        self._open_buffer()
        return self

    @staticmethod
    def _ev_name(p, retprobe):
        safe = "".join(c if c.isalnum() or c == "_" else "_" for c in p.target)
        return ("r_" if retprobe else "p_") + safe

    def _attach_kprobe(self, p, fn_name, retprobe, maxactive):
        fn = self._fns[fn_name]
        ev = self._ev_name(p, retprobe)
        with captured_stderr(not self.debug) as err:
            fd = bcc.lib.bpf_attach_kprobe(fn.fd, 1 if retprobe else 0, ev.encode(),
                                           p.target.encode(), 0, maxactive)
            errno = ct.get_errno()
        if fd < 0:
            what = "kretprobe" if retprobe else "kprobe"
            refused = kprobe_refusal_hint(errno)  # the kernel's policy, not the function
            if refused:
                raise AttachError(f"cannot attach {what} to {p.target}: {refused}")
            msg = first_error(err[0], os.strerror(errno) if errno else "")
            raise AttachError(f"cannot attach {what} to {p.target}: not traceable "
                              f"(unknown, inlined, or notrace){': ' + msg if msg else ''}")
        self._attached.append(("kprobe", ev, fd))

    def _insns(self, name):
        """The instructions BCC compiled for program ``name``."""
        start = bcc.lib.bpf_function_start(self._bpf.module, name.encode())
        return ct.string_at(start, bcc.lib.bpf_function_size(self._bpf.module, name.encode()))

    def _attach_raw_tp(self, p):
        fn = self._fns[p.fn]
        with captured_stderr(not self.debug) as err:
            fd = bcc.lib.bpf_attach_raw_tracepoint(fn.fd, p.tracepoint.encode())
        if fd < 0:
            raise AttachError(f"cannot attach to raw tracepoint {p.tracepoint}: "
                              + first_error(err[0], "unknown tracepoint"))
        self._attached.append(("raw_tp", p.tracepoint, fd))

    # -- events
    def _open_buffer(self):
        if self._buffer_open:
            return
        table = self._bpf[b"events"]
        if self.buffer == RINGBUF:
            self._ring = self._map_ring(table)
            if self._ring is None:
                table.open_ring_buffer(self._ringbuf_cb)
        else:
            table.open_perf_buffer(self._perf_cb, page_cnt=self.pages, lost_cb=self._lost_cb)
        self._buffer_open = True

    def _map_ring(self, table):
        """The ring buffer mapped for in-place reading, or None (BCC reads it)."""
        from . import ringbuf

        if not ringbuf.supported():
            return None
        size = int(getattr(table, "max_entries", 0) or self.ring_pages * 4096)
        try:
            return ringbuf.RingReader(table.map_fd, size)
        except (OSError, ValueError) as e:
            self.notes.append(f"ring buffer read through BCC (mapping it failed: {e})")
            return None

    def _consume_ring(self):
        """Deliver every record in the ring buffer; a callback's exception propagates."""
        if self._ring is None:
            self._bpf.ring_buffer_consume()
            return
        handle = self.on_record
        if handle is None:
            on_event = self.on_event

            def handle(buf, off, size):
                if on_event is not None:
                    on_event(-1, buf[off:off + size])
        ring = self._ring
        n, nbytes = ring.delivered, ring.bytes
        try:
            ring.consume(handle)
        finally:
            self._stats.events += ring.delivered - n
            self._stats.bytes += ring.bytes - nbytes

    def _deliver(self, cpu, data, size):
        if self._pending is not None:
            # The consumer already failed in this batch (Ctrl-C inside a write,
            # say): the record is gone from the buffer, so it counts as lost.
            self._discarded += 1
            return
        self._stats.events += 1
        self._stats.bytes += size
        try:
            if self.on_record is not None:
                self.on_record(ct.string_at(data, size), 0, size)
            elif self.on_event is not None:
                self.on_event(cpu, ct.string_at(data, size))
        except BaseException as e:  # noqa: B036 - re-raised from poll()
            self._pending = e

    def _perf_cb(self, cpu, data, size):
        self._deliver(cpu, data, size)

    def _ringbuf_cb(self, ctx, data, size):
        self._deliver(-1, data, size)
        # A negative return stops the ring buffer's consume loop: after a
        # failure the remaining records stay in the ring for drain().
        return -1 if self._pending is not None else 0

    def _lost_cb(self, count):
        self._report_lost(count)

    def _report_lost(self, count):
        """Count lost records; tell on_lost now, or (while a callback's failure is
        pending) just before that failure is re-raised.  Never drops a count."""
        if count > 0:
            self._stats.lost += count
            self._unreported_lost += count
        if self._pending is not None or not self._unreported_lost:
            return
        count, self._unreported_lost = self._unreported_lost, 0
        if self.on_lost is not None:
            try:
                self.on_lost(count)
            except BaseException as e:  # noqa: B036 - re-raised from poll()
                self._pending = e

    def _read_counted_lost(self):
        """Sends that failed in the kernel (counted in ksnoop_lost)."""
        table = self._bpf[b"ksnoop_lost"]
        total = int(table.sum(table.Key(0)).value)
        delta, self._lost_seen = total - self._lost_seen, total
        self._report_lost(delta)

    def poll(self, timeout_ms=100):
        """Wait up to ``timeout_ms`` for events and deliver them; returns how many."""
        if self._closed:
            raise AttachError("session is closed")
        self._open_buffer()
        before = self._stats.events
        if self.buffer == RINGBUF:
            if self._ring is not None:
                self._ring.wait(timeout_ms)
            else:
                self._bpf.ring_buffer_poll(timeout_ms)
            self._consume_ring()  # records sent without a wakeup too
            self._read_counted_lost()
        else:
            self._bpf.perf_buffer_poll(timeout_ms)
        self._raise_pending()
        return self._stats.events - before

    def _raise_pending(self):
        """Re-raise a callback's exception, after reporting records it made us drop."""
        if self._pending is None:
            return
        exc, self._pending = self._pending, None
        count, self._discarded = self._discarded, 0
        self._report_lost(count)  # also reports counts held back while exc was pending
        raise exc

    def stats(self):
        return Stats(self._stats.events, self._stats.lost, self._stats.bytes)

    def table_items(self, name):
        """Every entry of map ``name`` whose values are u64 (per CPU or not), as
        ``[(key bytes, value summed over the CPUs)]``: read in one batch where
        the kernel has batch lookups, else key by key.  Nothing is cleared."""
        if self._bpf is None:
            raise AttachError("session is not loaded")
        table = self._bpf[name.encode()]

        def total(value):
            return sum(value) if isinstance(value, ct.Array) else int(getattr(value, "value", value))

        def raw(key):  # ctypes gives a plain int for an array's key
            return bytes(table.Key(key)) if isinstance(key, int) else bytes(key)

        try:
            return [(raw(k), total(v)) for k, v in table.items_lookup_batch()]
        except Exception:  # BCC: bare Exception when the kernel has no batch ops for the map
            out = []
            for k in list(table.keys()):
                try:
                    out.append((raw(k), total(table.getvalue(k) if hasattr(table, "getvalue")
                                              else table[k])))
                except KeyError:  # gone meanwhile
                    continue
            return out

    def missed_returns(self):
        """{function: missed kretprobe hits} from tracefs ``kprobe_profile``.

        Only probes BCC created through tracefs (kretprobes with maxactive > 0)
        are listed there; functions it attached through the kprobe PMU map to
        None (the kernel keeps their count but exposes it to no reader here).
        """
        wanted, out = {}, {}
        for p in self.probes:
            if isinstance(p, Probe) and p.return_fn:
                wanted[f"{self._ev_name(p, True)}_bcc_{os.getpid()}"] = p.target
            elif isinstance(p, (Fentry, MultiKprobe)):
                label, missed = self._own.return_misses(p)
                if missed is not None:
                    out[label] = missed
        out.update(dict.fromkeys(wanted.values()))
        if wanted:
            for event, count in kprobe_misses(wanted).items():
                out[wanted[event]] = count
        return out

    # -- teardown
    def detach(self):
        """Detach every probe (no new events), keeping the buffer and maps so
        that what is already in the buffer can still be drained.  Idempotent;
        problems are kept in ``notes``."""
        errors = []
        for kind, key, fd in reversed(self._attached):
            try:
                if kind == "kprobe":
                    if bcc.lib.bpf_close_perf_event_fd(fd) < 0:
                        errors.append(f"{key}: closing its perf event failed")
                    with captured_stderr(not self.debug) as err:
                        failed = bcc.lib.bpf_detach_kprobe(key.encode()) < 0
                    if failed:
                        errors.append(f"{key}: " + first_error(err[0], "removing the kprobe failed"))
                else:
                    os.close(fd)
            except OSError as e:  # keep detaching the rest
                errors.append(f"{key}: {e.strerror or e}")
        self._attached.clear()
        if errors:
            self.notes.append("detach problems (a probe may still be attached): "
                              + "; ".join(errors))

    def drain(self):
        """After detach(): deliver every event still in the buffer and count the
        last losses, so that delivered + lost is everything the programs sent."""
        if self._closed or self._bpf is None or not self._buffer_open:
            return 0
        before = self._stats.events
        if self.buffer == RINGBUF:
            self._consume_ring()  # at most the ring's size: all of it, the producers are gone
            self._read_counted_lost()
        else:
            # BCC's perf_buffer_poll returns None; one poll reads every ready CPU buffer
            # to its end (every record wakes the reader: wakeup_events is 1)
            self._bpf.perf_buffer_poll(0)
        self._raise_pending()
        return self._stats.events - before

    def close(self):
        """Detach every probe, close every program and map.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.detach()
        errors = []
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._bpf is not None:
            try:
                self._bpf.cleanup()  # closes programs and maps, frees the ring buffer
            except Exception as e:
                errors.append(str(e))
            self._bpf = None
        self._own.close()
        self._fns.clear()
        self._restore_signals()
        if errors:
            self.notes.append("cleanup problems: " + "; ".join(errors))

    def _on_signal(self, signum, frame):
        raise Terminated(128 + signum)

    def _install_signals(self):
        import threading
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self):
        for sig, old in self._old_handlers.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, old)
        self._old_handlers.clear()

    def __enter__(self):
        self._install_signals()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()
