"""Kernel functions: finding a function's BTF prototype (in vmlinux or a
module), and its prototype as one line of C for ``ksnoop info``."""

import difflib
from dataclasses import dataclass

from ..btf import Kind
from ..btf.cdecl import declare, param_list
from ..errors import SymbolError
from . import callconv


@dataclass(frozen=True)
class Function:
    name: str
    btf: object  # the BTF holding the FUNC (module BTF for module functions)
    func_id: int
    module: str  # "" for vmlinux

    @property
    def proto(self):
        return self.btf[self.btf[self.func_id].type]

    @property
    def return_type(self):
        return self.proto.type


def find_function(kernel, name):
    """The BTF FUNC called ``name``: vmlinux first, then the module kallsyms
    places it in.  SymbolError naming close matches when there is none."""
    ids = kernel.vmlinux.find(name, Kind.FUNC)
    if ids:
        return Function(name, kernel.vmlinux, ids[0], "")
    if kernel.live:
        for sym in _kallsyms_lookup(kernel, name):
            if sym.module:
                btf = kernel.module_btf(sym.module)
                mids = btf.find(name, Kind.FUNC)
                mids = [i for i in mids if i >= btf.start_id]
                if mids:
                    return Function(name, btf, mids[0], sym.module)
    hint = suggest(kernel, name)
    raise SymbolError(f"{name}: no such function in BTF{hint}")


def _kallsyms_lookup(kernel, name):
    try:
        return kernel.kallsyms.lookup(name)
    except OSError:
        return []


def suggest(kernel, name):
    names = [n for n, _ in kernel.vmlinux.names(Kind.FUNC)]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.75)
    if not close:
        low = name.lower()
        close = sorted(n for n in names if low in n.lower())[:3]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def signature(fn, arch="x86_64"):
    """One line of C for a function, with a note on untraceable parameters."""
    proto = fn.proto
    params = param_list(fn.btf, proto)
    notes = [f"{s.name or f'arg{s.index}'} ({s.why})"
             for s in callconv.assign(fn.btf, proto, arch) if not s.traceable]
    if notes:
        params += f" /* not traceable: {', '.join(notes)} */"
    return declare(fn.btf, proto.type, f"{fn.name}({params})") + ";"
