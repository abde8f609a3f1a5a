"""What a sweep shows and records while it runs: the live progress line and Ray Tune's
callback that appends each finished trial's record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ray.tune import Callback

from ..sweep_space import trial_id
from .records import append_trial
from .trial import TrialPlan, trial_params


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
                f' | best trial {100 * m["accuracy"]:.2f} % val ({100 * m["test_accuracy"]:.2f} % test), '
                f'{m["footprint_bits"] / 1e3:.1f} kbit, ~{m["lut_estimate"]:,} LUT'
            )
        return (
            f'trials: {self.done} done, {len(self.running)} running, {self.failed} failed, '
            f'{max(0, self.total - self.done - self.failed - len(self.running))} waiting{best}'
        )


def live_display(console, progress: Progress):
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
DRIVER_STATE: dict[int, dict] = {}


def make_callback(out: Path, progress: Progress, plan: TrialPlan, console) -> SweepCallback:
    import ray

    key = id(progress)
    DRIVER_STATE[key] = {
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


class SweepCallback(Callback):
    """Writes each finished trial to trials.jsonl as it finishes and keeps the display current.

    Defined at module level and holding only plain data, so that Tune can pickle it; the
    live objects are in ``DRIVER_STATE``."""

    def __init__(self, out: Path, plan: TrialPlan, key: int):
        self.out, self.plan, self.key = out, plan, key
        self.recorded: set[str] = set()

    @property
    def state(self) -> dict:
        return DRIVER_STATE[self.key]

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
            # The unpruned reference is a yardstick, not an answer: the live best is a searched trial's.
            searched = record.get('role') != 'reference'
            if searched and (
                progress.best is None or record['metrics']['accuracy'] > progress.best['metrics']['accuracy']
            ):
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
            params = trial_params(trial.config, self.plan)
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
        params = trial_params(trial.config, plan)
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
                'role': 'reference' if params == plan.reference else 'trial',
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


def say(console, message: str) -> None:
    if console is not None:
        console.print(message)
