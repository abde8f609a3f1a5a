"""How many channels go, which go together, and the errors for bad requests."""

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import layers

from fpga_tests.pruner_models import digits, residual_cnn, sequential_cnn
from pruner import (
    ChannelPruningCallback,
    MaskedModel,
    UnsupportedLayerError,
    analyze,
    compress,
    kept_count,
    make_schedule,
    registered,
    validate_sparsity,
)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 512), st.floats(0, 0.999))
def test_exactly_floor_s_times_c_removed_never_all(channels, sparsity):
    keep = kept_count(channels, sparsity)
    assert keep == max(1, channels - math.floor(sparsity * channels))
    assert 1 <= keep <= channels


def test_sparsity_zero_removes_nothing():
    for c in (1, 3, 64):
        assert kept_count(c, 0.0) == c


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 256), st.floats(0, 0.99), st.sampled_from([2, 4, 8]))
def test_round_to_makes_multiples(channels, sparsity, n):
    keep = kept_count(channels, sparsity, round_to=n)
    assert keep == channels or keep % n == 0
    assert keep >= kept_count(channels, sparsity)


@pytest.mark.parametrize('bad', [-0.1, 1.0, 1.5, float('nan'), 'half'])
def test_invalid_sparsity_names_the_value(bad):
    with pytest.raises(ValueError, match=r'\[0, 1\)') as info:
        validate_sparsity(bad)
    assert repr(bad) in str(info.value)


def test_compress_rejects_invalid_sparsity_before_training():
    x, y, xt, yt = digits()
    with pytest.raises(ValueError, match='1.2'):
        compress(sequential_cnn(), (x, y), (xt, yt), sparsity=1.2)
    with pytest.raises(ValueError, match="layer 'conv1'.*-0.5"):
        compress(sequential_cnn(), (x, y), (xt, yt), per_layer_sparsity={'conv1': -0.5})


def prune_with_callback(model, sparsity, steps=4):
    masked = MaskedModel(model)
    groups = [g.index for g in masked.table.prunable]
    schedule = make_schedule('oneshot', groups, start=0, interval=steps, refresh=steps)
    cb = ChannelPruningCallback(masked, schedule, 'activation_l1', sparsity=sparsity)
    masked.model.compile(optimizer=keras.optimizers.SGD(0.0), loss='mse', jit_compile=False)
    x = np.random.default_rng(0).random((steps * 8, *model.inputs[0].shape[1:])).astype('float32')
    y = np.zeros((len(x), model.outputs[0].shape[-1]), 'float32')
    masked.model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[cb])
    return masked


@pytest.mark.parametrize('sparsity', [0.0, 0.3, 0.5, 0.9])
def test_every_group_loses_floor_s_c_through_the_callback(sparsity):
    masked = prune_with_callback(sequential_cnn(filters=(8, 12), dense=16), sparsity)
    for g in masked.table.prunable:
        kept = masked.kept()[g.index]
        assert len(kept) == g.channels - math.floor(sparsity * g.channels)
        if sparsity == 0.0:
            assert kept.tolist() == list(range(g.channels))


def test_tied_channels_are_removed_together():
    masked = prune_with_callback(residual_cnn(width=8), 0.5)
    stem = masked.table.group_of('stem')
    assert stem.producers == ['stem', 'b1_conv2']
    # One mask for the group; both mask points (after stem ReLU and after the add's ReLU) carry it.
    kept = masked.kept()[stem.index]
    for point in stem.mask_points:
        vector = masked.mask_layers[point].mask.numpy()
        assert np.flatnonzero(vector).tolist() == kept.tolist()


def test_output_layer_never_pruned_and_first_layer_excludable():
    table = analyze(sequential_cnn())
    assert not table.group_of('logits').prunable
    assert table.group_of('conv1').prunable
    table = analyze(sequential_cnn(), exclude_first=True)
    assert not table.group_of('conv1').prunable
    assert table.group_of('conv2').prunable


def test_depth_to_space_output_is_never_pruned():
    @keras.saving.register_keras_serializable(package='test')
    class DepthToSpace(layers.Layer):
        def call(self, x):
            import tensorflow as tf

            return tf.nn.depth_to_space(x, 2)

        def compute_output_shape(self, s):
            return (s[0], s[1] * 2, s[2] * 2, s[3] // 4)

    x_in = keras.Input((4, 4, 1))
    x = layers.Conv2D(8, 3, padding='same', activation='relu', name='features')(x_in)
    x = layers.Conv2D(4, 3, padding='same', name='to_subpixels')(x)
    out = DepthToSpace(name='d2s')(x)
    table = analyze(keras.Model(x_in, out))
    assert table.group_of('features').prunable
    assert not table.group_of('to_subpixels').prunable


def test_unsupported_layer_is_named_with_supported_kinds():
    class Mystery(layers.Layer):
        def call(self, x):
            return x * 2.0

    x_in = keras.Input((8,))
    x = layers.Dense(4, name='fc')(x_in)
    x = Mystery(name='mystery_op')(x)
    out = layers.Dense(2)(x)
    with pytest.raises(UnsupportedLayerError) as info:
        analyze(keras.Model(x_in, out))
    message = str(info.value)
    assert "'mystery_op'" in message and 'Mystery' in message
    # The whole list is a command away (`lpsubnet layers`); the message names how many and the nearest.
    assert f'it knows {len(registered())} layer classes' in message and '`lpsubnet layers`' in message
    assert 'among them' in message and 'pruner.register_layer' in message
