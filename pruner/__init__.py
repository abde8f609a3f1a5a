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
"""

from .callback import ChannelPruningCallback
from .compress import compress
from .errors import PrunerError
from .graph import GraphError
from .groups import ChannelGroup, GroupTable, UnsupportedLayerError, analyze, describe
from .importance import REGISTRY as IMPORTANCE_REGISTRY
from .importance import ActivationL0, ActivationL1, Importance, Random, WeightL1, rank
from .importance import get as get_importance
from .layers import WEIGHT_ROLES, LayerKind, register_layer, registered
from .masking import ChannelMask, MaskedModel, insert_masks
from .metrics import bops, footprint, kendall_tau, levenshtein, macs, parameters, performance_density, summary
from .options import CompressOptions
from .qat import RangeRefreshCallback, refresh_ranges
from .quantize import Fixed, QuantPlan, calibrate, plan_quantization, signed_integer_bits, unsigned_integer_bits
from .recovery import Distiller, Recovery, fit_phase, phase_learning_rate
from .schedule import Schedule, Window, kept_count, make_schedule, validate_sparsity
from .surgery import SurgeryError, fold_batchnorm, reduce, to_qkeras
from .torch_export import TorchExportError, export_torch, to_torch
from .torch_import import (
    ConversionMismatchError,
    TorchImportError,
    UnsupportedTorchOpError,
    convert_torch,
    from_torch,
    load_torch,
    supported_ops,
)

__all__ = [
    'compress',
    'CompressOptions',
    'PrunerError',
    'ChannelPruningCallback',
    'GraphError',
    'ChannelGroup',
    'GroupTable',
    'LayerKind',
    'WEIGHT_ROLES',
    'register_layer',
    'registered',
    'UnsupportedLayerError',
    'analyze',
    'describe',
    'IMPORTANCE_REGISTRY',
    'ActivationL0',
    'ActivationL1',
    'Importance',
    'Random',
    'WeightL1',
    'rank',
    'get_importance',
    'ChannelMask',
    'MaskedModel',
    'insert_masks',
    'bops',
    'footprint',
    'kendall_tau',
    'levenshtein',
    'macs',
    'parameters',
    'performance_density',
    'summary',
    'Fixed',
    'QuantPlan',
    'calibrate',
    'plan_quantization',
    'RangeRefreshCallback',
    'Distiller',
    'Recovery',
    'fit_phase',
    'phase_learning_rate',
    'refresh_ranges',
    'signed_integer_bits',
    'unsigned_integer_bits',
    'Schedule',
    'Window',
    'kept_count',
    'make_schedule',
    'validate_sparsity',
    'SurgeryError',
    'fold_batchnorm',
    'reduce',
    'to_qkeras',
    'from_torch',
    'convert_torch',
    'load_torch',
    'supported_ops',
    'to_torch',
    'export_torch',
    'TorchImportError',
    'UnsupportedTorchOpError',
    'ConversionMismatchError',
    'TorchExportError',
]
