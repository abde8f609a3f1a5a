"""``lpsubnet sweep``: many compressions of one float baseline, searched with Ray Tune.

Layout of a sweep directory::

    sweep.json            what makes it a sweep: the base configuration's hash, the space
    config.yaml           the sweep configuration as given
    base/                 a run directory with the shared stages (data, float baseline)
    trials/<trial_id>/    one run directory per trial (compress, hls, csim, estimate[, rtl])
    trials.jsonl          one line per finished trial (ok, not_exact or error), appended as they finish
    pareto.json           the non-dominated trials over the objectives
    report.md, report.html
    ray/                  Ray Tune's experiment state

Each trial is one Ray Tune trial with one CPU (TensorFlow with one thread, imported in
the worker). Trials share the baseline through the file system: a cluster given with
``--address`` must see the sweep directory at the same path on every node (here: one
machine). A trial is keyed by its parameters: ``--resume`` skips every trial already
finished (``ok`` or ``not_exact``) and tries the failed ones again.

A trial's status: ``ok`` (bit-exact); ``not_exact`` (its C simulation, a second check
or its RTL differs from the QKeras model: a failure, with the mismatch counts, never on
the front nor a budget answer; the sweep exits 3); ``error`` (it raised, or its Ray
worker was lost twice). A worker lost mid-trial is retried once by Ray Tune
(FailureConfig), and the trial's record says so (``retries``, ``retry_reasons``).

Each Ray session runs in a child process (lpsubnet.sweep_driver), the sweep's own process
holding no Ray state: when the node the driver uses dies (its raylet killed, or declared
dead by the GCS on a busy machine: "Owner's node has crashed"), Ray terminates the driver
or Tune waits for resources forever (NodeWatch stops it), and the sweep starts a new
session (a new local Ray, or joins --address again) for the trials not finished, at most
MAX_RAY_RESTARTS times; sweep.json records each restart.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ray.tune import Callback
from ray.tune.stopper import Stopper

from hls_backend.core.files import write_text_atomic
from hls_backend.errors import BadInputError

from .sweep_space import OBJECTIVES, SweepConfig, grid_points, random_points, reference_point, trial_id
from .verdict import design_mismatches, inexact_paths

SWEEP_MARKER = 'sweep.json'
TRIALS_FILE = 'trials.jsonl'
# Objective values a failed trial reports to the searcher: the worst possible.
WORST = {'max': 0.0, 'min': 1e18}
# Statuses that end a trial for good: the same parameters give the same design (seeded), so
# a not-exact trial is not rerun by --resume (start over with --force after a fix).
FINAL = ('ok', 'not_exact')
# Ray instances a sweep invocation may restart after losing its node.
MAX_RAY_RESTARTS = 3


# Ray 2.60: a local ray.init() (a local sweep) turns token authentication on and writes
# ~/.ray/auth_token; `ray start --head` then turns it on too when that file exists, but
# `ray start --address` and ray.init(address=...) only with RAY_AUTH_MODE=token, so without
# it they fail with InvalidAuthToken (ray/_private/authentication/authentication_token_setup.py).
AUTH_HINT = (
    'export RAY_AUTH_MODE=token before `ray start` on every node and before lpsubnet (the token is read '
    'from ~/.ray/auth_token, the same file on every node; see the README)'
)


class ClusterError(BadInputError):
    """The Ray cluster named by --address cannot be reached (exit code 6)."""

    exit_code = 6


# --- the sweep directory ---------------------------------------------------------------


def prepare_sweep_dir(out: Path, config: SweepConfig, force: bool, resume: bool) -> None:
    from .pipeline import prepare_output_dir

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


# --- one trial (runs in a Ray worker) ------------------------------------------------


def _one_tensorflow_thread() -> None:
    # The worker gets one CPU from Ray; TensorFlow would start a thread per core. In a
    # process that has TensorFlow already (a direct call) its settings stay as they are.
    if 'tensorflow' in sys.modules:
        return
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    os.environ['TF_NUM_INTRAOP_THREADS'] = '1'
    os.environ['TF_NUM_INTEROP_THREADS'] = '1'
    os.environ['OMP_NUM_THREADS'] = '1'
    from .quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this worker: the environment above did it
        pass


def _link_shared_stages(trial_dir: Path, base_dir: Path) -> None:
    """The trial's run directory reuses the base's data and baseline stages (links and
    their records), so run_pipeline finds them cached and trains nothing."""
    (trial_dir / 'stages').mkdir(parents=True, exist_ok=True)
    for name in ('data', 'baseline'):
        link = trial_dir / name
        if not link.exists():
            link.symlink_to(os.path.relpath(base_dir / name, trial_dir))
        shutil.copyfile(base_dir / 'stages' / f'{name}.json', trial_dir / 'stages' / f'{name}.json')


def trial_stages(rtl: bool, vendor: bool = False):
    from .pipeline import Stage
    from .stages import STAGES, TOOLS, stage_estimate

    by_name = {s.name: s for s in STAGES}
    stages = [by_name[n] for n in ('data', 'baseline', 'compress', 'hls', 'csim')]
    stages.append(
        Stage(
            'estimate',
            'estimate: da4ml LUT/FF and pipeline depth (no build)',
            ('rtl.hdl', 'hls.clock_period'),
            ('compress',),
            stage_estimate,
            TOOLS['estimate'],
        )
    )
    if rtl:
        stages.append(by_name['rtl'])
    if vendor:
        stages.append(by_name['vendor'])
    return stages


def vendor_tool(config) -> str:
    """The vendor executable a trial's run configuration calls (vivado_hls or vitis-run):
    also the name of the Ray resource that marks the nodes that have it."""
    from hls_backend.hls.vendor import BACKENDS

    return BACKENDS[config.hls.backend]


def trial_resources(tool: str | None, available: dict) -> dict:
    """One CPU, and one unit of the tool's resource when some node of the cluster offers
    it (``ray start --resources '{"vitis-run": 1}'``): such trials are scheduled only there.
    Without it the trial runs anywhere and its vendor stage records the command to run."""
    if tool and available.get(tool, 0) >= 1:
        return {'cpu': 1, tool: 1}
    return {'cpu': 1}


def trial_metrics(trial_dir: Path) -> dict:
    """The metrics of a finished trial, read from its stage outputs."""
    manifest = json.loads((trial_dir / 'compress' / 'manifest.json').read_text())
    csim = json.loads((trial_dir / 'csim' / 'csim.json').read_text())
    estimate = json.loads((trial_dir / 'estimate' / 'estimate.json').read_text())
    m = manifest['metrics']
    key = m['metric']
    metrics = {
        'accuracy': float(m['quantized'][key]),  # validation split: what the search optimises
        'test_accuracy': float(csim['accuracy']),  # the C-simulated core on the test split
        'footprint_bits': int(m['after']['footprint_bits']),
        'bops': int(m['after']['bops']),
        'parameters': int(m['after']['parameters']),
        'lut_estimate': estimate['lut_estimate'],
        'ff_estimate': estimate['ff_estimate'],
        'latency_cycles': estimate['latency_cycles'],
        'estimate_source': estimate['source'],
        'csim_exact': not inexact_paths(csim, 'C simulation'),
        'csim_samples': int(csim['samples']),
        'csim_exact_matches': int(csim['exact_matches']),
        'csim_max_abs_diff': float(csim['max_abs_diff']),
    }
    vendor_file = trial_dir / 'vendor' / 'vendor.json'
    if vendor_file.exists():
        vendor = json.loads(vendor_file.read_text())
        metrics.update(vendor_status=vendor['status'], vendor_message=vendor['message'])
        if vendor['status'] == 'ran':  # the vendor's own reports: synthesis, not an estimate
            result = vendor['result']
            metrics.update(synth_resources=result['resources'], synth_latency_cycles=result['latency_cycles'])
    rtl_file = trial_dir / 'rtl' / 'rtl.json'
    if rtl_file.exists():
        rtl = json.loads(rtl_file.read_text())
        metrics.update(
            rtl_exact=not inexact_paths(rtl, 'RTL simulation'),
            rtl_latency_cycles=rtl['latency_cycles'],
            rtl_samples=int(rtl['samples']),
            rtl_exact_matches=int(rtl['exact_matches']),
        )
    return metrics


def run_trial(
    sweep_dir: str,
    base: dict,
    params: dict,
    rtl: bool = False,
    estimate_samples: int = 20,
    second_check: bool = False,
    vendor: bool = False,
) -> dict:
    """Compress, write the HLS project, C-simulate it, estimate its RTL cost: one record.
    Never raises for a problem of the trial itself: it is the record's ``error``; a design
    that is not bit-exact is status ``not_exact``, its ``error`` the mismatch counts."""
    from .sweep_space import apply_params

    start = time.perf_counter()
    out = Path(sweep_dir)
    tid = trial_id(params)
    record = {'trial_id': tid, 'params': params, 'run_dir': str(out / 'trials' / tid)}
    import ray

    # Outside Ray (a direct call) there is nothing to ask: some of these calls would
    # start a Ray instance in the caller's process.
    if ray.is_initialized():
        context = ray.get_runtime_context()
        record['node_id'] = context.get_node_id()
        record['ray_resources'] = context.get_assigned_resources()
    else:
        record['node_id'] = None
    try:
        _one_tensorflow_thread()
        from .config import parse_config
        from .pipeline import run_pipeline

        config = parse_config(apply_params(base, params))
        trial_dir = out / 'trials' / tid
        _link_shared_stages(trial_dir, out / 'base')
        ctx = run_pipeline(config, trial_dir, _trial_pipeline(rtl, estimate_samples, second_check, vendor), resume=True)
        mismatches = design_mismatches(ctx.records)
        del ctx
        record['metrics'] = trial_metrics(trial_dir)
        record['status'] = 'not_exact' if mismatches else 'ok'
        if mismatches:
            record['error'] = 'NOT EXACT against the QKeras model: ' + '; '.join(mismatches)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the trial failed; the sweep goes on
        record['status'] = 'error'
        record['error'] = f'{type(exc).__name__}: {exc}'.strip().splitlines()[0][:500]
        record['traceback'] = traceback.format_exc()[-4000:]
    record['seconds'] = round(time.perf_counter() - start, 2)
    return record


def _trial_pipeline(rtl: bool, estimate_samples: int, second_check: bool, vendor: bool = False):
    stages = trial_stages(rtl, vendor)
    # The estimate stage reads how many test samples to keep, the csim stage whether to
    # add hls4ml's predict() cross-check, from the context; run_pipeline builds the
    # context, so they travel as stage wrappers, and their values into the stages' keys.
    wrapped = []
    for stage in stages:
        if stage.name == 'estimate':

            def run(ctx, out, _inner=stage.run):
                ctx.estimate_samples = estimate_samples
                return _inner(ctx, out)

            stage = dataclasses.replace(stage, run=run, settings={'estimate_samples': estimate_samples})
        elif stage.name == 'csim' and not second_check:

            def run(ctx, out, _inner=stage.run):
                ctx.second_check = False
                return _inner(ctx, out)

            stage = dataclasses.replace(stage, run=run, settings={'second_check': False})
        wrapped.append(stage)
    return wrapped


def _report_to_tune(record: dict, objectives: list[str]) -> dict:
    result = {'record': json.dumps(record, default=float), 'ok': int(record['status'] == 'ok')}
    for name in objectives:
        if record['status'] == 'ok':
            result[name] = float(record['metrics'][name])
        else:
            result[name] = WORST[OBJECTIVES[name]]
    return result


def _params(tune_config: dict, plan: dict) -> dict:
    """A trial's parameters: from the point list (grid, random) or from the searcher
    (optuna, one value per p<i>)."""
    if 'point' in tune_config:
        return plan['points'][tune_config['point']]
    return {key: plan['normalise'][key](tune_config[f'p{i}']) for i, key in enumerate(plan['keys'])}


def tune_trainable(tune_config: dict, plan: dict) -> None:
    """The Ray Tune function trainable: the trial's parameters come from the point list
    (grid, random) or from the searcher (optuna, one value per p<i>)."""
    from ray import tune

    params = _params(tune_config, plan)
    done = Path(plan['sweep_dir']) / 'trials' / trial_id(params) / 'trial.json'
    if done.exists():  # the searcher proposed a finished point again: no recompute
        record = json.loads(done.read_text())
    else:
        record = run_trial(
            plan['sweep_dir'],
            plan['base'],
            params,
            plan['rtl'],
            plan['estimate_samples'],
            plan['second_check'],
            plan['vendor'],
        )
        if record['status'] in FINAL:
            write_text_atomic(done, json.dumps(record, indent=2, default=float) + '\n')
    record['role'] = 'reference' if params == plan.get('reference') else 'trial'
    tune.report(_report_to_tune(record, plan['objectives']))


# --- the driver -----------------------------------------------------------------------


@dataclass
class Progress:
    """What the progress display shows; updated by the Tune callback."""

    total: int
    done: int = 0
    failed: int = 0
    running: set = field(default_factory=set)
    best: dict | None = None

    def line(self) -> str:
        best = ''
        if self.best:
            m = self.best['metrics']
            best = (
                f' | best {100 * m["accuracy"]:.2f} % val ({100 * m["test_accuracy"]:.2f} % test), '
                f'{m["footprint_bits"] / 1e3:.1f} kbit, ~{m["lut_estimate"]:,} LUT'
            )
        return (
            f'trials: {self.done} done, {len(self.running)} running, {self.failed} failed, '
            f'{max(0, self.total - self.done - self.failed - len(self.running))} waiting{best}'
        )


def _check_address(address: str) -> None:
    """Fail fast (exit 6) when nothing listens at host:port, before Ray's own retries."""
    if address in ('auto', 'local') or address.startswith('ray://'):
        return
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit():
        raise ClusterError(f'--address {address!r} is not host:port (e.g. 127.0.0.1:6379) or auto')
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise ClusterError(
            f'no Ray cluster reachable at --address {address} ({exc.strerror or exc}); start one with '
            f'`ray start --head --port {port}` or drop --address to run on this machine'
        ) from None


def start_ray(address: str | None, out: Path, temp: str | None = None) -> str | None:
    """ray.init on a cluster (``address``) or a local one with this machine's cores in
    ``temp`` (default: a new directory); returns the local temporary directory to remove
    afterwards (None on a cluster)."""
    os.environ['RAY_USAGE_STATS_ENABLED'] = '0'
    os.environ.setdefault('RAY_AIR_NEW_OUTPUT', '0')
    os.environ.setdefault('TUNE_DISABLE_AUTO_CALLBACK_LOGGERS', '1')
    os.environ.setdefault('RAY_DEDUP_LOGS', '0')
    import logging

    import ray

    if address:
        _check_address(address)
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
        except Exception as exc:
            hint = ''
            if os.environ.get('RAY_AUTH_MODE', '').lower() != 'token':
                hint = f'; if that cluster uses token authentication, {AUTH_HINT}'
            raise ClusterError(f'could not join the Ray cluster at --address {address}: {exc}{hint}') from None
        return None
    temp = temp or _ray_temp_dir()
    from hls_backend.hls.vendor import BACKENDS

    cpus = os.cpu_count() or 1
    ray.init(
        num_cpus=cpus,
        resources={tool: cpus for tool in BACKENDS.values() if shutil.which(tool)},  # see trial_resources
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        _temp_dir=temp,
    )
    return temp


def _ray_temp_dir() -> str:
    # Ray's sockets live in its temporary directory and their paths are limited to
    # ~107 bytes: a short directory under the system's temporary one, not inside --out.
    return tempfile.mkdtemp(prefix='lpsr')


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


def run_sweep(
    config: SweepConfig,
    out: str | Path,
    address: str | None = None,
    max_concurrent: int | None = None,
    resume: bool = False,
    force: bool = False,
    console=None,
    constraints=(),
) -> dict:
    """Run the sweep into ``out``; returns {'trials': [...], 'pareto': [...], 'stopped': bool}."""
    from .pipeline import run_pipeline
    from .stages import STAGES

    out = Path(out).absolute()
    if address:  # before anything is written or trained
        _check_address(address)
    started, load = time.time(), os.getloadavg()[0]
    prepare_sweep_dir(out, config, force, resume)
    records_before = len(read_trials(out))
    if Path(config.source).is_file():  # the sweep configuration as given, beside its results
        shutil.copyfile(config.source, out / 'config.yaml')
    points, _, optuna_left = _remaining(config, out)
    outcome = {'stopped': False, 'restarts': [], 'lost': None}
    if points or optuna_left:
        base_dir = out / 'base'
        _say(console, '[bold]float baseline[/bold] (trained once, shared by every trial) ...')
        run_pipeline(
            config.run_config,
            base_dir,
            STAGES[:2],
            resume=(base_dir / 'stages').is_dir(),
        )
        outcome = _tune(config, out, address, max_concurrent, console)
    trials = read_trials(out)
    from .sweep_report import pareto_front, write_sweep_report

    front = pareto_front(trials, config.sweep.objectives)
    write_text_atomic(
        out / 'pareto.json',
        json.dumps({'objectives': {o: OBJECTIVES[o] for o in config.sweep.objectives}, 'trials': front}, indent=2)
        + '\n',
    )
    if points or optuna_left:
        _record_session(out, started, load, len(trials) - records_before, address, outcome)
    write_sweep_report(out, config, trials, front, constraints)
    return {'trials': trials, 'pareto': front, **outcome}


def _remaining(config: SweepConfig, out: Path) -> tuple[list[dict], dict | None, int]:
    """What is left to run: the points (grid / random, the reference first), the reference
    point (None if done or off) and the number of Optuna trials."""
    trials = read_trials(out)
    points, reference = _pending(config, {r['trial_id'] for r in trials if r['status'] in FINAL})
    optuna_left = 0
    if config.sweep.search == 'optuna':
        done_searched = sum(1 for r in trials if r.get('role') != 'reference')
        optuna_left = max(0, config.sweep.trials - done_searched)
    return points, reference, optuna_left


def _record_session(out: Path, started: float, load: float, trials_run: int, address, outcome: dict) -> None:
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


class ClusterLost(Exception):
    """The Ray node this process drives Tune from died (or the cluster has no CPU left)."""


# The files through which a sweep hands one Ray session to lpsubnet.sweep_driver.
DRIVER_REQUEST = 'driver_request.pkl'
DRIVER_OUTCOME = 'driver_outcome.json'


def _tune(config, out, address, max_concurrent, console) -> dict:
    """Run the pending trials on Ray Tune, one Ray session at a time, each in a process of
    its own (lpsubnet.sweep_driver). When the node a driver uses dies, Ray ends that
    process ("The connection to the plasma store is failed. Terminate the process.", after
    "Owner's node has crashed"), or Tune waits forever (NodeWatch stops it): either way this
    process, which holds no Ray state, starts a new session for the trials not finished, at
    most MAX_RAY_RESTARTS times. Returns {'stopped': stopped before the end (Ctrl-C),
    'restarts': [what was lost, when], 'lost': why it gave up, or None}."""
    restarts: list[dict] = []
    while True:
        points, _, optuna_left = _remaining(config, out)
        if not (points or optuna_left):
            return {'stopped': False, 'restarts': restarts, 'lost': None}
        session = _drive_session(config, out, address, max_concurrent, console)
        if 'error' in session:  # a bug, not Ray: the driver's traceback is printed above
            raise RuntimeError(f'the sweep driver failed: {session["error"]}')
        if 'join_error' in session:
            if not restarts:  # the first join: nothing ran, exit 6 before any report
                raise ClusterError(session['join_error'])
            return {'stopped': True, 'restarts': restarts, 'lost': session['join_error']}
        if 'lost' not in session:
            return {'stopped': session['stopped'], 'restarts': restarts, 'lost': None}
        restarts.append(
            {
                'at_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                'reason': session['lost'],
                'trials_finished': sum(r['status'] in FINAL for r in read_trials(out)),
            }
        )
        if len(restarts) > MAX_RAY_RESTARTS:
            return {
                'stopped': True,
                'restarts': restarts,
                'lost': f'Ray lost its node {len(restarts)} times: {session["lost"]}',
            }
        _say(
            console,
            f'[yellow]{session["lost"]}: restarting Ray and running the trials not finished '
            f'(restart {len(restarts)} of at most {MAX_RAY_RESTARTS})[/yellow]',
        )


def _drive_session(config, out: Path, address, max_concurrent, console) -> dict:
    """One Ray session in a child process; its outcome ({'stopped': bool}, {'lost': why},
    {'join_error': message} or {'error': traceback}). A child that ends without one was
    ended by Ray (or killed): its node was lost. Ctrl-C or SIGTERM here is passed on as one
    SIGINT, on which Tune stops its trials and the child reports 'stopped'."""
    import signal
    import subprocess

    from ray import cloudpickle

    state = out / 'ray'
    state.mkdir(exist_ok=True)
    request, outcome = state / DRIVER_REQUEST, state / DRIVER_OUTCOME
    outcome.unlink(missing_ok=True)
    # Chosen here and removed here: a driver that Ray ends leaves its temporary directory.
    temp = None if address else _ray_temp_dir()
    with open(request, 'wb') as handle:
        cloudpickle.dump(
            {
                'config': config,
                'address': address,
                'max_concurrent': max_concurrent,
                'display': console is not None,
                'temp': temp,
            },
            handle,
        )
    # A session of its own: a Ctrl-C in the terminal reaches this process only, which
    # passes it on once (Tune takes a second SIGINT as "stop now").
    child = subprocess.Popen([sys.executable, '-m', 'lpsubnet.sweep_driver', str(out)], start_new_session=True)
    interrupted = False
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                interrupted = True
                child.send_signal(signal.SIGINT)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    if interrupted:
        return {'stopped': True}
    if outcome.is_file():
        return json.loads(outcome.read_text())
    return {'lost': f'the process driving Ray ended with exit {code} (its Ray node was lost)'}


def drive(out: Path) -> dict:
    """The child's side of _drive_session: start Ray (or join ``address``), run the pending
    trials on Tune, and say how it ended."""
    import ray
    from ray import cloudpickle

    with open(out / 'ray' / DRIVER_REQUEST, 'rb') as handle:
        request = cloudpickle.load(handle)
    config = request['config']
    console = None
    if request['display']:
        from rich.console import Console

        console = Console(stderr=True, highlight=False)
    try:
        start_ray(request['address'], out, request['temp'])
    except ClusterError as exc:
        return {'join_error': str(exc)}
    try:
        points, reference, optuna_left = _remaining(config, out)
        stopped = _tune_on_ray(config, out, points, reference, optuna_left, request['max_concurrent'], console)
        return {'stopped': stopped}
    except ClusterLost as lost:
        return {'lost': str(lost)}
    except KeyboardInterrupt:
        return {'stopped': True}
    finally:
        ray.shutdown()


def _tune_on_ray(config, out, points, reference, optuna_left, max_concurrent, console) -> bool:
    from ray import tune

    sweep = config.sweep
    plan = {
        'sweep_dir': str(out),
        'base': config.base,
        'rtl': sweep.rtl,
        'estimate_samples': sweep.estimate_samples,
        'second_check': sweep.second_check,
        'vendor': sweep.vendor,
        'objectives': list(sweep.objectives),
        'reference': reference,
        'points': points,
        'keys': [d.key for d in config.dimensions],
        'normalise': {d.key: d.normalise for d in config.dimensions},
    }
    total = len(points) + optuna_left
    progress = Progress(total=total)
    known = read_trials(out)
    ok = [r for r in known if r['status'] == 'ok']
    if ok:
        progress.best = max(ok, key=lambda r: r['metrics']['accuracy'])
    callback = _callback(out, progress, plan, console)
    trainable = tune.with_resources(tune.with_parameters(tune_trainable, plan=plan), _resources(config, plan, console))
    run_config = tune.RunConfig(
        name='tune',
        storage_path=str(out / 'ray'),
        verbose=0,
        callbacks=[callback],
        stop=NodeWatch(callback.key),
        failure_config=tune.FailureConfig(max_failures=1),  # a lost worker: one retry
    )
    stopped = False
    display = _display(console, progress)
    with display:
        callback.attach(display)
        for phase in ('points', 'optuna'):
            if phase == 'points' and points:
                tune_config = tune.TuneConfig(
                    num_samples=1,
                    max_concurrent_trials=max_concurrent,
                    reuse_actors=False,
                    trial_dirname_creator=lambda t: f'{t.trial_id}',
                )
                space = {'point': tune.grid_search(list(range(len(points))))}
                search_alg = None
            elif phase == 'optuna' and optuna_left:
                space = {f'p{i}': d.tune_domain() for i, d in enumerate(config.dimensions)}
                search_alg = _optuna_searcher(config, out, space)
                tune_config = tune.TuneConfig(
                    num_samples=optuna_left,
                    search_alg=search_alg,
                    reuse_actors=False,
                    max_concurrent_trials=max_concurrent,
                    trial_dirname_creator=lambda t: f'{t.trial_id}',
                )
            else:
                continue
            run_config.name = f'tune-{phase}'
            tuner = tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)
            finished_before = progress.done + progress.failed
            tuner.fit()
            if callback.state['lost']:
                raise ClusterLost(callback.state['lost'])
            # Ctrl-C: Tune stops and returns normally; the trials it never started are not
            # in its trial list, so count the records this phase wrote instead.
            expected = len(points) if phase == 'points' else optuna_left
            if callback.interrupted or progress.done + progress.failed - finished_before < expected:
                stopped = True
                break
    return stopped


def _resources(config: SweepConfig, plan: dict, console):
    """Ray resources per trial: one CPU, plus the vendor tool's resource where the cluster
    has it (a function of the trial's parameters: ``hls.backend`` may be an axis)."""
    if not config.sweep.vendor:
        return {'cpu': 1}
    import ray

    available = ray.cluster_resources()
    tools = sorted({vendor_tool(config.config_for(p)) for p in plan['points']} or {vendor_tool(config.run_config)})
    for tool in tools:
        if available.get(tool, 0) < 1:
            _say(
                console,
                f"sweep.vendor: no Ray node offers the resource '{tool}' ({tool} on PATH locally, or `ray start "
                f'--resources \'{{"{tool}": 1}}\'` on a node that has it): those trials record the command to run',
            )

    def resources(tune_config: dict) -> dict:
        return trial_resources(vendor_tool(config.config_for(_params(tune_config, plan))), available)

    return resources


def _optuna_searcher(config: SweepConfig, out: Path, space: dict):
    """Ray Tune's Optuna searcher over every objective (NSGA-II when there are several,
    seeded), warm-started with the finished trials of a resumed sweep. Those go into
    the study directly: OptunaSearch's own evaluated_rewards takes one value per point
    and fails on a multi-objective study."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study and trial beside the display
    objectives = list(config.sweep.objectives)
    keys = [d.key for d in config.dimensions]
    directions = ['maximize' if OBJECTIVES[o] == 'max' else 'minimize' for o in objectives]
    distributions = OptunaSearch.convert_search_space(space)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name='lpsubnet', directions=directions)
    for record in read_trials(out):
        if record['status'] != 'ok' or record.get('role') == 'reference' or set(record['params']) != set(keys):
            continue
        params = {f'p{i}': record['params'][k] for i, k in enumerate(keys)}
        try:
            trial = optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                values=[float(record['metrics'][o]) for o in objectives],
            )
        except ValueError:  # outside the space as it is now (changed since): not a guide
            continue
        study.add_trial(trial)
    if len(objectives) > 1:
        sampler = optuna.samplers.NSGAIISampler(seed=config.sweep.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=config.sweep.seed)
    return OptunaSearch(
        metric=objectives if len(objectives) > 1 else objectives[0],
        mode=[OBJECTIVES[o] for o in objectives] if len(objectives) > 1 else OBJECTIVES[objectives[0]],
        sampler=sampler,  # seeded itself: OptunaSearch ignores seed= beside a sampler
        storage=storage,
        study_name='lpsubnet',
    )


def _display(console, progress: Progress):
    from contextlib import nullcontext

    if console is None:
        return nullcontext()
    from rich.live import Live

    return _LiveLine(Live(progress.line(), console=console, refresh_per_second=2, transient=False), progress)


class _LiveLine:
    def __init__(self, live, progress):
        self.live, self.progress = live, progress

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.update()
        result = self.live.__exit__(*exc)
        self.live.console.line()  # the display's last line stays; what follows starts below it
        return result

    def update(self):
        self.live.update(self.progress.line())


# The driver's live objects (console, display, counters) stay out of the callback:
# Tune pickles its run configuration, callbacks included, and a rich display holds locks.
_DRIVER: dict[int, dict] = {}


def _callback(out: Path, progress: Progress, plan: dict, console) -> SweepCallback:
    import ray

    key = id(progress)
    _DRIVER[key] = {
        'progress': progress,
        'console': console,
        'display': None,
        'interrupted': False,
        'retries': {},  # Tune trial id -> the reasons of its failures that Tune retried
        'node_id': ray.get_runtime_context().get_node_id(),  # the node this process drives Ray from
        'lost': None,  # why NodeWatch stopped the experiment
        'checked': 0.0,
        'no_cpu_since': None,
    }
    return SweepCallback(out, plan, key)


# How long a cluster may offer no CPU at all before the sweep counts it as lost (its own
# node still alive: e.g. every worker node of a head started with --num-cpus 0 died).
NO_CPU_SECONDS = 60.0


class NodeWatch(Stopper):
    """Stops the whole Tune experiment when the Ray node this process drives it from is
    dead, or the cluster has offered no CPU for NO_CPU_SECONDS. Tune alone would wait
    forever ("Cluster resources not detected or are 0"; seen when this machine's raylet
    is killed, or declared dead by the GCS on 2 busy cores: "Owner's node has crashed").
    Checks once a second; plain data only, like SweepCallback."""

    def __init__(self, key: int):
        self.key = key

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        state = _DRIVER[self.key]
        now = time.monotonic()
        if not state['lost'] and now - state['checked'] >= 1.0:
            state['checked'] = now
            state['lost'] = _node_lost(state, now)
        return state['lost'] is not None


def _node_lost(state: dict, now: float) -> str | None:
    import ray

    try:
        nodes = ray.nodes()
    except Exception as exc:  # the GCS itself is gone
        return f'the Ray cluster stopped answering ({type(exc).__name__}: {exc})'.splitlines()[0]
    for node in nodes:
        if node['NodeID'] == state['node_id'] and not node['Alive']:
            detail = node.get('DeathReasonMessage') or 'its raylet is gone'
            return f"this machine's Ray node {node['NodeID'][:8]} died ({detail})".splitlines()[0]
    if sum(node['Resources'].get('CPU', 0) for node in nodes if node['Alive']) > 0:
        state['no_cpu_since'] = None
        return None
    state['no_cpu_since'] = state['no_cpu_since'] or now
    if now - state['no_cpu_since'] >= NO_CPU_SECONDS:
        return f'the Ray cluster has offered no CPU for {NO_CPU_SECONDS:.0f} s'
    return None


class SweepCallback(Callback):
    """Writes each finished trial to trials.jsonl as it finishes and keeps the display current.

    Defined at module level and holding only plain data, so that Tune can pickle it; the
    live objects are in ``_DRIVER``."""

    def __init__(self, out: Path, plan: dict, key: int):
        self.out, self.plan, self.key = out, plan, key
        self.recorded: set[str] = set()

    @property
    def state(self) -> dict:
        return _DRIVER[self.key]

    @property
    def interrupted(self) -> bool:
        return self.state['interrupted']

    def attach(self, display) -> None:
        self.state['display'] = display

    def _refresh(self):
        display = self.state['display']
        if display is not None and hasattr(display, 'update'):
            display.update()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.state['progress'].running.add(trial.trial_id)
        self._refresh()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if 'record' not in result or trial.trial_id in self.recorded:
            return
        progress = self.state['progress']
        record = json.loads(result['record'])
        reasons = self.state['retries'].get(trial.trial_id, [])
        record['retries'] = len(reasons)
        if reasons:
            record['retry_reasons'] = reasons
        self.recorded.add(trial.trial_id)
        append_trial(self.out, record)
        progress.running.discard(trial.trial_id)
        if record['status'] == 'ok':
            progress.done += 1
            if progress.best is None or record['metrics']['accuracy'] > progress.best['metrics']['accuracy']:
                progress.best = record
        else:
            progress.failed += 1
            what = 'NOT EXACT' if record['status'] == 'not_exact' else 'failed'
            if self.state['console'] is not None:
                self.state['console'].print(
                    f'[red]trial {record["trial_id"]} {what}[/red]: {record["error"]}', highlight=False
                )
        self._refresh()

    def on_trial_recover(self, iteration, trials, trial, **info):
        # Its worker (or that worker's node) died: Tune runs the trial again (FailureConfig),
        # and the pipeline in the trial directory goes on from its last finished stage.
        reason = _failure_reason(trial)
        self.state['retries'].setdefault(trial.trial_id, []).append(reason)
        if self.state['console'] is not None:
            params = _params(trial.config, self.plan)
            self.state['console'].print(
                f'[yellow]trial {trial_id(params)} lost its Ray worker ({reason}): running it again[/yellow]',
                highlight=False,
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.state['progress'].running.discard(trial.trial_id)
        self._refresh()

    def on_trial_error(self, iteration, trials, trial, **info):
        # The worker died twice (Ray retried once): record the trial as an error.
        progress = self.state['progress']
        progress.running.discard(trial.trial_id)
        if trial.trial_id in self.recorded:
            return
        self.recorded.add(trial.trial_id)
        plan = self.plan
        params = _params(trial.config, plan)
        reasons = self.state['retries'].get(trial.trial_id, [])
        reason = _failure_reason(trial)
        append_trial(
            self.out,
            {
                'trial_id': trial_id(params),
                'params': params,
                'run_dir': str(self.out / 'trials' / trial_id(params)),
                'status': 'error',
                'error': f'its Ray worker was lost ({reason})'
                + (f', also when Ray retried it ({"; ".join(reasons)})' if reasons else ''),
                'retries': len(reasons),
                'node_id': None,
                'seconds': None,
                'role': 'reference' if params == plan.get('reference') else 'trial',
            },
        )
        progress.failed += 1
        self._refresh()

    def on_experiment_end(self, trials, **info):
        self.state['interrupted'] = any(t.status not in ('TERMINATED', 'ERROR') for t in trials)


def _failure_reason(trial) -> str:
    """The last failure Tune wrote for ``trial`` (its error file), in one line: Ray's
    worker exit detail when there is one ("Owner's node has crashed."), else the first
    line of the error."""
    try:  # Tune writes it in the trial's local directory first, and copies it to storage later
        local = Path(trial.error_file) if trial.error_file else None
        text = local.read_text() if local and local.is_file() else trial.get_error() or ''
    except Exception:  # the error file is Tune's; its absence must not stop the sweep
        text = ''
    lines = [line.strip() for line in text.rsplit('Failure # ', 1)[-1].splitlines()[1:] if line.strip()]
    for (
        line
    ) in lines:  # "The actor is dead because its owner has died. ... Worker exit detail: Owner's node has crashed."
        if 'is dead because' in line:
            why = line.split('is dead because', 1)[1].split('.', 1)[0].strip()
            detail = (
                line.split('exit detail:', 1)[1].strip().split('. ', 1)[0].rstrip('.') if 'exit detail:' in line else ''
            )
            return f'{why}: {detail}'[:300] if detail else why[:300]
    return lines[0][:300] if lines else 'no reason recorded by Ray Tune'


def _say(console, message: str) -> None:
    if console is not None:
        console.print(message)
