"""How good is da4ml's cost estimate: its LUT/FF figures against Yosys's technology mapping
(``lpsubnet synth --tool yosys``) and, where the design fits an ECP5, nextpnr's placement.

``python -m bench.synth [--tasks letter,digits] [--sparsities 0,0.5,0.75] [--weight-bits 4,6,8]
[--activation-bits 8] [--max-lut N] [--place-max-lut N] [--shard I/N] [--results DIR] [--tiny]``
writes one JSON per design into ``<results>/synth/`` (an existing one is not recomputed);
``python -m bench.report`` puts the table and the plots into docs/benchmarks.md.

The designs: the benchmark's letter MLP and digits CNN, pruned by the method (layerwise
activation-L1) from the committed seed-0 float baselines at each sparsity and weight width.
They are trained with a shortened recovery (``RECIPE``: a few hundred optimizer steps per
phase instead of about 3,000) because what is measured is the hardware of a design, not its
accuracy; the accuracy is recorded all the same. Each design's RTL is written by da4ml
(``hls_backend.write_rtl``) and mapped by Yosys to the project's part (Xilinx UltraScale+:
``synth_xilinx -family xcup``); designs da4ml estimates at most ``--place-max-lut`` LUTs are
also mapped to ECP5 and placed and routed by nextpnr (utilization, Fmax). Yosys runs on one
core; ``--shard I/N`` splits the designs between processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

HERE = Path(__file__).resolve().parent
TASKS = ('letter', 'digits')
SPARSITIES = (0.0, 0.5, 0.75)
WEIGHT_BITS = (4, 6, 8)
ACTIVATION_BITS = 8
# A shortened recovery: the optimizer steps per pruning/fine-tuning/QAT phase (the library's
# 'auto' is about 3,000). The hardware of a trained design is measured, not its accuracy.
RECIPE = {'auto_steps': 600}
MAX_LUT = 150_000  # skipped above this da4ml estimate (Yosys: 14 min for 111k LUTs here, two designs at once)
PLACE_MAX_LUT = 12_000  # nextpnr on ECP5 up to this estimate (it took 9 min on an 11k-LUT design here, under load)
CHECK_SAMPLES = 50  # test samples the RTL project stores (the bench simulates nothing)


def design_name(task: str, sparsity: float, weight_bits: int, activation_bits: int) -> str:
    return f'{task}_s{round(sparsity * 100)}_w{weight_bits}a{activation_bits}'


def design_model(task, sparsity: float, wb: int, ab: int, root: Path, tiny: bool) -> tuple[Path, dict]:
    """The design's QKeras model (cached in ``<root>/synth/models``) and its training record."""
    import keras

    from . import experiments

    name = design_name(task.name, sparsity, wb, ab)
    path = root / 'synth' / 'models' / f'{name}.keras'
    record_path = path.with_suffix('.json')
    if path.exists() and record_path.exists():
        return path, json.loads(record_path.read_text())
    t0 = time.time()
    method = 'lw_act_l1' if sparsity > 0 else 'quant'
    model, record = experiments.run_method(task, method, sparsity, wb, ab, 0, root, tiny, overrides=RECIPE)
    summary = record.pop('summary')
    record = {
        'method': method,
        'test_metric': experiments.evaluate(model, task),
        'metric_name': experiments.metric_name(task),
        'parameters': int(summary['parameters']),
        'footprint_bits': int(summary['footprint_bits']),
        'train_seconds': round(time.time() - t0, 1),
        'recipe': RECIPE,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    record_path.write_text(json.dumps(record, indent=1, default=float) + '\n')
    keras.backend.clear_session()
    return path, record


def _yosys_figures(result) -> dict:
    r = result.resources
    return {
        'family': r['family'],
        'LUT': r['LUT'],
        'LUT_by_size': r['LUT_by_size'],
        'FF': r['FF'],
        'CARRY': r['CARRY'],
        'DSP': r['DSP'],
        'BRAM': r['BRAM'],
        'yosys_seconds': result.build_seconds,
        'tool': result.tool,
    }


def measure(model_path: Path, task, place_max_lut: int, max_lut: int) -> dict:
    """da4ml's estimate, Yosys's UltraScale+ mapping and (small designs) ECP5 placement."""
    import hls_backend
    from hls_backend.rtl.project import read_rtl_info

    with tempfile.TemporaryDirectory(prefix='bench_synth_') as tmp:
        project = Path(tmp) / 'rtl'
        t0 = time.time()
        hls_backend.write_rtl(model_path, project, inputs=task.x_test[:CHECK_SAMPLES], force_large=True)
        info = read_rtl_info(project)
        out = {
            'da4ml_seconds': round(time.time() - t0, 1),
            'part': info.part,
            'lut_da4ml': round(info.design['lut_estimate']),
            'ff_da4ml': int(info.design['ff_estimate']),
            'pipeline_stages': info.design.get('pipeline_stages'),
        }
        if out['lut_da4ml'] > max_lut:
            out['skipped'] = f'da4ml estimates {out["lut_da4ml"]:,} LUT > --max-lut {max_lut:,}'
            return out
        xilinx = hls_backend.synth_open(project, hls_backend.OpenSynthOptions())
        out['yosys'] = _yosys_figures(xilinx)
        if out['lut_da4ml'] <= place_max_lut:  # the Xilinx figures are read: its synth/ may be replaced
            ecp5 = hls_backend.synth_open(project, hls_backend.OpenSynthOptions(place=True), force=True)
            placed = ecp5.resources['nextpnr']
            out['ecp5'] = {
                **_yosys_figures(ecp5),
                'device': placed['device'],
                'placed_lut4': placed['utilization']['TRELLIS_COMB']['used'],
                'placed_ff': placed['utilization'].get('TRELLIS_FF', {}).get('used'),
                'fmax_mhz': placed['fmax_mhz'],
                'target_mhz': placed['target_mhz'],
                'in_context': placed['in_context'],
                'nextpnr_seconds': placed['seconds'],
            }
    return out


def _records(root: Path) -> list[dict]:
    """Every design's record but the tiny test runs'."""
    found = (json.loads(f.read_text()) for f in sorted((root / 'synth').glob('*.json')))
    return [r for r in found if not r.get('tiny')]


def _measured(records: list[dict]) -> list[dict]:
    return sorted((r for r in records if 'yosys' in r), key=lambda r: r['lut_da4ml'])


def load_results(root: Path) -> list[dict]:
    """The measured designs (not the tiny test runs, not the skipped ones), smallest first."""
    return _measured(_records(root))


def _spread(values: list[float]) -> str:
    import statistics

    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.3f} ± {sd:.3f} (min {min(values):.3f}, max {max(values):.3f}, n = {len(values)})'


def growth_exponent(rows: list[dict]) -> float | None:
    """The slope of log(Yosys seconds) against log(mapped LUTs): how Yosys's time grows with size."""
    import numpy as np

    if len(rows) < 3:
        return None
    x = np.log([r['yosys']['LUT'] for r in rows])
    y = np.log([r['yosys']['yosys_seconds'] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def _plot(rows: list[dict], plots: Path) -> str:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for task, colour in zip(TASKS, ('tab:blue', 'tab:orange'), strict=True):
        mine = [r for r in rows if r['task'] == task]
        left.scatter([r['lut_da4ml'] for r in mine], [r['yosys']['LUT'] / r['lut_da4ml'] for r in mine],
                     color=colour, label=f'{task}: Yosys xcup LUT / da4ml')  # fmt: skip
        placed = [r for r in mine if 'ecp5' in r]
        right.scatter([r['yosys']['LUT'] for r in mine], [r['yosys']['yosys_seconds'] for r in mine], color=colour,
                      label=f'{task}: Yosys synth_xilinx')  # fmt: skip
        if placed:
            left.scatter([r['lut_da4ml'] for r in placed], [r['ecp5']['placed_lut4'] / r['lut_da4ml'] for r in placed],
                         color=colour, marker='x', label=f'{task}: nextpnr ECP5 LUT4 sites / da4ml')  # fmt: skip
            right.scatter([r['ecp5']['placed_lut4'] for r in placed], [r['ecp5']['nextpnr_seconds'] for r in placed],
                          color=colour, marker='x', label=f'{task}: nextpnr-ecp5 (LUT4 sites)')  # fmt: skip
    left.axhline(1.0, color='black', lw=1, ls='--')
    left.set_xscale('log')
    left.set_xlabel("LUTs, da4ml's estimate (log scale)")
    left.set_ylabel('mapped / estimated')
    left.set_title("Yosys's count against da4ml's estimate")
    right.set_xscale('log')
    right.set_yscale('log')
    right.set_xlabel('mapped LUTs (log scale)')
    right.set_ylabel('wall seconds (log scale)')
    right.set_title('tool time against design size')
    thousands = matplotlib.ticker.FuncFormatter(lambda x, _: f'{x:,.0f}')
    at_2_and_5 = matplotlib.ticker.FuncFormatter(lambda x, _: f'{x:,.0f}' if f'{x:.0e}'[0] in '25' else '')
    for axis in (left.xaxis, right.xaxis, right.yaxis):
        axis.set_major_formatter(thousands)
        axis.set_minor_formatter(at_2_and_5)
    for ax in (left, right):
        ax.tick_params(axis='both', which='both', labelsize=8)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=7)
    plots.mkdir(parents=True, exist_ok=True)
    name = 'synth_estimate_vs_yosys.png'
    fig.savefig(plots / name, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return name


def section(root: Path, plots: Path) -> list[str]:
    """docs/benchmarks.md's part on da4ml's estimate against Yosys and nextpnr."""
    records = _records(root)
    rows = _measured(records)
    head = ["## da4ml's cost estimate against open synthesis (Yosys, nextpnr)", '']
    if not rows:
        return [*head, 'Not run yet: `python -m bench.synth` (one JSON per design in `bench/results/synth/`).', '']
    skipped = [r for r in records if 'skipped' in r]
    lut = [r['yosys']['LUT'] / r['lut_da4ml'] for r in rows]
    ff = [r['yosys']['FF'] / r['ff_da4ml'] for r in rows]
    placed = [r for r in rows if 'ecp5' in r]
    exponent = growth_exponent(rows)
    lines = [
        *head,
        f'`python -m bench.synth`: {len(rows)} designs, the letter MLP and the digits CNN pruned by the method at '
        f'{", ".join(f"{s:.0%}" for s in SPARSITIES)} sparsity with {"/".join(map(str, WEIGHT_BITS))}-bit weights '
        f'and {ACTIVATION_BITS}-bit activations, each written by da4ml and mapped by {rows[0]["yosys"]["tool"]} '
        "(`lpsubnet synth --tool yosys`, `synth_xilinx -family xcup`, the projects' UltraScale+ part); the ones "
        f'da4ml estimates at most {PLACE_MAX_LUT:,} LUTs also mapped to ECP5 and placed and routed by nextpnr-ecp5 '
        '(`--place`, out of context where the ports need more pins than the package has). The designs come from '
        f'a shortened recovery ({RECIPE["auto_steps"]} optimizer steps per phase instead of about 3,000): the '
        "accuracy column is theirs, not the matrix's. Yosys counts are technology mapping, not vendor synthesis.",
        '',
        f'- **LUTs, Yosys / da4ml: {_spread(lut)}**; '
        + '; '.join(
            f'{task} {_spread([r["yosys"]["LUT"] / r["lut_da4ml"] for r in rows if r["task"] == task])}'
            for task in TASKS
            if any(r['task'] == task for r in rows)
        ),
        f'- FFs, Yosys / da4ml: {_spread(ff)}',
    ]
    if placed:
        lines.append(
            '- ECP5 LUT4 sites placed by nextpnr (LUT4 + 2 per CCU2C carry) / da4ml LUTs: '
            + _spread([r['ecp5']['placed_lut4'] / r['lut_da4ml'] for r in placed])
        )
    if exponent is not None:
        lines.append(
            f'- Yosys time grows as (mapped LUTs)^{exponent:.2f} (least-squares slope on log-log axes) over '
            f'{min(r["yosys"]["LUT"] for r in rows):,}-{max(r["yosys"]["LUT"] for r in rows):,} LUTs; wall seconds '
            'on a 2-core machine running two designs at once (and other jobs), so upper bounds.'
        )
    lines += [
        '',
        '| design | test acc % | LUT da4ml | LUT Yosys | ratio | FF da4ml | FF Yosys | ratio | CARRY4 | LUT6 share | '
        'Yosys s | ECP5 LUT4 + CCU2C | placed LUT4 sites | Fmax MHz | nextpnr s |',
        '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    ]
    for r in rows:
        y, e = r['yosys'], r.get('ecp5')
        lut6 = y['LUT_by_size'].get('LUT6', 0) / y['LUT'] if y['LUT'] else 0.0
        ecp5 = (
            f'{e["LUT"]:,} + {e["CARRY"]:,} | {e["placed_lut4"]:,} ({e["device"]}) | {e["fmax_mhz"]:.1f} | '
            f'{e["nextpnr_seconds"]:.0f}'
            if e
            else '- | - | - | -'
        )
        lines.append(
            f'| {r["design"]} | {r["test_metric"]:.1f} | {r["lut_da4ml"]:,} | {y["LUT"]:,} | '
            f'{y["LUT"] / r["lut_da4ml"]:.3f} | {r["ff_da4ml"]:,} | {y["FF"]:,} | {y["FF"] / r["ff_da4ml"]:.3f} | '
            f'{y["CARRY"]:,} | {lut6:.1%} | {y["yosys_seconds"]:.0f} | {ecp5} |'
        )
    lines += ['', f'![estimate against Yosys and nextpnr](bench/{_plot(rows, plots)})', '']
    if skipped:
        lines += [f'Not synthesized: {", ".join(r["design"] + " (" + r["skipped"] + ")" for r in skipped)}.', '']
    lines += [
        "What Yosys's mapping is known to count differently from vendor synthesis (Vivado), not measured here (no "
        'vendor tool on this machine): Yosys 0.70 maps UltraScale(+) adders to CARRY4 chains, not CARRY8 (8 bits a '
        'cell), so its carry count is about twice what Vivado places; it does not pack two small LUTs into one '
        'LUT6_2 site as Vivado does, so its LUT count is above the LUT sites Vivado reports for the same netlist '
        'when many LUTs have few inputs (LUT2/LUT3 dominate these designs); and inverters are counted as LUT1 cells, '
        'which Vivado usually folds into the next LUT.',
        '',
    ]
    return lines


def designs(tasks, sparsities, weight_bits) -> list[tuple[str, float, int]]:
    """Smallest first (fewest bits, most pruned), so a stopped run has the quick ones."""
    grid = [(t, s, b) for t in tasks for s in sparsities for b in weight_bits]
    return sorted(grid, key=lambda d: (TASKS.index(d[0]) if d[0] in TASKS else 9, -d[1], d[2]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='python -m bench.synth', description=__doc__.split('\n\n')[0])
    p.add_argument('--tasks', default=','.join(TASKS))
    p.add_argument('--sparsities', default=','.join(f'{s:g}' for s in SPARSITIES))
    p.add_argument('--weight-bits', default=','.join(map(str, WEIGHT_BITS)))
    p.add_argument('--activation-bits', type=int, default=ACTIVATION_BITS)
    p.add_argument('--max-lut', type=int, default=MAX_LUT, help='skip designs da4ml estimates above this')
    p.add_argument('--place-max-lut', type=int, default=PLACE_MAX_LUT, help='ECP5 placement up to this estimate')
    p.add_argument('--shard', default='0/1', help='I/N: this process takes every N-th design from the I-th')
    p.add_argument('--results', default=str(HERE / 'results'))
    p.add_argument('--tiny', action='store_true')
    args = p.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from . import data as data_lib

    root = Path(args.results)
    index, count = (int(x) for x in args.shard.split('/'))
    grid = designs(args.tasks.split(','), [float(s) for s in args.sparsities.split(',')],
                   [int(b) for b in args.weight_bits.split(',')])[index::count]  # fmt: skip
    loaded = {}
    for task_name, sparsity, wb in grid:
        name = design_name(task_name, sparsity, wb, args.activation_bits)
        out = root / 'synth' / f'{name}.json'
        if out.exists():
            continue
        task = loaded.get(task_name) or loaded.setdefault(task_name, data_lib.load(task_name, tiny=args.tiny))
        print(f'[bench.synth] {name}: training', file=sys.stderr, flush=True)
        model_path, trained = design_model(task, sparsity, wb, args.activation_bits, root, args.tiny)
        print(f'[bench.synth] {name}: da4ml + Yosys', file=sys.stderr, flush=True)
        record = {
            'design': name,
            'task': task_name,
            'sparsity': sparsity,
            'weight_bits': wb,
            'activation_bits': args.activation_bits,
            **trained,
            **measure(model_path, task, args.place_max_lut, args.max_lut),
            'tiny': bool(args.tiny),
            'finished': time.strftime('%Y-%m-%d %H:%M:%S'),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix('.json.tmp')
        tmp.write_text(json.dumps(record, indent=1, default=float) + '\n')
        tmp.rename(out)
        if 'yosys' in record:
            y = record['yosys']
            print(f'[bench.synth] {name}: da4ml {record["lut_da4ml"]:,} LUT, Yosys {y["LUT"]:,} LUT '
                  f'({y["yosys_seconds"]:.0f} s)', file=sys.stderr, flush=True)  # fmt: skip
    return 0


if __name__ == '__main__':
    sys.exit(main())
