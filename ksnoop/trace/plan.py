"""The trace plan: what to trace, as data (no logic, no kernel access).

``resolve`` builds it from specs and the kernel's types; ``wire`` derives the
event layouts from it, ``codegen`` the BPF C, ``output`` the text.
"""

from dataclasses import dataclass, field

# How a value is captured:
#   SCALAR  a number (a register, or read from memory at ptr + read_off)
#   MEMORY  a block of memory inside a struct (an embedded struct or array)
#   DEREF   the object a pointer points to
#   STRING  the NUL-terminated string a char pointer points to
#   REGS    an aggregate passed or returned in registers
SCALAR, MEMORY, DEREF, STRING, REGS = "scalar", "memory", "deref", "string", "regs"


@dataclass(frozen=True)
class Pred:
    op: str  # == != > >= < <=, or ~ (a glob, on strings)
    value: object  # int, already in range for ctype; bytes for a string comparison
    pos: int
    end: int
    seq: int = 0  # place among the function's values as written: predicates run in this order
    mask: object = None  # int: the comparison is on (value & mask)
    text: str = ""  # as written, for --dry-run


@dataclass(frozen=True)
class Test:
    """A leaf of a condition: one comparison on one value (by its name)."""

    value: str  # Value.name
    pred: Pred


@dataclass(frozen=True)
class NotCond:
    expr: object


@dataclass(frozen=True)
class LogicCond:
    op: str  # "&&" or "||"
    left: object
    right: object


@dataclass(frozen=True)
class Condition:
    """A condition item of the spec.  Decided at entry, or at return when it
    names a return value (then entry values come from the stash)."""

    expr: object  # Test / NotCond / LogicCond
    at_return: bool
    seq: int  # place among the spec's items: conditions and predicates run in this order
    text: str  # as written


@dataclass(frozen=True)
class Value:
    name: str  # as the user wrote it: skb->len
    at_return: bool
    kind: str  # SCALAR MEMORY DEREF STRING REGS
    type_id: int  # the value's type (a pointer's type for DEREF/STRING)
    show_type: int  # what the captured bytes are rendered as
    reg: str  # C expression of the starting register
    regs: tuple = ()  # REGS: several register expressions
    hops: tuple = ()  # offsets of pointers to follow before the final access
    read_off: int = -1  # -1: the value is the pointer itself; else read at ptr + read_off
    size: int = 8  # bytes captured (scalar width, or the capped object size)
    full_size: int = 8  # the type's full size (so truncation can be reported)
    ctype: str = "u64"  # C type a predicate compares as
    bitfield: object = None  # btf.bitfield.Bitfield (offset 0: read at read_off), or None
    user: bool = False  # pointer into user memory
    preds: tuple = ()  # Pred...
    # fentry/fexit on x86_64: every pointer followed is a BTF-typed one the
    # verifier checks loads through (an argument, then struct members, none
    # with a type tag), so the number or pointer is read by plain loads
    # instead of bpf_probe_read_kernel (codegen._fetch)
    direct: bool = False


KPROBE, TRACEPOINT = "kprobe", "tracepoint"  # how a FuncPlan is attached
FENTRY = "fentry"  # fentry/fexit programs (a BPF trampoline; ctx is the argument array)


@dataclass(frozen=True)
class FuncPlan:
    index: int
    name: str  # as shown: the function, or tp:NAME for a tracepoint
    module: str
    addr: int
    btf: object = field(compare=False, repr=False)
    entry: tuple = ()  # Values captured at entry (for a tracepoint: when it fires)
    ret: tuple = ()  # Values captured at return
    stash: bool = False  # entry values are held until return
    notes: tuple = ()  # arguments left out of the default set, and why
    probe: str = KPROBE  # KPROBE, FENTRY or TRACEPOINT
    target: str = ""  # what is attached to: the function or tracepoint name
    multi: bool = False  # KPROBE: attached by one kprobe-multi link shared with other functions
    backend_why: str = ""  # why this probe kind (for --dry-run)
    btf_id: int = 0  # the function's BTF FUNC id (fentry/fexit attach by it)
    conds: tuple = ()  # Condition items (all must hold, with every predicate)
    kstack: bool = False  # every event carries the kernel stack (-K)


@dataclass(frozen=True)
class TracePlan:
    funcs: tuple
    limit: int
    arch: str
    notes: tuple = ()  # plan-wide remarks: what a wildcard matched, and why some were left out


@dataclass(frozen=True)
class Filters:
    """Which tasks are traced (checked first in every program)."""

    pid: int = 0  # thread group id; 0: every process
    tid: int = 0  # one thread; 0: every thread
    comm: str = ""  # a glob on the task name (* and ?); "": every name
    cgroup: str = ""  # a cgroup v2 directory: tasks in it or below; "": every cgroup
    min_ns: int = 0  # only calls lasting at least this long (--min-latency); 0: every call
    comm_off: int = -1  # task_struct.comm's byte offset (filters.with_comm_offset); -1: use the helper
