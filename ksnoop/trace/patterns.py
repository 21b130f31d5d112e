"""Wildcard specs: which functions a pattern names, and which of them can be
traced with the spec's values (the others are counted in one note)."""

import fnmatch
from dataclasses import replace

from ..errors import SpecError
from ..kernel.functions import find_function, function_names


def _pattern_matches(kernel, spec):
    """Functions a wildcard spec names: BTF functions matching the pattern that
    kallsyms knows as exactly one function (when types come from this kernel)."""
    names = sorted({n for n in function_names(kernel)[0] if fnmatch.fnmatchcase(n, spec.func)})
    if not kernel.live:
        return names, {}, len(names)
    skipped = {}
    kept = []
    for name in names:
        syms = kernel.kallsyms.lookup(name)
        if len(syms) == 1:
            kept.append(name)
        else:
            why = "not in kallsyms (inlined?)" if not syms else "several functions share the name"
            skipped[why] = skipped.get(why, 0) + 1
    return kept, skipped, len(names)


def _missing_names(fn, spec):
    """Why ``fn`` cannot take ``spec``'s values, by name only (None if it might)."""
    params = {p.name for p in fn.proto.params if p.name}
    for vs in (ref for item in spec.values for ref in item.refs()):
        if vs.is_return and fn.return_type == 0:
            return "returns void"
        if not vs.is_return and vs.base not in params:
            return f"no argument '{vs.base}'"
    return None


def expand(r, spec, start, seen):
    """FuncPlans for every function a wildcard spec matches, and one note.
    ``r`` resolves one function (``r.function(spec, index, pattern=True)``)."""
    names, skipped, total = _pattern_matches(r.kernel, spec)
    if not total:
        raise spec.error(f"no function matches '{spec.func}'", spec.func_pos, len(spec.func))
    plans = []
    for name in names:
        if name in seen:
            skipped["traced by an earlier spec"] = skipped.get("traced by an earlier spec", 0) + 1
            continue
        one = replace(spec, func=name)
        fn = find_function(r.kernel, name)
        why = _missing_names(fn, one) or (r.backends.unattachable(fn) if r.backends else "")
        if not why:
            try:
                plans.append(r.function(one, start + len(plans), pattern=True))
                seen[name] = True
                continue
            except SpecError as e:
                why = e.message.replace(name, "the function")
        skipped[why] = skipped.get(why, 0) + 1
    note = f"{spec.func}: {total} functions match, {len(plans)} traced"
    if skipped:
        note += "; not traced: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
    if not plans:
        raise spec.error(f"no matching function can be traced ({note})", spec.func_pos, len(spec.func))
    return plans, note
