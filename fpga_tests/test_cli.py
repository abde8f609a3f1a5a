"""The command line as a user meets it: help, prune and rtl commands, exit codes.

The commands run in process (fpga_tests.cli_helpers.cli); one test runs a real
``python -m lpsubnet.cli`` process and checks its exit code and its whole stderr.
"""

import json

import keras
import numpy as np
import pytest

from fpga_tests.cli_helpers import cli, cli_process
from fpga_tests.hls_models import save
from lpsubnet.datasets import load_digits_images


@pytest.fixture(scope='module')
def digits_npz(tmp_path_factory):
    x, y = load_digits_images()
    path = tmp_path_factory.mktemp('data') / 'digits.npz'
    np.savez(path, x_train=x[:600], y_train=y[:600], x_test=x[600:800], y_test=y[600:800])
    return path


@pytest.fixture(scope='module')
def float_cnn(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name='image')
    h = keras.layers.Conv2D(8, 3, activation='relu', name='conv')(inp)
    h = keras.layers.Flatten(name='flatten')(h)
    out = keras.layers.Dense(10, activation='softmax', name='classifier')(h)
    return save(keras.Model(inp, out, name='float_cnn'), tmp_path_factory.mktemp('model'))


def test_help_lists_every_command():
    proc = cli('--help')
    assert proc.returncode == 0
    for command in ('run', 'prune', 'hls', 'csim', 'rtl', 'synth'):
        assert command in proc.stdout


def test_prune_writes_reduced_model_and_manifest(tmp_path, digits_npz, float_cnn):
    out = tmp_path / 'pruned'
    proc = cli(
        'prune', float_cnn, '--data', digits_npz, '--out', out, '--sparsity', 0.5, '--epochs', 2, '--qat-epochs', 1
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['layers']['conv']['channels_before'] == 8
    assert manifest['layers']['conv']['channels_after'] == 4
    reduced = keras.models.load_model(out / 'reduced.keras')
    assert reduced.get_layer('conv').get_weights()[0].shape[-1] == 4
    assert 'next: lpsubnet hls' in proc.stdout


@pytest.mark.parametrize(
    'args,message',
    [
        (('--sparsity', 1.0), 'sparsity'),
        (('--sparsity', -0.1), 'sparsity'),
        (('--wbits', 1), "Invalid value for '--wbits'"),
    ],
)
def test_prune_bad_options(tmp_path, digits_npz, float_cnn, args, message):
    proc = cli(
        'prune', float_cnn, '--data', digits_npz, '--out', tmp_path / 'out', '--epochs', 1, '--qat-epochs', 0, *args
    )
    assert proc.returncode == 2
    assert message in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out').exists()


def test_prune_data_with_wrong_shape(tmp_path, float_cnn):
    data = tmp_path / 'bad.npz'
    np.savez(data, x_train=np.zeros((20, 4, 4, 1), 'float32'), y_train=np.zeros(20, 'int64'))
    proc = cli('prune', float_cnn, '--data', data, '--out', tmp_path / 'out', '--epochs', 1, '--qat-epochs', 0)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'train_data: samples have shape (4, 4, 1), the model expects (8, 8, 1)' in proc.stderr


def test_rtl_refuses_unsupported_layer_in_a_real_process(tmp_path):
    """End to end in a new process: exit code 2, and stderr is the one error line (no
    TensorFlow start-up chatter, no traceback); nothing is written."""
    from qkeras import QActivation, QDense, quantized_bits

    inp = keras.Input((4,))
    h = QActivation(quantized_bits(8, 2, alpha=1), name='input_q')(inp)
    h = keras.layers.LayerNormalization(name='norm')(h)
    out = QDense(2, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1))(h)
    path = save(keras.Model(inp, out, name='with_norm'), tmp_path)
    proc = cli_process('rtl', path, '--out', tmp_path / 'rtl')
    assert proc.returncode == 2 and "'norm'" in proc.stderr and 'Traceback' not in proc.stderr
    assert proc.stderr.startswith("error: layer 'norm' (LayerNormalization)") and proc.stderr.count('\n') == 1
    assert proc.stdout == ''
    assert not (tmp_path / 'rtl').exists()
