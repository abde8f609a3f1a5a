"""Metrics (MACs, footprint, BOPs, ranking agreement) and schedules as data."""

import json

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import layers
from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
from scipy.stats import kendalltau

from pruner import Schedule, bops, footprint, kendall_tau, levenshtein, macs, make_schedule, parameters


def tiny_qmodel():
    x_in = keras.Input((6, 6, 2))
    x = QActivation(quantized_bits(8, 0, alpha=1), name='input_quantizer')(x_in)
    x = QConv2D(
        4,
        3,
        kernel_quantizer=quantized_bits(4, 0, alpha=1),
        bias_quantizer=quantized_bits(8, 2, alpha=1),
        activation=quantized_relu(6, 2),
        name='conv',
    )(x)  # 4x4x4 out
    x = layers.Flatten()(x)
    out = QDense(
        3, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1), name='fc'
    )(x)
    return keras.Model(x_in, out)


def test_macs_parameters_footprint_bops_by_hand():
    m = tiny_qmodel()
    conv_macs = 4 * 4 * 3 * 3 * 2 * 4
    fc_macs = 64 * 3
    assert macs(m) == conv_macs + fc_macs
    assert parameters(m) == (3 * 3 * 2 * 4 + 4) + (64 * 3 + 3)
    fp = footprint(m)
    assert fp['weights'] == 72 * 4 + 4 * 8 + 192 * 4 + 3 * 8
    # Feature maps: the conv's input (8-bit input quantizer), the dense's input (6-bit relu), the output (float).
    assert fp['activations'] == 72 * 8 + 64 * 6 + 3 * 32
    assert fp['total'] == fp['weights'] + fp['activations']
    assert bops(m) == conv_macs * 4 * 8 + fc_macs * 4 * 6


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=30, unique=True), st.randoms())
def test_kendall_tau_matches_scipy_without_ties(mu, rnd):
    nu = list(mu)
    rnd.shuffle(nu)
    assert kendall_tau(mu, nu) == pytest.approx(kendalltau(mu, nu).statistic, abs=1e-9)


def test_kendall_tau_extremes_and_levenshtein():
    s = np.arange(10.0)
    assert kendall_tau(s, s) == 1.0 and kendall_tau(s, -s) == -1.0
    assert levenshtein([0, 1, 2, 3], [0, 1, 2, 3]) == 0
    assert levenshtein([0, 1, 2, 3], [1, 0, 2, 3]) == 2
    assert levenshtein('kitten', 'sitting') == 3
    assert levenshtein([], [1, 2]) == 2


def test_layerwise_windows_are_consecutive_and_round_trip():
    sched = make_schedule(
        'layerwise',
        [0, 2, 3],
        start=0.5,
        interval=0.125,
        refresh=0.025,
        unit='epochs',
        steps_per_epoch=400,
        group_names=['a', 'b', 'c', 'd'],
    )
    assert [(w.groups, w.start, w.length, w.refresh) for w in sched.windows] == [
        ((0,), 200, 50, 10),
        ((2,), 250, 50, 10),
        ((3,), 300, 50, 10),
    ]
    assert sched.windows[0].update_steps() == [210, 220, 230, 240, 250]
    again = Schedule.from_dict(json.loads(json.dumps(sched.to_dict())))
    assert again == sched
    text = str(sched)
    assert 'layerwise' in text and "['c']" in text and '200-250' in text


def test_oneshot_is_one_window_masked_at_its_end():
    sched = make_schedule('oneshot', [0, 1, 2], start=10, interval=100, refresh=5)
    (w,) = sched.windows
    assert w.groups == (0, 1, 2) and w.update_steps() == [110]


def test_gradual_follows_the_cubic_ramp():
    (w,) = make_schedule('gradual', [0, 1], start=0, interval=100, refresh=25).windows
    assert w.update_steps() == [25, 50, 75, 100]
    for step in w.update_steps():
        assert w.sparsity_at(step, 0.8) == pytest.approx(0.8 * (1 - (1 - step / 100) ** 3))
    assert w.sparsity_at(100, 0.8) == pytest.approx(0.8)


def test_schedule_errors_name_the_problem():
    with pytest.raises(ValueError, match='unknown schedule'):
        make_schedule('cyclic', [0])
    with pytest.raises(ValueError, match='steps_per_epoch'):
        make_schedule('layerwise', [0], interval=1.0, unit='epochs')
