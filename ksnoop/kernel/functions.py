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


def find_function(kernel, name, suggest_close=True):
    """The BTF FUNC called ``name``: vmlinux first, then the module kallsyms
    places it in.  SymbolError (naming close matches if ``suggest_close``) when
    there is none."""
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
    hint = suggest(kernel, name) if suggest_close else ""
    shown = name or "''"
    raise SymbolError(f"{shown}: no such function in BTF{hint}")


def _kallsyms_lookup(kernel, name):
    try:
        return kernel.kallsyms.lookup(name)
    except OSError:
        return []


MIN_SUGGEST_LEN = 3  # shorter names match too much to be worth suggesting for


def suggest(kernel, name):
    """" (did you mean a, b, c?)" for a misspelt function name, or ""."""
    if len(name) < MIN_SUGGEST_LEN:
        return ""
    names, by_first = function_names(kernel)
    # difflib's ratio is 2*M/(len(a)+len(b)) >= 0.75, which needs the shorter
    # name to be at least 0.6 of the longer; and a misspelt name nearly always
    # keeps its first letter.  Comparing only those keeps a miss to ~10 ms.
    lo, hi = 0.6 * len(name), len(name) / 0.6
    pool = [n for n in by_first.get(name[0].lower(), ()) if lo <= len(n) <= hi]
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.75)
    if not close:
        low = name.lower()
        close = sorted(n for n in names if low in n.lower())[:3]
    return f" (did you mean {', '.join(close)}?)" if close else ""


_NAMES = {}


def function_names(kernel):
    """(every FUNC name of vmlinux BTF, {lowercase first letter: names}), once per BTF."""
    btf = kernel.vmlinux
    if _NAMES.get("btf") is not btf:
        names = [n for n, _ in btf.names(Kind.FUNC)]
        by_first = {}
        for n in names:
            by_first.setdefault(n[:1].lower(), []).append(n)
        _NAMES.update(btf=btf, names=names, by_first=by_first)
    return _NAMES["names"], _NAMES["by_first"]


TRACEITER = "__traceiter_"  # FUNC whose parameters name a tracepoint's arguments
BTF_TRACE = "btf_trace_"  # typedef of a tracepoint's prototype (arguments unnamed)


@dataclass(frozen=True)
class Tracepoint:
    """A kernel tracepoint, typed by BTF.  Its raw-tracepoint arguments are the
    parameters of its prototype after the first (the ``void *`` context)."""

    name: str
    btf: object
    proto_id: int  # FUNC_PROTO: (void *__data, arguments...)
    module: str  # "" for vmlinux

    @property
    def proto(self):
        return self.btf[self.proto_id]

    @property
    def params(self):
        """The tracepoint's arguments: (name, type id); unnamed ones are argN."""
        return tuple((p.name or f"arg{i + 1}", p.type) for i, p in enumerate(self.proto.params[1:]))


def find_tracepoint(kernel, name):
    """The BTF-typed tracepoint ``name`` (``sched_switch``): argument names from
    ``__traceiter_NAME``, else the unnamed prototype of ``btf_trace_NAME``."""
    btf = kernel.vmlinux
    ids = btf.find(TRACEITER + name, Kind.FUNC)
    if ids:
        return Tracepoint(name, btf, btf[ids[0]].type, "")
    for tid in btf.find(BTF_TRACE + name, Kind.TYPEDEF):
        ptr = btf[btf[tid].type]
        if ptr.kind == Kind.PTR and btf[ptr.type].kind == Kind.FUNC_PROTO:
            return Tracepoint(name, btf, ptr.type, "")
    if kernel.live:
        for sym in _kallsyms_lookup(kernel, TRACEITER + name):
            if sym.module:
                mbtf = kernel.module_btf(sym.module)
                mids = [i for i in mbtf.find(TRACEITER + name, Kind.FUNC) if i >= mbtf.start_id]
                if mids:
                    return Tracepoint(name, mbtf, mbtf[mids[0]].type, sym.module)
    close = difflib.get_close_matches(name, tracepoint_names(kernel), n=3, cutoff=0.75) \
        if len(name) >= MIN_SUGGEST_LEN else []
    hint = f" (did you mean {', '.join('tp:' + n for n in close)}?)" if close else ""
    raise SymbolError(f"tp:{name}: no such tracepoint in BTF{hint}")


def tracepoint_names(kernel):
    """Every tracepoint BTF types (by its __traceiter_ function), sorted."""
    return sorted(n[len(TRACEITER):] for n, _ in kernel.vmlinux.names(Kind.FUNC)
                  if n.startswith(TRACEITER))


def tracepoint_signature(tp):
    """``tp:NAME(type arg, ...);`` for ``ksnoop info tp:NAME``."""
    params = ", ".join(declare(tp.btf, tid, name) for name, tid in tp.params)
    return f"tp:{tp.name}({params});"


def signature(fn, arch="x86_64"):
    """One line of C for a function, with a note on untraceable parameters."""
    proto = fn.proto
    params = param_list(fn.btf, proto)
    notes = [f"{s.name or f'arg{s.index}'} ({s.why})"
             for s in callconv.assign(fn.btf, proto, arch) if not s.traceable]
    if notes:
        params += f" /* not traceable: {', '.join(notes)} */"
    return declare(fn.btf, proto.type, f"{fn.name}({params})") + ";"


def how_traced(kernel, fn, backends, pattern=False):
    """One comment line for ``ksnoop info --how``: whether ``fn`` can be
    traced here, by which backend and why, and where its stack arguments
    are read."""
    from .backend import FENTRY, NotPossible
    from .features import kprobes_available

    if kernel.live:
        try:
            kernel.kallsyms.function(fn.name)
        except SymbolError as e:
            return f"  /* not traceable: {e} */"
    slots = callconv.assign(fn.btf, fn.proto, backends.arch)
    try:
        c = backends.choose(fn, slots, pattern)
    except NotPossible as e:
        return f"  /* not traceable with --backend fentry: {e} */"
    if kernel.live and c.probe != FENTRY:
        ok, why = kprobes_available()
        if not ok:
            return f"  /* not traceable here: {why}; fentry/fexit: {c.why} */"
    stack = [s for s in slots if s.on_stack]
    where = ""
    if stack and c.probe == FENTRY:
        where = "; on the stack, copied by the trampoline: " + ", ".join(
            f"{s.name} (ctx[{s.ctx[0]}])" for s in stack)
    elif stack:
        where = "; on the stack, read at entry: " + ", ".join(
            f"{s.name or f'arg{s.index + 1}'} (sp+{s.stack})" for s in stack)
    return f"  /* {c.label}: {c.why}{where} */"
