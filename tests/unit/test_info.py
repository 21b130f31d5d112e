"""`ksnoop info`: exact prototypes, the reference comparison, CLI conventions."""

import os
import random
import shutil
import subprocess
import sys

import clirun
import pytest
from click.testing import CliRunner

from ksnoop.cli.main import cli

VMLINUX = "/sys/kernel/btf/vmlinux"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF")


def run(*args):
    """The command line, in this process (clirun): its exit code, stdout, stderr."""
    return clirun.completed(*args)


# Functions with the same prototype in the host's 6.18 and the guests' 6.1 and 6.12.
@pytest.mark.parametrize("func,expected", [
    ("ip_send_skb", "int ip_send_skb(struct net *net, struct sk_buff *skb);"),
    ("schedule", "void schedule();"),
    # the reference loops forever on these (function pointer parameter)
    ("__rpm_callback", "int __rpm_callback(int (*cb)(struct device *), struct device *dev);"),
    ("__netdev_walk_all_upper_dev",
     "int __netdev_walk_all_upper_dev(struct net_device *dev, "
     "int (*fn)(struct net_device *, struct netdev_nested_priv *), "
     "struct netdev_nested_priv *priv);"),
    # the reference prints garbage past the 5th parameter; the 7th is on the stack, and
    # traceable (read at the stack pointer at entry, or carried by a fentry trampoline)
    ("_ipmr_fill_mroute",
     "int _ipmr_fill_mroute(struct mr_table *mrt, struct sk_buff *skb, u32 portid, u32 seq, "
     "struct mr_mfc *c, int cmd, int flags);"),
    ("__udp4_lib_lookup",
     "struct sock *__udp4_lib_lookup(struct net *net, __be32 saddr, __be16 sport, __be32 daddr, "
     "__be16 dport, int dif, int sdif, struct udp_table *udptable, struct sk_buff *skb);"),
    # the reference prints the variadic marker as "void "
    ("SEQ_printf", "void SEQ_printf(struct seq_file *m, char *fmt, ...);"),
    ("argv_split", "char **argv_split(gfp_t gfp, char *str, int *argcp);"),
    # a struct by value (sockptr_t: 16 bytes, two registers)
    ("do_tcp_setsockopt", "int do_tcp_setsockopt(struct sock *sk, int level, int optname, "
                          "sockptr_t optval, unsigned int optlen);"),
])
def test_edge_case_prototypes(func, expected):
    res = CliRunner().invoke(cli, ["info", func])
    assert res.exit_code == 0, res.output
    assert res.output == expected + "\n"


def test_pointer_to_an_array_of_unknown_size():
    """insert_rule(..., struct landlock_layer (*layers)[], ...): the second
    parameter changed in 6.7 (struct landlock_object *object, then a struct
    landlock_id by value), the pointer to a flexible array did not."""
    from ksnoop.btf import BTF, Kind

    with open(VMLINUX, "rb") as f:
        btf = BTF(f.read())
    second = btf[btf[btf.find("insert_rule", Kind.FUNC)[0]].type].params[1].name
    expected = {
        "object": "int insert_rule(struct landlock_ruleset *ruleset, struct landlock_object *object, "
                  "struct landlock_layer (*layers)[], size_t num_layers);",
        "id": "int insert_rule(struct landlock_ruleset *ruleset, struct landlock_id id, "
              "struct landlock_layer (*layers)[], size_t num_layers);"}[second]
    res = CliRunner().invoke(cli, ["info", "insert_rule"])
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


# ------------------------------------------------------------------------------------------
# The reference comparison (tools/info_compare.py): a difference is excused only by the exact
# symptom of a known reference defect; every prototype compiles against bpftool's header.
SAMPLE = int(os.environ.get("KSNOOP_INFO_SAMPLE", "3000"))  # the guest (TCG) sets a small one
REFERENCE = "/usr/sbin/ksnoop"
needs_bpftool = pytest.mark.skipif(not shutil.which("bpftool") and not os.path.exists("/usr/sbin/bpftool"),
                                   reason="bpftool missing")


@pytest.fixture(scope="module")
def raw():
    import bpftool_btf

    if not shutil.which("bpftool") and not os.path.exists("/usr/sbin/bpftool"):
        pytest.skip("bpftool missing")
    return bpftool_btf.Raw(bpftool_btf.bpftool(VMLINUX, "raw"))


@pytest.fixture(scope="module")
def reps(raw):
    import info_compare

    return info_compare.representatives(raw)


@pytest.fixture(scope="module")
def sample(raw, reps):
    seed = int(os.environ.get("KSNOOP_INFO_SEED", random.randrange(1 << 30)))
    names = random.Random(seed).sample(sorted(raw.funcs), min(SAMPLE, len(raw.funcs)))
    names += [n for n in ("ip_send_skb", "tcp_sendmsg", "do_sys_openat2", "vfs_read", "kfree")
              if n in raw.funcs]
    names += [name for name, _ in reps.values()]
    return seed, sorted(set(names))


@pytest.mark.skipif(not os.access(REFERENCE, os.X_OK), reason="reference ksnoop missing")
def test_matches_reference_on_a_random_sample(raw, reps, sample):
    import info_compare

    seed, names = sample
    ours = info_compare.ksnoop_lines(names)
    report = info_compare.compare(names, raw, ours)
    assert report.checked == len(names)
    assert report.failures == [], f"KSNOOP_INFO_SEED={seed}: {report.failures[:3]}"
    # each defect this kernel's BTF triggers was met and explained by its own model
    wanted = {"hang" if k.startswith("hang") else k for k in reps}
    assert wanted <= set(report.classes), (wanted, report.classes)
    assert report.identical > len(names) // 2


@needs_bpftool
@pytest.mark.skipif(not any(shutil.which(c) for c in ("gcc", "clang", "cc")), reason="no C compiler")
def test_prototypes_compile_against_bpftool_header(raw, sample):
    """The sample, and every function the reference hangs on, compile as C after
    bpftool's header with the type bpftool's raw dump gives, names and count
    as there."""
    import bpftool_btf
    import info_compare

    seed, names = sample
    hangs = info_compare.hang_set(raw)
    assert hangs, "the model finds no function the reference hangs on"
    names = sorted(set(names) | set(hangs))
    result = bpftool_btf.check(info_compare.ksnoop_lines(names), VMLINUX, raw=raw)
    assert result.checked == len(names)
    assert result.failures == [], f"KSNOOP_INFO_SEED={seed}: {result.failures[:3]}"


@needs_bpftool
@pytest.mark.skipif(not any(shutil.which(c) for c in ("gcc", "clang", "cc")), reason="no C compiler")
def test_compile_check_catches_wrong_prototypes(raw):
    """Each kind of wrong prototype fails the compile or the names check."""
    import bpftool_btf
    import info_compare
    import infoline

    name = "ip_send_skb" if "ip_send_skb" in raw.funcs else next(
        n for n in sorted(raw.funcs) if len(raw.proto(n).params) == 2 and all(p[0] for p in raw.proto(n).params))
    good = info_compare.ksnoop_lines([name])[name]
    p = infoline.parse(good, name)
    first, second = p.params[0], p.params[1]
    n1, n2 = infoline.declared_name(first), infoline.declared_name(second)
    pos = p.at + len(name) + 1
    bad = {
        "an extra pointer": good.replace(first, f"{first[:-len(n1)]}*{n1}", 1),
        "a renamed parameter": good.replace(first, first + "_x", 1),
        "swapped names": good.replace(f"{first}, {second}", f"{first[:-len(n1)]}{n2}, {second[:-len(n2)]}{n1}"),
        "a parameter too many": good.replace(second + ")", second + ", int extra)"),
        "another return type": "struct {...} *" + good[p.at:],
        "no parameters": good[:pos] + ");",
    }
    assert len({v for v in bad.values()}) == len(bad) and good not in bad.values(), bad
    result = bpftool_btf.check([(name, good)] + [(name, line) for line in bad.values()], VMLINUX, raw=raw)
    failed = {text for _, text, _ in result.failures}
    assert result.checked == len(bad) + 1 and good not in failed
    for what, line in bad.items():
        assert line in failed, f"{what} passed: {line}"


@needs_bpftool
@pytest.mark.skipif(not any(shutil.which(c) for c in ("gcc", "clang", "cc")), reason="no C compiler")
def test_compile_check_leaves_out_a_tag_two_kinds_share(tmp_path):
    """6.12's BTF has enum context and struct context: C has one tag namespace,
    so bpftool's header renames one and a prototype naming the other cannot be
    compiled after it (the check failed mls_range_set there).  Such a prototype
    gets the names check only; every other one is still compiled."""
    import bpftool_btf
    from btfwriter import BTFWriter

    w = BTFWriter()
    i32 = w.int("int", 4, signed=True)
    w.enum("context", [("CTX_A", 0), ("CTX_B", 1)])
    st = w.struct("context", 4, [("x", i32, 0)])
    w.func("f", w.func_proto(i32, [("c", w.ptr(st))]))
    w.func("g", w.func_proto(i32, [("x", i32)]))
    path = tmp_path / "clash.btf"
    path.write_bytes(w.build())
    good = bpftool_btf.check({"f": "int f(struct context *c);", "g": "int g(int x);"}, str(path))
    assert (good.checked, good.failures, good.not_compiled) == (2, [], ["f"])
    bad = bpftool_btf.check({"f": "int f(struct context *d);", "g": "int g(long int x);"}, str(path))
    assert [(name, reason.split(":")[0]) for name, _, reason in bad.failures] == [
        ("f", "parameter 1 is named 'd', bpftool's BTF says 'c'"), ("g", bad.compiler)]


_OURS = {}


def _excused(raw, name, reference_text, hung):
    import info_compare
    import ref_ksnoop

    if name not in _OURS:
        _OURS.update(info_compare.ksnoop_lines([name]))
    ours = _OURS[name]
    e = ref_ksnoop.expected(raw, name, ours)
    return e, info_compare.judge(e, ref_ksnoop.Printed(reference_text, hung)) is None


@needs_bpftool
def test_a_defect_excuses_only_its_own_symptom(raw, reps):
    """For each defect this kernel's BTF triggers: the model's text is excused;
    the same part of the line differing in any other way is not (the
    comparison used to excuse any difference in a part whose type has a known
    defect)."""
    assert {"hang", "many-args", "variadic", "multi-ptr"} <= set(reps), reps
    for defect, (name, j) in sorted(reps.items()):
        others = _not_the_symptom(raw, defect, name, j)
        assert others, defect
        for text, hung in others:
            assert not _excused(raw, name, text, hung)[1], (defect, name, text, hung)


def _not_the_symptom(raw, defect, name, j):
    """The model's expectation for a defect's representative, checked, and
    reference outputs that differ from it in the defect's part."""
    import ref_ksnoop

    params = raw.proto(name).params
    e = _excused(raw, name, "", False)[0]
    assert defect.split("-return")[0] in e.classes, (defect, e)
    assert _excused(raw, name, e.text, e.hangs)[1], (defect, e)
    if defect.startswith("hang"):
        assert e.hangs
        return [(e.text, False), (e.text + "void *x);", True), (e.text + "void *x);", False)] + (
            [(e.text[:-2], True)] if e.text else [])  # one part less before the spin
    assert not e.hangs
    pname = params[j][0] if j is not None else ""
    if defect == "many-args":
        shown = e.text[e.text.index("(") + 1:].split(", ")
        n, sixth = len(params), shown[ref_ksnoop.MAX_ARGS]
        texts = [e.text.replace(f"and {n - 5} more", f"and {n - 6} more"),  # the trailing comment
                 e.text.replace(", void \x06", ", void \x07", 1),  # the first stray value
                 e.text.replace(f", {sixth}, ", f", {sixth}{params[ref_ksnoop.MAX_ARGS][0]}, ", 1)]
    elif defect == "variadic":
        texts = [e.text.replace("void );", "int );"), e.text.replace("void );", "...);")]
    elif defect == "multi-ptr":
        texts = [e.text.replace(f"*{pname}", pname, 1), e.text.replace(f"*{pname}", f"***{pname}", 1)]
    elif defect == "fwd":
        stop = raw[raw[params[j][1]].type] if raw[params[j][1]].kind == "PTR" else raw[params[j][1]]
        texts = [e.text.replace(f"{stop.name} *{pname}", f"{stop.name}x *{pname}", 1),
                 e.text.replace(f"{stop.name} *{pname}", f"int *{pname}", 1)]
    else:  # type-tag
        texts = [e.text.replace(f" *{pname}", f" **{pname}", 1), e.text.replace(f" *{pname}", f" *x{pname}", 1)]
    assert all(t != e.text for t in texts), (defect, texts)
    return [(t, False) for t in texts]


def test_info_line_parts():
    import infoline

    p = infoline.parse("int ____kvm_emulate_hypercall(struct kvm_vcpu *vcpu, int cpl, "
                       "int (*complete_hypercall)(struct kvm_vcpu *, int));", "____kvm_emulate_hypercall")
    assert p.ret == "int " and p.tail == ";" and p.comment == ""
    assert p.params == ("struct kvm_vcpu *vcpu", "int cpl", "int (*complete_hypercall)(struct kvm_vcpu *, int)")
    assert [infoline.declared_name(x) for x in p.params] == ["vcpu", "cpl", "complete_hypercall"]
    p = infoline.parse("void f(int a, u32 b, ... /* not traceable: b (passed on the stack) */);", "f")
    assert p.params == ("int a", "u32 b", "...") and p.comment == " /* not traceable: b (passed on the stack) */"
    assert [infoline.declared_name(x) for x in ("...", "unsigned int", "struct foo *", "layer_mask_t (*m)[16]",
                                                "void (*(*g)(int))(int)", "size_t")] == ["", "", "", "m", "g", ""]
    assert infoline.parse("void (*f(int x))(int);", "f").tail == ")(int);"
    assert infoline.parse("xf *f(int xf(int));", "f").params == ("int xf(int)",)  # not inside "xf("
    for bad in ("int g(int x);", "int f(int x;", "int f(int x /* c */ , int y);"):
        with pytest.raises(infoline.BadLine):
            infoline.parse(bad, "f")
