"""The generic kprobe-multi program (trace/multigen.py) against the compiled
per-function programs: both are generated for the same plan, compiled by gcc
with the BPF helpers played by user-space stand-ins (reads from one memory
image), run on the same registers and memory, and must send the same bytes.
The verifier's view of the generic program is the host tier's
(tests/host/test_backends_host.py); a real kprobe-multi link is the guest's.
"""

import os
import re
import shutil
import subprocess

import cbuild
import pytest
from backendstub import Fixed

from ksnoop.btf import Kind
from ksnoop.kernel import backend
from ksnoop.kernel.arch import current
from ksnoop.kernel.files import Kernel
from ksnoop.trace import multigen
from ksnoop.trace.codegen import MULTI_ENTRY, MULTI_RETURN, MULTI_RETURN_BASE, Machine, generate
from ksnoop.trace.job import attach_points
from ksnoop.trace.resolve import resolve
from ksnoop.trace.spec import parse

VMLINUX = "/sys/kernel/btf/vmlinux"
MACHINE = Machine(self_tgid=1, ncpus=1)
pytestmark = [pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF"),
              pytest.mark.skipif(not shutil.which("gcc"), reason="gcc not installed")]
MEM = 16384

HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;
typedef int8_t s8; typedef int16_t s16; typedef int32_t s32; typedef int64_t s64;
#define __always_inline inline __attribute__((always_inline))
struct pt_regs { u64 di, si, dx, cx, r8, r9, sp, ax; };
#define MEMSIZE %(mem)d
static unsigned char *mem;  /* at the same address in every run: pointers are in events */
static long probe_read(void *dst, u32 size, u64 src, int str)
{
	u64 base = (u64)mem;
	if (src < base || src + size > base + MEMSIZE) {
		printf("read outside %%u\n", size);  /* addresses differ from run to run */
		memset(dst, 0, size);
		return -14;
	}
	printf("read %%ld %%u\n", (long)(src - base), size);
	memcpy(dst, (void *)src, size);
	if (str) { size_t n = strnlen(dst, size); ((char *)dst)[n < size ? n : size - 1] = 0;
		return n < size ? n + 1 : size; }
	return 0;
}
#define bpf_probe_read_kernel(d, n, s) probe_read((d), (n), (u64)(s), 0)
#define bpf_probe_read_user(d, n, s) probe_read((d), (n), (u64)(s), 0)
#define bpf_probe_read_kernel_str(d, n, s) probe_read((d), (n), (u64)(s), 1)
#define bpf_probe_read_user_str(d, n, s) probe_read((d), (n), (u64)(s), 1)
static u64 cookie;
#define bpf_get_attach_cookie(ctx) cookie
static u64 bpf_get_current_pid_tgid(void) { return (42ULL << 32) | 43; }
static u64 bpf_ktime_get_ns(void) { return 2000000000ULL; }
static u32 bpf_get_smp_processor_id(void) { return 0; }
static void bpf_get_current_comm(void *buf, u32 n) { memset(buf, 0, n); strcpy(buf, "cat"); }
/* arrays keyed by a u32 index; the ksnoop tables used here are all arrays */
#define BPF_PERCPU_ARRAY(name, vtype, n) static struct { vtype v[n]; } name
#define BPF_ARRAY(name, vtype, n) static struct { vtype v[n]; } name
#define MAP_lookup(m, kp) (*(u32 *)(kp) < sizeof((m).v) / sizeof((m).v[0]) ? &(m).v[*(u32 *)(kp)] : NULL)
/* hash tables (calls in flight): a few slots searched by key */
#define BPF_TABLE(type, ktype, vtype, name, n) static struct { ktype k[64]; vtype v[64]; int used[64]; } name
#define HASH_find(m, kp) ({ int i_ = -1; for (int j_ = 0; j_ < 64; j_++) \
	if ((m).used[j_] && !memcmp(&(m).k[j_], (kp), sizeof((m).k[0]))) { i_ = j_; break; } i_; })
#define HASH_lookup(m, kp) ({ int i_ = HASH_find(m, kp); i_ < 0 ? NULL : &(m).v[i_]; })
#define HASH_update(m, kp, vp) ({ int i_ = HASH_find(m, kp); for (int j_ = 0; i_ < 0 && j_ < 64; j_++) \
	if (!(m).used[j_]) i_ = j_; (m).used[i_] = 1; memcpy(&(m).k[i_], (kp), sizeof((m).k[0])); \
	memcpy(&(m).v[i_], (vp), sizeof((m).v[0])); 0; })
#define HASH_delete(m, kp) ({ int i_ = HASH_find(m, kp); if (i_ >= 0) (m).used[i_] = 0; 0; })
static void emit(const unsigned char *p, u32 n)
{
	printf("event ");
	for (u32 i = 0; i < n; i++) printf("%%02x", p[i]);
	printf("\n");
}
#define KSNOOP_OUTPUT(ctx, data, size) emit((const unsigned char *)(data), (size))
%(program)s
int main(void)
{
	struct pt_regs r = { 0 };
	mem = mmap((void *)0x200000000ULL, MEMSIZE, PROT_READ | PROT_WRITE,
		MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (mem == MAP_FAILED) return 1;
%(setup)s
%(calls)s
	return 0;
}
"""


MULTI = Fixed(backend.Choice(backend.KPROBE, True, "test"))


def run(c_text, setup, calls, tmp):
    program = c_text
    for name in re.findall(r'BPF_TABLE\("lru_hash", [^,]+, [^,]+, (\w+),', c_text):
        program = re.sub(rf"\b{name}\.(lookup|update|delete)\(", rf"HASH_\1({name}, ", program)
    program = re.sub(r"\b(\w+)\.lookup\(", r"MAP_lookup(\1, ", program)
    src = HARNESS % {"mem": MEM, "program": program, "setup": "\n".join(setup),
                     "calls": "\n".join(calls)}
    exe = os.path.join(tmp, "prog")
    cc = cbuild.build(src, exe)
    assert cc.returncode == 0, cc.stderr[:3000]
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith(("event", "read"))]


def c_bytes(raw):
    """``raw`` as the inside of a C string literal."""
    return "".join("\\x%02x" % b for b in raw)


def memory_setup():
    """A memory image: bytes i & 0xff, with pointers planted so that member
    chains lead somewhere (each u64 at 8 * k for k in 64..127 points at
    mem + 512 * (k - 63)), and a NUL-terminated name at 3000."""
    lines = ["\tfor (int i = 0; i < MEMSIZE; i++) mem[i] = (u8)(i * 7 + 3);",
             "\tfor (int k = 64; k < 128; k++) *(u64 *)(mem + 8 * k) = (u64)(mem + 512 * (k - 63));",
             "\tstrcpy((char *)mem + 3000, \"ksnoop\");"]
    return lines


REGS = {"di": 512, "si": 1024, "dx": 77, "cx": 8 * 70, "r8": 3000, "r9": 8 * 80, "sp": 8 * 90}


def set_regs():
    return [f"\tr.{reg} = (u64)(mem + {off});" for reg, off in REGS.items()]


# The same prototypes in 6.1, 6.12 and 6.18: __udp4_lib_lookup has 9 arguments (the
# last three on the stack), do_tcp_setsockopt takes a 16-byte struct in two registers.
SPECS = ["vfs_read(file->f_path.dentry->d_name.name, count, buf, pos)",
         "__udp4_lib_lookup(sdif, udptable, dport, skb->len, net->user_ns->level, return)",
         "do_tcp_setsockopt(optval, optlen, sk->sk_mark)",
         "ip_send_skb(skb->len, skb->cb, net, return)"]


@pytest.fixture(scope="module")
def kernel():
    return Kernel(btf_path=VMLINUX, kallsyms_path="/nonexistent/kallsyms")


def test_generic_program_sends_what_the_compiled_ones_send(kernel, tmp_path):
    specs = [parse(s) for s in SPECS]
    generic = resolve(specs, kernel, backends=MULTI)
    compiled = resolve(specs, kernel)
    assert [fp.multi for fp in generic.funcs] == [True] * 4
    assert all(multigen.side_layout(fp, False) for fp in generic.funcs)
    g_text, g_probes = generate(generic, MACHINE)
    c_text, c_probes = generate(compiled, MACHINE)
    assert "int ksnoop_entry_0(" not in g_text and "int ksnoop_entry_m(" in g_text
    points = attach_points(g_probes)
    recipes = {slot: raw for p in points for slot, raw in p.recipes}
    assert sorted(recipes) == [0, 1, 2, 3, MULTI_RETURN_BASE + 1, MULTI_RETURN_BASE + 3]
    # each side's loop goes as far as its biggest recipe, no further
    for p in points:
        most = max(multigen.RECIPE_HEAD.unpack_from(raw)[0] for _, raw in p.recipes)
        body = g_text.split(f"int {p.fn}(", 1)[1].split("\n}\n", 1)[0]
        assert re.findall(r"for \(u32 i = 0; i < (\d+); i\+\+\)", body) == [str(most)]
    load = [f"\tmemcpy(&{multigen.RECIPES}.v[{slot}], \"{c_bytes(raw)}\", {len(raw)});"
            for slot, raw in recipes.items()]
    g_calls, c_calls = [], []
    for fp, (_, entry, ret) in zip(generic.funcs, c_probes):
        g_calls += [f"\tcookie = {fp.index};", f"\t{MULTI_ENTRY}(&r);"]
        c_calls.append(f"\t{entry}(&r);")
        if ret:
            g_calls += ["\tr.ax = (u64)(mem + 1536);", f"\t{MULTI_RETURN}(&r);"]
            c_calls += ["\tr.ax = (u64)(mem + 1536);", f"\t{ret}(&r);"]
    setup = memory_setup() + set_regs()
    got = run(g_text, setup + load, g_calls, str(tmp_path))
    want = run(c_text, setup, c_calls, str(tmp_path))
    assert sum(line.startswith("event") for line in want) == 6
    assert got == want  # the same reads, in the same order, and the same events


def test_a_predicate_keeps_the_compiled_programs(kernel):
    """Predicates, conditions and stash are compiled (multigen only copies)."""
    plan = resolve([parse("ip_send_skb(skb->len > 10)"), parse("vfs_read(count)")], kernel,
                   backends=MULTI)
    text, probes = generate(plan, MACHINE)
    assert [(e, r) for _, e, r in probes] == [("ksnoop_entry_0", None), ("ksnoop_entry_1", None)]
    assert "ksnoop_multi.call(ctx, bpf_get_attach_cookie(ctx));" in text
    assert multigen.RECIPES not in text


def test_recipe_layout(kernel):
    (fp,) = resolve([parse("__udp4_lib_lookup(sdif, udptable)")], kernel, backends=MULTI).funcs
    ev = multigen.side_layout(fp, False)
    raw = multigen.recipe(ev, multigen.registers(current("x86_64")))
    assert len(raw) == multigen.RECIPE_HEAD.size + multigen.MAX_VALUES * multigen.VAL.size
    nvals, size, *_ = multigen.RECIPE_HEAD.unpack_from(raw)
    assert (nvals, size) == (2, ev.size)
    sdif = multigen.VAL.unpack_from(raw, multigen.RECIPE_HEAD.size)
    udptable = multigen.VAL.unpack_from(raw, multigen.RECIPE_HEAD.size + multigen.VAL.size)
    sp = 6  # after the six argument registers
    # op, src, src2, nhops, user, hop0, hop1, read_off, size, ptr, status, data
    assert sdif == (multigen.OP_SCALAR, sp, multigen.NO_REG, 0, 0, 0, 0, 8, 4, 0xFFFF,
                    ev.slots[0].status, ev.slots[0].data)
    assert udptable[:5] == (multigen.OP_DEREF, sp, multigen.NO_REG, 1, 0) and udptable[5] == 16
    assert kernel.vmlinux.find("__udp4_lib_lookup", Kind.FUNC)
