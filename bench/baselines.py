"""Baselines the pruner does not provide as options, built on its public pieces:

- ``reversed_layer_order``: the method with layers visited output -> input (the
  schedule of ``pruner.make_schedule`` with its group list reversed);
- ``unstructured_magnitude``: per-layer weight-magnitude pruning at a parameter
  sparsity, channels kept (the usual hls4ml route), zeros held through fine-tuning
  and quantization-aware training;
- ``nonzero_footprint``: memory footprint and BOPs counting only nonzero weights.
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

KERNEL_CLASSES = ('Dense', 'Conv2D', 'QDense', 'QConv2D')


@contextlib.contextmanager
def reversed_layer_order():
    """Inside this context ``pruner.compress`` builds its layerwise schedule with the
    prunable groups in output-to-input order. (compress has no schedule argument, so
    the module's ``make_schedule`` is wrapped; the manifest's schedule shows the order.)"""
    module = importlib.import_module('pruner.phases')  # where compress builds its schedule
    original = module.make_schedule

    def make_reversed(kind, groups, *args, **kwargs):
        return original(kind, list(reversed(list(groups))), *args, **kwargs)

    module.make_schedule = make_reversed
    try:
        yield
    finally:
        module.make_schedule = original


def kernel_layers(model):
    return [lay for lay in model.layers if lay.__class__.__name__ in KERNEL_CLASSES]


def weight_count(model) -> int:
    """Kernel + bias values of the conv / dense layers (BatchNorm excluded)."""
    return int(sum(np.prod(w.shape) for lay in kernel_layers(model) for w in lay.weights if w.trainable))


def magnitude_masks(model, fraction: float) -> dict[str, np.ndarray]:
    """Per layer, zero the ``fraction`` smallest-magnitude kernel weights."""
    masks = {}
    for lay in kernel_layers(model):
        k = np.asarray(lay.kernel.numpy())
        n = int(np.floor(fraction * k.size))
        mask = np.ones(k.size, dtype=np.float32)
        if n > 0:
            mask[np.argsort(np.abs(k).ravel(), kind='stable')[:n]] = 0.0
        masks[lay.name] = mask.reshape(k.shape)
    return masks


def apply_masks(model, masks) -> None:
    for name, mask in masks.items():
        lay = model.get_layer(name)
        lay.kernel.assign(lay.kernel.numpy() * mask)


def zero_masks(model) -> dict[str, np.ndarray]:
    return {lay.name: (np.asarray(lay.kernel.numpy()) != 0).astype(np.float32) for lay in kernel_layers(model)}


def mask_callback(model, masks):
    import keras

    class HoldZeros(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            apply_masks(model, masks)

    return HoldZeros()


def nonzero_footprint(qmodel, float_bits: int = 32) -> dict:
    """Footprint and BOPs of ``qmodel`` counting only its nonzero weights (feature maps
    unchanged): what unstructured pruning saves if zeros cost nothing."""
    from pruner import metrics as m
    from pruner.graph import calls
    from pruner.layers import lookup, weight_name

    base = m.summary(qmodel, float_bits)
    tbits = m.tensor_bits(qmodel, float_bits)
    w_bits = 0
    for lay in qmodel.layers:
        if lay.__class__.__name__ == 'ChannelMask':
            continue
        for w in lay.weights:
            w_bits += int(np.count_nonzero(w.numpy())) * m._weight_bits(lay, weight_name(w), float_bits)
    total_bops = 0
    for call in calls(qmodel):
        if not m._weighted(call.layer):
            continue
        k = np.asarray(call.layer.kernel.numpy())
        density = np.count_nonzero(k) / k.size
        b_w = m._weight_bits(call.layer, 'kernel', float_bits)
        b_a = tbits.get(id(call.inputs[0]), float_bits)
        total_bops += lookup(call.layer).macs(call) * density * b_w * b_a
    nnz = int(sum(np.count_nonzero(w.numpy()) for lay in qmodel.layers for w in lay.weights))
    return {
        **base,
        'parameters_nonzero': nnz,
        'bops': int(total_bops),
        'footprint_weight_bits': int(w_bits),
        'footprint_bits': int(w_bits + base['footprint_activation_bits']),
    }
