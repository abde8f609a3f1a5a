"""The default suite's fuzz seed: fresh on every run, printed, the same on every worker.

``make test`` (and any pytest run of the suite) draws new random architectures for the
fuzz tests (test_fuzz_exact.py) from one session seed: ``LPSUBNET_FUZZ_SEED`` when it
is set (to replay a run), otherwise a fresh random number. The seed is printed in the
report header and in the terminal summary, and under pytest-xdist the controller hands
its seed to every worker (``pytest_configure_node``, as pytest-randomly does for its
own seed), so all workers draw what the printed seed names. conftest.py wires the hooks.
"""

from __future__ import annotations

import os
import secrets

import pytest

ENV = 'LPSUBNET_FUZZ_SEED'
WORKER_INPUT = 'lpsubnet_fuzz_seed'
KEY = pytest.StashKey[int]()
SEED_LIMIT = 1_000_000  # example seeds are session seed * 1000 + a few hundred


def session_seed(config) -> int:
    """The worker's seed from its controller, else ``$LPSUBNET_FUZZ_SEED``, else a fresh one."""
    workerinput = getattr(config, 'workerinput', None)
    if workerinput is not None and WORKER_INPUT in workerinput:
        return int(workerinput[WORKER_INPUT])
    text = os.environ.get(ENV, '').strip()
    if not text:
        return secrets.randbelow(SEED_LIMIT)  # not `random`: pytest-randomly reseeds it per test
    if not text.isdigit() or int(text) >= SEED_LIMIT:
        raise pytest.UsageError(f'{ENV}={text!r}: expected a whole number from 0 to {SEED_LIMIT - 1}')
    return int(text)


def describe(seed: int) -> str:
    return f'fuzz seed {seed}: the fuzz tests drew new architectures; {ENV}={seed} replays them'


def example_seeds(seed: int, prop_index: int, n: int) -> list[int]:
    """The seeds of the ``n`` examples of property number ``prop_index`` drawn in a session."""
    return [seed * 1000 + prop_index * 100 + i for i in range(n)]
