"""Task filters: the C generated for -c/--comm globs is compiled with gcc and
checked against Python's fnmatch on many names; -t and --cgroup lines."""

import fnmatch
import random
import shutil
import subprocess

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


def _program(patterns):
    """C with one match function per pattern, the filter's lines as generated."""
    out = ["#include <string.h>", "#include <stdio.h>", "typedef unsigned long long u64;",
           "typedef unsigned char u8;",
           # the kernel copies the name NUL-padded to all 16 bytes
           "#define bpf_get_current_comm(dst, n) "
           "(memset((dst), 0, (n)), strncpy((char *)(dst), name, (n) - 1))"]
    for i, p in enumerate(patterns):
        out.append(f"static int match{i}(const char *name) {{")
        out += comm_filter(p)
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


@pytest.fixture(scope="module")
def matcher(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to run the generated filter C")
    d = tmp_path_factory.mktemp("comm")
    (d / "m.c").write_text(_program(PATTERNS))
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-o", str(d / "m"), str(d / "m.c")], check=True)

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
