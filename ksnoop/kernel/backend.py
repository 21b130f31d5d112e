"""How each function is traced: fentry/fexit, kprobe/kretprobe, or one
kprobe-multi link shared by the functions a wildcard matched.

fentry/fexit programs run from a BPF trampoline the kernel builds for the
function: several times cheaper per call than a kprobe (an int3 or an
ftrace callback that saves every register) and a kretprobe (which also
hijacks the return address); their context is the argument array.  They
need the kernel to allow tracing programs, a prototype the trampoline
supports (``callconv.trampoline_problem``), and, for arguments passed on
the stack, a trampoline that copies them (tried).  Otherwise kprobes, which
read registers and the stack at entry.  A wildcard's many functions share
one kprobe-multi link where the kernel has them (one attach, not hundreds).

``--backend auto`` picks per function; ``fentry`` and ``kprobe`` insist
(``fentry`` fails with the reason where it is not possible).
"""

from dataclasses import dataclass

from . import callconv, features

AUTO, FENTRY, KPROBE = "auto", "fentry", "kprobe"
POLICIES = (AUTO, FENTRY, KPROBE)


@dataclass(frozen=True)
class Choice:
    probe: str  # FENTRY or KPROBE
    multi: bool = False  # one kprobe-multi link for every such function
    why: str = ""

    @property
    def label(self):
        if self.probe == FENTRY:
            return "fentry/fexit"
        return "kprobe-multi" if self.multi else "kprobe/kretprobe"


class NotPossible(Exception):
    """``--backend fentry`` for a function it cannot trace (the message says why)."""


class Backends:
    """Picks the backend of each function under a policy (auto, fentry, kprobe)."""

    def __init__(self, kernel, policy=AUTO, arch="x86_64"):
        if policy not in POLICIES:
            raise ValueError(f"backend must be one of {', '.join(POLICIES)}")
        self.kernel = kernel
        self.policy = policy
        self.arch = arch
        self.refused = set()  # functions whose fentry the kernel refused at load or attach
        self._objfds = {}  # module: fd of its BTF object (kept for the process's life)

    def fentry_problem(self, fn, slots):
        """Why fn cannot get fentry/fexit here, or ""."""
        if fn.name in self.refused:
            return "the kernel refused its fentry program"
        why = callconv.trampoline_problem(fn.btf, fn.proto, slots)
        if why:
            return f"no trampoline for it: {why}"
        if not self.kernel.live:
            return "types come from a BTF file, not the running kernel"
        ok, why = features.tracing_programs(self.kernel)
        if not ok:
            return why
        if any(i >= callconv.TRAMPOLINE_REG_ARGS for s in slots for i in s.ctx):
            ok, why = features.fentry_attaches(fn.name, fn.func_id, *self._btf_obj(fn))
            if not ok:
                return f"this kernel's trampoline does not take it ({why})"
        return ""

    def _btf_obj(self, fn):
        if not fn.module:
            return ()
        from .bpfsys import BPFError, btf_obj_fd

        if fn.module not in self._objfds:
            try:
                self._objfds[fn.module] = btf_obj_fd(fn.module)
            except BPFError:
                self._objfds[fn.module] = -1  # refused at the trial load: no fentry
        return (self._objfds[fn.module],)

    def _multi(self, fn):
        """Why fn cannot join a kprobe-multi link, or ""."""
        ok, why = features.kprobe_multi(self.kernel)
        if not ok:
            return why
        if fn.module:
            return "a module function"
        names = features.ftrace_functions()
        if names is None:
            return "tracefs available_filter_functions is unreadable"
        if fn.name not in names:
            return "not in available_filter_functions (notrace?)"
        return ""

    def unattachable(self, fn):
        """Why a function a wildcard matched is left out, or "": one that ftrace
        cannot patch (notrace, init code) would fail to attach by fentry or
        kprobe-multi, and fail the whole trace."""
        if not self.kernel.live:
            return ""
        names = features.ftrace_functions()
        if names is not None and fn.name not in names:
            return "not in available_filter_functions (notrace or init code)"
        return ""

    def choose(self, fn, slots, pattern=False):
        """The Choice for function ``fn`` (kernel.functions.Function) with its
        argument slots; NotPossible under ``--backend fentry`` when it cannot be."""
        if self.policy == KPROBE:
            if pattern and not self._multi(fn):
                return Choice(KPROBE, True, "--backend kprobe; a wildcard's functions share one link")
            return Choice(KPROBE, False, "--backend kprobe")
        if pattern and self.policy == AUTO:
            why_not = self._multi(fn)
            if not why_not:
                return Choice(KPROBE, True, "a wildcard's functions share one kprobe-multi link")
        problem = self.fentry_problem(fn, slots)
        if not problem:
            return Choice(FENTRY, False, "the kernel allows tracing programs and the function is in BTF")
        if self.policy == FENTRY:
            raise NotPossible(f"{fn.name} cannot be traced with fentry/fexit: {problem}")
        return Choice(KPROBE, False, problem)
