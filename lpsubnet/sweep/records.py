"""The sweep directory and its records: what makes a directory a sweep, the trials
finished so far (``trials.jsonl``, appended as they finish) and what is left to run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hls_backend.core.files import write_text_atomic
from hls_backend.errors import BadInputError

from ..sweep_space import SweepConfig, grid_points, random_points, reference_point, trial_id

SWEEP_MARKER = 'sweep.json'


TRIALS_FILE = 'trials.jsonl'


# Statuses that end a trial for good: the same parameters give the same design (seeded), so
# a not-exact trial is not rerun by --resume (start over with --force after a fix).
FINAL = ('ok', 'not_exact')


def prepare_sweep_dir(out: Path, config: SweepConfig, force: bool, resume: bool) -> None:
    from ..pipeline import prepare_output_dir

    marker = out / SWEEP_MARKER
    prepare_output_dir(out, 'sweep', SWEEP_MARKER, force, resume, inside='trials')
    if resume:
        saved = json.loads(marker.read_text())
        if saved.get('base_key') != config.base_key():
            raise BadInputError(
                f'{out} was swept from a different run configuration (data, model, compress, hls, ... '
                'outside sweep:); its trials would not be comparable: use --force to start over or another --out'
            )
    sessions = json.loads(marker.read_text()).get('sessions', []) if marker.exists() else []
    write_text_atomic(
        marker,
        json.dumps(
            {
                'base_key': config.base_key(),
                'source': config.source,
                'sweep': config.sweep.model_dump(mode='json'),
                'sessions': sessions,
            },
            indent=2,
        )
        + '\n',
    )


def read_trials(out: Path) -> list[dict]:
    """Finished trials, the last record of each trial id winning (a rerun error trial).
    A record an older lpsubnet wrote as ``ok`` with an inexact check reads as not_exact."""
    path = out / TRIALS_FILE
    if not path.exists():
        return []
    records: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash: that trial reruns
                continue
            if record['status'] == 'ok' and not _all_exact(record['metrics']):
                record['status'] = 'not_exact'
                record['error'] = 'not bit-exact (recorded as ok by an older lpsubnet)'
            records[record['trial_id']] = record
    return list(records.values())


def _all_exact(metrics: dict) -> bool:
    return bool(metrics['csim_exact']) and metrics.get('rtl_exact', True) is not False


def append_trial(out: Path, record: dict) -> None:
    with open(out / TRIALS_FILE, 'a') as handle:
        handle.write(json.dumps(record, default=float) + '\n')
        handle.flush()
        os.fsync(handle.fileno())


def _pending(config: SweepConfig, finished: set[str]) -> tuple[list[dict], dict | None]:
    """The points still to run (grid / random) and the reference point (None if done or off)."""
    reference = reference_point(config) if config.sweep.reference else None
    if reference is not None and trial_id(reference) in finished:
        reference = None
    if config.sweep.search == 'grid':
        points = grid_points(config)
    elif config.sweep.search == 'random':
        points = random_points(config)
    else:
        points = []
    points = [p for p in points if trial_id(p) not in finished]
    if reference is not None and trial_id(reference) not in {trial_id(p) for p in points}:
        points.insert(0, reference)
    return points, reference


def remaining(config: SweepConfig, out: Path) -> tuple[list[dict], dict | None, int]:
    """What is left to run: the points (grid / random, the reference first), the reference
    point (None if done or off) and the number of Optuna trials."""
    trials = read_trials(out)
    points, reference = _pending(config, {r['trial_id'] for r in trials if r['status'] in FINAL})
    optuna_left = 0
    if config.sweep.search == 'optuna':
        done_searched = sum(1 for r in trials if r.get('role') != 'reference')
        optuna_left = max(0, config.sweep.trials - done_searched)
    return points, reference, optuna_left


def record_session(out: Path, started: float, load: float, trials_run: int, address, outcome: dict) -> None:
    """How long this invocation took and on what: the measured time the docs quote."""
    marker = out / SWEEP_MARKER
    data = json.loads(marker.read_text())
    data.setdefault('sessions', []).append(
        {
            'started_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started)),
            'wall_seconds': round(time.time() - started, 1),
            'trials_run': trials_run,
            'cpus': os.cpu_count(),
            'load_average_at_start': round(load, 2),
            'address': address or 'local',
            'stopped_early': outcome['stopped'],
            'ray_restarts': outcome['restarts'],
            'ray_lost': outcome['lost'],
        }
    )
    write_text_atomic(marker, json.dumps(data, indent=2) + '\n')
