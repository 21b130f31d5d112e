"""Runs ``ksnoop count`` / ``ksnoop hist``: specs -> AggPlan -> C -> loaded
programs -> map readings -> reports (one per ``-i`` interval, and at exit).

The kernel's counters only ever grow, so an interval's report is the
difference between two readings: exact, with nothing cleared under the
programs' feet.  The last reading is taken after every probe is detached.
"""

import os
import sys
import time
from dataclasses import dataclass, field

from ..errors import Terminated
from .aggregate import (
    CALLS_MAP,
    COUNT,
    COUNTS_MAP,
    HIST,
    HIST_MAP,
    HIST_SLOTS,
    OVERFLOW_MAP,
    SLOT_UNREADABLE,
    Aggregation,
    build,
    decode_key,
    describe,
    generate,
)
from .codegen import Machine
from .filters import with_comm_offset
from .job import SessionJob, attach_points, describe_targets
from .outpipe import ReaderWatch, reader_gone_error
from .plan import Filters
from .stopping import StopRequests

SESSION_PAGES = 1  # the runtime's event buffer, unused: no event leaves the kernel


@dataclass
class Prepared:
    aplan: object
    c_text: str
    probes: list
    filters: Filters = Filters()


def prepare(spec_texts, kernel, agg: Aggregation, filters=None, backends=None):
    filters = with_comm_offset(filters or Filters(), kernel)
    aplan = build(spec_texts, agg, kernel, backends=backends)
    machine = Machine(self_tgid=os.getpid(), ncpus=kernel.possible_cpus())
    c_text, progs = generate(aplan, machine, filters)
    return Prepared(aplan, c_text, attach_points(progs), filters)


@dataclass
class Report:
    """What one interval (or the whole run) counted."""

    aplan: object
    index: int  # 1, 2, ... with -i; 0 for a whole run without -i
    final: bool  # the last report of the run
    time: float  # CLOCK_MONOTONIC seconds at the reading (the clock of trace's event times)
    seconds: float  # how long the interval lasted
    rows: list = field(default_factory=list)  # count: (AggFunc, Key or None, n), biggest first
    hists: list = field(default_factory=list)  # hist: (AggFunc, {slot: n}), by function
    overflow: int = 0  # count --by: calls whose new key did not fit the full map

    @property
    def total(self):
        if self.aplan.agg.kind == COUNT:
            return sum(n for _, _, n in self.rows)
        return sum(sum(b.values()) for _, b in self.hists)


def _reading(session, aplan):
    """{key: total} of the aggregation map, and the overflow count."""
    items = session.table_items
    (_, overflow), = items(OVERFLOW_MAP) or [(b"", 0)]
    if aplan.agg.kind == HIST:
        data = {int.from_bytes(k, "little"): n for k, n in items(HIST_MAP) if n}
    elif aplan.source == "calls":
        data = {int.from_bytes(k, "little"): n for k, n in items(CALLS_MAP) if n}
    else:
        data = {decode_key(aplan, k): n for k, n in items(COUNTS_MAP) if n}
    return data, overflow


def make_report(aplan, now, before, index, final, t, seconds):
    """The Report of the change from reading ``before`` to reading ``now``."""
    (cur, over), (prev, prev_over) = now, before
    delta = {k: n - prev.get(k, 0) for k, n in cur.items() if n != prev.get(k, 0)}
    rep = Report(aplan, index, final, t, seconds, overflow=over - prev_over)
    funcs = aplan.funcs
    if aplan.agg.kind == HIST:
        per = {}
        for i, n in delta.items():
            per.setdefault(i // HIST_SLOTS, {})[i % HIST_SLOTS] = n
        rep.hists = [(funcs[f], per[f]) for f in sorted(per) if f < len(funcs)]
    elif aplan.source == "calls":
        rep.rows = [(funcs[f], None, n) for f, n in delta.items() if f < len(funcs)]
    else:
        rep.rows = [(funcs[k.func], k, n) for k, n in delta.items() if k.func < len(funcs)]
    rep.rows.sort(key=lambda r: (-r[2], r[0].fp.index, (r[1].status, r[1].num, r[1].raw) if r[1] else ()))
    return rep


class Aggregator(SessionJob):
    """Runs one prepared aggregation until stopped, writing reports to ``out``."""

    def __init__(self, prepared, kernel, fmt="text", out=None, err=None, interval=0.0,
                 duration=0.0, max_reports=0, colour=False, debug=False):
        from .aggout import Writer

        self.prepared, self.kernel = prepared, kernel
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.writer = Writer(fmt, self.out, colour=colour)
        self.interval, self.duration, self.max_reports = interval, duration, max_reports
        self.debug = debug

    def _session(self):
        from .runtime import Session

        return Session(self.prepared.c_text, self.prepared.probes, btf=self.kernel.vmlinux,
                       pages=SESSION_PAGES, debug=self.debug,
                       log=lambda text: self.err.write(text + "\n"),
                       **self._filter_args())

    def _filter_args(self):
        cgroup = getattr(self.prepared.filters, "cgroup", "")
        return {"cgroup": cgroup} if cgroup else {}

    def _describe(self):
        return describe(self.prepared.aplan)

    def _what(self):
        a = self.prepared.aplan
        if a.agg.kind == HIST:
            return f"histogram of {a.label}"
        return f"counting calls by {a.label}" if a.label else "counting calls"

    def run(self):
        """Aggregate until Ctrl-C, SIGTERM, a closed pipe, --duration or -n reports."""
        aplan = self.prepared.aplan
        s = self._session()
        missed = {}
        with s:
            t0 = time.monotonic()
            s.attach()
            attach_s = time.monotonic() - t0
            self._show_notes(s)
            self.err.write(f"ksnoop: tracing {describe_targets(aplan.plan)} (attached in "
                           f"{attach_s:.2f} s), {self._what()}, Ctrl-C to stop\n")
            self.err.flush()
            with StopRequests() as stop:
                start = last_t = time.monotonic()
                last = ({}, 0)
                index = 0
                deadline = start + self.duration if self.duration else None
                reader = ReaderWatch(self.out)
                try:
                    while not stop:  # a stop signal ends the loop between two polls
                        now = time.monotonic()
                        due = last_t + self.interval if self.interval else None
                        wake = min(t for t in (due, deadline, now + 0.1) if t is not None)
                        s.poll(max(1, int((wake - now) * 1000)))
                        if reader.gone():
                            raise reader_gone_error()  # no report can be read any more
                        now = time.monotonic()
                        if deadline and now >= deadline:
                            break
                        if due and now >= due:
                            if self.max_reports and index + 1 >= self.max_reports:
                                break  # the last report is read once everything is detached
                            index += 1
                            reading = _reading(s, aplan)
                            rep = make_report(aplan, reading, last, index, False, now, now - last_t)
                            last, last_t = reading, now  # first: a Ctrl-C while writing counts nothing twice
                            self._emit(rep)
                except (KeyboardInterrupt, Terminated):
                    pass  # a second Ctrl-C, SIGTERM or SIGHUP: a stop all the same
                finally:
                    missed = self._stop_producers(s)
                # Every probe is detached: the last reading is complete.
                now = time.monotonic()
                reading = _reading(s, aplan)
                self._emit(make_report(aplan, reading, last, index + 1 if self.interval else 0,
                                       True, now, now - last_t))
                self._summary(reading, missed)
        self._show_notes(s)

    def _emit(self, rep):
        self.writer.write(rep)
        self.out.flush()

    def _summary(self, reading, missed):
        a = self.prepared.aplan
        data, overflow = reading
        total = sum(data.values())
        if a.agg.kind == COUNT:
            line = f"ksnoop: {total} calls counted"
            if a.source != "calls":
                line += f" under {len(data)} key{'s' if len(data) != 1 else ''}"
                line += f", {overflow} not counted (the map of {a.agg.keys} keys was full: " \
                        f"raise --max-keys)" if overflow else ", 0 not counted"
        else:
            unreadable = sum(n for k, n in data.items() if k % HIST_SLOTS == SLOT_UNREADABLE)
            line = f"ksnoop: {total} values in the histogram{'s' if len(a.funcs) > 1 else ''}"
            if unreadable:
                line += f" ({unreadable} could not be read)"
        if missed:
            n_missed = sum(v for v in missed.values() if v)
            line += f", {n_missed} missed returns"
            unknown = [k for k, v in missed.items() if v is None]
            if unknown:
                line += f" (not reported by the kernel for {', '.join(unknown)})"
        self.err.write(line + "\n")
        self.err.flush()
