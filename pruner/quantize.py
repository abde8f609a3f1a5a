"""Statistics-based power-of-two fixed point, expressed as QKeras quantizers.

Deviation from the reference (QSPARSE): there the weight scale is max|W| / 2^(b-1)
per output channel and activation bounds are running means of batch min/max, with
arbitrary real scales. FPGA fixed point (ap_fixed) needs power-of-two scales, so
here the scale is a power of two and the quantizers use alpha=1 (no extra scale). The
*integer bits* of each weight tensor and each activation (equivalently its step) follow
one of two criteria (``StepRule``):

- ``'max'``: the fewest integer bits that hold the running maximum magnitude (or a
  percentile of it): nothing saturates, but at 2-4 bits most values round to 0 or to
  the coarse outer steps;
- ``'mse'``: the integer bits whose quantizer reproduces the values (the tensor's
  weights; a sample of what an activation quantizer receives on calibration data) with
  the least mean squared error: a few outliers saturate so that the bulk gets a finer
  step. Searched exhaustively between the lowest integer bits allowed and those of
  ``'max'``: a grid with a coarser step and no saturation is a subset of the finer one
  below it, so it never reproduces values better.

QKeras correspondence (what the HLS back end relies on):
- ``quantized_bits(bits, integer, alpha=1)`` (signed) == ``ap_fixed<bits, integer+1>``
  (the sign bit is not counted in ``integer``): range [-2^I, 2^I - 2^(I-bits+1)],
  step 2^(I-bits+1). ``integer`` may be negative for small values.
- ``quantized_relu(bits, integer)`` == ``ap_ufixed<bits, integer>``: range
  [0, 2^I - 2^(I-bits)], step 2^(I-bits); QKeras needs ``integer >= 0`` here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import PrunerError
from .layers import WEIGHT_ROLES, is_relu, lookup  # noqa: F401 (is_relu: re-exported)


def signed_integer_bits(max_abs: float, bits: int, min_integer: int | None = None) -> int:
    """Fewest integer bits I (sign excluded) so that ``quantized_bits(bits, I)`` holds
    [-max_abs, max_abs] without saturating: max_abs <= 2^I - 2^(I-bits+1).

    ``min_integer`` (default ``-(bits-1)``) bounds I from below for tiny or zero data.
    """
    floor = -(bits - 1) if min_integer is None else int(min_integer)
    max_abs = float(max_abs)
    if not math.isfinite(max_abs):
        raise PrunerError(f'cannot choose integer bits for a non-finite maximum {max_abs}')
    if max_abs <= 0:
        return max(floor, 0) if min_integer is None else floor
    top = 1.0 - 2.0 ** (1 - bits)  # largest value at I = 0
    integer = math.ceil(math.log2(max_abs / top) - 1e-12)
    while max_abs > 2.0**integer * top:  # guard against log2 rounding
        integer += 1
    return max(floor, integer)


def unsigned_integer_bits(max_value: float, bits: int) -> int:
    """Fewest integer bits I >= 0 so that ``quantized_relu(bits, I)`` holds [0, max_value]:
    max_value <= 2^I - 2^(I-bits)."""
    max_value = float(max_value)
    if not math.isfinite(max_value):
        raise PrunerError(f'cannot choose integer bits for a non-finite maximum {max_value}')
    if max_value <= 0:
        return 0
    top = 1.0 - 2.0 ** (-bits)
    integer = max(0, math.ceil(math.log2(max_value / top) - 1e-12))
    while max_value > 2.0**integer * top:
        integer += 1
    return integer


def magnitude(values, percentile: float | None = None) -> float:
    """Max |values|, or the given percentile (0-100) of |values|."""
    a = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    if a.size == 0:
        return 0.0
    return float(np.max(a) if percentile is None else np.percentile(a, percentile))


@dataclass
class Fixed:
    """A QKeras quantizer choice: ``kind`` 'bits' (signed) or 'relu' (unsigned)."""

    kind: str
    bits: int
    integer: int

    @classmethod
    def of(cls, quantizer) -> Fixed:
        """The type a QKeras ``quantized_bits`` (alpha 1) or ``quantized_relu`` stands for, as set now
        (an unsigned ``quantized_bits`` has the unsigned type of a ReLU quantizer)."""
        kind = 'bits' if getattr(quantizer, 'keep_negative', False) else 'relu'
        return cls(kind, int(quantizer.bits), int(quantizer.integer))

    def quantizer(self):
        from qkeras import quantized_bits, quantized_relu

        if self.kind == 'bits':
            return quantized_bits(self.bits, self.integer, alpha=1)
        return quantized_relu(self.bits, self.integer)

    @property
    def ap_type(self) -> str:
        """The equivalent ap_fixed type (for the manifest)."""
        if self.kind == 'bits':
            return f'ap_fixed<{self.bits},{self.integer + 1}>'
        return f'ap_ufixed<{self.bits},{self.integer}>'

    @property
    def max_value(self) -> float:
        if self.kind == 'bits':
            return 2.0**self.integer - 2.0 ** (self.integer - self.bits + 1)
        return 2.0**self.integer - 2.0 ** (self.integer - self.bits)

    @property
    def min_value(self) -> float:
        return -(2.0**self.integer) if self.kind == 'bits' else 0.0

    @property
    def step(self) -> float:
        return 2.0 ** (self.integer - self.bits + (1 if self.kind == 'bits' else 0))


def weight_fixed(values, bits: int, percentile: float | None = None) -> Fixed:
    """Signed quantizer for a weight or bias tensor from its max magnitude (the ``'max'`` criterion)."""
    return Fixed('bits', int(bits), signed_integer_bits(magnitude(values, percentile), bits))


def activation_fixed(max_value: float, bits: int, relu: bool) -> Fixed:
    """quantized_relu for ReLU outputs, quantized_bits otherwise (the ``'max'`` criterion)."""
    if relu:
        return Fixed('relu', int(bits), unsigned_integer_bits(max_value, bits))
    return Fixed('bits', int(bits), signed_integer_bits(max_value, bits))


def quantized_values(values, fixed: Fixed) -> np.ndarray:
    """What the QKeras quantizer of ``fixed`` makes of ``values`` (float64): round to the
    nearest step (ties to even, as tf.round), saturate at the type's ends; negative values
    give 0 under quantized_relu."""
    v = np.asarray(values, dtype=np.float64) / fixed.step
    if fixed.kind == 'bits':
        low, high = -(2.0 ** (fixed.bits - 1)), 2.0 ** (fixed.bits - 1) - 1
    else:
        low, high = 0.0, 2.0**fixed.bits - 1
    return np.clip(np.round(v), low, high) * fixed.step


def quantization_error(values, fixed: Fixed) -> float:
    """Mean squared difference between ``values`` and what ``fixed`` makes of them (for a
    quantized_relu, between the positive part and it)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return 0.0
    target = np.maximum(v, 0.0) if fixed.kind == 'relu' else v
    return float(np.mean((quantized_values(v, fixed) - target) ** 2))


def lowest_integer_bits(kind: str, bits: int) -> int:
    """The fewest integer bits a quantizer may have: 0 for quantized_relu (QKeras needs
    it), -(bits-1) for quantized_bits (as ``signed_integer_bits`` for tiny data)."""
    return 0 if kind == 'relu' else -(int(bits) - 1)


def least_error_fixed(values, bits: int, kind: str, covering: int) -> Fixed:
    """The quantizer of ``kind`` and ``bits`` with the least ``quantization_error`` on
    ``values``, its integer bits searched from ``lowest_integer_bits`` up to ``covering``
    (those that hold the maximum; above it nothing improves). Of equal errors the integer
    bits nearest ``covering`` win: the criterion departs from the maximum only to gain."""
    best = Fixed(kind, int(bits), int(covering))
    best_error = quantization_error(values, best)
    for integer in range(int(covering) - 1, lowest_integer_bits(kind, bits) - 1, -1):
        candidate = Fixed(kind, int(bits), integer)
        error = quantization_error(values, candidate)
        if error < best_error:
            best, best_error = candidate, error
    return best


class Observed:
    """What one quantizer receives over calibration batches: the running magnitude (max |x|,
    or the running max of a per-batch percentile of |x|) and a sample of the values, at
    most ``per_batch`` of each batch taken at a fixed stride (deterministic), for the
    ``'mse'`` criterion. ``relu``: keep the positive part (what a quantized_relu must
    reproduce)."""

    def __init__(self, percentile: float | None = None, relu: bool = False, per_batch: int = 1 << 15):
        self.percentile = percentile
        self.relu = relu
        self.per_batch = int(per_batch)
        self.magnitude = 0.0
        self.maximum = 0.0
        self._parts: list[np.ndarray] = []

    def update(self, batch) -> None:
        values = np.asarray(batch, dtype=np.float32).ravel()
        if self.relu:
            values = np.maximum(values, 0.0)
        if values.size == 0:
            return
        maximum = magnitude(values)
        self.maximum = max(self.maximum, maximum)
        self.magnitude = max(self.magnitude, maximum if self.percentile is None else magnitude(values, self.percentile))
        stride = -(-values.size // self.per_batch)
        self._parts.append(values[::stride].copy())

    @property
    def sample(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)


STEP_CRITERIA = ('max', 'mse')
# What compress and plan_quantization use unless told otherwise: on letter (issue 26's
# benchmark, docs/benchmarks.md; unpruned, 5 seeds) least error leaves W4A6 3.7 points and
# W3A6 4.8 points below W8A8, where covering the maximum loses 14.9 and 65.2.
DEFAULT_STEP_CRITERION = 'mse'


@dataclass(frozen=True)
class StepRule:
    """How a quantizer's power-of-two step (its integer bits) is chosen: ``criterion``
    ``'max'`` (cover the maximum, or the ``percentile`` of |values|) or ``'mse'`` (least
    quantization error). Biases always cover their maximum: they are few, and one clipped
    bias shifts a whole channel."""

    criterion: str = DEFAULT_STEP_CRITERION
    percentile: float | None = None

    def __post_init__(self):
        if self.criterion not in STEP_CRITERIA:
            raise PrunerError(f'unknown step criterion {self.criterion!r}; known: {", ".join(STEP_CRITERIA)}')
        if self.percentile is not None and self.criterion != 'max':
            raise PrunerError(f"a percentile sets the range of the 'max' step criterion, not of {self.criterion!r}")

    def weight(self, values, bits: int, bias: bool = False) -> Fixed:
        """The quantizer of a weight (or, ``bias``, a bias) tensor."""
        if bias:
            return weight_fixed(values, bits)
        if self.criterion == 'max':
            return weight_fixed(values, bits, self.percentile)
        return least_error_fixed(values, bits, 'bits', weight_fixed(values, bits).integer)

    def activation(self, observed: Observed, bits: int, relu: bool) -> Fixed:
        """The quantizer of an activation (``relu``: quantized_relu) from what it received."""
        if self.criterion == 'max':
            return activation_fixed(observed.magnitude, bits, relu)
        covering = activation_fixed(observed.maximum, bits, relu)
        return least_error_fixed(observed.sample, bits, covering.kind, covering.integer)


def calibrate(model, x, batch_size: int = 256, percentile: float | None = None) -> dict[str, Observed]:
    """What every layer's output (and the input, key ``'__input__'``) is over the
    calibration data ``x``: its running magnitude and a sample of its values."""
    import keras

    names = [layer.name for layer in model.layers if layer.__class__.__name__ != 'InputLayer']
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, [model.get_layer(n).output for n in names])
    stats = {n: Observed(percentile) for n in names}
    stats['__input__'] = Observed(percentile)
    x = np.asarray(x)
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size]
        stats['__input__'].update(batch)
        outs = probe(batch, training=False)
        if len(names) == 1:
            outs = [outs]
        for n, out in zip(names, outs, strict=True):
            stats[n].update(np.asarray(out))
    return stats


@dataclass
class LayerQuant:
    """Quantizers of one layer: weights (by variable name), and its output activation."""

    weights: dict[str, Fixed] = field(default_factory=dict)
    activation: Fixed | None = None

    def to_dict(self) -> dict:
        return {
            'weights': {k: {**asdict(v), 'ap_type': v.ap_type} for k, v in self.weights.items()},
            'activation': None
            if self.activation is None
            else {**asdict(self.activation), 'ap_type': self.activation.ap_type},
        }


@dataclass
class QuantPlan:
    input: Fixed
    layers: dict[str, LayerQuant]

    def to_dict(self) -> dict:
        return {
            'input': {**asdict(self.input), 'ap_type': self.input.ap_type},
            'layers': {k: v.to_dict() for k, v in self.layers.items()},
        }


def plan_quantization(
    model,
    calibration: dict[str, Observed],
    weight_bits: int = 4,
    activation_bits: int = 8,
    bias_bits: int | None = None,
    overrides: dict | None = None,
    rule: StepRule | None = None,
) -> QuantPlan:
    """Choose every quantizer of a float model (BatchNorm already folded).

    ``calibration``: what each layer's output is, from ``calibrate``; ``rule``: how each
    step is chosen (default ``StepRule()``: DEFAULT_STEP_CRITERION). ``bias_bits`` defaults to
    max(weight_bits, activation_bits) (biases are few; narrow ones cost accuracy).
    ``overrides``: layer name -> {'weight_bits', 'bias_bits', 'activation_bits'}, e.g.
    {'logits': {'weight_bits': 8}} to keep the last layer at 8 bits (key '__input__'
    for the input quantizer's 'activation_bits'). The input gets
    ``quantized_bits(activation_bits, I)`` from the input's magnitude.
    Linear outputs of weight layers get no quantizer (their accumulators are exact).
    """
    overrides = dict(overrides or {})
    rule = rule or StepRule()
    unknown = set(overrides) - {layer.name for layer in model.layers} - {'__input__'}
    if unknown:
        raise PrunerError(f'bit overrides name layers not in the model: {sorted(unknown)}')
    layers = {}
    for layer in model.layers:
        kind = lookup(layer)
        o = overrides.get(layer.name, {})
        wb = int(o.get('weight_bits', weight_bits))
        bb = int(o.get('bias_bits', bias_bits if bias_bits is not None else max(weight_bits, activation_bits)))
        ab = int(o.get('activation_bits', activation_bits))
        entry = LayerQuant()
        if kind is None:  # InputLayer and the like: nothing to quantize
            continue
        for name, values in kind.quantized_weights(layer).items():
            bias = WEIGHT_ROLES[name].role == 'bias'
            entry.weights[name] = rule.weight(values, bb if bias else wb, bias=bias)
        if kind.quantizes_output(layer):
            entry.activation = rule.activation(calibration[layer.name], ab, relu=True)
        if entry.weights or entry.activation:
            layers[layer.name] = entry
    ib = int(overrides.get('__input__', {}).get('activation_bits', activation_bits))
    return QuantPlan(rule.activation(calibration['__input__'], ib, relu=False), layers)
