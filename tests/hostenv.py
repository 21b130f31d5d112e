"""Why a host test cannot run here (or None): shared by the host tier."""

import os


def bpf_skip_reason(need="BPF program load"):
    if os.geteuid() != 0:
        return f"needs root ({need})"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "BCC's Python module is missing (Debian python3-bpfcc; venv needs system site-packages)"
    return None
