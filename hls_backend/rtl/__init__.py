"""The RTL route: the da4ml replay of a QKeras model (replay, with its layer kinds in
layers), the RTL project and its clock-by-clock Verilator simulation (route), and the
Verilator installation it builds with (verilator_setup). No hls4ml."""

from .route import RTL_RESULT, build_rtl, measure_timing, read_rtl_info, rtl, simulate_rtl, write_rtl

__all__ = ['RTL_RESULT', 'build_rtl', 'measure_timing', 'read_rtl_info', 'rtl', 'simulate_rtl', 'write_rtl']
