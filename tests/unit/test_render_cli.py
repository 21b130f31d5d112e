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


NAME = b"\x1b[2J\xe9\xff\\"  # ESC (0x1b) prints as a number in the kernel style, 0xe9 0xff raw


def test_kernel_style_is_exact_into_a_pipe(btf_file, capsysbinary, monkeypatch):
    from ksnoop.btf import BTF
    from ksnoop.render.snprintf import KernelRenderer

    data = NAME.ljust(8, b"\0")
    rc, out, _ = run(capsysbinary, ["render", f"btf:{IDS['char[8]']}", "--btf", btf_file,
                                    "-f", "kernel", "--compact"], monkeypatch, data)
    want = KernelRenderer(BTF(BLOB, use_cache=False), IDS["char[8]"], 1).render(data)
    assert rc == 0 and out == want.encode("latin-1") + b"\n"
    assert out == b"(char[])[27,'[','2','J','\xe9','\xff','\\',]\n"


def test_kernel_style_is_escaped_on_a_terminal(btf_file, capsysbinary, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    rc, out, _ = run(capsysbinary, ["render", f"btf:{IDS['char[8]']}", "--btf", btf_file,
                                    "-f", "kernel", "--compact"], monkeypatch, NAME.ljust(8, b"\0"))
    assert (rc, out) == (0, b"(char[])[27,'[','2','J','\\351','\\377','\\\\',]\n")


def test_char_arrays_in_ksnoop_and_json_styles(btf_file, capsysbinary, monkeypatch):
    import json

    data = NAME.ljust(8, b"\0")
    rc, out, _ = run(capsysbinary, ["render", f"btf:{IDS['char[8]']}", "--btf", btf_file],
                     monkeypatch, data)
    assert (rc, out) == (0, b'(char[8])"\\033[2J\\351\\377\\\\"\n')
    rc, out, _ = run(capsysbinary, ["render", f"btf:{IDS['char[8]']}", "--btf", btf_file,
                                    "-f", "json"], monkeypatch, data)
    assert (rc, out) == (0, b'"\\u001b[2J\\\\xe9\\\\xff\\\\"\n')
    assert json.loads(out) == "\x1b[2J\\xe9\\xff\\"
