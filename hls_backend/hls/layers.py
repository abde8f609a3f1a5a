"""The HLS route's layer kinds: one class per layer family, registered in :data:`HLS_LAYERS`.

Each kind carries, for its Keras layer classes (``handles``): the precision plan and
the float32 bound (from the shared semantics in :mod:`hls_backend.layer_kinds`), the
hls4ml graph classes it becomes (``hls4ml_classes``) with the checks of hls4ml's
converted graph that keep the design exact (``check_graph``), and whether lpsubnet's
own Keras-3 QKeras handler converts which of them (``bridged``, see :mod:`hls_backend.hls.qkeras_bridge`).
"""

from __future__ import annotations

import numpy as np

from ..core import layer_kinds as kinds
from ..core.fixed_point import FixedType, parse_fixed_type
from ..errors import UnsupportedModelError
from .qkeras_bridge import parse_qkeras_layer

HLS_LAYERS = kinds.Registry('HLS back end (hls4ml)', fallback=kinds.REFUSALS)


class HLSLayer(kinds.LayerKind):
    registry = HLS_LAYERS
    hls4ml_classes: tuple[str, ...] = ()  # the hls4ml graph layers this family becomes
    bridged: tuple[str, ...] = ()  # classes converted by lpsubnet's QKeras handler (qkeras_bridge)
    # Whether the layer's ``activation=`` is applied to its output (a recurrent cell's is
    # internal, batch normalization has none) and becomes a layer of its own.
    splits_activation = True

    def check_graph(self, node, graph) -> None:
        """Refuse a converted hls4ml layer ``node`` that cannot be exact (``graph``: GraphCheck)."""

    def hls4ml_layers(self, layer, in_tensors, out_tensors) -> tuple[dict, ...]:
        """hls4ml's layer dictionaries for ``layer`` (classes in ``bridged`` only)."""
        return parse_qkeras_layer(layer, in_tensors, out_tensors, split_activation=self.splits_activation)


def _holds(outer, inner, extra_integer: int = 0) -> bool:
    """Whether hls4ml precision ``outer`` holds every value of ``inner`` (with
    ``extra_integer`` more integer bits, for a sum of two)."""
    if not all(hasattr(t, 'fractional') and hasattr(t, 'signed') for t in (outer, inner)):
        return True  # not a fixed-point or integer type: nothing to compare
    magnitude = inner.integer - (1 if inner.signed else 0) + extra_integer
    if inner.signed and not outer.signed:
        return False
    return outer.fractional >= inner.fractional and outer.integer - (1 if outer.signed else 0) >= magnitude


def node_where(node) -> str:
    return f"layer '{node.name}' ({node.class_name})"


def check_lossless(node, graph, extra_roles: dict | None = None) -> None:
    """A layer that only moves, selects or joins values: its result (and ``extra_roles``)
    must hold every input value, or the design rounds or wraps (hls4ml falls back to its
    default ``fixed<16,6>`` where it has no type rule)."""
    checked = {'result': node.get_output_variable().type.precision, **(extra_roles or {})}
    for role, precision in checked.items():
        for source in graph.input_types(node):
            if not _holds(precision, source):
                raise UnsupportedModelError(
                    f'{node_where(node)}: hls4ml gave its {role} the type {precision}, which cannot hold its input type '
                    f'{source}, so the design would not be bit-exact (a gap in hls4ml 1.3.0 type '
                    'inference that the back end does not cover); use another layer here'
                )


class GraphCheck:
    """What the graph checks need to know about the converted hls4ml model."""

    def __init__(self, hls_model):
        self.hls_model = hls_model
        self.stream = hls_model.config.get_config_value('IOType') == 'io_stream'

    def input_types(self, node) -> list:
        sources = [node.get_input_variable(name) for name in node.inputs]
        return [var.type.precision for var in sources if var is not None]


def check_hls_graph(
    hls_model, planned: dict[str, dict[str, str]] | None = None, sums: dict[str, tuple[int, float]] | None = None
) -> None:
    """Refuse a converted graph that cannot be exact: every hls4ml layer is checked by the
    layer kind that declares its class (found by fuzzing; see :mod:`hls_backend.hls.passes`
    for the hls4ml 1.3.0 bugs behind these rules); every type the precision plan decided
    (``planned``: layer name -> hls4ml Precision dict) must be the type hls4ml gave, so
    that an hls4ml rule overriding the plan is refused, never written; and the accumulator
    and unquantized result of every weighted layer must hold its exact sum (``sums``:
    layer name -> fractional bits and bound, ``ModelPlan.exact_sums``), whichever rule or
    config entry typed them (hls4ml infers them; a narrowed ``auto`` in a user's config
    made a design 19/200 exact)."""
    graph = GraphCheck(hls_model)
    by_class = {name: kind for kind in HLS_LAYERS.unique_kinds() for name in kind.hls4ml_classes}
    for node in hls_model.get_layers():
        kind = by_class.get(node.class_name)
        if kind is not None:
            kind.check_graph(node, graph)
        for role, text in (planned or {}).get(node.name, {}).items():
            check_planned_type(node, role, text)
        if node.name in (sums or {}):
            check_exact_sum(node, *sums[node.name])
        check_rounding_casts(node)


def check_rounding_casts(node) -> None:
    """Refuse a rounding cast the ap_fixed headers cannot compute: rounding a value to a
    coarser type reads the source bit just below the target's LSB, and where the source's
    integer bits are so negative that this bit lies above its MSB (source integer bits <=
    -(target fractional bits + 1)) the headers hls4ml 1.3.0 ships abort ("Attempting to read
    bit beyond MSB"; without assertions the bit read is undefined). Found by make fuzz,
    campaign 5, csim-io_stream seed 200069: a QSeparableConv1D quantized to ap_fixed<5,-1>
    feeding quantized_relu(2, 2), ap_ufixed<2,2,AP_RND_CONV,AP_SAT>: C simulation aborted."""
    target = _as_fixed(node.get_output_variable().type.precision)
    if target is None or target.rounding == 'TRN':
        return
    # (The Input node names the model's input as its own input: no variable, nothing cast.)
    variables = [(name, node.get_input_variable(name)) for name in node.inputs]
    sources = [(f"input '{name}'", v.type.precision) for name, v in variables if v is not None]
    if 'accum_t' in node.types:
        sources.append(('accumulator', node.types['accum_t'].precision))
    for what, precision in sources:
        source = _as_fixed(precision)
        if source is None or source.fractional <= target.fractional:
            continue  # nothing to round
        if source.integer <= -(target.fractional + 1):
            raise UnsupportedModelError(
                f'{node_where(node)}: rounding its {what} of type {precision} to its result type '
                f"{node.get_output_variable().type.precision} reads a bit above the input's most significant bit, "
                'which the ap_fixed headers of hls4ml 1.3.0 cannot compute (C simulation aborts: "Attempting to read '
                f'bit beyond MSB"); the input type needs at least {-target.fractional} integer bits (ap_fixed\'s count, '
                "sign included): give the quantizer before it more integer bits, or this layer's quantizer more "
                'fractional bits'
            )


def check_exact_sum(node, frac: int, bound: float) -> None:
    """``node``'s accumulator, and its result unless a quantizer's cast sets it, hold every
    value of a sum with ``frac`` fractional bits and magnitude up to ``bound``."""
    roles = {'accumulator': node.types['accum_t'].precision} if 'accum_t' in node.types else {}
    if node.get_attr('quantizer') is None:  # hls4ml merged no quantizing cast into the result
        roles['result'] = node.get_output_variable().type.precision
    for role, precision in roles.items():
        fixed = _as_fixed(precision)
        if fixed is None:
            continue
        fits = fixed.fractional >= frac and fixed.signed and fixed.max_value >= bound and fixed.min_value <= -bound
        if not fits:
            raise UnsupportedModelError(
                f'{node_where(node)}: its {role} type {precision} cannot hold its exact sum ({frac} fractional bits, '
                f'magnitude up to {bound:g}), so the design would not be bit-exact; leave its precision to hls4ml '
                "('auto') or give it a type that holds the sum"
            )


def _as_fixed(precision) -> FixedType | None:
    """An hls4ml fixed-point or integer precision as a FixedType; None for other kinds."""
    from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType

    if isinstance(precision, FixedPrecisionType):
        rounding = precision.rounding_mode.name if precision.rounding_mode is not None else 'TRN'
        saturation = precision.saturation_mode.name if precision.saturation_mode is not None else 'WRAP'
        return FixedType(precision.width, precision.integer, precision.signed, rounding, saturation)
    if isinstance(precision, IntegerPrecisionType):
        return FixedType(precision.width, precision.width, precision.signed, 'TRN', 'WRAP')
    return None


def check_planned_type(node, role: str, planned: str) -> None:
    """The type hls4ml gave ``node``'s ``role`` (hls4ml Precision key) is the planned one:
    the same grid and range, and for a quantized result the same rounding and saturation."""
    if role == 'result':
        actual = node.get_output_variable().type.precision
    elif role in node.weights:
        actual = node.weights[role].type.precision
    elif f'{role}_t' in node.types:
        actual = node.types[f'{role}_t'].precision
    else:
        return  # a role hls4ml did not create for this node (e.g. no bias)
    fixed, want = _as_fixed(actual), parse_fixed_type(planned)
    if fixed is None:
        return  # exponent (power-of-two) weights: checked by the layer kind
    same_grid = (fixed.width, fixed.integer, fixed.signed) == (want.width, want.integer, want.signed)
    same_cast = role != 'result' or (fixed.rounding, fixed.saturation) == (want.rounding, want.saturation)
    if not (same_grid and same_cast):
        raise UnsupportedModelError(
            f'{node_where(node)}: hls4ml typed its {role} {actual} where the QKeras model needs {want.ap()}, so the '
            'design would not be bit-exact (an hls4ml 1.3.0 type rule the back end does not correct); '
            'please report this model'
        )


# --- the layer kinds ----------------------------------------------------------------------


class DenseOrConv(kinds.DenseOrConv, HLSLayer):
    handles = ('QDense', 'QConv1D', 'QConv2D')
    hls4ml_classes = ('Dense', 'Conv1D', 'Conv2D', 'PointwiseConv1D', 'PointwiseConv2D')
    bridged = handles
    po2_roles = ('kernel',)
    limits = 'kernel_quantizer quantized_bits(alpha=1) or quantized_po2 (where the shift product holds it)'

    def check_graph(self, node, graph) -> None:
        """Power-of-two weights: hls4ml multiplies by shifting the input into a product type
        of ``2 (e + w)`` bits, ``e + w`` of them fractional (``e``: the exponent type's width,
        ``w``: the input's), so a product needing more fractional or integer bits is cut."""
        from hls4ml.model.types import ExponentPrecisionType

        weights = node.weights.get('weight')
        if weights is None or not isinstance(weights.type.precision, ExponentPrecisionType):
            return
        (x,) = graph.input_types(node)
        e = weights.type.precision.width
        exponents = np.log2(np.abs(np.asarray(weights.data, dtype=np.float64)))
        need_frac = x.fractional - min(0, int(exponents.min()))
        need_int = x.integer + max(0, int(exponents.max())) + (0 if x.signed else 1)
        if need_frac > e + x.width or need_int > e + x.width:
            raise UnsupportedModelError(
                f'{node_where(node)}: its power-of-two weights (exponents {int(exponents.min())}..{int(exponents.max())}) '
                f"shift its input {x} by more than hls4ml 1.3.0's product type ap_fixed<{2 * (e + x.width)},{e + x.width}> "
                'holds, so the design would not be bit-exact; use fewer quantized_po2 bits or a smaller max_value, '
                'or quantized_bits weights'
            )


class _FoldedWeightsReader:
    """hls4ml's weight-reader interface, serving a fused layer's folded, quantized weights."""

    def __init__(self, layer_name: str, weights: dict):
        self.layer_name, self.weights = layer_name, weights

    def get_weights_data(self, layer_name: str, var_name: str):
        if layer_name != self.layer_name:
            raise KeyError(f'handler for {self.layer_name} asked for weights of {layer_name}')
        return self.weights.get(var_name)


class _Folded(kinds.FoldedBatchnorm, HLSLayer):
    """Converted by hls4ml's parser of the unfused layer (``unfused``), fed the folded weights."""

    unfused = ''

    def hls4ml_layers(self, layer, in_tensors, out_tensors) -> tuple[dict, ...]:
        weights = {'kernel': self.quantized(layer, 'kernel'), 'bias': self.bias(layer)}
        reader = _FoldedWeightsReader(layer.name, weights)
        return parse_qkeras_layer(
            layer, in_tensors, out_tensors, self.unfused, reader, config={**layer.get_config(), 'use_bias': True}
        )


class DenseBatchnorm(_Folded):
    handles = ('QDenseBatchnorm',)
    bridged = handles
    unfused = 'QDense'
    limits = 'batch norm folded as QKeras folds it at inference'


class Conv2DBatchnorm(_Folded):
    handles = ('QConv2DBatchnorm',)
    bridged = handles
    unfused = 'QConv2D'
    limits = 'batch norm folded as QKeras folds it at inference'


class Depthwise(kinds.Depthwise, HLSLayer):
    handles = ('QDepthwiseConv2D',)
    hls4ml_classes = ('DepthwiseConv2D',)
    bridged = handles
    limits = 'depth_multiplier=1; io_stream: no kernel of 1 with a stride > 1'

    def check_graph(self, node, graph) -> None:
        """io_stream depthwise convolution with a kernel of 1 along an axis it strides by
        more than 1: every output wrong (found by fuzzing: ``depthwise_1x1_strided_stream``
        in test_fuzz_regressions.py; a 1x1 Conv2D goes through hls4ml's pointwise code and
        is exact). Also checks the split-off depthwise part of a separable convolution."""
        if not graph.stream:
            return
        axes = [(node.get_attr(f'filt_{a}'), node.get_attr(f'stride_{a}')) for a in ('height', 'width')]
        if any(kernel == 1 and stride > 1 for kernel, stride in axes):
            raise UnsupportedModelError(
                f'{node_where(node)}: a depthwise convolution with a kernel of 1 and a stride above 1 on an axis '
                '(kernel {0[0][0]}x{0[1][0]}, strides {0[0][1]}x{0[1][1]}) is computed wrongly by hls4ml 1.3.0 '
                'with io_stream; use io_parallel, or stride 1 followed by max pooling'.format(axes)
            )


class Separable(kinds.Separable, HLSLayer):
    handles = ('QSeparableConv1D', 'QSeparableConv2D')
    # hls4ml splits a separable convolution into a depthwise and a pointwise layer; the
    # 2-D depthwise part is checked by Depthwise, the pointwise one by DenseOrConv.
    hls4ml_classes = ('DepthwiseConv1D',)
    bridged = handles
    limits = 'not both 1-D and 2-D depthwise/separable convolutions in one model'

    def check_graph(self, node, graph) -> None:
        """hls4ml 1.3.0's nnet_sepconv1d_latency.h and nnet_sepconv2d_latency.h share one
        include guard, so a design with a 1-D and a 2-D depthwise convolution does not
        compile (g++: 'depthwise_conv_2d_latency_cl' was not declared; found by the layer
        catalogue, pinned as ``separable_1d_after_depthwise_2d`` in test_fuzz_regressions.py)."""
        other = next((n.name for n in graph.hls_model.get_layers() if n.class_name == 'DepthwiseConv2D'), None)
        if other is not None:
            raise UnsupportedModelError(
                f'{node_where(node)}: hls4ml 1.3.0 cannot compile a 1-D depthwise convolution beside the 2-D one '
                f"'{other}' (its two depthwise headers share one include guard); use only 1-D or only 2-D "
                'separable/depthwise convolutions in one model'
            )


class QActivation(kinds.QuantizedActivation, HLSLayer):
    handles = ('QActivation',)
    bridged = handles
    limits = 'quantized_bits, quantized_relu with alpha=1'


class Activation(kinds.FloatActivation, HLSLayer):
    handles = ('Activation', 'Softmax')
    limits = "'linear'; softmax at the output is left out (outputs are logits)"


class FloatReLU(kinds.FloatActivation, HLSLayer):
    """A ReLU layer is a float activation: hls4ml gives its result a default type, so it is
    never exact (it was listed as supported, yet every model with one was refused:
    found by the layer-coverage test, fpga_tests/test_layer_coverage.py)."""

    handles = ('ReLU',)
    accepted = False
    limits = 'inexact: only with --default-precision; use QActivation(quantized_relu)'


class DataMovement(kinds.DataMovement, HLSLayer):
    handles = ('InputLayer', 'Flatten', 'Reshape', 'Dropout')
    # Clone: the copy hls4ml inserts where an io_stream value feeds several layers.
    hls4ml_classes = ('Reshape', 'Transpose', 'Clone')

    def check_graph(self, node, graph) -> None:
        check_lossless(node, graph)


class UpSampling(kinds.DataMovement, HLSLayer):
    handles = ('UpSampling1D', 'UpSampling2D')
    hls4ml_classes = ('Resize',)
    bridged = handles  # hls4ml 1.3.0's Keras-3 converter has no handler for them

    def check_graph(self, node, graph) -> None:
        check_lossless(node, graph)


class Padding(kinds.DataMovement, HLSLayer):
    handles = ('ZeroPadding1D', 'ZeroPadding2D')
    hls4ml_classes = ('ZeroPadding1D', 'ZeroPadding2D')
    bridged = handles  # hls4ml 1.3.0's Keras-3 converter has no handler for them

    def check_graph(self, node, graph) -> None:
        check_lossless(node, graph)
        # hls4ml pads an io_stream 'same' convolution with a ZeroPadding layer of its own
        # (zp1d_<conv> / zp2d_<conv>): it must feed that convolution and nothing else.
        if not node.name.startswith(('zp1d_', 'zp2d_')):
            return
        conv = node.name[len('zp1d_') :]
        users = [user.name for user in node.get_output_nodes()]
        if users != [conv]:
            raise UnsupportedModelError(
                f"layer '{conv}': hls4ml inserted its io_stream padding '{node.name}' in front of "
                f'{", ".join(users) or "nothing"} instead, so the design would not be bit-exact; '
                "use io_parallel, or padding='valid' after an explicit ZeroPadding layer"
            )


class MaxPooling(kinds.DataMovement, HLSLayer):
    handles = ('MaxPooling1D', 'MaxPooling2D', 'GlobalMaxPooling1D', 'GlobalMaxPooling2D')
    hls4ml_classes = ('Pooling1D', 'Pooling2D', 'GlobalPooling1D', 'GlobalPooling2D')

    def check_graph(self, node, graph) -> None:
        if str(node.get_attr('pool_op')).lower() != 'max':
            return  # average pooling is refused when planning
        check_lossless(node, graph, {'accumulator': node.types['accum_t'].precision})


class AveragePooling(kinds.Average, HLSLayer):
    handles = ('AveragePooling1D', 'AveragePooling2D', 'GlobalAveragePooling1D', 'GlobalAveragePooling2D')
    accepted = False
    limits = 'refused: hls4ml 1.3.0 rounds the average to the input type'

    def plan(self, layer, ctx) -> None:
        # hls4ml 1.3.0 keeps an average in the input's type (it rounds away the bits the
        # division adds), so its average pooling differs from Keras (found by fuzzing).
        raise UnsupportedModelError(
            f'{kinds.where(layer)} is not bit-exact in hls4ml 1.3.0 (it rounds the average to the input type); '
            'use MaxPooling, or a strided QConv with a quantizer'
        )


class Add(kinds.Sum, HLSLayer):
    handles = ('Add',)
    hls4ml_classes = ('Merge',)

    def check_graph(self, node, graph) -> None:
        if str(node.get_attr('op')).lower() != 'add':
            return
        result = node.get_output_variable().type.precision
        inputs = graph.input_types(node)
        if not all(_holds(result, source, extra_integer=1) for source in inputs):
            raise UnsupportedModelError(
                f'{node_where(node)}: hls4ml gave the sum the type {result}, which cannot hold the sum of '
                f'{", ".join(map(str, inputs))}, so the design would not be bit-exact; '
                'quantize the addends to fewer bits'
            )


class Concatenate(kinds.Join, HLSLayer):
    handles = ('Concatenate',)
    hls4ml_classes = ('Concatenate',)

    def check_graph(self, node, graph) -> None:
        check_lossless(node, graph)


class BatchNorm(kinds.BatchNorm, HLSLayer):
    """Unfolded batch normalization: hls4ml converts it, inexactly (only with a default precision)."""

    handles = ('BatchNormalization', 'QBatchNormalization')
    accepted = False
    splits_activation = False
    # hls4ml 1.3.0's Keras-3 converter has no BatchNormalization handler: it tries its da4ml
    # fallback, which fails ("No plugin found for model type"); hls4ml's Keras-2 parser works.
    bridged = handles
    limits = 'inexact: only with --default-precision; fold it, or use the fused layers'


class Recurrent(HLSLayer):
    """QKeras recurrent layers: refused by lpsubnet's routes and by exact_config (hls4ml
    computes the state in its own types and tanh/sigmoid from lookup tables, so a design
    matches QKeras only within a tolerance). For an hls4ml script (``register()``), QLSTM
    and QGRU are converted by hls4ml's own parsers (within hls4ml's test tolerance);
    QSimpleRNN is refused there too."""

    handles = ('QSimpleRNN', 'QLSTM', 'QGRU')
    bridged = handles
    accepted = False
    splits_activation = False  # the cell's activations are internal to it
    limits = "refused: not bit-exact in hls4ml (QLSTM, QGRU convert in hls4ml's own flow, with a tolerance)"

    def plan(self, layer, ctx) -> None:
        raise UnsupportedModelError(
            f'{kinds.where(layer)}: hls4ml computes a recurrent state in its own types, with tanh/sigmoid from '
            'lookup tables, so the design agrees with QKeras only within a tolerance, never bit for bit; for QLSTM '
            "and QGRU use hls4ml's own config_from_keras_model after hls_backend.register() and check against a "
            'tolerance'
        )

    def hls4ml_layers(self, layer, in_tensors, out_tensors) -> tuple[dict, ...]:
        if layer.__class__.__name__ == 'QSimpleRNN':
            # Measured on hls4ml's own test_qkeras.py::test_qsimplernn case (which hls4ml runs
            # on Quartus only): its Vivado/Vitis SimpleRNN differs from QKeras by up to 1.4.
            raise UnsupportedModelError(
                f"{kinds.where(layer)}: hls4ml 1.3.0's Vivado/Vitis SimpleRNN does not compute what QKeras "
                "computes (off by more than 0.8 on hls4ml's own test case); use QLSTM or QGRU"
            )
        return super().hls4ml_layers(layer, in_tensors, out_tensors)
