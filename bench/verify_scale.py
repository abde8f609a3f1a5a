"""Exact verification at scale: samples per second of ``lpsubnet csim --inputs`` (the g++
testbench in shards over the cores) against Keras ``predict`` (batch 512 and 1) and
hls4ml's ``predict`` and the RTL route's cycle-accurate simulation (``lpsubnet rtl --inputs``:
the Verilator model of da4ml's design, one sample per clock; up to RTL_MAX_SAMPLES), on the
digits CNN and a jet-tagger-shaped MLP (16-64-32-32-5), for 1k, 100k and 1M random samples
on the input grid.

``python -m bench.verify_scale [--sizes 1000,100000,1000000] [--models jet_mlp,digits_cnn]
[--jobs N] [--results DIR] [--tiny]`` writes ``<results>/tool/verify_scale.json`` (rows
keyed by model and size; a rerun of some replaces those and keeps the others), then
``python -m bench.report`` puts the table into docs/benchmarks.md.

Each csim check runs as its own ``lpsubnet csim DIR --inputs X.npy --jobs N --json``
process: its ``run_seconds`` (testbench processes only) gives the throughput, its wall
time includes start-up, the QKeras reference and the verdict, and its peak memory is
``ru_maxrss`` of that process (the testbench processes are measured apart). Keras and
hls4ml run in this process on the same samples, TensorFlow on every core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = (1_000, 100_000, 1_000_000)
MODELS = ('jet_mlp', 'digits_cnn')
DIGITS_MODEL = 'digits/models/lw_act_l1_s50_w8a8_seed0.keras'  # written by `python -m bench.run --task digits`
KERAS_BATCH1_SAMPLES = 1_000  # batch-1 predict costs ~1 ms a call: timed on this many
HLS4ML_SAMPLES = 100_000  # hls4ml's predict() holds all outputs in memory: timed on at most this many
# Each RTL check rebuilds the Verilator model (minutes for the CNN): streamed at these sizes only.
RTL_MAX_SAMPLES = 100_000


def jet_mlp(seed: int = 0):
    """16-64-32-32-5 with 6-bit weights and 8-bit ReLUs (the shape of hls4ml's jet tagger),
    seeded random weights; the input quantizer puts samples on ap_fixed<10,4>."""
    import keras
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    keras.utils.set_random_seed(seed)
    inp = keras.Input((16,), name='features')
    h = QActivation(quantized_bits(10, 3, alpha=1), name='input_q')(inp)
    for i, units in enumerate((64, 32, 32)):
        h = QDense(
            units,
            kernel_quantizer=quantized_bits(6, 0, alpha=1),
            bias_quantizer=quantized_bits(6, 0, alpha=1),
            activation=quantized_relu(8, 3),
            name=f'dense{i}',
        )(h)
    out = QDense(
        5, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1), name='logits'
    )(h)
    model = keras.Model(inp, out, name='jet_mlp')
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.9, 0.9, size=w.shape).astype('float32') for w in model.get_weights()])
    return model


def _model_file(name: str, root: Path, work: Path) -> Path:
    from hls_backend.core.model_io import load_qkeras_model

    if name == 'jet_mlp':
        path = work / 'jet_mlp.keras'
        jet_mlp().save(path)
        return path
    saved = root / DIGITS_MODEL
    if not saved.exists():
        raise FileNotFoundError(f'{saved} is missing: run `python -m bench.run --task digits` first')
    model = load_qkeras_model(saved)
    if model.inputs[0]._keras_history.operation.name == 'input':  # hls4ml reserves this name: rename
        import keras

        inp = keras.Input(model.inputs[0].shape[1:], name='features')
        h = inp
        for layer in model.layers[1:]:
            h = layer(h)
        model = keras.Model(inp, h, name=model.name)
    path = work / 'digits_cnn.keras'
    model.save(path)
    return path


def _samples(info, n: int, seed: int) -> np.ndarray:
    """``n`` random samples spread over the input type's range (the check rounds them onto its grid)."""
    from hls_backend.core.fixed_point import parse_fixed_type

    t = parse_fixed_type(info.input_type)
    rng = np.random.default_rng(seed)
    return rng.uniform(t.min_value, t.max_value, size=(n, *info.input_shape)).astype(np.float32)


def _csim_process(project: Path, inputs: Path, jobs: int) -> dict:
    """``lpsubnet csim --inputs`` in its own process: result JSON, wall seconds, peak RSS."""
    command = [sys.executable, '-m', 'lpsubnet.cli', 'csim', str(project), '--inputs', str(inputs)]
    command += ['--jobs', str(jobs), '--json']
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode not in (0, 3):
        raise RuntimeError(f'lpsubnet csim exited {proc.returncode}: {stderr[-2000:]}')
    return {'result': json.loads(stdout), 'wall': wall, 'peak_rss_mib': usage.ru_maxrss / 1024}


def _rtl_stream(model_path: Path, work: Path, inputs: Path, jobs: int) -> dict:
    """The RTL route on ``inputs``: build, measure latency/II on the first 1000 samples, then
    stream all of them in ``jobs`` harness processes; samples/s from the streaming alone."""
    import hls_backend

    result = hls_backend.rtl(model_path, work / 'rtl', inputs=inputs, force=True, shards=jobs)
    if not result.exact:
        raise RuntimeError(f'RTL streaming not exact: {result.to_dict()}')
    return {
        'rtl_samples_per_second': _rate(result.samples, result.run_seconds),
        'rtl_build_seconds': result.build_seconds,
        'rtl_initiation_interval': result.initiation_interval,
    }


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float('nan')


def measure(name: str, sizes, jobs: int, root: Path, log) -> list[dict]:
    import hls4ml

    import hls_backend
    from hls_backend.core.model_io import load_qkeras_model

    rows = []
    with tempfile.TemporaryDirectory(prefix=f'bench_verify_{name}_') as tmp:
        work = Path(tmp)
        model_path = _model_file(name, root, work)
        project = work / 'prj'
        info = hls_backend.write_project(model_path, project, n_default_samples=100)
        first = hls_backend.csim(project, second_check=False)  # builds csim.exe (cached for every size)
        if not first.exact:
            raise RuntimeError(f'{name}: tb_data check not exact: {first.to_dict()}')
        model = load_qkeras_model(project / 'keras_model.keras')  # what the design computes (logits)
        linked = hls4ml.converters.link_existing_project(str(project))
        t0 = time.perf_counter()
        linked.compile()
        hls4ml_build = time.perf_counter() - t0
        for n in sizes:
            x = _samples(info, n, seed=n)
            inputs = work / f'x_{n}.npy'
            np.save(inputs, x)
            check = _csim_process(project, inputs, jobs)
            res = check['result']
            # Keras and hls4ml on the same rounded samples the check simulated.
            from hls_backend.core.fixed_point import parse_fixed_type

            xq = parse_fixed_type(info.input_type).quantize(x).astype(np.float32)
            model.predict(xq[:512], batch_size=512, verbose=0)  # warm-up (tracing)
            t0 = time.perf_counter()
            model.predict(xq, batch_size=512, verbose=0)
            keras512 = _rate(n, time.perf_counter() - t0)
            few = xq[: min(n, KERAS_BATCH1_SAMPLES)]
            t0 = time.perf_counter()
            model.predict(few, batch_size=1, verbose=0)
            keras1 = _rate(len(few), time.perf_counter() - t0)
            some = np.ascontiguousarray(
                xq[: min(n, HLS4ML_SAMPLES)].reshape(-1, int(np.prod(info.input_shape))), np.float64
            )
            t0 = time.perf_counter()
            linked.predict(some)
            hls4ml_rate = _rate(len(some), time.perf_counter() - t0)
            csim_rate = _rate(res['samples'], res['run_seconds'])
            rtl = _rtl_stream(model_path, work, inputs, jobs) if n <= RTL_MAX_SAMPLES else {}
            row = {
                'model': name,
                'layers': f'{info.input_shape} -> {info.output_shape}',
                'samples': n,
                'exact_matches': res['exact_matches'],
                'exact': res['exact'],
                'jobs': jobs,
                'csim_run_seconds': round(res['run_seconds'], 3),
                'csim_samples_per_second': csim_rate,
                'csim_check_wall_seconds': round(check['wall'], 2),
                'csim_peak_rss_mib': round(check['peak_rss_mib'], 1),
                'keras_predict_samples_per_second_batch512': keras512,
                'keras_predict_samples_per_second_batch1': keras1,
                'keras_batch1_samples': len(few),
                'hls4ml_predict_samples_per_second': hls4ml_rate,
                'hls4ml_predict_samples': len(some),
                'hls4ml_compile_seconds': round(hls4ml_build, 1),
                'gpp_build_seconds': round(first.build_seconds, 1),
                'csim_over_keras_batch512': csim_rate / keras512,
                **rtl,
                'load_average': os.getloadavg()[0],
            }
            rows.append(row)
            log(
                f'[verify {name} {n}] csim {csim_rate:,.0f}/s ({res["exact_matches"]}/{n} exact, wall '
                f'{check["wall"]:.1f} s, {check["peak_rss_mib"]:.0f} MiB), Keras 512 {keras512:,.0f}/s, '
                f'1 {keras1:,.0f}/s, hls4ml {hls4ml_rate:,.0f}/s'
                + (f', RTL {rtl["rtl_samples_per_second"]:,.0f}/s' if rtl else '')
            )
            inputs.unlink()
    return rows


def run(root: Path, log, sizes=SIZES, models=MODELS, jobs: int | None = None) -> dict:
    """Measure and merge into ``<root>/tool/verify_scale.json``; returns its content."""
    jobs = jobs or len(os.sched_getaffinity(0))
    out = root / 'tool' / 'verify_scale.json'
    data = json.loads(out.read_text()) if out.exists() else {'rows': []}
    for name in models:
        rows = measure(name, sizes, jobs, root, log)
        fresh = {(r['model'], r['samples']) for r in rows}
        data['rows'] = [r for r in data['rows'] if (r['model'], r['samples']) not in fresh] + rows
    data['rows'].sort(key=lambda r: (r['model'], r['samples']))
    data['machine'] = {'cpus': os.cpu_count(), 'finished': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + '\n')
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='python -m bench.verify_scale', description=__doc__.split('\n\n')[0])
    p.add_argument('--sizes', default=','.join(map(str, SIZES)), help='comma-separated sample counts')
    p.add_argument('--models', default=','.join(MODELS), help=f'comma-separated, from {", ".join(MODELS)}')
    p.add_argument('--jobs', type=int, default=None, help='testbench processes (default: the CPUs available)')
    p.add_argument('--results', default=str(Path(__file__).resolve().parent / 'results'))
    p.add_argument('--tiny', action='store_true', help='200 samples of the MLP only (tests)')
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(',')]
    models = args.models.split(',')
    if args.tiny or os.environ.get('BENCH_TINY') == '1':
        sizes, models = [200], ['jet_mlp']
    unknown = set(models) - set(MODELS)
    if unknown:
        p.error(f'unknown model(s) {sorted(unknown)}; choose from {", ".join(MODELS)}')
    from lpsubnet.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()

    def log(message):
        print(f'{time.strftime("%H:%M:%S")} {message}', flush=True)

    start = time.time()
    run(Path(args.results), log, sizes, models, args.jobs)
    log(
        f'done in {time.time() - start:.0f} s; peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
