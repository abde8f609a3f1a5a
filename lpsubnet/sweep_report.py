"""What a sweep found: the Pareto front, the budget query, report.md and report.html.

Only trials with status ``ok`` (bit-exact) are candidates: a core that does not compute
what its QKeras model computes is not a result; such trials (``not_exact``) are listed
with the failed ones, their mismatch counts as the reason. ``accuracy``
(what the search optimises and constraints test) is the validation accuracy of the
quantized model; the test accuracy shown beside it is the C-simulated core's on the
test split. LUT, FF and latency are da4ml's estimates for the RTL route, not synthesis;
a sweep with ``sweep.synth`` adds Yosys's mapped counts (and nextpnr's Fmax), which its
LUT budget then bounds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from hls_backend.core.files import write_text_atomic

from .objectives import OBJECTIVES, budget_param, measured, requirement


@dataclass(frozen=True)
class Constraint:
    option: str  # the CLI option, for messages
    metric: str
    bound: str  # 'max' or 'min'
    limit: float
    unit: str = ''

    def met(self, metrics: dict) -> bool:
        value = metrics[self.metric]
        return value <= self.limit if self.bound == 'max' else value >= self.limit

    def excess(self, metrics: dict) -> float:
        """How far outside the limit, relative to the limit (0 when met)."""
        value = metrics[self.metric]
        gap = value - self.limit if self.bound == 'max' else self.limit - value
        return max(0.0, gap) / (abs(self.limit) or 1.0)

    def describe(self) -> str:
        return f'{self.option} {self.limit / OBJECTIVES[self.metric].scale:g}{self.unit}'


def constraints_from_options(*, synth: bool = False, place: bool = False, **budgets) -> list[Constraint]:
    """The budget query from ``lpsubnet sweep``'s budget options (``max_lut=...``; one per
    objective with a budget, lpsubnet.objectives); unset ones left out. In a sweep whose
    trials are synthesized (``synth``; ``place``: also placed) an option bounds the
    synthesized figure where there is one: ``--max-lut`` the LUTs Yosys mapped."""
    from .config import ConfigError

    found = []
    available = measured(synth, place)
    for objective in OBJECTIVES.values():
        value = budgets.pop(budget_param(objective), None) if objective.budget else None
        if value is None:
            continue
        if objective.name not in available:
            raise ConfigError(f'{objective.budget} bounds the {objective.label}, which needs {requirement(objective)}')
        metric = OBJECTIVES[objective.synthesized] if objective.synthesized in available else objective
        bound = 'max' if objective.direction == 'min' else 'min'
        found.append(Constraint(objective.budget, metric.name, bound, value * objective.scale, metric.unit))
    if budgets:
        raise TypeError(f'no budget option for {sorted(budgets)}')
    return found


def candidates(trials: list[dict]) -> list[dict]:
    return [t for t in trials if t['status'] == 'ok' and t['metrics']['csim_exact']]


def _dominates(a: dict, b: dict, objectives: list[str]) -> bool:
    better = False
    for name in objectives:
        x, y = a['metrics'][name], b['metrics'][name]
        if OBJECTIVES[name].direction == 'min':
            x, y = -x, -y
        if x < y:
            return False
        better |= x > y
    return better


def pareto_front(trials: list[dict], objectives: list[str]) -> list[dict]:
    """The searched, bit-exact trials no other one dominates, most accurate first."""
    pool = [t for t in candidates(trials) if t.get('role') != 'reference']
    front = [t for t in pool if not any(_dominates(o, t, objectives) for o in pool if o is not t)]
    return sorted(front, key=lambda t: (-t['metrics']['accuracy'], t['metrics']['footprint_bits']))


def budget_query(trials: list[dict], constraints: list[Constraint]) -> dict:
    """The most accurate candidate meeting every constraint; if none does, the one
    closest to meeting them (smallest summed relative excess) and what it misses."""
    pool = [t for t in candidates(trials) if t.get('role') != 'reference']
    meeting = [t for t in pool if all(c.met(t['metrics']) for c in constraints)]
    if meeting:
        best = max(meeting, key=lambda t: (t['metrics']['accuracy'], -t['metrics']['footprint_bits']))
        return {'met': True, 'trial': best, 'missed': []}
    if not pool:
        return {'met': False, 'trial': None, 'missed': []}
    closest = min(pool, key=lambda t: sum(c.excess(t['metrics']) for c in constraints))
    missed = [c for c in constraints if not c.met(closest['metrics'])]
    return {'met': False, 'trial': closest, 'missed': missed}


def _params(trial: dict) -> str:
    return ', '.join(f'{k.split(".", 1)[-1]}={v}' for k, v in trial['params'].items())


def describe_trial(trial: dict) -> str:
    m = trial['metrics']
    return (
        f'{trial["trial_id"]} ({_params(trial)}): {100 * m["accuracy"]:.2f} % validation, '
        f'{100 * m["test_accuracy"]:.2f} % test (C simulation, {m["csim_exact_matches"]}/{m["csim_samples"]} bit-exact), '
        f'{m["footprint_bits"] / 1e3:.1f} kbit, ~{m["lut_estimate"]:,} LUT, ~{m["ff_estimate"]:,} FF, '
        f'~{m["latency_cycles"]} cycles (da4ml estimates){_synthesized(m)}'
    )


def _synthesized(m: dict) -> str:
    """The trial's open-synthesis figures, when the sweep synthesized it."""
    if 'lut_synth' not in m:
        return ''
    text = f'; Yosys ({m["synth_family"]}): {m["lut_synth"]:,} LUT, {m["ff_synth"]:,} FF'
    if 'fmax_mhz' in m:
        text += f'; nextpnr ({m["synth_device"]}): Fmax {m["fmax_mhz"]:.1f} MHz'
    return text


def answer_lines(answer: dict, constraints: list[Constraint]) -> list[str]:
    wanted = ', '.join(c.describe() for c in constraints)
    if answer['met']:
        return [
            f'most accurate trial within {wanted}: {describe_trial(answer["trial"])}',
            f'  {answer["trial"]["run_dir"]}',
        ]
    if answer['trial'] is None:
        return [f'no trial meets {wanted}: no trial finished ok and bit-exact']
    misses = '; '.join(
        f'{c.option} (has {answer["trial"]["metrics"][c.metric] / OBJECTIVES[c.metric].scale:g}'
        f' against {c.describe().split(" ", 1)[1]})'
        for c in answer['missed']
    )
    return [
        f'no trial meets {wanted}.',
        f'closest: {describe_trial(answer["trial"])}',
        f'  it misses {misses}',
    ]


def _baseline(out: Path) -> dict | None:
    path = out / 'base' / 'baseline' / 'metrics.json'
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return {'test_accuracy': data['test_accuracy'], 'footprint_bits': int(data['cost']['footprint_bits'])}


def _plots(out: Path, trials: list[dict], front: list[dict], baseline: dict | None) -> dict[str, str]:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from .report import _png

    pool = candidates(trials)
    if not pool:  # stopped before any trial finished (Ctrl-C, SIGTERM): nothing to plot
        return {}
    searched = [t for t in pool if t.get('role') != 'reference']
    reference = [t for t in pool if t.get('role') == 'reference']
    plots = {}
    for objective in (o for o in OBJECTIVES.values() if o.plot):
        name, metric, scale = objective.plot, objective.name, objective.scale
        if any(metric not in t['metrics'] for t in pool):  # e.g. lut_synth in a sweep that synthesizes nothing
            continue
        label = (
            f'{objective.label[:-1]}, log scale)' if objective.label.endswith(')') else f'{objective.label} (log scale)'
        )
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(
            [t['metrics'][metric] / scale for t in searched],
            [100 * t['metrics']['test_accuracy'] for t in searched],
            s=22,
            color='tab:gray',
            alpha=0.7,
            label='trial (bit-exact)',
        )
        ordered = sorted(front, key=lambda t: t['metrics'][metric])
        ax.plot(
            [t['metrics'][metric] / scale for t in ordered],
            [100 * t['metrics']['test_accuracy'] for t in ordered],
            'o-',
            color='tab:red',
            markersize=6,
            label='Pareto front (found on validation accuracy)',
        )
        for t in reference:
            ax.scatter(
                [t['metrics'][metric] / scale],
                [100 * t['metrics']['test_accuracy']],
                s=120,
                marker='*',
                color='tab:blue',
                label='unpruned, quantized',
            )
        if baseline is not None:
            if metric == 'footprint_bits':
                ax.scatter(
                    [baseline['footprint_bits'] / scale],
                    [100 * baseline['test_accuracy']],
                    s=80,
                    marker='D',
                    color='black',
                    label='float baseline (32-bit)',
                )
            else:
                ax.axhline(
                    100 * baseline['test_accuracy'], color='black', ls='--', lw=1, label='float baseline accuracy'
                )
        ax.set_xscale('log')
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f'{x:,g}'))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_minor_tick_label))
        ax.tick_params(axis='x', which='both', labelsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel('test accuracy (%, C simulation)')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(loc='best', fontsize=8)
        plots[name] = _png(fig)
        fig.savefig(out / f'{name}.png', dpi=110, bbox_inches='tight')
        plt.close(fig)
    return plots


def _minor_tick_label(x: float, _pos) -> str:
    """Label the minor ticks of a log axis at 2x and 5x a power of ten only: every
    minor tick labelled overlaps on a decade that spans a few centimetres."""
    if x <= 0:
        return ''
    lead = round(x / 10 ** math.floor(math.log10(x)))
    return f'{x:,g}' if lead in (2, 5) else ''


def _row(t: dict) -> dict:
    m = t['metrics']
    return {
        'id': t['trial_id'],
        'params': _params(t),
        'accuracy': f'{100 * m["accuracy"]:.2f}',
        'test_accuracy': f'{100 * m["test_accuracy"]:.2f}',
        'kbit': f'{m["footprint_bits"] / 1e3:.1f}',
        'lut': f'{m["lut_estimate"]:,}',
        'ff': f'{m["ff_estimate"]:,}',
        'latency': m['latency_cycles'],
        'exact': f'{m["csim_exact_matches"]}/{m["csim_samples"]}',
        'lut_synth': f'{m["lut_synth"]:,}' if 'lut_synth' in m else '',
        'ff_synth': f'{m["ff_synth"]:,}' if 'ff_synth' in m else '',
        'fmax': f'{m["fmax_mhz"]:.1f}' if 'fmax_mhz' in m else '',
        'run_dir': t['run_dir'],
    }


def _reference_row(t: dict, config) -> dict:
    """A reference row whose params also say the bits it was quantized with: the base
    configuration's, which may differ from the bits the trials search."""
    row = _row(t)
    c = config.run_config.compress
    row['params'] += f", at the base configuration's weight_bits={c.weight_bits}, activation_bits={c.activation_bits}"
    return row


def report_context(out: Path, config, trials: list[dict], front: list[dict], constraints: list[Constraint]) -> dict:
    ok = [t for t in trials if t['status'] == 'ok']
    errors = [t for t in trials if t['status'] != 'ok']
    inexact = [t for t in trials if t['status'] == 'not_exact']
    budget = []
    for c in constraints:
        answer = budget_query(trials, [c])
        budget.append({'constraint': c.describe(), 'lines': answer_lines(answer, [c])})
    if len(constraints) > 1:
        budget.append(
            {
                'constraint': ' and '.join(c.describe() for c in constraints),
                'lines': answer_lines(budget_query(trials, constraints), constraints),
            }
        )
    reference = [t for t in ok if t.get('role') == 'reference']
    seconds = [t['seconds'] for t in trials if t.get('seconds')]
    nodes = sorted({t['node_id'] for t in trials if t.get('node_id')})
    return {
        'source': config.source,
        'search': config.sweep.search,
        'seed': config.sweep.seed,
        'space': config.sweep.space,
        'objectives': [f'{o} ({OBJECTIVES[o].direction})' for o in config.sweep.objectives],
        'n_trials': len(trials),
        'n_ok': len(ok),
        'n_error': len(errors) - len(inexact),
        'n_inexact': len(inexact),
        'trial_seconds': round(sum(seconds), 1),
        'nodes': nodes,
        'baseline': _baseline(out),
        'reference': [_reference_row(t, config) for t in reference],
        'front': [_row(t) for t in front],
        'all_rows': [_row(t) for t in sorted(ok, key=lambda t: -t['metrics']['accuracy'])],
        'errors': [
            {
                'id': t['trial_id'],
                'params': _params(t),
                'status': 'NOT EXACT' if t['status'] == 'not_exact' else t['status'],
                'error': t.get('error', ''),
            }
            for t in errors
        ],
        'budget': budget,
        'synthesized': bool(ok) and all('lut_synth' in t['metrics'] for t in ok),
        'placed': bool(ok) and all('fmax_mhz' in t['metrics'] for t in ok),
        'synth_tool': next((t['metrics']['synth_tool'] for t in ok if 'synth_tool' in t['metrics']), ''),
        'synth_family': next((t['metrics']['synth_family'] for t in ok if 'synth_family' in t['metrics']), ''),
        'out': str(out),
    }


def write_sweep_report(out: Path, config, trials: list[dict], front: list[dict], constraints=()) -> dict:
    from .report import render

    context = report_context(out, config, trials, front, list(constraints))
    plots = _plots(out, trials, front, context['baseline'])
    write_text_atomic(out / 'report.md', render('sweep.md.j2', {**context, 'plotted': bool(plots)}))
    write_text_atomic(out / 'report.html', render('sweep.html.j2', {**context, 'plots': plots}))
    return context
