"""The ``lpsubnet`` command line as the tests run it.

``cli()`` invokes ``lpsubnet.cli.main`` in this process with click's CliRunner: no
new Python process and no new TensorFlow import per call (a subprocess costs 5-10 s).
Its result looks like a finished subprocess (returncode, stdout, stderr), and an
exception that escapes the command is appended to stderr as the traceback a real
process would print, so ``'Traceback' not in stderr`` keeps its meaning.

``cli_process()`` runs ``python -m lpsubnet.cli`` for the few tests that need a real
process: the end-to-end exit code and message, signals, concurrent runs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass

CLI = [sys.executable, '-m', 'lpsubnet.cli']
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def cli(*args, env: dict | None = None) -> Finished:
    """``lpsubnet ARGS`` in process; ``env`` entries are set in os.environ for the call."""
    from click.testing import CliRunner

    from lpsubnet.cli import main

    # The command installs its SIGINT/SIGTERM handlers (lpsubnet.interrupts): give
    # pytest its own back afterwards.
    saved = {s: signal.getsignal(s) for s in _SIGNALS}
    try:
        result = CliRunner().invoke(main, [str(a) for a in args], env=env, prog_name='lpsubnet')
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += ''.join(traceback.format_exception(*result.exc_info))
    return Finished(result.exit_code, result.stdout, stderr)


def cli_process(*args, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m lpsubnet.cli ARGS`` in a new process."""
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, env=env, check=False, timeout=timeout
    )
