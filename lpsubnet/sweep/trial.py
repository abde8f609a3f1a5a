"""One trial: a run configuration's compress, hls, csim and estimate stages (rtl, synth and
vendor when asked) in its own run directory, inside a Ray worker; never raises for a problem of
the trial itself, which becomes its record's ``error``."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hls_backend.core.files import write_text_atomic

from ..objectives import OBJECTIVES, TrialOutputs
from ..sweep_space import trial_id
from ..verdict import design_mismatches, inexact_paths
from .records import FINAL

# Objective values a failed trial reports to the searcher: the worst possible.


def _one_tensorflow_thread() -> None:
    # The worker gets one CPU from Ray; TensorFlow would start a thread per core. In a
    # process that has TensorFlow already (a direct call) its settings stay as they are.
    if 'tensorflow' in sys.modules:
        return
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    os.environ['TF_NUM_INTRAOP_THREADS'] = '1'
    os.environ['TF_NUM_INTEROP_THREADS'] = '1'
    os.environ['OMP_NUM_THREADS'] = '1'
    from ..quiet import import_tensorflow_quietly

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


def trial_stages(rtl: bool, vendor: bool = False, synth: bool = False):
    from ..pipeline import Stage
    from ..stages import RTL_READS, STAGES, TOOLS, stage_estimate

    by_name = {s.name: s for s in STAGES}
    stages = [by_name[n] for n in ('data', 'baseline', 'compress', 'hls', 'csim')]
    stages.append(
        Stage(
            'estimate',
            'estimate: da4ml LUT/FF and pipeline depth (no build)',
            RTL_READS,
            ('compress',),
            stage_estimate,
            TOOLS['estimate'],
            ('estimate_samples',),
        )
    )
    if rtl or synth:  # Yosys maps the rtl stage's project
        stages.append(by_name['rtl'])
    if synth:
        stages.append(by_name['synth'])
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
    """The metrics of a finished trial, read from its stage outputs: every objective
    (lpsubnet.objectives), the test accuracy of the C-simulated core, the checks' verdicts."""
    outputs = TrialOutputs.read(trial_dir)
    csim = outputs.csim
    # An objective the trial did not measure (lut_synth without sweep.synth) is left out.
    values = {name: objective.read(outputs) for name, objective in OBJECTIVES.items()}
    metrics = {name: value for name, value in values.items() if value is not None}
    metrics.update(
        {
            'test_accuracy': float(csim['accuracy']),  # the C-simulated core on the test split
            'parameters': int(outputs.quantized['parameters']),
            'estimate_source': outputs.estimate['source'],
            'csim_exact': not inexact_paths(csim, 'C simulation'),
            'csim_samples': int(csim['samples']),
            'csim_exact_matches': int(csim['exact_matches']),
            'csim_max_abs_diff': float(csim['max_abs_diff']),
        }
    )
    vendor_file = trial_dir / 'vendor' / 'vendor.json'
    if vendor_file.exists():
        vendor = json.loads(vendor_file.read_text())
        metrics.update(vendor_status=vendor['status'], vendor_message=vendor['message'])
        if vendor['status'] == 'ran':  # the vendor's own reports: synthesis, not an estimate
            result = vendor['result']
            metrics.update(synth_resources=result['resources'], synth_latency_cycles=result['latency_cycles'])
    if outputs.synth is not None:
        synth = outputs.synth
        placed = synth['resources'].get('nextpnr')
        metrics.update(
            synth_tool=synth['tool'],
            synth_family=synth['resources']['family'],
            synth_seconds=synth['build_seconds'],
            **({'synth_device': placed['device']} if placed else {}),
        )
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
    synth: bool = False,
) -> dict:
    """Compress, write the HLS project, C-simulate it, estimate its RTL cost (with ``synth``
    also build the RTL and map it with Yosys): one record.
    Never raises for a problem of the trial itself: it is the record's ``error``; a design
    that is not bit-exact is status ``not_exact``, its ``error`` the mismatch counts."""
    from ..sweep_space import apply_params

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
        from ..config import parse_config
        from ..pipeline import StageOptions, run_pipeline

        config = parse_config(apply_params(base, params))
        trial_dir = out / 'trials' / tid
        _link_shared_stages(trial_dir, out / 'base')
        options = StageOptions(second_check=second_check, estimate_samples=estimate_samples)
        ctx = run_pipeline(config, trial_dir, trial_stages(rtl, vendor, synth), resume=True, options=options)
        mismatches = design_mismatches(ctx.records)
        if synth and 'skipped' in ctx.summary('synth'):
            raise RuntimeError(
                f'sweep.synth is {config.synth.tool} but the synth stage did not run: {ctx.summary("synth")["skipped"]}'
            )
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


def _report_to_tune(record: dict, objectives: list[str]) -> dict:
    result = {'record': json.dumps(record, default=float), 'ok': int(record['status'] == 'ok')}
    for name in objectives:
        if record['status'] == 'ok':
            result[name] = float(record['metrics'][name])
        else:
            result[name] = OBJECTIVES[name].worst
    return result


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a Ray session needs, handed to Ray Tune's trainable (pickled)."""

    sweep_dir: str
    base: dict  # the run configuration every trial starts from
    rtl: bool  # also build and simulate the RTL
    estimate_samples: int
    second_check: bool  # hls4ml's predict() beside the C simulation
    vendor: bool  # also run the vendor steps
    synth: bool  # also build the RTL and map it with Yosys (the run config's synth: section)
    objectives: tuple[str, ...]
    reference: dict | None  # the unpruned reference point's parameters
    points: tuple[dict, ...]  # the grid or random points, by index
    keys: tuple[str, ...]  # the searcher's dimensions (optuna: p0, p1, ...)
    normalise: dict = field(default_factory=dict)  # key -> the dimension's value normaliser


def trial_params(tune_config: dict, plan: TrialPlan) -> dict:
    """A trial's parameters: from the point list (grid, random) or from the searcher
    (optuna, one value per p<i>)."""
    if 'point' in tune_config:
        return plan.points[tune_config['point']]
    return {key: plan.normalise[key](tune_config[f'p{i}']) for i, key in enumerate(plan.keys)}


def tune_trainable(tune_config: dict, plan: TrialPlan) -> None:
    """The Ray Tune function trainable: the trial's parameters come from the point list
    (grid, random) or from the searcher (optuna, one value per p<i>)."""
    from ray import tune

    params = trial_params(tune_config, plan)
    done = Path(plan.sweep_dir) / 'trials' / trial_id(params) / 'trial.json'
    if done.exists():  # the searcher proposed a finished point again: no recompute
        record = json.loads(done.read_text())
    else:
        record = run_trial(
            plan.sweep_dir,
            plan.base,
            params,
            plan.rtl,
            plan.estimate_samples,
            plan.second_check,
            plan.vendor,
            plan.synth,
        )
        if record['status'] in FINAL:
            write_text_atomic(done, json.dumps(record, indent=2, default=float) + '\n')
    record['role'] = 'reference' if params == plan.reference else 'trial'
    tune.report(_report_to_tune(record, list(plan.objectives)))
