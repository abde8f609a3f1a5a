"""The fuzz seed of a test session (fpga_tests/fuzz_seed.py): fresh on every run, printed
where a user sees it, the same on every pytest-xdist worker, and replayed by
LPSUBNET_FUZZ_SEED."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fpga_tests import fuzz_seed

ROOT = Path(__file__).resolve().parents[1]

WORKER_TESTS = """
import os
import pytest


@pytest.mark.parametrize('i', range(6))
def test_seed(i, fuzz_seed):
    worker = os.environ.get('PYTEST_XDIST_WORKER', 'main')
    with open(os.path.join(os.environ['SEEDS_DIR'], f'{worker}-{i}'), 'w') as out:
        out.write(str(fuzz_seed))
"""


def _session(tmp_path: Path, env_seed: str | None) -> tuple[set[str], set[str], str]:
    """Run 6 tests on 2 xdist workers; (seeds seen, workers, output)."""
    project = tmp_path / 'project'
    project.mkdir()
    (project / 'conftest.py').write_text("from fpga_tests.conftest import *  # noqa: F403 - the suite's hooks\n")
    (project / 'test_seeds.py').write_text(WORKER_TESTS)
    (tmp_path / 'seeds').mkdir()
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'SEEDS_DIR': str(tmp_path / 'seeds')}
    env.pop(fuzz_seed.ENV, None)
    if env_seed is not None:
        env[fuzz_seed.ENV] = env_seed
    base = tmp_path / 'base'
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-n', '2', '--dist', 'load', '-p', 'no:randomly', '-p',
         'no:cacheprovider', '--basetemp', str(base), str(project)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = list((tmp_path / 'seeds').iterdir())
    assert len(files) == 6
    return {f.read_text() for f in files}, {f.name.split('-')[0] for f in files}, proc.stdout


def test_every_worker_draws_with_the_seed_the_run_prints(tmp_path):
    seeds, workers, output = _session(tmp_path, None)
    assert workers == {'gw0', 'gw1'}, workers  # both workers ran tests
    assert len(seeds) == 1, seeds
    (seed,) = seeds
    assert fuzz_seed.describe(int(seed)) in output  # the terminal summary, shown even with -q
    assert re.search(rf'{fuzz_seed.ENV}={seed} replays them', output)


def test_the_environment_replays_a_seed(tmp_path):
    seeds, _, output = _session(tmp_path, '4242')
    assert seeds == {'4242'} and 'fuzz seed 4242' in output


def test_a_bad_seed_is_named(monkeypatch):
    class Config:
        pass

    monkeypatch.setenv(fuzz_seed.ENV, 'abc')
    with pytest.raises(pytest.UsageError, match="LPSUBNET_FUZZ_SEED='abc': expected a whole number"):
        fuzz_seed.session_seed(Config())
    monkeypatch.delenv(fuzz_seed.ENV)
    fresh = {fuzz_seed.session_seed(Config()) for _ in range(5)}
    assert len(fresh) > 1  # fresh on every run, not a fixed default
