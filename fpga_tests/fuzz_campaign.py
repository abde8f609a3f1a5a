"""The fuzz campaign behind ``make fuzz``: random architectures per property until the
targets are met, every example and every run recorded, docs/fuzz.md written from the record.

``python -m fpga_tests.fuzz_campaign [--csim N] [--rtl N] [--pruned N] [--jobs J] [--hours H]``

Properties (fuzz_checks.PROPERTIES, on seeded specs from fpga_tests/fuzz_models.py, so
every example is named by its property and seed):
- ``csim-io_parallel`` / ``csim-io_stream``: random QKeras model -> HLS project -> C
  simulation, and hls4ml's ``compile()``/``predict()`` as the second check;
- ``rtl``: random small QKeras model -> da4ml RTL -> Verilator, clock by clock, plus
  da4ml's own predict() and the traced logic;
- ``pruned``: random float model with BatchNorm -> random channel masks, cut, fold,
  statistics-based quantizers -> C simulation (lpsubnet's own route into the back end).

The record (``--results``, default docs/fuzz_results.jsonl, committed with the report)
is a history, appended to and never rewritten: one line per example (its campaign, its
run, its outcome, the layer classes it drew, the spec of a mismatch) and one line per
re-check of an earlier finding; the runs file beside it (docs/fuzz_results_runs.jsonl)
holds one line when a run starts (commit, tool versions, command) and one when it ends.
A finding (a mismatch or a crash) stays in the record after it is fixed: each run first
re-checks every finding's spec on the code at hand, and the report gives each its fate.

A campaign runs until every property has its target of accepted examples (default: 500
through C simulation over both io types, 100 through RTL, 50 through the pruner's
route) or has tried as many as the target allows at the README's 80% acceptance; it is
resumable (``make fuzz`` again continues the latest campaign); ``--new-campaign``
starts over on new code, keeping the old campaigns' records. ``--hours`` stops starting
new examples. The exit code: 3 if this run found a mismatch or a crash, or an earlier
finding still mismatches; 1 if a property's accepted share is below 80%; 0 otherwise.

``--replay PROPERTY:SEED`` runs one example again and says what it gives (exit 3 on a
mismatch), without recording it.

Each example runs in a worker process (one TensorFlow thread, builds with one job) of a
standard-library process pool on this machine. A csim example compiles its firmware
once, with hls4ml's build_lib.sh (-O3), and links lpsubnet's testbench to that library
(``csim(shared_build=True)``), so both harnesses run the same object code; Verilator
builds with one job.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from fpga_tests.fuzz_checks import MIN_ACCEPTED, PROPERTIES, PROPERTY_ROUTE, REFUSED, refusal_reason

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / 'docs' / 'fuzz_results.jsonl'
REPORT = ROOT / 'docs' / 'fuzz.md'
# Seeds of each property start far from the default suite's and from each other.
FIRST_SEED = {'csim-io_parallel': 100_000, 'csim-io_stream': 200_000, 'rtl': 300_000, 'pruned': 400_000}
# Accepted examples each property needs (issue 27: >= 500 through C simulation over both io
# types, >= 100 through RTL, >= 50 through the pruner's route).
TARGETS = {'csim-io_parallel': 250, 'csim-io_stream': 250, 'rtl': 100, 'pruned': 50}
# Records written before campaigns were numbered (the 2026-12-02/04 campaign, on the code
# before the layer-registry redesign) belong to campaign 1.
FIRST_CAMPAIGN = 1
# Campaigns a run never adds to: campaign 1 kept no commit or run per example and drew
# from the generator before the layer-registry redesign; it stays in the record as history.
CLOSED_CAMPAIGNS = {1}
MISMATCH_EXIT, SHARE_EXIT = 3, 1

PROPERTY_TEXT = {
    'csim-io_parallel': 'C simulation (testbench and hls4ml predict() on one build), io_parallel',
    'csim-io_stream': 'C simulation (testbench and hls4ml predict() on one build), io_stream',
    'rtl': 'RTL: Verilator cycle-accurate simulation, da4ml predict() and traced logic',
    'pruned': 'pruner route: float model with BatchNorm, random masks, cut, fold, quantize, C simulation',
}


# --- one example ---------------------------------------------------------------------------


def _worker_init() -> None:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _drawn(prop: str, seed: int, spec: dict | None) -> tuple[dict, dict]:
    """The example's spec (drawn from its seed unless given) and the start of its record."""
    from fpga_tests.fuzz_checks import spec_for
    from fpga_tests.fuzz_models import spec_classes

    spec = spec_for(prop, seed) if spec is None else spec
    return spec, {'property': prop, 'seed': seed, 'layers': sorted(spec_classes(spec, prop != 'pruned'))}


def crashed_record(prop: str, seed: int, spec: dict | None = None) -> dict:
    """The record of an example whose worker process died running it (a native crash)."""
    spec, record = _drawn(prop, seed, spec)
    return {
        **record,
        'outcome': 'error',
        'message': 'the worker process died running it (a native crash, e.g. an assertion in C++ code loaded into '
        f'Python); its output is lost: python -m fpga_tests.fuzz_campaign --replay {prop}:{seed} shows it',
        'spec': spec,
        'seconds': 0.0,
    }


def run_example(prop: str, seed: int, spec: dict | None = None) -> dict:
    """One example (or a recorded ``spec``) in a fresh temporary directory; never raises
    (a mismatch or a crash is a result, recorded with the spec)."""
    from fpga_tests.fuzz_checks import check_example

    spec, record = _drawn(prop, seed, spec)
    start = time.perf_counter()
    log = io.StringIO()
    try:
        with (
            tempfile.TemporaryDirectory(prefix=f'fuzz-{prop}-') as tmp,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            outcome = check_example(prop, seed, Path(tmp), spec=spec, jobs=1)
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


# --- the record ----------------------------------------------------------------------------


def runs_file(results: Path) -> Path:
    return results.with_name(results.stem + '_runs.jsonl')


def load_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_jsonl(path: Path, record: dict) -> None:
    """One line, flushed and synced: a killed run keeps every example it finished."""
    with path.open('a') as sink:
        sink.write(json.dumps(record) + '\n')
        sink.flush()
        os.fsync(sink.fileno())


def campaign_of(record: dict) -> int:
    return int(record.get('campaign', FIRST_CAMPAIGN))


def examples_of(records: list[dict], campaign: int) -> list[dict]:
    return [r for r in records if 'recheck' not in r and campaign_of(r) == campaign]


def finding_key(record: dict) -> str:
    """How a finding is named in the record: campaign, property and seed."""
    return f'{campaign_of(record)}:{record["property"]}:{record["seed"]}'


def findings_of(records: list[dict]) -> list[dict]:
    """Every mismatch and crash ever recorded, in the order they were found."""
    return [r for r in records if 'recheck' not in r and r['outcome'] in ('mismatch', 'error')]


def latest_rechecks(records: list[dict]) -> dict[str, dict]:
    latest = {}
    for r in records:
        if 'recheck' in r:
            latest[r['recheck']] = r
    return latest


def merge_runs(lines: list[dict]) -> list[dict]:
    """One dict per run: its start line updated by its end line (a run without an end was stopped)."""
    runs: dict[str, dict] = {}
    for i, line in enumerate(lines):
        key = str(line.get('run', f'legacy-{i}'))
        runs.setdefault(key, {'campaign': FIRST_CAMPAIGN}).update(line)
    return list(runs.values())


def git_commit() -> dict:
    """The checkout's commit and whether it has uncommitted changes (outside the record)."""

    def git(*args):
        return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True, check=False)

    head = git('rev-parse', 'HEAD')
    if head.returncode != 0:
        return {'commit': 'unknown (not a git checkout)', 'dirty': None}
    status = git('status', '--porcelain', '--', '.', ':(exclude)docs/fuzz*')
    return {'commit': head.stdout.strip(), 'dirty': bool(status.stdout.strip())}


def generator_fingerprint() -> str:
    """A hash of the code that turns a property and a seed into a spec and a check."""
    import hashlib

    digest = hashlib.sha256()
    for name in ('fuzz_models.py', 'fuzz_checks.py'):
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:12]


def tool_versions() -> dict:
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
    try:
        from importlib.metadata import version

        qkeras_version = version('qkeras-v3')
    except Exception:  # noqa: BLE001 - another QKeras distribution
        qkeras_version = getattr(qkeras, '__version__', 'unknown')
    return {
        'python': platform.python_version(),
        'numpy': np.__version__,
        'tensorflow': tf.__version__,
        'keras': keras.__version__,
        'qkeras': qkeras_version,
        'hls4ml': hls4ml.__version__,
        'da4ml': da4ml.__version__,
        'verilator': verilator,
        'g++': gxx[0] if gxx else 'g++',
    }


# --- what a campaign still needs -----------------------------------------------------------


def max_tries(target: int) -> int:
    """The most examples a property may need: beyond this its share is below 80% anyway."""
    return math.ceil(target / MIN_ACCEPTED)


def missing_kinds(prop: str, mine: list[dict]) -> set[str]:
    """The layer classes of the property's route that none of its accepted examples held
    (none for the pruner's route, whose float models become what the pruner makes)."""
    if prop == 'pruned':
        return set()
    from hls_backend.hls.layers import HLS_LAYERS
    from hls_backend.rtl.layers import RTL_LAYERS

    registry = RTL_LAYERS if PROPERTY_ROUTE[prop] == 'rtl' else HLS_LAYERS
    drawn = set().union(*(r.get('layers', []) for r in mine if r['outcome'] == 'exact'))
    return set(registry.supported()) - drawn


def next_tasks(examples: list[dict], targets: dict[str, int], running: dict[str, set[int]]) -> list[tuple[str, int]]:
    """Examples to start now, one per property that still needs one, the least advanced
    first (tried and running examples per target), so that a run cut short by --hours
    covers every property. A property needs another while its accepted and running
    examples fall short of its target and it has tried fewer than the target allows
    (``max_tries``), or, past its target, while a layer kind of its route is still
    undrawn (up to twice the target). A property's seeds run from its first seed upwards,
    skipping those recorded or running (a resumed campaign goes on)."""
    tasks = []
    progress = {}
    for prop, target in targets.items():
        mine = [r for r in examples if r['property'] == prop]
        busy = running.get(prop, set())
        accepted = sum(r['outcome'] == 'exact' for r in mine)
        tried = len(mine) + len(busy)
        short = accepted + len(busy) < target and tried < max_tries(target)
        undrawn = target > 0 and not busy and tried < 2 * target and missing_kinds(prop, mine)
        if not (short or undrawn):
            continue
        taken = {r['seed'] for r in mine} | busy
        seed = FIRST_SEED[prop]
        while seed in taken:
            seed += 1
        tasks.append((prop, seed))
        progress[prop] = tried / target
    return sorted(tasks, key=lambda task: progress[task[0]])


# --- the report ----------------------------------------------------------------------------


def summarise(examples: list[dict], props: list[str]) -> dict:
    summary = {}
    for prop in props:
        mine = [r for r in examples if r['property'] == prop]
        outcomes = Counter(r['outcome'] for r in mine)
        tried = len(mine)
        summary[prop] = {
            'tried': tried,
            'accepted_exact': outcomes['exact'],
            'refused': outcomes['refused'],
            'mismatches': outcomes['mismatch'],
            'errors': outcomes['error'],
            'accepted_share': round(outcomes['exact'] / tried, 4) if tried else None,
            'refusal_reasons': dict(Counter(r['reason'] for r in mine if r['outcome'] == 'refused').most_common()),
            'mean_seconds': round(float(np.mean(seconds)), 1)
            if (seconds := [r['seconds'] for r in mine if 'seconds' in r])
            else None,
        }
    return summary


def kinds_drawn(examples: list[dict]) -> dict[str, dict[str, int]]:
    """Per hardware route, for every layer class its registry supports, how many accepted
    examples held it (the pruner's float models are counted by the property itself)."""
    from hls_backend.hls.layers import HLS_LAYERS
    from hls_backend.rtl.layers import RTL_LAYERS

    registries = {'hls': HLS_LAYERS, 'rtl': RTL_LAYERS}
    drawn = {}
    for route, registry in registries.items():
        counts = Counter()
        for r in examples:
            if r['outcome'] == 'exact' and r['property'] != 'pruned' and PROPERTY_ROUTE[r['property']] == route:
                counts.update(r.get('layers', []))
        drawn[route] = {name: counts[name] for name in registry.supported()}
    return drawn


def _clipped(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters; a cut one ends in an ellipsis, so the
    report never reads as if the message ended there."""
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + '…'


def fate(finding: dict, rechecks: dict[str, dict]) -> str:
    recheck = rechecks.get(finding_key(finding))
    parts = []
    if finding.get('fixed_by'):
        parts.append(f'fixed by {finding["fixed_by"]}')
    if recheck is None:
        parts.append('not re-checked yet')
    else:
        when = f'{recheck.get("date", "?")}, commit {str(recheck.get("commit", "?"))[:10]}'
        if recheck['outcome'] == 'exact':
            parts.append(f'exact when re-checked ({when})')
        elif recheck['outcome'] == 'refused':
            message = _clipped(recheck.get('message', recheck.get('reason', '')), 240)
            parts.append(f'refused up front when re-checked ({when}): {message}')
        else:
            message = _clipped(recheck['message'], 200)
            parts.append(f'STILL {recheck["outcome"].upper()} when re-checked ({when}): {message}')
    return '; '.join(parts)


def verdicts(summary: dict, drawn: dict, targets: dict[str, int]) -> dict:
    shares_ok = {p: s['tried'] == 0 or s['accepted_exact'] >= MIN_ACCEPTED * s['tried'] for p, s in summary.items()}
    csim = sum(summary[p]['accepted_exact'] for p in summary if p.startswith('csim-'))
    csim_target = sum(t for p, t in targets.items() if p.startswith('csim-'))
    reached = {
        'csim': csim >= csim_target,
        **{p: summary[p]['accepted_exact'] >= targets[p] for p in summary if not p.startswith('csim-')},
    }
    missing_kinds = {route: sorted(k for k, n in counts.items() if n == 0) for route, counts in drawn.items()}
    return {
        'shares_ok': shares_ok,
        'targets_reached': reached,
        'missing_kinds': missing_kinds,
        'complete': all(reached.values()) and not any(missing_kinds.values()),
    }


def remaining_time(summary: dict, targets: dict[str, int]) -> str:
    """The worker time the rest of the campaign needs, at the measured share and seconds per example."""
    seconds = 0.0
    for prop, target in targets.items():
        s = summary[prop]
        short = max(0, target - s['accepted_exact'])
        if not short:
            continue
        if not s['tried'] or s['mean_seconds'] is None:
            return 'Too few examples yet to estimate the time the rest needs.'
        share = max(s['accepted_exact'] / s['tried'], MIN_ACCEPTED)
        seconds += min(short / share, max_tries(target) - s['tried']) * s['mean_seconds']
    if not seconds:
        return ''
    return (
        f'At the measured share and seconds per example, the rest needs about {seconds / 3600:.1f} worker-hours '
        f'({seconds / 7200:.1f} h with `FUZZ_JOBS=2` on 2 free cores).'
    )


def write_report(records: list[dict], runs: list[dict], campaign: int, targets: dict[str, int], out: Path) -> dict:
    """docs/fuzz.md and docs/fuzz.json from the record: the campaign's counts, the layer
    kinds it drew, its runs, and every finding ever recorded with its fate."""
    props = list(targets)
    examples = examples_of(records, campaign)
    summary = summarise(examples, props)
    drawn = kinds_drawn(examples)
    verdict = verdicts(summary, drawn, targets)
    my_runs = [r for r in runs if int(r.get('campaign', FIRST_CAMPAIGN)) == campaign]
    rechecks = latest_rechecks(records)
    findings = [{**f, 'fate': fate(f, rechecks)} for f in findings_of(records)]
    minutes = round(sum(float(r.get('minutes') or 0) for r in my_runs), 1)
    data = {
        'campaign': campaign,
        'runs': my_runs,
        'wall_minutes': minutes,
        'targets': targets,
        'summary': summary,
        'kinds_drawn': drawn,
        'verdict': verdict,
        'findings': [{k: v for k, v in f.items() if k != 'traceback'} for f in findings],
    }
    out.with_suffix('.json').write_text(json.dumps(data, indent=2) + '\n')

    csim_accepted = sum(summary[p]['accepted_exact'] for p in props if p.startswith('csim-'))
    lines = [
        '# Fuzz campaign',
        '',
        f'Generated by `python -m fpga_tests.fuzz_campaign --report-only` from the record '
        '([fuzz_results.jsonl](fuzz_results.jsonl): one line per example and per re-check of a finding, '
        '[fuzz_results_runs.jsonl](fuzz_results_runs.jsonl): one line per run start and end; appended to, never '
        f'rewritten). Campaign {campaign}: {len(my_runs)} run(s), {minutes} min of wall time. Every example is a '
        'random architecture drawn from its property and seed (`fpga_tests.fuzz_checks.spec_for`); an accepted '
        'model must equal the QKeras model on every output bit of every sample (40 per csim example, 30 per RTL '
        'example); a refused one must be refused up front, and counts against its property.',
        '',
        f'**{csim_accepted} accepted architectures through C simulation and hls4ml predict() over both io types, '
        f'{summary.get("rtl", {}).get("accepted_exact", 0)} through RTL, '
        f'{summary.get("pruned", {}).get("accepted_exact", 0)} through the pruner route; '
        f'{sum(s["mismatches"] for s in summary.values())} mismatches, '
        f'{sum(s["errors"] for s in summary.values())} crashes in this campaign; '
        f'{len(findings)} finding(s) in the whole record (below, with their fate).**',
        '',
        '| property | tried | accepted, exact | refused | accepted share (>= 80%) | mismatches | crashes | '
        's / example |',
        '|---|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for prop in props:
        s = summary[prop]
        share = f'{s["accepted_share"]:.0%}' if s['tried'] else '-'
        mark = '' if verdict['shares_ok'][prop] else ' **below 80%**'
        lines.append(
            f'| {PROPERTY_TEXT[prop]} | {s["tried"]} | {s["accepted_exact"]} | {s["refused"]} | {share}{mark} | '
            f'{s["mismatches"]} | {s["errors"]} | {s["mean_seconds"]} |'
        )
    csim_target = sum(t for p, t in targets.items() if p.startswith('csim-'))
    target_text = [f'{csim_target} accepted through C simulation over both io types']
    target_text += [
        f'{targets[p]} through {"RTL" if p == "rtl" else "the pruner route"}' for p in props if p in ('rtl', 'pruned')
    ]
    reached = verdict['targets_reached']
    lines += [
        '',
        f'Targets: {", ".join(target_text)}; every layer kind each route supports drawn and accepted; at least 80% '
        'of the drawn models of each property accepted; no mismatch. '
        + (
            '**All met.**'
            if verdict['complete'] and all(verdict['shares_ok'].values())
            else f'**Not met yet**: {", ".join(k for k, ok in reached.items() if not ok) or "none"} short of the '
            'target (`make fuzz` resumes the campaign)'
            + (f'; kinds not drawn: {verdict["missing_kinds"]}' if any(verdict['missing_kinds'].values()) else '')
            + '. '
            + remaining_time(summary, targets)
        ),
        '',
        '## Layer kinds drawn',
        '',
        'Accepted examples holding each layer class the route supports (from its registry, '
        '`HLS_LAYERS.supported()` / `RTL_LAYERS.supported()`; the pruner route draws float models):',
        '',
        '| route | ' + ' | '.join(['layer class', 'accepted examples']) + ' |',
        '|---|---|---:|',
    ]
    for route, counts in drawn.items():
        for name, n in counts.items():
            lines.append(f'| {route.upper()} | {name} | {n if n else "**0: not drawn**"} |')
    lines += ['', '## Refusals by reason', '']
    for prop in props:
        reasons = summary[prop]['refusal_reasons']
        if reasons:
            lines.append(f'{PROPERTY_TEXT[prop]}:')
            lines += [f'- {count} x {reason}' for reason, count in reasons.items()]
            lines.append('')
    lines += [
        '## Findings',
        '',
        'Every mismatch or crash any campaign recorded, kept after its fix (a finding is history, not state). '
        "Each run re-checks every finding's recorded spec on the code at hand; the fate is the latest re-check.",
        '',
    ]
    if findings:
        for f in findings:
            found = f.get('found') or next((r.get('started', '?') for r in runs if r.get('run') == f.get('run')), '?')
            lines.append(
                f'- campaign {campaign_of(f)}, `{f["property"]}` seed {f["seed"]} (found {str(found)[:10]}): '
                f'{f["outcome"]}: {_clipped(f["message"], 300)}. Fate: {f["fate"]}.'
            )
    else:
        lines.append('None.')
    lines += ['', f'## Runs of campaign {campaign}', '']
    lines += [
        '| run | started | minutes | examples | jobs | commit | hls4ml | da4ml | qkeras | ended |',
        '|---|---|---:|---:|---:|---|---|---|---|---|',
    ]
    for r in my_runs:
        versions = r.get('versions', {})
        commit = str(r.get('commit', '?'))[:10] + (' (+ local changes)' if r.get('dirty') else '')
        lines.append(
            f'| {r.get("run", "?")} | {str(r.get("started", "?"))[:16]} | {r.get("minutes", "?")} | '
            f'{r.get("examples", "?")} | {r.get("jobs", "?")} | {commit} | {versions.get("hls4ml", "?")} | '
            f'{versions.get("da4ml", "?")} | {versions.get("qkeras", "?")} | {r.get("status", "stopped (no end line)")} |'
        )
    lines += [
        '',
        'Replay one example: `.venv/bin/python -m fpga_tests.fuzz_campaign --replay csim-io_stream:200000` '
        '(the spec of every finding is in its record).',
        '',
    ]
    out.write_text('\n'.join(lines))
    return {'summary': summary, 'verdict': verdict, 'findings': findings}


# --- running -------------------------------------------------------------------------------


def findings_to_recheck(records: list[dict], run: dict) -> list[dict]:
    """Every finding with a recorded spec that this commit has not re-checked yet."""
    latest = latest_rechecks(records)
    due = []
    for finding in findings_of(records):
        checked_here = latest.get(finding_key(finding), {}).get('commit') == run['commit'] and not run['dirty']
        if finding.get('spec') is not None and not checked_here:
            due.append(finding)
    return due


def recheck_record(finding: dict, result: dict, run: dict) -> dict:
    return {
        'recheck': finding_key(finding),
        'run': run['run'],
        'campaign': run['campaign'],
        'commit': run['commit'],
        'date': run['started'],
        **{k: result[k] for k in ('outcome', 'reason', 'message', 'seconds') if k in result},
    }


def replay(text: str) -> int:
    prop, _, seed = text.partition(':')
    if prop not in PROPERTIES or not seed.isdigit():
        print(f'--replay {text!r}: expected PROPERTY:SEED with PROPERTY one of {", ".join(PROPERTIES)}')
        return 2
    _worker_init()
    record = run_example(prop, int(seed))
    print(json.dumps({k: v for k, v in record.items() if k != 'traceback'}, indent=2))
    if 'traceback' in record:
        print(record['traceback'])
    return MISMATCH_EXIT if record['outcome'] in ('mismatch', 'error') else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m fpga_tests.fuzz_campaign', description=__doc__.split('\n\n')[0])
    p.add_argument('--csim', type=int, default=sum(TARGETS[k] for k in TARGETS if k.startswith('csim-')),
                   help='accepted examples through C simulation, over both io types (default 500)')  # fmt: skip
    p.add_argument('--rtl', type=int, default=TARGETS['rtl'], help='accepted RTL examples (default 100)')
    p.add_argument('--pruned', type=int, default=TARGETS['pruned'], help='accepted pruner-route examples (default 50)')
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1, help='worker processes (default: CPUs)')
    p.add_argument('--hours', type=float, default=4.0, help='start no new example after this (default 4)')
    p.add_argument('--results', type=Path, default=RESULTS, help='the record: one line per example')
    p.add_argument('--out', type=Path, default=REPORT)
    p.add_argument('--new-campaign', action='store_true', help='start a new campaign (earlier records are kept)')
    p.add_argument('--report-only', action='store_true', help='rewrite the report from the record, run nothing')
    p.add_argument('--no-recheck', action='store_true', help='do not re-check earlier findings first')
    p.add_argument('--replay', metavar='PROPERTY:SEED', help='run one example again, record nothing')
    args = p.parse_args(argv)
    if args.replay:
        return replay(args.replay)

    targets = {
        'csim-io_parallel': math.ceil(args.csim / 2),
        'csim-io_stream': args.csim // 2,
        'rtl': args.rtl,
        'pruned': args.pruned,
    }
    results = args.results
    results.parent.mkdir(parents=True, exist_ok=True)
    records = load_jsonl(results)
    run_lines = load_jsonl(runs_file(results))
    campaigns = [campaign_of(r) for r in records] + [int(r.get('campaign', FIRST_CAMPAIGN)) for r in run_lines]
    campaign = max(campaigns, default=FIRST_CAMPAIGN - 1)
    if args.report_only:
        report = write_report(records, merge_runs(run_lines), campaign, targets, args.out)
        print(f'wrote {args.out} and {args.out.with_suffix(".json")}')
        return _exit_code(report, [])
    generator = generator_fingerprint()
    earlier_generators = {r.get('generator') for r in merge_runs(run_lines) if r.get('campaign') == campaign}
    if earlier_generators - {generator} and not args.new_campaign:
        # A seed names a spec only under the generator that drew it: resuming across a
        # change of fuzz_models.py / fuzz_checks.py would count other models under old names.
        print(f'the generator changed since campaign {campaign} started: starting campaign {campaign + 1}')
    if (
        args.new_campaign
        or campaign < FIRST_CAMPAIGN
        or campaign in CLOSED_CAMPAIGNS
        or earlier_generators - {generator}
    ):
        campaign = max(campaign, *CLOSED_CAMPAIGNS) + 1

    started = datetime.now(UTC)
    earlier = [r for r in merge_runs(run_lines) if int(r.get('campaign', FIRST_CAMPAIGN)) == campaign]
    run = {
        'run': f'{campaign}.{len(earlier) + 1}',  # campaign.run number
        'campaign': campaign,
        'started': started.strftime('%Y-%m-%d %H:%M UTC'),
        **git_commit(),
        'generator': generator,
        'versions': tool_versions(),
        'jobs': args.jobs,
        'cpus': os.cpu_count(),
        'command': 'python -m fpga_tests.fuzz_campaign ' + ' '.join(argv if argv is not None else sys.argv[1:]),
    }
    append_jsonl(runs_file(results), run)
    # SIGTERM (a job scheduler, kill) ends the run as Ctrl-C does: with its end line and report.
    signal.signal(signal.SIGTERM, _interrupt)
    status = 'finished'
    start = time.time()
    deadline = start + args.hours * 3600
    rechecks = [] if args.no_recheck else findings_to_recheck(records, run)
    try:
        _run_examples(records, run, targets, args.jobs, deadline, results, rechecks)
    except KeyboardInterrupt:
        status = 'interrupted'
    except BaseException as exc:
        # The run's end line says how it ended, whatever ended it; then the error propagates.
        append_jsonl(runs_file(results), {'run': run['run'], 'campaign': campaign,
                     'minutes': round((time.time() - start) / 60, 1), 'status': f'crashed: {type(exc).__name__}: {exc}'})  # fmt: skip
        raise
    records = load_jsonl(results)
    new = [r for r in records if r.get('run') == run['run'] and 'recheck' not in r]
    append_jsonl(
        runs_file(results),
        {'run': run['run'], 'campaign': campaign, 'minutes': round((time.time() - start) / 60, 1),
         'examples': len(new), 'status': status},
    )  # fmt: skip
    report = write_report(records, merge_runs(load_jsonl(runs_file(results))), campaign, targets, args.out)
    for prop, s in report['summary'].items():
        print(f'{prop}: {s["tried"]} tried, {s["accepted_exact"]} exact, {s["refused"]} refused, '
              f'{s["mismatches"]} mismatches, {s["errors"]} crashes')  # fmt: skip
    print(f'wrote {args.out} and {args.out.with_suffix(".json")}')
    if status == 'interrupted':
        return 130
    return _exit_code(report, new)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f'signal {signum}')


def _exit_code(report: dict, new: list[dict]) -> int:
    open_findings = [f for f in report['findings'] if 'STILL' in f['fate']]
    if any(r['outcome'] in ('mismatch', 'error') for r in new) or open_findings:
        return MISMATCH_EXIT
    if not all(report['verdict']['shares_ok'].values()):
        return SHARE_EXIT
    return 0


# Worker processes start as fresh interpreters: TensorFlow is not fork-safe once it has run
# (a forked pool died at once after the re-checks had run in the main process).
MP_CONTEXT = 'spawn'


def _run_examples(records, run, targets, jobs, deadline, results, rechecks=()) -> list[dict]:
    """The re-checks of earlier findings first, then new examples until the targets or the
    deadline; every result appended to the record as it comes.

    A worker process that dies (a native crash: an assertion in C++ code loaded into
    Python, such as hls4ml's predict() library) breaks the whole pool and fails every
    example in flight; each of those runs again alone, so the one that kills its process
    is recorded as a crash (with its spec) and the others as they come out, and the
    campaign goes on with a new pool."""
    import multiprocessing

    from rich.progress import Progress

    examples = examples_of(records, run['campaign'])
    running: dict[str, set[int]] = {prop: set() for prop in targets}
    due = list(rechecks)
    futures = {}
    new = []
    context = multiprocessing.get_context(MP_CONTEXT)

    def new_pool(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, mp_context=context)

    def arguments(task) -> tuple:
        return (task['property'], task['seed'], task['spec']) if isinstance(task, dict) else task

    def alone(task) -> dict:
        with new_pool(1) as solo:
            try:
                return solo.submit(run_example, *arguments(task)).result()
            except BrokenProcessPool:
                prop, seed, *_ = arguments(task)
                return crashed_record(prop, seed, task['spec'] if isinstance(task, dict) else None)

    pool = new_pool(jobs)
    try:
        with Progress() as progress:
            bar = progress.add_task(f'fuzz campaign {run["campaign"]}', total=None)

            def submit(task) -> bool:
                """Starts a task; False when the pool broke since the last wait (a worker died
                while others finished): the in-flight futures then fail with BrokenProcessPool
                and are handled below, and the task is submitted again to the new pool."""
                nonlocal pool
                try:
                    futures[pool.submit(run_example, *arguments(task))] = task
                    return True
                except BrokenProcessPool:
                    if futures:
                        return False
                    pool.shutdown(wait=False, cancel_futures=True)  # nothing in flight to rerun
                    pool = new_pool(jobs)
                    futures[pool.submit(run_example, *arguments(task))] = task
                    return True

            def fill() -> None:
                while due and len(futures) < jobs:
                    if not submit(due[0]):
                        return
                    due.pop(0)
                while len(futures) < jobs and time.time() < deadline:
                    tasks = next_tasks(examples, targets, running)
                    if not tasks:
                        return
                    for prop, seed in tasks[: jobs - len(futures)]:
                        if not submit((prop, seed)):
                            return
                        running[prop].add(seed)

            def record_result(task, result: dict) -> None:
                if isinstance(task, dict):  # a re-check of an earlier finding
                    recheck = recheck_record(task, result, run)
                    append_jsonl(results, recheck)
                    progress.console.print(f're-checked finding {recheck["recheck"]}: {recheck["outcome"]}')
                    return
                prop, seed = task
                running[prop].discard(seed)
                record = {'campaign': run['campaign'], 'run': run['run'], **result}
                append_jsonl(results, record)
                examples.append(record)
                new.append(record)
                progress.advance(bar)
                if record['outcome'] in ('mismatch', 'error'):
                    progress.console.print(f'[red]{prop} seed {record["seed"]}: {record["message"][:300]}')

            fill()
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    if future not in futures:
                        continue  # already handled with a broken pool's other tasks
                    task = futures.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        in_flight = [task, *futures.values()]
                        futures.clear()
                        pool.shutdown(wait=False, cancel_futures=True)
                        progress.console.print(
                            f'[red]a worker process died; running the {len(in_flight)} example(s) in flight again, '
                            'one at a time'
                        )
                        for again in in_flight:
                            record_result(again, alone(again))
                        pool = new_pool(jobs)
                        break
                    record_result(task, result)
                fill()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return new


if __name__ == '__main__':
    sys.exit(main())
