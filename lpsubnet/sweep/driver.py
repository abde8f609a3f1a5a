"""The driver: Ray started or joined, the pending trials run on Ray Tune (grid and random
points, or Optuna) in a child process per Ray session, restarted when its node is lost."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from ray.tune.stopper import Stopper

from hls_backend.core.files import write_text_atomic
from hls_backend.errors import BadInputError

from ..objectives import OBJECTIVES
from ..sweep_space import SweepConfig
from .display import DRIVER_STATE, Progress, live_display, make_callback, say
from .records import FINAL, prepare_sweep_dir, read_trials, record_session, remaining
from .trial import TrialPlan, trial_params, trial_resources, tune_trainable, vendor_tool

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
    from ..pipeline import run_pipeline
    from ..stages import STAGES, preflight

    out = Path(out).absolute()
    if address:  # before anything is written or trained
        _check_address(address)
    started, load = time.time(), os.getloadavg()[0]
    prepare_sweep_dir(out, config, force, resume)
    records_before = len(read_trials(out))
    if Path(config.source).is_file():  # the sweep configuration as given, beside its results
        shutil.copyfile(config.source, out / 'config.yaml')
    points, _, optuna_left = remaining(config, out)
    outcome = {'stopped': False, 'restarts': [], 'lost': None}
    if points or optuna_left:
        base_dir = out / 'base'
        say(console, '[bold]float baseline[/bold] (trained once, shared by every trial) ...')
        base = run_pipeline(
            config.run_config,
            base_dir,
            STAGES[:2],
            resume=(base_dir / 'stages').is_dir(),
        )
        # A model every trial would fail on after its training is refused now.
        for note in preflight(base):
            say(console, f'note: {note}')
        outcome = _tune(config, out, address, max_concurrent, console)
    trials = read_trials(out)
    from ..sweep_report import pareto_front, write_sweep_report

    front = pareto_front(trials, config.sweep.objectives)
    write_text_atomic(
        out / 'pareto.json',
        json.dumps(
            {'objectives': {o: OBJECTIVES[o].direction for o in config.sweep.objectives}, 'trials': front}, indent=2
        )
        + '\n',
    )
    if points or optuna_left:
        record_session(out, started, load, len(trials) - records_before, address, outcome)
    write_sweep_report(out, config, trials, front, constraints)
    return {'trials': trials, 'pareto': front, **outcome}


class ClusterLost(Exception):
    """The Ray node this process drives Tune from died (or the cluster has no CPU left)."""


# The files through which a sweep hands one Ray session to lpsubnet.sweep.session.
DRIVER_REQUEST = 'driver_request.pkl'


DRIVER_OUTCOME = 'driver_outcome.json'


def _tune(config, out, address, max_concurrent, console) -> dict:
    """Run the pending trials on Ray Tune, one Ray session at a time, each in a process of
    its own (lpsubnet.sweep.session). When the node a driver uses dies, Ray ends that
    process ("The connection to the plasma store is failed. Terminate the process.", after
    "Owner's node has crashed"), or Tune waits forever (NodeWatch stops it): either way this
    process, which holds no Ray state, starts a new session for the trials not finished, at
    most MAX_RAY_RESTARTS times. Returns {'stopped': stopped before the end (Ctrl-C),
    'restarts': [what was lost, when], 'lost': why it gave up, or None}."""
    restarts: list[dict] = []
    while True:
        points, _, optuna_left = remaining(config, out)
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
        say(
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
    child = subprocess.Popen([sys.executable, '-m', 'lpsubnet.sweep.session', str(out)], start_new_session=True)
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
        points, reference, optuna_left = remaining(config, out)
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
    plan = TrialPlan(
        sweep_dir=str(out),
        base=config.base,
        rtl=sweep.rtl,
        estimate_samples=sweep.estimate_samples,
        second_check=sweep.second_check,
        vendor=sweep.vendor,
        synth=sweep.synth is not None,
        objectives=tuple(sweep.objectives),
        reference=reference,
        points=tuple(points),
        keys=tuple(d.key for d in config.dimensions),
        normalise={d.key: d.normalise for d in config.dimensions},
    )
    total = len(points) + optuna_left
    progress = Progress(total=total)
    known = read_trials(out)
    ok = [r for r in known if r['status'] == 'ok']
    if ok:
        progress.best = max(ok, key=lambda r: r['metrics']['accuracy'])
    callback = make_callback(out, progress, plan, console)
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
    display = live_display(console, progress)
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


def _resources(config: SweepConfig, plan: TrialPlan, console):
    """Ray resources per trial: one CPU, plus the vendor tool's resource where the cluster
    has it (a function of the trial's parameters: ``hls.backend`` may be an axis)."""
    if not config.sweep.vendor:
        return {'cpu': 1}
    import ray

    available = ray.cluster_resources()
    tools = sorted({vendor_tool(config.config_for(p)) for p in plan.points} or {vendor_tool(config.run_config)})
    for tool in tools:
        if available.get(tool, 0) < 1:
            say(
                console,
                f"sweep.vendor: no Ray node offers the resource '{tool}' ({tool} on PATH locally, or `ray start "
                f'--resources \'{{"{tool}": 1}}\'` on a node that has it): those trials record the command to run',
            )

    def resources(tune_config: dict) -> dict:
        return trial_resources(vendor_tool(config.config_for(trial_params(tune_config, plan))), available)

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
    directions = ['maximize' if OBJECTIVES[o].direction == 'max' else 'minimize' for o in objectives]
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
        mode=[OBJECTIVES[o].direction for o in objectives]
        if len(objectives) > 1
        else OBJECTIVES[objectives[0]].direction,
        sampler=sampler,  # seeded itself: OptunaSearch ignores seed= beside a sampler
        storage=storage,
        study_name='lpsubnet',
    )


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
        state = DRIVER_STATE[self.key]
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
