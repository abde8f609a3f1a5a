"""A stop signal that lands in a finalizer is redelivered by a one-shot timer
(lpsubnet.interrupts). Once the stop has been raised where it is not swallowed (the
pipeline's check between stages), a redelivery still pending must not raise again while
the command handles the stop and exits: uncaught there, Python would end the process
with SIGINT instead. (The -2 after a SIGTERM seen in test_no_lost_work had another cause:
see test_stop_prevails.py.)"""

import signal
import sys
import time

import pytest

from lpsubnet import interrupts


class _Finalized:
    def __del__(self):
        interrupts._handler(signal.SIGTERM, sys._getframe())


def test_a_signal_in_a_finalizer_is_redelivered(interrupts_installed):
    _Finalized()  # the handler sees a __del__ frame: it arms the timer instead of raising
    assert interrupts.signal_received() == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        time.sleep(10 * interrupts.REDELIVER_SECONDS)


def test_a_pending_redelivery_is_dropped_once_the_stop_is_raised(interrupts_installed):
    _Finalized()
    with pytest.raises(KeyboardInterrupt):
        interrupts.raise_if_requested()  # the pipeline's check, before the timer fires
    try:
        time.sleep(10 * interrupts.REDELIVER_SECONDS)
    except KeyboardInterrupt:  # caught here: uncaught, it would stop the whole test session
        pytest.fail('the pending redelivery raised a second KeyboardInterrupt after the stop was raised')
    assert interrupts.signal_received() == signal.SIGTERM
