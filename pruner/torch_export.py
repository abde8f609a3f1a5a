"""PyTorch out: a (reduced) QKeras model -> an equivalent ``nn.Module``, and its ``.pt2``.

One handler class per Keras layer family, registered by class name in
``LAYER_HANDLERS`` (the supported list is derived from it), builds the torch module
for one Keras layer and copies its weights. The torch module takes and returns the
PyTorch layout (NCHW / NCL feature maps; a flattened feature map in torch's own
flatten order, with the following Linear's input features reordered to match).

Quantizers become ``torch_layers.FixedPoint`` fake-quantize steps that round half to
even and saturate exactly as QKeras's ``quantized_bits`` (alpha=1) and
``quantized_relu`` do; weights are stored already on their fixed-point grid (the
QKeras layer's quantizer applied to its kernel and bias) and pass through the same
quantizer in ``forward``, so the module keeps training quantization-aware. On inputs
on the input quantizer's grid its outputs equal the QKeras model's exactly in
float64 (and in float32 wherever QKeras's own float32 sums are exact), except for a
softmax (float32 in TensorFlow) and average pooling over a count that is not a power
of two (the division rounds differently in each precision).

torch is imported inside the functions only: ``import pruner`` never imports it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PrunerError
from .graph import calls
from .torch_import import TorchImportError, _torch, flatten_perm


class TorchExportError(PrunerError):
    """A Keras layer or quantizer without a PyTorch form here; the message names the layer."""


# ---------------------------------------------------------------------------
# Quantizers
# ---------------------------------------------------------------------------


def _quantizer_config(quantizer) -> tuple[str, dict]:
    if quantizer is None:
        return 'None', {}
    if isinstance(quantizer, dict):
        return quantizer.get('class_name', ''), dict(quantizer.get('config', {}))
    if isinstance(quantizer, str):
        return quantizer, {}
    if hasattr(quantizer, 'get_config'):
        return quantizer.__class__.__name__, dict(quantizer.get_config())
    return getattr(quantizer, '__name__', type(quantizer).__name__), {}


SUPPORTED_QUANTIZERS = 'quantized_bits(bits, integer, alpha=1 or None), quantized_relu(bits, integer)'


def fixed_point(quantizer, where: str):
    """The ``FixedPoint`` module reproducing a QKeras quantizer (refuses what has no exact form)."""
    from .torch_layers import FixedPoint

    name, config = _quantizer_config(quantizer)
    if name not in ('quantized_bits', 'quantized_relu'):
        raise TorchExportError(f'{where}: quantizer {name} has no PyTorch form here; supported: {SUPPORTED_QUANTIZERS}')
    if config.get('alpha') not in (None, 1, 1.0):
        raise TorchExportError(f'{where}: {name} with alpha={config.get("alpha")!r}; supported: alpha=1 or None')
    if config.get('use_stochastic_rounding'):
        raise TorchExportError(f'{where}: {name} with stochastic rounding is not supported')
    if float(config.get('qnoise_factor', 1.0)) != 1.0:
        raise TorchExportError(f'{where}: {name} with qnoise_factor != 1 is not supported')
    bits = int(config['bits'])
    integer = np.asarray(config.get('integer', 0))
    if integer.size != 1:
        raise TorchExportError(f'{where}: {name} with per-channel integer bits is not supported')
    integer = int(integer.ravel()[0])
    label = f'{name}({bits}, {integer})'
    if name == 'quantized_bits':
        if bits < 2:
            raise TorchExportError(f'{where}: quantized_bits with {bits} bit (binary) is not supported')
        if config.get('keep_negative', True):
            symmetric = int(bool(config.get('symmetric', 0)))
            return FixedPoint(2.0 ** (integer - bits + 1), -(2 ** (bits - 1)) + symmetric, 2 ** (bits - 1) - 1, 'bits',
                              label)  # fmt: skip
        return FixedPoint(2.0 ** (integer - bits), 0, 2**bits - 1, 'bits', label)
    if config.get('negative_slope', 0.0) or config.get('use_sigmoid') or config.get('relu_upper_bound') is not None:
        raise TorchExportError(
            f'{where}: quantized_relu with negative_slope, use_sigmoid or relu_upper_bound is not supported'
        )
    return FixedPoint(2.0 ** (integer - bits), 0, 2**bits - 1, 'relu', label)


# ---------------------------------------------------------------------------
# Values and the handler table
# ---------------------------------------------------------------------------


@dataclass
class TValue:
    """A Keras tensor's place in the torch module: its slot, Keras shape (no batch) and,
    for features, which torch feature each Keras position holds (None: identity)."""

    slot: int
    shape: tuple[int, ...]
    perm: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    def torch_dim(self, axis: int) -> int:
        """The torch dim of Keras ``axis`` (batch included, may be negative)."""
        full = self.rank + 1
        axis = axis + full if axis < 0 else axis
        if self.rank < 2 or axis == 0:
            return axis
        return 1 if axis == full - 1 else axis + 1


class LayerHandler:
    """Builds the torch module of the Keras layer classes in ``classes``.

    ``build(layer, inputs, h)`` returns (module, output TValue fields: shape, perm); the
    output shape defaults to the Keras layer's own.
    """

    classes: tuple[str, ...] = ()
    torch: str = ''
    limits: str = ''

    def build(self, layer, inputs: list[TValue], h: _Helper):
        raise NotImplementedError


LAYER_HANDLERS: dict[str, LayerHandler] = {}


def register(cls):
    handler = cls()
    for name in cls.classes:
        LAYER_HANDLERS[name] = handler
    return cls


def supported_layers() -> str:
    seen = {}
    for handler in LAYER_HANDLERS.values():
        seen.setdefault(id(handler), handler)
    return '; '.join(f'{", ".join(h.classes)} -> {h.torch}' for h in seen.values())


class _Helper:
    def __init__(self, torch):
        self.torch = torch

    def tensor(self, array):
        return self.torch.tensor(np.asarray(array, dtype=np.float64), dtype=self.torch.float32)

    def on_grid(self, array, quantizer_module):
        """The weights as the QKeras layer uses them: its quantizer applied (float64)."""
        values = self.torch.tensor(np.asarray(array, dtype=np.float64))
        if quantizer_module is not None:
            values = quantizer_module(values).detach()
        return values.to(self.torch.float32)

    @staticmethod
    def where(layer) -> str:
        return f"layer '{layer.name}' ({layer.__class__.__name__})"

    def refuse(self, layer, reason: str):
        raise TorchExportError(f'{self.where(layer)}: {reason}')

    def activation(self, layer, config_value, output_names):
        """The torch module of a layer's ``activation`` (None for linear)."""
        from torch import nn

        if config_value in (None, 'linear'):
            return None
        if config_value == 'relu':
            return nn.ReLU()
        if config_value == 'softmax':
            return nn.Softmax(dim=1)
        if isinstance(config_value, dict) or hasattr(config_value, 'get_config'):
            return fixed_point(config_value, f'{self.where(layer)} activation')
        self.refuse(layer, f'activation {config_value!r} is not supported; supported: linear, relu, softmax, '
                    + SUPPORTED_QUANTIZERS)  # fmt: skip

    @staticmethod
    def quantizers(layer, kernel_key: str):
        config = layer.get_config()
        kq, bq = config.get(kernel_key), config.get('bias_quantizer')
        where = _Helper.where(layer)
        return (
            None if kq is None else fixed_point(kq, f'{where} {kernel_key}'),
            None if bq is None else fixed_point(bq, f'{where} bias_quantizer'),
        )


def _weights(layer) -> dict:
    return {w.path.split('/')[-1]: np.asarray(w.numpy(), dtype=np.float64) for w in layer.weights}


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) of one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _features_only(h, layer, x: TValue):
    if x.rank != 1:
        h.refuse(layer, f'on a tensor of shape {x.shape}; supported: (batch, features)')


@register
class DenseHandler(LayerHandler):
    classes = ('Dense', 'QDense')
    torch = 'QLinear (nn.Linear + quantizers)'
    limits = 'on (batch, features)'

    def build(self, layer, inputs, h):
        x = inputs[0]
        _features_only(h, layer, x)
        from .torch_layers import QLinear

        config = layer.get_config()
        wq, bq = h.quantizers(layer, 'kernel_quantizer')
        w = _weights(layer)
        kernel = w['kernel'].T  # (out, in) in Keras feature order
        if x.perm is not None:  # Keras position j holds torch feature perm[j]
            reordered = np.empty_like(kernel)
            reordered[:, x.perm] = kernel
            kernel = reordered
        module = QLinear(
            kernel.shape[1], kernel.shape[0], 'bias' in w, wq, bq, h.activation(layer, config['activation'], None)
        )
        module.weight.data = h.on_grid(kernel, wq)
        if 'bias' in w:
            module.bias.data = h.on_grid(w['bias'], bq)
        return module, None


@register
class ConvHandler(LayerHandler):
    classes = ('Conv1D', 'Conv2D', 'QConv1D', 'QConv2D', 'DepthwiseConv1D', 'DepthwiseConv2D', 'QDepthwiseConv2D')
    torch = 'QConv (F.conv1d/conv2d, explicit padding, quantizers)'
    limits = "padding 'valid'/'same', dilation 1, groups 1 or depthwise"

    def build(self, layer, inputs, h):
        from .torch_layers import QConv

        x = inputs[0]
        config = layer.get_config()
        dims = 1 if '1D' in layer.__class__.__name__ else 2
        if x.rank != dims + 1:
            h.refuse(layer, f'on a tensor of shape {x.shape}')
        if config.get('data_format', 'channels_last') != 'channels_last':
            h.refuse(layer, 'channels_first data format is not supported')
        if any(d != 1 for d in np.ravel(config.get('dilation_rate', 1))):
            h.refuse(layer, f'dilation_rate {config["dilation_rate"]} is not supported (supported: 1)')
        if config.get('groups', 1) != 1:
            h.refuse(layer, f'groups={config["groups"]} is not supported')
        depthwise = 'Depthwise' in layer.__class__.__name__
        wq, bq = h.quantizers(layer, 'depthwise_quantizer' if depthwise else 'kernel_quantizer')
        w = _weights(layer)
        kernel = w.get('depthwise_kernel', w.get('kernel'))
        ksize = kernel.shape[:dims]
        stride = tuple(int(v) for v in np.broadcast_to(config['strides'], (dims,)))
        pads = [0] * (2 * dims)
        if config['padding'] == 'same':
            per_axis = [_same_pads(size, k, s) for size, k, s in zip(x.shape[:dims], ksize, stride)]
            # F.pad lists the last axis first: (w_left, w_right, h_top, h_bottom)
            pads = [int(p) for pair in reversed(per_axis) for p in pair]
        elif config['padding'] != 'valid':
            h.refuse(layer, f'padding {config["padding"]!r} is not supported')
        if depthwise:  # Keras (*k, in, m) -> torch (in*m, 1, *k); output channel c*m + k
            in_ch, mult = kernel.shape[-2:]
            weight = np.moveaxis(kernel, (-2, -1), (0, 1)).reshape(in_ch * mult, 1, *ksize)
            groups = in_ch
        else:  # (*k, in, out) -> (out, in, *k)
            weight = np.moveaxis(kernel, (-1, -2), (0, 1))
            groups = 1
        module = QConv(dims, h.on_grid(weight, wq), None if 'bias' not in w else h.on_grid(w['bias'], bq), stride,
                       pads, groups, wq, bq, h.activation(layer, config.get('activation'), None))  # fmt: skip
        return module, None


@register
class QActivationHandler(LayerHandler):
    classes = ('QActivation', 'Activation', 'ReLU', 'Softmax')
    torch = 'FixedPoint, nn.ReLU, nn.Hardtanh(0, max), nn.Softmax, nn.Identity'
    limits = 'linear, relu (max_value), softmax on features or channels, ' + SUPPORTED_QUANTIZERS

    def build(self, layer, inputs, h):
        from torch import nn

        x = inputs[0]
        config = layer.get_config()
        cls = layer.__class__.__name__
        if cls == 'ReLU':
            if config.get('negative_slope') or config.get('threshold'):
                h.refuse(layer, 'ReLU with negative_slope or threshold is not supported')
            top = config.get('max_value')
            return (nn.ReLU() if top is None else nn.Hardtanh(0.0, float(top))), x.perm
        if cls == 'Softmax':
            axis = config.get('axis', -1)
            if axis not in (-1, x.rank):
                h.refuse(layer, f'softmax over axis {axis}; supported: the last axis')
            return nn.Softmax(dim=1), x.perm
        activation = layer.activation if cls == 'QActivation' else config.get('activation')
        if activation == 'softmax' or getattr(activation, '__name__', None) == 'softmax':
            return nn.Softmax(dim=1), x.perm
        if cls == 'QActivation' and hasattr(activation, 'get_config'):
            return fixed_point(activation, f'{h.where(layer)} activation'), x.perm
        name = activation if isinstance(activation, str) else getattr(activation, '__name__', repr(activation))
        module = h.activation(layer, name, None)
        return (module if module is not None else nn.Identity()), x.perm


@register
class BatchNormHandler(LayerHandler):
    classes = ('BatchNormalization',)
    torch = 'nn.BatchNorm1d / nn.BatchNorm2d'
    limits = 'on the channel axis (last in Keras)'

    def build(self, layer, inputs, h):
        from torch import nn

        x = inputs[0]
        config = layer.get_config()
        axis = config.get('axis', -1)
        axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
        if axis not in (-1, x.rank):
            h.refuse(layer, f'batch norm over axis {axis}; supported: the channel (last) axis')
        channels = x.shape[-1]
        cls = nn.BatchNorm2d if x.rank == 3 else nn.BatchNorm1d
        module = cls(channels, eps=config['epsilon'], momentum=1.0 - config['momentum'],
                     affine=bool(config.get('center', True) or config.get('scale', True)))  # fmt: skip
        w = _weights(layer)
        order = np.arange(channels) if x.rank != 1 or x.perm is None else np.argsort(x.perm)
        # torch channel t holds Keras position order[t] (identity unless features are reordered)
        module.running_mean.data = h.tensor(w['moving_mean'][order])
        module.running_var.data = h.tensor(w['moving_variance'][order])
        if module.affine:
            module.weight.data = h.tensor(w.get('gamma', np.ones(channels))[order])
            module.bias.data = h.tensor(w.get('beta', np.zeros(channels))[order])
        return module.eval(), x.perm


@register
class PoolHandler(LayerHandler):
    classes = ('MaxPooling1D', 'MaxPooling2D', 'AveragePooling1D', 'AveragePooling2D')
    torch = 'nn.MaxPool1d/2d, nn.AvgPool1d/2d'
    limits = "padding 'valid' (or 'same' where it pads nothing)"

    def build(self, layer, inputs, h):
        from torch import nn

        x = inputs[0]
        config = layer.get_config()
        dims = 1 if '1D' in layer.__class__.__name__ else 2
        pool = tuple(int(v) for v in np.broadcast_to(config['pool_size'], (dims,)))
        stride = tuple(int(v) for v in np.broadcast_to(config['strides'] or config['pool_size'], (dims,)))
        if config['padding'] == 'same' and any(
            sum(_same_pads(size, k, s)) for size, k, s in zip(x.shape[:dims], pool, stride)
        ):
            h.refuse(layer, "pooling with padding 'same' that pads is not supported (supported: 'valid')")
        cls = {
            ('Max', 1): nn.MaxPool1d,
            ('Max', 2): nn.MaxPool2d,
            ('Ave', 1): nn.AvgPool1d,
            ('Ave', 2): nn.AvgPool2d,
        }[(layer.__class__.__name__[:3], dims)]
        return cls(pool, stride), None


@register
class GlobalPoolHandler(LayerHandler):
    classes = ('GlobalAveragePooling1D', 'GlobalAveragePooling2D', 'GlobalMaxPooling1D', 'GlobalMaxPooling2D')
    torch = 'GlobalPool (mean / amax over the spatial dims)'
    limits = 'keepdims or not'

    def build(self, layer, inputs, h):
        from .torch_layers import GlobalPool

        dims = 1 if '1D' in layer.__class__.__name__ else 2
        mode = 'max' if 'Max' in layer.__class__.__name__ else 'mean'
        return GlobalPool(mode, dims, bool(layer.get_config().get('keepdims', False))), None


@register
class FlattenHandler(LayerHandler):
    classes = ('Flatten', 'Reshape')
    torch = 'nn.Flatten (torch order; the next Linear reordered)'
    limits = 'to (batch, features), or to the same shape'

    def build(self, layer, inputs, h):
        from torch import nn

        x = inputs[0]
        out_shape = tuple(int(s) for s in layer.output.shape[1:])
        if out_shape == x.shape:
            return nn.Identity(), x.perm
        if len(out_shape) != 1:
            h.refuse(layer, f'reshape of {x.shape} to {out_shape}; supported: flatten to (batch, features)')
        if x.rank == 1:
            return nn.Identity(), x.perm
        torch_shape = (x.shape[-1], *x.shape[:-1])
        return nn.Flatten(1), flatten_perm(torch_shape)


@register
class MergeHandler(LayerHandler):
    classes = ('Add', 'Concatenate')
    torch = 'Add (sum), Concat (torch.cat)'
    limits = 'same feature order on flattened inputs'

    def build(self, layer, inputs, h):
        from .torch_layers import Add, Concat

        first = inputs[0]
        if layer.__class__.__name__ == 'Add':
            perms = [v.perm for v in inputs]
            if any(p is not None for p in perms) and not all(
                p is not None and np.array_equal(p, perms[0]) for p in perms
            ):
                h.refuse(layer, 'add of flattened tensors with different feature orders')
            return Add(), first.perm
        axis = layer.get_config().get('axis', -1)
        dim = first.torch_dim(axis)
        if dim == 0:
            h.refuse(layer, 'concatenation along the batch axis')
        perm = None
        if first.rank == 1 and any(v.perm is not None for v in inputs):
            offsets = np.cumsum([0] + [v.shape[0] for v in inputs[:-1]])
            perm = np.concatenate([(np.arange(v.shape[0]) if v.perm is None else v.perm) + o
                                   for v, o in zip(inputs, offsets)])  # fmt: skip
        return Concat(dim), perm


@register
class PassHandler(LayerHandler):
    classes = ('Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'Identity', 'GaussianNoise', 'GaussianDropout')
    torch = 'nn.Dropout / nn.Identity'
    limits = 'any'

    def build(self, layer, inputs, h):
        from torch import nn

        rate = layer.get_config().get('rate')
        return (nn.Dropout(rate) if layer.__class__.__name__ == 'Dropout' else nn.Identity()), inputs[0].perm


@register
class ZeroPaddingHandler(LayerHandler):
    classes = ('ZeroPadding1D', 'ZeroPadding2D')
    torch = 'nn.ZeroPad1d / nn.ZeroPad2d'
    limits = 'any padding'

    def build(self, layer, inputs, h):
        from torch import nn

        padding = layer.get_config()['padding']
        if layer.__class__.__name__ == 'ZeroPadding1D':
            left, right = (padding, padding) if isinstance(padding, int) else padding
            return nn.ConstantPad1d((left, right), 0.0), None
        (top, bottom), (left, right) = padding
        return nn.ZeroPad2d((left, right, top, bottom)), None


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------


def _sanitize(name: str) -> str:
    return name.replace('.', '_')


def to_torch(model):
    """The ``nn.Module`` computing what ``model`` (QKeras or float Keras) computes.

    Takes and returns the PyTorch layout: an (N, H, W, C) Keras input becomes (N, C, H, W)
    here, feature-map outputs come out NCHW/NCL, features as (N, F). Quantized weights are
    stored on their grid; activations and the input go through ``FixedPoint`` fake
    quantizers that round half to even and saturate like QKeras. The module is in eval
    mode; ``module.double()`` computes in float64 (exact fixed-point sums).
    Raises ``TorchExportError`` naming a layer or quantizer without a PyTorch form.
    """
    torch = _torch()
    from .torch_layers import KerasGraph

    order = calls(model)
    if len(model.inputs) != 1:
        raise TorchExportError(f"model '{model.name}' has {len(model.inputs)} inputs; supported: one")
    helper = _Helper(torch)
    values: dict[int, TValue] = {}
    modules, plan = {}, []
    for call in order:
        layer = call.layer
        cls = layer.__class__.__name__
        if cls == 'InputLayer':
            values[id(call.outputs[0])] = TValue(0, tuple(int(s) for s in call.outputs[0].shape[1:]))
            continue
        handler = LAYER_HANDLERS.get(cls)
        if handler is None:
            raise TorchExportError(
                f"layer '{layer.name}' ({cls}) has no PyTorch form here; supported: {supported_layers()}"
            )
        inputs = [values[id(t)] for t in call.inputs]
        if len(inputs) > 1 and cls not in ('Add', 'Concatenate'):
            raise TorchExportError(f"layer '{layer.name}' ({cls}) reads {len(inputs)} tensors; supported: one")
        module, perm = handler.build(layer, inputs, helper)
        key = _sanitize(layer.name)
        modules[key] = module
        plan.append((key, [v.slot for v in inputs]))
        values[id(call.outputs[0])] = TValue(len(plan), tuple(int(s) for s in call.outputs[0].shape[1:]), perm)
    outputs = [values[id(t)].slot for t in model.outputs]
    module = KerasGraph(modules, plan, outputs)
    module.input_shape = _torch_shape(tuple(int(s) for s in model.inputs[0].shape[1:]))
    return module.eval()


def _torch_shape(keras_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (keras_shape[-1], *keras_shape[:-1]) if len(keras_shape) >= 2 else keras_shape


def export_torch(module, path, input_shape: tuple[int, ...] | None = None):
    """Save ``module`` as a ``torch.export`` program (``.pt2``) with a dynamic batch axis.

    ``input_shape``: torch layout without the batch axis (default: ``module.input_shape``
    as set by ``to_torch``). Load it back with ``torch.export.load(path).module()``.
    """
    torch = _torch()
    shape = tuple(input_shape or getattr(module, 'input_shape', ()) or ())
    if not shape:
        raise TorchImportError('export_torch needs input_shape (torch layout without the batch axis)')
    example = torch.zeros((2, *shape), dtype=next(module.parameters(), torch.zeros(())).dtype)
    batch = torch.export.Dim('batch', min=1)
    program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
    path = Path(path)
    tmp = path.with_name(f'.{path.stem}.tmp.pt2')  # written whole, then renamed
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='No complete tensor found')
        torch.export.save(program, tmp)
    tmp.replace(path)
    return program
