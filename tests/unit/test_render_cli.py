"""`ksnoop render` end to end, on BTF files written by the test writer."""

import struct

import pytest
from btfwriter import demo_types
from test_render_kernel import demo_bytes

from ksnoop.cli.main import main

BLOB, IDS = demo_types()


@pytest.fixture(scope="module")
def btf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("btf") / "demo.btf"
    path.write_bytes(BLOB)
    return str(path)


def run(capsysbinary, argv, monkeypatch=None, stdin=None):
    if stdin is not None:
        import io
        import sys

        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsysbinary.readouterr()
    return e.value.code, out, err


def test_several_objects_from_a_file(btf_file, tmp_path, capsysbinary):
    f = tmp_path / "ints.bin"
    f.write_bytes(struct.pack("<3i", 1, -2, 3))
    rc, out, err = run(capsysbinary, ["render", "int", str(f), "--btf", btf_file])
    assert (rc, out, err) == (0, b"(int)1\n(int)-2\n(int)3\n", b"")
    rc, out, _ = run(capsysbinary, ["render", "int", str(f), "--btf", btf_file, "-f", "json"])
    assert out == b"1\n-2\n3\n"


def test_stdin_struct_formats(btf_file, capsysbinary, monkeypatch):
    data = demo_bytes() * 2
    rc, out, _ = run(capsysbinary, ["render", "struct demo", "--btf", btf_file, "--compact"],
                     monkeypatch, data)
    assert rc == 0 and out.count(b"\n") == 2 and out.startswith(b"(struct demo){.a = (int)-7,")
    rc, out, _ = run(capsysbinary, ["render", "struct demo", "--btf", btf_file, "-f", "kernel",
                                    "--compact", "--ptr-raw"], monkeypatch, data)
    assert rc == 0 and b".gids = (kgid_t[])[6,},]," in out


def test_type_names(btf_file, capsysbinary, monkeypatch, tmp_path):
    f = tmp_path / "p.bin"
    f.write_bytes(struct.pack("<Q", 0x10))
    for name, want in [("struct list_head *", b"(struct list_head *)0x0000000000000010\n"),
                       ("u64", b"(u64)16\n"), ("long unsigned int", b"(long unsigned int)16\n"),
                       (f"btf:{IDS['ulong']}", b"(long unsigned int)16\n")]:
        rc, out, err = run(capsysbinary, ["render", name, str(f), "--btf", btf_file])
        assert (rc, out) == (0, want), err


def test_errors(btf_file, capsysbinary, tmp_path):
    f = tmp_path / "short.bin"
    f.write_bytes(b"\1\0\0\0\2\0")
    rc, out, err = run(capsysbinary, ["render", "int", str(f), "--btf", btf_file])
    assert rc == 1 and out == b"(int)1\n"
    assert err == b"ksnoop: input ends inside an object: last int has 2 of 4 bytes\n"
    rc, out, err = run(capsysbinary, ["render", "struct nope", str(f), "--btf", btf_file])
    assert rc == 2 and err == b"ksnoop: unknown type 'struct nope'\n"
    rc, out, err = run(capsysbinary, ["render", "btf:99999", str(f), "--btf", btf_file])
    assert rc == 2 and err.startswith(b"ksnoop: no type with id 99999")
    rc, out, err = run(capsysbinary, ["render", "int", str(tmp_path / "nope"), "--btf", btf_file])
    assert rc == 1 and err.count(b"\n") == 1
