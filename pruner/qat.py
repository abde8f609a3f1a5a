"""Quantization-aware training whose fixed-point ranges follow the statistics, then freeze.

The integer bits planned from calibration before quantization-aware training (QAT)
go stale while the weights train: a kernel can outgrow its range (and saturate), an
activation can shrink (and waste its top bits). ``RangeRefreshCallback`` re-measures,
every ``refresh_steps`` training steps, every quantized kernel and bias (the current
weights) and what every activation quantizer receives (the current network on
calibration data), and resets each quantizer's integer bits by the criterion of the
initial plan (``quantize.StepRule``: cover the maximum, or least quantization error).
After ``freeze_step`` nothing changes any more: the last steps train with the types
that are exported, so the saved model, the manifest and the hardware agree.

Only the integer bits move; the bit widths stay what the user asked for. A change
re-traces Keras's train/test/predict functions (QKeras reads ``integer`` when a
function is traced), and widens or narrows the QKeras ``Clip`` weight constraint to
the new range, as QKeras itself would have built it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from .layers import WEIGHT_ROLES, lookup, variable_for_role
from .quantize import Fixed, Observed, QuantPlan, StepRule
from .surgery import INPUT_QUANTIZER


@dataclass
class Slot:
    """One quantizer of the QKeras model and the plan entry it came from."""

    layer: str
    role: str  # 'kernel', 'bias', 'activation' or 'input'
    fixed: Fixed  # the plan's entry; kept in step with the quantizer
    quantizer: object
    values: Callable | None = None  # () -> what the quantizer receives now (weights only)
    constraint_attr: str | None = None


def quantizer_slots(qmodel, plan: QuantPlan) -> list[Slot]:
    """Every quantizer of a ``to_qkeras`` model (or of a masked copy: layers are found by name)."""
    slots = []
    for name, entry in plan.layers.items():
        layer = qmodel.get_layer(name)
        for wname, fixed in entry.weights.items():
            # The plan names the float layer's variable; the QKeras layer may call it otherwise (depthwise_kernel).
            vname = variable_for_role(layer, WEIGHT_ROLES[wname].role)
            role = WEIGHT_ROLES[vname]
            # The kind knows what the quantizer receives: the variable, or a folded kernel/bias (fused BatchNorm).
            values = functools.partial(_weight_values, layer, vname)
            slots.append(Slot(name, wname, fixed, getattr(layer, role.quantizer_attr), values, role.constraint_key))
        if entry.activation is not None:
            slots.append(Slot(name, 'activation', entry.activation, layer.activation))
    slots.append(Slot(INPUT_QUANTIZER, 'input', plan.input, qmodel.get_layer(INPUT_QUANTIZER).activation))
    return slots


def _weight_values(layer, name: str) -> np.ndarray:
    return lookup(layer).weight_values(layer)[name]


def activation_inputs(qmodel, slots: list[Slot], x, batch_size: int = 256, percentile=None) -> dict[str, Observed]:
    """What each activation quantizer receives (its input, before rounding and clipping)
    over ``x``: the values for signed quantizers, their positive part for ReLUs.

    The model runs eagerly with each quantizer wrapped by a recorder, then unwrapped.
    """
    observed: dict[str, Observed] = {}
    wrapped = []
    for slot in slots:
        if slot.role not in ('activation', 'input'):
            continue
        layer = qmodel.get_layer(slot.layer)
        original = layer.activation
        observed[slot.layer] = Observed(percentile, relu=slot.fixed.kind == 'relu')

        def recorder(t, _original=original, _seen=observed[slot.layer]):
            _seen.update(np.asarray(t))
            return _original(t)

        layer.activation = recorder
        wrapped.append((layer, original))
    try:
        x = np.asarray(x)
        for i in range(0, len(x), batch_size):
            qmodel(x[i : i + batch_size], training=False)
    finally:
        for layer, original in wrapped:
            layer.activation = original
    return observed


def _new_fixed(slot: Slot, observed: dict[str, Observed], rule: StepRule) -> Fixed:
    if slot.role in ('activation', 'input'):
        seen = observed.get(slot.layer) or Observed(relu=slot.fixed.kind == 'relu')
        return rule.activation(seen, slot.fixed.bits, relu=slot.fixed.kind == 'relu')
    return rule.weight(slot.values(), slot.fixed.bits, bias=slot.role == 'bias')


def _set_integer(qmodel, slot: Slot, integer: int) -> None:
    slot.quantizer.integer = int(integer)
    slot.fixed.integer = int(integer)
    if slot.constraint_attr is None:
        return
    constraint = getattr(qmodel.get_layer(slot.layer), slot.constraint_attr, None)
    if constraint is not None and constraint.__class__.__name__ == 'Clip':
        bound = max(1.0, float(slot.quantizer.max()))  # QKeras's own rule (qlayers.get_constraint)
        constraint.min_value, constraint.max_value = -bound, bound


def refresh_ranges(
    qmodel,
    slots: list[Slot],
    calibration_x,
    rule: StepRule | None = None,
    batch_size: int = 256,
    max_passes: int = 4,
    trained_models=(),
) -> list[dict]:
    """Re-measure every range and reset the integer bits that changed (by ``rule``, default
    ``StepRule()``); returns the changes.

    A wider input range changes what the layers after it see, so the activations are
    measured again until nothing changes (at most ``max_passes`` passes).
    ``trained_models``: models that wrap ``qmodel`` in their own compiled functions (a
    distillation ``Distiller`` being fit); they are re-traced too.
    """
    rule = rule or StepRule()
    changes = []
    for _ in range(max_passes):
        observed = activation_inputs(qmodel, slots, calibration_x, batch_size, rule.percentile)
        changed = False
        for slot in slots:
            new = _new_fixed(slot, observed, rule)
            if new.integer != slot.fixed.integer:
                changes.append({'layer': slot.layer, 'role': slot.role, 'from': slot.fixed.integer, 'to': new.integer})
                _set_integer(qmodel, slot, new.integer)
                changed = True
        if not changed:
            break
    if changes:
        # QKeras reads `integer` at trace time: re-trace whatever Keras compiled.
        for model in (qmodel, *[m for m in trained_models if m is not qmodel]):
            if getattr(model, 'optimizer', None) is not None:
                model.make_train_function(force=True)
            model.test_function = None
            model.predict_function = None
    return changes


class RangeRefreshCallback(keras.callbacks.Callback):
    """Refresh the integer bits of ``qmodel``'s quantizers every ``refresh_steps`` steps,
    up to and including ``freeze_step``; after it the types are fixed.

    ``refresh_steps`` <= 0 or ``freeze_step`` < ``refresh_steps`` disables refreshing.
    ``history`` lists {'step', 'layer', 'role', 'from', 'to'} for every change.
    """

    def __init__(
        self, qmodel, plan: QuantPlan, calibration_x, refresh_steps: int, freeze_step: int, rule: StepRule | None = None
    ):
        super().__init__()
        self.qmodel = qmodel
        self.slots = quantizer_slots(qmodel, plan)
        self.calibration_x = calibration_x
        self.refresh_steps = int(refresh_steps)
        self.freeze_step = int(freeze_step)
        self.rule = rule or StepRule()
        self.step = 0
        self.refreshes = 0
        self.history: list[dict] = []

    @property
    def active(self) -> bool:
        return self.refresh_steps > 0 and self.freeze_step >= self.refresh_steps

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if not self.active or self.step > self.freeze_step or self.step % self.refresh_steps:
            return
        self.refreshes += 1
        fitted = (self.model,) if self.model is not None else ()
        for change in refresh_ranges(self.qmodel, self.slots, self.calibration_x, self.rule, trained_models=fitted):
            self.history.append({'step': self.step, **change})

    def to_dict(self) -> dict:
        return {
            'refresh_steps': self.refresh_steps,
            'freeze_step': self.freeze_step,
            'active': self.active,
            'refreshes': self.refreshes,
            'changes': self.history,
        }
