import io
import os
import socket

from ksnoop.trace.outpipe import ReaderWatch


def test_pipe_reader_gone():
    r, w = os.pipe()
    with os.fdopen(w, "w") as out:
        watch = ReaderWatch(out)
        assert not watch.gone()
        os.close(r)
        assert watch.gone()


def test_socket_peer_gone():
    a, b = socket.socketpair()
    with a, a.makefile("w") as out:
        watch = ReaderWatch(out)
        assert not watch.gone()
        b.close()
        assert watch.gone()


def test_files_and_stand_ins_never_gone(tmp_path):
    with open(tmp_path / "f", "w") as f:
        assert not ReaderWatch(f).gone()
    assert not ReaderWatch(io.StringIO()).gone()
