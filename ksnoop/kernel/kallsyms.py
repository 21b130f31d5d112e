"""/proc/kallsyms lines -> Symbol records, with name lookup that refuses to guess."""

from dataclasses import dataclass

from ..errors import SymbolError

FUNC_TYPES = frozenset("TtWw")


@dataclass(frozen=True, slots=True)
class Symbol:
    addr: int
    kind: str  # the one-letter nm type: T t W ...
    name: str
    module: str  # "" for vmlinux

    @property
    def is_function(self):
        return self.kind in FUNC_TYPES

    def where(self):
        return f"0x{self.addr:x}" + (f" [{self.module}]" if self.module else "")


def parse_line(line):
    """One kallsyms line -> Symbol, or None for a malformed line."""
    parts = line.split()
    if len(parts) < 3:
        return None
    try:
        addr = int(parts[0], 16)
    except ValueError:
        return None
    module = parts[3].strip("[]") if len(parts) > 3 else ""
    return Symbol(addr, parts[1], parts[2], module)


class Kallsyms:
    """Symbols from kallsyms text.  Lookups scan the text for the name, so a
    single lookup never has to parse all ~120k lines."""

    def __init__(self, text):
        self.text = text if isinstance(text, str) else text.decode("utf-8", "replace")

    def lookup(self, name):
        """Every function symbol exactly called ``name`` (several for static
        functions that share a name, or a name in several modules)."""
        out, text = [], self.text
        needle = " " + name
        at = text.find(needle)
        while at >= 0:
            end = at + len(needle)
            if end == len(text) or text[end] in "\t\n":
                start = text.rfind("\n", 0, at) + 1
                stop = text.find("\n", end)
                sym = parse_line(text[start:stop if stop >= 0 else len(text)])
                if sym is not None and sym.name == name and sym.is_function:
                    out.append(sym)
            at = text.find(needle, end)
        return out

    def function(self, name):
        """The one function called ``name``; SymbolError if none or ambiguous."""
        syms = self.lookup(name)
        if not syms:
            raise SymbolError(f"{name}: not in /proc/kallsyms (inlined, or not a function?)")
        if len(syms) > 1:
            places = ", ".join(s.where() for s in syms)
            raise SymbolError(f"{name}: ambiguous, {len(syms)} functions share the name: {places}")
        return syms[0]
