"""The RTL project simulated clock by clock: latency and initiation interval measured
from the waveform, the outputs compared bit for bit with the QKeras model (stored
samples, or an inputs file streamed one sample per clock in harness shards), and
da4ml's ``predict()`` and the traced logic's interpreter as second checks.

Latency convention: an input applied before the clock edge of cycle t is available at
the output after the clock edge of cycle t + latency (da4ml's metadata counts the same
way: one cycle per pipeline stage)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import processes
from ..core.exact_pairs import plan_folded
from ..core.model_io import load_qkeras_model
from ..core.progress import step
from ..core.project import ProjectInfo
from ..core.results import RouteResult, compare_exact
from ..errors import BadInputError, BuildError
from .build import build_rtl
from .project import RTL_RESULT, read_rtl_info


def _encode_inputs(x: np.ndarray, io: dict) -> np.ndarray:
    scaled = x.reshape(x.shape[0], -1) * 2.0 ** io['input']['f']
    if not np.array_equal(scaled, np.floor(scaled)):
        raise BadInputError(f"test inputs are not on the design's input grid (2^-{io['input']['f']})")
    return scaled.astype(np.int32)


def _decode_outputs(raw: np.ndarray, io: dict) -> np.ndarray:
    k, i, f = io['output']['k'], io['output']['i'], io['output']['f']
    width = k + i + f
    unsigned = raw.astype(np.int64) & ((1 << width) - 1) if width < 64 else raw.astype(np.int64)
    signed = unsigned - ((unsigned >> (width - 1)) << width) if (k and width) else unsigned
    return signed.astype(np.float64) * 2.0**-f


class CycleSimulator:
    """Runs the Verilated design for a given input on every clock cycle."""

    def __init__(self, project_dir: Path, exe: Path, io: dict):
        self.project_dir, self.exe, self.io = project_dir, exe, io
        self.cycles_run = 0

    def run(self, per_cycle_inputs: np.ndarray, tag: str = '') -> np.ndarray:
        """int32 [cycles, n_in] -> decoded outputs [cycles, n_out] (read after each edge).
        Runs with different ``tag`` use different files and may run at the same time."""
        cycles = per_cycle_inputs.shape[0]
        work = self.project_dir / 'sim'
        inp, out = work / f'lpsubnet_cycles_in{tag}.bin', work / f'lpsubnet_cycles_out{tag}.bin'
        np.ascontiguousarray(per_cycle_inputs, dtype=np.int32).tofile(inp)
        try:
            proc = processes.run(
                [str(self.exe), str(inp), str(out), str(cycles)],
                cwd=self.project_dir / 'src' / 'memfiles',
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise BuildError(
                    f'cycle simulation {self.exe} exited with {proc.returncode}: {proc.stderr.strip()[:500]}'
                )
            raw = np.fromfile(out, dtype=np.int32).reshape(cycles, self.io['n_out'])
        finally:
            inp.unlink(missing_ok=True)
            out.unlink(missing_ok=True)
        self.cycles_run += cycles
        return _decode_outputs(raw, self.io)


@dataclass
class Timing:
    latency: int | None
    latencies_seen: list[int]
    initiation_interval: int | None
    isolated: np.ndarray  # each sample's settled output when applied alone
    streamed: np.ndarray  # each sample's output when streamed at the measured II
    window: int
    cycles: int


def measure_timing(sim: CycleSimulator, codes: np.ndarray, window: int, max_ii: int = 8) -> Timing:
    """Measure latency and initiation interval from the waveform.

    1. Isolated: each sample is held for ``window`` cycles; its settled output is the
       output on the window's last cycle, and the latency is the first cycle (from
       the window's start) from which the output equals that value and stays.
       Samples whose output equals the previous sample's carry no information and
       are skipped.
    2. Streamed: samples are presented on successive clocks (each held ``ii``
       cycles); the II is the smallest ``ii`` for which every sample's output appears
       at (its first cycle + latency) and equals its isolated output.
    """
    n = codes.shape[0]
    waves = sim.run(np.repeat(codes, window, axis=0)).reshape(n, window, -1)
    isolated = waves[:, -1, :]
    settled = np.all(waves[:, -2, :] == isolated, axis=1)
    if not settled.all():
        raise BuildError(f'the design output does not settle within {window} cycles of holding an input')
    seen = []
    for s in range(1, n):
        if np.array_equal(isolated[s], isolated[s - 1]):
            continue
        same = np.all(waves[s] == isolated[s], axis=1)
        later_all_same = np.flip(np.logical_and.accumulate(np.flip(same)))
        seen.append(int(np.argmax(later_all_same)))
    latency = max(set(seen), key=seen.count) if seen else None
    cycles = n * window
    ii = None
    streamed = isolated
    if latency is not None:
        for candidate in range(1, max_ii + 1):
            sequence = np.concatenate([np.repeat(codes, candidate, axis=0), np.repeat(codes[-1:], latency + 2, axis=0)])
            outs = sim.run(sequence)
            cycles += sequence.shape[0]
            picked = outs[np.arange(n) * candidate + latency]
            if np.array_equal(picked, isolated):
                ii, streamed = candidate, picked
                break
    return Timing(latency, sorted(set(seen)), ii, isolated, streamed, window, cycles)


def simulate_rtl(
    project_dir: str | Path,
    o3: bool = False,
    jobs: int | None = None,
    second_check: bool = True,
    inputs: str | Path | None = None,
    max_samples: int | None = None,
    shards: int = 1,
    allow_wrap: bool = False,
    strict_lint: bool = True,
) -> RouteResult:
    """Build the RTL with Verilator and simulate it clock by clock on the stored inputs.

    The result's ``latency_cycles`` / ``initiation_interval`` are measured from the
    simulation; ``resources`` holds da4ml's estimates (LUT, FF) and its pipeline depth.
    With ``inputs`` (a .npy/.npz file; the first ``max_samples``), those samples are then
    streamed through the design at the measured II, one per clock, in runs of at most
    STREAM_CHUNK samples, ``shards`` harness processes at a time, and compared with the
    QKeras model: that comparison is the result, the stored inputs' one goes to
    ``checks['tb_data']`` (values outside the input type's range are reported, and
    refused for a wrapping type unless ``allow_wrap``). ``strict_lint=False`` builds with
    Verilator's warnings not fatal (a synthesized netlist's). Saved as ``lpsubnet_rtl.json`` in the project; the caller
    decides what a mismatch means (the CLI exits with MismatchError.exit_code).
    """
    import da4ml

    project_dir = Path(project_dir).resolve()
    info = read_rtl_info(project_dir)
    x = np.load(project_dir / 'tb_data' / 'inputs.npy')
    reference = np.load(project_dir / 'tb_data' / 'reference.npy')

    rtl_model, exe, build_seconds, install = build_rtl(project_dir, o3=o3, jobs=jobs, strict_lint=strict_lint)
    result = RouteResult(
        route='rtl',
        tool=f'verilator {install.version} + da4ml {da4ml.__version__} ({info.options["hdl"]})',
        project_dir=str(project_dir),
        build_seconds=round(build_seconds, 2),
    )
    sim = CycleSimulator(project_dir, exe, info.design['io'])
    codes = _encode_inputs(x, info.design['io'])
    stages = info.design['pipeline_stages']
    window = max(16, 2 * stages + 8)
    start = time.perf_counter()
    with step(f'cycle-accurate simulation of {x.shape[0]} samples'):
        timing = measure_timing(sim, codes, window)
    result.run_seconds = round(time.perf_counter() - start, 3)
    compare_exact(reference, timing.streamed, result)
    np.save(project_dir / 'tb_data' / 'rtl_outputs.npy', timing.streamed)
    result.latency_cycles = timing.latency
    result.initiation_interval = timing.initiation_interval
    result.resources = {
        'LUT': round(info.design['lut_estimate']),
        'FF': info.design['ff_estimate'],
        'pipeline_depth': info.design['pipeline_stages'],
        'estimator': f'da4ml {da4ml.__version__} cost model (estimate, not synthesis)',
        'io_bits_per_element': {
            'input': info.design['io']['input']['width'],
            'output': info.design['io']['output']['width'],
        },
    }
    result.notes = list(info.notes)
    result.input_range = info.design.get('input_range')
    result.notes.append(
        f'measured from {timing.cycles} simulated clock cycles: latency {timing.latency} '
        f'(observed {timing.latencies_seen}), II {timing.initiation_interval}; '
        f'da4ml metadata latency {stages}: {"equal" if timing.latency == stages else "DIFFERENT"}'
    )
    if timing.latency is None:
        result.notes.append(
            'every sample gives the same output (the design ignores its inputs, e.g. all weights quantize to 0): '
            'latency and II cannot be observed; compared the settled outputs'
        )
    elif timing.initiation_interval is None:
        result.notes.append(
            'streamed outputs never matched the isolated ones for II <= 8: II not determined; compared isolated outputs'
        )
    iso_exact = int(np.all(timing.isolated == reference.reshape(timing.isolated.shape), axis=1).sum())
    result.notes.append(f'isolated (one sample held at a time) outputs exact on {iso_exact}/{x.shape[0]} samples')

    if second_check:
        result.checks['da4ml_predict'] = _da4ml_predict_check(rtl_model, project_dir, x, reference).to_dict()
        result.checks['trace'] = _trace_check(project_dir, x, reference).to_dict()
    if inputs is not None:
        result = _stream_check(project_dir, info, sim, timing, result, inputs, max_samples, shards, allow_wrap)
    result.save(project_dir / RTL_RESULT)
    return result


# Samples per harness run when streaming: the harness holds a run's cycles in memory
# (65536 x n_in int32), and runs are the unit of work of the shards.
STREAM_CHUNK = 65536


def _stream_check(
    project_dir: Path,
    info: ProjectInfo,
    sim: CycleSimulator,
    timing: Timing,
    tb_result: RouteResult,
    inputs: str | Path,
    max_samples: int | None,
    shards: int,
    allow_wrap: bool = False,
) -> RouteResult:
    """Stream the samples of ``inputs`` through the design at the measured II and compare
    them with the QKeras model, chunk by chunk; returns the result with the stored
    inputs' comparison as its ``tb_data`` check."""
    from ..core.fixed_point import parse_fixed_type
    from ..core.input_range import InputRange
    from ..core.model_io import open_samples
    from ..core.reference import model_outputs
    from ..core.results import ExactTally

    if timing.initiation_interval is None or timing.latency is None:
        raise BuildError(
            f'{project_dir}: latency and II could not both be measured on the stored inputs (see the notes of '
            f'{RTL_RESULT}): new samples cannot be streamed'
        )
    if shards < 1:
        raise BadInputError(f'shards must be >= 1, got {shards}')
    x = open_samples(inputs, info.input_shape)
    n = x.shape[0] if max_samples is None else min(x.shape[0], max_samples)
    source = f'inputs file {inputs}'
    seen = InputRange(parse_fixed_type(info.input_type), source)
    model = _reference_model(info)
    ii, latency, io = timing.initiation_interval, timing.latency, info.design['io']
    chunks = [(start, min(start + STREAM_CHUNK, n)) for start in range(0, n, STREAM_CHUNK)]
    work = project_dir / 'sim' / 'stream'
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with step(f'inputs and QKeras reference of {n} samples'):
            for k, (start, stop) in enumerate(chunks):
                xq = seen.quantize(np.asarray(x[start:stop], dtype=np.float64))
                seen.check(allow_wrap)  # before the QKeras reference of a wrapped chunk is computed
                codes = _encode_inputs(xq, io)
                # One sample every II clocks, then the last one held until it has come out.
                cycles = np.concatenate([np.repeat(codes, ii, axis=0), np.repeat(codes[-1:], latency + 2, axis=0)])
                cycles.astype(np.int32).tofile(work / f'in_{k}.bin')
                model_outputs(model, xq).reshape(stop - start, -1).tofile(work / f'ref_{k}.f64')

        def run(k: int) -> None:
            start, stop = chunks[k]
            codes = np.fromfile(work / f'in_{k}.bin', dtype=np.int32).reshape(-1, io['n_in'])
            outputs = sim.run(codes, tag=f'_stream_{k}')
            outputs[np.arange(stop - start) * ii + latency].tofile(work / f'out_{k}.f64')

        begin = time.perf_counter()
        with step(f'streamed {n} samples through the design ({min(shards, len(chunks))} harness processes)'):
            with processes.thread_pool(shards) as pool:
                list(pool.map(run, range(len(chunks))))
        seconds = time.perf_counter() - begin
        tally = ExactTally()
        for k, (start, stop) in enumerate(chunks):
            reference = np.fromfile(work / f'ref_{k}.f64').reshape(stop - start, -1)
            tally.add(reference, np.fromfile(work / f'out_{k}.f64').reshape(reference.shape), 'rtl')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = RouteResult(
        route='rtl',
        tool=tb_result.tool,
        project_dir=tb_result.project_dir,
        build_seconds=tb_result.build_seconds,
        run_seconds=round(seconds, 3),
        latency_cycles=tb_result.latency_cycles,
        initiation_interval=tb_result.initiation_interval,
        resources=tb_result.resources,
        checks={**tb_result.checks, 'tb_data': {**tb_result.to_dict(), 'checks': {}}},
        input_range=seen.to_dict(),
        notes=[
            *tb_result.notes,
            f'streamed {source} ({n} samples) one per {ii} clock(s), latency {latency}, '
            f'{len(chunks)} harness run(s), {min(shards, len(chunks))} at a time',
            *([seen.message()] if seen.message() else []),
        ],
    )
    return tally.fill(result)


def _reference_model(info: ProjectInfo):
    """The model the design computes (logits when a final softmax was left out)."""
    from ..core.quiet import import_tensorflow_quietly
    from ..core.reference import logits_model
    from .layers import RTL_LAYERS

    import_tensorflow_quietly()
    path = Path(info.model_path)
    if not path.is_file():
        raise BadInputError(f'the model {path} of this RTL project is gone: no QKeras reference for new inputs')
    model, plan = plan_folded(load_qkeras_model(path), RTL_LAYERS, input_precision=info.input_type)
    return logits_model(model, plan)


def _da4ml_predict_check(rtl_model, project_dir: Path, x: np.ndarray, reference: np.ndarray) -> RouteResult:
    """da4ml's own emulator (same Verilated model, its binder with the metadata latency)."""
    import da4ml

    check = RouteResult(
        route='rtl_da4ml_predict', tool=f'da4ml {da4ml.__version__} predict()', project_dir=str(project_dir)
    )
    start = time.perf_counter()
    predicted = np.asarray(rtl_model.predict(np.ascontiguousarray(x, dtype=np.float64), n_threads=1), dtype=np.float64)
    check.run_seconds = round(time.perf_counter() - start, 3)
    return compare_exact(reference, predicted.reshape(reference.shape), check)


def _trace_check(project_dir: Path, x: np.ndarray, reference: np.ndarray) -> RouteResult:
    """The traced logic run by da4ml's software interpreter: tells replay errors from RTL errors."""
    import da4ml
    from da4ml.types import CombLogic

    check = RouteResult(
        route='rtl_trace', tool=f'da4ml {da4ml.__version__} CombLogic.predict', project_dir=str(project_dir)
    )
    comb = CombLogic.load(project_dir / 'model' / 'comb_full.json')
    start = time.perf_counter()
    predicted = np.asarray(comb.predict(x.reshape(x.shape[0], -1)), dtype=np.float64)
    check.run_seconds = round(time.perf_counter() - start, 3)
    return compare_exact(reference, predicted, check)
