"""da4ml arithmetic that reproduces QKeras's: fixed-point rounding as ap_fixed does it,
constant-matrix products, and the input taps of a sliding window.

QKeras and hls4ml round half to even with saturation (AP_RND_CONV, AP_SAT); da4ml's
``quantize`` offers only truncation and round half up, so :func:`quantize_var` builds
round-half-to-even from them: add half an LSB minus one input step, add back one input
step when the kept LSB is odd, truncate. Convolutions and pooling are expressed per
output position over the taps that fall inside the input (:func:`window_taps`; padding
contributes zeros, so its rows are dropped).
"""

from __future__ import annotations

import numpy as np

from ..core.fixed_point import FixedType
from ..errors import UnsupportedModelError


def is_const(v) -> bool:
    return v.low == v.high


def fixed_kif(fixed: FixedType) -> tuple[int, int, int]:
    """da4ml's (keep_negative, integer bits without sign, fractional bits) of an ap type."""
    k = int(fixed.signed)
    return k, fixed.integer - k, fixed.fractional


def quantize_var(v, fixed: FixedType):
    """``v`` (a da4ml FixedVariable) assigned to ``fixed``, rounding and saturating as ap_fixed does."""
    from da4ml.trace import FixedVariable

    if is_const(v):
        return FixedVariable.from_const(float(fixed.quantize(np.float64(float(v.low)))), hwconf=v.hwconf)
    k, i, f = fixed_kif(fixed)
    overflow = {'SAT': 'SAT', 'SAT_SYM': 'SAT_SYM'}.get(fixed.saturation, 'WRAP')
    _, _, f_in = v.kif
    if f_in > f and fixed.rounding == 'RND_CONV':
        # Round half to even: floor(x/q + 1/2 - e + b*e) with e one input step (in units
        # of q) and b the kept LSB of x. Ties go up only when b is odd.
        q, e = 2.0**-f, 2.0**-f_in
        kept_lsb = v.quantize(0, 1 - f, f)  # b * q: the bit of weight q, wrapped out of x
        v = v + (q / 2 - e) + kept_lsb * (e / q)
        return v.quantize(k, i, f, overflow, 'TRN')
    if f_in > f and fixed.rounding == 'RND':
        return v.quantize(k, i, f, overflow, 'RND')
    return v.quantize(k, i, f, overflow, 'TRN')


def quantize_array(x, fixed: FixedType):
    from da4ml.trace import FixedVariableArray

    flat = [quantize_var(v, fixed) for v in x._vars.ravel()]
    return FixedVariableArray(np.array(flat, dtype=object).reshape(x.shape), hwconf=x.hwconf)


def as_array(values: np.ndarray, hwconf):
    """An object array of FixedVariables and numbers as a FixedVariableArray."""
    from da4ml.trace import FixedVariableArray

    return FixedVariableArray(np.asarray(values, dtype=object), hwconf=hwconf)


def matvec(vec: list, weights: np.ndarray, hwconf) -> np.ndarray:
    """``vec @ weights`` for a list of FixedVariables, constants folded numerically."""
    weights = np.asarray(weights, dtype=np.float64)
    var_rows = [r for r, v in enumerate(vec) if not is_const(v)]
    const_rows = [r for r, v in enumerate(vec) if is_const(v)]
    const = np.zeros(weights.shape[1])
    if const_rows:
        values = np.array([float(vec[r].low) for r in const_rows])
        const = values @ weights[const_rows]
    if not var_rows:
        return as_array(const, hwconf)._vars
    product = as_array(np.array([vec[r] for r in var_rows], dtype=object), hwconf) @ weights[var_rows]
    if np.any(const != 0):
        product = product + const
    return np.asarray(product._vars, dtype=object).reshape(weights.shape[1])


def window_taps(in_shape, window, strides, dilation, padding: str, where: str):
    """Output spatial shape and, per output position, the flat input index of each tap (-1: padding)."""
    padding = padding.lower()
    out_shape, starts = [], []
    for n, k, s, d in zip(in_shape, window, strides, dilation):
        span = (k - 1) * d + 1
        if padding == 'valid':
            out = (n - span) // s + 1
            before = 0
        elif padding == 'same':
            out = -(-n // s)
            before = max((out - 1) * s + span - n, 0) // 2
        elif padding == 'causal':
            out, before = -(-n // s), span - 1
        else:
            raise UnsupportedModelError(f"{where}: padding '{padding}' is not supported; use 'valid' or 'same'")
        if out <= 0:
            raise UnsupportedModelError(f'{where}: window {window} does not fit the input {tuple(in_shape)}')
        out_shape.append(out)
        starts.append((out, before))
    taps = []
    for pos in np.ndindex(*out_shape):
        row = []
        for tap in np.ndindex(*window):
            index = []
            for p, t, s, d, n, (_, before) in zip(pos, tap, strides, dilation, in_shape, starts):
                j = p * s + t * d - before
                index.append(j if 0 <= j < n else -1)
            row.append(-1 if -1 in index else int(np.ravel_multi_index(index, in_shape)))
        taps.append(row)
    return tuple(out_shape), np.array(taps, dtype=np.int64)


def as_tuple(value, n: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)
