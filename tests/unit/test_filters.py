"""Task filters: the C generated for -c/--comm globs is compiled with gcc and
checked against Python's fnmatch on many names; -t and --cgroup lines."""

import fnmatch
import random
import shutil
import subprocess

import cbuild
import pytest

from ksnoop.errors import UsageError
from ksnoop.trace.filters import check_comm_glob, comm_filter, maps, task_filter
from ksnoop.trace.plan import Filters

PATTERNS = ["syscall_loop", "sys*", "*loop", "s?s*l??p", "*", "?", "a*b*c", "**x**", "*a?",
            "exactly15chars_", "exactly15chars_x", "this_is_longer_than_16*", "ab", "a", "*?*?*",
            "k*", "kworker/*", "x?*?y"]
NAMES = ["syscall_loop", "sys", "s", "", "loop", "syscall_loo", "syscall_loopX", "abc", "aXbYc",
         "ab", "a", "xy", "x1y", "x12y", "exactly15chars_", "exactly15chars_x", "kworker/0:1",
         "k", "kk", "this_is_longer_than_16_chars", "?", "*"]


TASK_COMM_OFF = 24  # where the stand-in task keeps its comm (direct reads)


def _program(patterns, comm_off):
    """C with one match function per pattern, the filter's lines as generated:
    the comm read by the helper (comm_off -1), or from a stand-in task whose
    bytes past the name's NUL are junk (a direct read must not depend on them)."""
    out = ["#include <string.h>", "#include <stdio.h>", "typedef unsigned long long u64;",
           "typedef unsigned char u8;",
           # the kernel copies the name NUL-padded to all 16 bytes
           "#define bpf_get_current_comm(dst, n) "
           "(memset((dst), 0, (n)), strncpy((char *)(dst), name, (n) - 1))",
           "static union { char c[64]; u64 align; } task;",
           "#define bpf_get_current_task_btf() ((void *)task.c)"]
    for i, p in enumerate(patterns):
        out.append(f"static int match{i}(const char *name) {{")
        out.append(f"\tmemset(task.c, 0xa5, sizeof(task.c)); strcpy(task.c + {TASK_COMM_OFF}, name);")
        out += comm_filter(p, comm_off)
        out.append("\treturn 1;\n}")
    out.append("int main(int argc, char **argv) {")
    out.append("\tchar line[256];")
    out.append("\twhile (fgets(line, sizeof(line), stdin)) {")
    out.append("\t\tline[strcspn(line, \"\\n\")] = 0;")
    out.append("\t\tchar comm[16] = {0};")
    out.append("\t\tstrncpy(comm, line, 15);")
    out.append("\t\tprintf(\"" + "%d" * len(patterns) + "\\n\", "
               + ", ".join(f"match{i}(comm)" for i in range(len(patterns))) + ");")
    out += ["\t}", "\treturn 0;", "}"]
    return "\n".join(out)


@pytest.fixture(scope="module", params=[-1, TASK_COMM_OFF], ids=["helper", "direct"])
def matcher(tmp_path_factory, request):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to run the generated filter C")
    d = tmp_path_factory.mktemp("comm")
    cc = cbuild.build(_program(PATTERNS, request.param), str(d / "m"), ("-O1", "-Wall", "-Werror"))
    assert cc.returncode == 0, cc.stderr[:3000]

    def run(names):
        out = subprocess.run([str(d / "m")], input="\n".join(names) + "\n", capture_output=True,
                             text=True, check=True).stdout.split()
        return [[c == "1" for c in row] for row in out]
    return run


def test_comm_globs_match_like_fnmatch(matcher):
    rng = random.Random(7)
    names = NAMES + ["".join(rng.choice("abcxy_?*lops") for _ in range(rng.randrange(0, 20)))
                     for _ in range(400)]
    names = [n for n in names if "\n" not in n]
    got = matcher(names)
    assert len(got) == len(names)
    for name, row in zip(names, got):
        comm = name[:15]  # the kernel keeps 15 bytes and a NUL
        for pattern, hit in zip(PATTERNS, row):
            assert hit == fnmatch.fnmatchcase(comm, pattern), (pattern, name)


@pytest.mark.parametrize("bad", ["", "a[bc]", "a\\*", "x" * 49])
def test_bad_globs_are_usage_errors(bad):
    with pytest.raises(UsageError):
        check_comm_glob(bad)


def test_filter_lines_and_maps():
    lines = task_filter(Filters(pid=42, tid=43, comm="x*", cgroup="/sys/fs/cgroup/a"), self_tgid=7)
    text = "\n".join(lines)
    assert lines[0] == "\tif ((id >> 32) == 7) return 0;"
    assert "(id >> 32) != 42" in text and "(u32)id != 43" in text
    assert "ksnoop_cgroup.check_current_task(0) != 1" in text and "ksnoop_comm" in text
    # the cheap tests come before the comm read
    assert text.index("!= 42") < text.index("!= 43") < text.index("check_current_task") \
        < text.index("bpf_get_current_comm")
    assert maps(Filters(cgroup="/x")) == ["BPF_CGROUP_ARRAY(ksnoop_cgroup, 1);"]
    assert maps(Filters()) == []


def test_comm_read_from_the_task_one_word_at_a_time():
    """With the comm's offset: no helper copy, a word loaded just before its
    compare (a name of up to 7 bytes and its NUL: one load, one compare)."""
    lines = comm_filter("bash", comm_off=1752)
    assert lines[1:] == ["\tchar *ksnoop_task = (char *)bpf_get_current_task_btf();",
                         "\tksnoop_comm.w[0] = *(u64 *)(ksnoop_task + 1752);",
                         "\tif ((ksnoop_comm.w[0] & 0xffffffffffULL) != 0x68736162ULL) return 0;"]
    text = "\n".join(comm_filter("syscall_loop", comm_off=1752))
    assert "bpf_get_current_comm" not in text
    assert text.index("w[0] = ") < text.index("w[0] & ") < text.index("w[1] = ") < text.index("w[1] & ")
    assert comm_filter("*", comm_off=1752) == comm_filter("*") == []
    # a glob: the second word is read only by an NFA still alive after 8 bytes
    text = "\n".join(comm_filter("no*such?task", comm_off=1752))
    assert text.index("w[0] = ") < text.index("c[0]") < text.index("if (!s) return 0") \
        < text.index("w[1] = ") < text.index("c[8]")


def test_comm_offset_from_the_btf():
    from btfwriter import BTFWriter

    from ksnoop.btf import BTF
    from ksnoop.trace.filters import with_comm_offset

    class K:
        def __init__(self, blob):
            self.vmlinux = BTF(blob, use_cache=False)

    def kernel(helper=True, comm_bits=128):
        w = BTFWriter()
        ch = w.int("char", 1, char=True)
        long = w.int("long int", 8, signed=True)
        w.struct("task_struct", 64, [("state", long, 0), ("comm", w.array(ch, 16), comm_bits)])
        if helper:
            w.func("bpf_get_current_task_btf", w.func_proto(0, []))
        return K(w.build())

    f = Filters(comm="x*")
    assert with_comm_offset(f, kernel()).comm_off == 16
    assert with_comm_offset(f, kernel(helper=False)).comm_off == -1  # before 5.11
    assert with_comm_offset(f, kernel(comm_bits=96)).comm_off == -1  # not 8-byte aligned
    assert with_comm_offset(Filters(pid=1), kernel()).comm_off == -1  # no comm filter
