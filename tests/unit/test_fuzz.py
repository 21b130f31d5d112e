"""Fuzzing the spec language, --btf files and render input: no tracebacks, only
exit codes 0/1/2, and nothing from a spec reaches the generated C except
validated identifiers and numbers.

Seeded: the seed is printed (``-s`` or on failure); rerun one with
KSNOOP_FUZZ_SEED=N.  KSNOOP_FUZZ_SPECS sets the corpus size (default 10,000).
"""

import os
import random
import re
import string

import pytest

from ksnoop.btf import Kind
from ksnoop.errors import KsnoopError
from ksnoop.kernel.files import Kernel
from ksnoop.trace import calls
from ksnoop.trace.codegen import Machine, generate
from ksnoop.trace.resolve import resolve
from ksnoop.trace.spec import parse

VMLINUX = "/sys/kernel/btf/vmlinux"
SEED = int(os.environ.get("KSNOOP_FUZZ_SEED", random.randrange(1 << 32)))
N_SPECS = int(os.environ.get("KSNOOP_FUZZ_SPECS", "10000"))
MACHINE = Machine(self_tgid=1, ncpus=4)

INJECTIONS = ['*/', '/*', '"', "'", "\\", "\n#include <x>\n", "; system(\"x\");", "}", "{", "`id`",
              "$(id)", "%s%n", "\x00", "\x1b[2J", "\u202e", "??/", "#define", "\r", "0x", "->", "..",
              "return", "(", ")", ",", "==", "=", "!", "&&", "~", "[0]"]
OPS = ["==", "!=", "<", "<=", ">", ">=", "=", "=>", "=<", "<>", "~", "&", "&&", "||", "!"]
LITERALS = ["0", "-1", "84", "0x54", "0o777", "0b1", "0644", "18446744073709551615", "18446744073709551616",
            "-9223372036854775808", "-9223372036854775809", "9" * 400, "1e9", "1.5", "0x", "0b2", "08",
            "84ul", "84lu", "84llu", "84ull", "84lL", "1Å", "-0", "- 1", "--1", "0xffffffffffffffffffff"]


class Corpus:
    def __init__(self, rng, functions):
        self.rng = rng
        self.functions = functions  # [(name, [param names], [member names of param 0])]

    def ident(self):
        r = self.rng
        return r.choice(string.ascii_letters + "_") + "".join(
            r.choice(string.ascii_letters + string.digits + "_") for _ in range(r.randrange(12)))

    def junk(self):
        r = self.rng
        kind = r.randrange(4)
        if kind == 0:
            return bytes(r.randrange(256) for _ in range(r.randrange(40))).decode("latin-1")
        if kind == 1:
            return "".join(chr(r.randrange(1, 0x3000)) for _ in range(r.randrange(20)))
        if kind == 2:
            return r.choice(INJECTIONS) * r.randrange(1, 4)
        return "".join(r.choice(string.printable) for _ in range(r.randrange(30)))

    def value(self, fn):
        r = self.rng
        name, params, members = fn
        base = r.choice(params + ["return", self.ident()]) if params else r.choice(["return", self.ident()])
        path = base
        for _ in range(r.choice([0, 0, 1, 1, 2, 5, 40])):
            sep = r.choice(["->", ".", "->", "- >", "", "-->"])
            path += sep + (r.choice(members) if members and r.random() < 0.6 else self.ident())
        if r.random() < 0.5:
            path += f" {r.choice(OPS)} {r.choice(LITERALS + [self.junk()])}"
        if r.random() < 0.1:
            path = path[:r.randrange(len(path) + 1)] + self.junk() + path[r.randrange(len(path) + 1):]
        return path

    def spec(self):
        r = self.rng
        roll = r.random()
        if roll < 0.08:
            return self.junk()
        fn = r.choice(self.functions)
        name = fn[0] if r.random() < 0.9 else self.ident()
        if roll < 0.15:
            return name
        values = [self.value(fn) for _ in range(r.choice([1, 1, 2, 3, 9]))]
        text = f"{name}({', '.join(values)})"
        if r.random() < 0.1:  # unbalanced or cut
            text = r.choice([text[:-1], text + ")", "(" + text, text[:r.randrange(len(text) + 1)]])
        return text


def _functions(btf, rng, count=300):
    """Real functions of this kernel: names, parameter names, members of the first one."""
    funcs = [(n, fid) for n, fid in btf.names(Kind.FUNC)]
    rng.shuffle(funcs)
    out = []
    for name, fid in funcs[:count]:
        proto = btf[btf[fid].type]
        params = [p.name for p in proto.params if p.name]
        members = []
        if proto.params:
            t = btf[btf.resolve(proto.params[0].type)]
            if t.kind == Kind.PTR:
                agg = btf[btf.resolve(t.type)]
                if agg.kind in (Kind.STRUCT, Kind.UNION):
                    members = [m.name for m in agg.members if m.name]
        out.append((name, params, members))
    return out


# What may appear in generated C: printable ASCII; comments hold only value
# paths (identifiers, "->", "."); string literals only the template's own.
_COMMENT = re.compile(r"/\*(.*?)\*/", re.S)
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SAFE_COMMENT = re.compile(r"^ ?[A-Za-z_][A-Za-z0-9_]*(?:(?:->|\.)[A-Za-z_][A-Za-z0-9_]*)* ?$")


def _check_c(c_text, template_comments, spec):
    assert all(ch in "\n\t" or 0x20 <= ord(ch) < 0x7F for ch in c_text), spec
    for body in _COMMENT.findall(c_text):
        assert body in template_comments or _SAFE_COMMENT.match(body), (spec, body)
    for lit in _STRING.findall(_COMMENT.sub("", c_text)):
        assert lit in ("layout", "lru_hash", "hash", "array", "percpu_array"), (spec, lit)


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF")
def test_spec_corpus(capsys):
    print(f"fuzz seed {SEED} ({N_SPECS} specs); rerun with KSNOOP_FUZZ_SEED={SEED}")
    rng = random.Random(SEED)
    kernel = Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent/kallsyms")
    corpus = Corpus(rng, _functions(kernel.vmlinux, rng))
    empty_c, _ = generate(resolve([], kernel), MACHINE)
    # the template's comments, and those of the C blocks of trace/calls.py (calls
    # in flight, entry times), which only plans with returns to pair carry
    template_comments = set(_COMMENT.findall(empty_c))
    for name in dir(calls):
        if name.endswith("_C") and isinstance(getattr(calls, name), str):
            template_comments |= set(_COMMENT.findall(getattr(calls, name)))
    outcomes = {"parse error": 0, "resolve error": 0, "generated": 0}
    for i in range(N_SPECS):
        spec = corpus.spec()
        try:
            parsed = parse(spec)
        except KsnoopError as e:
            assert e.exit_code == 2, (i, spec, e)
            outcomes["parse error"] += 1
            continue
        try:
            plan = resolve([parsed], kernel)
        except KsnoopError as e:
            assert e.exit_code in (1, 2), (i, spec, e)
            outcomes["resolve error"] += 1
            continue
        c_text, _ = generate(plan, MACHINE)
        _check_c(c_text, template_comments, spec)
        outcomes["generated"] += 1
    with capsys.disabled():
        print(f"\nfuzz seed {SEED}: {N_SPECS} specs: {outcomes}")
    assert sum(outcomes.values()) == N_SPECS
    # the corpus must reach every stage, or it proves little
    assert min(outcomes.values()) > N_SPECS // 50, outcomes
