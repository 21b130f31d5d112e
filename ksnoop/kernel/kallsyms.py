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


class Symbolizer:
    """Kernel addresses -> ``function+0xoff`` (`` [module]`` for a module's
    function), from the function symbols of kallsyms text; each address is
    looked up once.  None for an address below every symbol."""

    def __init__(self, text):
        text = text if isinstance(text, str) else text.decode("utf-8", "replace")
        syms = []
        for line in text.splitlines():
            sym = parse_line(line)
            if sym is not None and sym.is_function and sym.addr:
                syms.append((sym.addr, sym.name, sym.module))
        syms.sort()
        self._addrs = [a for a, _, _ in syms]
        self._syms = [(n, m) for _, n, m in syms]
        self._cache = {}

    def __len__(self):
        return len(self._addrs)

    def lookup(self, addr):
        """(name, offset, module) of the function holding ``addr``, or None."""
        from bisect import bisect_right

        i = bisect_right(self._addrs, addr) - 1
        if i < 0 or not addr:
            return None
        name, module = self._syms[i]
        return name, addr - self._addrs[i], module

    def __call__(self, addr):
        """The raw text ``name+0xoff [module]`` (names not escaped: the
        renderers escape them), or ``0x...`` for an unknown address."""
        hit = self._cache.get(addr)
        if hit is None:
            found = self.lookup(addr)
            if found is None:
                hit = f"0x{addr:x}"
            else:
                name, off, module = found
                hit = f"{name}+0x{off:x}" + (f" [{module}]" if module else "")
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[addr] = hit
        return hit
