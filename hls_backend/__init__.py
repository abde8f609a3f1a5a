"""lpsubnet's HLS back end: any saved QKeras model -> bit-exact hls4ml HLS project.

Public entry points:
- :func:`write_project` - QKeras ``.keras`` file -> Vivado/Vitis HLS project directory
- :func:`csim` - vendor-free C simulation of that project, compared bit for bit
- :func:`synth` - vendor tool steps (csim, csynth, cosim, export) where the tool exists
- :func:`rtl` - da4ml Verilog/VHDL + Verilator cycle-accurate simulation, compared bit for bit

This package never imports :mod:`pruner`: it reads any saved QKeras model.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version('lpsubnet')
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = '0+unknown'

from .convert import HLSOptions, ProjectInfo, read_project_info, relink_project, write_project  # noqa: E402
from .csim import csim  # noqa: E402
from .rtl import rtl, simulate_rtl, write_rtl  # noqa: E402
from .vendor import synth  # noqa: E402

__all__ = [
    'HLSOptions',
    'ProjectInfo',
    'write_project',
    'read_project_info',
    'relink_project',
    'csim',
    'synth',
    'rtl',
    'write_rtl',
    'simulate_rtl',
    '__version__',
]
