"""The RTL route's layer kinds: one class per layer family, registered in :data:`RTL_LAYERS`.

Each kind carries the precision plan and float32 bound of its family (shared semantics
from :mod:`hls_backend.core.layer_kinds`) and its own da4ml arithmetic:
``replay(layer, args, trace)`` re-expresses the layer on da4ml values ``args`` (one per
input), with ``trace`` (a :class:`hls_backend.rtl.replay.Trace`) giving the hardware
configuration and hearing of progress. Arithmetic inside a layer is exact (da4ml widens
as needed); values are rounded only where QKeras rounds: at a quantizer.
"""

from __future__ import annotations

import functools

import numpy as np

from ..core import layer_kinds as kinds
from ..errors import UnsupportedModelError
from .arithmetic import as_array, as_tuple, matvec, quantize_array, window_taps

RTL_LAYERS = kinds.Registry('RTL route (da4ml replay)', fallback=kinds.REFUSALS)


class RTLLayer(kinds.LayerKind):
    registry = RTL_LAYERS

    def replay(self, layer, args: list, trace):
        raise NotImplementedError(f'{type(self).__name__} must replay its layers')

    @staticmethod
    def spatial_dims(layer) -> int:
        """1 or 2: the spatial dimensions of a ...1D / ...2D layer class."""
        return 1 if layer.__class__.__name__.endswith('1D') else 2

    @staticmethod
    def check_channels_last(layer) -> None:
        fmt = layer.get_config().get('data_format')
        if fmt not in (None, 'channels_last'):
            raise UnsupportedModelError(
                f"{kinds.where(layer)}: data_format '{fmt}' is not supported; use channels_last"
            )


def apply_activation(layer, x, trace):
    """A Q-layer's or Activation layer's ``activation=`` on da4ml values: a quantizer
    rounds, 'linear' and a softmax left out of the hardware pass through."""
    name = kinds.activation_name(layer)
    if name is None:
        return quantize_array(x, kinds.activation_type(layer))
    if name == 'linear' or (name == 'softmax' and layer.name == trace.plan.softmax_layer):
        return x  # a final softmax is left out: outputs are logits
    raise UnsupportedModelError(
        f"{kinds.where(layer)}: float activation '{name}' cannot be made exact; use a QKeras quantizer "
        '(quantized_relu / quantized_bits)'
    )


class Weighted(RTLLayer):
    """A sum of products with the layer's quantized weights, its bias, then its activation."""

    def conv(self, layer, x, kernel: np.ndarray, bias: np.ndarray | None, trace, depthwise: bool):
        self.check_channels_last(layer)
        config = layer.get_config()
        if config.get('groups', 1) not in (1, None):
            raise UnsupportedModelError(
                f'{kinds.where(layer)}: grouped convolution (groups={config["groups"]}) is not supported'
            )
        nd = kernel.ndim - 2
        spatial, channels = x.shape[:-1], x.shape[-1]
        window = kernel.shape[:nd]
        out_shape, taps = window_taps(
            spatial,
            window,
            as_tuple(config.get('strides', 1), nd),
            as_tuple(config.get('dilation_rate', 1), nd),
            config.get('padding', 'valid'),
            kinds.where(layer),
        )
        flat = x._vars.reshape(-1, channels)
        kernel = kernel.reshape(int(np.prod(window)), channels, -1)
        outputs = []
        for p, row in enumerate(taps):
            trace.position(p, len(taps))
            valid = row >= 0
            if depthwise:
                pixel = []
                for c in range(channels):
                    vec = list(flat[row[valid], c])
                    pixel.extend(matvec(vec, kernel[valid, c, :], trace.hwconf) if vec else [0.0] * kernel.shape[2])
                outputs.append(pixel)
            else:
                vec = list(flat[row[valid]].ravel())
                outputs.append(list(matvec(vec, kernel[valid].reshape(-1, kernel.shape[2]), trace.hwconf)))
        y = as_array(np.array(outputs, dtype=object).reshape(*out_shape, -1), trace.hwconf)
        return self.finish(layer, y, bias, trace)

    def dense(self, layer, x, kernel: np.ndarray, bias: np.ndarray | None, trace):
        """``x @ kernel`` over the last axis."""
        lead = x.shape[:-1]
        rows = x._vars.reshape(-1, x.shape[-1])
        out = []
        for p, r in enumerate(rows):
            trace.position(p, len(rows))
            out.append(matvec(list(r), kernel, trace.hwconf))
        y = as_array(np.array(out, dtype=object).reshape(*lead, kernel.shape[1]), trace.hwconf)
        return self.finish(layer, y, bias, trace)

    @staticmethod
    def finish(layer, y, bias, trace):
        if bias is not None:
            y = y + bias
        return apply_activation(layer, y, trace)


class DenseOrConv(kinds.DenseOrConv, Weighted):
    handles = ('QDense', 'QConv1D', 'QConv2D')
    limits = 'channels_last; groups=1'

    def replay(self, layer, args, trace):
        kernel, bias = self.quantized(layer, 'kernel'), self.bias(layer)
        if kernel.ndim == 2:  # a dense kernel: (inputs, outputs)
            return self.dense(layer, args[0], kernel, bias, trace)
        return self.conv(layer, args[0], kernel, bias, trace, depthwise=False)


class DenseBatchnorm(kinds.FoldedBatchnorm, DenseOrConv):
    handles = ('QDenseBatchnorm',)
    limits = 'batch norm folded as QKeras folds it at inference'


class Conv2DBatchnorm(kinds.FoldedBatchnorm, DenseOrConv):
    handles = ('QConv2DBatchnorm',)
    limits = 'batch norm folded as QKeras folds it at inference; channels_last; groups=1'


class Depthwise(kinds.Depthwise, Weighted):
    handles = ('QDepthwiseConv2D',)
    limits = 'depth_multiplier=1'

    def replay(self, layer, args, trace):
        kernel = self.quantized(layer, 'depthwise')
        return self.conv(layer, args[0], kernel, self.bias(layer), trace, depthwise=True)


class QActivation(kinds.QuantizedActivation, RTLLayer):
    handles = ('QActivation',)
    limits = 'quantized_bits, quantized_relu with alpha=1'

    def replay(self, layer, args, trace):
        return quantize_array(args[0], kinds.activation_type(layer))


class Activation(kinds.FloatActivation, RTLLayer):
    # Softmax: a keras.layers.Softmax at the output is left out as Activation('softmax') is
    # (it was refused as unknown while the HLS route took it; found by the fuzz generator).
    handles = ('Activation', 'Softmax')
    limits = "'linear'; softmax at the output is left out (outputs are logits)"

    def replay(self, layer, args, trace):
        if layer.__class__.__name__ != 'Softmax':
            return apply_activation(layer, args[0], trace)
        if layer.name != trace.plan.softmax_layer:
            raise UnsupportedModelError(
                f'{kinds.where(layer)}: a softmax inside the model cannot be made exact; only a softmax at the '
                'output (left out: the design gives logits)'
            )
        return args[0]


class PassThrough(kinds.DataMovement, RTLLayer):
    handles = ('InputLayer', 'Dropout')

    def replay(self, layer, args, trace):
        return args[0]


class Reshape(kinds.DataMovement, RTLLayer):
    handles = ('Flatten', 'Reshape')

    def replay(self, layer, args, trace):
        return args[0].reshape(*[int(d) for d in layer.output.shape[1:]])


class Pooling(RTLLayer):
    """A reduction over each window (or over every position: global pooling)."""

    def replay(self, layer, args, trace):
        x = args[0]
        self.check_channels_last(layer)
        config = layer.get_config()
        if layer.__class__.__name__.startswith('Global'):
            if config.get('keepdims'):
                raise UnsupportedModelError(f'{kinds.where(layer)}: keepdims=True is not supported')
            flat = x._vars.reshape(-1, x.shape[-1])
            out = [self.reduce(layer, list(flat[:, c])) for c in range(flat.shape[1])]
            return as_array(np.array(out, dtype=object), trace.hwconf)
        nd = self.spatial_dims(layer)
        window = as_tuple(config['pool_size'], nd)
        strides = as_tuple(config.get('strides') or window, nd)
        spatial, channels = x.shape[:-1], x.shape[-1]
        out_shape, taps = window_taps(
            spatial, window, strides, (1,) * nd, config.get('padding', 'valid'), kinds.where(layer)
        )
        flat = x._vars.reshape(-1, channels)
        out = np.empty((len(taps), channels), dtype=object)
        for p, row in enumerate(taps):
            idx = row[row >= 0]
            for c in range(channels):
                out[p, c] = self.reduce(layer, list(flat[idx, c]))
        return as_array(out.reshape(*out_shape, channels), trace.hwconf)

    def reduce(self, layer, values: list):
        raise NotImplementedError


class MaxPooling(kinds.DataMovement, Pooling):
    handles = ('MaxPooling1D', 'MaxPooling2D', 'GlobalMaxPooling1D', 'GlobalMaxPooling2D')
    limits = 'channels_last; keepdims=False'

    def reduce(self, layer, values: list):
        return functools.reduce(lambda a, b: a.max_of(b), values)


class AveragePooling(kinds.Average, Pooling):
    handles = ('AveragePooling1D', 'AveragePooling2D', 'GlobalAveragePooling1D', 'GlobalAveragePooling2D')
    limits = 'windows of a power of two values: an exact division'

    def reduce(self, layer, values: list):
        n = len(values)
        if n & (n - 1):
            raise UnsupportedModelError(
                f'{kinds.where(layer)}: averaging over {n} values divides by a number that is not a power of two, '
                'which has no exact fixed-point result; use pool sizes (and padding) giving 1, 2, 4, 8... values'
            )
        return functools.reduce(lambda a, b: a + b, values) * (1.0 / n)


class Padding(kinds.DataMovement, RTLLayer):
    handles = ('ZeroPadding1D', 'ZeroPadding2D')

    def replay(self, layer, args, trace):
        nd = self.spatial_dims(layer)
        given = layer.get_config()['padding']
        if isinstance(given, int):
            pad = [(given, given)] * nd
        elif nd == 1 and len(given) == 2 and all(isinstance(p, int) for p in given):
            pad = [tuple(given)]  # ZeroPadding1D's (left, right)
        else:
            pad = [(p, p) if isinstance(p, int) else tuple(p) for p in given]
        values = np.pad(args[0]._vars, pad + [(0, 0)], mode='constant', constant_values=0.0)
        return as_array(values, trace.hwconf)


class UpSampling(kinds.DataMovement, RTLLayer):
    handles = ('UpSampling1D', 'UpSampling2D')
    limits = 'nearest'

    def replay(self, layer, args, trace):
        config = layer.get_config()
        if config.get('interpolation', 'nearest') != 'nearest':
            raise UnsupportedModelError(
                f"{kinds.where(layer)}: interpolation '{config['interpolation']}' is not supported; use 'nearest'"
            )
        values = args[0]._vars
        for axis, s in enumerate(as_tuple(config.get('size', 2), self.spatial_dims(layer))):
            values = np.repeat(values, s, axis=axis)
        return as_array(values, trace.hwconf)


class Add(kinds.Sum, RTLLayer):
    handles = ('Add',)

    def replay(self, layer, args, trace):
        return functools.reduce(lambda a, b: a + b, args)


class Concatenate(kinds.Join, RTLLayer):
    handles = ('Concatenate',)

    def replay(self, layer, args, trace):
        axis = int(layer.get_config().get('axis', -1))
        axis = axis - 1 if axis > 0 else axis
        return as_array(np.concatenate([a._vars for a in args], axis=axis), trace.hwconf)
