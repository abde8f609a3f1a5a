"""How large an RTL design will be, known before da4ml traces it, and the guard on it.

The RTL route unrolls every multiply-accumulate (MAC) into logic: one
constant-matrix-vector product per output position of each layer, which da4ml solves
and traces in Python, and which Verilator then turns into C++ to compile. Both grow
faster than the MACs. The case behind the guard (issue 27): hls4ml's QKeras MNIST CNN
(28x28 inputs, about 380k MACs) gave `lpsubnet rtl` 5.4 minutes of tracing with nothing
printed, then 17 minutes and 14.4 GB of Verilator build; here, a 28x28 CNN of 54,720
MACs traced in about 6 minutes on two busy cores and a 64-128-64 MLP (16,384 MACs,
two 8k-weight matrices) in about 2.5 minutes.

The MACs come from each layer kind (``LayerKind.macs``, :mod:`hls_backend.core.layer_kinds`),
counted from the layer shapes alone. :data:`RTL_MAX_MACS` is the one threshold: above it
``lpsubnet rtl`` and :func:`hls_backend.rtl` refuse unless told ``force_large``, and
``lpsubnet run`` with ``rtl.enabled: auto`` skips the RTL stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.layer_kinds import Registry
from ..errors import DesignTooLargeError

# Fully unrolled designs up to this many MACs trace in seconds and build with Verilator in
# a few minutes on 2 cores (the digits CNN of `make demo`, pruned, has ~7.6k MACs).
RTL_MAX_MACS = 20_000
FORCE_HINT = '--force-large (force_large=True in Python)'


@dataclass(frozen=True)
class LayerSize:
    name: str
    macs: int


@dataclass(frozen=True)
class DesignSize:
    """MACs per sample of each layer that multiplies, in model order."""

    layers: tuple[LayerSize, ...]

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def largest(self) -> LayerSize | None:
        return max(self.layers, key=lambda layer: layer.macs, default=None)

    def describe(self) -> str:
        largest = self.largest
        where = f"; the largest layer, '{largest.name}', {largest.macs:,}" if largest is not None else ''
        return f'{self.macs:,} multiply-accumulates per sample in {len(self.layers)} layers{where}'


def design_size(model, registry: Registry) -> DesignSize:
    """The MACs of ``model``'s layers, from the route's layer kinds (no tracing)."""
    layers = []
    for layer in model.layers:
        macs = registry.lookup(layer).macs(layer)
        if macs:
            layers.append(LayerSize(layer.name, int(macs)))
    return DesignSize(tuple(layers))


def check_design_size(size: DesignSize, model_name: str, force_large: bool) -> None:
    """Refuse a design above RTL_MAX_MACS unless ``force_large``: the message gives the
    figure, the threshold and how to go on."""
    if force_large or size.macs <= RTL_MAX_MACS:
        return
    raise DesignTooLargeError(
        f'{model_name}: the RTL design would be {size.describe()}, more than the {RTL_MAX_MACS:,} MACs the RTL '
        "route builds without being asked. Tracing and the Verilator build grow faster than the MACs (hls4ml's "
        '28x28 MNIST CNN, about 380k MACs: 5.4 minutes of da4ml trace, then 17 minutes and 14.4 GB of Verilator '
        f'build). Pass {FORCE_HINT} to build it anyway, or prune the model further',
        size,
    )


class TraceProgress:
    """Where the da4ml trace is: the layer, its output position, and the share of the
    model's MACs done (the replay calls :meth:`layer` and :meth:`position`)."""

    def __init__(self, size: DesignSize, say: Callable[[str], None]):
        self.size = size
        self.say = say
        self.n_layers = 0
        self.macs = {layer.name: layer.macs for layer in size.layers}
        self.done_macs = 0
        self.current: tuple[str, int] | None = None

    def layer(self, layer, index: int, n_layers: int) -> None:
        """The replay starts layer ``index`` of ``n_layers``."""
        if self.current is not None:
            self.done_macs += self.macs.get(self.current[0], 0)
        self.current, self.n_layers = (layer.name, index), n_layers
        self.say(self._where())

    def position(self, done: int, total: int) -> None:
        """``done`` of the current layer's ``total`` output positions are traced."""
        if self.current is None or total <= 1:
            return
        share = self.macs.get(self.current[0], 0) * done / total
        self.say(f'{self._where(share)}, output position {done + 1}/{total}')

    def finishing(self) -> None:
        self.current = None
        self.say('collecting the traced operations into one design (comb_trace)')

    def _where(self, share: float = 0.0) -> str:
        name, index = self.current
        text = f"layer '{name}' ({index}/{self.n_layers})"
        if self.size.macs:
            text += f', {100 * (self.done_macs + share) / self.size.macs:.0f}% of {self.size.macs:,} MACs'
        return text


__all__ = ['RTL_MAX_MACS', 'DesignSize', 'LayerSize', 'design_size', 'check_design_size', 'TraceProgress']
