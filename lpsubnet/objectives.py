"""The metrics a sweep can optimise and budget, each declared once.

An :class:`Objective` says where its value comes from in a finished trial's stage
outputs, whether more or less is better, how it is shown, and the budget option of
``lpsubnet sweep`` that bounds it. The sweep configuration's choices (``objectives:``),
Optuna's directions, a failed trial's worst values, the Pareto front, the budget options
and the report's columns and plots are all read from :data:`OBJECTIVES`: a new objective
is one entry here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrialOutputs:
    """What a finished trial's stages wrote, read once: the compress manifest, the C
    simulation's record and the RTL cost estimate."""

    manifest: dict
    csim: dict
    estimate: dict

    @classmethod
    def read(cls, trial_dir: Path) -> TrialOutputs:
        def load(*parts):
            return json.loads(trial_dir.joinpath(*parts).read_text())

        return cls(load('compress', 'manifest.json'), load('csim', 'csim.json'), load('estimate', 'estimate.json'))

    @property
    def quantized(self) -> dict:
        """The compressed model's figures (footprint, BOPs, parameters)."""
        return self.manifest['metrics']['after']


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # 'max' or 'min': which is better
    label: str  # what it is, for axes and messages
    read: Callable[[TrialOutputs], float]
    budget: str | None = None  # the lpsubnet sweep option that bounds it ('--max-lut'), if any
    unit: str = ''  # what a budget's number counts, e.g. ' kbit'
    scale: float = 1.0  # a budget's number times this is the metric's value (kbit -> bits)
    integer: bool = False  # a budget is a whole number
    budget_max: float | None = None  # the largest budget that makes sense (accuracy: 1)
    plot: str | None = None  # the sweep report's plot of test accuracy against it, by file name

    @property
    def worst(self) -> float:
        """What a failed trial reports to the searcher for it."""
        return 0.0 if self.direction == 'max' else 1e18


def _validation_accuracy(o: TrialOutputs) -> float:
    metrics = o.manifest['metrics']
    return float(metrics['quantized'][metrics['metric']])


# In the order the budget options are listed and a budget query names them.
OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective(
            'lut_estimate',
            'min',
            "LUT estimate (da4ml's cost model)",
            lambda o: int(o.estimate['lut_estimate']),
            '--max-lut',
            ' LUT (estimate)',
            integer=True,
            plot='accuracy_vs_lut',
        ),
        Objective(
            'footprint_bits',
            'min',
            'memory footprint (kbit)',
            lambda o: int(o.quantized['footprint_bits']),
            '--max-footprint',
            ' kbit',
            1e3,
            plot='accuracy_vs_footprint',
        ),
        Objective(
            'latency_cycles',
            'min',
            'latency estimate (pipeline depth, cycles)',
            lambda o: int(o.estimate['latency_cycles']),
            '--max-latency',
            ' cycles (estimate)',
            integer=True,
        ),
        # The validation split: what the search optimises; the test split is only reported.
        Objective(
            'accuracy',
            'max',
            'validation accuracy (a fraction, e.g. 0.9)',
            _validation_accuracy,
            '--min-accuracy',
            ' (validation)',
            budget_max=1.0,
        ),
        Objective('ff_estimate', 'min', "FF estimate (da4ml's cost model)", lambda o: int(o.estimate['ff_estimate'])),
        Objective('bops', 'min', 'bit operations (BOPs)', lambda o: int(o.quantized['bops'])),
    )
}


def directions() -> dict[str, str]:
    """Objective name -> 'max' or 'min'."""
    return {name: o.direction for name, o in OBJECTIVES.items()}


def budget_param(objective: Objective) -> str:
    """The keyword the budget option arrives as (``--max-lut`` -> ``max_lut``)."""
    return objective.budget.removeprefix('--').replace('-', '_')
