"""The RTL route: QKeras model -> da4ml Verilog/VHDL -> Verilator, cycle by cycle.

:func:`write_rtl` (:mod:`.project`) writes the project, :func:`simulate_rtl`
(:mod:`.simulate`) builds it (:mod:`.build`) and runs it clock by clock, compared bit
for bit with the QKeras model; :func:`rtl` does both. The result
(``lpsubnet_rtl.json``) has the shape every route writes (:class:`RouteResult`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.results import RouteResult
from .build import build_phase, build_rtl
from .options import RTLOptions
from .project import RTL_RESULT, read_rtl_info, write_rtl
from .simulate import measure_timing, simulate_rtl


def rtl(
    model_path: str | Path,
    out_dir: str | Path,
    inputs: str | Path | np.ndarray | None = None,
    options: RTLOptions | None = None,
    *,
    force: bool = False,
    o3: bool = False,
    max_samples: int | None = None,
    shards: int = 1,
    force_large: bool = False,
    allow_wrap: bool = False,
    **settings,
) -> RouteResult:
    """:func:`write_rtl` then :func:`simulate_rtl`.

    ``inputs`` given as a file: its first TB_SAMPLES samples become the project's
    stored inputs (latency, II and the secondary checks are measured on them), then
    all of them (or the first ``max_samples``) are streamed in ``shards`` processes;
    the range of all of them is checked before anything is traced. ``options`` /
    ``settings``, ``force_large`` (a design above
    :data:`hls_backend.rtl.size.RTL_MAX_MACS`) and ``allow_wrap`` (inputs a wrapping
    input type changes): see :func:`write_rtl`.
    """
    stream = isinstance(inputs, str | Path)
    write_rtl(
        model_path,
        out_dir,
        inputs,
        options,
        inputs_source=f'inputs file {inputs}' if stream else None,
        force=force,
        force_large=force_large,
        allow_wrap=allow_wrap,
        stored_samples=TB_SAMPLES if stream else None,
        range_samples=max_samples,
        **settings,
    )
    if not stream:
        return simulate_rtl(out_dir, o3=o3)
    return simulate_rtl(out_dir, o3=o3, inputs=inputs, max_samples=max_samples, shards=shards, allow_wrap=allow_wrap)


# Samples of an inputs file stored with an RTL project: each is simulated alone (held
# for a window of clocks) to measure latency and II, then all are streamed.
TB_SAMPLES = 1000


__all__ = [
    'write_rtl',
    'simulate_rtl',
    'rtl',
    'build_rtl',
    'build_phase',
    'measure_timing',
    'read_rtl_info',
    'RTL_RESULT',
    'TB_SAMPLES',
]
