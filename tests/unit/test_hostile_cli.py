"""The command line under hostile or careless input: one line, exit 0/1/2, never a traceback.

Each test drives the real CLI in a subprocess (exit codes, pipes and signals
are part of what is checked) and reads types from the running kernel's BTF.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# how much slower this machine is (30 under TCG in the VM test bed: tests/vm/guest-suite.sh)
TIME_SCALE = float(os.environ.get("KSNOOP_TIME_SCALE", "1"))
VMLINUX = "/sys/kernel/btf/vmlinux"


def ksnoop(*args, stdin=None, timeout=60, stdout=subprocess.PIPE):
    env = dict(os.environ, PYTHONPATH=ROOT)
    timeout *= TIME_SCALE
    return subprocess.run([sys.executable, "-m", "ksnoop", *args], stdout=stdout,
                          stderr=subprocess.PIPE, stdin=stdin, timeout=timeout, env=env)


def one_clean_line(p):
    err = p.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("ksnoop: "), err
    return err


def a_function(vmlinux_btf):
    """Any traceable function of the running kernel with an int return and a first
    pointer argument (the tests only need a spec that resolves)."""
    from ksnoop.btf import Kind

    for name in ("ip_send_skb", "vfs_read", "do_sys_openat2"):
        if vmlinux_btf.find(name, Kind.FUNC):
            return name
    pytest.fail("none of the usual functions is in this kernel's BTF")


@pytest.mark.parametrize("literal", ["-1x", "-84lu1", "-0x1g", "1Å", "08", "8lL", "0b102", "0o9"])
def test_bad_literals_are_spec_errors(vmlinux_btf, literal):
    fn = a_function(vmlinux_btf)
    p = ksnoop("trace", "--dump-bpf", f"{fn}(return == {literal})")
    assert p.returncode == 2
    err = one_clean_line(p)
    assert f"bad number '{literal}'" in err


@pytest.mark.parametrize("literal,value", [("84lu", 84), ("84ul", 84), ("84llu", 84), ("84ull", 84),
                                           ("-84lu", -84), ("0644", 0o644), ("0x54L", 84)])
def test_c_literal_suffixes_in_either_order(literal, value):
    from ksnoop.trace.spec import parse

    (v,) = parse(f"f(x == {literal})").values
    assert v.predicate.value == value


def test_non_utf8_names_are_not_found_cleanly():
    for args in (["info", b"\xff".decode("utf-8", "surrogateescape")],
                 ["render", b"\xff".decode("utf-8", "surrogateescape")]):
        p = ksnoop(*args)
        assert p.returncode in (1, 2)
        one_clean_line(p)


def test_btf_from_fifo_and_device_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        p = ksnoop("info", "--btf", path, "ip_send_skb", timeout=20)
        assert p.returncode == 1
        assert "not a regular file" in one_clean_line(p)


@pytest.mark.parametrize("args,opt", [
    (["-p", "99999999999999999999999"], "--pid"), (["-p", "4294967296"], "--pid"), (["-p", "0"], "--pid"),
    (["-P", "1048576"], "--pages"), (["-P", "3"], "--pages"),
    (["--duration", "nan"], "--duration"), (["--duration", "inf"], "--duration"),
    (["--duration", "1e309"], "--duration"), (["--duration", "0"], "--duration"),
])
def test_option_ranges(vmlinux_btf, args, opt):
    p = ksnoop("trace", "--dump-bpf", *args, a_function(vmlinux_btf))
    assert p.returncode == 2
    err = one_clean_line(p)
    assert opt in err and len(err.strip().splitlines()) == 1, err


def test_output_errors_are_one_line():
    with open("/dev/full", "wb") as full:
        p = ksnoop("info", "ip_send_skb", stdout=full)
    assert p.returncode == 1
    assert "No space left on device" in one_clean_line(p)


def test_input_errors_are_one_line():
    p = ksnoop("render", "int", "/proc/self/mem")
    assert p.returncode == 1
    one_clean_line(p)


def test_closed_pipe_is_a_normal_end(vmlinux_btf):
    from ksnoop.btf import Kind

    names = [n for n, _ in vmlinux_btf.names(Kind.FUNC)][:3000]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "ksnoop", "info", *names],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "aborted" not in err


def _wait_reading_stdin(pid, timeout=30):
    """Until the process is blocked in read(0, ...) (so startup is over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/syscall") as f:
                fields = f.read().split()
        except OSError:
            fields = []
        if fields[:2] == ["0", "0x0"]:
            return
        time.sleep(0.05)
    pytest.fail("ksnoop render never waited on stdin")


def test_interrupt_is_not_aborted():
    """SIGINT during a command: 'interrupted', exit 130 (never click's 'aborted', exit 1)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "ksnoop", "render", "int"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _wait_reading_stdin(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.decode().strip() == "ksnoop: interrupted"


def test_bad_btf_is_reported_once(tmp_path):
    with open(VMLINUX, "rb") as f:
        head = f.read(100)
    bad = tmp_path / "bad.btf"
    bad.write_bytes(head)
    p = ksnoop("info", "--btf", str(bad), "a", "b", "c", "d", "e")
    assert p.returncode == 1
    err = one_clean_line(p)
    assert len(err.strip().splitlines()) == 1, err
    assert str(bad) in err  # the path as given, not its basename alone


def test_many_unknown_names_are_cheap():
    names = [f"no_such_function_{i}" for i in range(300)]
    t0 = time.monotonic()
    p = ksnoop("info", *names, timeout=120)
    took = time.monotonic() - t0
    assert p.returncode == 1
    lines = p.stderr.decode().splitlines()
    assert len(lines) == 300 and all("no such function" in ln for ln in lines)
    assert took < 20 * TIME_SCALE, f"300 unknown names took {took:.1f} s"


def test_empty_name_suggests_nothing():
    p = ksnoop("info", "")
    assert p.returncode == 1
    assert "did you mean" not in one_clean_line(p)


def test_spec_echo_is_one_escaped_line_with_aligned_caret(vmlinux_btf):
    fn = a_function(vmlinux_btf)
    p = ksnoop("trace", "--dump-bpf", f"{fn}(\n\tnosuch\x1b[2J == 1)")
    assert p.returncode == 2
    err = p.stderr.decode()
    assert "\x1b" not in err and "\t" not in err
    lines = err.splitlines()
    assert len(lines) == 3, lines
    shown, carets = lines[1], lines[2]
    assert "\\n\\t" in shown
    col = carets.index("^")
    assert shown[col:].startswith("nosuch") or shown[col:].startswith("\\033"), (shown, carets)


def test_caret_counts_wide_characters():
    from ksnoop.cli.options import caret_lines

    shown, carets = caret_lines("f(漢字 == 1x)", 8, 2)
    assert shown == "f(漢字 == 1x)"
    assert carets == " " * 10 + "^^"  # the two wide characters take four columns
    shown, carets = caret_lines("f(\x1b == 1)", 2, 1)
    assert shown == "f(\\033 == 1)" and carets == "  ^^^^"
