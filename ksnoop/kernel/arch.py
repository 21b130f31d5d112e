"""Per-architecture facts, kept as data.

Everything ksnoop needs to know about a CPU architecture lives in one
``Arch`` record: which BTF struct a kprobe's ``ctx`` points at, which of its
members hold the first arguments / the return value / the instruction and
stack pointers, and where the architecture's uapi headers live.  Adding an
architecture is adding a table entry.

Register names are C member expressions relative to the kprobe context
(``struct pt_regs *ctx``), so generated C reads argument 0 as
``ctx->{arch.arg_regs[0]}`` (``ctx->di`` on x86_64, ``ctx->regs[0]`` on
arm64); ``Arch.arg(i)`` / ``Arch.ret()`` build those expressions.
"""

import os
from dataclasses import dataclass

from ..errors import KsnoopError


@dataclass(frozen=True)
class Arch:
    machine: str  # os.uname().machine
    kernel_arch: str  # kbuild's ARCH, the directory under arch/ that BCC searches
    multiarch: str  # Debian multiarch triplet holding the uapi <asm/...> headers
    regs_struct: str  # BTF struct the kprobe ctx points at
    arg_regs: tuple  # member expressions for arguments 0..n-1
    ret_reg: str  # member expression for the return value (kretprobe)
    ip_reg: str
    sp_reg: str
    ret_hi_reg: str = ""  # second return register: the upper half of a 9-16 byte aggregate

    @property
    def max_args(self):
        return len(self.arg_regs)

    def arg(self, index, ctx="ctx"):
        """C expression reading argument ``index`` (0-based) from ``ctx``."""
        if not 0 <= index < len(self.arg_regs):
            raise KsnoopError(
                f"{self.machine}: argument {index + 1} is not passed in a register "
                f"(only the first {len(self.arg_regs)} are traceable)")
        return f"{ctx}->{self.arg_regs[index]}"

    def ret(self, ctx="ctx"):
        """C expression reading the return value from a kretprobe's ``ctx``."""
        return f"{ctx}->{self.ret_reg}"

    def ret_hi(self, ctx="ctx"):
        """C expression reading the second return register (bytes 8-15 of a returned aggregate)."""
        return f"{ctx}->{self.ret_hi_reg}"


ARCHES = {
    "x86_64": Arch(
        machine="x86_64",
        kernel_arch="x86",
        multiarch="x86_64-linux-gnu",
        regs_struct="pt_regs",
        arg_regs=("di", "si", "dx", "cx", "r8", "r9"),
        ret_reg="ax",
        ip_reg="ip",
        sp_reg="sp",
        ret_hi_reg="dx",
    ),
    "aarch64": Arch(
        machine="aarch64",
        kernel_arch="arm64",
        multiarch="aarch64-linux-gnu",
        regs_struct="pt_regs",  # contains struct user_pt_regs; emitted as a dependency
        arg_regs=tuple(f"regs[{i}]" for i in range(8)),
        ret_reg="regs[0]",
        ip_reg="pc",
        sp_reg="sp",
        ret_hi_reg="regs[1]",
    ),
}


def current(machine=None):
    """The ``Arch`` of this machine (or of ``machine``, a uname string)."""
    machine = machine or os.uname().machine
    try:
        return ARCHES[machine]
    except KeyError:
        raise KsnoopError(
            f"unsupported architecture {machine!r} (supported: {', '.join(sorted(ARCHES))})"
        ) from None
