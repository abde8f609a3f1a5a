"""Weight-level sparsity after channel pruning, for fully unrolled designs.

In a fully unrolled core (hls4ml's Latency strategy, da4ml's RTL) every weight is a
constant of the circuit, so a weight of 0 costs no multiplier and no adder input: the
zeros inside the kept channels are hardware saved too. This module ranks single
weights with the method's own idea, on data and greedily layer by layer:

    score(w_ij) = |w_ij| * mean |x_j|

where x_j is input channel j of the layer, measured on the network whose earlier
layers already carry their weight masks (the activation-driven ranking of the paper,
moved from channels to weights). Two structures:

- ``weight``: the lowest-scoring ``floor(s * N)`` of the layer's N weights become 0;
- ``kofn``: every output neuron (filter) keeps the ``k = n - floor(s * n)`` of its n
  inputs with the highest scores (a regular k-out-of-n structure, as in Dynamic
  Probabilistic Pruning): every neuron has the same fan-in, so every adder tree has
  the same depth.

``WeightPruningCallback`` brings the sparsity in during quantization-aware training:
from 0 to the target over a ramp with the cubic schedule of Zhu and Gupta (2017), the
ranking done anew at each update, or all at once before training; masked weights stay
0 (the kernel is multiplied by its mask after every step). 0 is on every quantizer's
grid, so the exported QKeras model, its HLS weights and its RTL constants hold the same
zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from .errors import PrunerError
from .layers import KERNEL_NAMES, lookup, weight_name
from .options import GRANULARITIES


@dataclass
class LayerWeightMask:
    layer: str
    keep: np.ndarray  # bool, the kernel's shape
    out_axis: int
    input_l1: np.ndarray  # mean |x_j| per input channel, measured before this layer was masked

    def to_dict(self) -> dict:
        fan_in = self.keep.size // self.keep.shape[self.out_axis]
        per_neuron = np.moveaxis(self.keep, self.out_axis, -1).reshape(-1, self.keep.shape[self.out_axis]).sum(axis=0)
        return {
            'weights': int(self.keep.size),
            'nonzero': int(self.keep.sum()),
            'sparsity': round(1.0 - float(self.keep.mean()), 6),
            'fan_in': int(fan_in),
            'kept_per_neuron_min': int(per_neuron.min()),
            'kept_per_neuron_max': int(per_neuron.max()),
        }


def kernel_variable(layer):
    return next((w for w in layer.weights if weight_name(w) in KERNEL_NAMES), None)


def weight_prunable(model, exclude: tuple[str, ...] = ()) -> list:
    """Layers whose kernel is a matrix of single weights across input and output
    channels (Dense, Conv, transposed Conv and their QKeras forms), in graph order;
    depthwise kernels (one input channel per filter) and ``exclude`` are left out."""
    layers = []
    for layer in model.layers:
        kind = lookup(layer)
        if kind is None or kind.family != 'producer' or layer.name in exclude:
            continue
        if kernel_variable(layer) is None:
            continue
        layers.append(layer)
    return layers


def _input_l1(model, layer, x, batch_size: int) -> np.ndarray:
    probe = keras.Model(model.inputs[0], layer.input)  # the pruner's models have one input
    total, count = None, 0
    for start in range(0, len(x), batch_size):
        a = np.abs(np.asarray(probe(x[start : start + batch_size], training=False), dtype=np.float64))
        a = a.reshape(-1, a.shape[-1])
        total = a.sum(axis=0) if total is None else total + a.sum(axis=0)
        count += a.shape[0]
    return total / max(count, 1)


def keep_mask(scores: np.ndarray, sparsity: float, granularity: str, out_axis: int) -> np.ndarray:
    """The weights kept at ``sparsity`` (bool, the kernel's shape): the highest scores
    (ties: the earlier index is kept, so the result is deterministic)."""
    if granularity == 'weight':
        flat = scores.ravel()
        drop = int(np.floor(sparsity * flat.size))
        keep = np.ones(flat.size, dtype=bool)
        keep[np.argsort(flat, kind='stable')[:drop]] = False
        return keep.reshape(scores.shape)
    moved = np.moveaxis(scores, out_axis, -1)
    columns = moved.reshape(-1, moved.shape[-1])  # one column per output neuron
    drop = int(np.floor(sparsity * columns.shape[0]))
    keep = np.ones(columns.shape, dtype=bool)
    order = np.argsort(columns, axis=0, kind='stable')[:drop]
    np.put_along_axis(keep, order, False, axis=0)
    return np.moveaxis(keep.reshape(moved.shape), -1, out_axis)


Sparsity = float | Mapping[str, float]  # one fraction for every layer, or one per layer (others 0)


def _fractions(sparsity: Sparsity) -> list[float]:
    """Every fraction ``sparsity`` names."""
    return list(sparsity.values()) if isinstance(sparsity, Mapping) else [float(sparsity)]


def sparsity_of(sparsity: Sparsity, layer: str) -> float:
    """The fraction ``sparsity`` gives ``layer``."""
    return float(sparsity.get(layer, 0.0)) if isinstance(sparsity, Mapping) else float(sparsity)


def scaled(sparsity: Sparsity, fraction: float) -> Sparsity:
    """``fraction`` of every layer's target (the ramp's share of it)."""
    if isinstance(sparsity, Mapping):
        return {name: value * fraction for name, value in sparsity.items()}
    return sparsity * fraction


def _scores(model, layer, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(|w_ij| * mean |x_j| for every weight of ``layer``'s kernel, mean |x_j|) on ``model`` as it is."""
    kind = lookup(layer)
    kernel = np.asarray(kernel_variable(layer).numpy())
    input_l1 = _input_l1(model, layer, x, batch_size)
    shape = [1] * kernel.ndim
    shape[kind.in_axis] = kernel.shape[kind.in_axis]
    return np.abs(kernel.astype(np.float64)) * input_l1.reshape(shape), input_l1


def weight_scores(model, x: np.ndarray, exclude: tuple[str, ...] = (), batch_size: int = 256) -> dict:
    """Layer name -> (scores, out_axis) of every weight-prunable layer of ``model``, each on
    the activations of ``model`` as it is (nothing is masked here): what a search over
    per-layer sparsities ranks a layer's weights by (``keep_mask`` turns a score and a
    sparsity into the weights kept)."""
    return {
        layer.name: (_scores(model, layer, x, batch_size)[0], lookup(layer).out_axis)
        for layer in weight_prunable(model, exclude)
    }


def prune_weights(
    model,
    x: np.ndarray,
    sparsity: Sparsity,
    granularity: str,
    exclude: tuple[str, ...] = (),
    batch_size: int = 256,
) -> dict[str, LayerWeightMask]:
    """Zero the least important weights of every weight-prunable layer of ``model`` (in
    place), layer by layer from the input: each layer is ranked on the activations of
    the network whose earlier layers are already masked. ``sparsity``: one fraction for
    every layer, or a fraction per layer name (a budget's allocation; layers it does not
    name keep all their weights). Returns the masks by layer."""
    if granularity not in GRANULARITIES[1:]:
        raise PrunerError(f'weight granularity {granularity!r}: expected one of {GRANULARITIES[1:]}')
    bad = [s for s in _fractions(sparsity) if not 0 <= s < 1]
    if bad:
        raise PrunerError(f'weight sparsity {bad[0]}: expected a fraction in [0, 1)')
    masks = {}
    for layer in weight_prunable(model, exclude):
        layer_sparsity = sparsity_of(sparsity, layer.name)
        if layer_sparsity <= 0:
            continue
        kind = lookup(layer)
        variable = kernel_variable(layer)
        kernel = np.asarray(variable.numpy())
        scores, input_l1 = _scores(model, layer, x, batch_size)
        keep = keep_mask(scores, layer_sparsity, granularity, kind.out_axis)
        variable.assign(np.where(keep, kernel, 0).astype(kernel.dtype))
        masks[layer.name] = LayerWeightMask(layer.name, keep, kind.out_axis, input_l1)
    return masks


def ramp_sparsity(step: int, ramp_steps: int, target: float) -> float:
    """The cubic schedule: ``target * (1 - (1 - step / ramp_steps)^3)``, ``target`` after the ramp."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return target
    return target * (1.0 - (1.0 - step / ramp_steps) ** 3)


class WeightPruningCallback(keras.callbacks.Callback):
    """Weight sparsity while ``model`` trains. With ``ramp_steps`` 0, every layer is
    ranked once before training at the target sparsity; otherwise the sparsity follows
    :func:`ramp_sparsity`, ranked anew at ``updates`` evenly spaced steps of the ramp (a
    weight once 0 scores 0 and stays out, so the masks only grow). After every step each
    kernel is multiplied by its mask: every evaluation, every best epoch restored by
    early stopping (from ``final_step`` on) and the saved model see the zeros. Without a
    ramp the ranking is done here, so the masks hold even if nothing trains."""

    def __init__(
        self, model, x, sparsity: Sparsity, granularity: str, exclude=(), ramp_steps: int = 0, updates: int = 8
    ):
        super().__init__()
        self._target, self._x = model, x
        self._sparsity, self._granularity, self._exclude = sparsity, granularity, tuple(exclude)
        self.ramp_steps = int(ramp_steps)
        count = max(1, min(int(updates), self.ramp_steps))
        self._update_at = (
            sorted({round(self.ramp_steps * (i + 1) / count) for i in range(count)}) if self.ramp_steps else []
        )
        self.masks: dict[str, LayerWeightMask] = {}
        self.history: list[dict] = []  # (step, sparsity) of every ranking
        self._pairs: list = []
        self._step = 0
        if not self.ramp_steps:
            self._rank(1.0)

    @property
    def final_step(self) -> int:
        """The step from which the masks no longer change."""
        return self._update_at[-1] if self._update_at else 0

    def _rank(self, fraction: float) -> None:
        """Rank at ``fraction`` of every layer's target sparsity."""
        sparsity = scaled(self._sparsity, fraction)
        self.masks = prune_weights(self._target, self._x, sparsity, self._granularity, self._exclude)
        variables = {name: kernel_variable(self._target.get_layer(name)) for name in self.masks}
        self._pairs = [(variables[name], mask.keep.astype(variables[name].dtype)) for name, mask in self.masks.items()]
        shown = {k: round(v, 6) for k, v in sparsity.items()} if isinstance(sparsity, Mapping) else round(sparsity, 6)
        self.history.append({'step': self._step, 'fraction_of_target': round(fraction, 6), 'sparsity': shown})

    def retarget(self, sparsity: Sparsity) -> None:
        """Rank again now at a new target (a budget's trim after training) and hold those
        masks from here on; the ramp, if any, is over by then."""
        self._sparsity = sparsity
        self._rank(1.0)

    def apply(self) -> None:
        for variable, keep in self._pairs:
            variable.assign(variable * keep)

    def on_train_begin(self, logs=None):
        self.apply()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._update_at and self._step in self._update_at:
            self._rank(ramp_sparsity(self._step, self.ramp_steps, 1.0))
        self.apply()

    def check(self) -> None:
        """Every masked weight is 0 and the target sparsity was reached (raises otherwise)."""
        if any(s > 0 for s in _fractions(self._sparsity)) and not self.masks:
            raise PrunerError('weight pruning never ranked the weights: training ended before the ramp ended')
        for variable, keep in self._pairs:
            if np.any(np.asarray(variable.numpy())[keep == 0] != 0):
                raise PrunerError(f'a masked weight of {variable.path} is not 0 after training')

    def to_dict(self) -> dict:
        return {'ramp_steps': self.ramp_steps, 'rankings': self.history}


__all__ = ['LayerWeightMask', 'WeightPruningCallback', 'prune_weights', 'ramp_sparsity', 'weight_prunable']
