"""to_torch: a reduced QKeras model -> an nn.Module that computes exactly what QKeras computes.

The fake quantizers are checked against qkeras-v3's quantized_bits (alpha=1) and
quantized_relu value by value, on exact ties (QKeras rounds half to even) and beyond
the range (saturation), and so is their gradient. The reduced models come from PyTorch
modules through the pruner's own steps (from_torch, masks, cut, BatchNorm folded,
power-of-two quantizers): on inputs on the input quantizer's grid, the module's
outputs equal the QKeras model's bit for bit in float64, and also in float32 (every
partial sum of these small models is exact in float32, as the HLS route requires).
Average pooling is exact only over a power-of-two count (a division by 6 rounds
differently in float32 and float64): the models here pool over 4 or 8 values.
"""

import numpy as np
import pytest
import tensorflow as tf
import torch
from qkeras import quantized_bits, quantized_relu

from fpga_tests import torch_models
from pruner import MaskedModel, calibrate, fold_batchnorm, from_torch, plan_quantization, reduce, to_qkeras
from pruner.torch_export import TorchExportError, export_torch, fixed_point, to_torch
from pruner.torch_import import to_channels_first, to_channels_last
from pruner.torch_layers import FixedPoint

QUANTIZERS = [
    quantized_bits(4, 1, alpha=1),
    quantized_bits(6, 0, alpha=1),
    quantized_bits(8, 3, alpha=1),
    quantized_bits(8, -2, alpha=1),
    quantized_bits(5, 2, symmetric=1, alpha=1),
    quantized_bits(6, 2, keep_negative=False, alpha=1),
    quantized_bits(8, 3),  # alpha=None: the same grid
    quantized_relu(4, 2),
    quantized_relu(8, 3),
    quantized_relu(6, 0),
]


def probe_values(step: float, top: float) -> np.ndarray:
    """Every half step (so every tie) from beyond -range to beyond +range, plus random values."""
    halves = np.arange(-2 * top - 4 * step, 2 * top + 4 * step, step / 2)
    rng = np.random.default_rng(0)
    return np.concatenate([halves, rng.uniform(-3 * top, 3 * top, 500), [0.0, -0.0]]).astype(np.float32)


@pytest.mark.parametrize('quantizer', QUANTIZERS, ids=str)
def test_fixed_point_equals_qkeras_on_ties_and_beyond_the_range(quantizer):
    module = fixed_point(quantizer, 'test')
    x = probe_values(module.step, module.max_value)
    expected = np.asarray(quantizer(tf.constant(x)), dtype=np.float64)
    got64 = module(torch.from_numpy(x.astype(np.float64))).numpy()
    got32 = module(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got64, expected)
    np.testing.assert_array_equal(got32, expected)
    ties = np.abs(x / module.step - np.round(x / module.step)) == 0.5
    assert ties.sum() > 10  # ties really were probed
    assert got64.max() == module.max_value and got64.min() == module.lo * module.step  # saturation reached


@pytest.mark.parametrize('quantizer', QUANTIZERS, ids=str)
def test_fixed_point_gradient_is_qkeras_straight_through_estimator(quantizer):
    module = fixed_point(quantizer, 'test')
    x = probe_values(module.step, module.max_value)[::7]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = quantizer(xt)
    expected = tape.gradient(y, xt).numpy()
    xg = torch.from_numpy(x.copy()).requires_grad_()
    module(xg).sum().backward()
    np.testing.assert_array_equal(xg.grad.numpy(), expected)


def test_unsupported_quantizers_are_named():
    from qkeras import quantized_po2

    with pytest.raises(TorchExportError, match=r"layer 'x' kernel: quantizer quantized_po2 has no PyTorch form"):
        fixed_point(quantized_po2(4), "layer 'x' kernel")
    with pytest.raises(TorchExportError, match=r"quantized_bits with alpha='auto'; supported: alpha=1 or None"):
        fixed_point(quantized_bits(4, 0, alpha='auto'), 'here')
    with pytest.raises(TorchExportError, match=r'quantized_relu with negative_slope'):
        fixed_point(quantized_relu(4, 0, negative_slope=0.25), 'here')


def grid_inputs(qmodel, shape, n=300, seed=0) -> np.ndarray:
    """Inputs on the input quantizer's grid (a spread that also saturates a few)."""
    step = fixed_point(qmodel.get_layer('input_quantizer').activation, 'input').step
    x = np.random.default_rng(seed).normal(0, 1.5, (n, *shape))
    return (np.round(x / step) * step).astype(np.float32)


def reduced_qkeras(name: str, seed: int = 0):
    """A PyTorch model through the pruner's steps: float Keras, half the channels of every
    prunable group cut, BatchNorm folded, power-of-two quantizers from calibration."""
    module = torch_models.build(name, seed)
    model = from_torch(module, torch_models.inputs(name, 16), verbose=0)
    masked = MaskedModel(model)
    rng = np.random.default_rng(seed)
    for group in masked.table.prunable:
        keep = max(1, group.channels // 2)
        masked.set_mask(group.index, np.sort(rng.choice(group.channels, keep, replace=False)))
    folded = fold_batchnorm(reduce(masked))
    calibration_x = to_channels_last(torch_models.inputs(name, 128, seed=5).numpy())
    plan = plan_quantization(folded, calibrate(folded, calibration_x), weight_bits=6, activation_bits=8)
    return to_qkeras(folded, plan)


# The pruner's QKeras step has no form for ReLU6 (a clipped ReLU): the CNN with ReLU stands in.
REVERSIBLE = ['jet_mlp', 'cnn_relu', 'residual', 'concat', 'conv1d']


@pytest.fixture(scope='module', params=REVERSIBLE)
def reduced(request):
    name = request.param
    qmodel = reduced_qkeras(name)
    keras_shape = tuple(int(s) for s in qmodel.inputs[0].shape[1:])
    x = grid_inputs(qmodel, keras_shape)
    return name, qmodel, x, np.asarray(qmodel.predict(x, verbose=0), dtype=np.float64)


def test_reduced_model_is_smaller_than_the_torch_original(reduced):
    name, qmodel, x, expected = reduced
    module = to_torch(qmodel)
    original = torch_models.build(name)
    assert sum(p.numel() for p in module.parameters()) < sum(p.numel() for p in original.parameters())


def test_outputs_equal_qkeras_exactly_in_float64(reduced):
    name, qmodel, x, expected = reduced
    module = to_torch(qmodel).double()
    with torch.no_grad():
        got = module(torch.from_numpy(to_channels_first(x).astype(np.float64))).numpy()
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) > 50  # not a degenerate (saturated or dead) model


def test_outputs_equal_qkeras_exactly_in_float32(reduced):
    name, qmodel, x, expected = reduced
    with torch.no_grad():
        got = to_torch(qmodel)(torch.from_numpy(to_channels_first(x))).numpy()
    np.testing.assert_array_equal(got.astype(np.float64), expected)


def test_weights_are_on_their_fixed_point_grid(reduced):
    name, qmodel, x, expected = reduced
    module = to_torch(qmodel).double()
    checked = 0
    for layer in module.layers.values():
        for attr, quantizer in (('weight', 'weight_quantizer'), ('bias', 'bias_quantizer')):
            q = getattr(layer, quantizer, None)
            if q is None or getattr(layer, attr, None) is None:
                continue
            value = getattr(layer, attr).detach()
            units = value / q.step
            assert torch.equal(units, torch.round(units)), (layer, attr)
            assert units.min() >= q.lo and units.max() <= q.hi
            assert torch.equal(q(value), value)  # the quantizer in forward leaves them as they are
            checked += 1
    assert checked >= 4


def test_pt2_round_trip_keeps_every_output_bit(reduced, tmp_path):
    name, qmodel, x, expected = reduced
    module = to_torch(qmodel)
    path = tmp_path / 'reduced.pt2'
    export_torch(module, path)
    loaded = torch.export.load(path).module()
    for n in (1, 7, len(x)):  # the batch axis is dynamic
        with torch.no_grad():
            got = loaded(torch.from_numpy(to_channels_first(x[:n]))).numpy()
        np.testing.assert_array_equal(got.astype(np.float64), expected[:n])


def test_the_module_keeps_training_quantization_aware():
    qmodel = reduced_qkeras('jet_mlp')
    module = to_torch(qmodel).train()
    x = torch.randn(64, 16)
    loss = torch.nn.functional.cross_entropy(module(x), torch.randint(0, 5, (64,)))
    loss.backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    assert all(g is not None and torch.any(g != 0) for g in grads.values()), [k for k, g in grads.items() if g is None]
    torch.optim.SGD(module.parameters(), lr=0.05).step()
    layer = next(m for m in module.layers.values() if hasattr(m, 'weight_quantizer'))
    units = layer.weight_quantizer(layer.weight.detach()) / layer.weight_quantizer.step
    assert torch.equal(units, torch.round(units))  # forward still sees on-grid weights after an update


def test_softmax_output_matches_to_float32_rounding():
    """A model ending in a softmax: QKeras computes the softmax in float32 (TensorFlow),
    the float64 module in float64, so only the logits can be equal bit for bit; the
    probabilities agree to float32 rounding and pick the same class."""
    import keras

    qmodel = reduced_qkeras('jet_mlp')
    logits = qmodel.outputs[0]
    probabilities = keras.layers.Softmax(name='probabilities')(logits)
    with_softmax = keras.Model(qmodel.inputs, probabilities)
    x = grid_inputs(qmodel, (16,))
    module = to_torch(with_softmax).double()
    with torch.no_grad():
        got = module(torch.from_numpy(x.astype(np.float64))).numpy()
    expected = with_softmax.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert np.array_equal(got.argmax(1), expected.argmax(1))


def test_unsupported_layer_is_named():
    import keras

    inp = keras.Input((4,))
    out = keras.layers.LayerNormalization(name='norm')(keras.layers.Dense(3, name='d')(inp))
    with pytest.raises(TorchExportError, match=r"layer 'norm' \(LayerNormalization\) has no PyTorch form here; supported: "
                       r'Dense, QDense -> QLinear'):  # fmt: skip
        to_torch(keras.Model(inp, out))


def test_float_keras_model_round_trips_through_torch():
    """to_torch also takes float Keras models: from_torch's output goes back to torch unchanged."""
    module = torch_models.build('residual')
    x = torch_models.inputs('residual', 32, seed=9)
    back = to_torch(from_torch(module, torch_models.inputs('residual'), verbose=0))
    with torch.no_grad():
        np.testing.assert_allclose(back(x).numpy(), module(x).numpy(), rtol=1e-5, atol=1e-5)
    assert back.layers['stem_0'].weight_quantizer is None  # a float model: no quantizers


def test_fixed_point_module_repr_shows_the_qkeras_form():
    assert 'quantized_relu(8, 3): step 2^-5, integers [0, 255]' in repr(fixed_point(quantized_relu(8, 3), 'x'))
    assert isinstance(fixed_point(quantized_bits(8, 3, alpha=1), 'x'), FixedPoint)
