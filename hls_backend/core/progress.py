"""Progress display for long steps (g++, the da4ml trace, the Verilator build, vendor tools), on stderr.

In a terminal a spinner shows the step, what it is doing now and the time so far. In a
log (stderr is not a terminal) the same goes on one line at most every
HEARTBEAT_SECONDS, so that a step of many minutes is never silent (issue 27: `lpsubnet
rtl` printed nothing during a 5.4-minute da4ml trace). Each step ends with one line and
its time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape

_console = Console(stderr=True)
# One spinner at a time (rich allows one live display): a step that runs beside another
# (the C simulation builds its testbench while hls4ml compiles) only prints its lines.
_spinner = threading.Lock()
# In a log: at most one progress line per step this often (LPSUBNET_PROGRESS_SECONDS sets it).
HEARTBEAT_SECONDS = float(os.environ.get('LPSUBNET_PROGRESS_SECONDS', 30))


class Step:
    """A running step; :meth:`update` says what it is doing now."""

    def __init__(self, message: str, status=None):
        self.message = message
        self.start = time.perf_counter()
        self._status = status  # rich Status in a terminal, else None
        self._last_line = self.start

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def update(self, detail: str) -> None:
        now = time.perf_counter()
        text = f'{self.message}: {detail} ({now - self.start:.0f} s)'
        if self._status is not None:
            self._status.update(escape(text))
        elif now - self._last_line >= HEARTBEAT_SECONDS:
            self._last_line = now
            _console.print(text, highlight=False, markup=False, soft_wrap=True)


@contextlib.contextmanager
def step(message: str) -> Iterator[Step]:
    """Show a spinner while the block runs (updated by the yielded Step), then one line
    with the elapsed time."""
    if sys.stderr.isatty() and _spinner.acquire(blocking=False):
        try:
            with _console.status(escape(message)) as status:
                current = Step(message, status)
                yield current
        finally:
            _spinner.release()
    else:
        current = Step(message)
        yield current
    _console.print(f'{message} done in {current.seconds:.1f} s', highlight=False, markup=False, soft_wrap=True)
