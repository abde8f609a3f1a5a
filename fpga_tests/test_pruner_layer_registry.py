"""The layer-kind registry: every kind is one class, and a user's own layers prune once registered."""

import keras
import numpy as np
import pytest
from keras import layers

from fpga_tests.pruner_models import digits, small_compress
from pruner import LayerKind, MaskedModel, UnsupportedLayerError, analyze, reduce, register_layer, registered
from pruner import layers as pruner_layers
from pruner.layers import Producer, named_weights


@pytest.fixture(autouse=True)
def private_registry(monkeypatch):
    """Registrations made by a test do not leak into the others."""
    monkeypatch.setattr(pruner_layers, '_REGISTRY', dict(pruner_layers._REGISTRY))


class ChannelScale(layers.Layer):
    """A per-channel learnable scale: unknown to the pruner until registered."""

    def build(self, input_shape):
        self.scale = self.add_weight(name='scale', shape=(input_shape[-1],), initializer='random_uniform')

    def call(self, x):
        return x * self.scale


class TinyDense(layers.Layer):
    """A user's own dense layer: kernel (in, units) and bias (units)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(name='kernel', shape=(input_shape[-1], self.units), initializer='glorot_uniform')
        self.bias = self.add_weight(name='bias', shape=(self.units,), initializer='random_uniform')

    def call(self, x):
        return keras.ops.relu(x @ self.kernel + self.bias)

    def get_config(self):
        return {**super().get_config(), 'units': self.units}


class TinyDenseKind(Producer):
    """Cuts like a Dense (output axis -1, input axis -2); the width is ``units``."""

    width_key = 'units'


def _model():
    keras.utils.set_random_seed(0)
    x_in = keras.Input((6,))
    x = TinyDense(8, name='mine')(x_in)
    x = ChannelScale(name='scale')(x)
    x = layers.Dense(8, activation='relu', name='fc')(x)
    out = layers.Dense(3, name='logits')(x)
    return keras.Model(x_in, out)


def test_every_built_in_kind_is_one_registered_class():
    kinds = registered()
    assert kinds['Dense'].__class__ is not kinds['Conv2D'].__class__
    assert all(isinstance(k, LayerKind) for k in kinds.values())
    assert kinds['QConv2D'].width_key == 'filters' and kinds['Conv2DTranspose'].out_axis == -2
    assert {k.family for k in kinds.values()} == {
        'producer', 'depthwise', 'channelwise', 'data', 'merge', 'concat', 'flatten', 'block', 'input', 'mask',
    }  # fmt: skip


def test_unregistered_layer_is_refused_with_the_way_out():
    with pytest.raises(UnsupportedLayerError) as info:
        analyze(_model())
    assert "'mine' (TinyDense)" in str(info.value) and 'register_layer' in str(info.value)


def test_registered_layers_prune_and_cut_exactly():
    register_layer(TinyDense, TinyDenseKind)
    register_layer(ChannelScale, 'channelwise')
    model = _model()
    masked = MaskedModel(model)
    group = masked.table.group_of('mine')
    assert group.prunable and group.mask_points == ['scale']  # the mask follows the per-channel scale
    keep = np.array([0, 3, 4, 7])
    masked.set_mask(group.index, keep)
    fc = masked.table.group_of('fc')
    masked.set_mask(fc.index, np.arange(5))
    reduced = reduce(masked)
    x = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
    np.testing.assert_allclose(reduced.predict(x, verbose=0), masked.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    before, after = named_weights(model.get_layer('mine')), named_weights(reduced.get_layer('mine'))
    np.testing.assert_array_equal(after['kernel'], before['kernel'][:, keep])
    np.testing.assert_array_equal(after['bias'], before['bias'][keep])
    np.testing.assert_array_equal(
        named_weights(reduced.get_layer('scale'))['scale'], model.get_layer('scale').scale.numpy()[keep]
    )
    assert reduced.get_layer('fc').output.shape[-1] == 5


def test_registered_channelwise_layer_goes_through_compress():
    class Gain(ChannelScale):
        pass

    register_layer(Gain, 'channelwise')

    def model_fn():
        keras.utils.set_random_seed(0)
        x_in = keras.Input((8, 8, 1))
        x = layers.Conv2D(8, 3, padding='same', activation='relu', name='conv1')(x_in)
        x = Gain(name='gain')(x)
        x = layers.Flatten()(x)
        return keras.Model(x_in, layers.Dense(10, name='logits')(x))

    digits()
    qmodel, manifest = small_compress(model_fn=model_fn, qat_epochs=0)
    assert manifest['layers']['conv1']['channels_after'] == 4
    assert qmodel.get_layer('gain').scale.shape == (4,)


def test_register_layer_names_bad_families():
    with pytest.raises(Exception, match='unknown layer family'):
        register_layer(ChannelScale, 'sideways')
