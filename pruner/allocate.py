"""Precision per layer under a hardware budget: greedy and layerwise, in the spirit of the
paper's channel pruning.

Starting from the uniform bits the user asked for, each step lowers by one bit the one
quantizer (a layer's weights, a layer's output activation, or the input) that costs the
least task loss per unit of hardware saved, until the design fits the budget. The loss
is measured on validation data through the whole quantized network, so each layer is
judged on the activations of the already-quantized layers before it; nothing trains
during the search (quantization-aware training follows, with the chosen bits).

Hardware is whatever ``cost`` says (a callable: QKeras model -> cost in the budget's
unit): ``lpsubnet prune --max-lut`` passes da4ml's LUT estimate of the RTL design (the
pruner itself knows nothing of hardware); ``max_footprint_kbit`` uses the pruner's own
footprint. Pricing every candidate with da4ml would trace the model a dozen times per
step, so candidates are ranked by a proxy of the logic they need (``adder_bits``: the
nonzero signed digits of each quantized weight times the width of what it multiplies,
times how often it is applied), and ``cost`` itself is asked once per step, for the
step taken: the budget is always checked with the real figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from .errors import PrunerError
from .graph import calls
from .layers import KERNEL_NAMES, WEIGHT_ROLES, lookup, weight_name
from .metrics import tensor_bits
from .quantize import QuantPlan, StepRule, plan_quantization
from .surgery import to_qkeras

INPUT = '__input__'  # the input quantizer's key in bit overrides (as in plan_quantization)
MIN_BITS = 2  # a signed 1-bit quantized_bits holds only the sign: no exact hardware route takes it


def signed_digits(integers: np.ndarray) -> np.ndarray:
    """Nonzero digits of each integer's canonical signed-digit (non-adjacent) form: the
    adders a constant multiplication needs, plus one."""
    n = np.abs(np.asarray(integers, dtype=np.int64))
    half = n >> 1
    three_halves = n + half
    carries = half ^ three_halves
    plus, minus = three_halves & carries, half & carries
    return _popcount(plus) + _popcount(minus)


def _popcount(values: np.ndarray) -> np.ndarray:
    count = np.zeros(values.shape, dtype=np.int64)
    v = values.copy()
    while np.any(v):
        count += v & 1
        v >>= 1
    return count


def adder_bits(qmodel) -> float:
    """A proxy of a fully unrolled design's logic: for every weighted layer, the nonzero
    signed digits of its quantized kernel times the bit width of its input, times the
    positions the kernel is applied at (a convolution's output pixels)."""
    widths = tensor_bits(qmodel)
    total = 0.0
    for call in calls(qmodel):
        layer = call.layer
        kind = lookup(layer)
        if kind is None or not kind.has_weights_across_channels:
            continue
        kernel = next((w for w in layer.weights if weight_name(w) in KERNEL_NAMES), None)
        if kernel is None:
            continue
        role = WEIGHT_ROLES[weight_name(kernel)]
        quantizer = getattr(layer, role.quantizer_attr, None)
        values = np.asarray(kernel)
        if quantizer is not None and hasattr(quantizer, 'integer'):
            step = 2.0 ** (int(quantizer.integer) - int(quantizer.bits) + 1)
            values = np.round(np.asarray(quantizer(values), dtype=np.float64) / step)
        digits = float(np.sum(signed_digits(values)))
        applied = kind.macs(call) / max(1, values.size)
        total += digits * applied * widths.get(id(call.inputs[0]), 32)
    return total


@dataclass
class AllocationStep:
    """One bit taken off one quantizer: what it cost in loss, what it saved."""

    layer: str
    setting: str  # 'weight_bits' or 'activation_bits'
    bits: int  # after the step
    loss: float  # validation loss after the step
    loss_increase: float
    proxy_saved: float
    cost: float  # the budget's figure after the step (``cost``)


@dataclass
class Allocation:
    """The outcome: the bits of every quantizer (as ``layer_bits`` overrides), the figure
    at the start and at the end, and every step."""

    budget: float
    unit: str
    layer_bits: dict[str, dict[str, int]]
    start_cost: float
    cost: float
    start_loss: float
    loss: float
    steps: list[AllocationStep] = field(default_factory=list)

    @property
    def within_budget(self) -> bool:
        return self.cost <= self.budget

    def to_dict(self) -> dict:
        return {
            'budget': self.budget,
            'unit': self.unit,
            'within_budget': self.within_budget,
            'start_cost': self.start_cost,
            'cost': self.cost,
            'start_loss': self.start_loss,
            'loss': self.loss,
            'layer_bits': self.layer_bits,
            'steps': [asdict(s) for s in self.steps],
        }


@dataclass
class _Candidate:
    bits: dict[str, dict[str, int]]
    plan: QuantPlan
    model: keras.Model
    loss: float
    proxy: float


class BitAllocator:
    """Greedy layerwise precision allocation for one float model (BatchNorm folded).

    ``calibration``: ``quantize.calibrate`` of that model; ``x``, ``y``: validation data
    the loss is measured on; ``loss``: a Keras loss; ``cost``: QKeras model -> figure in
    ``unit``; ``weight_bits``, ``activation_bits``, ``bias_bits``, ``overrides``, ``rule``:
    the starting point, as for ``plan_quantization`` (layers the overrides name keep
    their bits: the user fixed them).
    """

    def __init__(
        self,
        model,
        calibration,
        x,
        y,
        loss,
        cost: Callable[[keras.Model], float],
        unit: str,
        weight_bits: int,
        activation_bits: int,
        bias_bits: int | None = None,
        overrides: dict | None = None,
        rule: StepRule | None = None,
    ):
        self.model = model
        self.calibration = calibration
        self.x, self.y = x, y
        self.loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        self.cost = cost
        self.unit = unit
        self.weight_bits, self.activation_bits, self.bias_bits = weight_bits, activation_bits, bias_bits
        self.fixed = {name: dict(bits) for name, bits in (overrides or {}).items()}
        self.rule = rule or StepRule()
        base = plan_quantization(model, calibration, weight_bits, activation_bits, bias_bits, self.fixed, self.rule)
        # Every quantizer the search may lower: weights of weighted layers, output activations, the input.
        self.knobs: list[tuple[str, str]] = []
        for name, entry in base.layers.items():
            if name in self.fixed:
                continue
            if any(WEIGHT_ROLES[w].role != 'bias' for w in entry.weights):
                self.knobs.append((name, 'weight_bits'))
            if entry.activation is not None:
                self.knobs.append((name, 'activation_bits'))
        if INPUT not in self.fixed:
            self.knobs.append((INPUT, 'activation_bits'))

    def _bits_of(self, bits: dict, layer: str, setting: str) -> int:
        default = self.weight_bits if setting == 'weight_bits' else self.activation_bits
        return int(bits.get(layer, {}).get(setting, default))

    def _candidate(self, bits: dict) -> _Candidate:
        overrides = {**{k: dict(v) for k, v in bits.items()}, **self.fixed}
        plan = plan_quantization(
            self.model,
            self.calibration,
            self.weight_bits,
            self.activation_bits,
            self.bias_bits,
            overrides,
            self.rule,
        )
        qmodel = to_qkeras(self.model, plan)
        out = qmodel.predict(self.x, batch_size=1024, verbose=0)
        loss = float(keras.ops.convert_to_numpy(self.loss_fn(self.y, out)).mean())
        return _Candidate(bits, plan, qmodel, loss, adder_bits(qmodel))

    def allocate(self, budget: float, max_steps: int = 1000) -> Allocation:
        """Lower bits until ``cost`` is within ``budget``; PrunerError if every quantizer
        is at MIN_BITS and the design is still over it."""
        current = self._candidate({})
        cost = float(self.cost(current.model))
        allocation = Allocation(float(budget), self.unit, {}, cost, cost, current.loss, current.loss)
        while cost > budget and len(allocation.steps) < max_steps:
            best = None
            for layer, setting in self.knobs:
                bits = self._bits_of(current.bits, layer, setting)
                if bits <= MIN_BITS:
                    continue
                lowered = {k: dict(v) for k, v in current.bits.items()}
                lowered.setdefault(layer, {})[setting] = bits - 1
                candidate = self._candidate(lowered)
                saved = current.proxy - candidate.proxy
                # Loss per unit of logic saved; a step that saves nothing by the proxy ranks last
                # (it may still save by the cost model: it is taken when nothing else is left).
                score = (candidate.loss - current.loss) / saved if saved > 0 else math.inf
                key = (score, candidate.loss, layer, setting)
                if best is None or key < best[0]:
                    best = (key, layer, setting, candidate, saved)
            if best is None:
                raise PrunerError(
                    f'the budget of {budget:g} {self.unit} is out of reach by precision alone: with every '
                    f'quantizer at {MIN_BITS} bits the design still costs {cost:g} {self.unit}; prune more channels '
                    '(sparsity) or raise the budget'
                )
            _, layer, setting, candidate, saved = best
            cost = float(self.cost(candidate.model))
            allocation.steps.append(
                AllocationStep(
                    layer,
                    setting,
                    self._bits_of(candidate.bits, layer, setting),
                    candidate.loss,
                    candidate.loss - current.loss,
                    saved,
                    cost,
                )
            )
            current = candidate
        allocation.layer_bits = {k: dict(v) for k, v in current.bits.items()}
        allocation.cost, allocation.loss = cost, current.loss
        return allocation
