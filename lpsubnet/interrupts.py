"""Ctrl-C and SIGTERM stop a run cleanly, even when they land in a finalizer.

Both signals raise KeyboardInterrupt, so the stage in progress unwinds and its
temporary directory is removed. Python swallows an exception raised inside a
finalizer (a ``__del__`` or a weakref callback, which TensorFlow runs often) and
prints "Exception ignored"; the run would then carry on. So a signal that arrives in
a finalizer is redelivered a moment later (a one-shot timer), once the finalizer
has returned, and the pipeline also checks :func:`raise_if_requested` before it
keeps a finished stage.

A library may also turn the KeyboardInterrupt into an error of its own: TensorFlow's
``DType.max`` catches it in a bare ``except:`` and raises "TypeError: Cannot find
maximum value of <dtype: 'int32'>" (seen when a SIGTERM landed in Keras's seed
handling). :func:`stop_prevails` makes any error that unwinds after a stop was asked
for that stop.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

_requested: int | None = None
REDELIVER_SECONDS = 0.05


def _in_finalizer(frame) -> bool:
    for _ in range(3):  # the finalizer is the innermost frame, or close to it
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == '__del__' or code.co_filename.endswith('weakref.py'):
            return True
        frame = frame.f_back
    return False


def _stop(signum: int) -> KeyboardInterrupt:
    # Raised where it is not swallowed: a redelivery still pending would raise again later,
    # while the command handles the stop or exits (uncaught there, Python ends the process
    # with SIGINT instead of the exit code it was given).
    signal.setitimer(signal.ITIMER_REAL, 0)
    return KeyboardInterrupt(f'signal {signal.Signals(signum).name}')


def _raise(signum: int):
    raise _stop(signum)


def _handler(signum, frame):
    global _requested
    _requested = signum
    if _in_finalizer(frame):
        signal.setitimer(signal.ITIMER_REAL, REDELIVER_SECONDS)
        return
    _raise(signum)


def _redeliver(signum, frame):
    if _requested is not None:
        _handler(_requested, frame)


def install() -> None:
    """Route SIGINT and SIGTERM through the handler above (call from the main thread)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGALRM, _redeliver)


def exiting() -> None:
    """The stop is handled and the process is about to exit with 128 + the signal.

    Run as ``python -m`` (how the tests and some users start the CLI), CPython ends the
    process by SIGINT (exit status -2 instead of 143) when a KeyboardInterrupt once left
    code run from a string (``exec``/``eval`` of source text: dataclasses, namedtuples,
    code that Keras generates), even if it was caught further out: that sets a flag of the
    interpreter (``_Py_UnhandledKeyboardInterrupt``) which only the next such run clears.
    A SIGTERM landing in one did this (strace: the process sent itself SIGINT after
    printing the stop). Running an empty string clears it; the installed ``lpsubnet``
    script exits through another path and never read it."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    exec('')  # clears the flag described above


def signal_received() -> int | None:
    """The signal that asked for the stop (SIGINT or SIGTERM), or None."""
    return _requested


def raise_if_requested() -> None:
    if _requested is not None:
        _raise(_requested)


@contextlib.contextmanager
def stop_prevails() -> Iterator[None]:
    """An exception leaving the block after SIGINT/SIGTERM arrived is the stop, whatever a
    library made of the KeyboardInterrupt on the way (the error is kept as its cause)."""
    try:
        yield
    except Exception as exc:
        if _requested is None:
            raise
        raise _stop(_requested) from exc
