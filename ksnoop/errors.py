"""One exception tree for ksnoop.  The CLI maps these to exit codes."""


class KsnoopError(Exception):
    """Base of every error ksnoop reports to the user (exit 1)."""

    exit_code = 1


class UsageError(KsnoopError):
    """The command line itself is wrong (exit 2)."""

    exit_code = 2


class SpecError(UsageError):
    """A trace spec is malformed or names something that does not exist.

    ``text`` is the spec, ``pos``/``length`` the span of the bad token, so the
    CLI can print a caret line under it.
    """

    def __init__(self, message, text="", pos=0, length=1):
        super().__init__(message)
        self.message = message
        self.text = text
        self.pos = pos
        self.length = max(1, length)


class BTFError(KsnoopError):
    """BTF data is missing, truncated or corrupt."""


class SymbolError(KsnoopError):
    """A function is unknown, ambiguous or not traceable."""



class RenderError(KsnoopError):
    """Bytes cannot be rendered as the requested type."""


class AttachError(KsnoopError):
    """Compiling, loading or attaching a BPF program failed."""


class Terminated(SystemExit):
    """SIGTERM or SIGHUP, raised from the signal handler so that ``with``
    blocks unwind (probes detach) and a trace ends like Ctrl-C."""
