"""The processes a command leaves behind, read from /proc (Linux; psutil is not a dependency).

:func:`adopting_orphans` makes the test process a child subreaper (prctl
PR_SET_CHILD_SUBREAPER) for the duration of a block: every process orphaned below it
(a grandchild whose parent died, however deep) is re-parented to the test process
instead of init, so after the command has exited, anything it left running is a child
of the test process and :func:`leftovers` finds it, even a process started after the
last look at the tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def _stat(pid: int) -> tuple[str, str, int, int] | None:
    """(command name, state, parent pid, process group) of ``pid``, or None if it is gone."""
    try:
        text = Path(f'/proc/{pid}/stat').read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    name = text[text.index('(') + 1 : text.rindex(')')]
    fields = text[text.rindex(')') + 2 :].split()
    return name, fields[0], int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def children(pid: int) -> list[int]:
    return [p for p in _all_pids() if (s := _stat(p)) is not None and s[2] == pid]


def descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid`` (pid -> command name), zombies left out."""
    found: dict[int, str] = {}
    by_parent: dict[int, list[tuple[int, str, str]]] = {}
    for p in _all_pids():
        s = _stat(p)
        if s is not None:
            by_parent.setdefault(s[2], []).append((p, s[0], s[1]))
    todo = [pid]
    while todo:
        for child, name, state in by_parent.get(todo.pop(), []):
            if state != 'Z':
                found[child] = name
            todo.append(child)
    return found


@contextlib.contextmanager
def adopting_orphans() -> Iterator[set[int]]:
    """The test process as child subreaper within the block; yields the pids of its
    children before the block (they are not the command's leftovers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = set(children(os.getpid()))
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_CHILD_SUBREAPER) failed')
    try:
        yield before
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def leftovers(before: set[int], wait: float = 5.0) -> dict[int, str]:
    """Processes below the test process that were not there ``before`` and are still
    alive after ``wait`` seconds (orphans that are dying get that long); reaps the
    adopted zombies. Anything returned is killed, so one failure does not leak into
    the next test."""
    deadline = time.monotonic() + wait
    while True:
        for pid in children(os.getpid()):
            if pid not in before and _stat(pid) is not None and _stat(pid)[1] == 'Z':
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        alive = {pid: name for pid, name in descendants(os.getpid()).items() if pid not in before}
        for pid in before:  # descendants of children that were there before are not ours
            for below in descendants(pid):
                alive.pop(below, None)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive


def wait_for(pid: int, names: set[str], timeout: float, count: int = 1) -> dict[int, str]:
    """Wait until ``count`` processes below ``pid`` have one of ``names``; returns the tree then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree = descendants(pid)
        if sum(name in names for name in tree.values()) >= count:
            return tree
        time.sleep(0.1)
    raise TimeoutError(f'{count} of {sorted(names)} did not start below {pid} within {timeout} s')
