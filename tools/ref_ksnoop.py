"""A model of what the reference `/usr/sbin/ksnoop info` (libbpf-tools 0.26)
prints, and a runner that captures what it really prints.

The reference prints a prototype from a `struct value` per parameter, built by
stripping pointers and qualifiers from the parameter's type (one pointer flag
for any number of pointers) and printing the type where the stripping stopped.
Its known defects, each modelled here as what it does to ksnoop's (correct)
text of the part concerned:

  hang        the type it stops at has no name (function prototype, array,
              anonymous struct/union/enum): its printing loop never ends.  The
              model says where: the reference prints the line up to that part
              (", " included), then spins.
  many-args   it keeps 5 parameters: the 6th printed is the return value's
              type (its slot follows the 5 parameters), the 7th and later are
              read past the end of that array from the rest of its `struct
              trace` (modelled byte for byte), then " /* and N more args that
              are not traceable */".
  variadic    "..." printed as "void ".
  multi-ptr   `char **x` printed as `char *x`.
  fwd         `struct foo *x` printed as `foo *x` when struct foo is only
              forward-declared.
  type-tag    a BTF type tag printed as the type: `address_space(1) *x` for
              `void __attribute__((address_space(1))) *x`.
  note        ksnoop's trailing "/* not traceable: ... */" comment, which the
              reference does not have.

Anything else is not modelled: `expected()` then raises Unmodeled, or the
text differs from the reference's, and the difference is unexplained.
Types are read from bpftool's raw dump (tools/bpftool_btf.py), not from
ksnoop's BTF parser.
"""

import functools
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import infoline

REFERENCE = "/usr/sbin/ksnoop"
MAX_ARGS = 5  # parameters the reference keeps (ksnoop.h: MAX_VALUES - 1)
MAX_VALUES = 6  # its value slots: 5 parameters and the return value
NAME_MAX = 256  # struct value's name[] (MAX_STR)
HANG = None  # what a model of a printing step returns when that step never ends


class Unmodeled(ValueError):
    """ksnoop's text is not of a shape the model can transform."""


# ------------------------------------------------- the reference's memory
def _layout(fields):
    """C layout on x86-64 of [(name, size, align)]: ({name: offset}, size)."""
    off, offsets, top = 0, {}, 1
    for name, size, align in fields:
        off = (off + align - 1) // align * align
        offsets[name] = off
        off += size
        top = max(top, align)
    return offsets, (off + top - 1) // top * top


VALUE, VALUE_SIZE = _layout([("name", NAME_MAX, 1), ("base_arg", 4, 4), ("offset", 4, 4),
                             ("size", 4, 4), ("type_id", 8, 8), ("flags", 8, 8),
                             ("predicate_value", 8, 8)])
FUNC, FUNC_SIZE = _layout([("name", 96, 1), ("mod", 96, 1), ("id", 4, 4), ("nr_args", 1, 1),
                           ("ip", 8, 8), ("args", VALUE_SIZE * MAX_VALUES, 8)])
_TRACE_DATA = _layout([("raw_value", 8, 8), ("err_type_id", 4, 4), ("err", 4, 4),
                       ("buf_offset", 4, 4), ("buf_len", 2, 2)])[1]
TRACE, TRACE_SIZE = _layout([
    ("btf", 8, 8), ("dump", 8, 8), ("func", FUNC_SIZE, 8), ("nr_traces", 1, 1),
    ("filter_pid", 4, 4), ("prev_ip", 8, 8), ("next_ip", 8, 8),
    ("traces", VALUE_SIZE * MAX_VALUES, 8), ("flags", 8, 8), ("task", 8, 8),
    ("pid_ns_id", 4, 4), ("pid", 4, 4), ("comm", 16, 1), ("cpu", 4, 4), ("time", 8, 8),
    ("data_flags", 8, 8), ("trace_data", _TRACE_DATA * MAX_VALUES, 8), ("buf_len", 2, 2),
    ("buf", MAX_VALUES * 2048, 1), ("links", 16, 8)])
F_PTR = 0x1


@dataclass
class Value:
    """One of the reference's `struct value`s as `info` fills it."""
    name: bytes
    type_id: int  # where the pointer/qualifier stripping stopped
    flags: int
    size: int


def _s32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def type_to_value(raw, name, tid):
    ptr = 0
    for _ in range(1000):
        t = raw[tid]
        if t.kind in ("CONST", "VOLATILE", "RESTRICT"):
            tid = t.type
        elif t.kind == "PTR":
            ptr, tid = F_PTR, t.type
        else:
            return Value(name.encode()[:NAME_MAX - 1], tid, ptr, resolve_size(raw, tid) & 0xFFFFFFFF)
    raise Unmodeled(f"pointer chain loops at [{tid}]")


def resolve_size(raw, tid):
    """libbpf's btf__resolve_size(): bytes, or -EINVAL/-E2BIG."""
    nelems = 1
    for _ in range(32):
        t = raw.get(tid)
        if t is None or t.kind == "VOID":
            return -22
        if t.kind in ("INT", "STRUCT", "UNION", "ENUM", "ENUM64", "DATASEC", "FLOAT"):
            size = t.size
            return -7 if nelems and size > 0xFFFFFFFF // nelems else nelems * size
        if t.kind == "PTR":
            return 8 * nelems
        if t.kind in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "VAR", "DECL_TAG", "TYPE_TAG"):
            tid = t.type
        elif t.kind == "ARRAY":
            if nelems and t.nelems and nelems > 0xFFFFFFFF // t.nelems:
                return -7
            nelems *= t.nelems
            tid = t.type
        else:
            return -22
    return -22


def type_text(raw, tid):
    """The reference's text for the type a value stopped at (its
    type_id_to_str()): "struct sk_buff ", "void ", ... or HANG."""
    tid = _s32(tid)
    if tid == 0:
        return "void "
    if tid == -1:
        return "? "
    prefix, name, suffix, ptr, seen = "", "", " ", "", set()
    while True:
        t = raw.get(tid) if tid >= 0 else None
        if t is None:
            name = "?"
            break
        if t.kind in ("CONST", "VOLATILE", "RESTRICT"):
            tid = t.type
        elif t.kind == "PTR":
            ptr, tid = "* ", t.type
        elif t.kind == "ARRAY":
            # BTF requires an array's size/type word to be 0: the loop goes on at void
            suffix, tid = "[]", 0
        elif t.kind in ("STRUCT", "UNION", "ENUM"):
            prefix, name = t.kind.lower() + " ", t.name
        else:  # typedefs and every other kind: the bare name (void's is "")
            name = t.name
        if name or tid < 0:
            break
        state = (tid, prefix, suffix, ptr)
        if state in seen:
            return HANG
        seen.add(state)
    return (prefix + name + suffix + ptr)[:NAME_MAX - 1]


def value_text(raw, v):
    text = type_text(raw, v.type_id)
    if text is HANG:
        return HANG
    if v.flags & F_PTR:
        text += "*"
    name = v.name.decode("latin-1")
    return text + name if name and name != "return" else text


def trace_image(values, nr_args):
    """The bytes of the reference's `struct trace` for one function in `info`
    mode: func.args[] and its copy traces[] (base_arg = slot), nr_traces."""
    img = bytearray(TRACE_SIZE)
    img[TRACE["nr_traces"]] = MAX_VALUES
    img[TRACE["func"] + FUNC["nr_args"]] = nr_args & 0xFF
    for slot, v in values.items():
        for base, base_arg in ((TRACE["func"] + FUNC["args"], 0), (TRACE["traces"], slot)):
            at = base + slot * VALUE_SIZE
            img[at:at + len(v.name)] = v.name
            struct.pack_into("<I", img, at + VALUE["base_arg"], base_arg)
            struct.pack_into("<I", img, at + VALUE["size"], v.size)
            struct.pack_into("<Q", img, at + VALUE["type_id"], v.type_id)
            struct.pack_into("<Q", img, at + VALUE["flags"], v.flags)
    return img


def stray_value(img, slot):
    """func.args[slot] for slot >= MAX_VALUES: whatever lies there."""
    at = TRACE["func"] + FUNC["args"] + slot * VALUE_SIZE
    if at + VALUE["flags"] + 8 > len(img):
        raise Unmodeled(f"argument slot {slot} lies past the reference's struct trace")
    end = img.index(0, at) if 0 in img[at:] else len(img)
    (type_id,) = struct.unpack_from("<Q", img, at + VALUE["type_id"])
    (flags,) = struct.unpack_from("<Q", img, at + VALUE["flags"])
    return Value(bytes(img[at:end]), type_id, flags, 0)


# ------------------------------------------------------------ the model
@dataclass
class Expect:
    text: str  # what the reference prints (up to where it hangs)
    hangs: bool
    classes: set = field(default_factory=set)  # defects that change ksnoop's text


_SIMPLE = re.compile(r"(?P<base>[^*()\[\]{},]*?) ?(?P<stars>\**)")


def part(raw, tid, ours, pname, classes):
    """What the reference prints for one part (the return type when pname is
    None) whose text in ksnoop's line is ``ours``, or HANG."""
    v = type_to_value(raw, pname or "", tid)
    if v.type_id == 0 and tid == 0 and pname == "":  # variadic marker
        if ours != "...":
            raise Unmodeled(f"a variadic marker printed as {ours!r}")
        classes.add("variadic")
        return "void "
    if type_text(raw, v.type_id) is HANG:
        classes.add("hang")
        return HANG
    name = pname or ""
    if not ours.endswith(name):
        raise Unmodeled(f"{ours!r} does not declare {name!r}")
    m = _SIMPLE.fullmatch(ours[:len(ours) - len(name)])
    if not m or not m.group("base"):
        raise Unmodeled(f"{ours!r} is not 'TYPE [*...]NAME'")
    base, stars = m.group("base"), m.group("stars")
    stop = raw[v.type_id]
    if stop.kind == "FWD":
        keyword = "union " if stop.fwd_union else "struct "
        if not base.startswith(keyword):
            raise Unmodeled(f"a forward-declared type printed without {keyword!r}: {ours!r}")
        base = base[len(keyword):]
        classes.add("fwd")
    elif stop.kind == "TYPE_TAG":
        base = stop.name
        classes.add("type-tag")
    if len(stars) > 1:
        classes.add("multi-ptr")
    if bool(stars) != bool(v.flags & F_PTR):
        raise Unmodeled(f"{ours!r}: pointer stars and BTF pointers disagree")
    return base + " " + ("*" if stars else "") + name


_NOTE = re.compile(r" /\* not traceable: (.+) \*/")
_NOTE_ITEM = re.compile(r"([A-Za-z_]\w*) \(([^()]+)\)")


def check_note(comment, names):
    """ksnoop's trailing note: "NAME (why), ..." naming parameters, in order."""
    m = _NOTE.fullmatch(comment)
    items = _NOTE_ITEM.findall(m.group(1)) if m else []
    if not items or ", ".join(f"{n} ({why})" for n, why in items) != m.group(1):
        raise Unmodeled(f"unexpected comment {comment!r}")
    listed = [n for n, _ in items]
    positions = [names.index(n) if n in names else -1 for n in listed]
    if -1 in positions or positions != sorted(set(positions)):
        raise Unmodeled(f"the comment names {listed}, the parameters are {names}")


def slot_values(raw, proto):
    """The reference's value slots: the first 5 parameters and the return."""
    values = {MAX_ARGS: type_to_value(raw, "return", proto.type)}
    for j, (pname, tid) in enumerate(proto.params[:MAX_ARGS]):
        values[j] = type_to_value(raw, pname, tid)
    return values


def hangs(raw, name):
    """Whether the reference never finishes the line of function ``name``
    (from BTF alone, as in `expected()`)."""
    proto = raw.proto(name)
    for tid in [proto.type] + [tid for _, tid in proto.params[:MAX_ARGS]]:
        while raw[tid].kind in ("PTR", "CONST", "VOLATILE", "RESTRICT"):
            tid = raw[tid].type
        if type_text(raw, tid) is HANG:
            return True
    if len(proto.params) > MAX_VALUES:
        img = trace_image(slot_values(raw, proto), len(proto.params))
        return any(value_text(raw, stray_value(img, j)) is HANG
                   for j in range(MAX_VALUES, len(proto.params)))
    return False


def expected(raw, name, line):
    """What the reference prints given ksnoop's ``line`` for function ``name``."""
    try:
        p = infoline.parse(line, name)
    except infoline.BadLine as e:
        raise Unmodeled(str(e)) from None
    proto = raw.proto(name)
    params = proto.params
    if len(p.params) != len(params):
        raise Unmodeled(f"{len(p.params)} parameters printed, BTF has {len(params)}")
    classes = set()
    names = [n or f"arg{i}" for i, (n, _) in enumerate(params)]
    if p.comment:
        check_note(p.comment, names)
        classes.add("note")
    ret = part(raw, proto.type, p.ret, None, classes)
    if ret is HANG:
        return Expect("", True, classes)
    if p.tail != ";":
        raise Unmodeled(f"{p.tail!r} after the parameter list")
    out = ret + name + "("
    img = trace_image(slot_values(raw, proto), len(params)) if len(params) > MAX_VALUES else None
    for j, (pname, tid) in enumerate(params):
        if j:
            out += ", "
        if j < MAX_ARGS:
            text = part(raw, tid, p.params[j], pname, classes)
        else:
            classes.add("many-args")
            text = ret if j == MAX_ARGS else value_text(raw, stray_value(img, j))
            if text is HANG:
                classes.add("hang")
        if text is HANG:
            return Expect(out, True, classes)
        out += text
    if len(params) > MAX_ARGS:
        out += f" /* and {len(params) - MAX_ARGS} more args that are not traceable */"
    return Expect(out + ");", False, classes)


# ------------------------------------------------- running the reference
@dataclass
class Printed:
    text: str  # latin-1: the reference's bytes as they are
    hung: bool


def _cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@functools.lru_cache(maxsize=1)
def kallsyms_lines():
    """{symbol: its /proc/kallsyms lines, in order}."""
    by_name = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3:
                by_name.setdefault(fields[2], []).append(line)
    return by_name


@functools.lru_cache(maxsize=1)
def can_narrow_kallsyms():
    """Whether this process may bind-mount a file over /proc/kallsyms in a
    private mount namespace (root)."""
    if not shutil.which("unshare") or not os.path.exists("/proc/kallsyms"):
        return False
    with tempfile.NamedTemporaryFile("w") as f:
        res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              'mount --bind "$0" /proc/kallsyms', f.name], capture_output=True)
    return res.returncode == 0


def command(args, tmpdir):
    """argv running the reference on ``args`` unbuffered.  The reference reads
    all of /proc/kallsyms for each function (most of its time), only for the
    address and module of the function: where allowed, it reads, in a private
    mount namespace, a copy holding just these functions' own lines, in the
    kernel's order, so it finds exactly what it would find in the whole file."""
    cmd = [shutil.which("stdbuf") or "stdbuf", "-o0", REFERENCE, "info", *args]
    if not can_narrow_kallsyms():
        return cmd
    table = kallsyms_lines()
    path = os.path.join(tmpdir, "kallsyms")
    with open(path, "w") as f:
        f.writelines(line for name in dict.fromkeys(args) for line in table.get(name, ()))
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /proc/kallsyms && exec "$@"', path, *cmd]


def run_once(names, sentinel, stall_cpu=0.5, start_timeout=None):
    """Run the reference on [sentinel] + names, unbuffered.  Returns (list of
    Printed for a prefix of names, stderr text).  A line that stops while
    the process keeps burning CPU (stall_cpu seconds of it without a byte of
    output) is a hang: the partial line is kept and the process killed."""
    start_timeout = start_timeout or 120 + 2 * len(names)
    with tempfile.TemporaryDirectory(prefix="ksnoop-ref-") as tmp, tempfile.TemporaryFile() as err:
        cmd = command([sentinel, *names], tmp)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        out, hung, started = b"", False, time.monotonic()
        cpu_mark = None
        fd = proc.stdout.fileno()
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    out += chunk
                    if b");\n" in out:
                        cpu_mark = _cpu_seconds(proc.pid)
                    continue
                if cpu_mark is not None and _cpu_seconds(proc.pid) - cpu_mark >= stall_cpu:
                    hung = True
                    break
                if cpu_mark is None and time.monotonic() - started > start_timeout:
                    break
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        err.seek(0)
        stderr = err.read().decode("latin-1", "replace")
    # a line ends in ");\n"; a stray name (the bytes of a type id, at most 3
    # before a zero) may hold a newline but never ");\n"
    lines = out.decode("latin-1").split(");\n")
    complete, partial = [t + ");" for t in lines[:-1]], lines[-1]
    first = complete[0] if complete else None
    got = [Printed(t, False) for t in complete[1:]]  # complete[0] is the sentinel's
    if hung and complete:
        return (got + [Printed(partial, True)])[:len(names)], stderr, first
    if proc.returncode == 0 and not partial and len(got) == len(names):
        return got, stderr, first
    return [], stderr, first


def run(names, sentinel, stall_cpu=0.5):
    """name -> Printed, or -> str (why the reference gave nothing for it)."""
    result, todo = {}, list(names)
    sentinel_line = None
    while todo:
        printed, stderr, first = run_once(todo, sentinel, stall_cpu)
        sentinel_line = sentinel_line or first
        if not printed:
            if len(todo) == 1:
                result[todo[0]] = "the reference printed nothing: " + (stderr.strip()[-300:] or "no error")
                break
            half = len(todo) // 2
            result.update(run(todo[:half], sentinel, stall_cpu)[0])
            result.update(run(todo[half:], sentinel, stall_cpu)[0])
            break
        for n, p in zip(todo, printed):
            result[n] = p
        todo = todo[len(printed):]
    return result, sentinel_line
