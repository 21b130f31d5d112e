"""`ksnoop info`: exact prototypes, the reference comparison, CLI conventions."""

import os
import random
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ksnoop.cli.main import cli

VMLINUX = "/sys/kernel/btf/vmlinux"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF")


def run(*args):
    """The installed CLI in a subprocess: real exit codes, real stderr."""
    return subprocess.run([sys.executable, "-m", "ksnoop", *args], capture_output=True,
                          text=True, cwd=ROOT)


@pytest.mark.parametrize("func,expected", [
    ("ip_send_skb", "int ip_send_skb(struct net *net, struct sk_buff *skb);"),
    ("schedule", "void schedule();"),
    # the reference loops forever on these (function pointer parameter)
    ("____kvm_emulate_hypercall",
     "int ____kvm_emulate_hypercall(struct kvm_vcpu *vcpu, int cpl, "
     "int (*complete_hypercall)(struct kvm_vcpu *));"),
    # the reference prints garbage past the 5th parameter
    ("ZSTD_transferSequences_wBlockDelim",
     "size_t ZSTD_transferSequences_wBlockDelim(ZSTD_CCtx *cctx, ZSTD_SequencePosition *seqPos, "
     "ZSTD_Sequence *inSeqs, size_t inSeqsSize, void *src, size_t blockSize, "
     "ZSTD_ParamSwitch_e externalRepSearch "
     "/* not traceable: externalRepSearch (passed on the stack) */);"),
    # the reference prints the variadic marker as "void "
    ("SEQ_printf", "void SEQ_printf(struct seq_file *m, char *fmt, ...);"),
    ("argv_split", "char **argv_split(gfp_t gfp, char *str, int *argcp);"),
    ("insert_rule", "int insert_rule(struct landlock_ruleset *ruleset, struct landlock_id id, "
                    "struct landlock_layer (*layers)[], size_t num_layers);"),
])
def test_edge_case_prototypes(func, expected):
    res = CliRunner().invoke(cli, ["info", func])
    assert res.exit_code == 0, res.output
    assert res.output == expected + "\n"


def test_unknown_function_reported_others_printed():
    res = run("info", "ip_snd_skb", "ip_send_skb")
    assert res.returncode == 1
    assert res.stdout == "int ip_send_skb(struct net *net, struct sk_buff *skb);\n"
    assert res.stderr.count("\n") == 1
    assert "ip_snd_skb" in res.stderr and "did you mean ip_send_skb" in res.stderr
    assert "Traceback" not in res.stderr


def test_many_functions_in_one_call():
    from ksnoop.btf import BTF, Kind

    with open(VMLINUX, "rb") as f:
        btf = BTF(f.read())
    names = random.Random(3).sample([n for n, _ in btf.names(Kind.FUNC)], 300)
    res = run("info", *names)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 300
    assert all(f"{n}(" in line for n, line in zip(names, lines))


def test_cli_conventions():
    assert run().returncode == 0
    assert run("-V").stdout.startswith("ksnoop, version")
    res = run("info")
    assert res.returncode == 2 and "Missing argument" in res.stderr
    assert run("inf", "ip_send_skb").stdout.startswith("int ip_send_skb(")
    res = run("--bogus-option")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = run("help", "info")
    assert res.returncode == 0 and "ksnoop info" in res.stdout


def test_btf_file_raw_and_elf_without_root():
    import pathlib
    import tempfile

    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="ksnoop-btf-"))
    raw = tmp_path / "vmlinux.btf"
    shutil.copy(VMLINUX, raw)
    elf = tmp_path / "vmlinux.elf"
    objcopy = shutil.which("objcopy")
    files = [raw]
    if objcopy:
        subprocess.run([objcopy, "--add-section", f".BTF={raw}", "/bin/true", str(elf)], check=True)
        files.append(elf)
    for path in files:
        os.chmod(tmp_path, 0o755)
        os.chmod(path, 0o644)
        cmd = [sys.executable, "-m", "ksnoop", "info", "--btf", str(path), "ip_send_skb"]
        if os.geteuid() == 0 and shutil.which("setpriv"):
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   "env", f"KSNOOP_CACHE_DIR={tmp_path}/cache", f"PYTHONPATH={ROOT}"] + cmd
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path))
        assert res.returncode == 0, res.stderr
        assert res.stdout == "int ip_send_skb(struct net *net, struct sk_buff *skb);\n"
    shutil.rmtree(tmp_path)


def test_corrupt_btf_file_is_one_line(tmp_path):
    with open(VMLINUX, "rb") as f:
        data = f.read()
    cases = {"trunc": data[: len(data) // 3], "empty": b"", "junk": b"\x7fELF" + b"\0" * 100,
             "magic": b"\x00\x01" + data[2:4096]}
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        res = run("info", "--btf", str(path), "ip_send_skb")
        assert res.returncode == 1, (name, res.stderr)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr


@pytest.mark.skipif(not os.access("/usr/sbin/ksnoop", os.X_OK), reason="reference ksnoop missing")
def test_matches_reference_on_3000_random_functions():
    import info_compare

    from ksnoop.btf import BTF, Kind

    with open(VMLINUX, "rb") as f:
        btf = BTF(f.read())
    seed = random.randrange(1 << 30)
    names = random.Random(seed).sample(sorted({n for n, _ in btf.names(Kind.FUNC)}), 3000)
    names += ["ip_send_skb", "tcp_sendmsg", "do_sys_openat2", "vfs_read", "kfree"]
    checked, accepted, failures = info_compare.compare(btf, names)
    assert checked == 3005
    assert failures == [], f"seed {seed}: {failures[:3]}"
