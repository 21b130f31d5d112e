"""`ksnoop trace --dry-run` through the real verifier on the host kernel.

Every feature of the trace language is compiled, loaded and verified (nothing is
attached: the host has no kprobes).  Most cases run the CLI as a subprocess,
as a user would; a batch runs through the in-process API for speed.  Plain
`trace` must fail with one line about kprobes.
"""

import os
import subprocess
import sys

import pytest
from hostenv import bpf_skip_reason

pytestmark = pytest.mark.host

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _skip_reason():
    return bpf_skip_reason("BPF program load")


@pytest.fixture(scope="module", autouse=True)
def host_ok(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e["KSNOOP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    return e


def ksnoop(env, *args):
    p = subprocess.run([sys.executable, "-m", "ksnoop", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def dry_run(env, *args):
    rc, out, err = ksnoop(env, "trace", "--dry-run", *args)
    assert rc == 0, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("loaded ") and " programs through the verifier" in last, err
    return out, int(last.split()[1])


# (spec, lines that must be in the printed plan, programs loaded)
CASES = [
    ("ip_send_skb", ["ip_send_skb at 0x", "entry and return events",
                     "  entry  net: struct net * (deref, 2048 of ",
                     "  entry  skb: struct sk_buff * (deref, ",
                     "  return return: int (scalar)"], 2),
    ("tcp_sendmsg(size)", ["  entry  size: size_t (scalar)"], 1),
    ("ip_send_skb(skb->len)", ["  entry  skb->len: unsigned int (scalar)"], 1),
    ("ip_send_skb(skb->sk->__sk_common.skc_family)",
     ["  entry  skb->sk->__sk_common.skc_family: short unsigned int (scalar)"], 1),
    ("ip_send_skb(skb)", ["  entry  skb: struct sk_buff * (deref, "], 1),
    ("do_sys_openat2(filename)", ["  entry  filename: char * (string, up to 255 bytes)"], 1),
    ("vfs_read(file->f_path.dentry->d_name.name)",
     ["  entry  file->f_path.dentry->d_name.name: "], 1),
    ("ip_send_skb(skb->dev->name)", ["  entry  skb->dev->name: char [16] (memory, 16 of 16 bytes)"],
     1),
    ("ip_send_skb(skb->pkt_type, skb->cloned)",
     ["  entry  skb->pkt_type: __u8 (scalar)", "  entry  skb->cloned: __u8 (scalar)"], 1),
    ("ZSTD_CCtx_setFParams(fparams)", ["  entry  fparams: ZSTD_frameParameters (regs)"], 1),
    # a traced return has an entry program too: it keeps the entry time (durations)
    ("current_time(return)", ["  return return: struct timespec64 (regs)"], 2),
    ("alloc_skb_with_frags(return)", ["  return return: struct sk_buff * (deref, "], 2),
    ("vfs_read(return)", ["  return return: ssize_t (scalar)"], 2),
    # every operator, signed and unsigned, at entry and at return
    ("ip_send_skb(skb->len == 84, skb->len != 1, skb->len > 2, skb->len >= 3, "
     "skb->len < 100000, skb->len <= 99999)",
     ["  entry  skb->len: unsigned int (scalar) if == 84 and != 1 and > 2 and >= 3 and < 100000 "
      "and <= 99999"], 1),
    ("do_sys_openat2(dfd == -100, dfd != 0, dfd < 0, dfd <= -1, dfd > -200, dfd >= -100)",
     ["  entry  dfd: int (scalar) if == -100 and != 0 and < 0 and <= -1 and > -200 and >= -100"],
     1),
    ("ip_send_skb(return < 0)", ["  return return: int (scalar) if < 0"], 2),
    ("vfs_read(count >= 0xffffffffffffffff)", ["if >= 18446744073709551615"], 1),
    ("vfs_read(return == -9223372036854775808)", ["if == -9223372036854775808"], 2),
    ("ip_send_skb(skb->pkt_type == 7)", ["  entry  skb->pkt_type: __u8 (scalar) if == 7"], 1),
    ("ip_send_skb(skb != 0, skb->dev != 0, skb)", ["if != 0"], 1),
    # stash: predicates with values on both sides
    ("ip_send_skb(skb->len > 0, skb, return < 0)",
     ["ip_send_skb at 0x", "stash: entry values held until return",
      "  entry  skb->len: unsigned int (scalar) if > 0", "  return return: int (scalar) if < 0"],
     2),
    ("do_sys_openat2(filename, how->flags == 0, return)", ["stash: entry values held until return"],
     2),
    # a function whose 7th argument is on the stack: read there at entry
    ("ZSTD_transferSequences_wBlockDelim",
     ["  entry  externalRepSearch: ZSTD_ParamSwitch_e (scalar)"], 2),
]


@pytest.mark.parametrize("spec,lines,programs", CASES, ids=[c[0][:60] for c in CASES])
def test_cli_dry_run_passes_the_verifier(env, spec, lines, programs):
    out, loaded = dry_run(env, spec)
    for line in lines:
        assert line in out, out
    assert loaded == programs


SIX = ["ip_send_skb(skb->len > 0, skb, return < 0)", "vfs_read(file, buf, count > 0)",
       "do_sys_openat2(filename, return)", "tcp_sendmsg(sk->__sk_common.skc_family == 2, size)",
       "current_time", "kfree_skb_partial"]


@pytest.mark.parametrize("options", [
    ["-p", "1"],
    ["-s", "64"],
    ["-s", "65536"],
    ["--buffer", "ringbuf"],
    ["--buffer", "perf"],
    ["-s", "65536", "--buffer", "perf", "-p", "1", "-o", "json"],
], ids=lambda o: " ".join(o))
def test_six_functions_with_options(env, options):
    out, loaded = dry_run(env, *options, *SIX)
    funcs = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert funcs == ["ip_send_skb", "vfs_read", "do_sys_openat2", "tcp_sendmsg", "current_time",
                     "kfree_skb_partial"]
    assert loaded == 2 + 1 + 2 + 1 + 2 + 1
    if "-s" in options:
        size = int(options[options.index("-s") + 1])
        if size == 64:
            assert "  entry  skb: struct sk_buff * (deref, 64 of " in out
            assert "  entry  filename: char * (string, up to 63 bytes)" in out
        else:
            assert "(string, up to 255 bytes)" in out


def test_event_bigger_than_a_per_cpu_value(env):
    """-s 65536 on a 170 KiB struct: a 64 KiB event, over the 32 KiB per-CPU map limit."""
    out, loaded = dry_run(env, "-s", "65536", "--buffer", "ringbuf", "wakeup_kcompactd(pgdat)")
    assert "  entry  pgdat: pg_data_t * (deref, 65536 of " in out
    assert loaded == 1


def test_event_too_big_for_a_perf_record_is_refused(env):
    """A perf sample's size is 16 bits: such events would be dropped, so refuse them."""
    rc, out, err = ksnoop(env, "trace", "--dry-run", "-s", "65536", "--buffer", "perf",
                          "wakeup_kcompactd(pgdat)")
    assert rc == 1
    assert err == ("ksnoop: events of 65592 bytes do not fit a perf buffer record "
                   "(at most 65471): use a smaller -s/--size\n")
    out, loaded = dry_run(env, "-s", "32768", "--buffer", "perf", "wakeup_kcompactd(pgdat)")
    assert loaded == 1


def test_pid_filter_is_in_the_program(env):
    rc, out, err = ksnoop(env, "trace", "--dump-bpf", "-p", "4242", "ip_send_skb(skb)")
    assert rc == 0, err
    assert "if ((id >> 32) != 4242) return 0;" in out


def test_in_process_batch():
    """Many plans through the library: prepare -> Tracer.dry_run (compile + verifier)."""
    from ksnoop.kernel.files import Kernel
    from ksnoop.trace.job import Tracer, prepare

    kernel = Kernel()
    # programs counted by hand from the language's rules: an entry program if a
    # value or predicate is at entry, a return program if one is at return,
    # both for a stash (predicates with values on both sides)
    batches = [
        (["ip_send_skb(net, skb->len == 84, return)"], 2048, 0, "auto", 2),  # stash
        (["tcp_sendmsg(sk, msg, size > 1000)",  # entry only
          "tcp_recvmsg(sk, len, return < 0)"], 512, 0, "perf", 1 + 2),  # stash
        (["vfs_write(file->f_pos, count, return)",  # no predicate: entry and return events
          "vfs_read(file->f_pos > 0, buf)"], 8, 1, "ringbuf", 2 + 1),  # entry only
        (["do_sys_openat2(dfd, filename, how->mode != 0, return >= 0)"], 4096, 99, "auto", 2),
    ]
    for specs, limit, pid, buffer, programs in batches:
        prepared = prepare(specs, kernel, limit=limit, pid=pid)
        text, times = Tracer(prepared, kernel, buffer=buffer).dry_run()
        assert times.programs == programs, (specs, text)
        assert [line.split()[0] for line in text.splitlines() if not line.startswith(" ")] == [
            s.split("(")[0] for s in specs]


@pytest.mark.parametrize("args,first", [
    (["ip_send_skb(skb->lenn)"], "ksnoop: 'struct sk_buff' has no member 'lenn'"),
    (["ip_send_skbb"], "ksnoop: ip_send_skbb: no such function in BTF"),
    (["vfs_read(count == -1)"], "ksnoop: -1 is out of range for count"),
])
def test_spec_errors_show_a_caret_and_exit_2(env, args, first):
    rc, out, err = ksnoop(env, "trace", "--dry-run", *args)
    lines = err.splitlines()
    assert rc == 2 and out == ""
    assert lines[0].startswith(first) and len(lines) == 3
    assert lines[1] == "  " + args[0] and set(lines[2].strip()) == {"^"}


def test_trace_without_kprobes_is_one_line(env):
    if os.path.exists("/sys/bus/event_source/devices/kprobe"):
        pytest.skip("this kernel has kprobes")
    rc, out, err = ksnoop(env, "trace", "-n", "1", "--duration", "1", "ip_send_skb")
    assert rc == 1, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ksnoop: ") and "kprobe" in lines[0]


def test_a_glob_too_complex_for_the_verifier_is_said_so(env):
    """The verifier gives up on a glob with a long literal after its *
    (E2BIG); BCC calls that "Program too large (223 insns), at most 4096",
    which is not the cause: one line says what it is."""
    rc, out, err = ksnoop(env, "trace", "--dry-run", 'do_sys_openat2(filename ~ "*abcdefghijklmnopq")')
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "too complex for the verifier" in lines[0], err
    assert "at most 4096" not in err and "Traceback" not in err
