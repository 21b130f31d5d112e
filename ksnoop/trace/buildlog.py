"""What BCC and the kernel say when a program does not compile or load:
clang's and the verifier's words captured from fd 2, and the one line of
each that ksnoop shows."""

import contextlib
import os
import re
import sys
import tempfile


@contextlib.contextmanager
def captured_stderr(enabled=True):
    """Collect what C code writes to fd 2 (BCC prints clang/verifier errors there)."""
    box = [""]
    if not enabled:
        yield box
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box[0] = tmp.read().decode("utf-8", "replace")


@contextlib.contextmanager
def scoped_env(**values):
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def first_error(text, default):
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln:
            return ln
    return lines[-1] if lines else default


# The verifier gave up on the paths to check (1,000,000 instructions): its own
# log says "BPF program is too large. Processed N insn" (our own loader, links.py,
# keeps the log); BCC instead blames the program's size without asking for the
# log ("Program too large (155 insns), at most 4096 insns"), which is not the cause.
_GAVE_UP = re.compile(r"BPF program is too large\. Processed \d+ insn")
_BCC_E2BIG = re.compile(r"Program\s+too large \((\d+) insns\), at most (\d+) insns")
TOO_COMPLEX = ("too complex for the verifier: it gave up after checking 1,000,000 "
               "instructions along the program's paths{}; a ~ glob with many characters "
               "after a * is the usual cause: shorten it")


def verifier_reason(log):
    """The verifier's complaint: the last line before its statistics, or that
    it gave up (TOO_COMPLEX) however the loader reported that."""
    m = _BCC_E2BIG.search(log)
    if m and int(m.group(1)) <= int(m.group(2)):
        return TOO_COMPLEX.format(f" ({int(m.group(1))} instructions long)")
    if _GAVE_UP.search(log):
        return TOO_COMPLEX.format("")
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    while lines and lines[-1].startswith(("processed ", "verification time", "stack depth")):
        lines.pop()
    return lines[-1] if lines else ""


def compile_reason(text, prelude_lines):
    """The first clang error, with the line number counted in the caller's C."""
    line = first_error(text, "see --debug output")
    m = re.match(r"/virtual/main\.c:(\d+):(\d+): (.*)", line)
    if m and int(m.group(1)) > prelude_lines:
        return f"line {int(m.group(1)) - prelude_lines}:{m.group(2)}: {m.group(3)}"
    return line
