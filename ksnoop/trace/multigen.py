"""One generic program for all the functions of a kprobe-multi link.

A wildcard can match hundreds of functions.  Compiling and verifying one
program per function costs a second or more per hundred functions (BCC's
compile of each program, the verifier's pass over each); this module
replaces them, where it can, by one program per side that reads a recipe
per function from an array map (indexed by the cookie the link gives each
call) and fills the function's event exactly as its compiled program
would (``codegen._fetch`` and ``_copy``): the same reads in the same order
into the same wire layout (``wire.layouts_for``), so the decoder and the
output do not know the difference.

A side (entry or return) takes the generic program when every function on
it qualifies: no predicates or conditions there, no stash, at most
``MAX_VALUES`` values, each a register, two registers, or memory reached
through at most ``MAX_HOPS`` pointers (no bitfields), events of at most
``MAX_EVENT`` bytes.  Otherwise codegen's dispatcher tail-calls compiled
programs.
"""

import struct

from .plan import DEREF, MEMORY, REGS, SCALAR, STRING
from .wire import ENTRY, KSTACK_FRAMES, RETURN, EventLayout, layouts_for

RECIPES = "ksnoop_recipes"  # map: function index (+ return base) -> struct ksnoop_recipe
MAX_VALUES = 16  # a power of two (the index is masked)
MAX_HOPS = 2
MAX_EVENT = 32768
NONE16 = 0xFFFF
NO_REG = 255

OP_REG, OP_REGS, OP_SCALAR, OP_MEMORY, OP_DEREF, OP_STRING = 1, 2, 3, 4, 5, 6
# user: 0 kernel memory, 1 user memory, 2 a char * read as a user string if it
# points into the user half of the address space (codegen._copy)
USER_NO, USER_YES, USER_BY_ADDRESS = 0, 1, 2
VAL = struct.Struct("<BBBBB3xiiiIHHHxx")  # struct ksnoop_mval
# nvals, event size, flags, offset of the duration, offset of the kernel stack (NONE16: none)
RECIPE_HEAD = struct.Struct("<IIIHH")
TIMED, EVENT = 1, 2  # recipe flags: the call's entry time is kept (entry side); an event is sent

C_TYPES = f"""struct ksnoop_mval {{
	u8 op, src, src2, nhops, user, _pad[3];
	s32 hops[{MAX_HOPS}];
	s32 read_off;
	u32 size;
	u16 ptr, status, data, _pad2;
}};
_Static_assert(sizeof(struct ksnoop_mval) == {VAL.size}, "recipe layout");
struct ksnoop_recipe {{
	u32 nvals, size, flags;
	u16 dur, kstack;
	struct ksnoop_mval v[{MAX_VALUES}];
}};"""


def registers(arch):
    """The registers a recipe names, by number: the argument registers, then
    the stack pointer, the return register and the second return register."""
    return [arch.arg(i) for i in range(arch.max_args)] + [
        f"ctx->{arch.sp_reg}", arch.ret(), arch.ret_hi()]


def _value_ok(v, slot):
    return (not v.preds and v.bitfield is None and len(v.hops) <= MAX_HOPS
            and (v.kind != REGS or len(v.regs) <= 2))


def side_layout(fp, at_return):
    """The event layout of one side of a function, if the generic program can
    fill it (else None; also None when the side has nothing to do).  The entry
    side of a function whose only event is at return is an empty layout of
    size 0: the generic program keeps the call's entry time and sends nothing."""
    if fp.stash or any(c.at_return == at_return for c in getattr(fp, "conds", ())):
        return None
    kind = RETURN if at_return else ENTRY
    ev = next((e for e in layouts_for(fp) if e.kind == kind), None)
    if ev is None and not at_return and fp.ret:
        return EventLayout(fp.index, ENTRY, (), 0)
    if ev is None or ev.conds or ev.size > MAX_EVENT or len(ev.slots) > MAX_VALUES:
        return None
    if not all(_value_ok(s.value, s) for s in ev.slots):
        return None
    return ev


def recipe(ev, regs, timed=False):
    """The bytes of one function's struct ksnoop_recipe (``regs``: registers();
    ``timed``: an entry side whose function's return is traced)."""
    index = {expr: i for i, expr in enumerate(regs)}
    u16 = lambda off: NONE16 if off < 0 else off  # noqa: E731
    flags = (TIMED if timed else 0) | (EVENT if ev.size else 0)
    out = [RECIPE_HEAD.pack(len(ev.slots), ev.size, flags, u16(ev.dur), u16(ev.kstack))]
    for s in ev.slots:
        v = s.value
        hops = list(v.hops) + [0] * (MAX_HOPS - len(v.hops))
        user = USER_YES if v.user else USER_NO
        if v.kind == SCALAR and v.read_off < 0:
            op, size = OP_REG, 8
        elif v.kind == REGS:
            op, size = OP_REGS, 8 * len(v.regs)
        elif v.kind == SCALAR:
            op, size = OP_SCALAR, v.size
        elif v.kind == MEMORY:
            op, size = OP_MEMORY, s.size
        elif v.kind == DEREF:
            op, size = OP_DEREF, s.size
        elif v.kind == STRING:
            op, size = OP_STRING, s.size
            user = USER_YES if v.user else USER_BY_ADDRESS
        else:
            raise ValueError(v.kind)
        src2 = index[v.regs[1]] if v.kind == REGS and len(v.regs) > 1 else NO_REG
        out.append(VAL.pack(op, index[v.reg], src2, len(v.hops), user, *hops, max(v.read_off, 0),
                            size, u16(s.ptr), u16(s.status), u16(s.data)))
    body = b"".join(out)
    return body + bytes(RECIPE_HEAD.size + MAX_VALUES * VAL.size - len(body))


def span(size):
    """P: a power of two at least ``size``; the generic program's offsets and
    sizes are masked to P - 1, so its scratch event must hold 2 * P bytes."""
    p = 64
    while p < size:
        p <<= 1
    return p


def helpers(p):
    """C shared by the generic programs (once per program text)."""
    return f"""{C_TYPES}
BPF_ARRAY({RECIPES}, struct ksnoop_recipe, 2048);
#define KSNOOP_SPAN {p}
static __always_inline long ksnoop_mread(void *dst, u32 size, u64 src, u32 user)
{{
	if (user == {USER_YES})
		return bpf_probe_read_user(dst, size, (void *)src);
	return bpf_probe_read_kernel(dst, size, (void *)src);
}}"""


def program(name, kind, base, prologue, regs, timed=False, min_ns=0, kstack=False, nvals=MAX_VALUES):
    """A generic program: ``prologue`` (signature, task id, task filters) is
    codegen's; then the recipe of the call's function, the call's entry time
    (entry, ``timed``: some function's return is traced) or duration (return;
    ``min_ns``: shorter calls are dropped, as codegen's do), its event header,
    each value as codegen would fetch and copy it, the kernel stack
    (``kstack``: where the recipe has one), and the event out.  The registers
    are copied to the stack first (the verifier allows reading the context
    only at constant offsets), then picked by number.  ``nvals``: the most
    values any recipe has (the loop goes no further: the verifier walks
    every turn, and under TCG that is most of the time to load)."""
    assert 0 < nvals <= MAX_VALUES
    slot = f"{base} + (u32)bpf_get_attach_cookie(ctx)" if base else "(u32)bpf_get_attach_cookie(ctx)"
    copy = "\n".join(f"\treg[{i}] = (u64){expr};" for i, expr in enumerate(regs))
    sp = f"reg[{len(regs) - 3}]"  # registers(): the stack pointer after the arguments
    if kind == RETURN:
        calls = f"""	struct ksnoop_stash_key ck;
	u64 dur = ksnoop_leave(&ck, id, func - {base}, {sp});
"""
        if min_ns:
            calls += f"""	if (dur == KSNOOP_NO_DURATION || dur < {int(min_ns)}ULL) return 0;
"""
        done = """	*(u64 *)(e + (r->dur & (KSNOOP_SPAN - 1))) = dur;
"""
    else:
        calls = f"""	struct ksnoop_stash_key ck;
	if (r->flags & {TIMED}) ksnoop_enter(&ck, id, func, {sp});
	if (!(r->flags & {EVENT})) return 0;
""" if timed else ""
        done = ""
    if kstack:
        done += f"""	if (r->kstack != {NONE16}) {{
		u32 ks = r->kstack & (KSNOOP_SPAN - 1);
		*(s32 *)(e + ks) = bpf_get_stack(ctx, e + ks + 8, {8 * KSTACK_FRAMES}, 0);
	}}
"""
    body = f"""	u64 reg[16] = {{}};
{copy}
	u32 func = {slot};
	struct ksnoop_recipe *r = {RECIPES}.lookup(&func);
	if (!r) return 0;
{calls}	u32 slot = KSNOOP_SCRATCH_SLOT;
	u8 *e = (u8 *)ksnoop_scratch.lookup(&slot);
	if (!e) return 0;
	ksnoop_fill_hdr((struct ksnoop_hdr *)e, id, (u16)(func - {base}), {kind});
	for (u32 i = 0; i < {nvals}; i++) {{
		if (i >= r->nvals) break;
		struct ksnoop_mval *v = &r->v[i & {MAX_VALUES - 1}];
		u32 ptr = v->ptr & (KSNOOP_SPAN - 1), st = v->status & (KSNOOP_SPAN - 1);
		u32 dat = v->data & (KSNOOP_SPAN - 1), size = v->size & (KSNOOP_SPAN - 1);
		u32 user = v->user;
		u64 p = reg[v->src & 15];
		if (v->op == {OP_REG}) {{
			*(u64 *)(e + ptr) = p;
			continue;
		}}
		if (v->op == {OP_REGS}) {{
			*(u64 *)(e + dat) = p;
			if (v->src2 != {NO_REG})
				*(u64 *)(e + dat + 8) = reg[v->src2 & 15];
			continue;
		}}
		long err = 0;
		if (v->nhops > 0)
			err = ksnoop_mread(&p, sizeof(p), p + v->hops[0], user);
		if (v->nhops > 1 && !err)
			err = ksnoop_mread(&p, sizeof(p), p + v->hops[1], user);
		if (v->op == {OP_DEREF} || v->op == {OP_STRING}) {{
			/* a NULL pointer is not read: ptr 0 with status 0 is shown as NULL */
			*(u64 *)(e + ptr) = err ? 0 : p;
			if (!err && p) {{
				u64 src = p + v->read_off;
				if (v->op == {OP_DEREF})
					err = ksnoop_mread(e + dat, size, src, user);
				else if (user == {USER_YES} || (user == {USER_BY_ADDRESS} && (s64)p >= 0))
					err = bpf_probe_read_user_str(e + dat, size, (void *)src);
				else
					err = bpf_probe_read_kernel_str(e + dat, size, (void *)src);
			}}
		}} else if (v->op == {OP_SCALAR}) {{
			*(u64 *)(e + dat) = 0;
			if (!err)
				err = ksnoop_mread(e + dat, size & 15, p + v->read_off, user);
		}} else if (!err) {{
			err = ksnoop_mread(e + dat, size, p + v->read_off, user);
		}}
		*(s32 *)(e + st) = err;
	}}
{done}	KSNOOP_OUTPUT(ctx, e, r->size & (2 * KSNOOP_SPAN - 1));
	return 0;
}}"""
    return "\n".join(prologue) + "\n" + body
