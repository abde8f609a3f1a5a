"""Layer kinds: one class per layer family, registered per route.

Each route (HLS through hls4ml, RTL through da4ml) keeps a :class:`Registry` of the
Keras/QKeras layer classes it maps. A route's layer kind is a class that declares
``handles = ('QDense', ...)`` and registers itself when it is defined (its route's
base class owns the registry). What every route needs to know about a layer family's
QKeras arithmetic lives here, in the shared semantics classes the route kinds derive
from:

- ``plan``: the fixed-point type of every weight and quantized activation, refusals
  (naming the layer and what to use instead) of what cannot be exact;
- ``bound``: how large and how fine the layer's exact values get, for the check that
  the float32 QKeras reference itself is exact (:func:`hls_backend.core.plan.check_float32_reference`);
- ``quantized``: the weights QKeras computes with (for the fused batch-norm layers, the
  folded ones), used by the bound and by the RTL replay.

Routes add what only they need (the HLS route: checks of hls4ml's converted graph and
hls4ml handlers; the RTL route: the da4ml replay). Supported-layer lists, error
messages and the README table are derived from the registries
(:mod:`hls_backend.supported`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedModelError
from .fixed_point import FixedType, quantizer_config, quantizer_type

# The QKeras model, the reference every design is compared with, computes in float32:
# a value is exact only if it needs at most 24 significant bits.
FLOAT32_BITS = 24
# Suffix of the layer split off a Q-layer's ``activation=`` (the name hls4ml's own
# Keras-3 QKeras port uses); the precision plan sets its type by this name.
ACTIVATION_SUFFIX = '_activation'


@dataclass(frozen=True)
class WeightRole:
    """One weight of a quantized layer under its three names."""

    role: str  # QKeras: '<role>_quantizer', '<role>_quantizer_internal'
    variable: str  # the Keras variable name ('depthwise_kernel', ...)
    precision_key: str  # hls4ml's Precision key ('weight', ...)


WEIGHT_ROLES = {
    r.role: r
    for r in (
        WeightRole('kernel', 'kernel', 'weight'),
        WeightRole('depthwise', 'depthwise_kernel', 'depthwise'),
        WeightRole('pointwise', 'pointwise_kernel', 'pointwise'),
        WeightRole('bias', 'bias', 'bias'),
    )
}


def where(layer) -> str:
    return f"layer '{layer.name}' ({layer.__class__.__name__})"


class Registry:
    """The layer kinds of one route, by Keras class name."""

    def __init__(self, route: str, fallback: Registry | None = None):
        self.route = route  # e.g. 'HLS route (hls4ml)', for messages
        self.fallback = fallback  # kinds known everywhere (refusals with a hint)
        self.kinds: dict[str, LayerKind] = {}

    def add(self, kind_class: type[LayerKind]) -> None:
        kind = kind_class()
        for name in kind_class.handles:
            if name in self.kinds:
                raise TypeError(
                    f'{kind_class.__name__} and {type(self.kinds[name]).__name__} both handle {name} in the {self.route}'
                )
            self.kinds[name] = kind

    def supported(self) -> list[str]:
        """The layer classes this route accepts (refusal kinds left out)."""
        return sorted(name for name, kind in self.kinds.items() if kind.accepted)

    def get(self, class_name: str) -> LayerKind | None:
        kind = self.kinds.get(class_name)
        if kind is None and self.fallback is not None:
            kind = self.fallback.get(class_name)
        return kind

    def lookup(self, layer) -> LayerKind:
        """The kind for ``layer``, or UnsupportedModelError naming it and listing what is supported."""
        kind = self.get(layer.__class__.__name__)
        if kind is None:
            raise UnsupportedModelError(
                f'{where(layer)} is not supported by the {self.route}; it maps {len(self.supported())} layer classes '
                f'(`lpsubnet layers` lists them), among them {", ".join(self.closest(layer.__class__.__name__))}'
            )
        return kind

    def closest(self, class_name: str, n: int = 3) -> list[str]:
        """The supported layer classes whose names are most like ``class_name`` (what a user
        may have meant), so a refusal names alternatives without printing the whole table."""
        import difflib

        supported = self.supported()
        near = difflib.get_close_matches(class_name, supported, n=n, cutoff=0.0)
        return near or supported[:n]

    def unique_kinds(self) -> list[LayerKind]:
        seen: dict[int, LayerKind] = {}
        for kind in self.kinds.values():
            seen.setdefault(id(kind), kind)
        return list(seen.values())


class LayerKind:
    """A layer family. A subclass that declares ``handles`` is added to ``registry``."""

    handles: tuple[str, ...] = ()
    registry: Registry | None = None
    accepted = True  # False: a kind that exists to refuse with a precise hint
    limits = ''  # one line for the README table: what is refused or special

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get('handles') and cls.registry is not None:
            cls.registry.add(cls)

    # --- the precision plan -------------------------------------------------------------
    def plan(self, layer, ctx) -> None:
        """Record types in ``ctx`` (a core.plan.PlanBuilder); raise when not exact."""

    # --- the float32 bound --------------------------------------------------------------
    def bound(self, layer, sources: list[tuple[int, float]], ctx) -> tuple[int, float] | None:
        """(fractional bits, bound on |value|) of the layer's output given its inputs';
        None ends the check along this path (nothing downstream is bounded)."""
        return None

    # --- the size of its arithmetic -----------------------------------------------------
    def macs(self, layer) -> int:
        """Multiply-accumulates per sample: what a fully unrolled design (the RTL route)
        spends logic on. Layers without weights only move, compare or add: 0."""
        return 0


def activation_name(layer) -> str | None:
    """'linear', a plain activation name, or None when it is a QKeras quantizer."""
    activation = layer.get_config().get('activation')
    if activation is None:
        return 'linear'
    if isinstance(activation, str):
        return activation
    if isinstance(activation, dict) and activation.get('module', '').startswith('keras'):
        return activation.get('config', activation.get('class_name'))
    return None


def checked_type(quantizer, at: str) -> FixedType:
    """quantizer_type, refusing widths the float32 QKeras reference cannot hold exactly."""
    fixed = quantizer_type(quantizer, at)
    if fixed.width > FLOAT32_BITS:
        raise UnsupportedModelError(
            f'{at}: {fixed.width} bits is more than {FLOAT32_BITS}: the QKeras model computes in float32, which holds '
            f'at most {FLOAT32_BITS} significant bits, so no design can match it; use at most {FLOAT32_BITS} bits'
        )
    return fixed


def of_type(fixed: FixedType) -> tuple[int, float]:
    return fixed.fractional, max(abs(fixed.min_value), abs(fixed.max_value))


def activation_type(layer) -> FixedType | None:
    """The type of a Q-layer's quantizer ``activation=``, None when it has none."""
    if activation_name(layer) is not None:
        return None
    return quantizer_type(layer.get_config()['activation'], f'{where(layer)} activation')


# --- shared semantics: what a layer family computes in QKeras ---------------------------


class Quantizing(LayerKind):
    """Layers whose output is on a quantizer's grid; softmax at the output is left out."""

    def plan_activation(self, layer, ctx, separate_layer: bool = False) -> None:
        act = activation_name(layer)
        if act is None:
            fixed = checked_type(layer.get_config()['activation'], f'{where(layer)} activation')
            name = layer.name if separate_layer else f'{layer.name}{ACTIVATION_SUFFIX}'
            ctx.precisions[name] = {'result': fixed.hls4ml()}
        elif act == 'softmax' and ctx.is_output(layer):
            ctx.set_softmax(layer, is_layer=separate_layer)
        elif act != 'linear':
            hint = (
                'replace it by QActivation(quantized_relu(bits, integer))'
                if separate_layer
                else 'use a QKeras quantizer such as quantized_relu(bits, integer)'
            )
            verb = 'applies' if separate_layer else 'has'
            ctx.inexact(f"{where(layer)} {verb} the float activation '{act}'; {hint}")


class Weighted(Quantizing):
    """A sum of products with quantized weights, plus a bias, then ``activation=``.

    Subclasses give ``roles`` (the quantized weights) and :meth:`sum_bound`.
    """

    roles: tuple[str, ...] = ('kernel', 'bias')

    def plan(self, layer, ctx) -> None:
        config = layer.get_config()
        precision = {}
        for role in self.roles:
            if role == 'bias' and not config.get('use_bias', True) and not self.always_biased:
                continue
            quantizer = config.get(f'{role}_quantizer')
            if quantizer is None:
                raise UnsupportedModelError(
                    f'{where(layer)} has no {role}_quantizer: its {role} would be float; '
                    'give it quantized_bits(bits, integer, alpha=1)'
                )
            if self.is_po2(layer, role):
                self.check_po2(layer, role)
                continue  # hls4ml takes the exponent type from the quantizer itself
            fixed = checked_type(quantizer, f'{where(layer)} {role}_quantizer')
            # Weights are constants already on the grid: plain truncate/wrap types.
            precision[WEIGHT_ROLES[role].precision_key] = FixedType(
                fixed.width, fixed.integer, fixed.signed, 'TRN', 'WRAP'
            ).hls4ml()
        ctx.precisions[layer.name] = precision
        self.plan_activation(layer, ctx)

    always_biased = False  # the fused batch-norm layers always add a (folded) bias

    def raw_weight(self, layer, role: str):
        """The weight the layer's quantizer is applied to."""
        return getattr(layer, WEIGHT_ROLES[role].variable, None)

    def quantized(self, layer, role: str) -> np.ndarray | None:
        """The weight QKeras computes with, checked to lie on its type's grid; None for an absent bias."""
        at = f'{where(layer)} {role}_quantizer'
        config = layer.get_config().get(f'{role}_quantizer')
        quantizer = getattr(layer, f'{role}_quantizer_internal', None)
        if quantizer is None or config is None:
            raise UnsupportedModelError(
                f'{at} is not set: {role} would be float; give it quantized_bits(bits, integer, alpha=1)'
            )
        value = self.raw_weight(layer, role)
        if value is None:
            return None
        if self.is_po2(layer, role):
            w = np.asarray(quantizer(value), dtype=np.float64)
            magnitude = np.abs(w)
            if not (np.all(magnitude > 0) and np.array_equal(np.exp2(np.round(np.log2(magnitude))), magnitude)):
                raise UnsupportedModelError(f'{at}: quantized values are not all exact powers of two')
            return w
        fixed = quantizer_type(config, at)
        w = np.asarray(quantizer(value), dtype=np.float64)
        if not np.array_equal(fixed.quantize(w), w):
            raise UnsupportedModelError(f'{at}: quantized values are not on the grid of {fixed.ap()}; use alpha=1')
        return w

    def bias(self, layer) -> np.ndarray | None:
        if not layer.get_config().get('use_bias', True) and not self.always_biased:
            return None
        return self.quantized(layer, 'bias')

    def sum_bound(self, layer, source: tuple[int, float], ctx) -> tuple[int, np.ndarray]:
        """(fractional bits, bound per output channel) of the sum of products, before the bias."""
        raise NotImplementedError(f'{type(self).__name__} must bound its sums')

    def bound(self, layer, sources, ctx):
        frac, bound = self.sum_bound(layer, sources[0], ctx)
        bias = self.bias(layer)
        if bias is not None:
            frac = max(frac, quantizer_type(layer.get_config()['bias_quantizer'], where(layer)).fractional)
            bound = bound + np.abs(bias).reshape(-1)
        bound = float(np.max(bound)) if np.size(bound) else 0.0
        ctx.check(where(layer), frac, bound)
        ctx.record_sum(layer, frac, bound)
        if any(self.is_po2(layer, role) for role in self.roles):
            ctx.exact_sum(layer, frac, bound)
        fixed = activation_type(layer)
        return of_type(fixed) if fixed is not None else (frac, bound)

    def macs(self, layer) -> int:
        """Each output position multiplies every weight once (the bias is an addition):
        positions x weights, summed over the weight roles (a separable layer's depthwise
        and pointwise kernels both run at the output positions)."""
        positions = int(np.prod(layer.output.shape[1:-1]))
        weights = sum(
            int(np.prod(getattr(layer, WEIGHT_ROLES[role].variable).shape)) for role in self.roles if role != 'bias'
        )
        return positions * weights

    def weight_frac(self, layer, role: str) -> int:
        if self.is_po2(layer, role):
            smallest = np.min(np.abs(self.quantized(layer, role)))
            return max(0, -int(np.log2(smallest)))
        return quantizer_type(layer.get_config()[f'{role}_quantizer'], where(layer)).fractional

    # Roles whose quantizer may be QKeras's power-of-two quantized_po2 (a route's choice:
    # hls4ml multiplies by shifting; see the HLS route's DenseOrConv).
    po2_roles: tuple[str, ...] = ()

    def is_po2(self, layer, role: str) -> bool:
        quantizer = layer.get_config().get(f'{role}_quantizer')
        return role in self.po2_roles and quantizer is not None and quantizer_config(quantizer)[0] == 'quantized_po2'

    def check_po2(self, layer, role: str) -> None:
        """Refuse quantized_po2 settings with no exact hardware form."""
        at = f'{where(layer)} {role}_quantizer'
        config = quantizer_config(layer.get_config()[f'{role}_quantizer'])[1]
        if config.get('use_stochastic_rounding'):
            raise UnsupportedModelError(
                f'{at}: quantized_po2 with stochastic rounding cannot be reproduced in hardware'
            )
        self.quantized(layer, role)


def matrix_sums(kernel: np.ndarray) -> np.ndarray:
    """Sum of |w| per output channel of a dense or convolution kernel (output axis last)."""
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)


def depthwise_sums(kernel: np.ndarray) -> np.ndarray:
    """Sum of |w| per output channel of a depthwise kernel (spatial axes, then in x mult)."""
    return np.abs(kernel).sum(axis=tuple(range(kernel.ndim - 2))).reshape(-1)


class DenseOrConv(Weighted):
    """QDense, QConv1D, QConv2D: one sum over inputs (and taps) per output channel."""

    def sum_bound(self, layer, source, ctx):
        frac, bound = source
        return frac + self.weight_frac(layer, 'kernel'), matrix_sums(self.quantized(layer, 'kernel')) * bound


class FoldedBatchnorm(DenseOrConv):
    """QKeras's fused QDenseBatchnorm / QConv2DBatchnorm. At inference they compute with the
    batch normalization folded into the weights, then quantized (qkeras qdense_batchnorm.py /
    qconv2d_batchnorm.py, ``call`` with training=False; both folding modes agree there):

        inv = gamma / sqrt(moving_variance + epsilon)
        kernel = kernel_quantizer(inv * kernel)
        bias = bias_quantizer(inv * (bias - moving_mean) + beta)   (bias 0 without use_bias)

    The fold is computed here with the same Keras operations in float32, inside a
    tf.function as in ``predict`` (graph rewrites could otherwise round differently), so
    the weights are bit for bit the ones the reference uses. A bias is always added.
    """

    always_biased = True

    def plan(self, layer, ctx) -> None:
        config = layer.get_config()
        axis = config.get('axis', -1)
        axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
        if axis not in (-1, len(layer.output.shape) - 1):
            raise UnsupportedModelError(
                f'{where(layer)}: batch normalization over axis {axis} is not supported; use the channel axis (-1)'
            )
        if not config.get('center', True):
            raise UnsupportedModelError(
                f'{where(layer)}: center=False leaves QKeras without a beta to fold (its own call fails); use center=True'
            )
        super().plan(layer, ctx)

    def raw_weight(self, layer, role: str):
        return self.fold(layer)[role]

    def fold(self, layer) -> dict:
        import keras
        import tensorflow as tf

        bn = layer.batchnorm

        @tf.function
        def folded():
            inv = 1 / keras.ops.sqrt(bn.moving_variance.value + bn.epsilon)
            if bn.gamma is not None:
                inv *= bn.gamma.value
            bias = layer.bias.value if layer.use_bias else 0
            return inv * layer.kernel.value, inv * (bias - bn.moving_mean.value) + bn.beta.value

        kernel, bias = folded()
        return {'kernel': kernel, 'bias': bias}


class Depthwise(Weighted):
    """QDepthwiseConv2D: one sum over the taps per channel."""

    roles = ('depthwise', 'bias')

    def plan(self, layer, ctx) -> None:
        multiplier = int(layer.get_config().get('depth_multiplier', 1))
        if multiplier != 1:
            raise UnsupportedModelError(
                f'{where(layer)} has depth_multiplier={multiplier}; hls4ml 1.3.0 supports only '
                'depth_multiplier=1 (its C++ asserts); follow a depthwise layer with a pointwise QConv2D instead'
            )
        super().plan(layer, ctx)

    def sum_bound(self, layer, source, ctx):
        frac, bound = source
        return frac + self.weight_frac(layer, 'depthwise'), depthwise_sums(self.quantized(layer, 'depthwise')) * bound


class Separable(Weighted):
    """QSeparableConv1D/2D: two sums in float32, the depthwise one per input channel,
    then the pointwise one over the depthwise outputs (no quantizer in between)."""

    roles = ('depthwise', 'pointwise', 'bias')

    def sum_bound(self, layer, source, ctx):
        frac, bound = source
        depthwise, pointwise = self.quantized(layer, 'depthwise'), self.quantized(layer, 'pointwise')
        frac += self.weight_frac(layer, 'depthwise')
        bound = depthwise_sums(depthwise) * bound
        ctx.check(f'{where(layer)} (depthwise part)', frac, float(np.max(bound)))
        frac += self.weight_frac(layer, 'pointwise')
        return frac, (np.abs(pointwise).reshape(-1, pointwise.shape[-1]) * bound[:, None]).sum(axis=0)


class QuantizedActivation(Quantizing):
    """QActivation: its output is on its quantizer's grid."""

    def plan(self, layer, ctx) -> None:
        if activation_name(layer) is not None:
            raise UnsupportedModelError(
                f'{where(layer)} applies a float activation; give it a QKeras quantizer (quantized_relu, quantized_bits)'
            )
        self.plan_activation(layer, ctx, separate_layer=True)

    def bound(self, layer, sources, ctx):
        return of_type(activation_type(layer))


class FloatActivation(Quantizing):
    """Activation / ReLU / Softmax layers: only 'linear', or softmax at the output, are exact."""

    def plan(self, layer, ctx) -> None:
        cls = layer.__class__.__name__
        act = {'Softmax': 'softmax', 'ReLU': 'relu'}.get(cls) or activation_name(layer)
        if act == 'softmax' and ctx.is_output(layer):
            ctx.set_softmax(layer, is_layer=True)
        elif act != 'linear':
            ctx.inexact(
                f"{where(layer)} applies the float activation '{act}'; replace it by QActivation(quantized_relu(bits, integer))"
            )

    def bound(self, layer, sources, ctx):
        return sources[0]


class DataMovement(LayerKind):
    """Layers that only move, select or copy values: exact with the input's type."""

    def bound(self, layer, sources, ctx):
        return sources[0]


class Sum(LayerKind):
    """Add: the sum of its inputs."""

    def bound(self, layer, sources, ctx):
        frac = max(s[0] for s in sources)
        bound = float(sum(s[1] for s in sources))
        ctx.check(where(layer), frac, bound)
        return frac, bound


class Join(LayerKind):
    """Concatenate: the finest and largest of its inputs."""

    def bound(self, layer, sources, ctx):
        return max(s[0] for s in sources), max(s[1] for s in sources)


class Average(LayerKind):
    """Average pooling: a sum of n values, then / n."""

    def bound(self, layer, sources, ctx):
        frac, bound = sources[0]
        if layer.__class__.__name__.startswith('Global'):
            n = int(np.prod(layer.input.shape[1:-1]))
        else:
            n = int(np.prod(layer.get_config()['pool_size']))
        extra = int(np.ceil(np.log2(max(n, 1))))
        ctx.check(where(layer), frac + extra, bound * 2.0**extra)
        return frac + extra, bound


class BatchNorm(LayerKind):
    """An unfolded batch normalization is not exact; accepted only with a default precision."""

    def plan(self, layer, ctx) -> None:
        ctx.inexact(
            f'{where(layer)} is not bit-exact in hls4ml; fold batch normalization into the preceding layer '
            "first (pruner.surgery does), or use QKeras's fused QDenseBatchnorm / QConv2DBatchnorm"
        )


# --- kinds every route refuses, with what to use instead --------------------------------

REFUSALS = Registry('every route')


class Refused(LayerKind):
    registry = REFUSALS
    accepted = False


class FloatWeights(Refused):
    handles = ('Dense', 'Conv1D', 'Conv2D', 'DepthwiseConv2D', 'SeparableConv1D', 'SeparableConv2D')
    limits = 'refused: float weights; use the Q layer with quantized_bits(alpha=1)'

    def plan(self, layer, ctx) -> None:
        cls = layer.__class__.__name__
        raise UnsupportedModelError(
            f'{where(layer)} has float weights; use Q{cls} with kernel_quantizer and bias_quantizer (quantized_bits, alpha=1)'
        )


class UnfoldedBatchNorm(BatchNorm, Refused):
    """Refused on routes that do not list it themselves (the HLS route accepts it inexactly)."""

    handles = ('BatchNormalization', 'QBatchNormalization')
    limits = 'refused: fold it into the preceding layer, or use the fused layers'
