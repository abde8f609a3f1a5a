"""QKeras model -> complete HLS project directory (hls4ml + lpsubnet's additions).

``write_project`` is the back end's entry point: it plans the model's types
(:mod:`hls_backend.core.plan`), converts with hls4ml using hls4ml's own option
names, renders lpsubnet's testbench / Makefile / README from ``templates/hls``,
and writes ``tb_data`` from the given inputs and the QKeras model's outputs.
Everything is built in a temporary directory beside the target and renamed into
place, so a failure never leaves a half-written project behind.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..core.exact_pairs import plan_folded
from ..core.files import atomic_directory, check_output_dir, write_text_atomic
from ..core.layer_kinds import WEIGHT_ROLES
from ..core.model_io import load_array, load_qkeras_model
from ..core.plan import ModelPlan, check_float32_reference
from ..core.project import ProjectInfo, read_project_info, relink_records
from ..core.reference import logits_model, prepare_inputs, reference_outputs
from ..core.templates import render
from ..errors import UnsupportedModelError
from .layers import HLS_LAYERS, check_hls_graph
from .options import HLSOptions
from .registration import register
from .vendor import BACKENDS, makefile_commands

HLS_TEMPLATES = 'hls_backend.hls.template_files'


def base_config(model, backend: str, reuse_factor: int, default_precision: str | None = None) -> dict:
    """hls4ml's own config dictionary of ``model`` (granularity 'name'), before the plan's
    types go in; lpsubnet's handlers and passes registered first."""
    import hls4ml

    register()
    return hls4ml_step(
        'config_from_keras_model',
        functools.partial(
            hls4ml.utils.config_from_keras_model,
            model,
            granularity='name',
            backend=backend,  # without it the accumulators fall back to fixed<16,6>
            default_precision=default_precision or 'fixed<16,6>',
            default_reuse_factor=reuse_factor,
        ),
    )


def hls_config(model, plan: ModelPlan, options: HLSOptions) -> dict:
    """hls4ml's config dictionary with every precision lpsubnet decided."""
    config = base_config(model, options.backend, options.reuse_factor, options.default_precision)
    config['Model']['Strategy'] = options.strategy
    for name, precision in plan.precisions.items():
        if name in config['LayerName']:
            config['LayerName'][name].setdefault('Precision', {}).update(precision)
    return config


def write_project(
    model_path: str | Path,
    output_dir: str | Path,
    options: HLSOptions | None = None,
    inputs: np.ndarray | str | Path | None = None,
    force: bool = False,
    n_default_samples: int = 100,
    seed: int = 0,
    allow_wrap: bool = False,
) -> ProjectInfo:
    """Convert the QKeras model at ``model_path`` into an HLS project in ``output_dir``.

    ``inputs``: test inputs (array or .npy/.npz path) for tb_data; without them,
    ``n_default_samples`` random samples spread over the input type's range are used.
    Inputs outside the input type's range are reported in the notes; with a wrapping
    input type (AP_WRAP) they are refused unless ``allow_wrap`` (core.input_range).
    Raises BadInputError / UnsupportedModelError / OutputExistsError with a message
    naming the file, option or layer.
    """
    import hls4ml

    options = (options or HLSOptions()).validated()
    check_output_dir(Path(output_dir).absolute(), force)  # refuse before the slow part
    model_path = Path(model_path)
    model = load_qkeras_model(model_path)
    if model.__class__.__name__ == 'Sequential':
        import keras

        model = keras.Model(model.inputs, model.outputs, name=model.name)
    check_layer_names(model, model_path)
    model, plan = plan_folded(model, HLS_LAYERS, options.input_precision, options.default_precision)
    if plan.exact:
        check_float32_reference(model, plan, HLS_LAYERS)
    hw_model = logits_model(model, plan)

    if inputs is None:
        rng = np.random.default_rng(seed)
        shape = (n_default_samples, *model.inputs[0].shape[1:])
        x = rng.uniform(plan.input_type.min_value, plan.input_type.max_value, size=shape)
        x_source = f'{n_default_samples} random samples uniform over the input range (seed {seed})'
    elif isinstance(inputs, str | Path):
        x = load_array(inputs)
        x_source = f'inputs file {inputs}'
    else:
        x = np.asarray(inputs)
        x_source = 'given inputs'
    x, seen = prepare_inputs(model, plan, x, x_source, allow_wrap)
    y = reference_outputs(model, plan, x)

    config = hls_config(hw_model, plan, options)
    output_dir = Path(output_dir)
    with atomic_directory(output_dir, force=force) as tmp_dir:
        hls_model = hls4ml_step(
            'convert_from_keras_model',
            functools.partial(
                hls4ml.converters.convert_from_keras_model,
                hw_model,
                hls_config=config,
                backend=options.backend,
                io_type=options.io_type,
                output_dir=str(tmp_dir),
                project_name=options.project_name,
                part=options.part,
                clock_period=options.clock_period,
            ),
        )
        if plan.exact:
            check_hls_graph(hls_model, plan.precisions, plan.exact_sums)
        hls4ml_step('writing the project', hls_model.write)
        relink_project(tmp_dir, output_dir.absolute())
        _write_tb_data(tmp_dir, x, y)
        info = ProjectInfo(
            route='hls',
            project_dir=str(output_dir.resolve()),
            model_path=str(model_path.resolve()),
            project_name=options.project_name,
            part=options.part,
            clock_period=options.clock_period,
            options=asdict(options),
            input_type=plan.input_type.ap(),
            input_source=plan.input_source,
            input_shape=list(model.inputs[0].shape[1:]),
            output_shape=list(hw_model.outputs[0].shape[1:]),
            softmax_stripped=plan.softmax_layer,
            exact_by_construction=plan.exact,
            samples=int(x.shape[0]),
            notes=plan.notes + [f'tb_data: {x_source}'] + ([seen.message()] if seen.message() else []),
            design={'layers': _layer_table(hls_model)},
        )
        _write_lpsubnet_files(tmp_dir, hls_model, info, options)
    return info


def hls4ml_step(what: str, call):
    """Run one hls4ml step; an exception from inside hls4ml becomes an error that says
    which step failed and why (hls4ml's own message kept), never a bare traceback."""
    try:
        return call()
    except UnsupportedModelError:
        raise
    except Exception as exc:
        raise UnsupportedModelError(
            f'hls4ml 1.3.0 failed in {what}: {type(exc).__name__}: {" ".join(str(exc).split())}; this model is not '
            'supported through hls4ml as it stands (see the README table of supported layers)'
        ) from exc


def check_layer_names(model, model_path) -> None:
    """Refuse layer names hls4ml cannot use, naming the layer: 'input' (reserved; hls4ml
    stops with a RuntimeError from inside its graph) and names starting with a digit
    (hls4ml names C++ types after layers: '0_accum_t' does not compile)."""
    for layer in model.layers:
        if layer.name == 'input':
            reason = "hls4ml reserves the layer name 'input'"
        elif layer.name[:1].isdigit():
            reason = 'hls4ml names C++ types after layers, and a C++ name cannot start with a digit'
        else:
            continue
        raise UnsupportedModelError(
            f"layer '{layer.name}' ({layer.__class__.__name__}) of {model_path}: {reason}; rename the layer "
            "(e.g. keras.Input(shape, name='input_layer'), Dense(..., name='dense_0')) and save the model again"
        )


def _write_tb_data(project_dir: Path, x: np.ndarray, y: np.ndarray) -> None:
    tb = project_dir / 'tb_data'
    tb.mkdir(exist_ok=True)
    # repr() of a float64 is the shortest string that reads back to the same value.
    write_text_atomic(tb / 'tb_input_features.dat', _dat_lines(x))
    write_text_atomic(tb / 'tb_output_predictions.dat', _dat_lines(y))


def _dat_lines(a: np.ndarray) -> str:
    flat = a.reshape(a.shape[0], -1)
    return ''.join(' '.join(repr(float(v)) for v in row) + '\n' for row in flat)


# The weight column of the layer table: the first weight type a layer has.
WEIGHT_KEYS = [r.precision_key for r in WEIGHT_ROLES.values() if r.role != 'bias']


def _layer_table(hls_model) -> list[dict]:
    rows = []
    for layer in hls_model.get_layers():
        types = {name.removesuffix('_t'): str(t.precision) for name, t in layer.types.items()}
        rows.append(
            {
                'name': layer.name,
                'class_name': layer.class_name,
                'result': types.get('result', ''),
                'weight': next((types[k] for k in WEIGHT_KEYS if k in types), ''),
                'bias': types.get('bias', ''),
                'accum': types.get('accum', ''),
            }
        )
    return rows


def _io_vars(variables) -> list[dict]:
    rows, offset = [], 0
    for var in variables:
        rows.append(
            {
                'name': var.name,
                'type': var.type.name,
                'size': var.size_cpp(),
                'offset': offset,
                'definition': var.definition_cpp(),
                'shape': list(var.shape),
            }
        )
        offset += var.size()
    return rows


def _write_lpsubnet_files(project_dir: Path, hls_model, info: ProjectInfo, options: HLSOptions) -> None:
    from ..version import __version__

    inputs = _io_vars(hls_model.get_input_variables())
    outputs = _io_vars(hls_model.get_output_variables())
    vendor_commands = makefile_commands(options.backend)
    context = {
        'lpsubnet_version': __version__,
        'project_name': options.project_name,
        'io_type': options.io_type,
        'inputs': inputs,
        'outputs': outputs,
        'n_inputs_total': sum(int(np.prod(v['shape'])) for v in inputs),
        'n_outputs_total': sum(int(np.prod(v['shape'])) for v in outputs),
        'call_args': ','.join([v['name'] for v in inputs] + [v['name'] for v in outputs]),
        'backend': options.backend,
        'vendor_tool': BACKENDS[options.backend],
        'vendor_commands': vendor_commands,
        'reuse_factor': options.reuse_factor,
        'strategy': options.strategy,
        'part': options.part,
        'clock_period': options.clock_period,
        'model_path': info.model_path,
        'softmax_stripped': info.softmax_stripped,
        'input': {
            'name': inputs[0]['name'],
            'shape': info.input_shape,
            'type': info.input_type,
            'source': info.input_source,
        },
        'output': {
            'name': outputs[0]['name'],
            'shape': info.output_shape,
            'note': 'bit-exact against the QKeras model'
            if info.exact_by_construction
            else 'NOT exact (default precision given)',
        },
        'layers': info.design['layers'],
    }
    write_text_atomic(
        project_dir / f'{options.project_name}_test.cpp', render('testbench.cpp.j2', context, HLS_TEMPLATES)
    )
    write_text_atomic(project_dir / 'Makefile', render('Makefile.j2', context, HLS_TEMPLATES))
    write_text_atomic(project_dir / 'README.md', render('README.md.j2', context, HLS_TEMPLATES))
    info.save(project_dir)


def relink_project(project_dir: Path, final_dir: Path | None = None) -> None:
    """Point an lpsubnet project (HLS or RTL) at ``final_dir``, by default where it is now:
    hls4ml_config.yml's OutputDir (where hls4ml's compile() builds) and the ``project_dir``
    of every lpsubnet record in it. Projects are written under a temporary name, copied
    and moved."""
    project_dir = Path(project_dir)
    target = Path(final_dir or project_dir).absolute()
    yml = project_dir / 'hls4ml_config.yml'
    if yml.exists():  # an HLS project
        lines = yml.read_text().splitlines(keepends=True)
        fixed = [f'OutputDir: {target}\n' if line.startswith('OutputDir:') else line for line in lines]
        if fixed != lines:
            write_text_atomic(yml, ''.join(fixed))
    relink_records(project_dir, target)


__all__ = [
    'HLSOptions',
    'ProjectInfo',
    'write_project',
    'read_project_info',
    'relink_project',
    'hls_config',
    'check_hls_graph',
]
