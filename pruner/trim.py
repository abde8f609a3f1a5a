"""Fit a trained design to its budget with more weight zeros instead of training another.

Quantization-aware training moves weights (a constant of a fully unrolled circuit costs
logic by its nonzero digits) and refreshes integer bits, so a design allocated just under
a LUT budget often comes out of a long QAT a few percent over it. Allocating a smaller
design and training it again from the float start throws away the trained one, which is
often the better design (letter, 300 QAT epochs, 14k LUT, seed 0: 92.4 % validation at
15.1k LUT discarded, the retrained one 85.5 %; trimmed by 15 % and fine-tuned, 91.8 %).
Trimming keeps it: every weight-prunable layer's
sparsity is raised by the same share ``extra`` of its remaining weights,

    s_l' = s_l + extra * (1 - s_l),

the weights ranked as everywhere in the pruner (|w| times mean |input|, layer by layer on
the already-masked quantized network: pruner.weight_masks), and ``extra`` is the smallest
found by bisection on the cost model itself for which the design fits. The cost is
measured on the trimmed model, so the result is within the budget by construction, not
by a margin; a short fine-tune with the masks and types held then recovers what the zeros
cost (pruner.phases), and the cost is checked (and trimmed) again after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .weight_masks import Sparsity, kernel_variable, prune_weights, sparsity_of, weight_prunable

# Bisection on ``extra`` stops when the bracket is this narrow (a share of the remaining weights).
TRIM_RESOLUTION = 1 / 256
# The largest share of its remaining weights one trim may zero: beyond, the design is not a
# trimmed version of the trained one any more (and the cost model would be asked for an empty
# network); the budget loop then allocates a smaller design instead.
TRIM_MAX_EXTRA = 0.5


@dataclass
class Trim:
    """What one trim did: the sparsity per layer it left, the cost before and after, and
    every (extra, cost) the search tried, in order."""

    sparsity: dict[str, float]
    extra: float
    cost_before: float
    cost: float
    within: bool
    tried: list[tuple[float, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            'extra': round(self.extra, 6),
            'cost_before': self.cost_before,
            'cost': self.cost,
            'within_budget': self.within,
            'sparsity': {k: round(v, 6) for k, v in self.sparsity.items()},
            'tried': [[round(e, 6), c] for e, c in self.tried],
        }


def raised(model, sparsity: Sparsity, extra: float, exclude: tuple[str, ...] = ()) -> dict[str, float]:
    """Every weight-prunable layer's sparsity with ``extra`` of its remaining weights added."""
    return {
        layer.name: (s := sparsity_of(sparsity, layer.name)) + extra * (1.0 - s)
        for layer in weight_prunable(model, exclude)
    }


def trim_to_budget(
    model,
    x: np.ndarray,
    sparsity: Sparsity,
    granularity: str,
    cost: Callable[[object], float],
    limit: float,
    exclude: tuple[str, ...] = (),
) -> Trim:
    """Zero more weights of ``model`` (in place) until ``cost(model) <= limit``: the least
    ``extra`` share of every layer's remaining weights that fits, to TRIM_RESOLUTION.
    ``sparsity``: what the layers hold now (one fraction or one per layer). Within the
    budget already: nothing changes. Out of reach at TRIM_MAX_EXTRA: the model is left as
    it was and ``within`` is False."""
    kernels = {layer.name: kernel_variable(layer).numpy().copy() for layer in weight_prunable(model, exclude)}
    current = {name: sparsity_of(sparsity, name) for name in kernels}
    before = float(cost(model))
    tried: list[tuple[float, float]] = []

    def restore() -> None:
        for name, kernel in kernels.items():
            kernel_variable(model.get_layer(name)).assign(kernel)

    def apply(extra: float) -> float:
        restore()
        prune_weights(model, x, raised(model, current, extra, exclude), granularity, exclude)
        figure = float(cost(model))
        tried.append((extra, figure))
        return figure

    if before <= limit:
        return Trim(current, 0.0, before, before, True, tried)
    # The cost falls as zeros are added; bracket the least extra that fits, doubling from a
    # guess proportional to the excess (cost is roughly linear in the nonzero weights).
    low, high, high_cost = 0.0, None, None
    guess = min(TRIM_MAX_EXTRA, max(TRIM_RESOLUTION, 1.0 - limit / before))
    while high is None:
        figure = apply(guess)
        if figure <= limit:
            high, high_cost = guess, figure
        elif guess >= TRIM_MAX_EXTRA:
            restore()
            return Trim(current, 0.0, before, before, False, tried)
        else:
            low, guess = guess, min(TRIM_MAX_EXTRA, 2 * guess)
    while high - low > TRIM_RESOLUTION:
        middle = (low + high) / 2
        figure = apply(middle)
        if figure <= limit:
            high, high_cost = middle, figure
        else:
            low = middle
    if tried[-1][0] != high:  # the model holds the last one tried: put the chosen one back
        apply(high)
    return Trim(raised(model, current, high, exclude), high, before, high_cost, True, tried)


__all__ = ['TRIM_MAX_EXTRA', 'TRIM_RESOLUTION', 'Trim', 'raised', 'trim_to_budget']
