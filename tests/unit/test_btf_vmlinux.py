"""The BTF reader against the real kernel's BTF and an independent reader (bpftool)."""

import os
import shutil
import subprocess

import pytest

from ksnoop.btf import BTF, Kind

VMLINUX = "/sys/kernel/btf/vmlinux"
pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="kernel has no BTF")

LINKAGE = {0: "static", 1: "global", 2: "extern"}
VAR_LINKAGE = {0: "static", 1: "global", 2: "extern"}
INT_ENC = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}


def q(name):
    return f"'{name or '(anon)'}'"


def bpftool_lines(btf, t):
    """Our Type rendered in bpftool's `format raw` syntax."""
    head = f"[{t.id}] {t.kind.name} {q(t.name)}"
    k = t.kind
    if k == Kind.INT:
        return [f"{head} size={t.size} bits_offset={t.bit_offset} nr_bits={t.bits} "
                f"encoding={INT_ENC.get(t.encoding, 'UNKN')}"]
    if k in (Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPEDEF, Kind.TYPE_TAG):
        return [f"{head} type_id={t.type}"]
    if k == Kind.ARRAY:
        return [f"{head} type_id={t.elem_type} index_type_id={t.index_type} nr_elems={t.nelems}"]
    if k in (Kind.STRUCT, Kind.UNION):
        out = [f"{head} size={t.size} vlen={t.vlen}"]
        for m in t.members:
            line = f"\t{q(m.name)} type_id={m.type} bits_offset={m.bit_offset}"
            out.append(line + (f" bitfield_size={m.bitfield_size}" if m.bitfield_size else ""))
        return out
    if k in (Kind.ENUM, Kind.ENUM64):
        enc = "SIGNED" if t.kflag else "UNSIGNED"
        out = [f"{head} encoding={enc} size={t.size} vlen={t.vlen}"]
        suffix = ("LL" if t.kflag else "ULL") if k == Kind.ENUM64 else ""
        out += [f"\t{q(v.name)} val={v.value}{suffix}" for v in t.values]
        return out
    if k == Kind.FWD:
        return [f"{head} fwd_kind={'union' if t.kflag else 'struct'}"]
    if k == Kind.FUNC:
        return [f"{head} type_id={t.type} linkage={LINKAGE[t.linkage]}"]
    if k == Kind.FUNC_PROTO:
        return [f"{head} ret_type_id={t.type} vlen={t.vlen}"] + [
            f"\t{q(p.name)} type_id={p.type}" for p in t.params]
    if k == Kind.VAR:
        return [f"{head} type_id={t.type}, linkage={VAR_LINKAGE[t.linkage]}"]
    if k == Kind.DATASEC:
        return [f"{head} size={t.size} vlen={t.vlen}"] + [
            f"\ttype_id={v.type} offset={v.offset} size={v.size} "
            f"({btf[v.type].kind.name} {q(btf[v.type].name)})" for v in t.members]
    if k == Kind.FLOAT:
        return [f"{head} size={t.size}"]
    if k == Kind.DECL_TAG:
        return [f"{head} type_id={t.type} component_idx={t.component_idx}"]
    raise AssertionError(f"unexpected kind {k}")


@pytest.fixture(scope="module")
def vmlinux(vmlinux_btf):
    return vmlinux_btf


def test_every_type_matches_bpftool(vmlinux):
    # the independent reader is part of the setup (make setup installs bpftool)
    assert shutil.which("bpftool"), "bpftool is not installed (Debian package bpftool: make setup)"
    raw = subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX, "format", "raw"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    ours = []
    for tid in vmlinux.own_ids:
        ours.extend(bpftool_lines(vmlinux, vmlinux[tid]))
    assert len(vmlinux) - 1 == sum(1 for line in raw if line.startswith("["))
    diffs = [(a, b) for a, b in zip(ours, raw) if a != b]
    assert not diffs[:5]
    assert len(ours) == len(raw)


def test_lookup_and_chains(vmlinux):
    (fid,) = vmlinux.find("ip_send_skb", Kind.FUNC)
    proto = vmlinux[vmlinux[fid].type]
    assert [p.name for p in proto.params] == ["net", "skb"]
    skb = vmlinux[vmlinux.resolve(vmlinux[proto.params[1].type].type)]
    assert (skb.kind, skb.name) == (Kind.STRUCT, "sk_buff")
    assert vmlinux.size_of(skb.id) == skb.size
    assert "len" in {m.name for m in skb.members}
    assert vmlinux.find("no_such_type_ksnoop") == []
    # both a struct and a FUNC can share a name; kind filters
    assert all(vmlinux.kind_of(i) == Kind.STRUCT for i in vmlinux.find("sk_buff", Kind.STRUCT))


def test_index_cache_roundtrip(vmlinux, tmp_path, monkeypatch):
    monkeypatch.setenv("KSNOOP_CACHE_DIR", str(tmp_path))
    first = BTF(vmlinux.data, name="vmlinux")
    assert list(tmp_path.iterdir())
    second = BTF(vmlinux.data, name="vmlinux")
    assert second._offsets == first._offsets and len(second) == len(vmlinux)
    assert second[12345] == vmlinux[12345]
