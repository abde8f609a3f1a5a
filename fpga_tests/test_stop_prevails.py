"""A stop keeps its exit status.

- A stop signal that a library turns into an error of its own is still the stop
  (lpsubnet.interrupts.stop_prevails). TensorFlow's ``DType.max`` catches the
  KeyboardInterrupt in a bare ``except:`` and raises TypeError; a SIGTERM that landed
  there made `lpsubnet run` print that traceback and exit 1 instead of 143 (seen while
  reproducing test_no_lost_work's SIGTERM case).
- Once the stop is handled, a further SIGINT cannot turn the exit status into -2
  (interrupts.exiting; test_no_lost_work's SIGTERM case exited -2 now and then).
"""

import os
import signal
import subprocess
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


def library_that_swallows_the_interrupt():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises KeyboardInterrupt here
    except:  # noqa: E722 -- what tensorflow's DType.max does
        raise TypeError("Cannot find maximum value of <dtype: 'int32'>.") from None
    pytest.fail('the SIGTERM did not interrupt the call')


def test_an_error_after_a_stop_is_the_stop(installed):
    with pytest.raises(KeyboardInterrupt, match='SIGTERM') as info, interrupts.stop_prevails():
        library_that_swallows_the_interrupt()
    assert isinstance(info.value.__cause__, TypeError)
    assert interrupts.signal_received() == signal.SIGTERM


def test_an_error_without_a_stop_is_left_as_it_is(installed):
    with pytest.raises(TypeError, match='no stop'), interrupts.stop_prevails():
        raise TypeError('no stop')
    assert interrupts.signal_received() is None


EXIT_AFTER_A_LATE_SIGINT = """
import os, signal, sys
from lpsubnet import interrupts
interrupts.install()
{prepare}
os.kill(os.getpid(), signal.SIGINT)  # arrives as it would while Python finalizes
sys.exit(143)
"""


@pytest.mark.parametrize(
    'prepare, status',
    [
        ('interrupts.exiting()', 143),
        # What Python's finalization does to the handlers: the default action ends the process.
        ('signal.signal(signal.SIGINT, signal.SIG_DFL)', -signal.SIGINT),
    ],
)
def test_a_stop_signal_after_the_stop_is_handled_keeps_the_exit_status(prepare, status):
    code = EXIT_AFTER_A_LATE_SIGINT.format(prepare=prepare)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == status, proc.stderr
