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

Each Ray session runs in a child process (lpsubnet.sweep.session), the sweep's own process
holding no Ray state: when the node the driver uses dies (its raylet killed, or declared
dead by the GCS on a busy machine: "Owner's node has crashed"), Ray terminates the driver
or Tune waits for resources forever (NodeWatch stops it), and the sweep starts a new
session (a new local Ray, or joins --address again) for the trials not finished, at most
MAX_RAY_RESTARTS times; sweep.json records each restart.

Modules: :mod:`.records` (the directory and its records), :mod:`.trial` (one trial, in a
Ray worker), :mod:`.driver` (Ray and Tune), :mod:`.session` (one Ray session's process),
:mod:`.display` (the live line and Tune's callback). The sweep configuration is
:mod:`lpsubnet.sweep_space`, its report :mod:`lpsubnet.sweep_report`.
"""

from .driver import (
    AUTH_HINT,
    DRIVER_OUTCOME,
    DRIVER_REQUEST,
    MAX_RAY_RESTARTS,
    NO_CPU_SECONDS,
    ClusterError,
    ClusterLost,
    NodeWatch,
    drive,
    run_sweep,
    start_ray,
)
from .records import FINAL, SWEEP_MARKER, TRIALS_FILE, append_trial, prepare_sweep_dir, read_trials, remaining
from .trial import run_trial, trial_metrics, trial_resources, trial_stages, vendor_tool

__all__ = [
    'AUTH_HINT',
    'DRIVER_OUTCOME',
    'DRIVER_REQUEST',
    'FINAL',
    'MAX_RAY_RESTARTS',
    'NO_CPU_SECONDS',
    'SWEEP_MARKER',
    'TRIALS_FILE',
    'ClusterError',
    'ClusterLost',
    'NodeWatch',
    'append_trial',
    'drive',
    'prepare_sweep_dir',
    'read_trials',
    'remaining',
    'run_sweep',
    'run_trial',
    'start_ray',
    'trial_metrics',
    'trial_resources',
    'trial_stages',
    'vendor_tool',
]
