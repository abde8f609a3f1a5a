"""External programs that end when lpsubnet is interrupted.

Every program the back end runs (g++, the testbench shards, make with Verilator and
g++ for the RTL, the cycle harness, hls4ml's ``build_lib.sh``, the vendor tools) is
started in a session of its own (``start_new_session``), so that it and everything
it starts in turn (make's ``verilator_bin`` and ``cc1plus``) form one process group.
When the thread that waits for it is interrupted (Ctrl-C, or a SIGTERM that
lpsubnet's CLI turns into KeyboardInterrupt) the whole group is ended before the
exception goes on; :func:`stop_all` ends every group still running, for programs that
worker threads wait on (:func:`thread_pool` calls it). The case that asked for this
(issue 27): a SIGTERM to ``lpsubnet rtl`` during the Verilator build of hls4ml's MNIST
CNN printed "Aborted!" and left verilator_bin, make and cc1plus running.

A group of its own also means a Ctrl-C typed in the terminal reaches only lpsubnet
(the terminal signals its foreground process group), which then ends the groups
itself: one path for both signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

# SIGTERM first (make deletes the target it was writing), SIGKILL after this long.
GRACE_SECONDS = 2.0
# How often run() calls its ``poll`` callback while the program runs.
POLL_SECONDS = 1.0

_lock = threading.Lock()
_running: dict[int, subprocess.Popen] = {}  # process group id (the leader's pid) -> leader
_stopping = False  # set by stop_all: no new program starts until the interrupted block has unwound


class Interrupted(KeyboardInterrupt):
    """Raised in a thread that tries to start a program while lpsubnet is stopping."""


def start(cmd: list[str], **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd, ...)`` in a new session, registered until :func:`finish`."""
    with _lock:
        if _stopping:
            raise Interrupted(f'not starting {cmd[0]}: stopping')
        proc = subprocess.Popen(cmd, start_new_session=True, **popen_kwargs)
        _running[proc.pid] = proc
    return proc


def end_group(proc: subprocess.Popen) -> None:
    """End ``proc``'s whole process group: SIGTERM, then SIGKILL after GRACE_SECONDS."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(GRACE_SECONDS)
    # Children that outlived the leader (or ignored SIGTERM) are still in its group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _forget(proc)


def finish(proc: subprocess.Popen) -> None:
    """Forget a program that has ended by itself."""
    _forget(proc)


def _forget(proc: subprocess.Popen) -> None:
    with _lock:
        _running.pop(proc.pid, None)


def stop_all() -> None:
    """End every program still running (from any thread); new starts are refused until
    :func:`resume` (``thread_pool`` resumes once its workers have returned)."""
    global _stopping
    with _lock:
        _stopping = True
        procs = list(_running.values())
    for proc in procs:
        end_group(proc)


def resume() -> None:
    global _stopping
    with _lock:
        _stopping = False


def running() -> list[int]:
    """Process group ids still running (for tests and diagnostics)."""
    with _lock:
        return sorted(_running)


def run(
    cmd: list[str],
    *,
    capture_output: bool = False,
    text: bool = False,
    poll: Callable[[], None] | None = None,
    **popen_kwargs,
) -> subprocess.CompletedProcess:
    """Like ``subprocess.run(cmd, check=False, ...)``, with the program in a process group of
    its own that is ended when this call is interrupted. ``poll`` is called about every
    POLL_SECONDS while the program runs (progress displays read the build's files)."""
    if capture_output:
        popen_kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc = start(cmd, text=text, **popen_kwargs)
    try:
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=POLL_SECONDS if poll else None)
                break
            except subprocess.TimeoutExpired:
                poll()
    except BaseException:
        end_group(proc)
        raise
    finish(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@contextlib.contextmanager
def thread_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool whose programs end with the block: on an exception (an interrupt in
    the waiting thread) the queued tasks are cancelled and the running programs ended,
    so leaving the block does not wait for them to finish on their own."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_all()
        try:
            pool.shutdown(wait=True)
        finally:
            resume()
        raise
    pool.shutdown(wait=True)


__all__ = ['run', 'start', 'finish', 'end_group', 'stop_all', 'resume', 'running', 'thread_pool', 'Interrupted']
