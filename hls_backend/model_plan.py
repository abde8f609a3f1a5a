"""Read a QKeras model once and decide how it becomes an exact HLS design.

The plan says, before anything is written:
- which fixed-point type each weight, bias and quantized activation gets,
- where the input's type comes from (a model-level input quantizer, or a type the
  user declared) so that test inputs can be put on that grid,
- whether a final softmax is left out (hls4ml's table softmax is not exact; the
  logits are),
and refuses, naming the layer, anything that would make C simulation differ from
the model: unquantized weights or hidden activations, batch normalization that was
not folded, quantizers without a fixed-point form, layers the back end does not map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UnsupportedModelError
from .fixed_point import FixedType, parse_fixed_type, quantizer_config, quantizer_type
from .qkeras_bridge import ACTIVATION_SUFFIX

# Layers that compute with weights, and the quantizer attributes that must be set.
WEIGHT_QUANTIZERS = {
    'QDense': ('kernel', 'bias'),
    'QConv1D': ('kernel', 'bias'),
    'QConv2D': ('kernel', 'bias'),
    'QDepthwiseConv2D': ('depthwise', 'bias'),
    'QSeparableConv1D': ('depthwise', 'pointwise', 'bias'),
    'QSeparableConv2D': ('depthwise', 'pointwise', 'bias'),
}
# hls4ml's Precision key for each QKeras quantizer role.
PRECISION_KEY = {'kernel': 'weight', 'bias': 'bias', 'depthwise': 'depthwise', 'pointwise': 'pointwise'}

# Layers that only move, select, add or join values: exact in hls4ml with inferred types.
DATA_LAYERS = {
    'InputLayer',
    'Flatten',
    'Reshape',
    'MaxPooling1D',
    'MaxPooling2D',
    'AveragePooling1D',
    'AveragePooling2D',
    'GlobalAveragePooling1D',
    'GlobalAveragePooling2D',
    'GlobalMaxPooling1D',
    'GlobalMaxPooling2D',
    'Add',
    'Concatenate',
    'ZeroPadding1D',
    'ZeroPadding2D',
    'UpSampling1D',
    'UpSampling2D',
    'Dropout',
}
ACTIVATION_LAYERS = {'Activation', 'ReLU', 'Softmax'}
BATCHNORM_LAYERS = {'BatchNormalization', 'QBatchNormalization'}
FLOAT_WEIGHT_LAYERS = {'Dense', 'Conv1D', 'Conv2D', 'DepthwiseConv2D', 'SeparableConv1D', 'SeparableConv2D'}

SUPPORTED_LAYERS = sorted(set(WEIGHT_QUANTIZERS) | DATA_LAYERS | ACTIVATION_LAYERS | {'QActivation'})

# hls4ml 1.3.0 keeps an average in the input's type (it rounds away the bits the
# division adds), so its average pooling differs from Keras (found by fuzzing).
AVERAGE_POOLING = {'AveragePooling1D', 'AveragePooling2D', 'GlobalAveragePooling1D', 'GlobalAveragePooling2D'}
# The QKeras model, the reference every design is compared with, computes in float32:
# a value is exact only if it needs at most 24 significant bits.
FLOAT32_BITS = 24


@dataclass
class ModelPlan:
    input_type: FixedType
    input_source: str  # human-readable: where the input type comes from
    input_quantizer_layer: str | None  # QActivation right after the input, if any
    softmax_layer: str | None  # layer whose softmax is left out of the hardware
    softmax_is_layer: bool  # True: a separate Activation/Softmax layer; False: a Q-layer's activation=
    precisions: dict[str, dict[str, str]] = field(default_factory=dict)  # hls4ml layer name -> Precision
    exact: bool = True  # False when the user allowed a default precision for something inexact
    notes: list[str] = field(default_factory=list)


def _activation_name(layer) -> str | None:
    """'linear', a plain activation name, or None when it is a QKeras quantizer."""
    activation = layer.get_config().get('activation')
    if activation is None:
        return 'linear'
    if isinstance(activation, str):
        return activation
    if isinstance(activation, dict) and activation.get('module', '').startswith('keras'):
        return activation.get('config', activation.get('class_name'))
    return None


def _inbound(model, layer) -> list:
    """The layers feeding ``layer`` in ``model``."""
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation for t in node.arguments.keras_tensors]


def plan_model(
    model, input_precision: str | None = None, default_precision: str | None = None, route: str = 'hls'
) -> ModelPlan:
    """Check ``model`` and decide every type; raise UnsupportedModelError otherwise.

    ``input_precision``: the declared input type (e.g. ``ap_fixed<16,6>``), used when
    the model has no input quantizer; when it has one, giving a different type is an
    error. ``default_precision``: if given, layers that cannot be exact (float
    activations, unfolded batch norm) get this type instead of being refused, and the
    plan is marked inexact. ``route``: 'hls' (hls4ml) or 'rtl' (da4ml), for the rules
    that differ: average pooling is exact on the RTL route (power-of-two windows),
    not in hls4ml.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(
            f'model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; one of each is supported'
        )
    output_layer = model.outputs[0]._keras_history.operation
    precisions: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    exact = True
    softmax_layer, softmax_is_layer = None, False

    def inexact(message: str):
        nonlocal exact
        if default_precision is None:
            raise UnsupportedModelError(
                message + '; or pass default_precision (CLI: --default-precision) to accept an inexact design'
            )
        exact = False
        notes.append(f'{message}: given {default_precision}, C simulation will not be bit-exact')

    for layer in model.layers:
        cls = layer.__class__.__name__
        where = f"layer '{layer.name}' ({cls})"
        is_output = layer is output_layer
        if cls in WEIGHT_QUANTIZERS:
            config = layer.get_config()
            layer_precision = {}
            for role in WEIGHT_QUANTIZERS[cls]:
                if role == 'bias' and not config.get('use_bias', True):
                    continue
                quantizer = config.get(f'{role}_quantizer')
                if quantizer is None:
                    raise UnsupportedModelError(
                        f'{where} has no {role}_quantizer: its {role} would be float; give it quantized_bits(bits, integer, alpha=1)'
                    )
                fixed = _checked_type(quantizer, f'{where} {role}_quantizer')
                # Weights are constants already on the grid: plain truncate/wrap types.
                layer_precision[PRECISION_KEY[role]] = FixedType(
                    fixed.width, fixed.integer, fixed.signed, 'TRN', 'WRAP'
                ).hls4ml()
            precisions[layer.name] = layer_precision
            act = _activation_name(layer)
            if cls == 'QDepthwiseConv2D' and int(config.get('depth_multiplier', 1)) != 1:
                raise UnsupportedModelError(
                    f'{where} has depth_multiplier={config["depth_multiplier"]}; hls4ml 1.3.0 supports only '
                    'depth_multiplier=1 (its C++ asserts); follow a depthwise layer with a pointwise QConv2D instead'
                )
            if act is None:
                fixed = _checked_type(config['activation'], f'{where} activation')
                precisions[f'{layer.name}{ACTIVATION_SUFFIX}'] = {'result': fixed.hls4ml()}
            elif act == 'softmax' and is_output:
                softmax_layer, softmax_is_layer = layer.name, False
            elif act != 'linear':
                inexact(
                    f"{where} has the float activation '{act}'; use a QKeras quantizer such as quantized_relu(bits, integer)"
                )
        elif cls == 'QActivation':
            fixed = _checked_type(layer.get_config()['activation'], f'{where} activation')
            precisions[layer.name] = {'result': fixed.hls4ml()}
        elif cls in ACTIVATION_LAYERS:
            act = 'softmax' if cls == 'Softmax' else ('relu' if cls == 'ReLU' else _activation_name(layer))
            if act == 'softmax' and is_output:
                softmax_layer, softmax_is_layer = layer.name, True
            elif act != 'linear':
                inexact(
                    f"{where} applies the float activation '{act}'; replace it by QActivation(quantized_relu(bits, integer))"
                )
        elif cls in BATCHNORM_LAYERS:
            inexact(
                f'{where} is not bit-exact in hls4ml; fold batch normalization into the preceding layer first (pruner.surgery does)'
            )
        elif cls in FLOAT_WEIGHT_LAYERS:
            raise UnsupportedModelError(
                f'{where} has float weights; use Q{cls} with kernel_quantizer and bias_quantizer (quantized_bits, alpha=1)'
            )
        elif cls in AVERAGE_POOLING and route == 'rtl':
            pass  # the da4ml replay refuses windows that are not a power of two
        elif cls in AVERAGE_POOLING:
            raise UnsupportedModelError(
                f'{where} is not bit-exact in hls4ml 1.3.0 (it rounds the average to the input type); '
                'use MaxPooling, or a strided QConv with a quantizer'
            )
        elif cls not in DATA_LAYERS:
            raise UnsupportedModelError(
                f'{where} is not supported by the HLS back end; supported layers: {", ".join(SUPPORTED_LAYERS)}'
            )

    # Where the input type comes from.
    first_users = [
        lay
        for lay in model.layers
        if lay.__class__.__name__ != 'InputLayer'
        and any(src.__class__.__name__ == 'InputLayer' for src in _inbound(model, lay))
    ]
    input_quantizer = None
    if len(first_users) == 1 and first_users[0].__class__.__name__ == 'QActivation':
        candidate = first_users[0]
        if quantizer_config(candidate.get_config()['activation'])[0] == 'quantized_bits':
            input_quantizer = candidate
    if input_quantizer is not None:
        input_type = parse_fixed_type(precisions[input_quantizer.name]['result'])
        source = f"the model's input quantizer '{input_quantizer.name}'"
        if input_precision is not None and parse_fixed_type(input_precision) != input_type:
            raise UnsupportedModelError(
                f"input precision {input_precision} differs from the model's input quantizer '{input_quantizer.name}' "
                f'({input_type.ap()}); leave input precision unset'
            )
    else:
        declared = input_precision or 'ap_fixed<16,6,AP_RND_CONV,AP_SAT>'
        try:
            input_type = parse_fixed_type(declared)
        except ValueError as exc:
            raise UnsupportedModelError(str(exc)) from None
        source = f'declared input type {input_type.ap()}' + (
            '' if input_precision else ' (default; set input_precision to change it)'
        )
        notes.append(f'test inputs are rounded to {input_type.ap()} before both the model and the design see them')
    if default_precision is not None:
        try:
            parse_fixed_type(default_precision)
        except ValueError as exc:
            raise UnsupportedModelError(f'default precision: {exc}') from None
    input_name = model.layers[0].name if model.layers[0].__class__.__name__ == 'InputLayer' else 'input'
    precisions[input_name] = {'result': input_type.hls4ml()}
    if softmax_layer:
        notes.append(f"the final softmax of '{softmax_layer}' is left out of the hardware; outputs are logits")
    return ModelPlan(
        input_type=input_type,
        input_source=source,
        input_quantizer_layer=input_quantizer.name if input_quantizer is not None else None,
        softmax_layer=softmax_layer,
        softmax_is_layer=softmax_is_layer,
        precisions=precisions,
        exact=exact,
        notes=notes,
    )


def _checked_type(quantizer, where: str) -> FixedType:
    """quantizer_type, refusing widths the float32 QKeras reference cannot hold exactly."""
    fixed = quantizer_type(quantizer, where)
    if fixed.width > FLOAT32_BITS:
        raise UnsupportedModelError(
            f'{where}: {fixed.width} bits is more than {FLOAT32_BITS}: the QKeras model computes in float32, which holds '
            f'at most {FLOAT32_BITS} significant bits, so no design can match it; use at most {FLOAT32_BITS} bits'
        )
    return fixed


def _weight_values(layer, role: str):
    import numpy as np

    weights = {w.path.split('/')[-1]: np.asarray(w.numpy(), dtype=np.float64) for w in layer.weights}
    name = {'kernel': 'kernel', 'bias': 'bias', 'depthwise': 'depthwise_kernel', 'pointwise': 'pointwise_kernel'}[role]
    value = weights.get(name)
    quantizer = layer.get_config().get(f'{role}_quantizer')
    if value is None or quantizer is None:
        return None
    return quantizer_type(quantizer, role).quantize(value)


def check_float32_reference(model, plan: ModelPlan) -> None:
    """Refuse a model whose float32 QKeras arithmetic is not exact (write_project and
    write_rtl call it after planning; found by fuzzing: wide weights times wide inputs).

    Every value is tracked as (fractional bits, bound on |value|). A sum of products
    is exact in float32 when every partial sum is a multiple of its LSB below
    2^24 LSBs; the bound uses the model's quantized weights (sum of |w| per output
    channel times the largest input), so it is tight for real models. Values past a
    quantizer are on that quantizer's grid. Layers not tracked end the check there.
    """
    import numpy as np

    input_type = plan.input_type
    if input_type.width > FLOAT32_BITS:
        raise UnsupportedModelError(
            f'input type {input_type.ap()} is wider than {FLOAT32_BITS} bits: the QKeras reference computes in float32 '
            'and cannot hold its values exactly; use a narrower input type'
        )
    limit = 2.0**FLOAT32_BITS
    ranges: dict[str, tuple[int, float]] = {}

    def of_type(fixed: FixedType) -> tuple[int, float]:
        return fixed.fractional, max(abs(fixed.min_value), abs(fixed.max_value))

    def depthwise_sums(kernel):
        """Sum of |w| per output channel of a depthwise kernel (spatial axes, then in x mult)."""
        return np.abs(kernel).sum(axis=tuple(range(kernel.ndim - 2))).reshape(-1)

    def check(where: str, frac: int, bound: float) -> None:
        if bound * 2.0**frac >= limit:
            bits = int(np.ceil(np.log2(bound * 2.0**frac + 1)))
            raise UnsupportedModelError(
                f'{where}: its exact sum needs {bits} significant bits ({frac} fractional), more than the '
                f'{FLOAT32_BITS} of float32 in which the QKeras model computes, so no design can match it; '
                'use fewer weight or input bits, or put a quantizer before this layer'
            )

    for layer in model.layers:
        cls = layer.__class__.__name__
        where = f"layer '{layer.name}' ({cls})"
        if cls == 'InputLayer':
            ranges[layer.name] = of_type(input_type)
            continue
        sources = [ranges.get(src.name) for src in _inbound(model, layer)]
        if any(s is None for s in sources) or not sources:
            continue
        config = layer.get_config()
        activation_type = None
        if cls == 'QActivation' or (cls in WEIGHT_QUANTIZERS and _activation_name(layer) is None):
            activation_type = quantizer_type(config['activation'], where)
        if cls in WEIGHT_QUANTIZERS:  # every weighted layer: its sums are bounded here
            frac, bound = sources[0]
            if cls in ('QSeparableConv1D', 'QSeparableConv2D'):
                # Two sums in float32: the depthwise one per input channel, then the pointwise
                # one over the depthwise outputs (no quantizer in between).
                depthwise, pointwise = _weight_values(layer, 'depthwise'), _weight_values(layer, 'pointwise')
                if depthwise is None or pointwise is None:
                    continue
                frac += quantizer_type(config['depthwise_quantizer'], where).fractional
                bound = depthwise_sums(depthwise) * bound
                check(f'{where} (depthwise part)', frac, float(np.max(bound)))
                frac += quantizer_type(config['pointwise_quantizer'], where).fractional
                bound = (np.abs(pointwise).reshape(-1, pointwise.shape[-1]) * bound[:, None]).sum(axis=0)
            else:
                role = 'depthwise' if cls == 'QDepthwiseConv2D' else 'kernel'
                kernel = _weight_values(layer, role)
                if kernel is None:
                    continue
                frac += quantizer_type(config[f'{role}_quantizer'], where).fractional
                if cls == 'QDepthwiseConv2D':
                    bound = depthwise_sums(kernel) * bound
                else:
                    bound = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0) * bound
            if config.get('use_bias', True):
                bias = _weight_values(layer, 'bias')
                if bias is not None:
                    frac = max(frac, quantizer_type(config['bias_quantizer'], where).fractional)
                    bound = bound + np.abs(bias).reshape(-1)
            bound = float(np.max(bound)) if np.size(bound) else 0.0
            check(where, frac, bound)
            ranges[layer.name] = of_type(activation_type) if activation_type is not None else (frac, bound)
        elif activation_type is not None:
            ranges[layer.name] = of_type(activation_type)
        elif cls == 'Add':
            frac = max(s[0] for s in sources)
            bound = float(sum(s[1] for s in sources))
            check(where, frac, bound)
            ranges[layer.name] = (frac, bound)
        elif cls == 'Concatenate':
            ranges[layer.name] = (max(s[0] for s in sources), max(s[1] for s in sources))
        elif cls in AVERAGE_POOLING:  # (RTL route only) a sum of n values, then / n
            frac, bound = sources[0]
            if cls.startswith('Global'):
                n = int(np.prod(layer.input.shape[1:-1]))
            else:
                n = int(np.prod(config['pool_size']))
            extra = int(np.ceil(np.log2(max(n, 1))))
            check(where, frac + extra, bound * 2.0**extra)
            ranges[layer.name] = (frac + extra, bound)
        elif cls in DATA_LAYERS or cls in ACTIVATION_LAYERS:
            ranges[layer.name] = sources[0]
