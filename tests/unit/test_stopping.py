"""trace/stopping.StopRequests: a first stop signal only asks, a second interrupts."""

import os
import signal

import pytest

from ksnoop.errors import Terminated
from ksnoop.trace.stopping import StopRequests


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_first_signal_asks_second_interrupts(handlers, sig):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    with StopRequests() as stop:
        assert not stop
        os.kill(os.getpid(), sig)  # delivered to this (main) thread before kill() returns
        assert stop and stop.signum == sig
        want = KeyboardInterrupt if sig == signal.SIGINT else Terminated
        with pytest.raises(want) as e:
            os.kill(os.getpid(), sig)
        if want is Terminated:
            assert e.value.code == 128 + sig


def test_handlers_put_back_and_ignored_signals_left_ignored(handlers):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with StopRequests() as stop:
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
        assert not stop
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
    assert {s: signal.getsignal(s) for s in before} == before
