"""Keras-3 layer handlers for qkeras-v3 layers, registered into hls4ml 1.3.0.

hls4ml 1.3.0 picks its Keras-3 converter when Keras >= 3 is installed, and that
converter knows core Keras layers and HGQ2 only. A QKeras layer falls back to the
Keras-2 handlers, which choke on quantizer activations (they expect a plain
function) and on the fused batch-norm layers. This module registers one Keras-3
handler per QKeras layer class. Each handler

1. runs hls4ml's own Keras-2 QKeras parser on the layer's config and weights (so
   quantizer handling, padding arithmetic etc. stay hls4ml's), and
2. splits the layer's ``activation=`` into a layer of its own: a quantizer becomes
   hls4ml's quantized activation (named ``<layer>_activation``, the name used by
   hls4ml's own Keras-3 QKeras port), ``softmax`` becomes hls4ml's Softmax layer,
   any other plain activation a generic Activation layer.

:mod:`hls_backend.hls.registration` puts these handlers (and lpsubnet's hls4ml passes)
into hls4ml before every conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.fixed_point import quantizer_type
from ..core.layer_kinds import ACTIVATION_SUFFIX

# The classes handled here are the ``bridged`` ones of the HLS route's layer kinds
# (hls_backend.hls.layers); each is parsed by hls4ml's Keras-2 handler of the same name:
# the QKeras layers, and the Keras layers hls4ml 1.3.0's Keras-3 converter has no handler
# for (it tries its da4ml fallback on them, which fails: "No plugin found for model type").


class _SingleLayerReader:
    """The data-reader interface hls4ml's Keras-2 parsers expect, for one layer."""

    def __init__(self, layer):
        self.layer = layer

    def get_weights_data(self, layer_name: str, var_name: str):
        if layer_name != self.layer.name:
            raise KeyError(f'handler for {self.layer.name} asked for weights of {layer_name}')
        for weight in self.layer.weights:
            # Keras-3 variable names are bare ('kernel', 'bias', 'depthwise_kernel').
            if weight.name == var_name:
                return np.array(weight)
        return None


def _attach_linear_quantizer(act: dict[str, Any], quantizer_config: dict, where: str) -> None:
    """Give a linear quantizer layer an hls4ml ``quantizer`` attribute.

    hls4ml's MergeLinearActivation folds a linear activation into its parent and
    copies ``node.get_attr('quantizer').hls_type`` to the parent's result; without
    the attribute the quantization step is silently dropped (seen with a trailing
    ``QActivation(quantized_bits)`` after a QDense).
    """
    if act.get('class_name') != 'Activation' or act.get('activation') != 'linear':
        return
    from hls4ml.model.quantizers import Quantizer
    from hls4ml.model.types import FixedPrecisionType

    fixed = quantizer_type(quantizer_config, where)
    hls_type = FixedPrecisionType(
        width=fixed.width,
        integer=fixed.integer,
        signed=fixed.signed,
        rounding_mode=fixed.rounding,
        saturation_mode=fixed.saturation,
    )
    act['quantizer'] = Quantizer(fixed.width, hls_type)


def _exact_weight_types(parsed: dict[str, Any], layer_name: str) -> None:
    """Give every quantized_bits weight quantizer of a parsed layer the ap type of
    :func:`quantizer_type` (the rule both routes share).

    hls4ml takes a weight's type from its quantizer (``QKerasQuantizer._get_type``),
    overriding the configured precision, and that rule is wrong at the edges: integer
    bits equal to the width become ``int<bits>`` (step 1, where QKeras's step is 2:
    ``quantized_bits(3, 3)`` holds -8..6), integer bits above it and
    ``keep_negative=False`` get a signed type one LSB too coarse. Found on a 3-bit
    letter MLP that the pruner's calibration produced (C simulation 89/1000 exact).
    """
    from hls4ml.model.quantizers import QKerasQuantizer
    from hls4ml.model.types import FixedPrecisionType

    for key, quantizer in parsed.items():
        if not (key.endswith('_quantizer') and isinstance(quantizer, QKerasQuantizer)):
            continue
        if quantizer.qkeras_config.get('class_name') != 'quantized_bits':
            continue
        fixed = quantizer_type(quantizer.qkeras_config, f"layer '{layer_name}' {key.removesuffix('_quantizer')}")
        # Weights are constants already on the grid: plain truncate/wrap types (as the plan's).
        quantizer.hls_type = FixedPrecisionType(
            width=fixed.width, integer=fixed.integer, signed=fixed.signed, rounding_mode='TRN', saturation_mode='WRAP'
        )


def _activation_split(layer, out_name: str, input_name: str) -> dict[str, Any] | None:
    """The extra hls4ml layer for ``layer.activation``, or None when it is linear."""
    import keras
    from hls4ml.converters.keras.qkeras import get_activation_quantizer

    config = layer.get_config()
    activation = config.get('activation')
    if activation is not None and not isinstance(activation, str | dict):
        # A model built in memory holds the quantizer object; a loaded one its config.
        activation = keras.saving.serialize_keras_object(activation)
    if activation in (None, 'linear') or getattr(layer, 'activation', None) is keras.activations.linear:
        return None
    name = f'{layer.name}{ACTIVATION_SUFFIX}'
    common = {
        'name': name,
        'input_keras_tensor_names': [input_name],
        'output_keras_tensor_names': [out_name],
    }
    if isinstance(activation, dict):
        # A QKeras quantizer used as activation: hls4ml's QActivation parser does the
        # mapping to Activation / LeakyReLU / HardActivation with a quantizer attached.
        act = get_activation_quantizer(
            {'class_name': 'QActivation', 'config': {'name': name, 'activation': activation}}, None
        )
        act.pop('inputs', None)
        act.update(common)
        _attach_linear_quantizer(act, activation, f"layer '{layer.name}' activation")
        return act
    if activation == 'softmax':
        return {**common, 'class_name': 'Softmax', 'activation': 'softmax', 'axis': -1}
    return {**common, 'class_name': 'Activation', 'activation': activation}


def parse_qkeras_layer(
    layer,
    in_tensors: Sequence,
    out_tensors: Sequence,
    class_name: str | None = None,
    reader=None,
    config: dict | None = None,
    split_activation: bool = True,
) -> tuple[dict[str, Any], ...]:
    """hls4ml's layer dictionaries for a QKeras layer: hls4ml's Keras-2 parser of
    ``class_name`` (default: the layer's own class) on ``config`` (default: the layer's)
    reading weights from ``reader`` (default: the layer's variables), then its
    ``activation=`` split off into a layer of its own (unless ``split_activation`` is
    False: a layer whose activation is not applied to its output)."""
    from hls4ml.converters.keras_v2_to_hls import layer_handlers as v2_handlers

    class_name = class_name or layer.__class__.__name__
    keras_dict = {'class_name': class_name, 'config': config or layer.get_config()}
    input_names = [t.name for t in in_tensors]
    # hls4ml's Keras-2 parsers expect shapes with the batch dimension.
    input_shapes = [list(t.shape) for t in in_tensors]
    parsed, _ = v2_handlers[class_name](keras_dict, input_names, input_shapes, reader or _SingleLayerReader(layer))
    parsed.pop('inputs', None)
    _exact_weight_types(parsed, layer.name)
    out_name = out_tensors[0].name
    parsed['name'] = layer.name
    parsed['input_keras_tensor_names'] = input_names
    parsed['output_keras_tensor_names'] = [out_name]
    if class_name == 'QActivation':
        _attach_linear_quantizer(parsed, keras_dict['config']['activation'], f"layer '{layer.name}'")
        return (parsed,)
    if not split_activation or 'activation' not in keras_dict['config']:
        return (parsed,)
    act = _activation_split(layer, out_name, input_name=f'{out_name}{ACTIVATION_SUFFIX}')
    if act is None:
        parsed['activation'] = 'linear'
        return (parsed,)
    parsed['activation'] = 'linear'
    parsed['output_keras_tensor_names'] = [f'{out_name}{ACTIVATION_SUFFIX}']
    return parsed, act
