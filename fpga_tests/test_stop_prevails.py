"""A stop keeps its exit status.

- A stop signal that a library turns into an error of its own is still the stop
  (lpsubnet.interrupts.stop_prevails). TensorFlow's ``DType.max`` catches the
  KeyboardInterrupt in a bare ``except:`` and raises TypeError; a SIGTERM that landed
  there made `lpsubnet run` print that traceback and exit 1 instead of 143 (seen while
  reproducing test_no_lost_work's SIGTERM case).
- A stop raised inside code run from a string (exec/eval of source text) does not turn
  the exit status into -2 under ``python -m`` (interrupts.exiting; test_no_lost_work's
  SIGTERM case exited -2 now and then: CPython sent itself SIGINT at exit).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from lpsubnet import interrupts


def library_that_swallows_the_interrupt():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises KeyboardInterrupt here
    except:  # noqa: E722 -- what tensorflow's DType.max does
        raise TypeError("Cannot find maximum value of <dtype: 'int32'>.") from None
    pytest.fail('the SIGTERM did not interrupt the call')


def test_an_error_after_a_stop_is_the_stop(interrupts_installed):
    with pytest.raises(KeyboardInterrupt, match='SIGTERM') as info, interrupts.stop_prevails():
        library_that_swallows_the_interrupt()
    assert isinstance(info.value.__cause__, TypeError)
    assert interrupts.signal_received() == signal.SIGTERM


def test_an_error_without_a_stop_is_left_as_it_is(interrupts_installed):
    with pytest.raises(TypeError, match='no stop'), interrupts.stop_prevails():
        raise TypeError('no stop')
    assert interrupts.signal_received() is None


# Run as `python -m`: a KeyboardInterrupt that left code run from a string, caught further
# out, then a normal exit with 143.
INTERRUPTED_IN_EXEC = """
import signal, sys
from lpsubnet import interrupts
interrupts.install()
try:
    exec("import os; os.kill(os.getpid(), signal.SIGTERM); import time; time.sleep(5)")
except KeyboardInterrupt:
    pass
{exiting}
sys.exit(143)
"""


@pytest.mark.parametrize('exiting, status', [('interrupts.exiting()', 143), ('', -signal.SIGINT)])
def test_a_stop_raised_in_exec_keeps_the_exit_status(tmp_path, exiting, status):
    (tmp_path / 'stop_in_exec.py').write_text(INTERRUPTED_IN_EXEC.format(exiting=exiting))
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.run(
        [sys.executable, '-m', 'stop_in_exec'], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert proc.returncode == status, proc.stderr  # without exiting(): CPython's own SIGINT
