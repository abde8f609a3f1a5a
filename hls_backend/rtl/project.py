"""An RTL project: the QKeras model replayed with da4ml (:mod:`hls_backend.rtl.replay`),
da4ml's RTL project (sources, Vivado and Quartus project scripts, timing constraints,
``metadata.json``), the test inputs on the input type's grid with the QKeras model's
outputs on them (``tb_data/``) and lpsubnet's clock-by-clock harness (``sim/``)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from ..core.exact_pairs import plan_folded
from ..core.files import atomic_directory, write_text_atomic
from ..core.model_io import load_array, load_qkeras_model
from ..core.progress import step
from ..core.project import ProjectInfo, read_project_info
from ..core.templates import render
from ..errors import UnsupportedModelError
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
    from ..core.plan import check_float32_reference
    from ..core.reference import prepare_inputs, reference_outputs
    from .layers import RTL_LAYERS
    from .replay import io_widths, replay_model
    from .size import TraceProgress, check_design_size, design_size

    model_path = Path(model_path)
    model, plan = plan_folded(load_qkeras_model(model_path), RTL_LAYERS, input_precision=o.input_precision)
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
    _check_ports(io_widths(comb))
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
        # The ports as written: pipelining gives an input no stage reads the interval 0,
        # which widens the padded element of every input (f < 0 becomes f = 0).
        io = io_widths(pipe if pipe is not None else comb)
        io['n_in'], io['n_out'] = comb.shape
        _check_ports(io)
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
