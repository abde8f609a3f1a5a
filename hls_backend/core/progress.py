"""Progress display for long external steps (g++, vendor tools), on stderr."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from rich.console import Console

_console = Console(stderr=True)


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Show a spinner while the block runs, then one line with the elapsed time."""
    start = time.perf_counter()
    if sys.stderr.isatty():
        with _console.status(message):
            yield
    else:
        yield
    _console.print(f'{message} done in {time.perf_counter() - start:.1f} s', highlight=False)
