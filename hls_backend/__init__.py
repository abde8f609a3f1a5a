"""lpsubnet's hardware back end: any saved QKeras model -> bit-exact HLS project or RTL design.

Layout: ``core/`` (reading QKeras models, fixed-point types, layer kinds and the
precision plan, exactness checks, project and result records, atomic files,
templates) and two routes over it, ``hls/`` (hls4ml) and ``rtl/`` (da4ml +
Verilator); see docs/architecture.md.

Public entry points:
- :func:`write_project` - QKeras ``.keras`` file -> Vivado/Vitis HLS project directory
- :func:`csim` - vendor-free C simulation of that project, compared bit for bit
- :func:`synth` - vendor tool steps (csim, csynth, cosim, export) where the tool exists
- :func:`synth_open` - Yosys mapping (and nextpnr placement on ECP5) of an RTL project, from PyPI
- :func:`rtl` - da4ml Verilog/VHDL + Verilator cycle-accurate simulation, compared bit for bit
- :func:`estimate_cost` - da4ml's LUT estimate of the RTL design of a QKeras model, nothing written
- :func:`check_supported` - a route's refusals of a QKeras model in memory, before anything is built
- :func:`register`, :func:`exact_config` - for an hls4ml user's own script: lpsubnet's QKeras
  handlers and corrections registered with hls4ml (:func:`registered` lists them,
  :func:`unregister` takes them out), and the hls4ml config that makes its conversion exact

This package never imports :mod:`pruner`: it reads any saved QKeras model.
"""

from .core.model_io import load_qkeras_model
from .core.project import DEFAULT_PART, ProjectInfo, read_project_info
from .hls import HLSOptions, csim, relink_project, synth, write_project
from .hls.hls4ml_script import exact_config, register, registered, unregister
from .rtl.cost import CostEstimate, estimate_cost
from .rtl.open_synth import synth_open
from .rtl.options import OpenSynthOptions, RTLOptions
from .rtl.route import rtl, simulate_rtl, write_rtl
from .supported import check_supported
from .version import __version__

__all__ = [
    'DEFAULT_PART',
    'HLSOptions',
    'RTLOptions',
    'OpenSynthOptions',
    'ProjectInfo',
    'load_qkeras_model',
    'write_project',
    'read_project_info',
    'relink_project',
    'csim',
    'synth',
    'synth_open',
    'rtl',
    'write_rtl',
    'simulate_rtl',
    'estimate_cost',
    'check_supported',
    'CostEstimate',
    'register',
    'registered',
    'unregister',
    'exact_config',
    '__version__',
]
