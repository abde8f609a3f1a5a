"""Oscillation dampening: latent weights that settle in their quantization bins during QAT.

Quantization-aware training passes gradients straight through the rounding, so a latent
weight near a rounding threshold is pushed back across it as soon as it crosses: its
quantized value flips step after step, however small the learning rate (Nagel et al.,
"Overcoming Oscillations in Quantization-Aware Training", ICML 2022). At 2-4 bits one
flip moves a weight by a whole step, and the network the last epoch ends on is a draw
among those flips. Measured on letter (an MLP at a 4k-LUT budget, 2-3-bit weights):
about 30 kernel weights changed value from one epoch to the next while the learning
rate decayed to 0, and validation accuracy swung between 36 % and 51 % epoch to epoch.

The remedy here is theirs: a penalty ``strength(t) * sum((clip(w) - q(w))**2)`` over
every quantized kernel weight, with ``q(w)`` held constant so its gradient pulls each
latent weight toward the centre of the bin it is in (``clip``: the quantizer's range, so
weights beyond it are left to the range). In weight units, as theirs: the pull on a
weight at a threshold is ``strength * LSB``, strong at 2-4 bits where a flip moves the
weight by a large step, and small at 8 where a flip hardly matters and the weights
should keep training. ``strength`` rises from 0 on a half cosine from ``start_step`` to
the end of QAT: until the last weight masks and integer bits are set weights move freely
between bins, the network still adapting to them (tried on letter at a 2k-LUT budget with
a penalty ramped from the first step: no kernel weight changed value after mid-QAT, just
as the weight-sparsity ramp took its last weights away, and accuracy stayed where that
left it), then each one settles.

Only kernels whose quantizer receives the variable itself are dampened (a BatchNorm
fused into its layer, joint mode, quantizes a folded kernel) and only ``quantized_bits``
(a power-of-two step). Flips are counted at every epoch's end whatever the strength:
the QAT phase of the manifest says how many kernel weights still changed value.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
from keras import ops

from .layers import WEIGHT_ROLES, FusedBatchNorm, lookup, weight_name
from .quantize import Fixed


def dampened_kernels(qmodel) -> list[tuple[str, object, object]]:
    """(layer name, kernel variable, its quantizer) of every kernel the penalty applies to."""
    out = []
    for layer in qmodel.layers:
        kind = lookup(layer)
        if kind is None or isinstance(kind, FusedBatchNorm):
            continue
        for variable in layer.trainable_weights:
            role = WEIGHT_ROLES.get(weight_name(variable))
            if role is None or role.role == 'bias':
                continue
            quantizer = getattr(layer, role.quantizer_attr, None)
            if all(hasattr(quantizer, a) for a in ('bits', 'integer', 'keep_negative')):
                out.append((layer.name, variable, quantizer))
    return out


class OscillationDampening(keras.callbacks.Callback):
    """The dampening penalty on ``qmodel``'s quantized kernels while it trains for
    ``total_steps`` steps, rising from ``start_step`` (``strength`` 0: flips are only counted)."""

    def __init__(self, qmodel, strength: float, total_steps: int, start_step: int = 0):
        super().__init__()
        self.max_strength = float(strength)
        self.total_steps = max(1, int(total_steps))
        self.start_step = min(max(0, int(start_step)), self.total_steps - 1)
        self.kernels = dampened_kernels(qmodel)
        self.flips: list[int] = []  # kernel weights whose quantized value changed, per epoch
        self._step = 0
        self._values = []
        self._strength = keras.Variable(0.0, trainable=False, dtype='float32', name='oscillation_dampening')
        self._previous = []

    def _penalty(self, quantizer, w):
        fixed = Fixed.of(quantizer)
        off = ops.clip(w, fixed.min_value, fixed.max_value) - ops.stop_gradient(quantizer(w))
        return self._strength * ops.sum(off * off)

    def _quantized(self) -> list[np.ndarray]:
        return [np.asarray(quantizer(variable.numpy())) for _, variable, quantizer in self.kernels]

    def on_train_begin(self, logs=None):
        self._values = self._quantized()
        if self.max_strength > 0:
            # Keras adds a variable's regularizer to the training loss (Layer.losses) when the step is
            # traced (after this); the quantizer's integer bits are read then too, as QKeras reads them.
            for _, variable, quantizer in self.kernels:
                self._previous.append((variable, variable.regularizer))
                variable.regularizer = functools.partial(self._penalty, quantizer)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.max_strength > 0:
            t = min(1.0, max(0, self._step - self.start_step) / (self.total_steps - self.start_step))
            self._strength.assign(self.max_strength * 0.5 * (1.0 - math.cos(math.pi * t)))

    def on_epoch_end(self, epoch, logs=None):
        values = self._quantized()
        self.flips.append(int(sum(np.sum(a != b) for a, b in zip(values, self._values))))
        self._values = values

    def on_train_end(self, logs=None):
        for variable, regularizer in self._previous:
            variable.regularizer = regularizer
        self._previous = []

    def to_dict(self) -> dict:
        return {
            'strength': self.max_strength,
            'start_step': self.start_step,
            'layers': sorted({name for name, _, _ in self.kernels}),
            'kernel_flips_per_epoch': list(self.flips),
        }


__all__ = ['OscillationDampening', 'dampened_kernels']
