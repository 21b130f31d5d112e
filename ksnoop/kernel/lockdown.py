"""Kernel lockdown: what it forbids BPF tracing, in one line for the user."""


LOCKDOWN = "/sys/kernel/security/lockdown"


def lockdown_mode(path=LOCKDOWN):
    """The kernel lockdown mode in force ("none", "integrity",
    "confidentiality"), or "" when securityfs does not say."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return ""


def load_refusal_hint(log, mode=None):
    """A one-line explanation of a refused BPF program load that the kernel's
    configuration explains (lockdown), or ""."""
    mode = lockdown_mode() if mode is None else mode
    if mode == "confidentiality" or "lockdown" in log.lower():
        return ("kernel lockdown (confidentiality mode) forbids BPF programs to read kernel "
                "memory: ksnoop cannot trace on this kernel")
    return ""
