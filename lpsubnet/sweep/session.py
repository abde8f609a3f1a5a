"""One Ray session of ``lpsubnet sweep``, in a process of its own.

``python -m lpsubnet.sweep.session SWEEP_DIR`` reads the request the sweep wrote into
``SWEEP_DIR/ray/`` (lpsubnet.sweep.driver.DRIVER_REQUEST), starts Ray or joins the cluster, runs
the pending trials on Ray Tune and writes how it ended (DRIVER_OUTCOME). The sweep runs
this process again when it ends without an outcome: Ray terminates a driver whose node
died, so the process that keeps the sweep going must not be one.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from hls_backend.core.files import write_text_atomic

    from .driver import DRIVER_OUTCOME, drive

    out = Path((argv or sys.argv[1:])[0])
    try:
        outcome = drive(out)
    except Exception:  # a bug: say so once, do not start the session again
        traceback.print_exc()
        outcome = {'error': traceback.format_exc(limit=-3).strip().splitlines()[-1]}
    write_text_atomic(out / 'ray' / DRIVER_OUTCOME, json.dumps(outcome) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
