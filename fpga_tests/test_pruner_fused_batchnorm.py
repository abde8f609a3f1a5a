"""QKeras's fused QDenseBatchnorm / QConv2DBatchnorm from the pruner: joint mode trains with
BatchNorm inside the quantized layers instead of folding it first."""

import keras
import numpy as np
import pytest
from keras import layers

from fpga_tests.pruner_models import digits, randomize_batchnorm, sequential_cnn, small_compress
from pruner import MaskedModel, reduce
from pruner.layers import named_weights
from pruner.phases import BatchNormFreeze, _freeze_batchnorm_after
from pruner.quantize import calibrate, plan_quantization, signed_integer_bits
from pruner.surgery import fold_batchnorm, to_qkeras, unfuse_batchnorm


def _dense_bn_model():
    keras.utils.set_random_seed(0)
    x_in = keras.Input((12,))
    x = layers.Dense(10, use_bias=False, name='fc1')(x_in)
    x = layers.BatchNormalization(name='bn1')(x)
    x = layers.ReLU(name='relu1')(x)
    out = layers.Dense(4, name='logits')(x)
    return keras.Model(x_in, out)


@pytest.fixture(scope='module')
def fused():
    model = sequential_cnn()
    randomize_batchnorm(model)
    return model, fold_batchnorm(model, fuse=True), digits()[0][:64]


def _classes(model):
    return [lay.__class__.__name__ for lay in model.layers]


def test_fuse_keeps_batchnorm_inside_and_the_function(fused):
    model, f, x = fused
    assert 'QConv2DBatchnorm' in _classes(f) and 'BatchNormalization' not in _classes(f)
    conv = f.get_layer('conv1')
    assert conv.kernel_quantizer is None and conv.use_bias
    for name in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
        np.testing.assert_array_equal(named_weights(conv)[name], named_weights(model.get_layer('bn1'))[name])
    np.testing.assert_allclose(f.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    dense = fold_batchnorm(_dense_bn_model(), fuse=True)
    assert _classes(dense)[1] == 'QDenseBatchnorm'


def test_quantizers_are_planned_on_the_folded_weights(fused):
    _, f, x = fused
    plan = plan_quantization(f, calibrate(f, x), weight_bits=6, activation_bits=8)
    conv = f.get_layer('conv1')
    folded_kernel, folded_bias = (np.asarray(v) for v in conv.get_folded_weights())
    assert plan.layers['conv1'].weights['kernel'].integer == signed_integer_bits(np.abs(folded_kernel).max(), 6)
    assert plan.layers['conv1'].weights['bias'].integer == signed_integer_bits(np.abs(folded_bias).max(), 8)
    q = to_qkeras(f, plan)
    qconv = q.get_layer('conv1')
    assert qconv.__class__.__name__ == 'QConv2DBatchnorm'
    assert qconv.kernel_quantizer_internal.integer == plan.layers['conv1'].weights['kernel'].integer


def test_pruning_cuts_the_batchnorm_inside(fused):
    _, f, x = fused
    masked = MaskedModel(f)
    group = masked.table.group_of('conv1')
    keep = np.array([0, 2, 5, 7])
    masked.set_mask(group.index, keep)
    reduced = reduce(masked)
    before, after = named_weights(f.get_layer('conv1')), named_weights(reduced.get_layer('conv1'))
    for name in ('gamma', 'beta', 'moving_mean', 'moving_variance', 'bias'):
        np.testing.assert_array_equal(after[name], before[name][keep])
    np.testing.assert_array_equal(after['kernel'], before['kernel'][..., keep])
    np.testing.assert_allclose(reduced.predict(x, verbose=0), masked.model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_unfused_layers_compute_the_same_bits(fused):
    _, f, x = fused
    q = to_qkeras(f, plan_quantization(f, calibrate(f, x), weight_bits=4, activation_bits=6))
    plain = unfuse_batchnorm(q)
    assert 'QConv2DBatchnorm' not in _classes(plain) and _classes(plain).count('QConv2D') == 2
    assert np.array_equal(plain.predict(x, verbose=0), q.predict(x, verbose=0))


def test_joint_compress_trains_with_batchnorm_in_the_quantized_layers(tmp_path, monkeypatch):
    seen = []  # conv1's step counter and moving statistics after every training step of compress
    own_update = BatchNormFreeze.on_train_batch_end

    def spy(self, batch, logs=None):
        own_update(self, batch, logs)
        bn = self.student.get_layer('conv1')
        seen.append(
            (int(bn._iteration.numpy()), bn.batchnorm.moving_mean.numpy(), bn.batchnorm.moving_variance.numpy())
        )

    monkeypatch.setattr(BatchNormFreeze, 'on_train_batch_end', spy)
    qmodel, manifest = small_compress(joint=True, weight_bits=8, epochs=3, qat_epochs=1)
    assert 'QConv2DBatchnorm' in _classes(qmodel) and 'BatchNormalization' not in _classes(qmodel)
    assert manifest['layers']['conv1']['class'] == 'QConv2DBatchnorm'
    assert manifest['layers']['conv1']['channels_after'] == 4
    conv = qmodel.get_layer('conv1')
    # BatchNorm statistics froze with the integer bits: after the 3 masked epochs of 8 steps (a QAT of one
    # epoch trains with the final types throughout).
    assert conv.ema_freeze_delay == 3 * 8
    assert int(conv._iteration.numpy()) == 4 * 8 - 1
    # The statistics move through the masked fit and stay exactly still after QKeras's counter passes 24.
    assert [it for it, _, _ in seen] == list(range(32))
    assert not np.array_equal(seen[0][1], seen[24][1]) and not np.array_equal(seen[0][2], seen[24][2])
    for _, mean, var in seen[26:]:
        assert np.array_equal(mean, seen[25][1]) and np.array_equal(var, seen[25][2])
    np.testing.assert_array_equal(named_weights(conv)['moving_mean'], seen[25][1])
    x = digits()[2][:50]
    path = tmp_path / 'joint.keras'
    qmodel.save(path)
    again = keras.models.load_model(path, compile=False)
    assert np.array_equal(again.predict(x, verbose=0), qmodel.predict(x, verbose=0))


def test_batchnorm_statistics_stop_moving_at_the_freeze_step():
    fused_model = fold_batchnorm(_dense_bn_model(), fuse=True)
    fc1 = fused_model.get_layer('fc1')
    assert fc1.__class__.__name__ == 'QDenseBatchnorm'
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 12)) * 3 + 1).astype('float32')
    y = rng.integers(0, 4, size=64)
    fused_model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    freeze_cb = _freeze_batchnorm_after(fused_model, 3)
    snaps = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            bn = fc1.batchnorm
            snaps.append((bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()))

    # 8 steps, then 8 more in a second fit (which must stay frozen from its first step).
    for _ in range(2):
        fused_model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[freeze_cb, Snapshot()])
    assert int(fc1._iteration.numpy()) == 15 and fc1.ema_freeze_delay == 3
    # QKeras trains with batch statistics while its counter (steps so far - 1) <= 3: the first 5 steps.
    for before, after in zip(snaps[:4], snaps[1:5], strict=True):
        assert not np.array_equal(before[0], after[0]) and not np.array_equal(before[1], after[1])
    for frozen in snaps[5:]:
        assert np.array_equal(frozen[0], snaps[4][0]) and np.array_equal(frozen[1], snaps[4][1])
    # The layer's own momentum is back once the fit is over (the saved config is unchanged).
    assert fc1.batchnorm.momentum == fc1.get_config()['momentum'] == 0.99
