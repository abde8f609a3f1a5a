"""A stop signal that lands in a finalizer is redelivered by a one-shot timer
(lpsubnet.interrupts). Once the command handles the stop and exits with 128 + the
signal, a redelivery still pending must not raise again: uncaught during the exit,
Python would end the process with SIGINT instead (exit status -2 after a SIGTERM, seen
once in test_no_lost_work's SIGTERM case)."""

import signal
import sys
import time

import pytest

from lpsubnet import interrupts


@pytest.fixture
def installed():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    interrupts.install()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    interrupts._requested = None
    for sig, handler in before.items():
        signal.signal(sig, handler)


class _Finalized:
    def __del__(self):
        interrupts._handler(signal.SIGTERM, sys._getframe())


def test_a_signal_in_a_finalizer_is_redelivered(installed):
    _Finalized()  # the handler sees a __del__ frame: it arms the timer instead of raising
    assert interrupts.signal_received() == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        time.sleep(10 * interrupts.REDELIVER_SECONDS)


def test_a_pending_redelivery_is_dropped_once_the_stop_is_handled(installed):
    _Finalized()
    interrupts.stop_redelivery()  # what the command does before it exits with 128 + the signal
    time.sleep(10 * interrupts.REDELIVER_SECONDS)  # no KeyboardInterrupt
    assert interrupts.signal_received() == signal.SIGTERM
