"""Trace a QKeras model into da4ml's combinational logic (the RTL route's front half).

da4ml has no QKeras reader: :func:`replay_model` walks the Keras graph and has each
layer's kind (:mod:`hls_backend.rtl.layers`) re-express it with da4ml's traceable
fixed-point arithmetic (:mod:`hls_backend.rtl.arithmetic`), so that da4ml can emit a
fully unrolled, pipelined RTL design computing exactly what QKeras computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.layer_kinds import where
from ..core.plan import ModelPlan, inbound
from ..errors import UnsupportedModelError
from .arithmetic import fixed_kif, is_const
from .layers import RTL_LAYERS


@dataclass
class Trace:
    """What a layer kind's replay needs besides its inputs: the plan (the softmax left out),
    da4ml's hardware configuration and the progress display."""

    plan: ModelPlan
    hwconf: object
    progress: object = None  # a rtl.size.TraceProgress, or None

    def position(self, done: int, total: int) -> None:
        """Output positions of the current layer traced so far (for the progress display)."""
        if self.progress is not None:
            self.progress.position(done, total)


def replay_model(model, plan: ModelPlan, hwconf, progress=None):
    """Trace ``model`` into a da4ml CombLogic: returns (comb_logic, input array, output array).

    The input is quantized to ``plan.input_type`` (the type test inputs are put on);
    the output is the model's output flattened (logits when a final softmax is left out).
    ``progress`` (a :class:`hls_backend.rtl.size.TraceProgress`) hears of each layer and
    output position as it is traced.
    """
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    input_op = model.inputs[0]._keras_history.operation
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    inp = FixedVariableArrayInput(shape, hwconf=hwconf)
    k, i, f = fixed_kif(plan.input_type)
    values = {id(input_op): inp.quantize(k, i, f)}
    trace = Trace(plan, hwconf, progress)
    output_op = model.outputs[0]._keras_history.operation
    layers = [lay for lay in model.layers if lay is not input_op and lay.__class__.__name__ != 'InputLayer']
    for index, layer in enumerate(layers, start=1):
        if progress is not None:
            progress.layer(layer, index, len(layers))
        sources = inbound(layer)
        missing = [s.name for s in sources if id(s) not in values]
        if missing:
            raise UnsupportedModelError(
                f'{where(layer)}: its inputs {missing} are not computed before it (nested models are not supported)'
            )
        values[id(layer)] = RTL_LAYERS.lookup(layer).replay(layer, [values[id(s)] for s in sources], trace)
    if id(output_op) not in values:
        raise UnsupportedModelError(f"the model's output layer '{output_op.name}' was not reached")
    out = values[id(output_op)]
    out_flat = out.ravel() if hasattr(out, 'ravel') else out
    if progress is not None:
        progress.finishing()
    comb = comb_trace(inp.ravel(), out_flat, keep_dead_inputs=True)
    if io_widths(comb)['output']['width'] == 0:
        # Every output is the constant 0: da4ml writes 0-bit output ports ([-1:0]), which
        # Verilator refuses (found by make fuzz: rtl seed 300004 of campaign 4, a 1-bit
        # unsigned quantizer that rounds every input below 0.5 to 0).
        source = next(
            (layer for layer in model.layers if id(layer) in values and _all_constant(values[id(layer)])), None
        )
        cause = f'; from {where(source)} on, no value depends on the input' if source is not None else ''
        raise UnsupportedModelError(
            f'every output of the model is the constant 0{cause}, so its RTL design would have no output bits '
            '(a 0-bit port no simulator builds); check the quantizers there (their ranges and steps)'
        )
    return comb, inp, out_flat


def _all_constant(value) -> bool:
    variables = value._vars.ravel() if hasattr(value, '_vars') else np.asarray(value, dtype=object).ravel()
    return all(not hasattr(v, 'low') or is_const(v) for v in variables)


def io_widths(solution) -> dict:
    """Bits per I/O element as the simulation passes them (da4ml pads each port's elements
    to the widest: max sign + max integer + max fractional bits), and the raw kifs.

    ``solution``: the CombLogic or Pipeline that is written; they can differ (a pipeline
    gives an unused input the interval 0, kif (0, 0, 0)), and da4ml's binder pads by
    the one it writes."""
    from da4ml.types import minimal_kif

    def port(qints):
        kifs = np.array([tuple(minimal_kif(q)) for q in qints], dtype=np.int64)
        k, i, f = (int(kifs[:, j].max()) for j in range(3))
        widest = int(np.argmax(kifs.sum(axis=1)))
        return {
            'k': k,
            'i': i,
            'f': f,
            'width': k + i + f,
            'widest_element': widest,
            'widest_element_bits': int(kifs[widest].sum()),
        }

    return {'input': port(solution.inp_qint), 'output': port(solution.out_qint)}


__all__ = ['Trace', 'replay_model', 'io_widths']
