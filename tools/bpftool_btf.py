"""An independent reading of BTF through bpftool, and a C compiler check of
`ksnoop info` prototypes against it.

bpftool (from Debian's bpftool package, libbpf's parser) dumps the BTF twice:
``format raw`` (one record per type id, read here into `Type`s) and
``format c`` (a header declaring every named type).  The check puts every
prototype ksnoop printed, renamed, into one C file after that header, with,
for each, the function type spelled from the raw dump and a static assertion
that the two are the same type:

    extern int ksnoop_chk_7(struct net *net, struct sk_buff *skb);
    typedef int ksnoop_ft_7(struct net *, struct sk_buff *);
    _Static_assert(__builtin_types_compatible_p(__typeof__(ksnoop_chk_7), ksnoop_ft_7), "7");

so the compiler proves each printed prototype is C and that its return and
parameter types are the BTF's (modulo qualifiers and type tags, which ksnoop
does not print, by design).  Parameter names and their count are compared
with the raw dump's, position by position.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import infoline

QUALS = {"CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"}
TAGGED = {"STRUCT": "struct", "UNION": "union", "ENUM": "enum", "ENUM64": "enum"}


@dataclass
class Type:
    id: int
    kind: str  # bpftool's spelling: INT, PTR, ARRAY, STRUCT, FUNC_PROTO, ...
    name: str  # "" for '(anon)'
    type: int = 0  # type_id= (ret_type_id= for FUNC_PROTO)
    size: int = 0
    nelems: int = 0
    fwd_union: bool = False
    params: list = field(default_factory=list)  # FUNC_PROTO: [(name, type id)]


VOID = Type(0, "VOID", "")


class Raw:
    """Every type of one BTF file, as bpftool's raw dump describes it."""

    def __init__(self, text):
        self.types = {0: VOID}
        self.funcs = {}  # name -> the FUNC with the lowest id (libbpf's lookup order)
        cur = None
        for line in text.splitlines():
            if line.startswith("\t"):
                if cur is not None and cur.kind == "FUNC_PROTO":  # "\t'name' type_id=N"
                    _, pname, rest = line.split("'", 2)
                    cur.params.append(("" if pname == "(anon)" else pname, int(rest.split("=", 1)[1])))
                continue
            if not line.startswith("["):
                continue
            head, name, rest = line.split("'", 2)  # "[ID] KIND ", name, " k=v k=v"
            tid, kind = head.split()
            attrs = dict(kv.split("=", 1) for kv in rest.replace(",", " ").split() if "=" in kv)
            cur = Type(int(tid[1:-1]), kind, "" if name == "(anon)" else name,
                       type=int(attrs.get("type_id", attrs.get("ret_type_id", 0))),
                       size=int(attrs.get("size", 0)), nelems=int(attrs.get("nr_elems", 0)),
                       fwd_union=attrs.get("fwd_kind") == "union")
            self.types[cur.id] = cur
            if kind == "FUNC" and cur.name not in self.funcs:
                self.funcs[cur.name] = cur.id

    def __getitem__(self, tid):
        return self.types[tid]

    def get(self, tid):
        return self.types.get(tid)

    def proto(self, name):
        """The FUNC_PROTO of function ``name``."""
        return self.types[self.types[self.funcs[name]].type]


class Unspellable(ValueError):
    pass


def spell(raw, tid, inner=""):
    """C for a declaration of ``inner`` with type ``tid``, qualifiers and type
    tags left out.  Unspellable for anonymous struct/union/enum types, which C
    cannot name outside their definition."""
    for _ in range(100):
        t = raw[tid]
        if t.kind in QUALS:
            tid = t.type
        elif t.kind == "PTR":
            inner, tid = "*" + inner, t.type
        elif t.kind in ("ARRAY", "FUNC_PROTO"):
            if inner.startswith("*"):
                inner = "(" + inner + ")"
            if t.kind == "ARRAY":
                inner += f"[{t.nelems}]"
            else:
                inner += "(" + spell_params(raw, t) + ")"
            tid = t.type
        else:
            if t.kind == "VOID":
                base = "void"
            elif t.kind in TAGGED:
                if not t.name:
                    raise Unspellable(f"anonymous {t.kind.lower()} [{t.id}]")
                base = f"{TAGGED[t.kind]} {t.name}"
            elif t.kind == "FWD":
                base = f"{'union' if t.fwd_union else 'struct'} {t.name}"
            elif t.kind in ("INT", "FLOAT", "TYPEDEF"):
                base = t.name
            else:
                raise Unspellable(f"{t.kind} [{t.id}] is not a type of a value")
            return f"{base} {inner}" if inner else base
    raise Unspellable(f"type chain too long at [{tid}]")


def spell_params(raw, proto):
    out = []
    for i, (name, tid) in enumerate(proto.params):
        if tid == 0 and not name and i == len(proto.params) - 1:
            out.append("...")
        else:
            out.append(spell(raw, tid))
    return ", ".join(out) or "void"


def bpftool(btf_path, fmt):
    tool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    return subprocess.run([tool, "btf", "dump", "file", btf_path, "format", fmt], check=True,
                          capture_output=True, text=True).stdout


def compiler():
    """(argv prefix for a syntax-only compile, compiler name) or None."""
    for cc in ("gcc", "clang", "cc"):
        path = shutil.which(cc)
        if path:
            limit = "-ferror-limit=0" if cc == "clang" else "-fmax-errors=0"
            return [path, "-fsyntax-only", "-std=gnu11", "-w", limit, "-x", "c"], cc
    return None


def name_check(raw, name, proto_text):
    """Why the printed parameter names differ from the raw dump's, or None."""
    p = infoline.parse(proto_text, name)
    want = [n for n, tid in raw.proto(name).params]
    got = [infoline.declared_name(x) for x in p.params]
    if len(got) != len(want):
        return f"{len(got)} parameters printed, bpftool's BTF has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"parameter {i + 1} is named {g!r}, bpftool's BTF says {w!r}"
    return None


@dataclass
class CheckResult:
    checked: int
    failures: list  # [(name, line, reason)]
    seconds: float
    compiler: str
    not_compiled: list = field(default_factory=list)  # names whose types C cannot spell


def check(lines, btf_path, raw=None, header=None):
    """Check ``lines`` ({function name: the line ksnoop info printed}, or
    (name, line) pairs) against
    bpftool's reading of ``btf_path``: names and count textually, the whole C
    prototype by compiling it after bpftool's header."""
    started = time.monotonic()
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (gcc, clang or cc) on PATH")
    raw = raw or Raw(bpftool(btf_path, "raw"))
    header = header or bpftool(btf_path, "c")
    failures, blocks, owner, not_compiled = [], [header, "\n"], {}, []
    # C has one namespace for struct, union and enum tags: where the BTF has
    # two kinds of one name (6.12: enum context and struct context), bpftool's
    # header renames one (context___2) and "struct context" may name the other,
    # so such prototypes get the names check only
    kinds = {}
    for t in raw.types.values():
        if t.kind in TAGGED and t.name:
            kinds.setdefault(t.name, set()).add(TAGGED[t.kind])
    clashing = {n for n, k in kinds.items() if len(k) > 1}
    line_no = header.count("\n") + 2
    pairs = list(lines.items() if isinstance(lines, dict) else lines)
    for i, (name, text) in enumerate(pairs):
        if name not in raw.funcs:
            failures.append((name, text, "bpftool's BTF has no such function"))
            continue
        try:
            why = name_check(raw, name, text)
            ftype = spell(raw, raw[raw.funcs[name]].type, f"ksnoop_ft_{i}")
        except (infoline.BadLine, Unspellable) as e:
            failures.append((name, text, str(e)))
            continue
        if why:
            failures.append((name, text, why))
        if clashing and any(m.group(2) in clashing for m in
                            re.finditer(r"\b(struct|union|enum) (\w+)", ftype)):
            not_compiled.append(name)
            continue
        at = infoline.name_position(text, name)
        decl = f"extern {text[:at]}ksnoop_chk_{i}{text[at + len(name):]}"
        block = (f"{decl}\ntypedef {ftype};\n_Static_assert(__builtin_types_compatible_p("
                 f"__typeof__(ksnoop_chk_{i}), ksnoop_ft_{i}), \"{i}\");\n")
        for k in range(3):
            owner[line_no + k] = (name, text)
        line_no += 3
        blocks.append(block)
    errors = {}
    with tempfile.TemporaryDirectory(prefix="ksnoop-cc-") as tmp:
        path = os.path.join(tmp, "protos.c")
        with open(path, "w") as f:
            f.writelines(blocks)
        res = subprocess.run(cc[0] + [path], capture_output=True, text=True, errors="replace")
        for m in re.finditer(r"^[^:\n]*protos\.c:(\d+):(?:\d+:)? (?:fatal )?error: (.*)$",
                             res.stderr, re.M):
            who = owner.get(int(m.group(1)))
            if who is None:
                errors.setdefault(("<header>", ""), []).append(f"line {m.group(1)}: {m.group(2)}")
            else:
                errors.setdefault(who, []).append(m.group(2))
        if res.returncode != 0 and not errors:
            errors[("<compiler>", "")] = [res.stderr.strip()[-2000:] or f"exit {res.returncode}"]
    for (name, text), msgs in errors.items():
        failures.append((name, text, f"{cc[1]}: " + "; ".join(msgs[:3])))
    return CheckResult(len(pairs), failures, time.monotonic() - started, cc[1], not_compiled)
