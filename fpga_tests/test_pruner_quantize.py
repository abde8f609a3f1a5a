"""Statistics-based power-of-two fixed point: the chosen quantizers cover the
calibration range without saturating, and use no more integer bits than needed."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from qkeras import quantized_bits, quantized_relu

from fpga_tests.pruner_models import randomize_batchnorm, residual_cnn
from pruner import MaskedModel, calibrate, fold_batchnorm, plan_quantization, reduce, to_qkeras
from pruner.quantize import Fixed, StepRule, signed_integer_bits, unsigned_integer_bits


@settings(max_examples=150, deadline=None)
@given(st.floats(1e-3, 300.0), st.integers(3, 12))
def test_signed_bits_hold_the_maximum_minimally(max_abs, bits):
    i = signed_integer_bits(max_abs, bits)
    q = quantized_bits(bits, i, alpha=1)
    step = 2.0 ** (i - bits + 1)
    for v in (max_abs, -max_abs):
        # No saturation: the value is only rounded (float32 input).
        assert abs(float(q(np.float32(v))) - np.float32(v)) <= step / 2 + 1e-6 * max_abs
    if i > -(bits - 1):  # one integer bit fewer would saturate
        assert max_abs > 2.0 ** (i - 1) - 2.0 ** (i - 1 - bits + 1)


@settings(max_examples=150, deadline=None)
@given(st.floats(1e-3, 300.0), st.integers(3, 12))
def test_relu_bits_hold_the_maximum_minimally(max_value, bits):
    i = unsigned_integer_bits(max_value, bits)
    q = quantized_relu(bits, i)
    step = 2.0 ** (i - bits)
    assert abs(float(q(np.float32(max_value))) - np.float32(max_value)) <= step / 2 + 1e-6 * max_value
    if i > 0:
        assert max_value > 2.0 ** (i - 1) - 2.0 ** (i - 1 - bits)


def test_ap_fixed_correspondence_in_manifest_types():
    assert Fixed('bits', 8, 3).ap_type == 'ap_fixed<8,4>'  # sign bit added
    assert Fixed('relu', 8, 3).ap_type == 'ap_ufixed<8,3>'
    assert Fixed('bits', 4, 0).max_value == 1 - 2**-3


def test_model_quantizers_cover_calibration_data():
    """With step_criterion 'max' (the least-error rule saturates outliers on purpose)."""
    model = randomize_batchnorm(residual_cnn())
    masked = MaskedModel(model)
    for g in masked.table.prunable:
        masked.set_mask(g.index, np.arange(0, g.channels, 2))
    folded = fold_batchnorm(reduce(masked))
    x = np.random.default_rng(0).normal(0, 2, size=(64, 8, 8, 1)).astype('float32')
    stats = calibrate(folded, x)
    plan = plan_quantization(folded, stats, weight_bits=4, activation_bits=6, rule=StepRule('max'))
    assert stats['__input__'].magnitude == float(np.abs(x).max())
    assert plan.input.max_value >= stats['__input__'].magnitude - plan.input.step / 2
    for name, entry in plan.layers.items():
        layer = folded.get_layer(name)
        for wname, fixed in entry.weights.items():
            w = next(v.numpy() for v in layer.weights if v.path.endswith(wname))
            q = np.asarray(fixed.quantizer()(w))
            assert np.abs(q - w).max() <= fixed.step / 2 + 1e-6, (name, wname)
        if entry.activation is not None:
            out = calibrate(folded, x)[name].magnitude
            assert out <= entry.activation.max_value + entry.activation.step / 2, name
    # And in the QKeras model: no activation quantizer clips the calibration data.
    q = to_qkeras(folded, plan)
    for name, entry in plan.layers.items():
        if entry.activation is not None:
            probe_q = calibrate(q, x)[name].magnitude
            assert probe_q <= entry.activation.max_value + 1e-6
            assert probe_q >= stats[name].magnitude - 8 * entry.activation.step, name  # not clipped far below


def test_percentile_option_uses_smaller_range():
    values = np.concatenate([np.linspace(-1, 1, 999), [40.0]])
    assert signed_integer_bits(np.percentile(np.abs(values), 99), 8) < signed_integer_bits(40.0, 8)


def test_last_layer_bit_override():
    model = residual_cnn()
    folded = fold_batchnorm(model)
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype('float32')
    plan = plan_quantization(
        folded, calibrate(folded, x), weight_bits=4, activation_bits=4, overrides={'logits': {'weight_bits': 8}}
    )
    assert plan.layers['logits'].weights['kernel'].bits == 8
    assert plan.layers['stem'].weights['kernel'].bits == 4
