"""Model surgery: fold BatchNorm, cut masked channels out, build the QKeras model.

1. ``fold_batchnorm``: y = gamma (W x + b - mean) / sqrt(var + eps) + beta becomes
   W' = W * gamma / sqrt(var + eps) (per output channel), b' = (b - mean) * gamma /
   sqrt(var + eps) + beta, for every BatchNormalization whose only input is a
   producer with a linear activation read by nothing else.
2. ``reduce``: a masked model -> a physically smaller model: each producer loses its
   masked output channels, each consumer the matching input positions (through Add,
   Concatenate offsets, Flatten->Dense, DepthwiseConv2D pass-through), per-channel
   layers their masked parameters. Masks disappear. The outputs equal the masked
   model's (float32 rounding aside).
3. ``to_qkeras``: every Dense/Conv becomes its QKeras Q-layer with kernel and bias
   quantizers, every ReLU a quantized_relu (as ``activation=`` of the Q-layer or a
   QActivation), and a QActivation(quantized_bits) input quantizer follows the input.
   A final softmax stays a float softmax. QBatchNormalization is never used.
"""

from __future__ import annotations

import keras
import numpy as np

from .graph import Call, calls, clone_layer, rebuild
from .layers import BATCHNORM_KEYS, SurgeryError, kernel_of, kind_for, named_weights, set_named_weights
from .masking import MaskedModel
from .quantize import QuantPlan

__all__ = ['INPUT_QUANTIZER', 'SurgeryError', 'fold_batchnorm', 'reduce', 'to_qkeras', 'unfuse_batchnorm']

# ---------------------------------------------------------------------------
# 1. BatchNorm folding
# ---------------------------------------------------------------------------


def _foldable_parent(call: Call, producer_of) -> Call | None:
    if call.kind != 'BatchNormalization' or len(call.inputs) != 1:
        return None
    parent = producer_of[id(call.inputs[0])]
    if not kind_for(parent.layer).foldable:
        return None
    if len(parent.consumers) != 1 or parent.layer.get_config().get('activation', 'linear') not in ('linear', None):
        return None
    return parent


def fold_batchnorm(model, fuse: bool = False) -> keras.Model:
    """A copy of ``model`` with BatchNormalization folded into preceding conv/dense layers.

    BatchNorm layers that cannot be folded (no linear producer right before them) are
    kept as they are. ``fuse=True``: where the layer kind has a fused QKeras form
    (Dense -> QDenseBatchnorm, Conv2D -> QConv2DBatchnorm), the pair becomes that layer,
    still without quantizers, with the BatchNorm's variables inside it: it keeps
    normalizing with batch statistics while it trains (``to_qkeras`` then gives it its
    quantizers); other pairs are folded.
    """
    order = calls(model)
    producer_of = {id(t): c for c in order for t in c.outputs}
    fold_into = {}  # producer name -> bn call
    for call in order:
        parent = _foldable_parent(call, producer_of)
        if parent is not None:
            fold_into[parent.name] = call
    folded = {bn.name for bn in fold_into.values()}

    def transform(call, args, kwargs):
        if call.name in folded:
            return args[0]  # folded into its producer
        if call.name not in fold_into:
            layer = clone_layer(call.layer)
            out = layer(*args, **kwargs)
            layer.set_weights(call.layer.get_weights())
            return out
        bn = fold_into[call.name].layer
        kind = kind_for(call.layer)
        if fuse and kind.fused_class:
            return _fused(call, bn, kind.fused_class, args, kwargs)
        w = named_weights(call.layer)
        b = named_weights(bn)
        eps = bn.get_config()['epsilon']
        channels = call.outputs[0].shape[-1]
        gamma = b.get('gamma', np.ones(channels, np.float32))
        beta = b.get('beta', np.zeros(channels, np.float32))
        scale = gamma / np.sqrt(b['moving_variance'] + eps)
        kernel_name = kernel_of(w)
        kernel = kind.scale_outputs(call.layer, {kernel_name: w[kernel_name].astype(np.float64)}, scale)
        bias = w.get('bias', np.zeros(channels, np.float32))
        bias = (bias - b['moving_mean']) * scale + beta
        layer = clone_layer(call.layer, use_bias=True)
        out = layer(*args, **kwargs)
        set_named_weights(layer, {kernel_name: kernel[kernel_name].astype(np.float32), 'bias': bias.astype(np.float32)})
        return out

    return rebuild(model, transform, name=model.name)


def _fused(call: Call, bn, fused_class: str, args, kwargs):
    """The fused QKeras layer (no quantizers yet) of a producer and its BatchNorm, applied to ``args``."""
    import qkeras

    config = call.layer.get_config()
    bn_config = bn.get_config()
    # A bias always: the folded bias exists anyway, and its quantizer needs a variable to follow.
    config.update({k: bn_config[k] for k in BATCHNORM_KEYS if k in bn_config}, use_bias=True)
    layer = getattr(qkeras, fused_class).from_config(config)
    out = layer(*args, **kwargs)
    w = named_weights(call.layer)
    w.setdefault('bias', np.zeros(call.outputs[0].shape[-1], np.float32))
    set_named_weights(layer, {**named_weights(bn), **w})
    return out


# ---------------------------------------------------------------------------
# 2. Masked model -> smaller model
# ---------------------------------------------------------------------------


def reduce(masked: MaskedModel, keep: dict[int, np.ndarray] | None = None) -> keras.Model:
    """Cut the masked channels out of ``masked.model``; returns a smaller float model.

    ``keep``: kept channel indices per group (default: the current masks).
    """
    table = masked.table
    keep = masked.kept() if keep is None else {g: np.asarray(k, dtype=np.int64) for g, k in keep.items()}
    for g, kept in keep.items():
        if len(kept) == 0:
            raise SurgeryError(f"group {g} ('{table.groups[g].name}') would keep no channel")

    def transform(call, args, kwargs):
        if call.kind == 'ChannelMask':
            return args[0]
        kind = table.kinds[call.name]
        weights = named_weights(call.layer)
        changes = {}
        if kind.width_key is not None:
            out_keep = table.keep_positions(table.maps[call.name], keep)
            weights = kind.cut_outputs(call.layer, weights, out_keep)
            changes[kind.width_key] = int(len(out_keep))
        if weights:
            weights = kind.cut_inputs(call.layer, weights, table.keep_positions(table.input_maps[call.name][0], keep))
        target = call.layer.get_config().get('target_shape')
        if target is not None:
            # A Reshape the analysis let channels through (it keeps them on the last axis, or
            # flattens): its last axis holds what is kept of them, so its target shrinks too
            # (found by make fuzz, campaign 6, pruned seed 400019: (1, 1, 2) -> (1, 2) after a
            # conv cut to one filter still asked for (1, 2)).
            kept_last = table.keep_positions(table.maps[call.name], keep)
            changes['target_shape'] = (*tuple(target)[:-1], int(len(kept_last)))
        layer = clone_layer(call.layer, **changes)
        out = layer(*args, **kwargs)
        if weights:
            set_named_weights(layer, weights)
        return out

    return rebuild(masked.model, transform, name=f'{masked.source.name}_reduced')


# ---------------------------------------------------------------------------
# 3. QKeras model
# ---------------------------------------------------------------------------

INPUT_QUANTIZER = 'input_quantizer'


def to_qkeras(model, plan: QuantPlan) -> keras.Model:
    """The QKeras version of a float model (BatchNorm folded), weights copied.

    Raises SurgeryError naming a layer with unfolded BatchNorm or an activation other
    than ReLU/linear (a softmax is allowed on the model's output).
    """
    import qkeras

    output_names = {t._keras_history.operation.name for t in model.outputs}

    def transform(call, args, kwargs):
        return kind_for(call.layer).to_qkeras(call, args, kwargs, plan.layers.get(call.name), call.name in output_names)

    def input_quantizer(tensor):
        return qkeras.QActivation(plan.input.quantizer(), name=INPUT_QUANTIZER)(tensor)

    return rebuild(model, transform, name=f'{model.name}_q', input_transform=input_quantizer)


def unfuse_batchnorm(model) -> keras.Model:
    """A copy of a QKeras model whose fused QDenseBatchnorm / QConv2DBatchnorm layers are
    plain QDense / QConv2D layers holding the folded kernel and bias (QKeras's own folding,
    with the moving statistics): the same outputs in inference, bit for bit, for tools that
    read only the plain layers."""

    def transform(call, args, kwargs):
        kind = kind_for(call.layer)
        if hasattr(kind, 'unfused'):
            return kind.unfused(call, args, kwargs)
        layer = clone_layer(call.layer)
        out = layer(*args, **kwargs)
        layer.set_weights(call.layer.get_weights())
        return out

    return rebuild(model, transform, name=model.name)
