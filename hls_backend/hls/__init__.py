"""The HLS route: hls4ml conversion with lpsubnet's Keras-3 QKeras handlers (convert,
qkeras_bridge), its layer kinds (layers), vendor-free C simulation (csim) and the vendor
tool steps (vendor)."""

from .convert import relink_project, write_project
from .csim import csim
from .options import HLSOptions
from .vendor import synth

__all__ = ['HLSOptions', 'write_project', 'relink_project', 'csim', 'synth']
