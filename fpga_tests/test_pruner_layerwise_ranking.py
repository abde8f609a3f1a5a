"""The layerwise schedule ranks layer l on a network whose layers < l are already
masked; the one-shot schedule ranks every layer on the dense network.

Crafted weights make the two rankings of the second layer disagree: its units 0 and
1 read only first-layer units that the first layer's pruning removes.
"""

import keras
import numpy as np
import pytest
from keras import layers

from pruner import ChannelPruningCallback, MaskedModel, make_schedule

H1 = np.array([4.0, 3.0, 2.0, 1.0])  # first-layer activations on input ones


def crafted_mlp():
    x_in = keras.Input((1,))
    h1 = layers.Dense(4, activation='relu', name='d1')(x_in)
    h2 = layers.Dense(4, activation='relu', name='d2')(h1)
    out = layers.Dense(2, name='out')(h2)
    model = keras.Model(x_in, out)
    model.get_layer('d1').set_weights([H1[None, :].astype('float32'), np.zeros(4, 'float32')])
    w2 = np.zeros((4, 4), 'float32')
    w2[2, 0] = 10.0  # d2 unit 0 <- d1 unit 2 (pruned by layer 1): 20 dense, 0 after
    w2[3, 1] = 10.0  # d2 unit 1 <- d1 unit 3 (pruned by layer 1): 10 dense, 0 after
    w2[0, 2] = 1.0  # d2 unit 2 <- d1 unit 0 (kept): 4
    w2[1, 3] = 1.0  # d2 unit 3 <- d1 unit 1 (kept): 3
    model.get_layer('d2').set_weights([w2, np.zeros(4, 'float32')])
    return model


def run(kind):
    keras.utils.set_random_seed(0)
    masked = MaskedModel(crafted_mlp())
    groups = [g.index for g in masked.table.prunable]
    schedule = make_schedule(kind, groups, start=0, interval=4, refresh=2)
    callback = ChannelPruningCallback(masked, schedule, 'activation_l1', sparsity=0.5)
    # Learning rate 0: the weights stay as crafted, only the masks change.
    masked.model.compile(optimizer=keras.optimizers.SGD(0.0), loss='mse', jit_compile=False)
    x = np.ones((32, 1), 'float32')
    y = np.zeros((32, 2), 'float32')
    masked.model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    return masked, callback


def test_layerwise_ranks_second_layer_on_pruned_first_layer():
    masked, callback = run('layerwise')
    d1, d2 = (masked.table.group_of(n).index for n in ('d1', 'd2'))
    kept = masked.kept()
    assert kept[d1].tolist() == [0, 1]
    np.testing.assert_allclose(callback.scores[d1], H1, rtol=1e-6)
    # d1 units 2 and 3 were already masked during d2's window.
    np.testing.assert_allclose(callback.scores[d2], [0.0, 0.0, 4.0, 3.0], atol=1e-6)
    assert kept[d2].tolist() == [2, 3]
    assert callback.complete


def test_oneshot_ranks_every_layer_on_dense_network():
    masked, callback = run('oneshot')
    d1, d2 = (masked.table.group_of(n).index for n in ('d1', 'd2'))
    kept = masked.kept()
    assert kept[d1].tolist() == [0, 1]
    np.testing.assert_allclose(callback.scores[d2], [20.0, 10.0, 4.0, 3.0], rtol=1e-6)
    assert kept[d2].tolist() == [0, 1]


def test_layerwise_windows_follow_each_other_and_freeze():
    masked, callback = run('layerwise')
    d1, d2 = (masked.table.group_of(n).index for n in ('d1', 'd2'))
    # Window of d1: steps 0-4, of d2: steps 4-8; masks recomputed every 2 steps.
    updates = [(step, g) for step, g, _ in callback.history]
    assert updates == [(2, d1), (4, d1), (6, d2), (8, d2)]
    # The full target sparsity at the first update (no ramp).
    assert all(len(k) == 2 for _, _, k in callback.history)
    # Statistics stop when a window closes: d1 saw exactly its 4 steps, d2 its 4.
    assert masked.statistics(d1)['steps'] == 4
    assert masked.statistics(d2)['steps'] == 4
    assert not any(layer.collecting for layer in masked.mask_layers.values())


@pytest.mark.parametrize('kind', ['layerwise', 'oneshot'])
def test_masked_channels_read_zero_downstream(kind):
    masked, _ = run(kind)
    probe = keras.Model(masked.model.inputs[0], masked.model.get_layer('d2_mask').output)
    out = np.asarray(probe(np.ones((1, 1), 'float32')))[0]
    d2 = masked.table.group_of('d2').index
    dropped = sorted(set(range(4)) - set(masked.kept()[d2].tolist()))
    assert np.all(out[dropped] == 0)
