"""fentry/fexit programs and kprobe-multi links, for ``runtime.Session``.

BCC compiles them with everything else; ksnoop loads their instructions with
its own bpf(2) calls (``kernel/bpfsys.py``: BCC 0.26 would name a tracing
program after its function and knows no module BTF nor kprobe-multi links)
and attaches them by links: closing a link's fd detaches it.
"""

import os
from dataclasses import dataclass
from typing import Optional

from ..errors import AttachError
from ..kernel import bpfsys
from ..kernel.lockdown import load_refusal_hint
from .buildlog import verifier_reason


@dataclass(frozen=True)
class Fentry:
    """fentry and/or fexit programs (``int fn(u64 *ctx)``) on kernel function
    ``func``, BTF id ``btf_id`` in vmlinux's BTF or in ``module``'s."""

    func: str
    btf_id: int
    entry_fn: Optional[str] = None
    return_fn: Optional[str] = None
    module: Optional[str] = None


@dataclass(frozen=True)
class MultiKprobe:
    """One kprobe-multi link (or kretprobe-multi, ``retprobe``): program ``fn``
    on every function in ``funcs``, each call with its function's cookie;
    ``fn`` tail-calls the programs ``members`` ((slot, name): their place in
    the program array), or is generic and reads ``recipes``."""

    fn: str
    funcs: tuple
    cookies: tuple
    retprobe: bool = False
    members: tuple = ()
    recipes: tuple = ()  # (slot, bytes): the recipes of a generic program (multigen.py)
    addrs: tuple = ()  # the functions' kallsyms addresses, in funcs' order (empty: by name)


class OwnPrograms:
    """The programs of Fentry and MultiKprobe probes, by name: their fds."""

    def __init__(self):
        self.fds = {}
        self._btf_objs = {}  # module: its BTF object's fd (fentry on module functions)

    def load(self, p, insns_of):
        """Load p's programs (``insns_of(name)``: the compiled instructions).
        AttachError says why the kernel refused (``.fentry``: the function
        whose fentry/fexit program it was, for auto's fallback to kprobes)."""
        if isinstance(p, MultiKprobe):  # the tail-called programs run in the link's context
            jobs = [(name, bpfsys.PROG_TYPE_KPROBE, bpfsys.TRACE_KPROBE_MULTI)
                    for name in [p.fn] + [name for _, name in p.members]]
        else:
            jobs = [(name, bpfsys.PROG_TYPE_TRACING, at)
                    for name, at in ((p.entry_fn, bpfsys.TRACE_FENTRY), (p.return_fn, bpfsys.TRACE_FEXIT))
                    if name]
        for name, prog_type, attach_type in jobs:
            if name in self.fds:
                continue
            fentry = isinstance(p, Fentry)
            try:
                self.fds[name] = bpfsys.prog_load(
                    prog_type, insns_of(name), name, expected_attach_type=attach_type,
                    attach_btf_id=p.btf_id if fentry else 0,
                    attach_btf_obj_fd=self._btf_obj(p.module) if fentry and p.module else 0)
            except bpfsys.BPFError as e:
                # confidentiality lockdown: kprobes are refused too, no fallback
                hint = load_refusal_hint(e.log)
                exc = AttachError(hint or f"kernel rejected BPF program {name}: "
                                          f"{verifier_reason(e.log) or e.reason}")
                exc.details, exc.fentry = e.log, p.func if fentry and not hint else None
                raise exc from None

    def _btf_obj(self, module):
        if module not in self._btf_objs:
            try:
                self._btf_objs[module] = bpfsys.btf_obj_fd(module)
            except bpfsys.BPFError as e:
                raise AttachError(f"module {module}: {e.strerror}") from None
        return self._btf_objs[module]

    def attach(self, p, keep):
        """Attach p's loaded programs; ``keep(what, fd)`` for each link made
        (so that a failure half-way still leaves the made ones to detach)."""
        if isinstance(p, MultiKprobe):
            what = f"kprobe-multi{' return' if p.retprobe else ''} link to {len(p.funcs)} functions"
            jobs = [(p.fn, lambda fd: bpfsys.link_kprobe_multi(fd, p.funcs, p.cookies, p.retprobe,
                                                              f"attaching {what}", p.addrs))]
        else:
            what = f"fentry/fexit on {p.func}"
            jobs = [(name, lambda fd: bpfsys.attach_tracing(fd, f"attaching {what}"))
                    for name in (p.entry_fn, p.return_fn) if name]
        for name, attach in jobs:
            try:
                keep(what, attach(self.fds[name]))
            except bpfsys.BPFError as e:
                exc = AttachError(f"cannot attach {what}: {e.reason}")
                exc.fentry = p.func if isinstance(p, Fentry) else None
                raise exc from None

    def return_misses(self, p):
        """(label, count) of the returns p's fexit or kretprobe-multi program
        skipped: the kernel runs one program at a time per CPU and counts the
        calls that found it running; (label, None) if it has none."""
        if isinstance(p, MultiKprobe):
            label, name = f"kprobe-multi ({len(p.funcs)} functions)", p.fn if p.retprobe else None
        else:
            label, name = p.func, p.return_fn
        if name is None or name not in self.fds:
            return label, None
        try:
            return label, bpfsys.prog_info(self.fds[name]).recursion_misses
        except bpfsys.BPFError:
            return label, None

    def close(self):
        for fd in list(self.fds.values()) + list(self._btf_objs.values()):
            os.close(fd)
        self.fds.clear()
        self._btf_objs.clear()
