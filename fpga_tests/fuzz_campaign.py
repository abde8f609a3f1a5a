"""The fuzz campaign behind ``make fuzz``: hundreds of random architectures per property,
counted and written down.

``python -m fpga_tests.fuzz_campaign [--csim N] [--rtl N] [--pruned N] [--jobs J] [--hours H]``

Properties (the checks of fpga_tests/fuzz_checks.py, on seeded specs from
fpga_tests/fuzz_models.py, so every example is named by its seed):
- ``csim-io_parallel`` / ``csim-io_stream``: random QKeras model -> HLS project -> C
  simulation, and hls4ml's ``compile()``/``predict()`` as the second check;
- ``rtl``: random small QKeras model -> da4ml RTL -> Verilator, clock by clock, plus
  da4ml's own predict() and the traced logic;
- ``pruned``: random float model with BatchNorm -> random channel masks, cut, fold,
  statistics-based quantizers -> C simulation (lpsubnet's own route into the back end).

Each example runs in a worker process (one TensorFlow thread, builds with one job) of
a standard-library process pool on this machine; results go one JSON line each into
``--results`` (default docs/fuzz_results.jsonl, committed with the report), so an
interrupted campaign resumes where it stopped, in this checkout or a later one. At
the end (or when ``--hours`` runs out: no new examples are started) the counts are
written to docs/fuzz.md and docs/fuzz.json. Exit 1 if any example
mismatched or crashed; its spec is in the report, ready to pin in
test_fuzz_regressions.py.

Builds are the product's own C++ and RTL. One saving: a csim example compiles its
firmware once, with hls4ml's build_lib.sh (-O3), and links lpsubnet's testbench to
that library (``csim(shared_build=True)``), so both harnesses run the same object code;
``lpsubnet csim`` and the default suite compile it twice (g++ -O2 as well), which also
covers flag-dependent results. Verilator builds at -O1 with one job.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RTL_OPTIONS = dict(kinds=('dense', 'conv1d', 'conv2d'), max_bits=8, max_blocks=2, rtl=True)
# Seeds of each property start far from the default suite's (1000-3999) and from each other.
FIRST_SEED = {'csim-io_parallel': 100_000, 'csim-io_stream': 200_000, 'rtl': 300_000, 'pruned': 400_000}


def pruned_settings(seed: int) -> dict:
    """Sparsity, bit widths and io type of one ``pruned`` example, drawn from its seed."""
    rng = np.random.default_rng(seed + 7)
    return {
        'fraction': float(rng.choice([0.25, 0.5, 0.75])),
        'weight_bits': int(rng.integers(3, 9)),
        'activation_bits': int(rng.integers(4, 9)),
        'io_type': str(rng.choice(['io_parallel', 'io_stream'])),
    }


def spec_for(prop: str, seed: int) -> dict:
    from fpga_tests.fuzz_models import random_spec

    if prop == 'rtl':
        return random_spec(seed, **RTL_OPTIONS)
    return random_spec(seed, batchnorm=prop == 'pruned')


def _worker_init() -> None:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def run_example(prop: str, seed: int) -> dict:
    """One example in a fresh temporary directory; never raises (crashes are results)."""
    import contextlib
    import io

    from fpga_tests.fuzz_checks import REFUSED, check_csim, check_pruned_csim, check_rtl, refusal_reason

    spec = spec_for(prop, seed)
    record = {'property': prop, 'seed': seed}
    start = time.perf_counter()
    log = io.StringIO()
    try:
        with (
            tempfile.TemporaryDirectory(prefix=f'fuzz-{prop}-') as tmp,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            work = Path(tmp)
            if prop.startswith('csim-'):
                outcome = check_csim(spec, prop.removeprefix('csim-'), work, second_check=True, shared_build=True)
            elif prop == 'rtl':
                outcome = check_rtl(spec, work, jobs=1)
            else:
                settings = pruned_settings(seed)
                record['settings'] = settings
                outcome = check_pruned_csim(spec, work=work, **settings)
        if outcome.startswith(REFUSED):
            record.update(outcome='refused', reason=refusal_reason(outcome), message=outcome.split(': ', 1)[1])
        else:
            record['outcome'] = 'exact'
    except AssertionError as exc:
        record.update(outcome='mismatch', message=str(exc), spec=spec)
    except Exception as exc:  # noqa: BLE001 - a crash is a finding, recorded with its traceback
        record.update(
            outcome='error', message=f'{type(exc).__name__}: {exc}', spec=spec, traceback=traceback.format_exc()
        )
    record['seconds'] = round(time.perf_counter() - start, 2)
    return record


def _load(results: Path) -> list[dict]:
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


def _tool_versions() -> dict:
    import da4ml
    import hls4ml
    import keras
    import qkeras
    import tensorflow as tf

    from hls_backend.rtl.verilator_setup import find_verilator

    gxx = subprocess.run(['g++', '--version'], capture_output=True, text=True, check=False).stdout.splitlines()
    try:
        verilator = find_verilator().version
    except Exception as exc:  # noqa: BLE001 - reported, not fatal for the report
        verilator = f'unavailable ({exc})'
    return {
        'python': platform.python_version(),
        'tensorflow': tf.__version__,
        'keras': keras.__version__,
        'qkeras': getattr(qkeras, '__version__', 'qkeras-v3'),
        'hls4ml': hls4ml.__version__,
        'da4ml': da4ml.__version__,
        'verilator': verilator,
        'g++': gxx[0] if gxx else 'g++',
    }


def summarise(records: list[dict], props: list[str]) -> dict:
    summary = {}
    for prop in props:
        mine = [r for r in records if r['property'] == prop]
        outcomes = Counter(r['outcome'] for r in mine)
        summary[prop] = {
            'tried': len(mine),
            'accepted_exact': outcomes['exact'],
            'refused': outcomes['refused'],
            'mismatches': outcomes['mismatch'],
            'errors': outcomes['error'],
            'refusal_reasons': dict(Counter(r['reason'] for r in mine if r['outcome'] == 'refused').most_common()),
            'mean_seconds': round(float(np.mean([r['seconds'] for r in mine])), 1) if mine else None,
        }
    return summary


PROPERTY_TEXT = {
    'csim-io_parallel': 'C simulation (testbench and hls4ml predict() on one build), io_parallel',
    'csim-io_stream': 'C simulation (testbench and hls4ml predict() on one build), io_stream',
    'rtl': 'RTL: Verilator cycle-accurate simulation, da4ml predict() and traced logic',
    'pruned': 'pruner route: float model with BatchNorm, random masks, cut, fold, quantize, C simulation',
}


def write_report(records: list[dict], props: list[str], meta: dict, out: Path) -> dict:
    summary = summarise(records, props)
    findings = [r for r in records if r['outcome'] in ('mismatch', 'error')]
    data = {**meta, 'summary': summary, 'findings': findings}
    out.with_suffix('.json').write_text(json.dumps(data, indent=2) + '\n')
    csim_accepted = sum(summary[p]['accepted_exact'] for p in props if p.startswith('csim-'))
    lines = [
        '# Fuzz campaign',
        '',
        f'Written by `{meta["command"]}` (`make fuzz`) on {meta["date"]}, {meta["wall_minutes"]} min wall time '
        '(summed over resumed runs) '
        f'with {meta["jobs"]} worker process(es) on {meta["cpus"]} CPU(s). Every example is a random architecture '
        'drawn from its seed (`fpga_tests.fuzz_models.random_spec`); the checks are those of '
        '`fpga_tests/fuzz_checks.py`. An accepted model must match the QKeras model on every output bit of '
        'every sample (40 per csim example, 30 per RTL example); a refused one must be refused up front, '
        'with the reason counted below.',
        '',
        f'**{csim_accepted} accepted architectures through C simulation and hls4ml predict() over both io types, '
        f'{summary.get("rtl", {}).get("accepted_exact", 0)} through RTL, '
        f'{summary.get("pruned", {}).get("accepted_exact", 0)} through the pruner route; '
        f'{sum(s["mismatches"] for s in summary.values())} mismatches, '
        f'{sum(s["errors"] for s in summary.values())} crashes.**',
        '',
        *(
            [
                f'{meta["remaining"]} of the requested examples are not run yet (the time budget ran out): '
                '`make fuzz` resumes from docs/fuzz_results.jsonl.',
                '',
            ]
            if meta.get('remaining')
            else []
        ),
        '| property | tried | accepted, exact | refused | accepted share | mismatches | crashes | s / example |',
        '|---|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for prop in props:
        s = summary[prop]
        share = f'{s["accepted_exact"] / s["tried"]:.0%}' if s['tried'] else '-'
        lines.append(
            f'| {PROPERTY_TEXT[prop]} | {s["tried"]} | {s["accepted_exact"]} | {s["refused"]} | {share} | '
            f'{s["mismatches"]} | {s["errors"]} | {s["mean_seconds"]} |'
        )
    lines += [
        '',
        'Targets: at least 500 accepted architectures through C simulation over both io types and 50 through RTL, '
        'no mismatch; the default suite asks at least 80% of its drawn models to be accepted (refusals are the known '
        'limits of hls4ml 1.3.0 listed in the README, counted below).',
    ]
    lines += ['', '## Refusals by reason', '']
    for prop in props:
        reasons = summary[prop]['refusal_reasons']
        if reasons:
            lines.append(f'{PROPERTY_TEXT[prop]}:')
            lines += [f'- {count} x {reason}' for reason, count in reasons.items()]
            lines.append('')
    lines += ['## Findings', '']
    if findings:
        for r in findings:
            lines.append(f'- `{r["property"]}` seed {r["seed"]}: {r["outcome"]}: {r["message"][:400]}')
    else:
        lines.append('None: no accepted model mismatched, nothing crashed.')
    lines += ['', '## Versions', '']
    lines += [f'- {name}: {version}' for name, version in meta['versions'].items()]
    lines += [
        '',
        'Reproduce one example: `python -c "from fpga_tests.fuzz_campaign import run_example; '
        "print(run_example('rtl', 300000))\"`.",
        '',
    ]
    out.write_text('\n'.join(lines))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m fpga_tests.fuzz_campaign', description=__doc__.split('\n\n')[0])
    p.add_argument('--csim', type=int, default=300, help='examples per io type (default 300)')
    p.add_argument('--rtl', type=int, default=60, help='RTL examples (default 60)')
    p.add_argument('--pruned', type=int, default=60, help='pruner-route examples (default 60)')
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1, help='worker processes (default: CPUs)')
    p.add_argument('--hours', type=float, default=2.0, help='start no new example after this (default 2)')
    p.add_argument('--results', type=Path, default=ROOT / 'docs' / 'fuzz_results.jsonl', help='one line per example')
    p.add_argument('--out', type=Path, default=ROOT / 'docs' / 'fuzz.md')
    p.add_argument('--fresh', action='store_true', help='forget earlier results in --results')
    p.add_argument('--report-only', action='store_true', help='rewrite the report from --results, run nothing')
    args = p.parse_args(argv)

    from rich.progress import Progress

    counts = {'csim-io_parallel': args.csim, 'csim-io_stream': args.csim, 'rtl': args.rtl, 'pruned': args.pruned}
    props = [prop for prop, n in counts.items() if n > 0]
    results = args.results
    results.parent.mkdir(parents=True, exist_ok=True)
    runs_file = results.with_name(results.stem + '_runs.jsonl')
    if args.fresh:
        results.unlink(missing_ok=True)
        runs_file.unlink(missing_ok=True)
    records = _load(results)
    done = {(r['property'], r['seed']) for r in records}
    # Round robin over the properties, so a campaign cut short by --hours covers them all.
    todo = []
    for i in range(max(counts.values())):
        todo += [(prop, FIRST_SEED[prop] + i) for prop in props if i < counts[prop]]
    todo = [task for task in todo if task not in done]
    if args.report_only:
        todo_run, deadline = [], time.time()
    else:
        todo_run, deadline = todo, time.time() + args.hours * 3600
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_worker_init) as pool, Progress() as progress:
        bar = progress.add_task('fuzz examples', total=len(todo_run))
        pending = set()
        queue = iter(todo_run)

        def submit_next() -> bool:
            task = next(queue, None)
            if task is None or time.time() > deadline:
                return False
            pending.add(pool.submit(run_example, *task))
            return True

        for _ in range(args.jobs):
            submit_next()
        with results.open('a') as sink:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    pending.discard(future)
                    record = future.result()
                    records.append(record)
                    sink.write(json.dumps(record) + '\n')
                    sink.flush()
                    progress.advance(bar)
                    if record['outcome'] in ('mismatch', 'error'):
                        progress.console.print(
                            f'[red]{record["property"]} seed {record["seed"]}: {record["message"][:300]}'
                        )
                    submit_next()
    recorded = {(r['property'], r['seed']) for r in records}
    remaining = sum(task not in recorded for task in todo)
    minutes = round((time.time() - start) / 60, 1)
    if todo_run:
        with runs_file.open('a') as runs:
            runs.write(json.dumps({'minutes': minutes, 'examples': len(todo_run), 'jobs': args.jobs}) + '\n')
    lines = runs_file.read_text().splitlines() if runs_file.exists() else []
    total_minutes = sum(json.loads(line)['minutes'] for line in lines)
    meta = {
        'command': 'python -m fpga_tests.fuzz_campaign ' + ' '.join(argv if argv is not None else sys.argv[1:]),
        'date': datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'),
        'wall_minutes': round(total_minutes, 1),
        'jobs': args.jobs,
        'cpus': os.cpu_count(),
        'remaining': remaining,
        'versions': _tool_versions(),
    }
    summary = write_report(records, props, meta, args.out)
    for prop, s in summary.items():
        print(f'{prop}: {s["tried"]} tried, {s["accepted_exact"]} exact, {s["refused"]} refused, '
              f'{s["mismatches"]} mismatches, {s["errors"]} crashes')  # fmt: skip
    print(f'wrote {args.out} and {args.out.with_suffix(".json")}')
    return 1 if any(s['mismatches'] or s['errors'] for s in summary.values()) else 0


if __name__ == '__main__':
    sys.exit(main())
