"""The RTL route's hardware cost of a QKeras model without writing or building anything:
the model is planned and traced with da4ml as :func:`hls_backend.rtl.project.write_rtl`
does, and da4ml's cost model prices the traced logic (LUTs). A trace of a small MLP
takes well under a second, so a search can price many candidates (the pruner's
budgeted precision allocation, ``lpsubnet prune --max-lut``).

The figure is the combinational logic's cost; ``write_rtl``'s ``lut_estimate`` is that of
the pipelined design, which adds registers (FF) but prices the same operations.

Given test inputs, the priced logic is also run by da4ml's interpreter and compared bit
for bit with the QKeras model (a check in seconds, without Verilator: a benchmark
that prices many designs checks each one it reports; the cycle-accurate simulation of
``lpsubnet rtl`` is the full check of one design).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..core.exact_pairs import plan_folded
from ..core.model_io import load_qkeras_model


@dataclass(frozen=True)
class CostEstimate:
    """da4ml's estimate of one design: LUTs of its logic, multiply-accumulates per
    sample, and how long the trace took."""

    lut_estimate: float
    macs: int
    trace_seconds: float
    samples: int = 0  # test inputs run through the traced logic (0: none given)
    exact_samples: int = 0  # of those, the samples whose every output equals the QKeras model's


def estimate_cost(model, input_precision: str | None = None, inputs=None) -> CostEstimate:
    """da4ml's LUT estimate of the RTL design of ``model`` (a QKeras model in memory, or the
    path of a saved one). Raises UnsupportedModelError where ``write_rtl`` would refuse
    the model. ``input_precision``: the input type when the model has no input quantizer.
    ``inputs``: test inputs (put on the input type's grid) on which the traced logic is
    compared with the QKeras model (``samples``, ``exact_samples``)."""
    import numpy as np
    from da4ml.trace import HWConfig

    from ..core.plan import check_float32_reference
    from ..core.reference import prepare_inputs, reference_outputs
    from ..core.results import RouteResult, compare_exact
    from .layers import RTL_LAYERS
    from .options import RTLOptions
    from .replay import replay_model
    from .size import design_size

    if isinstance(model, (str, Path)):
        model = load_qkeras_model(model)
    model, plan = plan_folded(model, RTL_LAYERS, input_precision=input_precision or RTLOptions().input_precision)
    size = design_size(model, RTL_LAYERS)
    start = time.perf_counter()
    comb, _, _ = replay_model(model, plan, HWConfig(1, -1, -1), None)
    seconds = time.perf_counter() - start
    if inputs is None:
        return CostEstimate(float(comb.cost), int(size.macs), seconds)
    check_float32_reference(model, plan, RTL_LAYERS)
    x, _ = prepare_inputs(model, plan, np.asarray(inputs), 'inputs')
    reference = reference_outputs(model, plan, x).reshape(x.shape[0], -1)
    traced = np.asarray(comb.predict(x.reshape(x.shape[0], -1)), dtype=np.float64)
    check = compare_exact(
        reference, traced, RouteResult(route='rtl_trace', tool='da4ml CombLogic.predict', project_dir='')
    )
    return CostEstimate(float(comb.cost), int(size.macs), seconds, check.samples, check.exact_matches)
