"""Peak resident memory of one pipeline stage.

``ru_maxrss`` only ever grows, so it gives the peak of the whole process so far, not
of a stage. On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the peak
(``VmHWM`` in ``/proc/self/status``) to the current resident size; the stage's peak
is then ``VmHWM`` read at its end. Elsewhere the running maximum is reported and the
scope says so. Memory of child processes (g++, Verilator builds) is not included.
"""

from __future__ import annotations

import resource
from pathlib import Path

CLEAR_REFS = Path('/proc/self/clear_refs')
STATUS = Path('/proc/self/status')


def reset_peak() -> bool:
    """Start a new peak measurement; False where the OS does not allow it."""
    try:
        CLEAR_REFS.write_text('5')
        return True
    except OSError:
        return False


def peak_mib() -> float:
    """VmHWM (peak since the last reset) in MiB, or the process's running maximum."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith('VmHWM:'):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
