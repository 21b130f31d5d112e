"""What the running kernel and this process can do for tracing.

Features are detected by what exists (a BTF function, a file in sysfs or
tracefs, a capability bit), never by kernel version.
"""

import ctypes as ct
import os

from ..btf import Kind
from .lockdown import kprobes_refused

_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39
_TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"


def ringbuf_supported(btf):
    """BPF ring buffers exist (5.8+): the kernel's BTF has bpf_ringbuf_output."""
    return bool(btf.find("bpf_ringbuf_output", Kind.FUNC))


def tracefs_path():
    for path in _TRACEFS:
        if os.path.exists(os.path.join(path, "events")) or os.path.exists(
                os.path.join(path, "kprobe_events")):
            return path
    return None


def kprobes_available():
    """(bool, reason) - can this kernel attach kprobes at all?"""
    locked = kprobes_refused()
    if locked:  # the kprobe PMU is there, but refuses every probe
        return False, locked
    if os.path.isdir(_KPROBE_PMU):
        return True, ""
    tfs = tracefs_path()
    if tfs and os.path.exists(os.path.join(tfs, "kprobe_events")):
        return True, ""
    where = f"no kprobe_events in {tfs}" if tfs else "tracefs not mounted"
    return False, (f"this kernel cannot attach kprobes (built without CONFIG_KPROBES?): "
                   f"no {_KPROBE_PMU} and {where}")


def _capabilities():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def privilege_problem(caps=None):
    """None, or a one-line reason this process may not load and attach tracing
    programs.  Loading one already needs both CAP_BPF (maps, programs) and
    CAP_PERFMON (reading kernel memory, kprobes, tracepoints); CAP_SYS_ADMIN
    stands in for both."""
    caps = _capabilities() if caps is None else caps
    has = lambda c: bool(caps >> c & 1)  # noqa: E731
    if has(_CAP_SYS_ADMIN):
        return None
    missing = [name for bit, name in ((_CAP_BPF, "CAP_BPF"), (_CAP_PERFMON, "CAP_PERFMON"))
               if not has(bit)]
    if not missing:
        return None
    return (f"permission denied: tracing needs CAP_BPF and CAP_PERFMON (missing "
            f"{' and '.join(missing)}): run as root or grant both")


_PERF_PARANOID = "/proc/sys/kernel/perf_event_paranoid"


def kprobe_refusal_hint(errno, caps=None, paranoid=None):
    """Why the kernel refused this process a kprobe, in one line, or "".

    Kprobes attach through perf_event_open (as do perf buffers), which
    kernels carrying the ``perf_event_paranoid=3`` patch (Debian's, Ubuntu's)
    allow at level 3 only to CAP_SYS_ADMIN: CAP_PERFMON is not enough there.
    (Mainline treats 3 as 2; a refusal is what tells them apart.)"""
    import errno as E

    if errno not in (E.EACCES, E.EPERM):
        return ""
    caps = _capabilities() if caps is None else caps
    if caps >> _CAP_SYS_ADMIN & 1:
        return ""
    if paranoid is None:
        try:
            with open(_PERF_PARANOID) as f:
                paranoid = int(f.read())
        except (OSError, ValueError):
            return ""
    if paranoid <= 2:
        return ""
    return (f"permission denied: kernel.perf_event_paranoid is {paranoid}, which allows "
            f"perf_event_open (through which kprobes attach) only with CAP_SYS_ADMIN; "
            f"run as root, or trace by fentry (--backend fentry)")


def ensure_tracefs():
    """Path of a mounted tracefs, mounting it at /sys/kernel/tracing if needed
    (and possible: as root, where nothing is mounted there yet), else None.
    A tracefs mounted but empty (lockdown) is not mounted again."""
    path = tracefs_path()
    if path:
        return path
    target = _TRACEFS[0]
    if os.path.isdir(target) and not os.path.ismount(target) and os.geteuid() == 0:
        libc = ct.CDLL(None, use_errno=True)
        if libc.mount(b"nodev", target.encode(), b"tracefs", 0, None) == 0:
            return target
    return None


def kprobe_misses(events):
    """{event name: missed hits} for the tracefs kprobe events named in ``events``
    (those listed in ``kprobe_profile``; events not listed there are left out)."""
    tfs = tracefs_path()
    out = {}
    if not tfs:
        return out
    try:
        with open(os.path.join(tfs, "kprobe_profile")) as f:
            for line in f:
                parts = line.split()
                name = parts[0].split("/")[-1] if parts else ""
                if len(parts) >= 3 and name in events:
                    out[name] = int(parts[2])
    except (OSError, ValueError):
        pass
    return out


# ------------------------------------------------------------------ backends
# What ``kernel.backend`` needs to know to pick fentry/fexit, kprobe or
# kprobe-multi for a function.  Each answer is found out once per process.
_PROBED = {}
# functions whose fentry program loads on every kernel with BTF: a trial load
# of a do-nothing program on the first one found tells whether this kernel
# lets this process load tracing programs at all
_TRIAL_FUNCS = ("vfs_read", "ksys_read", "schedule")


def tracing_programs(kernel):
    """(bool, reason): may this process load fentry/fexit programs here?
    Found out by loading a program that does nothing (nothing is attached)."""
    if "tracing" not in _PROBED:
        _PROBED["tracing"] = _trial_tracing_load(kernel)
    return _PROBED["tracing"]


def _trial_tracing_load(kernel):
    from . import bpfsys

    btf = kernel.vmlinux
    fid = next((ids[0] for ids in (btf.find(n, Kind.FUNC) for n in _TRIAL_FUNCS) if ids), 0)
    if not fid:
        return False, "no function to try a tracing program on"
    try:
        fd = bpfsys.prog_load(bpfsys.PROG_TYPE_TRACING, bpfsys.NOTHING, "ksnoop_probe",
                              expected_attach_type=bpfsys.TRACE_FENTRY, attach_btf_id=fid,
                              log=False)
    except bpfsys.BPFError as e:
        return False, f"this kernel refuses fentry/fexit programs here ({e.reason})"
    os.close(fd)
    return True, ""


def kprobe_multi(kernel):
    """(bool, reason): can kprobe-multi links (one link, many functions) be
    made?  They need fprobe (CONFIG_FPROBE), whose BPF handler the kernel's
    BTF then has."""
    if kernel.vmlinux.find("kprobe_multi_link_handler", Kind.FUNC):
        return True, ""
    return False, "this kernel has no kprobe-multi links (built without CONFIG_FPROBE)"


def ftrace_functions():
    """The names in tracefs ``available_filter_functions`` (functions that
    fentry and kprobe-multi can attach to), or None if it cannot be read."""
    if "ftrace" not in _PROBED:
        names = None
        tfs = ensure_tracefs()
        if tfs:
            try:
                with open(os.path.join(tfs, "available_filter_functions"), "rb") as f:
                    names = {line.split(None, 1)[0].decode("ascii", "replace")
                             for line in f.read().splitlines() if line}
            except OSError:
                names = None
        _PROBED["ftrace"] = names
    return _PROBED["ftrace"]


def fentry_attaches(name, btf_id, btf_obj_fd=0):
    """(bool, reason): does a fentry program attach to this function?  Tried
    with a program that does nothing, attached and detached at once (the
    only way to learn whether this kernel's trampolines carry arguments
    passed on the stack)."""
    key = ("attach", name)
    if key not in _PROBED:
        from . import bpfsys

        try:
            fd = bpfsys.prog_load(bpfsys.PROG_TYPE_TRACING, bpfsys.NOTHING, "ksnoop_probe",
                                  expected_attach_type=bpfsys.TRACE_FENTRY, attach_btf_id=btf_id,
                                  attach_btf_obj_fd=btf_obj_fd, log=False)
            try:
                os.close(bpfsys.attach_tracing(fd, f"attaching fentry to {name}"))
                _PROBED[key] = True, ""
            finally:
                os.close(fd)
        except bpfsys.BPFError as e:
            _PROBED[key] = False, e.reason
    return _PROBED[key]
