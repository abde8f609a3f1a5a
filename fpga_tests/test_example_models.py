"""hls4ml's example models as users have them (fixtures/example_models, its README says
which and whence): read without hand edits, converted, and exact in C simulation.

- ``qkeras_mnist_cnn`` (Keras 2.4.0 JSON + weights): each QConv2D has the float
  ``activation='relu'`` right before ``QActivation(quantized_relu(6, 0))``; the pair is
  the quantized relu alone, so the relu is folded and the design is exact.
- ``KERAS_conv2d_model`` (Keras 2.0.0: a Sequential whose config is a bare list of
  layers) and the same model as one whole-model legacy ``.h5``: pruned on the digits
  (its 8x8x1 input), converted and exact.
"""

from pathlib import Path

import numpy as np
import pytest

import hls_backend
from fpga_tests.cli_helpers import cli
from hls_backend.core.exact_pairs import fold_exact_pairs
from hls_backend.errors import BadInputError

FIXTURES = Path(__file__).parent / 'fixtures' / 'example_models'


@pytest.fixture(scope='module')
def digits_npz(tmp_path_factory):
    """The digits as a user's npz: train, validation and test splits of their own."""
    from lpsubnet.datasets import load_digits_images

    x, y = load_digits_images()
    path = tmp_path_factory.mktemp('data') / 'digits.npz'
    np.savez(path, x_train=x[:1200], y_train=y[:1200], x_val=x[1200:1500], y_val=y[1200:1500], x_test=x[1500:],
             y_test=y[1500:])  # fmt: skip
    return path


def test_keras_2_0_sequential_json_and_whole_model_h5_load_the_same_model(digits_npz):
    from_json = hls_backend.load_qkeras_model(FIXTURES / 'KERAS_conv2d_model.json')
    from_h5 = hls_backend.load_qkeras_model(FIXTURES / 'KERAS_conv2d_model_full.h5')
    for model in (from_json, from_h5):
        assert tuple(model.inputs[0].shape) == (None, 8, 8, 1)  # not the 5-D shape of Keras 3's own reading
        assert [layer.__class__.__name__ for layer in model.layers] == ['Conv2D', 'Dropout', 'Flatten', 'Dense']
    for a, b in zip(from_json.get_weights(), from_h5.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.load(digits_npz)['x_test']
    np.testing.assert_array_equal(from_json.predict(x, verbose=0), from_h5.predict(x, verbose=0))


def test_a_weights_only_h5_names_the_json_to_give():
    with pytest.raises(BadInputError, match=r'holds weights only \(no model_config\): give .*KERAS_conv2d_model\.json'):
        hls_backend.load_qkeras_model(FIXTURES / 'KERAS_conv2d_model_weights.h5')


def test_the_float_relus_of_the_mnist_cnn_fold_without_changing_a_value():
    model = hls_backend.load_qkeras_model(FIXTURES / 'qkeras_mnist_cnn.json')
    folded, notes = fold_exact_pairs(model)
    assert [n.split("'")[1] for n in notes] == ['q_conv2d', 'q_conv2d_1']
    assert all(layer.get_config().get('activation') != 'relu' for layer in folded.layers)
    x = np.random.default_rng(0).uniform(-1, 1, (256, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), folded.predict(x, verbose=0))


def _relu_model(quantizer, second_user=False, relu_layer=False):
    import keras
    import qkeras

    inp = keras.Input((6,))
    dense = qkeras.QDense(
        5,
        kernel_quantizer=qkeras.quantized_bits(6, 0, alpha=1),
        bias_quantizer=qkeras.quantized_bits(6, 0, alpha=1),
        activation=None if relu_layer else 'relu',
        name='d',
    )(inp)
    relu = keras.layers.ReLU(name='r')(dense) if relu_layer else dense
    q = qkeras.QActivation(quantizer, name='q')(relu)
    if second_user:
        q = keras.layers.Add(name='add')([q, keras.layers.Activation('linear', name='other')(relu)])
    out = qkeras.QDense(
        3, kernel_quantizer=qkeras.quantized_bits(6, 0, alpha=1), bias_quantizer=qkeras.quantized_bits(6, 0, alpha=1)
    )(q)
    return keras.Model(inp, out)


@pytest.mark.parametrize(
    ('quantizer', 'second_user', 'relu_layer', 'folds'),
    [
        ('quantized_relu(4,1)', False, False, True),
        ('quantized_relu(4,1)', False, True, True),  # a ReLU() layer is removed
        ('quantized_bits(4,1,keep_negative=False,alpha=1)', False, False, True),  # no sign: negatives -> 0
        ('quantized_bits(4,1,alpha=1)', False, False, False),  # keeps negative values: the relu matters
        ('quantized_relu(4,1,negative_slope=0.25)', False, False, False),  # a leaky quantizer
        ('quantized_relu(4,1)', True, False, False),  # the relu's output is read elsewhere too
    ],
)
def test_only_provably_equal_pairs_fold(quantizer, second_user, relu_layer, folds):
    model = _relu_model(quantizer, second_user, relu_layer)
    folded, notes = fold_exact_pairs(model)
    assert bool(notes) == folds
    if folds:
        x = np.random.default_rng(1).normal(size=(2000, 6)).astype(np.float32)
        np.testing.assert_array_equal(model.predict(x, verbose=0), folded.predict(x, verbose=0))
        assert 'r' not in [layer.name for layer in folded.layers]
    else:
        assert folded is model


# A 28x28 CNN: its C simulation builds for ~45 s on a busy 2-core machine, so both io types are slow cases.
@pytest.mark.slow
@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
def test_hls4ml_qkeras_mnist_cnn_converts_unchanged_and_is_exact(io_type, tmp_path):
    x = np.random.default_rng(2).uniform(0, 1, (200, 28, 28, 1))  # pixels in [0, 1], as the model was trained
    np.save(tmp_path / 'x.npy', x)
    project = tmp_path / 'project'
    written = cli('hls', FIXTURES / 'qkeras_mnist_cnn.json', '--out', project, '--io-type', io_type,
                  '--inputs', tmp_path / 'x.npy')  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert "the float relu activation of layer 'q_conv2d' is folded into the quantizer of 'q_activation'" in (
        written.stdout
    )
    checked = cli('csim', project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'csim: EXACT 200/200 samples bit-exact' in checked.stdout


@pytest.mark.parametrize(
    'model', ['KERAS_conv2d_model.json', pytest.param('KERAS_conv2d_model_full.h5', marks=pytest.mark.slow)]
)
def test_a_keras_2_model_goes_through_prune_hls_and_csim_unchanged(model, digits_npz, tmp_path):
    out = tmp_path / 'pruned'
    pruned = cli('prune', FIXTURES / model, '--data', digits_npz, '--out', out, '--sparsity', 0.5,
                 '--epochs', 1, '--finetune-epochs', 1, '--qat-epochs', 1)  # fmt: skip
    assert pruned.returncode == 0, pruned.stderr
    assert "validation: 300 samples, the file's x_val/y_val" in pruned.stdout
    # The published weights were never trained on the digits: the tool says so.
    assert 'no better than chance' in pruned.stdout
    project = tmp_path / 'project'
    written = cli('hls', out / 'reduced.keras', '--out', project, '--inputs', digits_npz)
    assert written.returncode == 0, written.stderr
    checked = cli('csim', project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'csim: EXACT 297/297 samples bit-exact' in checked.stdout
