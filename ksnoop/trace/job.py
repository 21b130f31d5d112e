"""The trace job: specs -> plan -> C -> loaded programs -> events -> output."""

import os
import sys
import time
from dataclasses import dataclass, replace

from ..errors import KsnoopError, Terminated, UsageError
from .codegen import Machine, generate
from .fastout import FastFormatter
from .filters import with_comm_offset
from .outpipe import ReaderWatch, reader_gone_error
from .output import Formatter, describe_plan
from .plan import FENTRY, TRACEPOINT, Filters
from .resolve import resolve
from .spec import parse
from .stopping import StopRequests
from .wire import layouts_for

PERF_MAX_EVENT = 65535 - 64  # a perf sample's size is 16 bits, headers included
RINGBUF_RECORD_HEADER = 8  # the ring buffer's per-record header
PAGE_SIZE = 4096
CHUNK_EVENTS = 512  # formatted events written at once (and at the end of every poll)


@dataclass
class Prepared:
    plan: object
    c_text: str
    probes: list  # runtime.Probe / RawTracepoint
    filters: Filters = Filters()


def prepare(spec_texts, kernel, limit, pid=0, filters=None, backends=None, kstack=False):
    """Specs -> plan -> C.  ``filters`` (plan.Filters) chooses the tasks and,
    with ``min_ns``, the calls; ``pid`` is a shorthand for Filters(pid=pid).
    ``backends`` (kernel.backend.Backends) picks fentry/fexit, kprobes or
    kprobe-multi per function; None: kprobes.  ``kstack``: every event carries
    the kernel stack."""
    filters = with_comm_offset(filters or Filters(pid=pid), kernel)
    specs = [parse(text) for text in spec_texts]
    plan = with_options(resolve(specs, kernel, limit=limit, backends=backends), filters.min_ns, kstack)
    machine = Machine(self_tgid=os.getpid(), ncpus=kernel.possible_cpus())
    c_text, progs = generate(plan, machine, filters)
    return Prepared(plan, c_text, attach_points(progs), filters)


def with_options(plan, min_ns=0, kstack=False):
    """The plan with -K and --min-latency applied: with a minimum latency a
    function's entry values are held until its return (stash mode), which
    decides in BPF whether the call is shown (a function showing only return
    values keeps its return events, dropped there when too fast); a
    tracepoint has no duration."""
    if not (min_ns or kstack):
        return plan
    funcs = []
    for fp in plan.funcs:
        if min_ns and fp.probe == TRACEPOINT:
            raise UsageError(f"--min-latency: {fp.name} is a tracepoint: it has no return, "
                             "so no duration")
        stash = fp.stash or bool(min_ns and (fp.entry or not fp.ret))
        funcs.append(replace(fp, kstack=kstack, stash=stash))
    return replace(plan, funcs=tuple(funcs))


def attach_points(progs):
    """attach_point for each (plan, entry, return) of ``generate``, except that
    the functions sharing a kprobe-multi link become one runtime.MultiKprobe
    per side: a generic program given each function's recipe (where the
    function's side names the dispatcher itself), or a dispatcher that
    tail-calls the function's own program at the function's index in the
    program array (returns MULTI_RETURN_BASE above)."""
    from ..kernel.arch import current
    from . import multigen
    from .codegen import MULTI_ENTRY, MULTI_RETURN, MULTI_RETURN_BASE, needs_calls
    from .runtime import MultiKprobe

    out, multi = [], {}
    for fp, entry, ret in progs:
        if not fp.multi:
            out.append(attach_point(fp, entry, ret))
            continue
        for side, name, base in ((MULTI_ENTRY, entry, 0), (MULTI_RETURN, ret, MULTI_RETURN_BASE)):
            if name:
                multi.setdefault(side, []).append((fp, base + fp.index, name))
    for side, members in multi.items():
        at_return = side == MULTI_RETURN
        generic = [(slot, fp) for fp, slot, name in members if name == side]
        regs = multigen.registers(current()) if generic else ()
        # kallsyms addresses spare the kernel a search of every symbol for the
        # names (where they are hidden, kptr_restrict, the names it is)
        addrs = tuple(fp.addr for fp, _, _ in members)
        out.append(MultiKprobe(
            side, tuple(fp.target for fp, _, _ in members), tuple(fp.index for fp, _, _ in members),
            at_return, tuple((slot, name) for _, slot, name in members if name != side),
            tuple((slot, multigen.recipe(multigen.side_layout(fp, at_return), regs,
                                         timed=not at_return and needs_calls(fp)))
                  for slot, fp in generic),
            addrs if all(addrs) else ()))
    return out


def describe_targets(plan):
    """``3 functions``, ``1 tracepoint``, ``2 functions and 1 tracepoint``."""
    tps = sum(1 for fp in plan.funcs if fp.probe == TRACEPOINT)
    fns = len(plan.funcs) - tps
    parts = [f"{n} {word}{'s' if n != 1 else ''}"
             for n, word in ((fns, "function"), (tps, "tracepoint")) if n or not plan.funcs]
    return " and ".join(parts[:2]) if parts else "nothing"


def attach_point(fp, entry, ret):
    """The runtime's description of where one function plan's programs attach."""
    from .runtime import Fentry, Probe, RawTracepoint

    if fp.probe == TRACEPOINT:
        return RawTracepoint(fp.target, entry)
    if fp.probe == FENTRY:
        return Fentry(fp.target, fp.btf_id, entry, ret, module=fp.module or None)
    return Probe(fp.target, entry, ret, module=fp.module or None)


def kernel_symbols(kernel):
    """address -> ``function+0xoff [module]`` from the kernel's kallsyms (-K)."""
    from ..kernel.files import read_file
    from ..kernel.kallsyms import Symbolizer

    return Symbolizer(read_file(kernel.kallsyms_path, "kernel symbols"))


class SessionJob:
    """What a trace and a count/hist share: ``self._session()`` (a runtime
    Session), ``self.err`` and ``self._describe()`` (the --dry-run text) are
    theirs; the dry run and the session's notes, shown once each, are here."""

    _notes_shown = 0  # notes of the session shown so far (set per job by _show_notes)

    def dry_run(self):
        """Compile and load through the verifier; attach nothing."""
        s = self._session()
        try:
            with s:
                times = s.load_only()
        finally:
            self._show_notes(s)
        return self._describe(), times

    @staticmethod
    def _stop_producers(session):
        """Detach every probe; returns the missed returns the kernel counted
        (best effort: {} if they cannot be read while shutting down)."""
        try:
            missed = session.missed_returns()
        except Exception:  # best effort while shutting down
            missed = {}
        session.detach()
        return missed

    def _show_notes(self, session):
        """Remarks the session made (fallbacks taken, detach problems) not shown yet."""
        notes = getattr(session, "notes", ())
        for note in notes[self._notes_shown:]:
            self.err.write(f"ksnoop: note: {note}\n")
        self._notes_shown = len(notes)
        self.err.flush()


class Tracer(SessionJob):
    """Runs one prepared trace until stopped, writing events to ``out``."""

    def __init__(self, prepared, kernel, fmt="text", out=None, err=None, pages=64,
                 buffer="auto", debug=False, max_events=0, duration=0.0, colour=False,
                 time="boot"):
        self.prepared = prepared
        self.kernel = kernel
        symbols = None
        if any(getattr(fp, "kstack", False) for fp in prepared.plan.funcs):
            symbols = kernel_symbols(kernel)
        self.formatter = Formatter(fmt, time=time, symbols=symbols)
        self._texts = []  # formatted, not written yet: written in one go per poll
        # event bytes -> text, with code made once per event layout (fastout.py)
        self._on_record = FastFormatter(prepared.plan, fmt, self.formatter).collector(
            self._texts, self._bad_event, self._lost_one, CHUNK_EVENTS, self._flush_output)
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.pages, self.buffer, self.debug = pages, buffer, debug
        self.max_events, self.duration = max_events, duration
        self.events = 0
        self.lost = 0
        self.bad = 0
        self._discard = False  # the reader is gone: what is still formatted counts as lost
        self.console = None
        if colour and fmt != "json":
            from rich.console import Console
            from rich.theme import Theme

            from ..render.text import THEME

            self.console = Console(file=self.out, theme=Theme(THEME), highlight=False,
                                   force_terminal=True,
                                   soft_wrap=True)

    def _write(self, text):
        if self.console is None:
            self.out.write(text + "\n")
        else:
            from ..render.text import colourize

            self.console.print(colourize(text))

    def _flush_output(self):
        """Write the events formatted since the last call, in one write (a terminal
        still gets whole lines: sys.stdout is line-buffered there).  Events whose
        write fails (Ctrl-C inside it, a closed pipe) count as lost."""
        texts = self._texts
        if not texts:
            return
        if self.max_events and self.events + len(texts) > self.max_events:
            del texts[self.max_events - self.events:]  # past -n: not shown (as ever)
        n = len(texts)
        if not n:
            return
        if self._discard:
            texts.clear()
            self.lost += n
            return
        try:
            text = "\n".join(texts)
            texts.clear()
            self._write(text)
        except BaseException:
            texts.clear()
            self.lost += n
            raise
        self.events += n

    def _session(self):
        from .runtime import PERF, RINGBUF, Session

        s = Session(self.prepared.c_text, self.prepared.probes, btf=self.kernel.vmlinux,
                       buffer=self.buffer, pages=self.pages, on_record=self._on_record,
                       on_lost=self._on_lost, debug=self.debug,
                       log=lambda text: self.err.write(text + "\n"),
                       cgroup=self.prepared.filters.cgroup or None)
        biggest = max((ev.size for fp in self.prepared.plan.funcs for ev in layouts_for(fp)),
                      default=0)
        if s.buffer == PERF and biggest > PERF_MAX_EVENT:
            s.close()
            raise KsnoopError(f"events of {biggest} bytes do not fit a perf buffer record "
                              f"(at most {PERF_MAX_EVENT}): use a smaller -s/--size")
        ring = s.ring_pages * PAGE_SIZE
        if s.buffer == RINGBUF and biggest + RINGBUF_RECORD_HEADER > ring // 2:
            s.close()
            raise KsnoopError(f"events of {biggest} bytes do not fit the {ring // 1024} KiB ring "
                              f"buffer (an event may take at most half of it, else every event "
                              f"would be lost): use a larger -P/--pages or a smaller -s/--size")
        return s

    def _describe(self):
        return describe_plan(self.prepared.plan)

    def _bad_event(self, exc):
        self.bad += 1
        self.err.write(f"ksnoop: undecodable event: {exc}\n")

    def _lost_one(self):
        """Ctrl-C while an event was formatted: consumed, never printed."""
        self.lost += 1

    def _on_lost(self, count):
        self.lost += count
        self.err.write(f"ksnoop: lost {count} events (total {self.lost}); try a larger -P/--pages\n")
        self.err.flush()

    def run(self):
        """Trace until Ctrl-C, SIGTERM, a closed pipe, -n events or --duration."""
        header = self.formatter.header()
        missed = {}
        s = self._session()
        with s:
            t0 = time.monotonic()
            times = s.load_only()
            compiled = times.header_tree_s + times.compile_s
            t1 = time.monotonic()
            s.attach()
            attach_s = time.monotonic() - t1
            for note in self.prepared.plan.notes:
                self.err.write(f"ksnoop: {note}\n")
            self._show_notes(s)
            self.err.write(f"ksnoop: tracing {describe_targets(self.prepared.plan)} "
                           f"(compiled in {compiled:.2f} s, loaded {times.programs} programs in "
                           f"{t1 - t0 - compiled:.2f} s, attached in {attach_s:.2f} s), "
                           "Ctrl-C to stop\n")
            self.err.flush()
            if header:
                self._write(header)
            self.out.flush()
            with StopRequests() as stop:
                deadline = time.monotonic() + self.duration if self.duration else None
                reader = ReaderWatch(self.out)
                normal_stop = False
                broken = None
                try:
                    while not stop:  # a stop signal ends the loop between two polls
                        s.poll(100)  # at most 100 ms: light traffic is printed promptly
                        if reader.gone():
                            raise reader_gone_error()
                        self._flush_output()
                        self.out.flush()
                        if self.max_events and self.events >= self.max_events:
                            break
                        if deadline and time.monotonic() >= deadline:
                            break
                    normal_stop = True
                except (KeyboardInterrupt, Terminated):
                    normal_stop = True  # a second Ctrl-C, SIGTERM or SIGHUP: a stop all the same
                except BrokenPipeError as e:
                    broken = e  # the reader went away: what is still buffered is lost
                finally:
                    # Stop the producers, then print what is still buffered and count
                    # the last losses: printed + lost = everything the programs sent.
                    missed = self._stop_producers(s)
                    self._discard = broken is not None  # nothing more can be written
                    if normal_stop or self._discard:
                        try:
                            s.drain()
                            self._flush_output()
                            self.out.flush()
                        except BrokenPipeError as e:
                            broken = e
                            self._discard = True
                            self._flush_output()  # formatted but never written: lost
                    self.summary(missed)
                    if broken is not None:
                        raise broken
        self._show_notes(s)  # detach problems, found while closing

    def summary(self, missed):
        n_missed = sum(v for v in missed.values() if v)
        unknown = [k for k, v in missed.items() if v is None]
        line = f"ksnoop: {self.events} events, {self.lost} lost"
        if missed:
            line += f", {n_missed} missed returns"
            if unknown:
                line += f" (not reported by the kernel for {', '.join(unknown)})"
        if self.bad:
            line += f", {self.bad} undecodable"
        self.err.write(line + "\n")
        self.err.flush()
