"""The RTL route's hardware cost of a QKeras model without writing or building anything:
the model is planned and traced with da4ml as :func:`hls_backend.rtl.project.write_rtl`
does, and da4ml's cost model prices the traced logic (LUTs). A trace of a small MLP
takes well under a second, so a search can price many candidates (the pruner's
budgeted precision allocation, ``lpsubnet prune --max-lut``).

The figure is the combinational logic's cost; ``write_rtl``'s ``lut_estimate`` is that of
the pipelined design, which adds registers (FF) but prices the same operations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..core.model_io import load_qkeras_model


@dataclass(frozen=True)
class CostEstimate:
    """da4ml's estimate of one design: LUTs of its logic, multiply-accumulates per
    sample, and how long the trace took."""

    lut_estimate: float
    macs: int
    trace_seconds: float


def estimate_cost(model, input_precision: str | None = None) -> CostEstimate:
    """da4ml's LUT estimate of the RTL design of ``model`` (a QKeras model in memory, or the
    path of a saved one). Raises UnsupportedModelError where ``write_rtl`` would refuse
    the model. ``input_precision``: the input type when the model has no input quantizer."""
    from da4ml.trace import HWConfig

    from ..core.plan import plan_model
    from .layers import RTL_LAYERS
    from .options import RTLOptions
    from .replay import replay_model
    from .size import design_size

    if isinstance(model, (str, Path)):
        model = load_qkeras_model(model)
    plan = plan_model(model, RTL_LAYERS, input_precision=input_precision or RTLOptions().input_precision)
    size = design_size(model, RTL_LAYERS)
    start = time.perf_counter()
    comb, _, _ = replay_model(model, plan, HWConfig(1, -1, -1), None)
    return CostEstimate(float(comb.cost), int(size.macs), time.perf_counter() - start)
