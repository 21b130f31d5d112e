"""Kernel lockdown is recognised and explained in one line."""

from ksnoop.kernel.lockdown import load_refusal_hint, lockdown_mode


def test_lockdown_mode_reads_the_bracketed_word(tmp_path):
    f = tmp_path / "lockdown"
    f.write_text("none integrity [confidentiality]\n")
    assert lockdown_mode(str(f)) == "confidentiality"
    f.write_text("[none] integrity confidentiality\n")
    assert lockdown_mode(str(f)) == "none"
    assert lockdown_mode(str(tmp_path / "absent")) == ""


def test_refusals_explained_only_by_lockdown():
    assert "confidentiality" in load_refusal_hint("R1 invalid mem access", mode="confidentiality")
    assert "lockdown" in load_refusal_hint("Lockdown: ksnoop: use of bpf to read kernel RAM", mode="")
    assert load_refusal_hint("R1 invalid mem access 'scalar'", mode="integrity") == ""
