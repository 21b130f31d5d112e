"""``ksnoop info``: a function's prototype as C, and which arguments can be traced."""

from . import callconv
from .cdecl import declare, param_list


def signature(fn, arch="x86_64"):
    """One line of C for a function, with a note on untraceable parameters."""
    proto = fn.proto
    params = param_list(fn.btf, proto)
    notes = [f"{s.name or f'arg{s.index}'} ({s.why})"
             for s in callconv.assign(fn.btf, proto, arch) if not s.traceable]
    if notes:
        params += f" /* not traceable: {', '.join(notes)} */"
    return declare(fn.btf, proto.type, f"{fn.name}({params})") + ";"
