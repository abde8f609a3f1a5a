"""Surgery: the physically reduced model computes what the masked model computes."""

import numpy as np
import pytest

from fpga_tests.pruner_models import (
    concat_cnn,
    conv1d_net,
    flatten_mlp,
    mobile_cnn,
    randomize_batchnorm,
    residual_cnn,
    sequential_cnn,
)
from pruner import MaskedModel, calibrate, fold_batchnorm, plan_quantization, reduce, to_qkeras
from pruner.layers import kernel_of, named_weights

MODELS = {
    'sequential': (sequential_cnn, (8, 8, 1)),
    'residual_add': (residual_cnn, (8, 8, 1)),
    'concatenate': (concat_cnn, (8, 8, 1)),
    'flatten_dense': (flatten_mlp, (8, 8, 1)),
    'depthwise_transpose': (mobile_cnn, (8, 8, 1)),
    'conv1d': (conv1d_net, (16, 2)),
}


def random_masks(masked, seed=0, fraction=0.5):
    rng = np.random.default_rng(seed)
    for g in masked.table.prunable:
        n = max(1, int(g.channels * (1 - fraction)))
        masked.set_mask(g.index, np.sort(rng.choice(g.channels, n, replace=False)))


@pytest.fixture(scope='module', params=sorted(MODELS))
def case(request):
    build, shape = MODELS[request.param]
    model = randomize_batchnorm(build())
    masked = MaskedModel(model)
    random_masks(masked)
    x = np.random.default_rng(1).normal(size=(32, *shape)).astype('float32')
    return request.param, model, masked, reduce(masked), x


def test_reduced_model_equals_masked_model(case):
    name, model, masked, reduced, x = case
    expected = masked.model.predict(x, verbose=0)
    got = reduced.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert reduced.count_params() < model.count_params()
    assert not any(layer.__class__.__name__ == 'ChannelMask' for layer in reduced.layers)


def test_producers_lose_exactly_the_masked_channels(case):
    name, model, masked, reduced, x = case
    kept = masked.kept()
    for g in masked.table.prunable:
        for producer in g.producers:
            width = reduced.get_layer(producer).output.shape[-1]
            assert width == len(kept[g.index]), producer
            # The kept filters are the original filters at the kept indices.
            kind = masked.table.kinds[producer]
            original = named_weights(model.get_layer(producer))
            cut = named_weights(reduced.get_layer(producer))
            if 'bias' in original:
                np.testing.assert_array_equal(cut['bias'], original['bias'][kept[g.index]])
            kname = kernel_of(cut)
            assert cut[kname].shape[kind.out_axis] == len(kept[g.index])


def test_batchnorm_folding_preserves_outputs(case):
    name, model, masked, reduced, x = case
    folded = fold_batchnorm(reduced)
    assert not any(layer.__class__.__name__ == 'BatchNormalization' for layer in folded.layers)
    np.testing.assert_allclose(folded.predict(x, verbose=0), reduced.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_qkeras_model_is_close_at_8_bits_and_fully_quantized(case):
    name, model, masked, reduced, x = case
    folded = fold_batchnorm(reduced)
    plan = plan_quantization(folded, calibrate(folded, x), weight_bits=8, activation_bits=8, bias_bits=12)
    q = to_qkeras(folded, plan)
    kinds = [layer.__class__.__name__ for layer in q.layers]
    assert kinds[1] == 'QActivation'  # input quantizer right after the input
    assert not {'Dense', 'Conv1D', 'Conv2D', 'DepthwiseConv2D', 'Conv2DTranspose', 'ReLU', 'BatchNormalization'} & set(
        kinds
    )
    ref = folded.predict(x, verbose=0)
    err = np.abs(q.predict(x, verbose=0) - ref).max()
    assert err < 0.05 * np.abs(ref).max(), err


def test_flatten_dense_rows_follow_their_channel():
    model = flatten_mlp()
    masked = MaskedModel(model)
    conv = masked.table.group_of('conv').index
    masked.set_mask(conv, [1, 4])
    reduced = reduce(masked)
    # conv output 4x4x6 -> flatten: position p*6 + c; kept rows are p*6 + {1, 4}.
    rows = np.array([p * 6 + c for p in range(16) for c in (1, 4)])
    np.testing.assert_array_equal(
        reduced.get_layer('fc').get_weights()[0], model.get_layer('fc').get_weights()[0][rows]
    )


def test_concatenate_offsets_cut_the_right_inputs():
    model = concat_cnn()
    masked = MaskedModel(model)
    a, b = masked.table.group_of('branch_a').index, masked.table.group_of('branch_b').index
    masked.set_mask(a, [0, 5])
    masked.set_mask(b, [2, 3, 9])
    reduced = reduce(masked)
    # 'mix' reads concat(a[6], b[10]): kept inputs are a's 0, 5 and b's 2, 3, 9 at offset 6.
    rows = [0, 5, 6 + 2, 6 + 3, 6 + 9]
    np.testing.assert_array_equal(
        reduced.get_layer('mix').get_weights()[0], model.get_layer('mix').get_weights()[0][:, :, rows, :]
    )


def test_residual_add_channels_share_one_mask():
    masked = MaskedModel(residual_cnn())
    stem = masked.table.group_of('stem')
    assert masked.table.group_of('b1_conv2') is stem
    assert set(masked.table.group_of('b2_proj').producers) == {'b2_proj', 'b2_conv2'}
    # The skip path is not masked on its own: masks sit after the add's ReLU.
    assert 'b1_relu' in stem.mask_points and 'b1_bn2' not in stem.mask_points
    masked.set_mask(stem.index, [0, 2, 5])
    reduced = reduce(masked)
    for name in ('stem', 'b1_conv2'):
        assert reduced.get_layer(name).output.shape[-1] == 3
    assert reduced.get_layer('b1_conv1').get_weights()[0].shape[2] == 3


@pytest.mark.parametrize('target', [(16, 4), (64,)], ids=['channels-last', 'flat'])
def test_a_reshape_after_a_cut_layer_shrinks_with_it(target):
    """make fuzz, campaign 6, pruned seed 400019: a Reshape that keeps the channels on its
    last axis (or flattens) kept its old target shape after the conv before it was cut,
    and the reduced model could not be built."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((4, 4, 1))
    h = keras.layers.Conv2D(4, 3, padding='same', activation='relu', name='conv')(inp)
    h = keras.layers.Reshape(target, name='reshape')(h)
    h = keras.layers.Flatten(name='flat')(h) if len(target) > 1 else h
    out = keras.layers.Dense(3, name='logits')(h)
    masked = MaskedModel(keras.Model(inp, out))
    (group,) = [g for g in masked.table.prunable if 'conv' in g.producers]
    masked.set_mask(group.index, np.array([0, 2]))
    reduced = reduce(masked)
    assert tuple(reduced.get_layer('reshape').output.shape[1:]) == (*target[:-1], target[-1] // 2)
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 1)).astype('float32')
    np.testing.assert_allclose(reduced.predict(x, verbose=0), masked.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
