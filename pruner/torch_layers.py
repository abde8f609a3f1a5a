"""The PyTorch modules ``to_torch`` builds (this module imports torch; ``import pruner`` does not).

``FixedPoint`` is the fake quantizer: the value QKeras's ``quantized_bits`` (alpha=1)
or ``quantized_relu`` computes, i.e. ``clamp(round_half_even(x / step), lo, hi) * step``
with a power-of-two ``step`` (exact in float32 and float64), and QKeras's
straight-through gradient (identity for quantized_bits, the clipped ReLU's for
quantized_relu), so the module keeps training quantization-aware in PyTorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FixedPoint(nn.Module):
    """Fake quantization onto the grid ``step * [lo, hi]`` (integers ``lo``, ``hi``).

    ``kind``: 'bits' (QKeras quantized_bits: gradient 1 everywhere) or 'relu'
    (quantized_relu: gradient 1 on (0, max], 0 elsewhere). ``label`` is the QKeras form.
    """

    def __init__(self, step: float, lo: int, hi: int, kind: str, label: str = ''):
        super().__init__()
        self.step, self.lo, self.hi, self.kind, self.label = float(step), int(lo), int(hi), kind, label

    @property
    def max_value(self) -> float:
        return self.hi * self.step

    def forward(self, x):
        q = torch.clamp(torch.round(x / self.step), self.lo, self.hi) * self.step
        # QKeras's straight-through path: x itself, or where(x <= max, relu(x), max) for quantized_relu
        g = torch.clamp(torch.relu(x), max=self.max_value) if self.kind == 'relu' else x
        return q + (g - g.detach())  # value q exactly; gradient of g

    def extra_repr(self) -> str:
        return f'{self.label}: step 2^{_log2(self.step)}, integers [{self.lo}, {self.hi}]'


def _log2(step: float) -> int:
    return int(round(torch.log2(torch.tensor(step, dtype=torch.float64)).item()))


def _maybe(module: nn.Module | None, x):
    return x if module is None else module(x)


class QLinear(nn.Linear):
    """nn.Linear whose weight and bias pass through their quantizers, then the activation."""

    def __init__(self, in_features, out_features, bias, weight_quantizer=None, bias_quantizer=None, activation=None):
        super().__init__(in_features, out_features, bias=bias)
        self.weight_quantizer, self.bias_quantizer, self.activation = weight_quantizer, bias_quantizer, activation

    def forward(self, x):
        bias = None if self.bias is None else _maybe(self.bias_quantizer, self.bias)
        return _maybe(self.activation, F.linear(x, _maybe(self.weight_quantizer, self.weight), bias))


class QConv(nn.Module):
    """A 1-D/2-D convolution with explicit (possibly asymmetric) zero padding, weight and
    bias quantizers and an activation; ``groups`` = channels for depthwise."""

    def __init__(self, dims, weight, bias, stride, pads, groups=1, weight_quantizer=None, bias_quantizer=None,
                 activation=None):  # fmt: skip
        super().__init__()
        self.dims, self.stride, self.pads, self.groups = dims, tuple(stride), tuple(pads), groups
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.weight_quantizer, self.bias_quantizer, self.activation = weight_quantizer, bias_quantizer, activation

    def forward(self, x):
        if any(self.pads):
            x = F.pad(x, self.pads)
        weight = _maybe(self.weight_quantizer, self.weight)
        bias = None if self.bias is None else _maybe(self.bias_quantizer, self.bias)
        conv = F.conv1d if self.dims == 1 else F.conv2d
        return _maybe(self.activation, conv(x, weight, bias, self.stride, 0, 1, self.groups))

    def extra_repr(self) -> str:
        out, per_group = self.weight.shape[:2]
        return (
            f'{per_group * self.groups}, {out}, kernel_size={tuple(self.weight.shape[2:])}, stride={self.stride}, '
            f'pads={self.pads}, groups={self.groups}'
        )


class Add(nn.Module):
    def forward(self, *inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, *inputs):
        return torch.cat(inputs, dim=self.dim)

    def extra_repr(self) -> str:
        return f'dim={self.dim}'


class GlobalPool(nn.Module):
    """Mean or max over the spatial dims (2.. of NCL / NCHW)."""

    def __init__(self, mode: str, dims: int, keepdim: bool):
        super().__init__()
        self.mode, self.axes, self.keepdim = mode, tuple(range(2, 2 + dims)), keepdim

    def forward(self, x):
        if self.mode == 'max':
            return torch.amax(x, dim=self.axes, keepdim=self.keepdim)
        return torch.mean(x, dim=self.axes, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f'{self.mode} over dims {self.axes}, keepdim={self.keepdim}'


class KerasGraph(nn.Module):
    """The converted model: ``layers`` (one module per Keras layer, same names) run in the
    Keras graph's order; ``plan`` lists each layer's input slots (slot 0 is the input)."""

    def __init__(self, layers: dict[str, nn.Module], plan: list[tuple[str, list[int]]], outputs: list[int]):
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.plan = plan
        self.outputs = outputs

    def forward(self, x):
        slots = [x]
        for key, inputs in self.plan:
            slots.append(self.layers[key](*[slots[i] for i in inputs]))
        if len(self.outputs) == 1:
            return slots[self.outputs[0]]
        return tuple(slots[i] for i in self.outputs)
