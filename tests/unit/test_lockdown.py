"""Kernel lockdown is recognised and explained in one line."""

import pytest

from ksnoop.kernel import lockdown
from ksnoop.kernel.lockdown import kprobes_refused, load_refusal_hint, lockdown_mode


def test_lockdown_mode_reads_the_bracketed_word(tmp_path):
    f = tmp_path / "lockdown"
    f.write_text("none integrity [confidentiality]\n")
    assert lockdown_mode(str(f)) == "confidentiality"
    f.write_text("[none] integrity confidentiality\n")
    assert lockdown_mode(str(f)) == "none"
    absent = str(tmp_path / "absent")
    assert lockdown_mode(absent, cmdline=absent) == ""


def test_without_securityfs_the_command_line_says(tmp_path):
    absent, cmdline = str(tmp_path / "absent"), tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 lockdown=confidentiality quiet\n")
    assert lockdown_mode(absent, cmdline=str(cmdline)) == "confidentiality"
    cmdline.write_text("console=ttyS0 lockdown=integrity\n")
    assert lockdown_mode(absent, cmdline=str(cmdline)) == "integrity"
    cmdline.write_text("console=ttyS0 lockdown=bogus\n")
    assert lockdown_mode(absent, cmdline=str(cmdline)) == ""
    # securityfs, where mounted, is the truth (lockdown may be raised after boot)
    f = tmp_path / "lockdown"
    f.write_text("none integrity [confidentiality]\n")
    cmdline.write_text("lockdown=integrity\n")
    assert lockdown_mode(str(f), cmdline=str(cmdline)) == "confidentiality"


def test_refusals_explained_only_by_lockdown():
    hint = load_refusal_hint("R1 invalid mem access\nprocessed 12 insns\n", mode="confidentiality")
    assert "confidentiality" in hint and hint.endswith("; the verifier said: R1 invalid mem access")
    assert "lockdown" in load_refusal_hint("Lockdown: ksnoop: use of bpf to read kernel RAM", mode="")
    assert load_refusal_hint("R1 invalid mem access 'scalar'", mode="integrity") == ""


def test_withheld_kernel_read_helpers_mean_lockdown():
    """Where the mode cannot be read, the verifier's refusal of the kernel-read
    helpers (withheld from tracing programs only by lockdown) says it: in 6.1's
    words and in later kernels'."""
    for log in ("83: (85) call bpf_probe_read_kernel#113\nunknown func bpf_probe_read_kernel#113\n",
                "program of this type cannot use helper bpf_probe_read_kernel_str#115\n"):
        assert "confidentiality" in load_refusal_hint(log, mode=""), log
    assert load_refusal_hint("unknown func bpf_ringbuf_output#130\n", mode="") == ""


def test_kprobes_refused_only_in_confidentiality_mode():
    assert "kprobes" in kprobes_refused(mode="confidentiality")
    assert kprobes_refused(mode="integrity") == "" and kprobes_refused(mode="") == ""


def _locked(monkeypatch, tmp_path, mode):
    f = tmp_path / "lockdown"
    f.write_text(" ".join(f"[{m}]" if m == mode else m
                          for m in ("none", "integrity", "confidentiality")) + "\n")
    monkeypatch.setattr(lockdown, "LOCKDOWN", str(f))


def test_kprobes_under_confidentiality_lockdown_are_refused_in_one_line(monkeypatch, tmp_path):
    """The kprobe PMU is there but refuses every probe; BCC then falls back to
    tracefs, empty under lockdown: the error was "not traceable (unknown,
    inlined, or notrace): ... kprobe_events: No such file or directory"."""
    from ksnoop.kernel import features

    monkeypatch.setattr(features.os.path, "isdir", lambda p: True)  # a kprobe PMU
    _locked(monkeypatch, tmp_path, "confidentiality")
    ok, why = features.kprobes_available()
    assert not ok and "lockdown" in why and "kprobes" in why and "\n" not in why
    _locked(monkeypatch, tmp_path, "integrity")
    assert features.kprobes_available() == (True, "")


def test_fentry_refused_under_lockdown_has_no_kprobe_fallback(monkeypatch, tmp_path):
    """A fentry program the verifier refuses under confidentiality lockdown is
    explained by lockdown, with no fallback to kprobes (refused too): before,
    a note and a kprobe attempt ended in a second, different error."""
    from ksnoop.errors import AttachError
    from ksnoop.kernel import bpfsys
    from ksnoop.trace.links import Fentry, OwnPrograms

    def refuse(*a, **k):
        raise bpfsys.BPFError(13, "loading", log="R1 pointer arithmetic with >>= operator prohibited\n")

    monkeypatch.setattr(bpfsys, "prog_load", refuse)
    p = Fentry("ip_send_skb", 1234, entry_fn="ksnoop_entry_0")
    _locked(monkeypatch, tmp_path, "confidentiality")
    with pytest.raises(AttachError) as e:
        OwnPrograms().load(p, lambda name: b"")
    assert str(e.value) == (lockdown.CONFIDENTIALITY_HINT + "; the verifier said: "
                            "R1 pointer arithmetic with >>= operator prohibited")
    assert e.value.fentry is None
    _locked(monkeypatch, tmp_path, "none")  # elsewhere: the verifier's words, and auto's fallback
    with pytest.raises(AttachError) as e:
        OwnPrograms().load(p, lambda name: b"")
    assert "pointer arithmetic" in str(e.value) and e.value.fentry == "ip_send_skb"


def test_fentry_refused_for_a_kernel_read_is_lockdown_alone(monkeypatch, tmp_path):
    from ksnoop.errors import AttachError
    from ksnoop.kernel import bpfsys
    from ksnoop.trace.links import Fentry, OwnPrograms

    def refuse(*a, **k):
        raise bpfsys.BPFError(22, "loading", log="12: (85) call bpf_probe_read_kernel#113\n"
                              "program of this type cannot use helper bpf_probe_read_kernel#113\n")

    monkeypatch.setattr(bpfsys, "prog_load", refuse)
    _locked(monkeypatch, tmp_path, "none")  # even where the mode cannot be read
    with pytest.raises(AttachError) as e:
        OwnPrograms().load(Fentry("ip_send_skb", 1234, entry_fn="e"), lambda name: b"")
    assert str(e.value) == lockdown.CONFIDENTIALITY_HINT and e.value.fentry is None


def test_kprobes_refused_by_perf_event_paranoid_3_say_so():
    """Debian's kernels (kernel.perf_event_paranoid=3 and its patch): a user
    with CAP_BPF and CAP_PERFMON gets EACCES for a kprobe (seen in the 6.12
    guest), which ksnoop called "not traceable (unknown, inlined, or notrace)"."""
    import errno

    from ksnoop.kernel.features import kprobe_refusal_hint

    bpf_perfmon = 1 << 39 | 1 << 38
    hint = kprobe_refusal_hint(errno.EACCES, caps=bpf_perfmon, paranoid=3)
    assert "perf_event_paranoid is 3" in hint and "CAP_SYS_ADMIN" in hint and "\n" not in hint
    assert kprobe_refusal_hint(errno.EPERM, caps=bpf_perfmon, paranoid=3) == hint
    assert kprobe_refusal_hint(errno.EACCES, caps=bpf_perfmon, paranoid=2) == ""
    assert kprobe_refusal_hint(errno.EACCES, caps=bpf_perfmon | 1 << 21, paranoid=3) == ""
    assert kprobe_refusal_hint(errno.ENOENT, caps=bpf_perfmon, paranoid=3) == ""
