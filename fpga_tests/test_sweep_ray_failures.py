"""``lpsubnet sweep`` when Ray fails under it, and the README's cluster recipe (all slow).

Each test runs a 2-trial sweep of the tiny model (fpga_tests.sweep_helpers) as a real
process and breaks Ray on this machine mid-trial: a trial's worker process killed, the
raylet of the sweep's own local Ray instance killed (what "Owner's node has crashed" on 2
busy cores was: the node the sweep drives Ray from gone), a worker node of a two-node
cluster killed. The sweep must end with every trial done, the finished ones kept, and
the records saying what was retried. The last test runs the README's cluster recipe after
a local sweep, in that order (Ray 2.60's ~/.ray/auth_token), in a home directory of its own.

Only processes these tests started are ended, by their ids; every Ray process stays on
this machine (127.0.0.1 and this machine's own interface address).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from fpga_tests.sweep_helpers import SWEEP, read_jsonl, train_tiny_model, write_config

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / 'README.md'
CLI = [sys.executable, '-m', 'lpsubnet.cli']


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp('model'))


class Watched:
    """A process started by a test, and every descendant seen while waiting on it, so that
    the test can check none is left once it has ended."""

    def __init__(self, command, env=None):
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.seen: dict[int, float] = {}

    def descendants(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for p in found:
            try:
                self.seen[p.pid] = p.create_time()
            except psutil.NoSuchProcess:
                pass
        return found

    def wait_for(self, condition, what: str, timeout: float = 900):
        """Poll ``condition()`` until it returns something true; fail if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            self.descendants()
            found = condition()
            if found:
                return found
            if self.proc.poll() is not None:
                stdout, stderr = self.proc.communicate()
                pytest.fail(
                    f'the process ended before {what}: exit {self.proc.returncode}\n{stdout[-2000:]}\n{stderr[-4000:]}'
                )
            assert time.monotonic() < deadline, f'no {what} in {timeout:.0f} s'
            time.sleep(0.5)

    def finish(self, timeout: float = 900) -> tuple[str, str]:
        try:
            return self.proc.communicate(timeout=timeout)
        finally:
            self.end()

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def left_running(self) -> list[str]:
        """Descendants seen at some point that still run (the same pid and start time)."""
        left = []
        for pid, started in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(f'{pid} {" ".join(p.cmdline())[:120]}')
            except psutil.NoSuchProcess:
                pass
        return left


def _running(processes, title: str) -> list[psutil.Process]:
    """The processes whose name (``raylet``) or Ray process title (``ray::ImplicitFunc.train``,
    a Tune trial's worker) starts with ``title``."""
    found = []
    for p in processes:
        try:
            if p.name().startswith(title) or ' '.join(p.cmdline()).startswith(title):
                found.append(p)
        except psutil.Error:
            pass
    return found


def _trial_in_progress(out: Path) -> Path | None:
    """A trial directory whose compression is done and whose trial is not: mid-trial."""
    for trial_dir in sorted((out / 'trials').glob('t*')):
        if (trial_dir / 'stages' / 'compress.json').exists() and not (trial_dir / 'trial.json').exists():
            return trial_dir
    return None


def _sweep(config, out, *options, env=None) -> Watched:
    return Watched([*CLI, 'sweep', str(config), '--out', str(out), *options], env=env)


def test_a_ray_worker_killed_mid_trial_is_retried_once(tmp_path, tiny_model):
    """SIGKILL to the Ray worker running a trial, once its compression is done: Ray Tune
    runs the trial again (once), the pipeline in its directory goes on from the last
    finished stage, the sweep finishes, and the trial's record says it was retried and why."""
    config = write_config(tmp_path, tiny_model)
    out = tmp_path / 'out'
    sweep = _sweep(config, out, '--max-concurrent', '1')
    trial_dir = sweep.wait_for(lambda: _trial_in_progress(out), 'trial half done')
    compressed = (trial_dir / 'stages' / 'compress.json').stat().st_mtime_ns
    workers = sweep.wait_for(lambda: _running(sweep.descendants(), 'ray::ImplicitFunc'), "the trial's Ray worker")
    for worker in workers:  # one, or also the previous trial's worker on its way out
        worker.kill()
    stdout, stderr = sweep.finish()
    assert sweep.proc.returncode == 0, stderr[-4000:]
    trials = {t['trial_id']: t for t in read_jsonl(out / 'trials.jsonl')}
    assert len(trials) == 2 and all(t['status'] == 'ok' and t['metrics']['csim_exact'] for t in trials.values())
    killed = trials.pop(trial_dir.name)
    (other,) = trials.values()
    assert killed['retries'] == 1 and other['retries'] == 0, (killed, other)
    assert killed['retry_reasons'][0].startswith('its worker process has died'), killed['retry_reasons']
    assert (trial_dir / 'stages' / 'compress.json').stat().st_mtime_ns == compressed  # not compressed again
    assert f'trial{trial_dir.name}lostitsRayworker' in ''.join(stderr.split())
    assert not sweep.left_running()


def test_a_sweep_whose_ray_node_dies_restarts_ray_and_finishes(tmp_path, tiny_model):
    """SIGKILL to the raylet of the sweep's own local Ray instance once a trial has
    finished and the next is half done: Ray reports "Owner's node has crashed" and Tune
    Ray ends the process driving it. The sweep starts a new Ray session, runs the trials
    not finished and ends with exit 0; the finished trial is kept as it was and
    sweep.json records the restart. (A third trial waits: a sweep whose last trial
    finishes on the dying node needs no new Ray.)"""
    config = write_config(tmp_path, tiny_model, sweep=dict(SWEEP, space={'compress.sparsity': [0.25, 0.5, 0.75]}))
    out = tmp_path / 'out'
    sweep = _sweep(config, out, '--max-concurrent', '1')
    trials_file = out / 'trials.jsonl'
    sweep.wait_for(lambda: trials_file.exists() and trials_file.read_text().strip(), 'finished trial')
    (first,) = read_jsonl(trials_file)
    sweep.wait_for(lambda: _trial_in_progress(out), 'second trial half done')
    (raylet,) = sweep.wait_for(lambda: _running(sweep.descendants(), 'raylet'), 'raylet')
    raylet.kill()
    stdout, stderr = sweep.finish()
    assert sweep.proc.returncode == 0, stderr[-4000:]
    trials = read_jsonl(trials_file)
    assert trials[0] == first  # kept, never recomputed
    last = {t['trial_id']: t for t in trials}
    assert len(last) == 3 and all(t['status'] == 'ok' for t in last.values()), trials
    session = json.loads((out / 'sweep.json').read_text())['sessions'][-1]
    (restart,) = session['ray_restarts']
    assert 'Ray node was lost' in restart['reason'] or 'died' in restart['reason'], restart
    assert restart['trials_finished'] in (1, 2)  # the half-done trial may still have reported in time
    assert session['ray_lost'] is None and session['stopped_early'] is False
    assert 'restartingRay' in ''.join(stderr.split())  # rich folds long lines
    assert 'Ray lost its node 1 time(s)' in stdout
    assert not sweep.left_running()


def test_a_worker_node_lost_mid_trial_is_retried_on_another(tmp_path, tiny_model):
    """A two-node cluster on this machine (ray.cluster_utils): the worker node is killed
    (raylet and all, no grace) while it runs a trial; Ray Tune runs that trial again on
    the head node, the sweep finishes, and the record says the trial was retried."""
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={'num_cpus': 1})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        raylet = psutil.Process(worker.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
        config = write_config(tmp_path, tiny_model)
        out = tmp_path / 'out'
        sweep = _sweep(config, out, '--address', cluster.address)

        def trial_on_the_worker_node():
            return _trial_in_progress(out) and _running(raylet.children(recursive=True), 'ray::ImplicitFunc')

        sweep.wait_for(trial_on_the_worker_node, 'a trial half done on the worker node')
        cluster.remove_node(worker, allow_graceful=False)
        stdout, stderr = sweep.finish()
        assert sweep.proc.returncode == 0, stderr[-4000:]
        trials = {t['trial_id']: t for t in read_jsonl(out / 'trials.jsonl')}
        assert len(trials) == 2 and all(t['status'] == 'ok' for t in trials.values())
        retried = [t for t in trials.values() if t['retries'] == 1]
        assert len(retried) == 1, trials
        assert retried[0]['node_id'] == cluster.head_node.node_id  # ran again on the node left
    finally:
        cluster.shutdown()


# --- the README's cluster recipe after a local sweep ------------------------------------


def _recipe() -> list[str]:
    text = README.read_text()
    block = text.split('<!-- cluster-recipe:start -->')[1].split('<!-- cluster-recipe:end -->')[0]
    return [line.split('#')[0].strip() for line in block.strip().strip('`').strip().splitlines()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_the_readme_cluster_recipe_works_after_a_local_sweep(tmp_path, tiny_model):
    """In a home directory of its own: a local sweep (Ray 2.60 writes ~/.ray/auth_token),
    then the README's recipe line by line on this machine (HEAD = 127.0.0.1): a head node,
    a second node, and a sweep through --address whose trials run on both nodes. Without
    the recipe's RAY_AUTH_MODE=token the second node is refused (InvalidAuthToken).
    `ray start` runs with --block and a temporary directory of its own, so the test ends
    exactly the Ray processes it started (`ray stop` would end every Ray on the machine)."""
    home = tmp_path / 'home'
    home.mkdir()
    env = {**os.environ, 'HOME': str(home), 'RAY_USAGE_STATS_ENABLED': '0'}
    env.pop('RAY_AUTH_MODE', None)  # as a new shell would have it
    env.pop('RAY_ADDRESS', None)
    local = subprocess.run(
        [*CLI, 'sweep', str(write_config(tmp_path, tiny_model, sweep=dict(SWEEP, space={'compress.sparsity': [0.5]}))),
         '--out', str(tmp_path / 'local')],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    assert (home / '.ray' / 'auth_token').is_file()  # what breaks a recipe without the export

    lines = _recipe()
    kinds = [re.sub(r'\s.*', '', line.replace('ray start --head', 'head').replace('ray start', 'node'))
             for line in lines]  # fmt: skip
    assert kinds == ['export', 'ray', 'head', 'node', 'lpsubnet', 'ray'], lines
    assert lines[0] == 'export RAY_AUTH_MODE=token' and lines[-1] == 'ray stop'
    env['RAY_AUTH_MODE'] = 'token'
    ray = str(Path(sys.executable).parent / 'ray')
    generate = subprocess.run([ray, *lines[1].split()[1:3]], capture_output=True, text=True, env=env, check=False)
    assert generate.returncode == 0, generate.stderr
    port = _free_port()
    started: list[Watched] = []
    temps: list[str] = []
    try:
        for line, name in ((lines[2], 'head'), (lines[3], 'node')):
            words = line.replace('HEAD', '127.0.0.1').replace('6379', str(port)).split()
            temp = tempfile.mkdtemp(prefix=f'lpst{name[0]}')  # Ray's socket paths are limited to ~107 bytes
            temps.append(temp)
            words += ['--num-cpus', '1', '--temp-dir', temp, '--block']
            if name == 'head':
                words += ['--include-dashboard=false', '--disable-usage-stats']
            node = Watched([ray, *words[1:]], env=env)
            started.append(node)
            node.wait_for(lambda n=node: len(_running(n.descendants(), 'raylet')) == 1, f'{name} raylet')
        config = write_config(tmp_path, tiny_model)
        words = lines[4].replace('HEAD', '127.0.0.1').replace('6379', str(port)).split()
        sweep = subprocess.run(
            [*CLI, *words[1:2], str(config), '--out', str(tmp_path / 'cluster'), *words[5:]],
            capture_output=True, text=True, env=env, timeout=900, check=False,
        )  # fmt: skip
        assert sweep.returncode == 0, sweep.stderr[-4000:]
        trials = read_jsonl(tmp_path / 'cluster' / 'trials.jsonl')
        assert len(trials) == 2 and all(t['status'] == 'ok' for t in trials)
        assert len({t['node_id'] for t in trials}) == 2  # one trial on each node: the second node joined
    finally:
        for node in reversed(started):  # what `ray stop` does, for these two nodes only
            node.end()
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)
    for node in started:
        assert not node.left_running()
