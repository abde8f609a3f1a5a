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
    simulation's record, the RTL cost estimate and, in a sweep with ``sweep.synth``, the
    open-synthesis result (Yosys's mapping, nextpnr's placement with ``synth.place``)."""

    manifest: dict
    csim: dict
    estimate: dict
    synth: dict | None = None

    @classmethod
    def read(cls, trial_dir: Path) -> TrialOutputs:
        def load(*parts):
            return json.loads(trial_dir.joinpath(*parts).read_text())

        synth = trial_dir / 'synth' / 'synth.json'
        return cls(
            load('compress', 'manifest.json'),
            load('csim', 'csim.json'),
            load('estimate', 'estimate.json'),
            json.loads(synth.read_text()) if synth.exists() else None,
        )

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
    # What a trial must have run for it: None (every trial), 'synth' (sweep.synth: Yosys's
    # mapping) or 'place' (also synth.place: nextpnr). Its read gives None on other trials.
    needs: str | None = None
    # The objective that measures the same after synthesis: in a sweep that synthesizes its
    # trials this one's budget option bounds that one (--max-lut: the LUTs Yosys mapped).
    synthesized: str | None = None

    @property
    def worst(self) -> float:
        """What a failed trial reports to the searcher for it."""
        return 0.0 if self.direction == 'max' else 1e18


def _synthesized(key: str) -> Callable[[TrialOutputs], int | None]:
    """A count of Yosys's mapping (``resources[key]``), None for a trial not synthesized."""
    return lambda o: None if o.synth is None else int(o.synth['resources'][key])


def _fmax(o: TrialOutputs) -> float | None:
    """nextpnr's Fmax; 0 when it timed no clocked path (the worst value, never a budget answer)."""
    placed = None if o.synth is None else o.synth['resources'].get('nextpnr')
    return None if placed is None else float(placed['fmax_mhz'] or 0.0)


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
            synthesized='lut_synth',
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
        Objective(
            'lut_synth',
            'min',
            'LUTs (Yosys technology mapping)',
            _synthesized('LUT'),
            unit=' LUT (Yosys)',
            integer=True,
            plot='accuracy_vs_lut_synth',
            needs='synth',
        ),
        Objective('ff_synth', 'min', 'FFs (Yosys technology mapping)', _synthesized('FF'), needs='synth'),
        Objective(
            'fmax_mhz',
            'max',
            'Fmax (nextpnr on ECP5, MHz)',
            _fmax,
            '--min-fmax',
            ' MHz (nextpnr)',
            needs='place',
        ),
    )
}


def measured(synth: bool, place: bool) -> set[str]:
    """The objectives a sweep's trials report: every one without ``needs``, the synthesized
    ones when the trials are mapped by Yosys, Fmax when they are also placed."""
    have = {None, *(['synth'] if synth else []), *(['place'] if synth and place else [])}
    return {name for name, o in OBJECTIVES.items() if o.needs in have}


def requirement(objective: Objective) -> str:
    """What a sweep configuration needs for ``objective`` to be measured, for messages."""
    return {
        'synth': "sweep.synth: yosys (each trial's RTL mapped by Yosys)",
        'place': 'sweep.synth: yosys and synth.place: true (each trial placed and routed by nextpnr)',
    }[objective.needs]


def directions() -> dict[str, str]:
    """Objective name -> 'max' or 'min'."""
    return {name: o.direction for name, o in OBJECTIVES.items()}


def budget_param(objective: Objective) -> str:
    """The keyword the budget option arrives as (``--max-lut`` -> ``max_lut``)."""
    return objective.budget.removeprefix('--').replace('-', '_')
