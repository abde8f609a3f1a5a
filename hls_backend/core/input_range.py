"""Test inputs outside the input type's range: counted, reported, and refused where they wrap.

Test inputs are put on the input type's grid before both the QKeras model and the
design see them. A value that leaves the type's range changes by more than rounding:
a saturating type (AP_SAT, the type of every QKeras input quantizer) clips it to the
nearest end; a wrapping one (AP_WRAP, the default of a declared ``ap_fixed<W,I>``)
keeps its low bits, so ``ap_ufixed<8,0>`` turns every pixel equal to 1.0 into 0. Both
sides of a check see the same changed values, so the check stays exact while the model
has been handed other data (issue 27: [0, 1] pixels with ``--input-precision
'ap_ufixed<8,0>'``: 4,561 of 5,000 samples touched, C simulation EXACT, accuracy down
from 99.22 % to 96.78 %, nothing said). So :class:`InputRange` counts the samples and
values outside the range and how far outside they lie; saturation is reported, and
wrapping refused unless the caller allows it (``allow_wrap``, CLI ``--allow-wrap``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BadInputError
from .fixed_point import FixedType

ALLOW_WRAP_HINT = '--allow-wrap (allow_wrap=True in Python)'


@dataclass
class InputRange:
    """What putting inputs on ``input_type`` did to values outside its range, over
    chunks of samples (:meth:`quantize` each chunk in turn)."""

    input_type: FixedType
    source: str  # names the inputs in messages
    samples: int = 0
    values: int = 0
    samples_outside: int = 0
    values_outside: int = 0
    first_sample: int | None = None  # the first sample with a value outside
    max_distance: float = 0.0  # how far beyond the range the farthest value lies
    farthest: float | None = None  # that value
    max_change: float = 0.0  # the largest change the overflow made to a value (after rounding)

    @property
    def wraps(self) -> bool:
        return self.input_type.saturation == 'WRAP'

    def quantize(self, chunk: np.ndarray) -> np.ndarray:
        """The next samples (first axis) on the input type, counted."""
        t = self.input_type
        x = np.asarray(chunk, dtype=np.float64)
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            bad = self.samples + int(np.flatnonzero(~finite)[0])
            raise BadInputError(f'{self.source}: sample {bad} holds NaN or infinite values')
        steps = t.steps(x)
        kept = t.overflow(steps)
        flat_steps, flat_x = steps.reshape(len(x), -1), x.reshape(len(x), -1)
        outside = flat_steps != kept.reshape(len(x), -1)
        per_sample = outside.any(axis=1)
        if per_sample.any():
            if self.first_sample is None:
                self.first_sample = self.samples + int(np.flatnonzero(per_sample)[0])
            beyond = np.maximum(t.min_value - flat_x, flat_x - t.max_value)[outside]
            k = int(np.argmax(beyond))
            if beyond[k] > self.max_distance:
                self.max_distance, self.farthest = float(beyond[k]), float(flat_x[outside][k])
            change = np.abs(flat_steps - kept.reshape(len(x), -1))[outside] * t.lsb
            self.max_change = max(self.max_change, float(change.max()))
            self.samples_outside += int(per_sample.sum())
            self.values_outside += int(outside.sum())
        self.samples += len(x)
        self.values += flat_x.size
        return kept * t.lsb

    def message(self) -> str | None:
        """One line about the values outside the range, or None when there are none."""
        if not self.values_outside:
            return None
        t = self.input_type
        effect = {'WRAP': 'wrapped around', 'SAT_ZERO': 'set to 0'}.get(t.saturation, 'saturated to the nearest end')
        effect += f' (changed by up to {self.max_change!r})'
        return (
            f'{self.source}: {self.samples_outside:,} of {self.samples:,} samples ({self.values_outside:,} of '
            f'{self.values:,} values) lie outside the range [{t.min_value!r}, {t.max_value!r}] of the input type '
            f'{t.ap()}, by up to {self.max_distance!r} (value {self.farthest!r}; first in sample {self.first_sample}), '
            f'and were {effect}; the model and the design both see the changed values'
        )

    def to_dict(self) -> dict | None:
        """The counts and the message for result records; None when nothing was outside."""
        if not self.values_outside:
            return None
        return {
            'input_type': self.input_type.ap(),
            'samples': self.samples,
            'samples_outside': self.samples_outside,
            'values': self.values,
            'values_outside': self.values_outside,
            'first_sample': self.first_sample,
            'max_distance': self.max_distance,
            'farthest': self.farthest,
            'max_change': self.max_change,
            'overflow': self.input_type.saturation,
            'message': self.message(),
        }

    def check(self, allow_wrap: bool) -> None:
        """Refuse inputs that a wrapping type changes, unless ``allow_wrap``."""
        if self.wraps and self.values_outside and not allow_wrap:
            t = self.input_type
            raise BadInputError(
                f'{self.message()}. A wrapping input type turns such values into others far away (with '
                f'{t.ap()} the value {self.farthest!r} becomes {float(t.quantize(self.farthest))!r}), and the '
                'check would still pass because both sides see them: give the input type the integer bits the '
                f'data need or AP_SAT{_example(t, self.farthest)}, scale the data into the range, or pass '
                f'{ALLOW_WRAP_HINT} to check the wrapped values anyway'
            )


def scan(x, input_type: FixedType, source: str, n: int | None = None, chunk: int = 65536) -> InputRange:
    """The InputRange of the first ``n`` samples of ``x`` (an array or memmap), a chunk at a time."""
    seen = InputRange(input_type, source)
    n = len(x) if n is None else min(n, len(x))
    for start in range(0, n, chunk):
        seen.quantize(np.asarray(x[start : min(start + chunk, n)]))
    return seen


def _example(t: FixedType, value: float) -> str:
    """' (e.g. <type>)': the type with as many more integer bits as ``value`` needs, same LSB."""
    if value < 0 and not t.signed:
        return ' (a signed type: the data are negative)'
    extra = 0
    wider = t
    while not wider.min_value <= value <= wider.max_value and extra < 64:
        extra += 1
        wider = FixedType(t.width + extra, t.integer + extra, t.signed, t.rounding, t.saturation)
    return f' (e.g. {wider.ap()})'


__all__ = ['InputRange', 'scan', 'ALLOW_WRAP_HINT']
