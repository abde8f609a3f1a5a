"""PyTorch in: an ``nn.Module`` read through ``torch.export`` -> the equivalent float Keras 3 model.

One idea: the exported program is a flat list of ATen ops; each op family has one
handler class, registered in ``HANDLERS`` by the ATen names it accepts, that builds the
Keras layer(s) for it and copies the weights (in the spirit of hls4ml's per-layer
handlers and Torch-Pruning's per-op classes). Anything without a handler, or a handled
op with arguments its handler does not support, stops with an error that names the
node, its op, the module it came from and what is supported; the supported list is
derived from the table (``supported_ops``).

Layout: PyTorch computes NCHW (NCL for 1-D), Keras channels-last. Every feature map is
channels-last on the Keras side; a flattened feature map is flattened channels-last
(what Keras's ``Flatten`` does, and what the pruner's channel groups expect), so the
Keras feature at position ``j`` is PyTorch's feature ``perm[j]``; the ``Linear`` that
reads it gets its input features reordered accordingly (not just transposed).

The conversion is checked (``check_conversion``): the float outputs of the torch
module and of the Keras model are compared on the example input and a few random
inputs; the largest difference is printed and returned, and beyond a float32
tolerance the conversion stops with ``ConversionMismatchError``.

torch is imported inside the functions only: ``import pruner`` never imports it.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import PrunerError


class TorchImportError(PrunerError):
    """A PyTorch model or file that cannot be read; the message names the file, node or op."""


class UnsupportedTorchOpError(TorchImportError):
    """An op (or an op's arguments) without a Keras equivalent here."""


class ConversionMismatchError(TorchImportError):
    """The Keras model's float outputs differ from the torch module's beyond float32 rounding."""


def _torch():
    try:
        import torch
    except ImportError:
        raise TorchImportError(
            'PyTorch is not installed; install it with: pip install "lpsubnet[torch]" (pins torch==2.13.0)'
        ) from None
    return torch


# ---------------------------------------------------------------------------
# Values: a torch tensor of the graph and its Keras counterpart
# ---------------------------------------------------------------------------


@dataclass
class Value:
    """One tensor of the torch graph as a Keras tensor.

    ``shape``: the torch shape without the batch axis. Feature maps (rank >= 2 here,
    i.e. (C, L) or (C, H, W)) are channels-last in Keras. For features (rank 1),
    ``perm`` (None: identity) says which torch feature the Keras position holds.
    """

    tensor: object
    shape: tuple[int, ...]
    perm: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def channels(self) -> int:
        return self.shape[0]

    def keras_axis(self, dim: int) -> int:
        """The Keras axis of torch dimension ``dim`` (batch included, may be negative)."""
        full = self.rank + 1
        dim = dim + full if dim < 0 else dim
        if not 0 <= dim < full:
            raise IndexError(dim)
        if self.rank < 2 or dim == 0:
            return dim
        return full - 1 if dim == 1 else dim - 1


def flatten_perm(shape: tuple[int, ...]) -> np.ndarray | None:
    """For a torch feature map of ``shape`` (C, *spatial): position j of the channels-last
    flattening holds torch's flattened feature ``perm[j]`` (None when that is the identity)."""
    index = np.arange(math.prod(shape)).reshape(shape)
    perm = np.moveaxis(index, 0, -1).ravel()
    return None if np.array_equal(perm, np.arange(perm.size)) else perm


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """NCHW / NCL -> NHWC / NLC (rank <= 2 unchanged)."""
    x = np.asarray(x)
    return np.moveaxis(x, 1, -1) if x.ndim >= 3 else x


def to_channels_first(x: np.ndarray) -> np.ndarray:
    """NHWC / NLC -> NCHW / NCL (rank <= 2 unchanged)."""
    x = np.asarray(x)
    return np.moveaxis(x, -1, 1) if x.ndim >= 3 else x


# ---------------------------------------------------------------------------
# The handler table
# ---------------------------------------------------------------------------


class OpHandler:
    """Builds the Keras layers for the ATen ops in ``targets``.

    ``torch_api``: the PyTorch modules/functions that export to these ops (for the
    supported list); ``keras``: what they become; ``limits``: what is supported of
    their arguments. ``convert(node, b)`` returns the output ``Value`` (or None for a
    node without a tensor result) and raises through ``b.refuse`` otherwise.
    """

    targets: tuple[str, ...] = ()
    torch_api: str = ''
    keras: str = ''
    limits: str = ''

    def convert(self, node, b: _Builder):
        raise NotImplementedError


HANDLERS: dict[str, OpHandler] = {}


def register(cls):
    """Class decorator: one instance of ``cls`` handles every ATen op in ``cls.targets``."""
    handler = cls()
    for target in cls.targets:
        if target in HANDLERS:
            raise ValueError(f'ATen op {target} registered twice ({type(HANDLERS[target]).__name__}, {cls.__name__})')
        HANDLERS[target] = handler
    return cls


def handlers() -> list[OpHandler]:
    """The registered handlers, once each, in registration order."""
    seen: dict[int, OpHandler] = {}
    for handler in HANDLERS.values():
        seen.setdefault(id(handler), handler)
    return list(seen.values())


def supported_ops() -> list[dict]:
    """One entry per handler: its PyTorch API, ATen ops, Keras layers and limits."""
    return [{'torch': h.torch_api, 'aten': list(h.targets), 'keras': h.keras, 'limits': h.limits} for h in handlers()]


def supported_summary() -> str:
    """The supported PyTorch API in one line (for error messages)."""
    return '; '.join(h.torch_api for h in handlers())


def supported_ops_markdown() -> str:
    """The supported-op table for the README (derived from ``HANDLERS``)."""
    lines = ['| PyTorch | ATen ops (torch.export) | Keras | Supported |', '|---|---|---|---|']
    for entry in supported_ops():
        aten = ', '.join(f'`{t}`' for t in entry['aten'])
        lines.append(f'| {entry["torch"]} | {aten} | {entry["keras"]} | {entry["limits"]} |')
    return '\n'.join(lines)


def _pair(value, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    return value * n if len(value) == 1 else value


def _spatial(v: Value, b: _Builder, node, what: str, ranks=(2, 3)) -> int:
    """Spatial rank (1 or 2) of a feature map argument; refuses features and 3-D maps."""
    if v.rank not in ranks:
        shape = '(batch, ' + ', '.join(map(str, v.shape)) + ')'
        b.refuse(node, f'{what} on a tensor of shape {shape}; supported: (batch, C, L) and (batch, C, H, W)')
    return v.rank - 1


@register
class LinearHandler(OpHandler):
    targets = ('aten.linear.default',)
    torch_api = 'nn.Linear'
    keras = 'Dense'
    limits = 'on (batch, features); after a flatten its input features are reordered'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['input'])
        if x.rank != 1:
            b.refuse(
                node,
                f'Linear on a tensor of shape (batch, {", ".join(map(str, x.shape))}); supported: (batch, features)',
            )
        weight = b.const(node, a['weight'], 'weight')
        bias = b.const(node, a['bias'], 'bias') if a['bias'] is not None else None
        kernel = weight.T
        if x.perm is not None:
            kernel = kernel[x.perm]
        layer = layers.Dense(weight.shape[0], use_bias=bias is not None, name=b.name(node))
        out = layer(x.tensor)
        layer.set_weights([kernel] + ([bias] if bias is not None else []))
        return Value(out, (weight.shape[0],))


@register
class ConvHandler(OpHandler):
    targets = ('aten.conv1d.default', 'aten.conv2d.default', 'aten.conv1d.padding', 'aten.conv2d.padding',
               'aten.convolution.default')  # fmt: skip
    torch_api = 'nn.Conv1d, nn.Conv2d'
    keras = 'Conv1D/Conv2D, DepthwiseConv1D/2D (groups = channels), ZeroPadding1D/2D'
    limits = 'stride, padding (int, tuple, "same", "valid"), dilation 1, groups 1 or depthwise (groups = in channels)'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['input'])
        n = _spatial(x, b, node, 'convolution')
        if a.get('transposed'):
            b.refuse(node, 'transposed convolution is not supported; supported: ' + self.limits)
        weight = b.const(node, a['weight'], 'weight')
        bias = b.const(node, a['bias'], 'bias') if a['bias'] is not None else None
        stride, dilation = _pair(a['stride'], n), _pair(a['dilation'], n)
        kernel_size = tuple(weight.shape[2:])
        if any(d != 1 for d in dilation):
            b.refuse(node, f'dilation {dilation} is not supported (supported: 1)')
        groups, in_ch, out_ch = int(a['groups']), x.channels, weight.shape[0]
        depthwise = groups != 1 and groups == in_ch and out_ch % in_ch == 0
        if groups != 1 and not depthwise:
            b.refuse(
                node,
                f'grouped convolution (groups={groups}, {in_ch} in, {out_ch} out channels) is not supported; '
                'supported: groups 1, or groups = in channels (depthwise)',
            )
        padding = self._padding(a['padding'], n, kernel_size, stride, node, b)
        tensor = x.tensor
        if isinstance(padding, tuple):  # explicit zero padding
            pad = layers.ZeroPadding1D(padding[0]) if n == 1 else layers.ZeroPadding2D(padding)
            pad.name = b.name(node, 'pad')
            tensor, padding = pad(tensor), 'valid'
        name = b.name(node)
        if depthwise:
            multiplier = out_ch // in_ch
            cls = layers.DepthwiseConv1D if n == 1 else layers.DepthwiseConv2D
            layer = cls(kernel_size, stride, padding, depth_multiplier=multiplier, use_bias=bias is not None, name=name)
            # torch: output channel c*m + k reads input channel c; Keras kernel (*k, in, m).
            kernel = weight.reshape(in_ch, multiplier, *kernel_size)
            kernel = np.transpose(kernel, (*range(2, 2 + n), 0, 1))
        else:
            cls = layers.Conv1D if n == 1 else layers.Conv2D
            layer = cls(out_ch, kernel_size, stride, padding, use_bias=bias is not None, name=name)
            kernel = np.transpose(weight, (*range(2, 2 + n), 1, 0))  # (out, in, *k) -> (*k, in, out)
        out = layer(tensor)
        layer.set_weights([kernel] + ([bias] if bias is not None else []))
        return Value(out, tuple(b.out_shape(node)))

    @staticmethod
    def _padding(padding, n, kernel_size, stride, node, b):
        """'valid', 'same' (when Keras's 'same' pads exactly like torch), or explicit pads per axis."""
        if isinstance(padding, str):
            if padding in ('valid', 'same'):
                return padding
            b.refuse(node, f'padding {padding!r} is not supported (supported: an int, a tuple, "same", "valid")')
        pads = _pair(padding, n)
        if all(p == 0 for p in pads):
            return 'valid'
        if all(s == 1 for s in stride) and all(k % 2 == 1 and p == (k - 1) // 2 for k, p in zip(kernel_size, pads)):
            return 'same'
        return pads if n == 2 else (pads[0],)


@register
class BatchNormHandler(OpHandler):
    targets = ('aten.batch_norm.default',)
    torch_api = 'nn.BatchNorm1d, nn.BatchNorm2d'
    keras = 'BatchNormalization'
    limits = 'eval mode (running statistics), affine or not'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['input'])
        if a['training']:
            b.refuse(node, 'batch norm in training mode; export the module in eval mode (module.eval())')
        mean = b.const(node, a['running_mean'], 'running_mean')
        var = b.const(node, a['running_var'], 'running_var')
        gamma = b.const(node, a['weight'], 'weight') if a['weight'] is not None else None
        beta = b.const(node, a['bias'], 'bias') if a['bias'] is not None else None
        momentum = a['momentum']
        layer = layers.BatchNormalization(
            axis=-1,
            epsilon=float(a['eps']),
            momentum=0.99 if momentum is None else 1.0 - float(momentum),
            center=beta is not None,
            scale=gamma is not None,
            name=b.name(node),
        )
        out = layer(x.tensor)
        params = {'gamma': gamma, 'beta': beta, 'moving_mean': mean, 'moving_variance': var}
        for w in layer.weights:
            value = params[w.path.split('/')[-1]]
            w.assign(value[x.perm] if x.rank == 1 and x.perm is not None else value)
        return Value(out, x.shape, x.perm)


@register
class ReluHandler(OpHandler):
    targets = ('aten.relu.default', 'aten.relu_.default', 'aten.relu6.default', 'aten.hardtanh.default',
               'aten.hardtanh_.default', 'aten.clamp.default', 'aten.clamp_min.default')  # fmt: skip
    torch_api = 'nn.ReLU, nn.ReLU6, F.relu, torch.relu, hardtanh/clamp with min 0'
    keras = 'ReLU (max_value for ReLU6)'
    limits = 'lower bound 0'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a.get('input', a.get('self')))
        target = str(node.target)
        low, high = 0.0, None
        if 'relu6' in target:
            high = 6.0
        elif 'hardtanh' in target:
            low, high = float(a['min_val']), float(a['max_val'])
        elif 'clamp_min' in target:
            low = float(a['min'])
        elif 'clamp' in target:
            low = None if a['min'] is None else float(a['min'])
            high = None if a['max'] is None else float(a['max'])
        if low != 0.0 or (high is not None and high <= 0):
            b.refuse(node, f'clamp to [{low}, {high}] is not supported; supported: lower bound 0 (ReLU, ReLU6)')
        layer = layers.ReLU(max_value=high, name=b.name(node))
        return Value(layer(x.tensor), x.shape, x.perm)


@register
class DropoutHandler(OpHandler):
    targets = ('aten.dropout.default', 'aten.dropout_.default')
    torch_api = 'nn.Dropout'
    keras = 'Dropout (same rate: active when the pruner fine-tunes)'
    limits = 'any rate'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['input'])
        layer = layers.Dropout(float(a['p']), name=b.name(node))
        return Value(layer(x.tensor), x.shape, x.perm)


@register
class PassThroughHandler(OpHandler):
    targets = ('aten.clone.default', 'aten.contiguous.default', 'aten.detach.default', 'aten.alias.default')
    torch_api = 'nn.Identity (no node), clone, contiguous, detach'
    keras = '(nothing)'
    limits = 'any'

    def convert(self, node, b):
        a = b.args(node)
        return b.value(a.get('self', a.get('input')))


@register
class ShapeQueryHandler(OpHandler):
    targets = ('aten.sym_size.int', 'aten.dim.default', 'aten.size.default')
    torch_api = 'x.size(...), x.dim() (used by view/reshape)'
    keras = '(nothing)'
    limits = 'as arguments of view/reshape'

    def convert(self, node, b):
        return None


class _PoolHandler(OpHandler):
    def _check(self, node, b, x, kernel, stride, padding, ceil_mode, dilation=None):
        n = _spatial(x, b, node, 'pooling')
        kernel = _pair(kernel, n)
        stride = _pair(stride, n) if stride not in (None, [], ()) else kernel
        if any(p != 0 for p in _pair(padding, n)):
            b.refuse(node, f'pooling with padding {_pair(padding, n)} is not supported (supported: padding 0)')
        if dilation is not None and any(d != 1 for d in _pair(dilation, n)):
            b.refuse(node, f'pooling with dilation {_pair(dilation, n)} is not supported (supported: 1)')
        if ceil_mode and any((size - k) % s for size, k, s in zip(x.shape[1:], kernel, stride)):
            b.refuse(node, 'ceil_mode=True with a partial last window is not supported (supported: ceil_mode=False)')
        return n, kernel, stride


@register
class MaxPoolHandler(_PoolHandler):
    targets = ('aten.max_pool1d.default', 'aten.max_pool2d.default')
    torch_api = 'nn.MaxPool1d, nn.MaxPool2d'
    keras = 'MaxPooling1D/2D'
    limits = 'padding 0, dilation 1'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['self'])
        n, kernel, stride = self._check(node, b, x, a['kernel_size'], a['stride'], a['padding'], a['ceil_mode'],
                                        a['dilation'])  # fmt: skip
        cls = layers.MaxPooling1D if n == 1 else layers.MaxPooling2D
        layer = cls(kernel, stride, 'valid', name=b.name(node))
        return Value(layer(x.tensor), tuple(b.out_shape(node)))


@register
class AvgPoolHandler(_PoolHandler):
    targets = ('aten.avg_pool1d.default', 'aten.avg_pool2d.default')
    torch_api = 'nn.AvgPool1d, nn.AvgPool2d'
    keras = 'AveragePooling1D/2D'
    limits = 'padding 0, no divisor_override'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['self'])
        if a.get('divisor_override') is not None:
            b.refuse(node, 'avg_pool with divisor_override is not supported')
        n, kernel, stride = self._check(node, b, x, a['kernel_size'], a['stride'], a['padding'], a['ceil_mode'])
        cls = layers.AveragePooling1D if n == 1 else layers.AveragePooling2D
        layer = cls(kernel, stride, 'valid', name=b.name(node))
        return Value(layer(x.tensor), tuple(b.out_shape(node)))


@register
class GlobalPoolHandler(OpHandler):
    targets = ('aten.adaptive_avg_pool1d.default', 'aten.adaptive_avg_pool2d.default', 'aten.mean.dim')
    torch_api = 'nn.AdaptiveAvgPool1d/2d, x.mean(spatial dims)'
    keras = 'GlobalAveragePooling1D/2D (AveragePooling when the output divides the input)'
    limits = 'output size 1 (global pooling) or a divisor of the input size; mean over all spatial dims'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['self'])
        n = _spatial(x, b, node, 'pooling')
        name = b.name(node)
        if str(node.target) == 'aten.mean.dim':
            dims = sorted(x.keras_axis(int(d)) for d in (a['dim'] or ()))
            if dims != list(range(1, n + 1)):
                b.refuse(node, f'mean over dims {list(a["dim"])}; supported: the mean over all spatial dims')
            keepdims = bool(a['keepdim'])
        else:
            size = _pair(a['output_size'], n)
            spatial = x.shape[1:]
            if size == spatial:
                return x
            if any(s == 0 or i % s for i, s in zip(spatial, size)):
                b.refuse(node, f'adaptive pooling from {spatial} to {size}; supported: output size 1 or a divisor')
            if any(s != 1 for s in size):
                window = tuple(i // s for i, s in zip(spatial, size))
                cls = layers.AveragePooling1D if n == 1 else layers.AveragePooling2D
                return Value(cls(window, window, 'valid', name=name)(x.tensor), tuple(b.out_shape(node)))
            keepdims = True
        cls = layers.GlobalAveragePooling1D if n == 1 else layers.GlobalAveragePooling2D
        return Value(cls(keepdims=keepdims, name=name)(x.tensor), tuple(b.out_shape(node)))


@register
class FlattenHandler(OpHandler):
    targets = ('aten.flatten.using_ints', 'aten.view.default', 'aten.reshape.default', 'aten._unsafe_view.default',
               'aten.squeeze.dim', 'aten.squeeze.dims', 'aten.squeeze.default')  # fmt: skip
    torch_api = 'nn.Flatten, torch.flatten, x.view/reshape/squeeze'
    keras = 'Flatten (channels-last; the next Linear reordered)'
    limits = 'to (batch, features), or to the same shape'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['self'] if 'self' in a else a['input'])
        shape = tuple(b.out_shape(node))
        if shape == x.shape:
            return x
        if len(shape) != 1 or shape[0] != math.prod(x.shape):
            b.refuse(
                node,
                f'reshape of (batch, {", ".join(map(str, x.shape))}) to (batch, {", ".join(map(str, shape))}); '
                'supported: flatten to (batch, features) or the same shape',
            )
        if x.rank == 1:
            return x
        layer = layers.Flatten(name=b.name(node))
        return Value(layer(x.tensor), shape, flatten_perm(x.shape))


@register
class AddHandler(OpHandler):
    targets = ('aten.add.Tensor', 'aten.add_.Tensor')
    torch_api = 'x + y, torch.add (residuals)'
    keras = 'Add'
    limits = 'two tensors of the same shape, alpha 1'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        if not (b.is_tensor(a['self']) and b.is_tensor(a['other'])):
            b.refuse(node, 'adding a constant is not supported; supported: the sum of two tensors of the same shape')
        x, y = b.value(a['self']), b.value(a['other'])
        if a.get('alpha', 1) != 1:
            b.refuse(node, f'add with alpha={a["alpha"]} is not supported (supported: 1)')
        if x.shape != y.shape:
            b.refuse(node, f'add of shapes {x.shape} and {y.shape} (broadcasting) is not supported')
        if not _same_perm(x.perm, y.perm):
            b.refuse(node, 'add of two flattened tensors with different feature orders is not supported')
        return Value(layers.Add(name=b.name(node))([x.tensor, y.tensor]), x.shape, x.perm)


def _same_perm(p, q) -> bool:
    if p is None or q is None:
        return p is None and q is None
    return np.array_equal(p, q)


@register
class CatHandler(OpHandler):
    targets = ('aten.cat.default',)
    torch_api = 'torch.cat'
    keras = 'Concatenate'
    limits = 'tensors of one rank, along any non-batch dim'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        values = [b.value(t) for t in a['tensors']]
        if len({v.rank for v in values}) != 1:
            b.refuse(node, 'cat of tensors of different ranks')
        dim = int(a['dim'])
        axis = values[0].keras_axis(dim)
        if axis == 0:
            b.refuse(node, 'cat along the batch dimension is not supported')
        perm = None
        if values[0].rank == 1 and any(v.perm is not None for v in values):
            offsets = np.cumsum([0] + [v.shape[0] for v in values[:-1]])
            perm = np.concatenate([(np.arange(v.shape[0]) if v.perm is None else v.perm) + o
                                   for v, o in zip(values, offsets)])  # fmt: skip
        out = layers.Concatenate(axis=axis, name=b.name(node))([v.tensor for v in values])
        return Value(out, tuple(b.out_shape(node)), perm)


@register
class SoftmaxHandler(OpHandler):
    targets = ('aten.softmax.int', 'aten._softmax.default')
    torch_api = 'nn.Softmax, F.softmax, torch.softmax'
    keras = 'Softmax'
    limits = 'over the features (dim 1 / -1 of a (batch, features) tensor) or the channels'

    def convert(self, node, b):
        from keras import layers

        a = b.args(node)
        x = b.value(a['self'])
        axis = x.keras_axis(int(a['dim']))
        if axis == 0 or (x.rank >= 2 and axis != x.rank):
            b.refuse(node, f'softmax over dim {a["dim"]} is not supported; supported: ' + self.limits)
        return Value(layers.Softmax(axis=-1, name=b.name(node))(x.tensor), x.shape, x.perm)


# ---------------------------------------------------------------------------
# Walking the exported program
# ---------------------------------------------------------------------------


def _sanitize(text: str) -> str:
    text = re.sub(r'[^0-9A-Za-z_]', '_', text).strip('_')
    return text or 'layer'


def _module_of(node) -> tuple[str, str]:
    """(module path, module class) of the innermost module that produced ``node``."""
    stack = node.meta.get('nn_module_stack') or {}
    if not stack:
        return '', ''
    path, cls = list(stack.values())[-1]
    cls = getattr(cls, '__name__', str(cls)).rsplit('.', 1)[-1].strip("'>")
    return path, cls


def _user_frame(node) -> str:
    """'file.py:12' of the user's code line that created ``node`` (outside torch itself)."""
    trace = node.meta.get('stack_trace') or ''
    frames = re.findall(r'File "([^"]+)", line (\d+)', trace)
    user = [(f, line) for f, line in frames if '/torch/' not in f.replace('\\', '/')]
    if not user:
        return ''
    file, line = user[-1]
    return f'{Path(file).name}:{line}'


def describe_node(node) -> str:
    """ "node 'conv2d_1' (aten.conv2d.default) from module 'features.3' (Conv2d) at net.py:12"."""
    path, cls = _module_of(node)
    text = f"node '{node.name}' ({node.target})"
    if path:
        text += f" from module '{path}' ({cls})"
    elif cls:
        text += f' in the forward of {cls}'
    frame = _user_frame(node)
    return text + (f' at {frame}' if frame else '')


class _Builder:
    """State of one conversion: the Keras value of every node, the constants, layer names."""

    def __init__(self, program):
        self.program = program
        sig = program.graph_signature
        state = dict(program.state_dict)
        constants = dict(getattr(program, 'constants', {}) or {})
        self.consts: dict[str, np.ndarray] = {}
        sources = [
            sig.inputs_to_parameters,
            sig.inputs_to_buffers,
            getattr(sig, 'inputs_to_lifted_tensor_constants', {}),
        ]
        for mapping in sources:
            for placeholder, fqn in mapping.items():
                tensor = state.get(fqn, constants.get(fqn))
                if tensor is not None:
                    self.consts[placeholder] = tensor.detach().cpu().numpy().astype(np.float32)
        self.env: dict[str, Value | None] = {}
        self._names: dict[int, str] = {}
        self._used: set[str] = set()
        self._path_count: dict[str, int] = {}
        for node in program.graph.nodes:
            if node.op == 'call_function':
                path, _ = _module_of(node)
                self._path_count[path] = self._path_count.get(path, 0) + 1

    # --- arguments -------------------------------------------------------
    @staticmethod
    def args(node) -> dict:
        """The op's arguments by schema name, defaults filled in."""
        schema = getattr(node.target, '_schema', None)
        if schema is None:
            return dict(node.kwargs)
        out = {}
        for i, arg in enumerate(schema.arguments):
            if i < len(node.args):
                out[arg.name] = node.args[i]
            elif arg.name in node.kwargs:
                out[arg.name] = node.kwargs[arg.name]
            elif arg.has_default_value():
                out[arg.name] = arg.default_value
        return out

    def is_tensor(self, arg) -> bool:
        return hasattr(arg, 'op') and (arg.name in self.consts or self.env.get(arg.name) is not None)

    def value(self, arg) -> Value:
        if not hasattr(arg, 'op'):
            raise UnsupportedTorchOpError(f'expected a tensor, got the constant {arg!r}')
        if arg.name in self.consts:
            raise UnsupportedTorchOpError(
                f"{describe_node(arg)}: parameter or buffer '{arg.name}' used as data; only the model input, and "
                'tensors computed from it, can flow through the supported ops'
            )
        value = self.env.get(arg.name)
        if value is None:
            raise UnsupportedTorchOpError(f"node '{arg.name}' has no tensor value here (a shape query used as data?)")
        return value

    def const(self, node, arg, what: str) -> np.ndarray:
        if hasattr(arg, 'op') and arg.name in self.consts:
            return self.consts[arg.name]
        self.refuse(
            node, f'its {what} is computed in the graph, not a parameter or buffer; supported: plain parameters'
        )

    @staticmethod
    def out_shape(node) -> tuple[int, ...]:
        val = node.meta.get('val')
        return tuple(int(s) for s in val.shape[1:])

    def refuse(self, node, reason: str):
        raise UnsupportedTorchOpError(f'{describe_node(node)}: {reason}')

    # --- names -----------------------------------------------------------
    def name(self, node, suffix: str = '') -> str:
        key = (id(node), suffix)
        if key in self._names:
            return self._names[key]
        path, cls = _module_of(node)
        if path and self._path_count.get(path) == 1:
            base = _sanitize(path)
        elif path:
            base = _sanitize(f'{path}_{node.name}')
        else:
            base = _sanitize(node.name)
        if base[0].isdigit():
            # nn.Sequential's children are '0', '1', ...: a name must not start with a digit
            # where it becomes an identifier (hls4ml's C++ types are named after layers).
            base = f'{_sanitize(cls).lower() or "layer"}_{base}'
        if suffix:
            base = f'{base}_{suffix}'
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f'{base}_{i}'
        self._used.add(name)
        self._names[key] = name
        return name


def _keras_input_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[1:]) + (shape[0],) if len(shape) >= 2 else tuple(shape)


def program_to_keras(program, name: str = 'from_torch'):
    """The float Keras model of an ``ExportedProgram`` (one tensor input)."""
    import keras

    sig = program.graph_signature
    if getattr(sig, 'buffers_to_mutate', None):
        raise TorchImportError(
            f'the exported program updates buffers {sorted(sig.buffers_to_mutate.values())} (exported in training '
            'mode?); export the module in eval mode (module.eval())'
        )
    b = _Builder(program)
    user_inputs = [n for n in program.graph.nodes if n.op == 'placeholder' and n.name in sig.user_inputs]
    tensors = [n for n in user_inputs if hasattr(n.meta.get('val'), 'shape')]
    if len(tensors) != 1:
        raise TorchImportError(
            f'the module takes {len(tensors)} tensor inputs ({", ".join(n.name for n in user_inputs)}); supported: one'
        )
    inp = tensors[0]
    shape = tuple(int(s) for s in inp.meta['val'].shape[1:])
    if not 1 <= len(shape) <= 3:
        raise TorchImportError(
            f'input {inp.name} has shape (batch, {", ".join(map(str, shape))}); supported: (batch, features), '
            '(batch, C, L) and (batch, C, H, W)'
        )
    # Named after forward()'s argument, except 'input' (nn.Sequential's): hls4ml reserves
    # that layer name and refuses the model; 'input_layer' is Keras's own default.
    input_name = _sanitize(inp.name)
    input_name = 'input_layer' if input_name == 'input' else input_name
    b._used.add(input_name)
    keras_input = keras.Input(_keras_input_shape(shape), name=input_name)
    b.env[inp.name] = Value(keras_input, shape)
    outputs = []
    for node in program.graph.nodes:
        if node.op == 'placeholder':
            continue
        if node.op == 'output':
            outputs = [b.value(t) for t in keras_tree_flatten(node.args[0])]
            continue
        if node.op != 'call_function':
            raise UnsupportedTorchOpError(f"{describe_node(node)}: graph node of kind '{node.op}' is not supported")
        target = str(node.target)
        handler = HANDLERS.get(target)
        if handler is None:
            raise UnsupportedTorchOpError(
                f'{describe_node(node)}: op {target} is not supported; supported: {supported_summary()}'
            )
        b.env[node.name] = handler.convert(node, b)
    for value in outputs:
        if value.rank == 1 and value.perm is not None:
            raise UnsupportedTorchOpError(
                'a model output is a flattened feature map, which Keras flattens channels-last (a different feature '
                'order); end the model with a Linear, or return the feature map itself'
            )
    model_outputs = [v.tensor for v in outputs]
    return keras.Model(keras_input, model_outputs[0] if len(model_outputs) == 1 else model_outputs, name=name)


def keras_tree_flatten(structure) -> list:
    if isinstance(structure, list | tuple):
        return [leaf for item in structure for leaf in keras_tree_flatten(item)]
    return [structure]


# ---------------------------------------------------------------------------
# Export, check, entry points
# ---------------------------------------------------------------------------


def _as_tensor(example, torch):
    if isinstance(example, tuple | list):
        if len(example) != 1:
            raise TorchImportError(f'example_input holds {len(example)} tensors; supported: one input tensor')
        example = example[0]
    if isinstance(example, np.ndarray):
        example = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    if not isinstance(example, torch.Tensor):
        raise TorchImportError(f'example_input must be a torch tensor or numpy array, got {type(example).__name__}')
    return example.detach().float()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f'{type(exc).__name__}: {text[0] if text else ""}'


def export_program(module, example):
    """An ``ExportedProgram`` of ``module`` (an nn.Module, TorchScript module or exported program)."""
    torch = _torch()
    if isinstance(module, torch.export.ExportedProgram):
        return module
    if isinstance(module, torch.jit.ScriptModule):
        from torch._export.converter import TS2EPConverter

        try:
            with warnings.catch_warnings():  # unused buffers such as num_batches_tracked
                warnings.filterwarnings('ignore', message='Manually populate')
                return TS2EPConverter(module, (example,)).convert()
        except Exception as exc:
            raise TorchImportError(
                f'the TorchScript module could not be converted by torch.export: {_first_line(exc)}'
            ) from exc
    if not isinstance(module, torch.nn.Module):
        raise TorchImportError(f'expected a torch.nn.Module, got {type(module).__name__}')
    was_training = module.training
    module.eval()
    try:
        return torch.export.export(module, (example,))
    except Exception as exc:
        raise TorchImportError(
            f'torch.export could not trace {type(module).__name__}: {_first_line(exc)} (data-dependent control flow '
            'and ops on Python values cannot be exported)'
        ) from exc
    finally:
        module.train(was_training)


def _torch_call(module):
    """A callable running the torch model in eval mode on any batch size (an exported
    program specialized to one batch size runs chunk by chunk, the last one padded)."""
    torch = _torch()
    if not isinstance(module, torch.export.ExportedProgram):
        return module
    run, batch = module.module(), _program_batch(module)
    if batch is None:
        return run

    def chunked(x):
        outs = []
        for start in range(0, len(x), batch):
            chunk = x[start : start + batch]
            n = len(chunk)
            if n < batch:
                chunk = torch.cat([chunk, chunk.new_zeros((batch - n, *chunk.shape[1:]))])
            out = run(chunk)
            outs.append([o[:n] for o in out] if isinstance(out, tuple | list) else [out[:n]])
        merged = [torch.cat(parts) for parts in zip(*outs, strict=True)]
        return merged if len(merged) > 1 else merged[0]

    return chunked


@dataclass
class ConversionCheck:
    """torch vs Keras float outputs on the example input and random inputs."""

    inputs: int
    max_abs_diff: float
    max_abs_output: float
    tolerance: float
    per_input: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def line(self) -> str:
        return (
            f'torch -> Keras: max |diff| {self.max_abs_diff:.3g} of the float outputs over {self.inputs} inputs '
            f'(largest |output| {self.max_abs_output:.3g}, tolerance {self.tolerance:.3g})'
        )

    def to_dict(self) -> dict:
        return {**asdict(self), 'ok': self.ok}


def check_conversion(
    module, keras_model, example, random_inputs: int = 8, rtol: float = 1e-4, seed: int = 0
) -> ConversionCheck:
    """Compare the float outputs of ``module`` (eval mode) and ``keras_model`` on the
    example input and ``random_inputs`` random samples drawn with the example's mean and
    spread. Tolerance: ``rtol`` x max(1, largest |torch output|) (float32 rounding of
    differently ordered sums)."""
    torch = _torch()
    example = _as_tensor(example, torch)
    run = _torch_call(module)
    generator = torch.Generator().manual_seed(seed)
    spread = float(example.std()) if example.numel() > 1 else 1.0
    batches = [('example', example)]
    if random_inputs:
        shape = (random_inputs, *example.shape[1:])
        noise = torch.randn(shape, generator=generator) * (spread or 1.0) + float(example.mean())
        batches.append(('random', noise))
    was_training = getattr(module, 'training', None)
    if isinstance(module, torch.nn.Module):
        module.eval()
    per_input, worst, largest, count = [], 0.0, 0.0, 0
    try:
        with torch.no_grad():
            for kind, x in batches:
                ref = run(x)
                ref = [r.detach().double().numpy() for r in (ref if isinstance(ref, tuple | list) else [ref])]
                got = keras_model(to_channels_last(x.numpy()), training=False)
                got = [np.asarray(g, dtype=np.float64) for g in (got if isinstance(got, list | tuple) else [got])]
                for r, g in zip(ref, got, strict=True):
                    g = to_channels_first(g)
                    if r.shape != g.shape:
                        raise ConversionMismatchError(f'output shapes differ: torch {r.shape}, Keras {g.shape}')
                    diff = np.abs(r - g).reshape(len(r), -1).max(axis=1)
                    for d in diff:
                        per_input.append({'input': kind, 'max_abs_diff': float(d)})
                    worst = max(worst, float(diff.max()))
                    largest = max(largest, float(np.abs(r).max()))
                count += len(x)
    finally:
        if isinstance(module, torch.nn.Module) and was_training is not None:
            module.train(was_training)
    return ConversionCheck(count, worst, largest, rtol * max(1.0, largest), per_input)


@dataclass
class TorchConversion:
    """What ``convert_torch`` returns: the Keras model, the check, the input shapes."""

    model: object
    check: ConversionCheck | None
    torch_input_shape: tuple[int, ...]
    keras_input_shape: tuple[int, ...]

    def save_check(self, path) -> None:
        data = {
            'torch_input_shape': list(self.torch_input_shape),
            'keras_input_shape': list(self.keras_input_shape),
            'check': None if self.check is None else self.check.to_dict(),
        }
        Path(path).write_text(json.dumps(data, indent=2) + '\n')


def convert_torch(
    module,
    example_input,
    *,
    check: bool = True,
    random_inputs: int = 8,
    rtol: float = 1e-4,
    seed: int = 0,
    name: str | None = None,
) -> TorchConversion:
    """``from_torch`` with everything it found: the model, the check, the input layouts."""
    torch = _torch()
    example = _as_tensor(example_input, torch)
    program = export_program(module, example)
    label = name or _sanitize(type(module).__name__ if isinstance(module, torch.nn.Module) else 'from_torch')
    keras_model = program_to_keras(program, name=label)
    result = TorchConversion(
        keras_model, None, tuple(example.shape[1:]), tuple(int(s) for s in keras_model.inputs[0].shape[1:])
    )
    if check:
        result.check = check_conversion(module, keras_model, example, random_inputs=random_inputs, rtol=rtol, seed=seed)
        if not result.check.ok:
            raise ConversionMismatchError(
                f'{result.check.line()}: the Keras model does not reproduce the torch module; '
                'please report the module (a layout or op conversion is wrong)'
            )
    return result


def from_torch(
    module,
    example_input,
    *,
    check: bool = True,
    random_inputs: int = 8,
    rtol: float = 1e-4,
    report=None,
    verbose: int = 1,
    seed: int = 0,
    name: str | None = None,
):
    """The float Keras 3 model equivalent to a PyTorch model, weights copied.

    ``module``: an ``nn.Module`` (exported in eval mode with ``torch.export``), a
    TorchScript module, or a ``torch.export.ExportedProgram``. ``example_input``: one
    input batch in the torch layout (NCHW, NCL or (N, features); tensor or array). The
    Keras model takes channels-last inputs (``to_channels_last``). With ``check`` the
    outputs are compared on the example and ``random_inputs`` random samples; the
    largest difference is printed (``verbose``), written to ``report`` (a JSON path)
    and must stay within ``rtol`` x max(1, largest |output|) (else
    ``ConversionMismatchError``). Unsupported ops raise ``UnsupportedTorchOpError``
    naming the node, its op and module and the supported list (``supported_ops()``).
    """
    result = convert_torch(
        module, example_input, check=check, random_inputs=random_inputs, rtol=rtol, seed=seed, name=name
    )
    if result.check is not None and verbose:
        print(result.check.line())
    if report is not None:
        result.save_check(report)
    return result.model


def _user_input_nodes(program) -> list:
    return [n for n in program.graph.nodes if n.op == 'placeholder' and n.name in program.graph_signature.user_inputs]


def _program_batch(program) -> int | None:
    """The batch size an exported program was specialized to (None: dynamic)."""
    inputs = _user_input_nodes(program)
    try:
        return int(inputs[0].meta['val'].shape[0])
    except (TypeError, ValueError, KeyError, IndexError):
        return None
