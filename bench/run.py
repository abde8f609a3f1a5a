"""Run the benchmarks: ``python -m bench.run --task digits|letter|fmnist|sr|motivation|tool|all
[--quick] [--seeds N] [--only GLOBS] [--rtl] [--tiny] [--results DIR] [--threads N] [--shard I/N]``.

One JSON per configuration in ``<results>/<task>/<config>.json``; an existing JSON is not
recomputed, so an interrupted run resumes where it stopped. ``--quick``: digits only, 1
seed, the main methods and the width-reduced network at 50% and 75% with W8A8 (about
10 minutes on 2 cores). ``--only``: a subset of a task's configurations by name.
``--tiny`` (or BENCH_TINY=1): 1 epoch on tiny subsets, 1 seed, 2 methods (for the tests).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

MAIN_METHODS = ('lw_act_l1', 'os_act_l1', 'os_weight_l1', 'random', 'width_scratch')
ALL_METHODS = (
    'lw_act_l1', 'os_act_l1', 'lw_act_l0', 'os_act_l0', 'os_weight_l1', 'gradual_weight_l1', 'random',
    'width_scratch', 'unstructured',
)  # fmt: skip
REDUCED_METHODS = ('lw_act_l1', 'os_act_l1', 'os_weight_l1', 'random', 'width_scratch')
SPARSITIES = (0.5, 0.75)
ALL_BITS = ((8, 8), (4, 8), (4, 4))
REDUCED_BITS = ((8, 8), (4, 8))
FULL_SEEDS = {'digits': 5, 'letter': 5, 'fmnist': 3, 'sr': 3}
# Ablations (digits, letter): 75% sparsity, W8A8, layerwise activation-L1. The fine-tuning
# after the schedule is its own phase, so every variant gets the same recovery budget.
ABLATION_WINDOWS = (0.5, 1.0, 2.0, 4.0)
ABLATION_REFRESH = (0.05, 0.25, 1.0)  # at window 1 epoch
# Distillation from the float model: (alpha, temperature) settings measured against none.
ABLATION_DISTILL = ((0.5, 2.0), (0.9, 4.0), (0.25, 1.0))


def plan(task: str, quick: bool, seeds: int | None, tiny: bool) -> list[dict]:
    """Every configuration of ``task``: dicts of run_config arguments."""
    if tiny:
        seeds_n, methods, bits, sparsities = 1, ('lw_act_l1', 'os_weight_l1'), ((8, 8),), (0.5,)
    elif quick:
        seeds_n, methods, bits, sparsities = 1, MAIN_METHODS, ((8, 8),), SPARSITIES
    else:
        seeds_n = FULL_SEEDS[task]
        methods, bits = (ALL_METHODS, ALL_BITS) if task in ('digits', 'letter') else (REDUCED_METHODS, REDUCED_BITS)
        sparsities = SPARSITIES
    if seeds is not None:
        seeds_n = seeds
    configs = []
    for seed in range(seeds_n):
        configs.append(dict(method='float', sparsity=None, wb=None, ab=None, seed=seed))
        for wb, ab in bits:
            configs.append(dict(method='quant', sparsity=None, wb=wb, ab=ab, seed=seed))
            for s in sparsities:
                for m in methods:
                    configs.append(dict(method=m, sparsity=s, wb=wb, ab=ab, seed=seed))
        if task in ('digits', 'letter') and not quick and not tiny:
            configs.extend(ablations(task, seed))
    return configs


def ablations(task: str, seed: int) -> list[dict]:
    def abl(method, tag, **overrides):
        return dict(method=method, sparsity=0.75, wb=8, ab=8, seed=seed, name=f'abl-{tag}_s75_w8a8_seed{seed}',
                    overrides=overrides)  # fmt: skip

    out = [abl('abl_window', f'window{w:g}', interval=w, refresh=w / 4) for w in ABLATION_WINDOWS]
    out += [abl('abl_refresh', f'refresh{r:g}', interval=1.0, refresh=r) for r in ABLATION_REFRESH if r != 0.25]
    out.append(abl('abl_reverse', 'reverse'))
    # Quantization: the matrix refreshes the integer bits during the first quarter of QAT (the
    # library default); `qfixed` keeps the calibrated ones, `joint` prunes the quantized model in one fit.
    out.append(abl('abl_qfixed', 'qfixed', range_refresh=None))
    out.append(abl('abl_joint', 'joint', joint=True))
    for alpha, temperature in ABLATION_DISTILL:
        out.append(abl('abl_distill', f'distill-a{alpha:g}-T{temperature:g}', distill=True, distill_alpha=alpha,
                       distill_temperature=temperature))  # fmt: skip
    alpha, temperature = ABLATION_DISTILL[0]  # the fair, strong baseline: the small network with the same teacher
    out.append(abl('abl_scratch_distill', f'scratch-distill-a{alpha:g}-T{temperature:g}', distill_alpha=alpha,
                   distill_temperature=temperature))  # fmt: skip
    return out


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split('/'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--shard {text!r}: expected I/N, e.g. 0/2') from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f'--shard {text!r}: need 0 <= I < N')
    return index, count


def run_task(task_name: str, args, log) -> dict:
    from . import data as data_lib
    from . import experiments as E

    try:
        task = data_lib.load(task_name, tiny=args.tiny)
    except data_lib.DatasetMissing as exc:
        log(f'[{task_name}] SKIPPED: {exc}')
        return {'skipped': str(exc)}
    root = Path(args.results)
    (root / task_name).mkdir(parents=True, exist_ok=True)
    (root / task_name / 'task.json').write_text(json.dumps(task.describe(), indent=1) + '\n')
    configs = plan(task_name, args.quick, args.seeds, args.tiny)
    done = failed = 0
    t_task = time.time()
    shard, shards = args.shard
    for i, c in enumerate(configs, 1):
        if (i - 1) % shards != shard:
            continue  # another process's share (--shard)
        c = dict(c)
        name = c.pop('name', None) or E.config_name(c['method'], c['sparsity'], c['wb'], c['ab'], c['seed'])
        if args.only and not any(fnmatch.fnmatch(name, pattern) for pattern in args.only.split(',')):
            continue
        if (root / task_name / f'{name}.json').exists():
            continue
        try:
            t0 = time.time()
            rec = E.run_config(task, c['method'], c['sparsity'], c['wb'], c['ab'], c['seed'], root, args.tiny,
                               c.get('overrides'), name, save_model=c['seed'] == 0)  # fmt: skip
            done += 1
            log(f'[{task_name} {i}/{len(configs)}] {name}: {rec["metric_name"]} {rec["metric"]:.2f}, '
                f'footprint {rec["footprint_bits"] / 1000:.1f} kbit, {time.time() - t0:.1f} s')  # fmt: skip
        except Exception as exc:  # keep going; the report lists what is missing
            failed += 1
            log(f'[{task_name} {i}/{len(configs)}] {name}: FAILED {exc.__class__.__name__}: {exc}')
            traceback.print_exc()
    rtl = 0
    if args.rtl and task_name in ('digits', 'letter'):
        from .tool import rtl_for_task

        rtl = rtl_for_task(task_name, root, log)
    log(f'[{task_name}] {done} configurations run, {failed} failed, {time.time() - t_task:.0f} s')
    return {'run': done, 'failed': failed, 'rtl': rtl}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='python -m bench.run', description=__doc__.split('\n\n')[0])
    p.add_argument(
        '--task', default='digits', choices=['digits', 'letter', 'fmnist', 'sr', 'motivation', 'tool', 'all']
    )
    p.add_argument('--quick', action='store_true', help='digits only, 1 seed, main methods, W8A8, 50%% and 75%%')
    p.add_argument('--seeds', type=int, default=None, help='seeds per task (default: 5 digits/letter, 3 fmnist/sr)')
    p.add_argument(
        '--rtl', action='store_true', help='also da4ml RTL + Verilator for digits / letter (~1 min per model)'
    )
    p.add_argument('--tiny', action='store_true', help='1 epoch on tiny subsets, 1 seed, 2 methods (tests)')
    p.add_argument('--results', default=str(Path(__file__).resolve().parent / 'results'))
    p.add_argument('--threads', type=int, default=int(os.environ.get('BENCH_THREADS', '1')),
                   help='TensorFlow threads (default 1: the machine is shared)')  # fmt: skip
    p.add_argument('--only', default=None, metavar='GLOB',
                   help="run only the configurations whose name matches one of the comma-separated GLOBs, "
                   "e.g. 'abl-distill*' or 'lw_act_l1_*_w8a8_*,width_scratch_*'")  # fmt: skip
    p.add_argument('--shard', type=_shard, default=(0, 1), metavar='I/N',
                   help='run only every N-th configuration, starting at I (0-based): run I/N for I = 0..N-1 in N '
                   'processes to use N cores; all write the same cache')  # fmt: skip
    args = p.parse_args(argv)
    if os.environ.get('BENCH_TINY') == '1':
        args.tiny = True
    import tensorflow as tf

    tf.get_logger().setLevel('ERROR')
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    root = Path(args.results)
    root.mkdir(parents=True, exist_ok=True)
    logfile = open(root / 'run.log', 'a')

    def log(msg):
        line = f'{time.strftime("%H:%M:%S")} {msg}'
        print(line, flush=True)
        logfile.write(line + '\n')
        logfile.flush()

    cmd = 'python -m bench.run ' + ' '.join(argv if argv is not None else sys.argv[1:])
    log(f'start: {cmd}')
    if args.quick:
        tasks = ['digits']
    elif args.task == 'all':
        tasks = ['digits', 'letter', 'fmnist', 'sr', 'motivation', 'tool']
    else:
        tasks = [args.task]
    t0 = time.time()
    failed = computed = 0
    for t in tasks:
        if t == 'motivation':
            from .motivation import run_motivation

            run_motivation(root, log, tiny=args.tiny)
        elif t == 'tool':
            from .tool import run_tool

            failed += run_tool(root, log, tiny=args.tiny)
        else:
            outcome = run_task(t, args, log)
            failed += outcome.get('failed', 0)
            computed += outcome.get('run', 0) + outcome.get('rtl', 0)
            continue
        computed += 1
    runs = root / 'runs.json'
    history = json.loads(runs.read_text()) if runs.exists() else []
    if computed:  # provenance of the results: only commands that computed something
        history.append({'command': cmd, 'finished': time.strftime('%Y-%m-%d %H:%M:%S'),
                        'seconds': round(time.time() - t0, 1), 'threads': args.threads,
                        'cores': os.cpu_count()})  # fmt: skip
    runs.write_text(json.dumps(history, indent=1) + '\n')
    log(f'done in {time.time() - t0:.0f} s' + (f'; {failed} configurations FAILED (see above)' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
