"""The QKeras -> ap_fixed table in hls_backend.core.fixed_point, checked against QKeras itself.

For each supported quantizer the ap type's grid, range and rounding (FixedType.quantize,
which models an assignment in C++) must give exactly what the QKeras quantizer gives.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qkeras import quantized_bits, quantized_relu

from hls_backend.core.fixed_point import FixedType, parse_fixed_type, quantizer_type
from hls_backend.errors import UnsupportedModelError


def _probe_values(fixed: FixedType, seed: int) -> np.ndarray:
    """Grid points, exact ties between grid points, random values, and out-of-range values."""
    rng = np.random.default_rng(seed)
    span = max(abs(fixed.min_value), fixed.max_value) + 4 * fixed.lsb
    grid = np.arange(-span, span, fixed.lsb / 2)  # includes every tie (half an LSB)
    return np.concatenate([grid, rng.uniform(-2 * span, 2 * span, 500)]).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 12),
    integer=st.integers(-2, 6),
    keep_negative=st.booleans(),
    symmetric=st.booleans(),
    seed=st.integers(0, 99),
)
def test_quantized_bits_matches_its_ap_type(bits, integer, keep_negative, symmetric, seed):
    if bits == 1 and keep_negative:
        return  # QKeras's sign function, refused (test_quantizer_range.py)
    q = quantized_bits(bits, integer, keep_negative=keep_negative, symmetric=symmetric and keep_negative, alpha=1)
    fixed = quantizer_type(q, 'test')
    x = _probe_values(fixed, seed)
    expected = np.asarray(q(x), dtype=np.float64)
    assert np.array_equal(fixed.quantize(x), expected)


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 12), integer=st.integers(0, 6), seed=st.integers(0, 99))
def test_quantized_relu_matches_its_ap_type(bits, integer, seed):
    q = quantized_relu(bits, integer)
    fixed = quantizer_type(q, 'test')
    assert fixed.signed is False and (fixed.width, fixed.integer) == (bits, integer)
    x = _probe_values(fixed, seed)
    assert np.array_equal(fixed.quantize(np.maximum(x, 0)), np.asarray(q(x), dtype=np.float64))


def test_documented_table():
    assert quantizer_type(quantized_bits(8, 3, alpha=1), 'x').ap() == 'ap_fixed<8,4,AP_RND_CONV,AP_SAT>'
    assert (
        quantizer_type(quantized_bits(8, 3, keep_negative=False, alpha=1), 'x').ap()
        == 'ap_ufixed<8,3,AP_RND_CONV,AP_SAT>'
    )
    assert (
        quantizer_type(quantized_bits(8, 3, symmetric=True, alpha=1), 'x').ap()
        == 'ap_fixed<8,4,AP_RND_CONV,AP_SAT_SYM>'
    )
    assert quantizer_type(quantized_relu(6, 2), 'x').ap() == 'ap_ufixed<6,2,AP_RND_CONV,AP_SAT>'


@pytest.mark.parametrize(
    'quantizer,message',
    [
        (quantized_bits(4, 0, alpha='auto_po2'), "alpha='auto_po2'"),
        (quantized_relu(4, 1, negative_slope=0.25), 'negative_slope'),
        ({'class_name': 'quantized_po2', 'config': {'bits': 4}}, 'quantized_po2 has no bit-exact fixed-point form'),
        ({'class_name': 'quantized_tanh', 'config': {'bits': 4}}, 'quantized_tanh'),
    ],
)
def test_refused_quantizers_are_named(quantizer, message):
    with pytest.raises(UnsupportedModelError, match=message):
        quantizer_type(quantizer, "layer 'x' kernel_quantizer")


def test_parse_fixed_type():
    assert parse_fixed_type('ap_fixed<16,6>') == FixedType(16, 6, True, 'TRN', 'WRAP')
    assert parse_fixed_type('fixed<8,3,RND_CONV,SAT>') == FixedType(8, 3, True, 'RND_CONV', 'SAT')
    assert parse_fixed_type('ap_ufixed<8,2,AP_RND_CONV,AP_SAT>') == FixedType(8, 2, False, 'RND_CONV', 'SAT')
    with pytest.raises(ValueError, match='expected e.g. ap_fixed<16,6>'):
        parse_fixed_type('float32')
