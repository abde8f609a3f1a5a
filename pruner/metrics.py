"""Cost and comparison metrics of (quantized, reduced) Keras models.

- ``parameters``: weight values of all layers (channel masks excluded).
- ``macs``: multiply-accumulates per sample of the conv / dense layers.
- ``footprint``: memory footprint in bits, N_w * b_w + N_a * b_a, over weights and
  feature maps (Zhang et al. 2022). Feature maps are the tensors that weight layers
  read plus the model's outputs; b is the bit width of the quantizer that produced the
  tensor (``float_bits`` for float tensors). For a physically reduced model the
  sparsity terms (1 - s) are already in N. ``weights_nonzero`` counts only the weights
  that are not 0: what a fully unrolled design (hls4ml Latency, the RTL route) holds as
  constants, where a zero weight is no logic at all (weight-level sparsity,
  pruner.weight_masks); ``weights`` is what a design that stores its weights holds.
- ``bops``: sum over weight layers of MACs * b_w * b_a (b_a of the layer's input).
- ``performance_density``: task metric / footprint.
- ``kendall_tau`` and ``levenshtein``: agreement of two channel rankings.
"""

from __future__ import annotations

import re

import numpy as np

from .errors import PrunerError
from .graph import calls
from .layers import KERNEL_NAMES, WEIGHT_ROLES, lookup, weight_name


def _kind(layer) -> str | None:
    kind = lookup(layer)
    return None if kind is None else kind.family


def _weighted(layer) -> bool:
    kind = lookup(layer)
    return kind is not None and kind.has_weights_across_channels


def _quantizer_bits(spec) -> int | None:
    """Bit width of a QKeras quantizer given as an object, a config dict or a string."""
    if spec is None:
        return None
    if hasattr(spec, 'bits'):
        return int(spec.bits)
    if isinstance(spec, dict):
        if spec.get('class_name', '').startswith('quantized'):
            return int(spec.get('config', {}).get('bits', 8))
        return None
    if isinstance(spec, str):
        match = re.match(r'\s*quantized_\w+\((\d+)', spec)
        return int(match.group(1)) if match else None
    return None


def parameters(model) -> int:
    return int(
        sum(
            int(np.prod(w.shape))
            for layer in model.layers
            if layer.__class__.__name__ != 'ChannelMask'
            for w in layer.weights
        )
    )


def macs(model) -> int:
    """Multiply-accumulates per sample."""
    return int(sum(lookup(c.layer).macs(c) for c in calls(model) if _weighted(c.layer)))


def _weight_bits(layer, name: str, float_bits: int) -> int:
    config = layer.get_config()
    role = WEIGHT_ROLES.get(name)
    bits = _quantizer_bits(config.get(role.quantizer_key)) if role else None
    return float_bits if bits is None else bits


def tensor_bits(model, float_bits: int = 32) -> dict[int, int]:
    """Bit width of every tensor (id -> bits): that of the quantizer that produced it."""
    bits: dict[int, int] = {}
    for call in calls(model):
        kind = _kind(call.layer)
        own = None
        if call.kind == 'QActivation' or (call.kind.startswith('Q') and _weighted(call.layer)):
            own = _quantizer_bits(call.layer.get_config().get('activation'))
        elif kind in ('data', 'flatten', 'mask', 'concat') and call.inputs:
            own = max(bits.get(id(t), float_bits) for t in call.inputs)
        for t in call.outputs:
            bits[id(t)] = float_bits if own is None else own
    return bits


def footprint(model, float_bits: int = 32) -> dict:
    """Memory footprint in bits: {'weights', 'activations', 'total'} (and counts)."""
    tbits = tensor_bits(model, float_bits)
    w_bits = nz_bits = 0
    n_w = n_nz = 0
    feature_maps = {}
    for call in calls(model):
        layer = call.layer
        if call.kind == 'ChannelMask':
            continue
        for w in layer.weights:
            size, nonzero = int(np.prod(w.shape)), int(np.count_nonzero(w.numpy()))
            bits = _weight_bits(layer, weight_name(w), float_bits)
            n_w, n_nz = n_w + size, n_nz + nonzero
            w_bits, nz_bits = w_bits + size * bits, nz_bits + nonzero * bits
        if _weighted(layer):
            for t in call.inputs:
                feature_maps[id(t)] = t
    for t in model.outputs:
        feature_maps[id(t)] = t
    n_a = 0
    a_bits = 0
    for key, t in feature_maps.items():
        size = int(np.prod(t.shape[1:]))
        n_a += size
        a_bits += size * tbits.get(key, float_bits)
    return {
        'weights': int(w_bits),
        'weights_nonzero': int(nz_bits),
        'activations': int(a_bits),
        'total': int(w_bits + a_bits),
        'n_weights': int(n_w),
        'n_nonzero_weights': int(n_nz),
        'n_activations': int(n_a),
    }


def bops(model, float_bits: int = 32) -> int:
    """Bit operations: sum over weight layers of MACs * b_w * b_a."""
    tbits = tensor_bits(model, float_bits)
    total = 0
    for call in calls(model):
        if not _weighted(call.layer):
            continue
        kernel_name = next((n for n in map(weight_name, call.layer.weights) if n in KERNEL_NAMES), 'kernel')
        b_w = _weight_bits(call.layer, kernel_name, float_bits)
        b_a = tbits.get(id(call.inputs[0]), float_bits)
        total += lookup(call.layer).macs(call) * b_w * b_a
    return int(total)


def performance_density(metric: float, footprint_bits: float) -> float:
    """Task metric per bit of memory footprint."""
    return float(metric) / float(footprint_bits) if footprint_bits else float('nan')


def summary(model, float_bits: int = 32) -> dict:
    fp = footprint(model, float_bits)
    return {
        'parameters': parameters(model),
        'macs': macs(model),
        'bops': bops(model, float_bits),
        'footprint_bits': fp['total'],
        'footprint_weight_bits': fp['weights'],
        'footprint_nonzero_weight_bits': fp['weights_nonzero'],
        'nonzero_weights': fp['n_nonzero_weights'],
        'footprint_activation_bits': fp['activations'],
    }


def kendall_tau(mu, nu) -> float:
    """Kendall's tau of two score vectors over the same channels:
    2/(n(n-1)) * sum_{k<j} sign(mu_k - mu_j) * sign(nu_k - nu_j)."""
    mu = np.asarray(mu, dtype=np.float64)
    nu = np.asarray(nu, dtype=np.float64)
    if mu.shape != nu.shape or mu.ndim != 1:
        raise PrunerError(f'kendall_tau needs two 1-D score vectors of equal length, got {mu.shape} and {nu.shape}')
    n = len(mu)
    if n < 2:
        return 1.0
    a = np.sign(mu[:, None] - mu[None, :])
    b = np.sign(nu[:, None] - nu[None, :])
    upper = np.triu_indices(n, k=1)
    return float(2.0 / (n * (n - 1)) * np.sum(a[upper] * b[upper]))


def levenshtein(a, b) -> int:
    """Edit distance (insertions, deletions, substitutions) between two sequences,
    e.g. two rank orders of channel indices."""
    a, b = list(a), list(b)
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
