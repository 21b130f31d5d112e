"""Noticing that the reader of our output went away (``ksnoop ... | head -1``)
without writing to it: a pipe or socket whose other end is closed reports
POLLERR or POLLHUP.  Checked once per poll of the event buffer, so ksnoop ends
within about 100 ms of its reader, even when the traced function is not called
again (a write would only fail at the next event)."""

import os
import select
import stat

_GONE = select.POLLERR | select.POLLHUP


class ReaderWatch:
    """``gone()`` is True once the far end of ``out`` (a pipe or socket) is
    closed.  Terminals and files have no reader that can go: never gone."""

    def __init__(self, out):
        self._poll = None
        try:
            fd = out.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError):  # not a real file (tests' StringIO)
            return
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            self._poll = select.poll()
            self._poll.register(fd, 0)  # only the conditions always reported

    def gone(self):
        if self._poll is None:
            return False
        return any(ev & _GONE for _, ev in self._poll.poll(0))


def reader_gone_error():
    return BrokenPipeError(32, "Broken pipe (the reader of the output went away)")
