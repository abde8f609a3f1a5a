"""Every quantizer QKeras accepts: an exact type on both routes, or refused up front.

Issue 27: a 3-bit letter MLP with ``quantized_bits(3, 3)`` kernels (integer bits equal
to the width, a step of 2) was accepted by ``lpsubnet hls`` and typed ``int<3>`` by
hls4ml (C simulation 89/1000 exact), and a Dropout after a ``quantized_relu(8, 7)``
became ``nnet::linear`` into ``ap_fixed<16,6>`` (6/100 exact). Here the whole
bits x integer range goes through one rule (``quantizer_type``) checked against QKeras,
then through C simulation and RTL in models whose every branch uses another
(bits, integer) for its kernel, bias and activation, each activation followed by
every pass-through layer kind.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

import hls_backend
from hls_backend.core.fixed_point import FixedType, quantizer_type
from hls_backend.errors import UnsupportedModelError

BITS = range(1, 13)


def integers(bits: int) -> range:
    """Integer bits from well below 0 to well past the width."""
    return range(-3, bits + 4)


def _probe(fixed: FixedType, seed: int = 0) -> np.ndarray:
    """Every grid point and every tie between two, out-of-range values, random values."""
    rng = np.random.default_rng(seed)
    span = max(abs(fixed.min_value), fixed.max_value) + 4 * fixed.lsb
    ties = np.arange(-span, span, fixed.lsb / 2)
    return np.concatenate([ties, rng.uniform(-2 * span, 2 * span, 200)]).astype(np.float32)


def _quantized_bits_cases():
    for bits in BITS:
        for integer in integers(bits):
            for keep_negative, symmetric in ((True, False), (True, True), (False, False)):
                yield bits, integer, keep_negative, symmetric


def test_quantized_bits_type_is_qkeras_over_the_whole_range():
    """Bits 1..12, integer bits -3..bits+3, signed, symmetric and unsigned: the ap type of
    the shared rule rounds and saturates exactly as QKeras does, or the quantizer is refused
    naming what it computes instead (1-bit signed quantized_bits is QKeras's sign, not a grid)."""
    refused = []
    for bits, integer, keep_negative, symmetric in _quantized_bits_cases():
        q = quantized_bits(bits, integer, keep_negative=keep_negative, symmetric=symmetric, alpha=1)
        try:
            fixed = quantizer_type(q, 'probe')
        except UnsupportedModelError as exc:
            refused.append((bits, integer, keep_negative, str(exc)))
            continue
        x = _probe(fixed, bits * 100 + integer)
        assert np.array_equal(fixed.quantize(x), np.asarray(q(x), dtype=np.float64)), (
            f'quantized_bits({bits}, {integer}, keep_negative={keep_negative}, symmetric={symmetric}) != {fixed.ap()}'
        )
    assert refused, 'the 1-bit signed quantizer must be refused'
    for bits, _integer, keep_negative, message in refused:
        assert (bits, keep_negative) == (1, True), message
        assert 'sign' in message


def test_quantized_relu_type_is_qkeras_over_the_whole_range():
    for bits in BITS:
        for integer in range(0, bits + 4):
            q = quantized_relu(bits, integer)
            fixed = quantizer_type(q, 'probe')
            x = _probe(fixed, bits * 100 + integer)
            assert np.array_equal(fixed.quantize(np.maximum(x, 0)), np.asarray(q(x), dtype=np.float64)), (
                f'quantized_relu({bits}, {integer}) != {fixed.ap()}'
            )


@pytest.mark.parametrize(
    'quantizer,message',
    [
        (quantized_relu(4, -1), 'negative integer'),
        (quantized_bits(1, 0, alpha=1), 'sign'),
        (quantized_bits(4, 1, alpha=1, qnoise_factor=0.5), 'qnoise_factor'),
    ],
)
def test_quantizers_without_a_grid_are_refused(quantizer, message):
    with pytest.raises(UnsupportedModelError, match=message):
        quantizer_type(quantizer, "layer 'd' kernel_quantizer")


# --- through the hardware routes ---------------------------------------------------------

PASS_THROUGH = ('Dropout', 'Activation(linear)', 'Reshape', 'UpSampling1D', 'ZeroPadding1D', 'Flatten')


def _on_grid(quantizer, fixed: FixedType, shape, rng) -> np.ndarray:
    """Random weights spread over the whole range of ``fixed``, extremes included."""
    values = rng.uniform(fixed.min_value - fixed.lsb, fixed.max_value + fixed.lsb, size=shape)
    flat = values.reshape(-1)
    flat[:2] = fixed.min_value, fixed.max_value
    return np.asarray(quantizer(values.astype(np.float32)), dtype=np.float32)


FAN = 5


def ladder_model(bits: int, seed: int = 0) -> keras.Model:
    """One branch per integer-bit setting of ``bits``-bit quantizers (kernel, bias and a
    signed or ReLU activation), each activation followed by every pass-through layer kind,
    all branches concatenated."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((6,), name='x')
    x = QActivation(quantized_bits(8, 2, alpha=1), name='input_q')(inp)
    # hls4ml's io_stream copies a tensor to at most 7 consumers: fan out in two levels
    # (each fan a wider quantizer, an exact copy that hls4ml does not remove as a no-op).
    fans = [
        QActivation(quantized_bits(9, 3, alpha=1), name=f'fan{j}')(x) for j in range(-(-len(integers(bits)) // FAN))
    ]
    branches = []
    for k, integer in enumerate(integers(bits)):
        kernel = quantized_bits(bits, integer, alpha=1)
        relu = integer % 2 == 0 and integer >= 0
        if bits == 1 or relu:
            act = quantized_relu(bits, max(integer, 0))
        else:
            act = quantized_bits(bits, integer, alpha=1)
        tag = f'i{integer}'.replace('-', 'm')
        if bits == 1:  # quantized_bits(1, ...) is QKeras's sign: weights need two bits
            kernel = quantized_bits(2, integer, alpha=1)
        dense = QDense(4, kernel_quantizer=kernel, bias_quantizer=kernel, activation=act, name=f'd_{tag}')
        h = dense(fans[k // FAN])
        fixed = quantizer_type(kernel, 'kernel')
        dense.set_weights([_on_grid(kernel, fixed, w.shape, rng) for w in dense.get_weights()])
        h = keras.layers.Dropout(0.25, name=f'drop_{tag}')(h)
        h = keras.layers.Activation('linear', name=f'lin_{tag}')(h)
        h = keras.layers.Reshape((2, 2), name=f'reshape_{tag}')(h)
        h = keras.layers.UpSampling1D(2, name=f'up_{tag}')(h)
        h = keras.layers.ZeroPadding1D(1, name=f'pad_{tag}')(h)
        branches.append(keras.layers.Flatten(name=f'flat_{tag}')(h))
    while len(branches) > 1:  # hls4ml joins two tensors per Concatenate
        pairs = [branches[i : i + 2] for i in range(0, len(branches), 2)]
        branches = [
            keras.layers.Concatenate(name=f'cat_{len(branches)}_{i}')(p) if len(p) == 2 else p[0]
            for i, p in enumerate(pairs)
        ]
    return keras.Model(inp, branches[0], name=f'ladder_w{bits}')


def _inputs(n: int = 200, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2.5, 2.5, size=(n, 6))


def _not_trivial(model, x):
    """Exactness on outputs that are all 0 or all saturated would prove nothing."""
    y = np.asarray(model.predict(x, verbose=0))
    varying = np.mean([len(np.unique(column)) > 1 for column in y.T])
    assert varying > 0.5, f'{model.name}: only {varying:.0%} of the outputs vary over the samples'


LADDER_BITS = (1, 2, 3, 4, 8)
HLS_CASES = [
    pytest.param(b, io, marks=() if (b, io) in {(3, 'io_parallel'), (2, 'io_stream')} else (pytest.mark.slow,))
    for b, io in itertools.product(LADDER_BITS, ('io_parallel', 'io_stream'))
]


@pytest.mark.parametrize('bits,io_type', HLS_CASES)
def test_every_quantizer_width_is_exact_in_c_simulation(tmp_path, bits, io_type):
    model = ladder_model(bits)
    path = tmp_path / 'ladder.keras'
    model.save(path)
    x = _inputs()
    _not_trivial(model, x)
    info = hls_backend.write_project(path, tmp_path / 'prj', hls_backend.HLSOptions(io_type=io_type), inputs=x)
    assert info.exact_by_construction
    result = hls_backend.csim(tmp_path / 'prj', second_check=io_type == 'io_parallel')
    assert result.exact, result.mismatches[:3]
    assert result.exact_matches == len(x)


@pytest.mark.parametrize('bits', [pytest.param(b, marks=() if b == 3 else (pytest.mark.slow,)) for b in LADDER_BITS])
def test_every_quantizer_width_is_exact_in_rtl(tmp_path, bits):
    model = ladder_model(bits)
    path = tmp_path / 'ladder.keras'
    model.save(path)
    x = _inputs(100)
    result = hls_backend.rtl(path, tmp_path / 'rtl', inputs=x)
    assert result.exact, result.mismatches[:3]
    assert result.exact_matches == len(x)


def test_integer_bits_at_the_width_are_typed_by_the_plan_not_by_hls4ml(tmp_path):
    """The issue's exact case: ``quantized_bits(3, 3)`` weights hold -8..6 in steps of 2.
    The design's weight type is ``ap_fixed<3,4>`` (hls4ml's own rule gives ``int<3>``)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name='x')
    h = QActivation(quantized_bits(6, 2, alpha=1), name='input_q')(inp)
    out = QDense(3, kernel_quantizer=quantized_bits(3, 3, alpha=1), bias_quantizer=quantized_bits(3, 3, alpha=1))(h)
    model = keras.Model(inp, out)
    path = tmp_path / 'm.keras'
    model.save(path)
    info = hls_backend.write_project(path, tmp_path / 'prj', inputs=_inputs(20)[:, :4])
    weight_types = {row['weight'] for row in info.design['layers'] if row['weight']}
    assert weight_types == {'fixed<3,4,TRN,WRAP,0>'}, weight_types
