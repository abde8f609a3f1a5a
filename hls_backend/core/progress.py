"""Progress display for long external steps (g++, vendor tools), on stderr."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

from rich.console import Console

_console = Console(stderr=True)
# One spinner at a time (rich allows one live display): a step that runs beside another
# (the C simulation builds its testbench while hls4ml compiles) only prints its line.
_spinner = threading.Lock()


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Show a spinner while the block runs, then one line with the elapsed time."""
    start = time.perf_counter()
    if sys.stderr.isatty() and _spinner.acquire(blocking=False):
        try:
            with _console.status(message):
                yield
        finally:
            _spinner.release()
    else:
        yield
    _console.print(f'{message} done in {time.perf_counter() - start:.1f} s', highlight=False)
