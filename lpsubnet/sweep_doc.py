"""docs/sweep.md from a finished sweep directory (``make sweep-demo`` runs it).

Usage: ``python -m lpsubnet.sweep_doc SWEEP_DIR [--doc docs/sweep.md] [--images docs/images]``

Everything in the page is read from the sweep directory (sweep.json with the measured
wall time of each invocation, trials.jsonl, pareto.json, the plots); the budget
queries shown are answered by the same code as ``lpsubnet sweep --max-...``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
from pathlib import Path

from hls_backend.core.files import write_text_atomic

from .sweep import SWEEP_MARKER, read_trials
from .sweep_report import (
    answer_lines,
    budget_query,
    candidates,
    constraints_from_options,
)

DEMO_COMMAND = 'make sweep-demo'


def _row(t: dict) -> str:
    m = t['metrics']
    params = ', '.join(f'{k.split(".", 1)[-1]}={v}' for k, v in t['params'].items())
    return (
        f'| `{t["trial_id"]}` | {params} | {100 * m["accuracy"]:.2f} | {100 * m["test_accuracy"]:.2f} '
        f'| {m["footprint_bits"] / 1e3:.1f} | {m["lut_estimate"]:,} | {m["ff_estimate"]:,} | {m["latency_cycles"]} '
        f'| {m["csim_exact_matches"]}/{m["csim_samples"]} |'
    )


HEADER = (
    '| trial | parameters | val acc % | test acc % (C sim) | kbit | LUT (est.) | FF (est.) | latency (est., cycles) '
    '| C sim bit-exact |\n|---|---|--:|--:|--:|--:|--:|--:|--:|'
)


def example_queries(trials: list[dict]) -> list[dict]:
    """Two budget queries picked from the results: one that some trial meets (the median
    LUT estimate and the accuracy of the best trial within it), and one no trial meets."""
    pool = [t for t in candidates(trials) if t.get('role') != 'reference']
    if not pool:
        return []
    luts = sorted(t['metrics']['lut_estimate'] for t in pool)
    best = max(t['metrics']['accuracy'] for t in pool)
    median_lut = int(statistics.median(luts))
    within = max(
        (t for t in pool if t['metrics']['lut_estimate'] <= median_lut), key=lambda t: t['metrics']['accuracy']
    )
    met = {'max_lut': median_lut, 'min_accuracy': math.floor(100 * within['metrics']['accuracy']) / 100}
    unmet = {'max_lut': max(1, luts[0] // 2), 'min_accuracy': round(min(0.99, best), 2)}
    queries = []
    for options in (met, unmet):
        constraints = constraints_from_options(**options)
        flags = ' '.join(f'--{k.replace("_", "-")} {v}' for k, v in options.items())
        queries.append({'flags': flags, 'lines': answer_lines(budget_query(trials, constraints), constraints)})
    return queries


def write_doc(sweep_dir: Path, doc: Path, images: Path) -> str:
    marker = json.loads((sweep_dir / SWEEP_MARKER).read_text())
    trials = read_trials(sweep_dir)
    pareto = json.loads((sweep_dir / 'pareto.json').read_text())
    ok = [t for t in trials if t['status'] == 'ok']
    searched = [t for t in ok if t.get('role') != 'reference']
    reference = [t for t in ok if t.get('role') == 'reference']
    inexact = [t for t in trials if t['status'] == 'not_exact']
    sessions = marker.get('sessions', [])
    wall = sum(s['wall_seconds'] for s in sessions)
    images.mkdir(parents=True, exist_ok=True)
    for name in ('accuracy_vs_footprint', 'accuracy_vs_lut'):
        shutil.copyfile(sweep_dir / f'{name}.png', images / f'sweep_{name}.png')
    rel = Path('images') if images.parent == doc.parent else images
    baseline = json.loads((sweep_dir / 'base' / 'baseline' / 'metrics.json').read_text())
    config = (sweep_dir / 'config.yaml').read_text() if (sweep_dir / 'config.yaml').exists() else ''
    lines = [
        '# Sweep demo: the digits CNN over sparsity × weight bits × importance',
        '',
        f'Made by `python -m lpsubnet.sweep_doc` from the sweep directory of `{DEMO_COMMAND}`; do not edit by hand.',
        '',
        '## What ran',
        '',
        '```yaml',
        config.rstrip(),
        '```',
        '',
    ]
    for s in sessions:
        lines.append(
            f'- {s["started_utc"]}: {s["trials_run"]} trials in **{s["wall_seconds"] / 60:.1f} min** wall time '
            f'(the float baseline, Ray start and every trial) on {s["cpus"]} CPUs ({s["address"]} Ray), '
            f'load average {s["load_average_at_start"]} at the start'
            + (' — stopped early' if s['stopped_early'] else '')
        )
    lines += [
        '',
        f'{len(trials)} trials ({len(searched)} searched + {len(reference)} reference): {len(ok)} ok, '
        f'{len(inexact)} NOT EXACT, {len(trials) - len(ok) - len(inexact)} failed; **{len(ok)}/{len(trials)} '
        'bit-exact** in C simulation (every test sample, every output bit, against the QKeras model). '
        f'Total wall time {wall / 60:.1f} min.',
        '',
        f'Float baseline: {100 * baseline["test_accuracy"]:.2f} % test accuracy, '
        f'{baseline["cost"]["footprint_bits"] / 1e3:.1f} kbit.',
        '',
        'Accuracy: *validation* accuracy of the quantized model (what the search optimises) and *test* accuracy of '
        "the C-simulated HLS core. LUT, FF and latency are **estimates** from da4ml's cost model of the RTL "
        "route's design (not synthesis; latency is its pipeline depth in cycles).",
        '',
        f'![accuracy vs footprint]({rel / "sweep_accuracy_vs_footprint.png"}) '
        f'![accuracy vs LUT estimate]({rel / "sweep_accuracy_vs_lut.png"})',
        '',
        f'## Pareto front ({", ".join(f"{k} {v}" for k, v in pareto["objectives"].items())})',
        '',
        HEADER,
        *[_row(t) for t in pareto['trials']],
        '',
    ]
    if reference:
        lines += ['Reference (unpruned, quantized):', '', HEADER, *[_row(t) for t in reference], '']
    queries = example_queries(trials)
    if queries:
        lines += ['## Budget queries', '']
        for q in queries:
            lines += [
                '```',
                f'$ lpsubnet sweep examples/sweep_digits.yaml --out {sweep_dir.name} --resume {q["flags"]}',
                # The sweep directory as the command names it, not this machine's absolute path.
                *[line.replace(str(sweep_dir), sweep_dir.name) for line in q['lines']],
                '```',
                '',
            ]
    lines += [
        '## All trials',
        '',
        HEADER,
        *[_row(t) for t in sorted(ok, key=lambda t: -t['metrics']['accuracy'])],
        '',
    ]
    failed = [t for t in trials if t['status'] != 'ok']
    if failed:
        lines += ['## Failed trials', '']
        lines += [f'- `{t["trial_id"]}` {t["params"]} ({t["status"]}): {t.get("error", "")}' for t in failed]
        lines.append('')
    text = '\n'.join(lines)
    write_text_atomic(doc, text)
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('sweep_dir', type=Path)
    parser.add_argument('--doc', type=Path, default=Path('docs/sweep.md'))
    parser.add_argument('--images', type=Path, default=Path('docs/images'))
    args = parser.parse_args(argv)
    write_doc(args.sweep_dir.absolute(), args.doc, args.images)
    print(f'wrote {args.doc}')


if __name__ == '__main__':
    main()
