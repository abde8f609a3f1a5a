"""The RTL route's layer kinds: one class per layer family, registered in :data:`RTL_LAYERS`.

Each kind carries the precision plan and float32 bound of its family (shared semantics
from :mod:`hls_backend.layer_kinds`) and its da4ml replay: ``replay(layer, args, r)``
re-expresses the layer on da4ml values ``args`` (one per input) with the helpers of
``r`` (a :class:`hls_backend.rtl.replay.Replay`).
"""

from __future__ import annotations

import functools

from ..core import layer_kinds as kinds
from ..core.fixed_point import quantizer_type
from ..errors import UnsupportedModelError

RTL_LAYERS = kinds.Registry('RTL route (da4ml replay)', fallback=kinds.REFUSALS)


class RTLLayer(kinds.LayerKind):
    registry = RTL_LAYERS

    def replay(self, layer, args: list, r):
        raise NotImplementedError(f'{type(self).__name__} must replay its layers')


def _dims(layer) -> int:
    """1 or 2: the spatial dimensions of a ...1D / ...2D layer class."""
    return 1 if layer.__class__.__name__.endswith('1D') else 2


class DenseOrConv(kinds.DenseOrConv, RTLLayer):
    handles = ('QDense', 'QConv1D', 'QConv2D')
    limits = 'channels_last; groups=1'

    def replay(self, layer, args, r):
        kernel, bias = self.quantized(layer, 'kernel'), self.bias(layer)
        if kernel.ndim == 2:  # a dense kernel: (inputs, outputs)
            return r.dense(layer, args[0], kernel, bias)
        return r.conv(layer, args[0], kernel, bias, depthwise=False)


class DenseBatchnorm(kinds.FoldedBatchnorm, DenseOrConv):
    handles = ('QDenseBatchnorm',)
    limits = 'batch norm folded as QKeras folds it at inference'


class Conv2DBatchnorm(kinds.FoldedBatchnorm, DenseOrConv):
    handles = ('QConv2DBatchnorm',)
    limits = 'batch norm folded as QKeras folds it at inference; channels_last; groups=1'


class Depthwise(kinds.Depthwise, RTLLayer):
    handles = ('QDepthwiseConv2D',)
    limits = 'depth_multiplier=1'

    def replay(self, layer, args, r):
        return r.conv(layer, args[0], self.quantized(layer, 'depthwise'), self.bias(layer), depthwise=True)


class QActivation(kinds.QuantizedActivation, RTLLayer):
    handles = ('QActivation',)
    limits = 'quantized_bits, quantized_relu with alpha=1'

    def replay(self, layer, args, r):
        from .replay import quantize_array

        at = f'{kinds.where(layer)} activation'
        return quantize_array(args[0], quantizer_type(layer.get_config()['activation'], at))


class Activation(kinds.FloatActivation, RTLLayer):
    # Softmax: a keras.layers.Softmax at the output is left out as Activation('softmax') is
    # (it was refused as unknown while the HLS route took it; found by the fuzz generator).
    handles = ('Activation', 'Softmax')
    limits = "'linear'; softmax at the output is left out (outputs are logits)"

    def replay(self, layer, args, r):
        if layer.__class__.__name__ != 'Softmax':
            return r.activation(layer, args[0])
        if layer.name != r.plan.softmax_layer:
            raise UnsupportedModelError(
                f'{r.where(layer)}: a softmax inside the model cannot be made exact; only a softmax at the output '
                '(left out: the design gives logits)'
            )
        return args[0]


class PassThrough(kinds.DataMovement, RTLLayer):
    handles = ('InputLayer', 'Dropout')

    def replay(self, layer, args, r):
        return args[0]


class Reshape(kinds.DataMovement, RTLLayer):
    handles = ('Flatten', 'Reshape')

    def replay(self, layer, args, r):
        if layer.__class__.__name__ == 'Flatten':
            return args[0].reshape(-1)
        return args[0].reshape(*[int(d) for d in layer.output.shape[1:]])


class MaxPooling(kinds.DataMovement, RTLLayer):
    handles = ('MaxPooling1D', 'MaxPooling2D', 'GlobalMaxPooling1D', 'GlobalMaxPooling2D')
    limits = 'channels_last; keepdims=False'

    def replay(self, layer, args, r):
        if layer.__class__.__name__.startswith('Global'):
            return r.global_pool(layer, args[0], 'max')
        return r.pool(layer, args[0], 'max', _dims(layer))


class AveragePooling(kinds.Average, RTLLayer):
    handles = ('AveragePooling1D', 'AveragePooling2D', 'GlobalAveragePooling1D', 'GlobalAveragePooling2D')
    limits = 'windows of a power of two values: an exact division'

    def replay(self, layer, args, r):
        if layer.__class__.__name__.startswith('Global'):
            return r.global_pool(layer, args[0], 'avg')
        return r.pool(layer, args[0], 'avg', _dims(layer))


class Padding(kinds.DataMovement, RTLLayer):
    handles = ('ZeroPadding1D', 'ZeroPadding2D')

    def replay(self, layer, args, r):
        return r.zero_padding(layer, args[0], _dims(layer))


class UpSampling(kinds.DataMovement, RTLLayer):
    handles = ('UpSampling1D', 'UpSampling2D')
    limits = 'nearest'

    def replay(self, layer, args, r):
        return r.upsampling(layer, args[0], _dims(layer))


class Add(kinds.Sum, RTLLayer):
    handles = ('Add',)

    def replay(self, layer, args, r):
        return functools.reduce(lambda a, b: a + b, args)


class Concatenate(kinds.Join, RTLLayer):
    handles = ('Concatenate',)

    def replay(self, layer, args, r):
        return r.concatenate(layer, args)
