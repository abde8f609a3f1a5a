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


SYNTH_TOOLS = ('yosys',)
ECP5_DEVICE_CHOICES = ('auto', '25k', '45k', '85k')


@dataclass
class OpenSynthOptions:
    """What :func:`hls_backend.synth_open` does with an RTL project (Yosys, nextpnr)."""

    family: Annotated[
        str | None,
        setting(
            "FPGA family Yosys maps to: xc7, xcu, xcup (Xilinx; default: the project's part's family) or ecp5, "
            'nexus, ice40 (Lattice; --place uses ecp5).'
        ),
    ] = None
    part: Annotated[
        str | None, setting("Xilinx part whose family Yosys maps to (default: the project's part).", config=False)
    ] = None
    place: Annotated[
        bool,
        setting(
            'Also place and route on a Lattice ECP5 with nextpnr: utilization, Fmax against the clock period and '
            '(when the ports fit the package) a bitstream.'
        ),
    ] = False
    device: Annotated[
        Literal[ECP5_DEVICE_CHOICES],  # type: ignore[valid-type]
        setting('ECP5 device for placement (auto: the smallest that holds the mapped design).'),
    ] = 'auto'
    clock_period: Annotated[
        float | None,
        setting("Clock period in ns nextpnr times against (default: the project's).", gt=0, config=False),
    ] = None
    check_netlist: Annotated[
        bool,
        setting(
            "Simulate Yosys's netlist clock by clock (Verilator, the family's primitive models) on the project's "
            'stored samples and compare it bit for bit with the model.'
        ),
    ] = False
