"""QKeras quantizers as ap_fixed types, and numpy quantization onto such a type.

The mapping is the one that makes hls4ml's C++ compute what QKeras computes:

========================================  ==========================================
QKeras quantizer (alpha=1)                ap type (rounding, overflow)
========================================  ==========================================
quantized_bits(b, i)                      ap_fixed<b, i+1, AP_RND_CONV, AP_SAT>
quantized_bits(b, i, keep_negative=0)     ap_ufixed<b, i, AP_RND_CONV, AP_SAT>
quantized_bits(b, i, symmetric=1)         ap_fixed<b, i+1, AP_RND_CONV, AP_SAT_SYM>
quantized_relu(b, i)                      ap_ufixed<b, i, AP_RND_CONV, AP_SAT>
========================================  ==========================================

The rule holds over the whole range QKeras accepts: integer bits may be negative
(``quantized_bits(4, -2)`` is ``ap_fixed<4,-1>``, a step of 2^-5) or reach and pass
the width (``quantized_bits(3, 3)`` is ``ap_fixed<3,4>``, a step of 2; hls4ml's own
rule types it ``int<3>``, which both routes override). Refused: a 1-bit signed
``quantized_bits`` (QKeras computes the sign, +-1), ``qnoise_factor`` other than 1,
and ``quantized_relu`` with negative integer bits (QKeras itself fails on it).

QKeras rounds half to even (``tf.round``), which is AP_RND_CONV. Quantizers with a
learned or per-channel scale (``alpha='auto'``, ``'auto_po2'``), power-of-two
exponent quantizers, stochastic rounding and the sigmoid/tanh families have no
bit-exact ap_fixed equivalent in hls4ml 1.3.0 and are refused by name (a route may
accept quantized_po2 weights, which hls4ml multiplies by shifting: see
``layer_kinds.Weighted.po2_roles``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedModelError

SUPPORTED_QUANTIZERS = ('quantized_bits', 'quantized_relu')


@dataclass(frozen=True)
class FixedType:
    """A two's-complement fixed-point type: ``width`` bits of which ``integer`` are
    integer bits (sign included when ``signed``)."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = 'RND_CONV'
    saturation: str = 'SAT'

    @property
    def fractional(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0**-self.fractional

    @property
    def min_value(self) -> float:
        if not self.signed:
            return 0.0
        if self.saturation == 'SAT_SYM':
            return -(2.0 ** (self.integer - 1)) + self.lsb
        return -(2.0 ** (self.integer - 1))

    @property
    def max_value(self) -> float:
        top = self.integer - 1 if self.signed else self.integer
        return 2.0**top - self.lsb

    def hls4ml(self) -> str:
        """hls4ml's precision string, e.g. ``fixed<8,3,RND_CONV,SAT>``."""
        kind = 'fixed' if self.signed else 'ufixed'
        return f'{kind}<{self.width},{self.integer},{self.rounding},{self.saturation}>'

    def ap(self) -> str:
        """The C++ type, e.g. ``ap_fixed<8,3,AP_RND_CONV,AP_SAT>``."""
        kind = 'ap_fixed' if self.signed else 'ap_ufixed'
        return f'{kind}<{self.width},{self.integer},AP_{self.rounding},AP_{self.saturation}>'

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """``values`` assigned to this type as in C++: rounded onto the grid (AP_TRN: down,
        otherwise half to even, as AP_RND_CONV), then what leaves the range saturates
        (AP_SAT, AP_SAT_SYM), becomes 0 (AP_SAT_ZERO) or wraps around (AP_WRAP)."""
        return self.overflow(self.steps(values)) * self.lsb

    def steps(self, values: np.ndarray) -> np.ndarray:
        """``values`` rounded onto the grid, in LSBs, before any overflow handling."""
        scaled = np.asarray(values, dtype=np.float64) / self.lsb
        if self.rounding == 'TRN':
            return np.floor(scaled)
        return np.round(scaled)  # numpy rounds half to even, as AP_RND_CONV

    def overflow(self, steps: np.ndarray) -> np.ndarray:
        """Grid values (in LSBs) brought into the range as the type's overflow mode says."""
        low, high = self.min_value / self.lsb, self.max_value / self.lsb
        if self.saturation == 'WRAP':
            # Two's complement keeps the low ``width`` bits (widths up to 53 are exact here).
            bottom = -(2.0 ** (self.width - 1)) if self.signed else 0.0
            return np.mod(steps - bottom, 2.0**self.width) + bottom
        if self.saturation == 'SAT_ZERO':
            return np.where((steps < low) | (steps > high), 0.0, steps)
        return np.clip(steps, low, high)


_AP_TYPE = re.compile(
    r'^(?:ap_)?(?P<kind>u?fixed)<\s*(?P<w>\d+)\s*,\s*(?P<i>-?\d+)\s*'
    r'(?:,\s*(?:AP_)?(?P<rnd>[A-Z_]+)\s*)?(?:,\s*(?:AP_)?(?P<sat>[A-Z_]+)\s*)?(?:,\s*\d+\s*)?>$'
)


def parse_fixed_type(text: str) -> FixedType:
    """Parse ``ap_fixed<16,6>``, ``fixed<8,3,RND_CONV,SAT>`` or ``ap_ufixed<8,2>``."""
    match = _AP_TYPE.match(text.strip())
    if not match:
        raise ValueError(
            f'cannot read fixed-point type {text!r}: expected e.g. ap_fixed<16,6> or ap_ufixed<8,2,AP_RND_CONV,AP_SAT>'
        )
    width, integer = int(match['w']), int(match['i'])
    if not 1 <= width <= 64:
        raise ValueError(f'fixed-point type {text!r}: width {width} outside 1..64')
    return FixedType(
        width=width,
        integer=integer,
        signed=match['kind'] == 'fixed',
        rounding=match['rnd'] or 'TRN',
        saturation=match['sat'] or 'WRAP',
    )


def quantizer_config(quantizer) -> tuple[str, dict]:
    """(class name, config) of a QKeras quantizer object or its serialized dict."""
    if isinstance(quantizer, dict):
        return quantizer['class_name'], dict(quantizer.get('config', {}))
    if hasattr(quantizer, 'get_config'):
        return quantizer.__class__.__name__, dict(quantizer.get_config())
    return getattr(quantizer, '__name__', type(quantizer).__name__), {}


def quantizer_type(quantizer, where: str) -> FixedType:
    """The ap type that holds exactly the values ``quantizer`` produces.

    ``where`` names the layer and role (e.g. ``"layer 'd1' kernel_quantizer"``) for
    the error raised when the quantizer has no bit-exact fixed-point equivalent.
    """
    name, config = quantizer_config(quantizer)
    if name not in SUPPORTED_QUANTIZERS:
        raise UnsupportedModelError(
            f'{where}: quantizer {name} has no bit-exact fixed-point form; supported: {", ".join(SUPPORTED_QUANTIZERS)}'
        )
    alpha = config.get('alpha')
    if alpha not in (None, 1, 1.0):
        raise UnsupportedModelError(
            f'{where}: {name} with alpha={alpha!r} uses a learned scale; use alpha=1 (power-of-two fixed point)'
        )
    if config.get('use_stochastic_rounding'):
        raise UnsupportedModelError(f'{where}: {name} with stochastic rounding cannot be reproduced in hardware')
    if float(config.get('qnoise_factor', 1.0)) != 1.0:
        raise UnsupportedModelError(
            f'{where}: {name} with qnoise_factor={config["qnoise_factor"]} mixes the float value into its output '
            '(a training device); use qnoise_factor=1 for the model you convert'
        )
    bits = int(config['bits'])
    integers = np.unique(np.asarray(config.get('integer', 0)))
    if integers.size != 1:
        raise UnsupportedModelError(
            f'{where}: {name} with integer bits per channel ({", ".join(map(str, integers))}) has no single '
            'fixed-point type; use one integer value'
        )
    integer = int(integers[0])
    if name == 'quantized_bits':
        keep_negative = bool(config.get('keep_negative', True))
        symmetric = bool(config.get('symmetric', False))
        if keep_negative and bits == 1:
            # QKeras computes sign(x) with 0 -> +1 here (its "binary" branch), not a grid.
            raise UnsupportedModelError(
                f'{where}: quantized_bits(1, {integer}) with keep_negative computes the sign (+1 or -1), which no '
                'fixed-point cast reproduces; use 2 or more bits'
            )
        if keep_negative:
            return FixedType(bits, integer + 1, True, 'RND_CONV', 'SAT_SYM' if symmetric else 'SAT')
        return FixedType(bits, integer, False, 'RND_CONV', 'SAT')
    # quantized_relu
    if config.get('negative_slope', 0.0):
        raise UnsupportedModelError(
            f'{where}: quantized_relu with negative_slope is not supported; use negative_slope=0'
        )
    if config.get('use_sigmoid'):
        raise UnsupportedModelError(f'{where}: quantized_relu with use_sigmoid is not supported')
    if config.get('relu_upper_bound') is not None:
        raise UnsupportedModelError(f'{where}: quantized_relu with relu_upper_bound is not supported')
    if integer < 0:
        raise UnsupportedModelError(
            f'{where}: quantized_relu({bits}, {integer}) has a negative integer bit count, which QKeras itself '
            'cannot compute (2 ** integer in integer arithmetic); use integer >= 0'
        )
    return FixedType(bits, integer, False, 'RND_CONV', 'SAT')
