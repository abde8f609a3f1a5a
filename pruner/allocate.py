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
times how often it is applied); ``cost`` itself is asked for the step taken when the
proxy predicts a figure near the budget, and at least every MEASURE_EVERY steps, so the
search stops on the real figure, never on the proxy's.

With weight-level sparsity (granularity 'weight' or 'kofn'), a layer's sparsity is a
knob too: a step raises it to the next of SPARSITY_LEVELS (the weights dropped are the
lowest |w_ij| * mean |x_j|, ``weight_masks``), competing with the bit steps on the same
criterion, so the search zeroes weights where that costs less loss per unit saved than a
bit does, and takes bits where it does not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from .errors import PrunerError
from .graph import calls
from .layers import KERNEL_NAMES, WEIGHT_ROLES, lookup, weight_name
from .metrics import tensor_bits
from .quantize import Fixed, StepRule, plan_quantization
from .surgery import to_qkeras
from .weight_masks import keep_mask, kernel_variable

INPUT = '__input__'  # the input quantizer's key in bit overrides (as in plan_quantization)
MIN_BITS = 2  # a signed 1-bit quantized_bits holds only the sign: no exact hardware route takes it
# The weight sparsities a layer's sparsity knob steps through (a step: to the next level above).
SPARSITY_LEVELS = (0.25, 0.5, 0.625, 0.75, 0.8125, 0.875, 0.9375)
SPARSITY = 'weight_sparsity'  # the knob's setting name, as in CompressOptions


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
            values = np.round(np.asarray(quantizer(values), dtype=np.float64) / Fixed.of(quantizer).step)
        digits = float(np.sum(signed_digits(values)))
        applied = kind.macs(call) / max(1, values.size)
        total += digits * applied * widths.get(id(call.inputs[0]), 32)
    return total


def _set_quantizer(quantizer, bits: int, integer: int) -> None:
    quantizer.bits, quantizer.integer = bits, integer


@dataclass
class AllocationStep:
    """One bit taken off one quantizer: what it cost in loss, what it saved, and the
    budget's figure after it (``cost``: measured by the cost model, or None where only
    predicted from the proxy, ``predicted_cost``)."""

    layer: str
    setting: str  # 'weight_bits', 'activation_bits' or 'weight_sparsity'
    bits: int | None  # after the step (None for a sparsity step)
    loss: float  # validation loss after the step
    loss_increase: float
    proxy_saved: float
    predicted_cost: float
    cost: float | None
    sparsity: float | None = None  # after a sparsity step


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
    cost_calls: int = 0
    layer_sparsity: dict[str, float] = field(default_factory=dict)  # layers whose weight sparsity was raised
    # The number of steps taken when nothing above the activation floor was left to lower and
    # the search went on below it (None: the floor held).
    activation_floor_relaxed_after: int | None = None

    @property
    def within_budget(self) -> bool:
        return self.cost <= self.budget

    def to_dict(self) -> dict:
        return {**asdict(self), 'within_budget': self.within_budget}


# The cost model is asked after a step when the proxy predicts a figure within this factor of
# the budget, and at least every MEASURE_EVERY steps (far above the budget the proxy's
# prediction is enough to choose the next step; the stop is always decided on a measurement).
MEASURE_NEAR = 1.3
MEASURE_EVERY = 4


class BitAllocator:
    """Greedy layerwise precision allocation for one float model (BatchNorm folded).

    ``calibration``: ``quantize.calibrate`` of that model; ``x``, ``y``: validation data
    the loss is measured on; ``loss``: a Keras loss; ``cost``: QKeras model -> figure in
    ``unit``; ``weight_bits``, ``activation_bits``, ``bias_bits``, ``overrides``, ``rule``:
    the starting point, as for ``plan_quantization`` (layers the overrides name keep
    their bits: the user fixed them). ``weight_scores`` (``weight_masks.weight_scores`` of
    the model), ``sparsity`` (where every layer starts) and ``granularity``: the sparsity
    knobs, one per layer scored; without scores the search changes bits only.

    One QKeras model is built; a candidate changes the bits (and, by ``rule``, the integer
    bits) of its quantizers in place, is measured eagerly, and is changed back: the same
    types ``plan_quantization`` gives for those bits, without building a model per candidate.
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
        weight_scores: dict | None = None,
        sparsity: float = 0.0,
        granularity: str = 'weight',
        min_activation_bits: int = MIN_BITS,
    ):
        from .qat import quantizer_slots

        self.calibration = calibration
        self.x, self.y = x, y
        self.loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        self.cost = cost
        self.unit = unit
        self.weight_bits, self.activation_bits = int(weight_bits), int(activation_bits)
        self.rule = rule or StepRule()
        self.min_bits = {'weight_bits': MIN_BITS, 'activation_bits': max(MIN_BITS, int(min_activation_bits))}
        fixed = {name: dict(bits) for name, bits in (overrides or {}).items()}
        plan = plan_quantization(model, calibration, weight_bits, activation_bits, bias_bits, fixed, self.rule)
        self.qmodel = to_qkeras(model, plan)
        # Every quantizer the search may lower: a layer's weights (all its non-bias tensors
        # together), its output activation, the input; layers the overrides name stay as they are.
        self.knobs: dict[tuple[str, str], list] = {}
        for slot in quantizer_slots(self.qmodel, plan):
            layer = INPUT if slot.role == 'input' else slot.layer
            if layer in fixed:
                continue
            if slot.role in ('activation', 'input'):
                self.knobs[layer, 'activation_bits'] = [slot]
            elif WEIGHT_ROLES[slot.role].role != 'bias':
                self.knobs.setdefault((layer, 'weight_bits'), []).append(slot)
        # Weight sparsity per layer: the kernel as it starts (the starting sparsity's zeros in it),
        # its scores and the level it is at.
        self.sparsity, self.granularity = float(sparsity), granularity
        self.sparse: dict[str, tuple] = {}
        for name, (scores, out_axis) in (weight_scores or {}).items():
            if name in fixed:
                continue
            variable = kernel_variable(self.qmodel.get_layer(name))
            self.sparse[name] = (variable, np.asarray(variable.numpy()), scores, out_axis)
            self.knobs[name, SPARSITY] = []

    def _set_sparsity(self, layer: str, level: float) -> list[Callable[[], None]]:
        """Zero the lowest-scoring ``level`` of the layer's weights; returns what undoes it."""
        variable, start, scores, out_axis = self.sparse[layer]
        before = np.asarray(variable.numpy())
        keep = keep_mask(scores, level, self.granularity, out_axis)
        variable.assign(np.where(keep, start, 0).astype(start.dtype))
        return [lambda: variable.assign(before)]

    def _level(self, chosen_sparsity: dict, layer: str) -> float:
        return float(chosen_sparsity.get(layer, self.sparsity))

    @staticmethod
    def _next_level(level: float) -> float | None:
        return next((s for s in SPARSITY_LEVELS if s > level + 1e-9), None)

    def _set(self, knob: tuple[str, str], value) -> list[Callable[[], None]]:
        return self._set_sparsity(knob[0], value) if knob[1] == SPARSITY else self._set_bits(knob, value)

    def _candidate(self, chosen: dict, chosen_sparsity: dict, knob: tuple[str, str], min_bits: dict):
        """The knob's next value (one bit less, the next sparsity level), None at its end."""
        if knob[1] == SPARSITY:
            return self._next_level(self._level(chosen_sparsity, knob[0]))
        bits = self._bits(chosen, knob)
        return bits - 1 if bits > min_bits[knob[1]] else None

    def _set_bits(self, knob: tuple[str, str], bits: int) -> list[Callable[[], None]]:
        """Give the knob's quantizers ``bits`` (their integer bits by the rule); returns what undoes it."""
        undo = []
        for slot in self.knobs[knob]:
            if slot.role in ('activation', 'input'):
                observed = self.calibration['__input__' if slot.role == 'input' else slot.layer]
                new = self.rule.activation(observed, bits, relu=slot.fixed.kind == 'relu')
            else:
                new = self.rule.weight(slot.values(), bits)
            undo.append(functools.partial(_set_quantizer, slot.quantizer, slot.quantizer.bits, slot.quantizer.integer))
            _set_quantizer(slot.quantizer, int(new.bits), int(new.integer))
        return undo

    @staticmethod
    def _restore(undo: list[Callable[[], None]]) -> None:
        for step in undo:
            step()

    def _loss(self) -> float:
        outputs = [
            keras.ops.convert_to_numpy(self.qmodel(self.x[i : i + 1024], training=False))
            for i in range(0, len(self.x), 1024)
        ]
        return float(np.mean(keras.ops.convert_to_numpy(self.loss_fn(self.y, np.concatenate(outputs)))))

    def _bits(self, chosen: dict, knob: tuple[str, str]) -> int:
        layer, setting = knob
        default = self.weight_bits if setting == 'weight_bits' else self.activation_bits
        return int(chosen.get(layer, {}).get(setting, default))

    def allocate(self, budget: float, max_steps: int = 1000) -> Allocation:
        """Lower bits until ``cost`` is within ``budget``; PrunerError if every quantizer
        is at MIN_BITS and the design is still over it. The model is left with the bits
        chosen; the search starts from the bits given at construction.

        The activation floor (``min_activation_bits``) is the last resort, not a wall: when
        nothing above it is left to lower, the search goes on with activations down to
        MIN_BITS (``Allocation.activation_floor_relaxed_after``), so a budget the bits can
        reach is never refused because of the floor."""
        min_bits = dict(self.min_bits)
        chosen: dict[str, dict[str, int]] = {}
        chosen_sparsity: dict[str, float] = {}
        for knob in self.knobs:  # from the starting point, whatever an earlier search left
            if knob[1] == SPARSITY:
                variable, start, _, _ = self.sparse[knob[0]]
                variable.assign(start)
            else:
                self._set_bits(knob, self._bits(chosen, knob))
        loss, proxy = self._loss(), adder_bits(self.qmodel)
        cost = float(self.cost(self.qmodel))
        allocation = Allocation(float(budget), self.unit, {}, cost, cost, loss, loss, cost_calls=1)
        measured_proxy, since = proxy, 0
        while cost > budget and len(allocation.steps) < max_steps:
            best = None
            for knob in self.knobs:
                value = self._candidate(chosen, chosen_sparsity, knob, min_bits)
                if value is None:
                    continue
                undo = self._set(knob, value)
                candidate_loss, candidate_proxy = self._loss(), adder_bits(self.qmodel)
                self._restore(undo)
                saved = proxy - candidate_proxy
                # Loss per unit of logic saved; a step that saves nothing by the proxy ranks last
                # (it may still save by the cost model: it is taken when nothing else is left).
                score = (candidate_loss - loss) / saved if saved > 0 else math.inf
                key = (score, candidate_loss, knob)
                if best is None or key < best[0]:
                    best = (key, knob, candidate_loss, candidate_proxy)
            if best is None and min_bits['activation_bits'] > MIN_BITS:
                min_bits['activation_bits'] = MIN_BITS
                allocation.activation_floor_relaxed_after = len(allocation.steps)
                continue
            if best is None:
                by = 'precision and weight sparsity' if self.sparse else 'precision alone'
                at = f' and every layer at {SPARSITY_LEVELS[-1]:g} weight sparsity' if self.sparse else ''
                raise PrunerError(
                    f'the budget of {budget:g} {self.unit} is out of reach by {by}: with every '
                    f'quantizer at {MIN_BITS} bits{at} the design still costs {cost:g} {self.unit}; prune more '
                    'channels (sparsity) or raise the budget'
                )
            _, knob, new_loss, new_proxy = best
            value = self._candidate(chosen, chosen_sparsity, knob, min_bits)
            self._set(knob, value)
            if knob[1] == SPARSITY:
                chosen_sparsity[knob[0]] = value
                bits, level = None, value
            else:
                chosen.setdefault(knob[0], {})[knob[1]] = value
                bits, level = value, None
            predicted = cost * new_proxy / measured_proxy if measured_proxy > 0 else cost
            since += 1
            measured = None
            if predicted <= budget * MEASURE_NEAR or since >= MEASURE_EVERY:
                measured = cost = float(self.cost(self.qmodel))
                measured_proxy, since = new_proxy, 0
                allocation.cost_calls += 1
            else:
                cost = predicted
            allocation.steps.append(
                AllocationStep(
                    knob[0], knob[1], bits, new_loss, new_loss - loss, proxy - new_proxy, predicted, measured, level
                )
            )
            loss, proxy = new_loss, new_proxy
        allocation.layer_bits = {k: dict(v) for k, v in chosen.items()}
        allocation.layer_sparsity = dict(chosen_sparsity)
        allocation.cost, allocation.loss = cost, loss
        return allocation
