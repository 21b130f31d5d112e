"""Aggregation reports -> text or JSON.

Text is a table, the same on a terminal and in a pipe except that a terminal
(or ``--color``) also gets a bar per row, drawn by rich; JSON is one object
per report (per ``-i`` interval, or one for the whole run).  Whatever comes
from the kernel (task names, string keys) is printed by render/escape.py,
the one printer of kernel bytes: task names as terminal-safe text, strings
as C literals, and in JSON as UTF-8 strings.
"""

import errno
import re
import time

from rich.cells import cell_len

from ..btf import Kind
from ..render.escape import c_string, json_dumps, json_string, terminal_text
from ..render.values import enum_names
from .aggregate import COMM, COUNT, DURATION, PID, SLOT_NEGATIVE, SLOT_UNREADABLE, STATUS_NULL, TID, slot_range
from .plan import DEREF

FORMATS = ("text", "json")
BAR_MAX = 40
BAR_MIN = 10
_EIGHTHS = " ▏▎▍▌▋▊▉"
_SUFFIXES = ("", "K", "M", "G", "T", "P", "E")
_NUMBER = re.compile(r"-?[0-9]+")


def _errno(status):
    code = -status
    return f"-{errno.errorcode[code]}" if code in errno.errorcode else f"error {status}"


def _signed(num, ctype):
    bits = int(ctype[1:])
    num &= (1 << bits) - 1
    if ctype.startswith("s") and num >> (bits - 1):
        num -= 1 << bits
    return num


def _power(k):
    """2**k as bpftrace writes a bucket edge: 512, 1K, 2K, ..., 1M, ..."""
    unit, rest = divmod(k, 10)
    return f"{1 << rest}{_SUFFIXES[unit]}"


def bucket_label(slot):
    if slot == SLOT_NEGATIVE:
        return "(..., 0)"
    if slot == SLOT_UNREADABLE:
        return "unreadable"
    low, high = slot_range(slot)
    if low == high:
        return f"[{low}]"
    k = low.bit_length() - 1
    return f"[{_power(k)}, {_power(k + 1)})"


class KeyText:
    """How one function's keys print: text (escaped) and JSON (a value)."""

    def __init__(self, aplan, af):
        self.source, self.v = aplan.source, af.value
        self.string = af.str_bytes > 0  # a char * or a char array
        self.enum = None
        if self.v is not None:
            btf = af.fp.btf
            t = btf[btf.resolve(self.v.type_id)]
            if t.kind in (Kind.ENUM, Kind.ENUM64):
                self.enum = (enum_names(t), t.kflag, (1 << (8 * t.size)) - 1)
            self.pointer = self.v.kind == DEREF or t.kind == Kind.PTR

    def _number(self, key):
        n = _signed(key.num, self.v.ctype)
        if self.enum is not None:
            names, signed, mask = self.enum
            name = names.get(n if signed else n & mask)
            if name is not None:
                return name
        if self.pointer:
            return n & ((1 << 64) - 1)
        return n

    def text(self, key):
        if self.source == COMM:
            return terminal_text(key.raw)
        if self.source in (PID, TID):
            return str(key.num)
        if key.status < 0:
            return f"? ({_errno(key.status)})"
        if self.string:
            return "NULL" if key.status == STATUS_NULL else c_string(key.raw)
        n = self._number(key)
        if isinstance(n, str):
            return terminal_text(n)
        if self.pointer:
            return f"0x{n:x}" if n else "NULL"
        return str(n)

    def json(self, key):
        """(value, error or None)."""
        if self.source == COMM:
            return json_string(key.raw), None
        if self.source in (PID, TID):
            return key.num, None
        if key.status < 0:
            return None, _errno(key.status)
        if self.string:
            return (None if key.status == STATUS_NULL else json_string(key.raw)), None
        n = self._number(key)
        if self.pointer and not isinstance(n, str):
            return f"0x{n:x}", None
        return n, None


def _bar(n, top, width):
    """A bar of ``width`` cells for ``top``, in eighths of a cell."""
    if top <= 0 or n <= 0:
        return ""
    eighths = max(1, round(8 * width * n / top))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


class Writer:
    """Writes Reports as ``text`` or ``json``; ``colour``: bars and colour (a terminal)."""

    def __init__(self, fmt, out, colour=False):
        if fmt not in FORMATS:
            raise ValueError(fmt)
        self.fmt, self.out, self.colour = fmt, out, colour and fmt == "text"
        self.console = None
        if self.colour:
            from rich.console import Console

            self.console = Console(file=out, force_terminal=True, highlight=False, soft_wrap=True)
        self._keys = {}

    def _key_text(self, aplan, af):
        kt = self._keys.get(af.fp.index)
        if kt is None:
            kt = self._keys[af.fp.index] = KeyText(aplan, af)
        return kt

    def write(self, rep):
        if self.fmt == "json":
            self.out.write(self.json(rep) + "\n")
            return
        lines = self.text(rep)
        if self.console is None:
            self.out.write("".join(text + "\n" for text, _ in lines))
            return
        from rich.text import Text

        for text, bar in lines:
            t = Text(text)
            if bar:
                t.append(" " + bar, style="cyan")
            self.console.print(t)

    # ------------------------------------------------------------ text
    def _heading(self, rep):
        if not rep.index:
            return []
        clock = time.strftime("%H:%M:%S")
        last = ", last" if rep.final else ""
        return [(f"[{clock}] interval {rep.index} ({rep.seconds:.2f} s{last})", None)]

    def _bar_width(self, used):
        if self.console is None:
            return 0
        return max(BAR_MIN, min(BAR_MAX, self.console.width - used - 2))

    def text(self, rep):
        """[(line, bar or None)]: the report as table lines."""
        out = self._heading(rep)
        if rep.aplan.agg.kind == COUNT:
            out += self._count_text(rep)
        else:
            out += self._hist_text(rep)
        if rep.overflow:
            out.append((f"({rep.overflow} calls not counted: the map of {rep.aplan.agg.keys} keys "
                        "is full; raise --max-keys)", None))
        return out

    def _count_text(self, rep):
        aplan = rep.aplan
        if not rep.rows:
            return [("(no calls)", None)]
        label = aplan.label
        head = ["FUNCTION"] + ([label.upper() if label in (COMM, PID, TID) else label] if label else [])
        rows = []
        for af, key, n in rep.rows:
            cells = [terminal_text(af.fp.name)]
            if key is not None:
                cells.append(self._key_text(aplan, af).text(key))
            rows.append((cells, n))
        widths = [max(cell_len(c) for c in col) for col in zip(head, *(c for c, _ in rows))]
        count_w = max(len("COUNT"), *(len(str(n)) for _, n in rows))

        numeric = [i > 0 and all(_NUMBER.fullmatch(c[i]) for c, _ in rows) for i in range(len(head))]

        def line(cells, count):
            return "  ".join(" " * (w - cell_len(c)) + c if num else c + " " * (w - cell_len(c))
                             for c, w, num in zip(cells, widths, numeric)) + f"  {count:>{count_w}}"

        top = max(n for _, n in rows)
        width = self._bar_width(sum(widths) + 2 * len(widths) + count_w)
        out = [(line(head, "COUNT"), None)]
        out += [(line(cells, str(n)), _bar(n, top, width) if width else None) for cells, n in rows]
        return out

    def _hist_text(self, rep):
        aplan = rep.aplan
        if not rep.hists:
            return [("(no calls)", None)]
        what = "duration (ns)" if aplan.source == DURATION else aplan.label
        out = []
        for af, buckets in rep.hists:
            total = sum(buckets.values())
            out.append((f"{terminal_text(af.fp.name)}: {terminal_text(what)}, {total} "
                        f"value{'s' if total != 1 else ''}", None))
            shown = [s for s in buckets if s != SLOT_UNREADABLE]
            slots = list(range(min(shown), max(shown) + 1)) if shown else []
            if SLOT_UNREADABLE in buckets:
                slots.append(SLOT_UNREADABLE)
            labels = [bucket_label(s) for s in slots]
            label_w = max(len(x) for x in labels)
            count_w = max(len(str(buckets.get(s, 0))) for s in slots)
            top = max(buckets.values())
            width = self._bar_width(2 + label_w + 2 + count_w)
            for s, lab in zip(slots, labels):
                n = buckets.get(s, 0)
                out.append((f"  {lab:<{label_w}}  {n:>{count_w}}",
                            ("|" + _bar(n, top, width).ljust(width) + "|") if width else None))
        return out

    # ------------------------------------------------------------ JSON
    def json(self, rep):
        aplan = rep.aplan
        obj = {"time": round(rep.time, 6), "interval": rep.index, "seconds": round(rep.seconds, 6),
               "final": rep.final, "kind": aplan.agg.kind}
        if aplan.agg.kind == COUNT:
            obj["by"] = aplan.label or None
            counts = []
            for af, key, n in rep.rows:
                row = {"function": af.fp.name}
                if key is not None:
                    row["value"], err = self._key_text(aplan, af).json(key)
                    if err:
                        row["error"] = err
                row["count"] = n
                counts.append(row)
            obj["counts"] = counts
            obj["total"] = rep.total
            obj["overflow"] = rep.overflow
        else:
            obj["of"] = aplan.label
            if aplan.source == DURATION:
                obj["unit"] = "ns"
            hists = []
            for af, buckets in rep.hists:
                rows = []
                for s in sorted(buckets):
                    if s == SLOT_UNREADABLE:
                        continue
                    low, high = slot_range(s)
                    rows.append({"low": low, "high": high, "count": buckets[s]})
                hists.append({"function": af.fp.name, "count": sum(buckets.values()), "buckets": rows,
                              "unreadable": buckets.get(SLOT_UNREADABLE, 0)})
            obj["histograms"] = hists
            obj["total"] = rep.total
        return json_dumps(obj)
