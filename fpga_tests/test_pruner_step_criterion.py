"""The least-error step criterion (issue 26, item 1): each quantizer's power-of-two step is
the one whose QKeras quantizer reproduces the values best, at calibration and at every
range refresh; the designs it makes stay bit-exact.

The reference here is QKeras itself: a brute-force search over a wide range of integer
bits, each candidate scored on what ``quantized_bits`` / ``quantized_relu`` output.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qkeras import quantized_bits, quantized_relu

import hls_backend
from fpga_tests.pruner_models import digits, small_compress
from pruner.errors import PrunerError
from pruner.qat import quantizer_slots, refresh_ranges
from pruner.quantize import (
    Fixed,
    Observed,
    StepRule,
    calibrate,
    least_error_fixed,
    lowest_integer_bits,
    quantization_error,
    quantized_values,
    signed_integer_bits,
    unsigned_integer_bits,
    weight_fixed,
)
from pruner.surgery import fold_batchnorm, to_qkeras


def _qkeras_output(values: np.ndarray, fixed: Fixed) -> np.ndarray:
    quantizer = quantized_bits(fixed.bits, fixed.integer, alpha=1) if fixed.kind == 'bits' else None
    if quantizer is None:
        quantizer = quantized_relu(fixed.bits, fixed.integer)
    return np.asarray(quantizer(values.astype(np.float32)), dtype=np.float64)


def _brute_force(values: np.ndarray, bits: int, kind: str, covering: int) -> Fixed:
    """Every integer width from the lowest allowed to well above the maximum's, scored on
    QKeras's own output; of equal errors the one nearest ``covering`` (then the wider)."""
    target = np.maximum(values, 0.0) if kind == 'relu' else values.astype(np.float64)
    scored = []
    for integer in range(lowest_integer_bits(kind, bits), covering + 8):
        fixed = Fixed(kind, bits, integer)
        error = float(np.mean((_qkeras_output(values, fixed) - target) ** 2))
        scored.append((error, abs(integer - covering), -integer, fixed))
    return min(scored, key=lambda s: s[:3])[3]


small_tensors = st.integers(1, 40).flatmap(
    lambda n: st.lists(st.floats(-40, 40, allow_nan=False, width=32), min_size=n, max_size=n)
)


@settings(max_examples=120, deadline=None)
@given(small_tensors, st.integers(2, 8), st.sampled_from(['bits', 'relu']))
def test_least_error_step_equals_a_brute_force_search_over_qkeras_outputs(values, bits, kind):
    v = np.asarray(values, dtype=np.float32)
    if kind == 'bits':
        covering = signed_integer_bits(float(np.abs(v).max()), bits)
    else:
        covering = unsigned_integer_bits(float(np.maximum(v, 0).max()), bits)
    chosen = least_error_fixed(v, bits, kind, covering)
    assert chosen == _brute_force(v, bits, kind, covering)


@settings(max_examples=80, deadline=None)
@given(small_tensors, st.integers(2, 10), st.integers(-6, 8), st.sampled_from(['bits', 'relu']))
def test_the_error_is_measured_on_exactly_what_qkeras_outputs(values, bits, integer, kind):
    fixed = Fixed(kind, bits, max(integer, lowest_integer_bits(kind, bits)))
    v = np.asarray(values, dtype=np.float32)
    np.testing.assert_array_equal(quantized_values(v, fixed), _qkeras_output(v, fixed))


def test_at_three_bits_the_criterion_trades_a_few_saturated_outliers_for_a_finer_step():
    rng = np.random.default_rng(0)
    weights = np.concatenate([rng.normal(0, 0.1, 4000), [0.9, -1.1]]).astype(np.float32)
    covering = weight_fixed(weights, 3)  # holds 1.1: integer 1, step 0.5: nearly every weight is 0
    least = StepRule('mse').weight(weights, 3)
    assert least.integer < covering.integer and least.step < covering.step
    assert quantization_error(weights, least) < 0.5 * quantization_error(weights, covering)
    assert np.count_nonzero(quantized_values(weights, least)) > 10 * np.count_nonzero(
        quantized_values(weights, covering)
    )
    # Biases always hold their maximum, whatever the criterion.
    assert StepRule('mse').weight(weights, 3, bias=True) == covering


def test_activation_quantizers_are_chosen_on_the_calibration_sample():
    rng = np.random.default_rng(1)
    seen = Observed(relu=True, per_batch=1000)
    for _ in range(4):
        seen.update(np.concatenate([rng.exponential(0.2, 5000), -rng.exponential(1, 500), [6.0]]))
    assert seen.maximum == 6.0 and 3 * 1000 < seen.sample.size <= 4 * 1000 and seen.sample.min() >= 0
    again = Observed(relu=True, per_batch=1000)
    rng = np.random.default_rng(1)
    for _ in range(4):
        again.update(np.concatenate([rng.exponential(0.2, 5000), -rng.exponential(1, 500), [6.0]]))
    np.testing.assert_array_equal(seen.sample, again.sample)  # the same data, the same sample
    least = StepRule('mse').activation(seen, 4, relu=True)
    assert least.kind == 'relu' and least == least_error_fixed(seen.sample, 4, 'relu', 3)
    assert least.integer < StepRule('max').activation(seen, 4, relu=True).integer == 3


def test_a_percentile_belongs_to_the_max_criterion_only():
    with pytest.raises(PrunerError, match="percentile sets the range of the 'max' step criterion"):
        StepRule('mse', percentile=99.0)
    with pytest.raises(PrunerError, match="unknown step criterion 'median'"):
        StepRule('median')


def test_the_range_refresh_applies_the_same_criterion_to_the_current_weights():
    from fpga_tests.pruner_models import randomize_batchnorm, residual_cnn
    from pruner.quantize import plan_quantization

    folded = fold_batchnorm(randomize_batchnorm(residual_cnn()))
    x = np.random.default_rng(2).normal(0, 1, (64, 8, 8, 1)).astype('float32')
    rule = StepRule('mse')
    plan = plan_quantization(folded, calibrate(folded, x), weight_bits=3, activation_bits=4, rule=rule)
    qmodel = to_qkeras(folded, plan)
    slots = quantizer_slots(qmodel, plan)
    kernel = next(s for s in slots if s.role == 'kernel')
    # Training moved the weights (say): the refresh re-chooses by least error, not by the maximum.
    layer = qmodel.get_layer(kernel.layer)
    grown = np.asarray(layer.kernel) * 8.0
    layer.kernel.assign(grown)
    refresh_ranges(qmodel, slots, x, rule)
    assert kernel.fixed == least_error_fixed(grown, 3, 'bits', weight_fixed(grown, 3).integer)
    assert kernel.quantizer.integer == kernel.fixed.integer
    # Settled: a second refresh changes nothing.
    assert refresh_ranges(qmodel, slots, x, rule) == []


@pytest.fixture(scope='module')
def three_bit_model():
    """The shared short compress run at W3A4 with the least-error criterion."""
    return small_compress(weight_bits=3, activation_bits=4, step_criterion='mse', epochs=3, qat_epochs=2)


def test_compress_records_the_criterion_and_exports_types_of_its_choice(three_bit_model):
    qmodel, manifest = three_bit_model
    assert manifest['pruner']['step_criterion'] == 'mse'
    types = manifest['quantization']['layers']
    assert {entry['weights']['kernel']['bits'] for entry in types.values() if 'kernel' in entry['weights']} == {3}
    # alpha stays 1: power-of-two steps only, so both routes can be exact.
    for layer in qmodel.layers:
        quantizer = getattr(layer, 'kernel_quantizer_internal', None)
        if quantizer is not None:
            assert quantizer.alpha == 1


def test_three_bit_least_error_designs_are_bit_exact_in_c_simulation(three_bit_model, tmp_path):
    qmodel, _ = three_bit_model
    x = digits()[2][:40]
    path = tmp_path / 'w3a4.keras'
    qmodel.save(path)
    info = hls_backend.write_project(path, tmp_path / 'prj', hls_backend.HLSOptions(), inputs=x)
    assert info.exact_by_construction
    result = hls_backend.csim(tmp_path / 'prj', second_check=True)
    assert result.exact_matches == result.samples == 40 and result.max_abs_diff == 0.0
    assert result.checks['hls4ml_predict']['exact_matches'] == 40


@pytest.mark.slow
def test_three_bit_least_error_designs_are_bit_exact_in_rtl(three_bit_model, tmp_path):
    qmodel, _ = three_bit_model
    x = digits()[2][:30]
    path = tmp_path / 'w3a4.keras'
    qmodel.save(path)
    hls_backend.write_rtl(path, tmp_path / 'rtl', inputs=x, force_large=True)
    result = hls_backend.simulate_rtl(tmp_path / 'rtl', second_check=True)
    assert result.exact_matches == result.samples == 30 and result.max_abs_diff == 0.0
    assert all(check['exact'] for check in result.checks.values()), result.checks
