"""Kernel lockdown: what it forbids BPF tracing, in one line for the user.

In confidentiality mode (``lockdown=confidentiality``) the kernel refuses
kprobes (LOCKDOWN_KPROBES), BPF reads of kernel memory (the
``bpf_probe_read_kernel`` helpers are withdrawn, and the verifier lets no
pointer leak) and tracefs (LOCKDOWN_TRACEFS: mounted, but empty).  What is
left: fentry/fexit programs and tracepoints that read their arguments and
return values themselves, not what they point to.  Integrity mode forbids
none of this.
"""

import re

LOCKDOWN = "/sys/kernel/security/lockdown"
CMDLINE = "/proc/cmdline"
CONFIDENTIALITY = "confidentiality"

CONFIDENTIALITY_HINT = (
    "kernel lockdown (confidentiality mode) forbids kprobes and BPF reads of kernel memory: "
    "only arguments and return values themselves (fentry/fexit, tracepoints), not what "
    "they point to, can be traced on this kernel")

# the verifier's words for a helper it withholds from this program type:
# "unknown func NAME#ID" (up to 6.1) or "program of this type cannot use
# helper NAME#ID"; from tracing programs bpf_probe_read_kernel(_str) are
# withheld only by lockdown (the old bpf_probe_read also where user and kernel
# addresses overlap, so it says nothing)
_READ_REFUSED = re.compile(r"(?:unknown func|cannot use helper) bpf_probe_read_kernel(?:_str)?#")


def lockdown_mode(path=None, cmdline=None):
    """The kernel lockdown mode in force ("none", "integrity",
    "confidentiality"), or "" when nothing says.

    securityfs says it (``[confidentiality]`` in its lockdown file); where
    securityfs is not mounted, the kernel command line's ``lockdown=`` does
    (lockdown can only be raised after boot, through securityfs)."""
    try:
        with open(path or LOCKDOWN) as f:
            text = f.read()
    except OSError:
        text = None
    if text is not None:
        for word in text.split():
            if word.startswith("[") and word.endswith("]"):
                return word[1:-1]
        return ""
    try:
        with open(cmdline or CMDLINE) as f:
            args = f.read().split()
    except OSError:
        return ""
    modes = [a.split("=", 1)[1] for a in args if a.startswith("lockdown=")]
    return modes[-1] if modes and modes[-1] in ("integrity", CONFIDENTIALITY) else ""


def load_refusal_hint(log, mode=None):
    """A one-line explanation of a refused BPF program load under
    confidentiality lockdown, or "".  Where the verifier's log shows
    lockdown's hand (a kernel-read helper withheld), lockdown is the
    explanation; under confidentiality lockdown a refusal for another reason
    gets the verifier's last words too (no fallback to kprobes can help)."""
    if _READ_REFUSED.search(log) or "lockdown" in log.lower():
        return CONFIDENTIALITY_HINT
    mode = lockdown_mode() if mode is None else mode
    if mode != CONFIDENTIALITY:
        return ""
    said = _last_words(log)
    return CONFIDENTIALITY_HINT + (f"; the verifier said: {said}" if said else "")


def _last_words(log):
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    while lines and lines[-1].startswith(("processed ", "verification time", "stack depth")):
        lines.pop()
    return lines[-1] if lines else ""


def kprobes_refused(mode=None):
    """Why lockdown forbids kprobes here (one line), or ""."""
    mode = lockdown_mode() if mode is None else mode
    return CONFIDENTIALITY_HINT if mode == CONFIDENTIALITY else ""
