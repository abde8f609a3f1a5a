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


def plan_model(model, input_precision: str | None = None, default_precision: str | None = None) -> ModelPlan:
    """Check ``model`` and decide every type; raise UnsupportedModelError otherwise.

    ``input_precision``: the declared input type (e.g. ``ap_fixed<16,6>``), used when
    the model has no input quantizer; when it has one, giving a different type is an
    error. ``default_precision``: if given, layers that cannot be exact (float
    activations, unfolded batch norm) get this type instead of being refused, and the
    plan is marked inexact.
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
                fixed = quantizer_type(quantizer, f'{where} {role}_quantizer')
                # Weights are constants already on the grid: plain truncate/wrap types.
                layer_precision[PRECISION_KEY[role]] = FixedType(
                    fixed.width, fixed.integer, fixed.signed, 'TRN', 'WRAP'
                ).hls4ml()
            precisions[layer.name] = layer_precision
            act = _activation_name(layer)
            if act is None:
                fixed = quantizer_type(config['activation'], f'{where} activation')
                precisions[f'{layer.name}{ACTIVATION_SUFFIX}'] = {'result': fixed.hls4ml()}
            elif act == 'softmax' and is_output:
                softmax_layer, softmax_is_layer = layer.name, False
            elif act != 'linear':
                inexact(
                    f"{where} has the float activation '{act}'; use a QKeras quantizer such as quantized_relu(bits, integer)"
                )
        elif cls == 'QActivation':
            fixed = quantizer_type(layer.get_config()['activation'], f'{where} activation')
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
