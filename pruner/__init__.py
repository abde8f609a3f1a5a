"""pruner: greedy layerwise channel pruning + statistics-based fixed point for Keras 3.

Front end of lpsubnet; knows nothing of hardware and imports nothing of ours.
``compress`` runs the whole method; the building blocks are exported for custom
pipelines: layers (one class per layer kind; ``register_layer`` for your own), groups (which channels are tied), masking (ChannelMask layers and their
statistics), importance (scores per channel), schedule (when layers are ranked and
frozen), callback (drives a schedule during fit), qat (integer bits that follow
running statistics during quantization-aware training, then freeze), recovery (the
training recipe of each phase: learning-rate schedule, budget, early stopping,
distillation from the float model), surgery (fold BatchNorm, cut
channels out, build the QKeras model), quantize (integer bits from statistics) and
metrics (footprint, BOPs, ranking agreement). PyTorch in and out: ``from_torch`` (an
nn.Module through torch.export -> a float Keras model) and ``to_torch`` (a reduced
QKeras model -> an nn.Module with exact fake quantizers); torch is imported only when
they are called.

The names below are imported when first used (PEP 562), so ``import pruner.options``
(what the command line reads its settings from) loads neither Keras nor TensorFlow.
"""

import importlib

# Public name -> (module, attribute in it).
_EXPORTS = {
    'compress': ('phases', 'compress'),
    'quantized_preview': ('phases', 'quantized_preview'),
    'CompressOptions': ('options', 'CompressOptions'),
    'PrunerError': ('errors', 'PrunerError'),
    'ChannelPruningCallback': ('callback', 'ChannelPruningCallback'),
    'GraphError': ('graph', 'GraphError'),
    'ChannelGroup': ('groups', 'ChannelGroup'),
    'GroupTable': ('groups', 'GroupTable'),
    'UnsupportedLayerError': ('groups', 'UnsupportedLayerError'),
    'analyze': ('groups', 'analyze'),
    'describe': ('groups', 'describe'),
    'IMPORTANCE_REGISTRY': ('importance', 'REGISTRY'),
    'ActivationL0': ('importance', 'ActivationL0'),
    'ActivationL1': ('importance', 'ActivationL1'),
    'Importance': ('importance', 'Importance'),
    'Random': ('importance', 'Random'),
    'WeightL1': ('importance', 'WeightL1'),
    'rank': ('importance', 'rank'),
    'get_importance': ('importance', 'get'),
    'LayerKind': ('layers', 'LayerKind'),
    'WEIGHT_ROLES': ('layers', 'WEIGHT_ROLES'),
    'register_layer': ('layers', 'register_layer'),
    'registered': ('layers', 'registered'),
    'ChannelMask': ('masking', 'ChannelMask'),
    'MaskedModel': ('masking', 'MaskedModel'),
    'insert_masks': ('masking', 'insert_masks'),
    'bops': ('metrics', 'bops'),
    'footprint': ('metrics', 'footprint'),
    'kendall_tau': ('metrics', 'kendall_tau'),
    'levenshtein': ('metrics', 'levenshtein'),
    'macs': ('metrics', 'macs'),
    'parameters': ('metrics', 'parameters'),
    'performance_density': ('metrics', 'performance_density'),
    'summary': ('metrics', 'summary'),
    'RangeRefreshCallback': ('qat', 'RangeRefreshCallback'),
    'refresh_ranges': ('qat', 'refresh_ranges'),
    'Fixed': ('quantize', 'Fixed'),
    'QuantPlan': ('quantize', 'QuantPlan'),
    'calibrate': ('quantize', 'calibrate'),
    'plan_quantization': ('quantize', 'plan_quantization'),
    'signed_integer_bits': ('quantize', 'signed_integer_bits'),
    'unsigned_integer_bits': ('quantize', 'unsigned_integer_bits'),
    'Distiller': ('recovery', 'Distiller'),
    'Recovery': ('recovery', 'Recovery'),
    'fit_phase': ('recovery', 'fit_phase'),
    'phase_learning_rate': ('recovery', 'phase_learning_rate'),
    'Schedule': ('schedule', 'Schedule'),
    'Window': ('schedule', 'Window'),
    'kept_count': ('schedule', 'kept_count'),
    'make_schedule': ('schedule', 'make_schedule'),
    'validate_sparsity': ('schedule', 'validate_sparsity'),
    'SurgeryError': ('surgery', 'SurgeryError'),
    'fold_batchnorm': ('surgery', 'fold_batchnorm'),
    'reduce': ('surgery', 'reduce'),
    'to_qkeras': ('surgery', 'to_qkeras'),
    'TorchExportError': ('torch_export', 'TorchExportError'),
    'export_torch': ('torch_export', 'export_torch'),
    'to_torch': ('torch_export', 'to_torch'),
    'ConversionMismatchError': ('torch_import', 'ConversionMismatchError'),
    'TorchImportError': ('torch_import', 'TorchImportError'),
    'UnsupportedTorchOpError': ('torch_import', 'UnsupportedTorchOpError'),
    'convert_torch': ('torch_import', 'convert_torch'),
    'from_torch': ('torch_import', 'from_torch'),
    'load_torch': ('torch_files', 'load_torch'),
    'supported_ops': ('torch_import', 'supported_ops'),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(f'.{module}', __name__), attribute)
    globals()[name] = value  # the next lookup finds it directly
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
