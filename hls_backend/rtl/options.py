"""``RTLOptions``: the RTL route's settings (da4ml and the Verilator build), each declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from declared_settings import setting

from ..core.options import TargetOptions

HDLS = ('verilog', 'vhdl')


@dataclass
class RTLOptions(TargetOptions):
    """What :func:`hls_backend.write_rtl` makes of a QKeras model."""

    hdl: Annotated[Literal[HDLS], setting('Hardware description language of the design.')] = 'verilog'  # type: ignore[valid-type]
    latency_cutoff: Annotated[
        float,
        setting(
            "da4ml's delay budget per pipeline stage, in its adder-delay units (not ns; more means fewer stages).",
            gt=0,
        ),
    ] = 5.0
    n_samples: Annotated[
        int,
        setting('Random test samples over the input range when no inputs are given.', ge=1, cli=False, config=False),
    ] = 200
    seed: Annotated[int, setting('Seed of those random samples.', cli=False, config=False)] = 0
