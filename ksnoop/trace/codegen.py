"""TracePlan -> BPF C, from the template ksnoop.bpf.c beside this module.

One entry and one return program per function, with the plan baked in:
predicates are compiled comparisons evaluated first, in the order written,
each on the value as captured (read once: into a stack variable while no event
is needed, then into the event), before anything else is copied; each value
is fetched with a fixed sequence of reads (plain loads where the verifier
checks them against BTF: Value.direct); events are exactly the size the
layout says.
"""

import string
from dataclasses import dataclass
from importlib import resources

from .calls import STASH_DEPTH, STASH_ENTRIES, calls_c, needs_calls
from .filters import glob_match, task_filter
from .filters import maps as filter_maps
from .plan import DEREF, FENTRY, KPROBE, REGS, SCALAR, STRING, TRACEPOINT, Filters, LogicCond, NotCond, Test
from .wire import CALL, ENTRY, HEADER_FIELDS, KSTACK_FRAMES, RETURN, layouts_for

TEMPLATE = "ksnoop.bpf.c"  # package data next to this module
STASH_BYTES = 32 << 20  # memory the preallocated stash of one function may take


def stash_entries(event_size):
    """Stashed calls in flight per function: plenty, within STASH_BYTES."""
    return max(64, min(STASH_ENTRIES, STASH_BYTES // max(event_size, 1)))
PERCPU_VALUE_MAX = 32768  # the kernel's PCPU_MIN_UNIT_SIZE
_OPS = {"==", "!=", ">", ">=", "<", "<="}


def _template():
    return string.Template(resources.files(__package__).joinpath(TEMPLATE).read_text())


def _const(value, ctype):
    if ctype.startswith("s"):
        return f"({ctype})({value}LL)" if value >= -(1 << 63) + 1 else f"({ctype})(-{abs(value) - 1}LL - 1)"
    return f"({ctype}){value}ULL"


def _read(value):
    return "bpf_probe_read_user" if value.user else "bpf_probe_read_kernel"


def header_struct():
    lines = []
    for ctype, code, name in HEADER_FIELDS:
        if code.endswith("s"):
            lines.append(f"\t{ctype} {name}[{code[:-1]}];")
        else:
            lines.append(f"\t{ctype} {name};")
    return "\n".join(lines)


def event_struct(ev):
    """The C struct of one event layout, with its offsets asserted."""
    lines, pos, pad = [f"struct {ev.c_name} {{", "\tstruct ksnoop_hdr hdr;"], 40, 0
    asserts = []

    def field(ctype, name, offset, count=0, check=True):
        nonlocal pos, pad
        if offset > pos:
            lines.append(f"\tu8 _pad{pad}[{offset - pos}];")
            pad += 1
        lines.append(f"\t{ctype} {name}{f'[{count}]' if count else ''};")
        if check:
            asserts.append((name, offset))
        pos = offset + (count or 1) * int(ctype[1:]) // 8

    for i, s in enumerate(ev.slots):
        lines.append(f"\t/* {s.value.name} */")
        if s.ptr >= 0:
            field("u64", f"v{i}_ptr", s.ptr)
        if s.status >= 0:
            field("s32", f"v{i}_status", s.status)
        if s.data >= 0:
            field("u8", f"v{i}_data", s.data, s.size)
    # the duration and the kernel stack, after the slots; the size assert below
    # places them (the last members), as the test of the layout does
    if ev.dur >= 0:
        field("u64", "dur", ev.dur, check=False)
    if ev.kstack >= 0:
        field("s32", "kstack_n", ev.kstack, check=False)
        field("u64", "kstack", ev.kstack_data, KSTACK_FRAMES, check=False)
    if ev.size > pos:
        lines.append(f"\tu8 _pad{pad}[{ev.size - pos}];")
    # aligned(8): every member sits at its natural alignment (wire.py), so stores
    # are whole words; packed alone makes clang store byte by byte, shifting the
    # value (the verifier refuses that on a pointer: fentry struct arguments)
    lines.append("} __attribute__((packed, aligned(8)));")
    for name, offset in asserts:
        lines.append(f"_Static_assert(__builtin_offsetof(struct {ev.c_name}, {name}) == {offset}, "
                     f"\"layout\");")
    lines.append(f"_Static_assert(sizeof(struct {ev.c_name}) == {ev.size}, \"layout\");")
    return "\n".join(lines)


# What bpf_probe_read_kernel returns for a read at a NULL pointer on x86_64
# (-ERANGE: not a kernel address); plain loads say the same (Value.direct).
NULL_READ = -34
_LOAD = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}


def _local(slot):
    """Value ``slot`` can be fetched into a stack variable (a number or a
    pointer: 8 bytes) and tested there, before the event is looked up."""
    return slot.value.kind in (SCALAR, DEREF, STRING)


def _fetch(slot, i, indent, local=False):
    """Code that reads value ``i``'s own number into the event slot, once: a
    register, a scalar in memory (a bitfield extracted and sign-extended), or a
    pointer at the end of its hops.  What a pointer points to is copied later
    (``_copy``), so predicates on a pointer run before the pointee is read.
    ``local``: into the stack variables ``l<i>`` (the number) and ``s<i>`` (the
    read's status) instead, for ``_store`` to put into the event later.
    Each read is a bpf_probe_read_* call, or with Value.direct a plain load
    the verifier checks against BTF (fentry/fexit), which fails at a NULL
    pointer as the helper would."""
    v = slot.value
    f = f"e->v{i}"
    if local:
        assert _local(slot)
    if v.kind == SCALAR and v.read_off < 0:
        if local:
            return [f"{indent}u64 l{i} = (u64){v.reg};"]
        # one 8-byte store (the slot is 8-byte aligned; a packed member would be
        # stored byte by byte, shifting the value: the verifier refuses that on a
        # pointer, as fentry's struct pointer arguments are)
        return [f"{indent}*(u64 *)&{f}_ptr = (u64){v.reg};"]
    if v.kind == REGS:
        return [f"{indent}*(u64 *)&{f}_data[{8 * k}] = (u64){reg};" for k, reg in enumerate(v.regs)]
    if local:
        word, ptr, data, status = f"l{i}", f"l{i}", f"&l{i}", f"s{i}"
        out = [f"{indent}u64 l{i} = 0;", f"{indent}long s{i} = 0;"]
    else:
        word, ptr, data, status = f"*(u64 *){f}_data", f"*(u64 *)&{f}_ptr", f"{f}_data", f"{f}_status"
        out = []
    plain = v.direct and not v.user
    out += [f"{indent}{{", f"{indent}\tu64 p = (u64){v.reg};", f"{indent}\tlong err = 0;"]
    inner = indent + "\t"
    for off in v.hops:
        if plain:
            out.append(f"{inner}if (!err) {{ if (!p) err = {NULL_READ}; else p = *(u64 *)(p + {off}); }}")
        else:
            out.append(f"{inner}if (!err) err = {_read(v)}(&p, sizeof(p), (void *)(p + {off}));")
    if v.kind in (DEREF, STRING):
        # A NULL pointer is not read: ptr 0 with status 0 is shown as NULL, while a
        # failed read (status < 0) is an unreadable pointer.
        out.append(f"{inner}{ptr} = err ? 0 : p;")
    elif v.kind == SCALAR:
        if not local:  # (l<i> starts at 0)
            out.append(f"{inner}{word} = 0;")
        if plain:
            out.append(f"{inner}if (!err) {{ if (!p) err = {NULL_READ}; "
                       f"else {word} = *({_LOAD[v.size]} *)(p + {v.read_off}); }}")
        else:
            out.append(f"{inner}if (!err) err = {_read(v)}({data}, {v.size}, (void *)(p + {v.read_off}));")
        if v.bitfield is not None:
            out.append(f"{inner}{word} = {v.bitfield.c_expr(word)};")
    else:  # MEMORY
        out.append(f"{inner}if (!err) err = {_read(v)}({f}_data, {slot.size}, (void *)(p + {v.read_off}));")
    out.append(f"{inner}{status} = err;")
    out.append(f"{indent}}}")
    return out


def _store(slot, i, indent):
    """Code that puts what ``_fetch(local=True)`` read into the event slot."""
    v = slot.value
    f = f"e->v{i}"
    if v.kind == SCALAR and v.read_off < 0:
        return [f"{indent}*(u64 *)&{f}_ptr = l{i};"]
    word = f"*(u64 *){f}_data" if v.kind == SCALAR else f"*(u64 *)&{f}_ptr"
    return [f"{indent}{word} = l{i};", f"{indent}{f}_status = s{i};"]


def _copy(slot, i, indent):
    """Code that copies what a fetched pointer points to (DEREF, STRING); nothing else."""
    v = slot.value
    f = f"e->v{i}"
    if v.kind == STRING and not v.user:
        # A char * into the user half of the address space (the top bit clear on
        # x86_64 and arm64) is read as a user string, any other as a kernel one:
        # do_sys_openat2(filename) shows the path whatever BTF says of the pointer.
        return [f"{indent}if (!{f}_status && {f}_ptr) {f}_status = (s64){f}_ptr >= 0 ? "
                f"bpf_probe_read_user_str({f}_data, {slot.size}, (void *)({f}_ptr + {v.read_off})) : "
                f"bpf_probe_read_kernel_str({f}_data, {slot.size}, (void *)({f}_ptr + {v.read_off}));"]
    if v.kind == STRING:
        fn = "bpf_probe_read_user_str"
    elif v.kind == DEREF:
        fn = _read(v)
    else:
        return []
    return [f"{indent}if (!{f}_status && {f}_ptr) "
            f"{f}_status = {fn}({f}_data, {slot.size}, (void *)({f}_ptr + {v.read_off}));"]


def _operand(slot, i, local=False):
    """The C expression a predicate on value ``i`` compares: what ``_fetch`` stored."""
    v = slot.value
    if local:
        return f"l{i}"
    if v.kind == SCALAR and v.read_off >= 0:
        return f"*(u64 *)e->v{i}_data"
    return f"e->v{i}_ptr"


def _capture(ev, at_return, fail, indent, copy=True, early=False):
    """Code that fills the event's slots of one side (entry or return values).

    Predicates are tested in the order written: each predicated value is read
    once into its slot just before its first test, and the test compares what
    was captured (so the value shown is the value that passed).  A failed read
    fails the predicate.  Only then are the other values (and what predicated
    pointers point to) copied.  ``fail`` runs when a predicate is false; the
    event header is filled between the two phases (``$hdr`` in the result).
    ``copy``: False, or a set of value names: only those pointers' targets are
    copied (aggregate.py reads the numbers and pointers it keys on, and what
    its conditions compare).
    ``early``: the event does not exist yet.  The leading predicates on numbers
    and pointers read into stack variables and test them there, so a call they
    reject costs no event lookup; the result has a ``$event`` mark where the
    event must be found, after which what they read is stored into it.
    """
    mine = [(i, s) for i, s in enumerate(ev.slots) if s.value.at_return == at_return]
    checks = [(p.seq, k, i, s, p) for i, s in mine for k, p in enumerate(s.value.preds)]
    checks += [(c.seq, 0, -1, None, c) for c in ev.conds if c.at_return == at_return]
    checks.sort(key=lambda c: c[:2])
    out, fetched, copied, local = [], set(), set(), []

    def fetch_and_test(i, slot, pred, on_stack):
        if i not in fetched:  # read once, just before its first test
            fetched.add(i)
            if on_stack:
                local.append((i, slot))
            out.extend(_fetch(slot, i, indent, local=on_stack))
            if not (slot.value.kind == SCALAR and slot.value.read_off < 0):
                out.append(f"{indent}if ({f's{i}' if on_stack else f'e->v{i}_status'}) {fail}")
        out.extend(_test(slot, i, pred, fail, indent, local=on_stack))

    n = 0
    while early and n < len(checks) and checks[n][3] is not None and _local(checks[n][3]):
        _, _, i, slot, pred = checks[n]
        fetch_and_test(i, slot, pred, True)
        n += 1
    if early:
        out.append("$event")
        for i, slot in local:
            out += _store(slot, i, indent)
    for _, _, i, slot, pred in checks[n:]:
        if slot is None:  # a condition item
            out += _condition(ev, pred, at_return, fail, indent, fetched, copied)
        else:
            fetch_and_test(i, slot, pred, False)
    out.append("$hdr")
    for i, slot in mine:
        if i not in fetched:
            out += _fetch(slot, i, indent)
        if (copy is True or (copy and slot.value.name in copy)) and i not in copied:
            out += _copy(slot, i, indent)
    return out


def _test(slot, i, pred, fail, indent, local=False):
    """Code that runs ``fail`` unless value ``i`` (as fetched) passes ``pred``."""
    v = slot.value
    assert pred.op in _OPS
    return [f"{indent}{{",
            f"{indent}\t{v.ctype} v = ({v.ctype}){_operand(slot, i, local)};",
            f"{indent}\tif (!(v {pred.op} {_const(pred.value, v.ctype)})) {fail}",
            f"{indent}}}"]


def _tests(node):
    """The Test leaves of a condition tree, left to right."""
    if isinstance(node, Test):
        return [node]
    if isinstance(node, NotCond):
        return _tests(node.expr)
    return _tests(node.left) + _tests(node.right)


def _condition(ev, cond, at_return, fail, indent, fetched, copied):
    """Code that reads every value a condition names (once, into the event) and
    runs ``fail`` unless it holds.  An unreadable value makes its tests false."""
    index = {s.value.name: i for i, s in enumerate(ev.slots)}
    out = [f"{indent}{{"]
    inner = indent + "\t"
    globs = {}
    for t in _tests(cond.expr):
        i = index[t.value]
        slot = ev.slots[i]
        if slot.value.at_return == at_return:  # the other side's values are in the stash
            if i not in fetched:
                fetched.add(i)
                out += _fetch(slot, i, inner)
            if isinstance(t.pred.value, bytes) and slot.value.kind == STRING and i not in copied:
                copied.add(i)
                out += _copy(slot, i, inner)
        if t.pred.op == "~" and id(t) not in globs:
            var = f"g{len(globs)}"
            globs[id(t)] = var
            out.append(f"{inner}int {var} = 0;")
            out.append(f"{inner}if ({_readable(slot, i)}) {{")
            out += glob_match(t.pred.value, f"e->v{i}_data", slot.size, var, inner + "\t")
            out.append(f"{inner}}}")
    out.append(f"{inner}if (!({_cond_c(cond.expr, ev, index, globs)})) {fail}")
    out.append(f"{indent}}}")
    return out


def _readable(slot, i):
    """C: value ``i`` was read (a string: its pointer was not NULL and it was copied)."""
    v = slot.value
    if v.kind == SCALAR and v.read_off < 0:
        return "1"
    if v.kind == STRING:
        return f"(e->v{i}_ptr && e->v{i}_status > 0)"
    return f"(e->v{i}_status >= 0)"


def _cond_c(node, ev, index, globs):
    """A condition tree as one C boolean expression over the event's slots."""
    if isinstance(node, NotCond):
        return f"!({_cond_c(node.expr, ev, index, globs)})"
    if isinstance(node, LogicCond):
        return f"({_cond_c(node.left, ev, index, globs)} {node.op} {_cond_c(node.right, ev, index, globs)})"
    i = index[node.value]
    slot, p = ev.slots[i], node.pred
    ok = _readable(slot, i)
    if p.op == "~":
        return f"({ok} && {globs[id(node)]})"
    if isinstance(p.value, bytes):
        same = _string_equals(slot, i, p.value)
        return f"({ok} && {same})" if p.op == "==" else f"({ok} && !{same})"
    v = slot.value
    operand = _operand(slot, i) if v.kind not in (DEREF, STRING) else f"e->v{i}_ptr"
    if p.mask is not None:
        return f"({ok} && (((u64){operand} & {p.mask}ULL) {p.op} {p.value & ((1 << 64) - 1)}ULL))"
    assert p.op in _OPS
    return f"({ok} && (({v.ctype}){operand} {p.op} {_const(p.value, v.ctype)}))"


def _string_equals(slot, i, text):
    """C: the captured string (or char array) of slot ``i`` is exactly ``text``."""
    parts = [f"e->v{i}_data[{k}] == {b}" for k, b in enumerate(text)]
    if slot.value.kind == STRING:
        parts.insert(0, f"e->v{i}_status == {len(text) + 1}")  # bytes copied, NUL included
    elif len(text) < slot.size:
        parts.append(f"e->v{i}_data[{len(text)}] == 0")
    return "(" + " && ".join(parts) + ")"


def _with_header(lines, header, event=None):
    """Put the header lines where ``_capture`` left its ``$hdr`` mark (and the
    lines that find the event at its ``$event`` mark, if it left one)."""
    at = lines.index("$hdr")
    lines = lines[:at] + header + lines[at + 1:]
    if event is not None:
        at = lines.index("$event")
        lines = lines[:at] + event + lines[at + 1:]
    return lines


def _task_filter(gen):
    """Only the tasks the user chose; and never ksnoop itself (its own file opens...)."""
    return task_filter(gen.filters, gen.self_tgid)


def _scratch(ev):
    return ["\tu32 slot = KSNOOP_SCRATCH_SLOT;",
            f"\tstruct {ev.c_name} *e = (struct {ev.c_name} *)ksnoop_scratch.lookup(&slot);",
            "\tif (!e) return 0;"]


def _scratch_map(size, ncpus):
    """Per-CPU values are limited to 32 KiB; bigger events get one array slot per CPU
    (a kprobe program is not migrated while it runs, so the slot is its own)."""
    if size <= PERCPU_VALUE_MAX:
        return ("BPF_PERCPU_ARRAY(ksnoop_scratch, struct ksnoop_scratch_t, 1);\n"
                "#define KSNOOP_SCRATCH_SLOT 0")
    return (f"BPF_ARRAY(ksnoop_scratch, struct ksnoop_scratch_t, {ncpus});\n"
            "#define KSNOOP_SCRATCH_SLOT bpf_get_smp_processor_id()")


# The context a program of each probe kind gets (values read arguments from it).
_CTX = {KPROBE: "struct pt_regs *ctx", TRACEPOINT: "struct bpf_raw_tracepoint_args *ctx",
        FENTRY: "u64 *ctx"}  # fentry/fexit: the argument array (fexit: then the return value)
MULTI_ENTRY, MULTI_RETURN = "ksnoop_entry_m", "ksnoop_return_m"  # kprobe-multi dispatchers
MULTI_PROGS = "ksnoop_multi"  # their program array: function i's entry at i, return at BASE + i
MULTI_RETURN_BASE = 1024  # above any function index (resolve.MAX_FUNCS)


def _multi(programs, probes, maps, structs, gen, machine):
    """Functions attached by one kprobe-multi link share one program per side.
    Where every function of a side qualifies (multigen.side_layout), it is one
    generic program reading each function's recipe by the link's cookie; the
    functions' own programs are dropped and their probes name it.  Otherwise a
    dispatcher tail-calls the function's own program, found in a program array
    by the cookie (the function's index; returns MULTI_RETURN_BASE above).
    Returns the scratch event size the generic programs need (0: none)."""
    from ..kernel.arch import current
    from . import multigen

    bases = {MULTI_ENTRY: 0, MULTI_RETURN: MULTI_RETURN_BASE}
    sides = {}
    for k, (fp, entry, ret) in enumerate(probes):
        for side, name in ((MULTI_ENTRY, entry), (MULTI_RETURN, ret)):
            if fp.multi and name:
                sides.setdefault(side, []).append((k, fp, name))
    generic = {side: [multigen.side_layout(fp, side == MULTI_RETURN) for _, fp, _ in members]
               for side, members in sides.items()}
    generic = {side: evs for side, evs in generic.items() if all(evs)}
    scratch = 0
    if generic:
        span = multigen.span(max(ev.size for evs in generic.values() for ev in evs))
        maps.append(multigen.helpers(span))
        scratch = 2 * span
    dropped = set()
    for side, members in sides.items():
        if side not in generic:
            continue
        for k, _, name in members:
            dropped.add(name)
            fp, entry, ret = probes[k]
            probes[k] = (fp, side if side == MULTI_ENTRY else entry, side if side == MULTI_RETURN else ret)
        kind = RETURN if side == MULTI_RETURN else ENTRY
        timed = any(needs_calls(fp) for _, fp, _ in members)
        kstack = any(fp.kstack for _, fp, _ in members)
        nvals = max([len(ev.slots) for ev in generic[side]] + [1])
        programs.append(multigen.program(side, kind, bases[side], _prologue(side, members[0][1], gen),
                                         multigen.registers(current(machine)), timed, gen.min_ns,
                                         kstack, nvals))
    programs[:] = [t for t in programs if t.split("(", 1)[0][4:] not in dropped]
    unused = {ev.c_name for evs in generic.values() for ev in evs}
    for fp, entry, ret in probes:  # a function with one side compiled keeps its structs
        if fp.multi and (entry not in (None, MULTI_ENTRY) or ret not in (None, MULTI_RETURN)):
            unused -= {ev.c_name for ev in layouts_for(fp)}
    structs[:] = [t for t in structs if not any(t.startswith(f"struct {n} {{") for n in unused)]
    tail = {side for side in sides if side not in generic}
    if tail:
        maps.append(f"BPF_PROG_ARRAY({MULTI_PROGS}, {2 * MULTI_RETURN_BASE});")
    for side in sorted(tail):
        base = f"{bases[side]} + " if bases[side] else ""
        programs.append("\n".join([f"int {side}(struct pt_regs *ctx)", "{",
                                    f"\t{MULTI_PROGS}.call(ctx, {base}bpf_get_attach_cookie(ctx));",
                                    "\treturn 0;", "}"]))
    return scratch


def _prologue(name, fp, gen):
    """A program's signature, task id and process filters."""
    return ([f"int {name}({_CTX[fp.probe]})", "{", "\tu64 id = bpf_get_current_pid_tgid();"]
            + _task_filter(gen))


def _kstack(ev, indent="\t"):
    """The kernel stack into the event (-K); a failure is said by kstack_n < 0."""
    if ev.kstack < 0:
        return []
    return [f"{indent}e->kstack_n = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);"]


def _slow_enough(gen, fail):
    """--min-latency: drop a call shorter than the minimum (or of unknown length)."""
    if not gen.min_ns:
        return []
    return [f"\tif (dur == KSNOOP_NO_DURATION || dur < {int(gen.min_ns)}ULL) {fail}"]


def _sp(fp, gen):
    """C: the stack pointer at a kprobe (entry or return), checked against the
    entry's at the return; 0 elsewhere (fentry/fexit: no return is missed)."""
    return f"ctx->{gen.sp_reg}" if fp.probe == KPROBE else "0"


def _entry_program(fp, ev, gen):
    """The entry program: the call's start time (when its return is traced),
    then, when ``ev`` (the entry or stash event) is given, the event."""
    name = f"ksnoop_entry_{fp.index}"
    out = _prologue(name, fp, gen)
    if fp.stash:
        out += ["\tstruct ksnoop_stash_key key;",
                f"\tksnoop_enter(&key, id, {fp.index}, {_sp(fp, gen)});"]
        fail = f"{{ ksnoop_stash_{fp.index}.delete(&key); return 0; }}"
    else:
        if needs_calls(fp):
            out += ["\tstruct ksnoop_stash_key key;",
                    f"\tksnoop_enter(&key, id, {fp.index}, {_sp(fp, gen)});"]
        fail = "return 0;"
    if ev is not None:
        out += _with_header(_capture(ev, False, fail, "\t", early=True),
                            [f"\tksnoop_fill_hdr(&e->hdr, id, {fp.index}, {ev.kind});"] + _kstack(ev),
                            event=_scratch(ev))
        if fp.stash:
            out.append(f"\tksnoop_stash_{fp.index}.update(&key, e);")
        else:
            out.append("\tKSNOOP_OUTPUT(ctx, e, sizeof(*e));")
    out += ["\treturn 0;", "}"]
    return name, out


def _return_program(fp, ev, gen):
    name = f"ksnoop_return_{fp.index}"
    out = _prologue(name, fp, gen)
    if fp.stash:
        # Return values are captured straight into the stash entry.
        fail = f"{{ ksnoop_stash_{fp.index}.delete(&key); return 0; }}"
        out += ["\tstruct ksnoop_stash_key key;",
                f"\tu64 dur = ksnoop_leave(&key, id, {fp.index}, {_sp(fp, gen)});",
                "\tif (dur == KSNOOP_NO_DURATION) return 0;",
                f"\tstruct {ev.c_name} *e = (struct {ev.c_name} *)ksnoop_stash_{fp.index}.lookup(&key);",
                "\tif (!e) return 0;"]
        out += _slow_enough(gen, fail)
        header = ["\te->hdr.cpu = bpf_get_smp_processor_id();", "\te->dur = dur;"]
    else:
        out += ["\tstruct ksnoop_stash_key key;",
                f"\tu64 dur = ksnoop_leave(&key, id, {fp.index}, {_sp(fp, gen)});"]
        out += _slow_enough(gen, "return 0;")
        fail = "return 0;"
        header = [f"\tksnoop_fill_hdr(&e->hdr, id, {fp.index}, {ev.kind});", "\te->dur = dur;"]
        header += _kstack(ev)
    early = not fp.stash  # else the event is the stash entry, found already
    out += _with_header(_capture(ev, True, fail, "\t", early=early), header,
                        event=_scratch(ev) if early else None)
    out.append("\tKSNOOP_OUTPUT(ctx, e, sizeof(*e));")
    if fp.stash:
        out.append(f"\tksnoop_stash_{fp.index}.delete(&key);")
    out += ["\treturn 0;", "}"]
    return name, out




@dataclass(frozen=True)
class Machine:
    """Facts about the machine the program will run on, passed in so that code
    generation stays a pure function of its inputs."""

    self_tgid: int  # ksnoop's own process, never traced
    ncpus: int  # possible CPUs (sizes the scratch array of events over 32 KiB)


@dataclass(frozen=True)
class _Gen:
    filters: Filters
    self_tgid: int
    sp_reg: str = "sp"  # pt_regs' stack pointer member

    @property
    def min_ns(self):
        return getattr(self.filters, "min_ns", 0)


def generate(plan, machine, filters=Filters(), generator=None):
    """(C text, [(function plan, entry program name or None, return name or None)]).

    ``generator``: programs other than trace events (``aggregate.Generator``):
    ``shared()`` gives (structs, maps) once, ``function(fp, gen)`` gives
    (structs, maps, programs, entry name, return name) per function; the
    template, task filters and their maps stay this module's."""
    from ..kernel.arch import current

    gen = _Gen(filters, machine.self_tgid, current(plan.arch).sp_reg)
    ncpus = machine.ncpus
    structs, maps, programs, probes = [], filter_maps(filters), [], []
    scratch = 64
    calls = bool(generator is not None and getattr(generator, "calls", False))
    if generator is not None:
        more_structs, more_maps = generator.shared()
        structs += more_structs
        maps += more_maps
    for fp in plan.funcs:
        if generator is not None:
            more_structs, more_maps, code, entry_name, ret_name = generator.function(fp, gen)
            structs += more_structs
            maps += more_maps
            programs += code
            probes.append((fp, entry_name, ret_name))
            continue
        evs = layouts_for(fp)
        entry_name = ret_name = None
        for ev in evs:
            structs.append(event_struct(ev))
            scratch = max(scratch, ev.size)
        calls = calls or needs_calls(fp)
        if fp.stash:
            (ev,) = evs
            maps.append(f"BPF_TABLE(\"lru_hash\", struct ksnoop_stash_key, struct {ev.c_name}, "
                        f"ksnoop_stash_{fp.index}, {stash_entries(ev.size)});")
            entry_name, code = _entry_program(fp, ev, gen)
            programs.append("\n".join(code))
            ret_name, code = _return_program(fp, ev, gen)
            programs.append("\n".join(code))
        else:
            entry_ev = next((ev for ev in evs if ev.kind == ENTRY), None)
            if entry_ev is not None or needs_calls(fp):  # a traced return needs the entry time
                entry_name, code = _entry_program(fp, entry_ev, gen)
                programs.append("\n".join(code))
            for ev in evs:
                if ev.kind == RETURN:
                    ret_name, code = _return_program(fp, ev, gen)
                    programs.append("\n".join(code))
        probes.append((fp, entry_name, ret_name))
    if calls:
        maps.append(calls_c(start=generator is None))
    scratch = max(scratch, _multi(programs, probes, maps, structs, gen, plan.arch))
    text = _template().substitute(
        header_fields=header_struct(),
        event_structs="\n\n".join(structs),
        scratch_size=scratch,
        scratch_map=_scratch_map(scratch, ncpus),
        maps="\n".join(maps),
        programs="\n\n".join(programs),
    )
    return text, probes


__all__ = ["generate", "CALL", "ENTRY", "RETURN", "STASH_DEPTH", "needs_calls"]
