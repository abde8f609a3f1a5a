"""QKeras model -> complete HLS project directory (hls4ml + lpsubnet's additions).

``write_project`` is the back end's entry point: it plans the model's types
(:mod:`hls_backend.model_plan`), converts with hls4ml using hls4ml's own option
names, renders lpsubnet's testbench / Makefile / README from ``templates/hls``,
and writes ``tb_data`` from the given inputs and the QKeras model's outputs.
Everything is built in a temporary directory beside the target and renamed into
place, so a failure never leaves a half-written project behind.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import qkeras_bridge
from .errors import BadInputError, UnsupportedModelError
from .files import atomic_directory, check_output_dir, write_text_atomic
from .hls_layers import HLS_LAYERS, check_hls_graph
from .layer_kinds import WEIGHT_ROLES
from .model_io import check_inputs, load_array, load_qkeras_model
from .model_plan import ModelPlan, check_float32_reference, plan_model
from .templates import render

BACKENDS = {'Vivado': 'vivado_hls', 'Vitis': 'vitis-run'}
IO_TYPES = ('io_parallel', 'io_stream')
STRATEGIES = ('Latency', 'Resource')
PROJECT_INFO = 'lpsubnet_project.json'
DEFAULT_PART = 'xcvu13p-flga2577-2-e'


@dataclass
class HLSOptions:
    """hls4ml's options under hls4ml's names (backend, io_type, ReuseFactor, Strategy, ...)."""

    backend: str = 'Vitis'
    io_type: str = 'io_parallel'
    reuse_factor: int = 1
    strategy: str = 'Latency'
    part: str = DEFAULT_PART
    clock_period: float = 5.0
    project_name: str = 'myproject'
    input_precision: str | None = None
    default_precision: str | None = None

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise BadInputError(f'backend {self.backend!r} is not supported; choose one of {", ".join(BACKENDS)}')
        if self.io_type not in IO_TYPES:
            raise BadInputError(f'io_type {self.io_type!r} is not supported; choose one of {", ".join(IO_TYPES)}')
        if self.strategy not in STRATEGIES:
            raise BadInputError(f'Strategy {self.strategy!r} is not supported; choose one of {", ".join(STRATEGIES)}')
        if not isinstance(self.reuse_factor, int) or self.reuse_factor < 1:
            raise BadInputError(f'ReuseFactor must be an integer >= 1, got {self.reuse_factor!r}')
        if not self.clock_period > 0:
            raise BadInputError(f'clock period must be > 0 ns, got {self.clock_period!r}')
        if not self.project_name.isidentifier():
            raise BadInputError(f'project name {self.project_name!r} must be a C identifier (letters, digits, _)')


@dataclass
class ProjectInfo:
    """What lpsubnet records about a generated project (lpsubnet_project.json)."""

    project_dir: str
    model_path: str
    options: dict
    input_type: str
    input_source: str
    input_shape: list[int]
    output_shape: list[int]
    softmax_stripped: str | None
    exact_by_construction: bool
    samples: int
    notes: list[str] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)


def _vendor_commands(backend: str) -> dict[str, str]:
    """Per-step shell commands for the vendor tool, as the generated Makefile runs them."""
    steps = {
        'csim': dict(csim=1, synth=0, cosim=0, export=0),
        'csynth': dict(csim=0, synth=1, cosim=0, export=0),
        'cosim': dict(csim=0, synth=1, cosim=1, export=0),
        'export': dict(csim=0, synth=1, cosim=0, export=1),
    }
    commands = {}
    for step, flags in steps.items():
        opts = dict(reset=0, **flags, validation=0, vsynth=0, fifo_opt=0)
        if backend == 'Vivado':
            args = ' '.join(f'{k}={v}' for k, v in opts.items())
            commands[step] = f'vivado_hls -f build_prj.tcl "{args}"'
        else:
            body = ' '.join(f'{k} {v}' for k, v in opts.items())
            commands[step] = (
                f"echo 'array set opt {{ {body} }}' > build_opt.tcl && vitis-run --tcl build_prj.tcl --mode hls"
            )
    return commands


def _logits_model(model, plan: ModelPlan):
    """The model without its final softmax (the design returns logits), or the model itself."""
    import keras

    if plan.softmax_layer is None:
        return model
    if plan.softmax_is_layer:
        layer = model.get_layer(plan.softmax_layer)
        return keras.Model(model.inputs, layer.input, name=model.name)
    config = model.get_config()
    for layer_config in config['layers']:
        if layer_config['config']['name'] == plan.softmax_layer:
            layer_config['config']['activation'] = 'linear'
    logits = model.__class__.from_config(config)
    logits.set_weights(model.get_weights())
    return logits


def hls_config(model, plan: ModelPlan, options: HLSOptions) -> dict:
    """hls4ml's config dictionary with every precision lpsubnet decided."""
    import hls4ml

    qkeras_bridge.register()
    config = hls4ml.utils.config_from_keras_model(
        model,
        granularity='name',
        backend=options.backend,  # without it the accumulators fall back to fixed<16,6>
        default_precision=options.default_precision or 'fixed<16,6>',
        default_reuse_factor=options.reuse_factor,
    )
    config['Model']['Strategy'] = options.strategy
    for name, precision in plan.precisions.items():
        if name in config['LayerName']:
            config['LayerName'][name].setdefault('Precision', {}).update(precision)
    return config


def prepare_inputs(model, plan: ModelPlan, x: np.ndarray, source: str) -> np.ndarray:
    """Inputs on the input type's grid: the values both the model and the design see."""
    x = check_inputs(x, model, source)
    return plan.input_type.quantize(x)


def write_project(
    model_path: str | Path,
    output_dir: str | Path,
    options: HLSOptions | None = None,
    inputs: np.ndarray | str | Path | None = None,
    force: bool = False,
    n_default_samples: int = 100,
    seed: int = 0,
) -> ProjectInfo:
    """Convert the QKeras model at ``model_path`` into an HLS project in ``output_dir``.

    ``inputs``: test inputs (array or .npy/.npz path) for tb_data; without them,
    ``n_default_samples`` random samples spread over the input type's range are used.
    Raises BadInputError / UnsupportedModelError / OutputExistsError with a message
    naming the file, option or layer.
    """
    import hls4ml

    options = options or HLSOptions()
    options.validate()
    check_output_dir(Path(output_dir).absolute(), force)  # refuse before the slow part
    model_path = Path(model_path)
    model = load_qkeras_model(model_path)
    if model.__class__.__name__ == 'Sequential':
        import keras

        model = keras.Model(model.inputs, model.outputs, name=model.name)
    check_layer_names(model, model_path)
    plan = plan_model(model, HLS_LAYERS, options.input_precision, options.default_precision)
    if plan.exact:
        check_float32_reference(model, plan, HLS_LAYERS)
    hw_model = _logits_model(model, plan)

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
    x = prepare_inputs(model, plan, x, x_source)
    y = np.asarray(hw_model.predict(x.astype(np.float32), verbose=0, batch_size=1024), dtype=np.float64)

    config = hls_config(hw_model, plan, options)
    output_dir = Path(output_dir)
    with atomic_directory(output_dir, force=force) as tmp_dir:
        hls_model = hls4ml.converters.convert_from_keras_model(
            hw_model,
            hls_config=config,
            backend=options.backend,
            io_type=options.io_type,
            output_dir=str(tmp_dir),
            project_name=options.project_name,
            part=options.part,
            clock_period=options.clock_period,
        )
        if plan.exact:
            check_hls_graph(hls_model)
        hls_model.write()
        relink_project(tmp_dir, output_dir.absolute())
        _write_tb_data(tmp_dir, x, y)
        layers = _layer_table(hls_model)
        info = ProjectInfo(
            project_dir=str(output_dir.resolve()),
            model_path=str(model_path.resolve()),
            options=asdict(options),
            input_type=plan.input_type.ap(),
            input_source=plan.input_source,
            input_shape=list(model.inputs[0].shape[1:]),
            output_shape=list(hw_model.outputs[0].shape[1:]),
            softmax_stripped=plan.softmax_layer,
            exact_by_construction=plan.exact,
            samples=int(x.shape[0]),
            notes=plan.notes + [f'tb_data: {x_source}'],
            layers=layers,
        )
        _write_lpsubnet_files(tmp_dir, hls_model, info, options)
    return info


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
    from . import __version__

    inputs = _io_vars(hls_model.get_input_variables())
    outputs = _io_vars(hls_model.get_output_variables())
    vendor_commands = _vendor_commands(options.backend)
    context = {
        'lpsubnet_version': __version__,
        'project_name': options.project_name,
        'io_type': options.io_type,
        'inputs': inputs,
        'outputs': outputs,
        'n_inputs_total': sum(int(np.prod(v['shape'])) for v in inputs),
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
        'layers': info.layers,
    }
    write_text_atomic(project_dir / f'{options.project_name}_test.cpp', render('testbench.cpp.j2', context))
    write_text_atomic(project_dir / 'Makefile', render('Makefile.j2', context))
    write_text_atomic(project_dir / 'README.md', render('README.md.j2', context))
    write_text_atomic(project_dir / PROJECT_INFO, json.dumps(asdict(info), indent=2) + '\n')


def relink_project(project_dir: Path, final_dir: Path | None = None) -> None:
    """Point hls4ml_config.yml's OutputDir (where hls4ml's compile() builds) and the
    recorded ``project_dir`` at ``final_dir``, by default where the project is now:
    projects are written under a temporary name, copied and moved."""
    project_dir = Path(project_dir)
    target = Path(final_dir or project_dir).absolute()
    yml = project_dir / 'hls4ml_config.yml'
    lines = yml.read_text().splitlines(keepends=True)
    fixed = [f'OutputDir: {target}\n' if line.startswith('OutputDir:') else line for line in lines]
    if fixed != lines:
        write_text_atomic(yml, ''.join(fixed))
    info_file = project_dir / PROJECT_INFO
    if info_file.exists():
        info = json.loads(info_file.read_text())
        if info.get('project_dir') != str(target.resolve()):
            info['project_dir'] = str(target.resolve())
            write_text_atomic(info_file, json.dumps(info, indent=2) + '\n')


def read_project_info(project_dir: str | Path) -> ProjectInfo:
    """The ProjectInfo of a project written by :func:`write_project`."""
    path = Path(project_dir) / PROJECT_INFO
    if not path.exists():
        raise BadInputError(
            f'{project_dir} is not an lpsubnet HLS project: {PROJECT_INFO} is missing (run `lpsubnet hls` first)'
        )
    return ProjectInfo(**json.loads(path.read_text()))


__all__ = [
    'HLSOptions',
    'ProjectInfo',
    'write_project',
    'read_project_info',
    'relink_project',
    'hls_config',
    'check_hls_graph',
]
