"""The BPF objects a process holds, for tests and benchmarks (one definition).

Found through the process's own /proc/PID/fd links (``anon_inode:bpf-prog``,
``anon_inode:bpf_link``) and their /proc/PID/fdinfo, so tracers running side
by side with the same program names are told apart; described by
``bpftool -j prog show`` (name, type, run_cnt, run_time_ns with
kernel.bpf_stats_enabled=1)."""

import json
import os
import re
import subprocess

PROG = "anon_inode:bpf-prog"
LINK = "anon_inode:bpf_link"


def fdinfo(pid, target):
    """{fd: fdinfo fields as str} of process ``pid``'s fds linking to ``target``."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                text = f.read()
        except OSError:  # closed meanwhile
            continue
        out[int(fd)] = dict(re.findall(r"^(\w+):\s*(.*?)\s*$", text, re.M))
    return out


def prog_ids(pid):
    """IDs of the BPF programs process ``pid`` holds open."""
    return {int(f["prog_id"]) for f in fdinfo(pid, PROG).values() if "prog_id" in f}


def jited(pid):
    """prog_jited (0 or 1) of every BPF program process ``pid`` holds."""
    return [int(f["prog_jited"]) for f in fdinfo(pid, PROG).values() if "prog_jited" in f]


def link_types(pid):
    """The types of the BPF links process ``pid`` holds ("tracing" for
    fentry/fexit, "kprobe_multi", ...), sorted, one per link."""
    return sorted(f.get("link_type", "?") for f in fdinfo(pid, LINK).values())


def shown():
    """{id: program} as `bpftool -j prog show` describes every loaded program."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {p["id"]: p for p in json.loads(out or "[]")}


def programs(ids):
    """bpftool's descriptions of the programs ``ids``; every one must still be
    loaded (one that is gone would make a count or a cost silently smaller)."""
    every = shown()
    gone = set(ids) - set(every)
    if gone:
        raise RuntimeError(f"BPF programs {sorted(gone)} are no longer loaded")
    return [every[i] for i in sorted(ids)]


def run_stats(ids):
    """(run_time_ns, run_cnt) summed over the programs ``ids``."""
    progs = programs(ids)
    return sum(p.get("run_time_ns", 0) for p in progs), sum(p.get("run_cnt", 0) for p in progs)
