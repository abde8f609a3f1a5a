"""Measurements of the tool itself: C-simulation throughput against Keras predict, g++
build time, da4ml RTL + Verilator build and simulation time, time and peak memory of
every ``lpsubnet run`` stage, and compress time against model size."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RTL_CONFIGS = ('quant_w8a8_seed0', 'lw_act_l1_s50_w8a8_seed0', 'lw_act_l1_s75_w8a8_seed0', 'lw_act_l1_s75_w4a4_seed0')


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + '\n')


def rtl_for_task(task_name: str, root: Path, log, tiny: bool = False) -> int:
    """da4ml RTL + Verilator for the saved seed-0 models of ``RTL_CONFIGS`` (cached);
    returns the number of models built."""
    from hls_backend import simulate_rtl, write_rtl

    from . import data as data_lib

    task = data_lib.load(task_name, tiny=tiny)
    built = 0
    for config in RTL_CONFIGS:
        model = root / task_name / 'models' / f'{config}.keras'
        out = root / task_name / 'rtl' / f'{config}.json'
        if out.exists() or not model.exists():
            continue
        with tempfile.TemporaryDirectory(prefix='bench_rtl_') as tmp:
            t0 = time.time()
            # The unpruned models are above the RTL size guard: the bench measures them on purpose.
            write_rtl(model, Path(tmp) / 'rtl', inputs=task.x_test[:200], force=True, force_large=True)
            t_write = time.time() - t0
            res = simulate_rtl(Path(tmp) / 'rtl', second_check=False)
        rec = {
            'config': config,
            'write_seconds': round(t_write, 2),
            'verilator_build_seconds': res.build_seconds,
            'sim_seconds': res.run_seconds,
            'samples': res.samples,
            'exact': res.exact,
            'latency_cycles': res.latency_cycles,
            'initiation_interval': res.initiation_interval,
            'lut_estimate': res.resources.get('LUT'),
            'ff_estimate': res.resources.get('FF'),
            'tool': res.tool,
        }
        _write(out, rec)
        built += 1
        log(f'[rtl {task_name}] {config}: LUT~{rec["lut_estimate"]}, latency {rec["latency_cycles"]} cycles, '
            f'exact {res.exact_matches}/{res.samples}, verilator build {rec["verilator_build_seconds"]} s')  # fmt: skip
    return built


def csim_throughput(root: Path, log, tiny: bool = False) -> dict:
    """One model (digits, method at 50% W8A8, seed 0): g++ C simulation vs Keras predict
    on the same inputs, in the same process."""
    from hls_backend import csim, write_project
    from hls_backend.core.model_io import load_qkeras_model

    from . import data as data_lib
    from . import experiments as E

    task = data_lib.load('digits', tiny=tiny)
    name = 'lw_act_l1_s50_w8a8_seed0'
    path = root / 'digits' / 'models' / f'{name}.keras'
    if not path.exists():
        E.run_config(task, 'lw_act_l1', 0.5, 8, 8, 0, root, tiny, save_model=True)
    n = 200 if tiny else 5000
    x = np.resize(task.x_test, (n, *task.x_test.shape[1:])).astype(np.float32)
    model = load_qkeras_model(path)
    if model.inputs[0]._keras_history.operation.name == 'input':  # hls4ml reserves this name: rename (chain models)
        import keras

        inp = keras.Input(model.inputs[0].shape[1:], name='features')
        h = inp
        for layer in model.layers[1:]:
            h = layer(h)
        model = keras.Model(inp, h, name=model.name)
        path = Path(tempfile.mkdtemp(prefix='bench_model_')) / f'{name}.keras'
        model.save(path)
    model.predict(x[:512], batch_size=512, verbose=0)  # warm-up (tracing)
    timings = {}
    for batch in (1, 512):
        xs = x if batch > 1 else x[: min(n, 500)]
        t0 = time.perf_counter()
        model.predict(xs, batch_size=batch, verbose=0)
        timings[batch] = len(xs) / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(prefix='bench_csim_') as tmp:
        t0 = time.time()
        write_project(path, Path(tmp) / 'hls', inputs=x, force=True)
        t_write = time.time() - t0
        res = csim(Path(tmp) / 'hls', second_check=False)
    rec = {
        'model': f'digits/{name}',
        'samples': n,
        'hls_write_seconds': round(t_write, 2),
        'gpp_build_seconds': res.build_seconds,
        'csim_run_seconds': res.run_seconds,
        'csim_samples_per_second': n / res.run_seconds if res.run_seconds else None,
        'keras_predict_samples_per_second_batch512': timings[512],
        'keras_predict_samples_per_second_batch1': timings[1],
        'exact': f'{res.exact_matches}/{res.samples}',
    }
    rec['csim_over_keras_batch512'] = (
        rec['csim_samples_per_second'] / timings[512] if rec['csim_samples_per_second'] else None
    )
    rec['csim_over_keras_batch1'] = (
        rec['csim_samples_per_second'] / timings[1] if rec['csim_samples_per_second'] else None
    )
    log(f'[tool] csim {rec["csim_samples_per_second"]:.0f} samples/s vs Keras {timings[512]:.0f} (batch 512) / '
        f'{timings[1]:.0f} (batch 1); g++ build {res.build_seconds} s')  # fmt: skip
    return rec


def pipeline_stages(log, tiny: bool = False) -> dict:
    """``lpsubnet run --out TMP --force`` on the default digits job; its metrics.json stages."""
    exe = Path(sys.executable).parent / 'lpsubnet'
    with tempfile.TemporaryDirectory(prefix='bench_run_') as tmp:
        out = Path(tmp) / 'run'
        cmd = [str(exe), 'run', '--out', str(out), '--force']
        if tiny:
            cfg = Path(tmp) / 'tiny.yaml'
            cfg.write_text('model:\n  epochs: 1\ncompress:\n  epochs: 3\n  qat_epochs: 1\nrtl:\n  enabled: false\n')
            cmd.insert(2, str(cfg))
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
        wall = time.time() - t0
        metrics = out / 'metrics.json'
        if not metrics.exists():
            for candidate in out.rglob('metrics.json'):
                metrics = candidate
                break
        data = json.loads(metrics.read_text()) if metrics.exists() else {}
        rec = {'command': 'lpsubnet run --out <tmp> --force', 'exit_code': proc.returncode, 'wall_seconds': round(wall, 1),
               'stages': data.get('stages'), 'stderr_tail': proc.stderr[-800:] if proc.returncode else ''}  # fmt: skip
    log(f'[tool] lpsubnet run: exit {proc.returncode}, {wall:.0f} s')
    return rec


def compress_scaling(root: Path, log, tiny: bool = False) -> list[dict]:
    """compress time for MLPs of growing depth and width on 4,000 letter samples (digits
    flattened if letter is missing); 1 epoch per layer window + 1 epoch + 1 QAT epoch."""
    import keras

    import pruner

    from . import data as data_lib

    try:
        task = data_lib.load('letter', tiny=tiny)
    except data_lib.DatasetMissing:
        task = data_lib.load('digits', tiny=tiny)
        task.x_train = task.x_train.reshape(len(task.x_train), -1)
        task.x_val = task.x_val.reshape(len(task.x_val), -1)
    x, y = task.x_train[:4000], task.y_train[:4000]
    n_out = int(task.y_train.max()) + 1
    sizes = [(32, 16), (64, 32, 32), (128, 64, 64, 32), (256, 128, 128, 64, 64)]
    if tiny:
        sizes = sizes[:2]
    out = []
    for widths in sizes:
        keras.utils.set_random_seed(0)
        inp = keras.Input(x.shape[1:])
        h = inp
        for i, w in enumerate(widths):
            h = keras.layers.Dense(w, activation='relu', name=f'fc{i + 1}')(h)
        model = keras.Model(inp, keras.layers.Dense(n_out, activation='softmax', name='out')(h))
        t0 = time.time()
        _, manifest = pruner.compress(model, (x, y), (task.x_val, task.y_val), sparsity=0.5, weight_bits=8,
                                      activation_bits=8, epochs=len(widths) + 1, qat_epochs=1, batch_size=128)  # fmt: skip
        rec = {'widths': list(widths), 'layers': len(widths) + 1, 'channels': int(sum(widths)),
               'parameters': pruner.parameters(model), 'epochs': len(widths) + 1, 'qat_epochs': 1,
               'samples': len(x), 'seconds': round(time.time() - t0, 2)}  # fmt: skip
        out.append(rec)
        log(f'[tool] compress {widths}: {rec["seconds"]} s')
    return out


def run_tool(root: Path, log, tiny: bool = False) -> int:
    """Every tool measurement not yet cached; returns the number that failed."""
    tdir = root / 'tool'
    steps = {
        'csim_throughput': lambda: csim_throughput(root, log, tiny),
        'compress_scaling': lambda: {'rows': compress_scaling(root, log, tiny)},
        'pipeline_stages': lambda: pipeline_stages(log, tiny),
    }
    failed = 0
    for name, fn in steps.items():
        out = tdir / f'{name}.json'
        if out.exists():
            continue
        try:
            _write(out, fn())
        except Exception as exc:
            failed += 1
            log(f'[tool] {name} FAILED: {exc.__class__.__name__}: {exc}')
    if shutil.which('g++') is None:
        log('[tool] g++ not found: no C simulation')
    for task in ('digits', 'letter'):
        if (root / task / 'models').exists():
            try:
                rtl_for_task(task, root, log, tiny)
            except Exception as exc:
                failed += 1
                log(f'[tool] rtl {task} FAILED: {exc.__class__.__name__}: {exc}')
    return failed
