"""Read a QKeras model once and decide how it becomes an exact HLS design.

The plan says, before anything is written:
- which fixed-point type each weight, bias and quantized activation gets,
- where the input's type comes from (a model-level input quantizer, or a type the
  user declared) so that test inputs can be put on that grid,
- whether a final softmax is left out (hls4ml's table softmax is not exact; the
  logits are),
and refuses, naming the layer, anything that would make C simulation differ from
the model: unquantized weights or hidden activations, batch normalization that was
not folded, quantizers without a fixed-point form, layers the back end does not map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnsupportedModelError
from .fixed_point import FixedType, parse_fixed_type, quantizer_config
from .layer_kinds import FLOAT32_BITS, Registry, of_type

# The input type when the model has no input quantizer and none is declared.
DEFAULT_INPUT_TYPE = 'ap_fixed<16,6,AP_RND_CONV,AP_SAT>'


@dataclass
class ModelPlan:
    input_type: FixedType
    input_source: str  # human-readable: where the input type comes from
    input_quantizer_layer: str | None  # QActivation right after the input, if any
    softmax_layer: str | None  # layer whose softmax is left out of the hardware
    softmax_is_layer: bool  # True: a separate Activation/Softmax layer; False: a Q-layer's activation=
    precisions: dict[str, dict[str, str]] = field(default_factory=dict)  # hls4ml layer name -> Precision
    exact: bool = True  # False when the user allowed a default precision for something inexact
    notes: list[str] = field(default_factory=list)
    # Weighted layer name -> (fractional bits, bound on |value|) of its exact sum, bias
    # included (check_float32_reference fills it): the accumulator and an unquantized
    # result must hold it, whatever type rule gave them their type.
    exact_sums: dict[str, tuple[int, float]] = field(default_factory=dict)


class PlanBuilder:
    """What the layer kinds record while the model is planned (see layer_kinds.LayerKind.plan)."""

    def __init__(self, model, default_precision: str | None):
        self.output_layer = model.outputs[0]._keras_history.operation
        self.default_precision = default_precision
        self.precisions: dict[str, dict[str, str]] = {}
        self.notes: list[str] = []
        self.exact = True
        self.softmax_layer: str | None = None
        self.softmax_is_layer = False

    def is_output(self, layer) -> bool:
        return layer is self.output_layer

    def set_softmax(self, layer, is_layer: bool) -> None:
        self.softmax_layer, self.softmax_is_layer = layer.name, is_layer

    def inexact(self, message: str) -> None:
        """Refuse, or with a default precision accept and mark the plan inexact."""
        if self.default_precision is None:
            raise UnsupportedModelError(
                message + '; or pass default_precision (CLI: --default-precision) to accept an inexact design'
            )
        self.exact = False
        self.notes.append(
            f'{message}: given {self.default_precision}, the design is not proven exact; the C simulation decides'
        )


def inbound(layer) -> list:
    """The layers feeding ``layer``."""
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation for t in node.arguments.keras_tensors]


def plan_model(
    model, registry: Registry, input_precision: str | None = None, default_precision: str | None = None
) -> ModelPlan:
    """Check ``model`` and decide every type; raise UnsupportedModelError otherwise.

    ``registry``: the route's layer kinds (each plans its layers and refuses what it
    cannot make exact). ``input_precision``: the declared input type (e.g.
    ``ap_fixed<16,6>``), used when the model has no input quantizer; when it has one,
    giving a different type is an error. ``default_precision``: if given, layers that
    cannot be exact (float activations, unfolded batch norm) get this type instead of
    being refused, and the plan is marked inexact.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(
            f'model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; one of each is supported'
        )
    ctx = PlanBuilder(model, default_precision)
    for layer in model.layers:
        registry.lookup(layer).plan(layer, ctx)
    precisions, notes = ctx.precisions, ctx.notes
    softmax_layer = ctx.softmax_layer

    # Where the input type comes from.
    first_users = [
        lay
        for lay in model.layers
        if lay.__class__.__name__ != 'InputLayer'
        and any(src.__class__.__name__ == 'InputLayer' for src in inbound(lay))
    ]
    input_quantizer = None
    if len(first_users) == 1 and first_users[0].__class__.__name__ == 'QActivation':
        candidate = first_users[0]
        if quantizer_config(candidate.get_config()['activation'])[0] == 'quantized_bits':
            input_quantizer = candidate
    if input_quantizer is not None:
        input_type = parse_fixed_type(precisions[input_quantizer.name]['result'])
        source = f"the model's input quantizer '{input_quantizer.name}'"
        if input_precision is not None and parse_fixed_type(input_precision) != input_type:
            raise UnsupportedModelError(
                f"input precision {input_precision} differs from the model's input quantizer '{input_quantizer.name}' "
                f'({input_type.ap()}); leave input precision unset'
            )
    else:
        declared = input_precision or DEFAULT_INPUT_TYPE
        try:
            input_type = parse_fixed_type(declared)
        except ValueError as exc:
            raise UnsupportedModelError(str(exc)) from None
        source = f'declared input type {input_type.ap()}' + (
            '' if input_precision else ' (default; set input_precision to change it)'
        )
        notes.append(f'test inputs are rounded to {input_type.ap()} before both the model and the design see them')
    if default_precision is not None:
        try:
            parse_fixed_type(default_precision)
        except ValueError as exc:
            raise UnsupportedModelError(f'default precision: {exc}') from None
    input_name = model.layers[0].name if model.layers[0].__class__.__name__ == 'InputLayer' else 'input'
    precisions[input_name] = {'result': input_type.hls4ml()}
    if softmax_layer:
        notes.append(f"the final softmax of '{softmax_layer}' is left out of the hardware; outputs are logits")
    return ModelPlan(
        input_type=input_type,
        input_source=source,
        input_quantizer_layer=input_quantizer.name if input_quantizer is not None else None,
        softmax_layer=softmax_layer,
        softmax_is_layer=ctx.softmax_is_layer,
        precisions=precisions,
        exact=ctx.exact,
        notes=notes,
    )


def check_float32_reference(model, plan: ModelPlan, registry: Registry) -> None:
    """Refuse a model whose float32 QKeras arithmetic is not exact (write_project and
    write_rtl call it after planning; found by fuzzing: wide weights times wide inputs).

    Every value is tracked as (fractional bits, bound on |value|), layer by layer
    through the route's layer kinds (``bound``). A sum of products is exact in float32
    when every partial sum is a multiple of its LSB below 2^24 LSBs; the bound uses the
    model's quantized weights (sum of |w| per output channel times the largest input),
    so it is tight for real models. Values past a quantizer are on that quantizer's
    grid. A kind that returns None ends the check along that path.
    """
    input_type = plan.input_type
    if input_type.width > FLOAT32_BITS:
        raise UnsupportedModelError(
            f'input type {input_type.ap()} is wider than {FLOAT32_BITS} bits: the QKeras reference computes in float32 '
            'and cannot hold its values exactly; use a narrower input type'
        )
    ranges: dict[str, tuple[int, float]] = {}
    checker = _Float32Check(plan)
    for layer in model.layers:
        if layer.__class__.__name__ == 'InputLayer':
            ranges[layer.name] = of_type(input_type)
            continue
        sources = [ranges.get(src.name) for src in inbound(layer)]
        if any(s is None for s in sources) or not sources:
            continue
        result = registry.lookup(layer).bound(layer, sources, checker)
        if result is not None:
            ranges[layer.name] = result


class _Float32Check:
    limit = 2.0**FLOAT32_BITS

    def __init__(self, plan: ModelPlan):
        self.plan = plan

    def record_sum(self, layer, frac: int, bound: float) -> None:
        """The exact sum of a weighted layer: what its accumulator must hold."""
        self.plan.exact_sums[layer.name] = (int(frac), float(bound))

    def exact_sum(self, layer, frac: int, bound: float) -> None:
        """Give ``layer``'s accumulator and result the type that holds its exact sum (hls4ml
        infers no type for a sum of power-of-two products and falls back to its default)."""
        import numpy as np

        integer = max(1, int(np.ceil(np.log2(bound + 2.0**-frac))) + 1)  # sign bit included
        exact = FixedType(integer + frac, integer, True, 'TRN', 'WRAP').hls4ml()
        self.plan.precisions.setdefault(layer.name, {}).update({'accum': exact, 'result': exact})

    def check(self, where: str, frac: int, bound: float) -> None:
        import numpy as np

        if bound * 2.0**frac >= self.limit:
            bits = int(np.ceil(np.log2(bound * 2.0**frac + 1)))
            raise UnsupportedModelError(
                f'{where}: its exact sum needs {bits} significant bits ({frac} fractional), more than the '
                f'{FLOAT32_BITS} of float32 in which the QKeras model computes, so no design can match it; '
                'use fewer weight or input bits, or put a quantizer before this layer'
            )
