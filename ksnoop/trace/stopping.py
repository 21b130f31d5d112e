"""Stopping a running job by signal without losing what it has read.

While a trace (or count/hist) polls, Ctrl-C, SIGTERM and SIGHUP only ask it to
stop: the loop ends between two polls, so the events already taken from the
buffer are formatted and written, and the rest are drained after detaching.
Raised from the handler instead, the exception could land in the middle of a
write and cost the events of a whole batch.  A second signal interrupts at
once (a write stuck on a reader that stopped reading still ends); signals set
to be ignored (nohup) stay ignored.
"""

import signal
import threading

from ..errors import Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequests:
    """Context manager: true once a stop signal has arrived."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __bool__(self):
        return self.signum is not None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                old = signal.getsignal(sig)
                if old is not None and old is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        return False

    def _on_signal(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(128 + signum)
