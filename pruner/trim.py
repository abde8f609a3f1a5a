"""Fit a trained design to its budget with more weight zeros instead of training another.

Quantization-aware training moves weights (a constant of a fully unrolled circuit costs
logic by its nonzero digits) and refreshes integer bits, so a design allocated just under
a LUT budget often comes out of a long QAT a few percent over it. Allocating a smaller
design and training it again from the float start throws away the trained one, which is
usually the better design (letter, 300 QAT epochs, 14k LUT: 92.4 % validation at 15.1k LUT
discarded, the retrained one 83.5 %). Trimming keeps it, greedily and layer by layer as
the rest of the method: at each step every weight-prunable layer is a candidate for
zeroing TRIM_STEP more of its remaining weights (ranked as everywhere in the pruner, |w|
times mean |input| on the network as trimmed so far: pruner.weight_masks), and the layer
whose step costs the least loss per unit of logic saved (the allocation's proxy,
``pruner.allocate.adder_bits``) takes it; the cost model itself says after every step
whether the design fits. The result is within the budget by construction, not by a
margin; a short fine-tune with the masks and types held then recovers what the zeros
cost (pruner.phases), and the design is checked (and trimmed) again after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .allocate import adder_bits
from .layers import lookup
from .weight_masks import Sparsity, keep_mask, kernel_variable, sparsity_of, weight_prunable, weight_scores

# One step zeros this share of one layer's remaining weights.
TRIM_STEP = 1 / 16
# A layer is not trimmed past this sparsity (the allocation's highest level).
TRIM_MAX_LAYER = 15 / 16
# The most of the design's nonzero weights one trim may zero: beyond, the design is not a
# trimmed version of the trained one any more; the budget loop then allocates a smaller
# design instead.
TRIM_MAX_SHARE = 0.5


@dataclass
class TrimStep:
    layer: str
    sparsity: float  # the layer's after the step
    loss: float
    cost: float

    def to_dict(self) -> dict:
        return {'layer': self.layer, 'sparsity': round(self.sparsity, 6), 'loss': self.loss, 'cost': self.cost}


@dataclass
class Trim:
    """What one trim did: the sparsity per layer it left, the cost before and after, and
    every step, in order."""

    sparsity: dict[str, float]
    cost_before: float
    cost: float
    within: bool
    loss_before: float | None = None
    steps: list[TrimStep] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            'cost_before': self.cost_before,
            'cost': self.cost,
            'within_budget': self.within,
            'loss_before': self.loss_before,
            'sparsity': {k: round(v, 6) for k, v in self.sparsity.items()},
            'steps': [s.to_dict() for s in self.steps],
        }


def _nonzero(model, names) -> int:
    return sum(int(np.count_nonzero(kernel_variable(model.get_layer(n)).numpy())) for n in names)


def trim_to_budget(
    model,
    x: np.ndarray,
    sparsity: Sparsity,
    granularity: str,
    cost: Callable[[object], float],
    limit: float,
    loss: Callable[[object], float],
    exclude: tuple[str, ...] = (),
) -> Trim:
    """Zero more weights of ``model`` (in place), one layer's TRIM_STEP at a time, until
    ``cost(model) <= limit``. ``sparsity``: what the layers hold now (one fraction or one
    per layer); ``x``: the data the weights are ranked on; ``loss``: what a step costs
    (lower is better; e.g. the task loss on validation samples). Within the budget
    already: nothing changes. Out of reach (TRIM_MAX_SHARE, TRIM_MAX_LAYER): the model is
    left as it was and ``within`` is False."""
    layers = {layer.name: layer for layer in weight_prunable(model, exclude)}
    kernels = {name: kernel_variable(layer).numpy().copy() for name, layer in layers.items()}
    current = {name: sparsity_of(sparsity, name) for name in layers}
    before = float(cost(model))
    if before <= limit:
        return Trim(dict(current), before, before, True)
    loss_now, proxy_now = float(loss(model)), adder_bits(model)
    trim = Trim(dict(current), before, before, False, loss_now)
    floor = (1 - TRIM_MAX_SHARE) * _nonzero(model, layers)
    figure = before
    while figure > limit:
        scores = weight_scores(model, x, exclude)  # on the network as trimmed so far
        best = None  # (loss per proxy unit saved, layer, level, loss, proxy)
        for name, layer in layers.items():
            level = current[name] + TRIM_STEP * (1.0 - current[name])
            if level > TRIM_MAX_LAYER + 1e-9:
                continue
            variable = kernel_variable(layer)
            held = variable.numpy()
            variable.assign(np.where(keep_mask(scores[name][0], level, granularity, lookup(layer).out_axis), held, 0))
            candidate_loss, candidate_proxy = float(loss(model)), adder_bits(model)
            variable.assign(held)
            saved = proxy_now - candidate_proxy
            if saved <= 0:
                continue  # its next zeros were zero already in the quantized kernel
            rate = (candidate_loss - loss_now) / saved
            if best is None or rate < best[0]:
                best = (rate, name, level, candidate_loss, candidate_proxy)
        if best is None or _nonzero(model, layers) <= floor:
            for name, kernel in kernels.items():
                kernel_variable(layers[name]).assign(kernel)
            return trim
        _, name, level, loss_now, proxy_now = best
        variable = kernel_variable(layers[name])
        keep = keep_mask(scores[name][0], level, granularity, lookup(layers[name]).out_axis)
        variable.assign(np.where(keep, variable.numpy(), 0))
        current[name] = level
        figure = float(cost(model))
        trim.steps.append(TrimStep(name, level, loss_now, figure))
    trim.sparsity, trim.cost, trim.within = dict(current), figure, True
    return trim


__all__ = ['TRIM_MAX_LAYER', 'TRIM_MAX_SHARE', 'TRIM_STEP', 'Trim', 'TrimStep', 'trim_to_budget']
