"""Bad input to the HLS back end: each case names the problem and exits with its code."""

import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

import hls_backend
from fpga_tests.cli_helpers import cli
from fpga_tests.hls_models import jet_mlp, save, wq
from hls_backend.errors import BadInputError, OutputExistsError, ToolMissingError, UnsupportedModelError
from hls_backend.hls.csim import CSIM_RESULT


def run_cli(*args, env=None):
    return cli(*args, env=env)


def _small_model(activation=None, extra=None, input_name='x'):
    activation = activation or quantized_relu(6, 2)
    inp = keras.Input((4,), name=input_name)
    h = QActivation(quantized_bits(8, 2, alpha=1), name='input_q')(inp)
    h = QDense(3, kernel_quantizer=wq(4), bias_quantizer=wq(4), activation=activation, name='hidden')(h)
    if extra is not None:
        h = extra(h)
    out = QDense(2, kernel_quantizer=wq(4), bias_quantizer=wq(4), name='out')(h)
    return keras.Model(inp, out, name='small')


@pytest.fixture(scope='module')
def mlp_path(tmp_path_factory):
    return save(jet_mlp(4), tmp_path_factory.mktemp('model'))


def test_missing_model_file(tmp_path):
    with pytest.raises(BadInputError, match='does not exist'):
        hls_backend.write_project(tmp_path / 'nope.keras', tmp_path / 'out')
    proc = run_cli('hls', tmp_path / 'nope.keras', '--out', tmp_path / 'out')
    assert proc.returncode == 2
    assert 'nope.keras does not exist' in proc.stderr
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize(
    'content,message',
    [
        (b'hello, I am text', 'is not a Keras model'),
        ('zip-without-config', 'without config.json'),
    ],
)
def test_not_a_keras_model(tmp_path, content, message):
    path = tmp_path / 'model.keras'
    if content == 'zip-without-config':
        with zipfile.ZipFile(path, 'w') as archive:
            archive.writestr('readme.txt', 'no model here')
    else:
        path.write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        hls_backend.write_project(path, tmp_path / 'out')


def test_truncated_model_file(tmp_path, mlp_path):
    data = Path(mlp_path).read_bytes()
    path = tmp_path / 'truncated.keras'
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match='truncated.keras'):
        hls_backend.write_project(path, tmp_path / 'out')


def test_unsupported_layer_is_named(tmp_path):
    model = _small_model(extra=keras.layers.LayerNormalization(name='my_norm'))
    with pytest.raises(UnsupportedModelError, match=r"layer 'my_norm' \(LayerNormalization\) is not supported"):
        hls_backend.write_project(save(model, tmp_path), tmp_path / 'out')


def test_a_failure_inside_hls4ml_is_one_named_line_exit_2(tmp_path):
    """hls4ml's io_stream copies a tensor to at most 7 layers and raises a ValueError from
    inside its optimizer otherwise: the CLI says which hls4ml step failed, in one line."""
    inp = keras.Input((4,), name='x')
    h = QActivation(quantized_bits(8, 2, alpha=1), name='input_q')(inp)
    branches = [QDense(2, kernel_quantizer=wq(4), bias_quantizer=wq(4), name=f'd{i}')(h) for i in range(9)]
    out = branches[0]
    for i, branch in enumerate(branches[1:]):
        out = keras.layers.Add(name=f'add{i}')([out, branch])
    path = save(keras.Model(inp, out, name='fan'), tmp_path)
    result = run_cli('hls', path, '--out', str(tmp_path / 'prj'), '--io-type', 'io_stream')
    assert result.returncode == 2, result.stderr
    assert 'hls4ml 1.3.0 failed in convert_from_keras_model: ValueError' in result.stderr
    assert 'more than 7 times' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'prj').exists()


def test_several_inputs_or_outputs_are_refused(tmp_path):
    """The README: models with several inputs or outputs are refused up front."""
    small = _small_model()
    two_outputs = keras.Model(small.inputs, [small.get_layer('hidden').output, small.output], name='two_outputs')
    with pytest.raises(UnsupportedModelError, match='1 inputs and 2 outputs; one of each is supported'):
        hls_backend.write_project(save(two_outputs, tmp_path), tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize(
    'model,message',
    [
        (lambda: _small_model(input_name='input'), "layer 'input' (InputLayer)"),
        (lambda: _small_model(extra=keras.layers.Dense(3, name='0')), "layer '0' (Dense)"),
    ],
)
def test_layer_names_hls4ml_cannot_use_are_refused_by_name(tmp_path, model, message):
    """'input' is reserved by hls4ml (a RuntimeError from inside its graph), and a name
    starting with a digit becomes a C++ type name that does not compile: both named up front."""
    path = save(model(), tmp_path)
    proc = run_cli('hls', path, '--out', tmp_path / 'out')
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert 'rename the layer' in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out').exists()


def test_unquantized_hidden_activation_is_refused(tmp_path):
    path = save(_small_model(activation='relu'), tmp_path)
    with pytest.raises(UnsupportedModelError, match=r"layer 'hidden' \(QDense\) has the float activation 'relu'"):
        hls_backend.write_project(path, tmp_path / 'out')
    proc = run_cli('hls', path, '--out', tmp_path / 'out')
    assert proc.returncode == 2 and "'hidden'" in proc.stderr and '--default-precision' in proc.stderr
    assert not (tmp_path / 'out').exists()


def test_default_precision_accepts_but_marks_inexact(tmp_path):
    path = save(_small_model(activation='relu'), tmp_path)
    options = hls_backend.HLSOptions(default_precision='ap_fixed<16,6>')
    info = hls_backend.write_project(path, tmp_path / 'out', options)
    assert info.exact_by_construction is False
    assert any('not proven exact; the C simulation decides' in note for note in info.notes)


def test_float_weights_and_learned_scale_are_refused(tmp_path):
    inp = keras.Input((4,))
    out = keras.layers.Dense(2, name='plain')(QActivation(quantized_bits(8, 2, alpha=1))(inp))
    with pytest.raises(UnsupportedModelError, match=r"layer 'plain' \(Dense\) has float weights; use QDense"):
        hls_backend.write_project(save(keras.Model(inp, out, name='m1'), tmp_path), tmp_path / 'o1')
    inp = keras.Input((4,))
    out = QDense(2, kernel_quantizer=quantized_bits(4, 0, alpha='auto_po2'), bias_quantizer=wq(4), name='scaled')(inp)
    with pytest.raises(UnsupportedModelError, match=r"'scaled'.*kernel_quantizer.*alpha='auto_po2'"):
        hls_backend.write_project(save(keras.Model(inp, out, name='m2'), tmp_path), tmp_path / 'o2')


def test_batchnorm_must_be_folded(tmp_path):
    model = _small_model(extra=keras.layers.BatchNormalization(name='bn'))
    with pytest.raises(UnsupportedModelError, match="layer 'bn'.*fold batch normalization"):
        hls_backend.write_project(save(model, tmp_path), tmp_path / 'out')


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob('*')):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_existing_output_dir_is_refused_and_untouched(tmp_path, mlp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'precious.txt').write_text('user data')
    before = _tree_digest(out)
    with pytest.raises(OutputExistsError, match='pass --force'):
        hls_backend.write_project(mlp_path, out)
    proc = run_cli('hls', mlp_path, '--out', out)
    assert proc.returncode == 2 and 'exists and is not empty' in proc.stderr
    assert _tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']  # no temporary left behind


def test_force_replaces_only_after_success(tmp_path, mlp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'old.txt').write_text('old project')
    # A failing conversion with --force leaves the old directory as it was.
    with pytest.raises(BadInputError):
        hls_backend.write_project(mlp_path, out, inputs=np.full((3, 7), 0.5), force=True)
    assert (out / 'old.txt').read_text() == 'old project'
    info = hls_backend.write_project(mlp_path, out, force=True, n_default_samples=5)
    assert not (out / 'old.txt').exists() and (out / 'lpsubnet_project.json').exists()
    assert info.samples == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']


@pytest.mark.parametrize(
    'inputs,message',
    [
        (np.zeros((5, 7)), r'shape \(7,\), the model expects \(16,\)'),
        (np.full((2, 16), np.nan), 'NaN or infinite'),
        (np.zeros((0, 16)), 'holds no samples'),
        (np.array([['a'] * 16]), 'is not numeric'),
    ],
)
def test_bad_test_inputs(tmp_path, mlp_path, inputs, message):
    with pytest.raises(BadInputError, match=message):
        hls_backend.write_project(mlp_path, tmp_path / 'out', inputs=inputs)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize(
    'options,message',
    [
        ({'backend': 'Quartus'}, "backend='Quartus': should be 'Vivado' or 'Vitis'"),
        ({'io_type': 'io_serial'}, "io_type='io_serial': should be 'io_parallel' or 'io_stream'"),
        ({'strategy': 'Fast'}, "strategy='Fast': should be 'Latency' or 'Resource' or 'distributed_arithmetic'"),
        ({'reuse_factor': 0}, 'reuse_factor=0: should be a whole number >= 1'),
        ({'project_name': 'my-project'}, 'must be a C identifier'),
        ({'input_precision': 'ap_fixed<8,2>'}, "differs from the model's input quantizer 'input_q'"),
    ],
)
def test_bad_options(tmp_path, mlp_path, options, message):
    with pytest.raises(BadInputError, match=message):
        hls_backend.write_project(mlp_path, tmp_path / 'out', hls_backend.HLSOptions(**options))


def test_gxx_missing(tmp_path, mlp_path):
    hls_backend.write_project(mlp_path, tmp_path / 'prj', n_default_samples=3)
    with pytest.raises(ToolMissingError, match="'no-such-g\\+\\+' not found on PATH"):
        hls_backend.csim(tmp_path / 'prj', cxx='no-such-g++')
    env = {**os.environ, 'PATH': str(Path(sys.executable).parent)}  # python only, no g++
    proc = run_cli('csim', tmp_path / 'prj', env=env)
    assert proc.returncode == 4
    assert "'g++' not found on PATH" in proc.stderr


def test_csim_detects_a_mismatch(tmp_path, mlp_path):
    """Flip one LSB of one expected output: csim and hls4ml predict() must each count
    exactly one bad sample, and the command exit 3. One build per path: the command's
    csim() call writes the result record read back here."""
    hls_backend.write_project(mlp_path, tmp_path / 'prj', n_default_samples=20)
    expected = tmp_path / 'prj' / 'tb_data' / 'tb_output_predictions.dat'
    rows = [line.split() for line in expected.read_text().splitlines()]
    rows[7][2] = repr(float(rows[7][2]) + 2.0**-12)
    expected.write_text(''.join(' '.join(r) + '\n' for r in rows))
    proc = run_cli('csim', tmp_path / 'prj')
    assert proc.returncode == 3
    assert 'MISMATCH 19/20' in proc.stdout
    assert "C simulation (first mismatching sample: 7); hls4ml's predict() (first mismatching sample: 7)" in proc.stderr
    assert 'hls4ml predict(): 19/20 samples bit-exact' in proc.stdout
    result = json.loads((tmp_path / 'prj' / CSIM_RESULT).read_text())
    assert (result['samples'], result['exact_matches'], result['first_mismatch']) == (20, 19, 7)
    assert result['max_abs_diff'] == 2.0**-12 and result['exact'] is False
    predict = result['checks']['hls4ml_predict']
    assert (predict['exact_matches'], predict['first_mismatch'], predict['max_abs_diff']) == (19, 7, 2.0**-12)


def test_a_predict_mismatch_alone_fails_the_command(tmp_path, mlp_path, monkeypatch):
    """The testbench agrees but hls4ml's predict() does not (one output off by one LSB):
    the second check alone must make the command exit 3."""
    import importlib

    csim_module = importlib.import_module('hls_backend.hls.csim')

    hls_backend.write_project(mlp_path, tmp_path / 'prj', n_default_samples=20)
    real = csim_module._hls4ml_outputs

    def off_by_one_lsb_in_predict(linked, x):
        got = real(linked, x).copy()
        got[4, 0] += 2.0**-12
        return got

    monkeypatch.setattr(csim_module, '_hls4ml_outputs', off_by_one_lsb_in_predict)
    proc = run_cli('csim', tmp_path / 'prj')
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert 'csim: EXACT 20/20 samples bit-exact' in proc.stdout
    assert 'hls4ml predict(): 19/20 samples bit-exact' in proc.stdout
    assert "not bit-exact against the QKeras model: hls4ml's predict() (first mismatching sample: 4)" in proc.stderr


def test_csim_on_a_directory_that_is_no_project(tmp_path):
    proc = run_cli('csim', tmp_path)
    assert proc.returncode == 2 and 'lpsubnet_project.json is missing' in proc.stderr
