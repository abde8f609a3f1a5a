"""lpsubnet's corrections to hls4ml's graph, as hls4ml optimizer passes.

hls4ml's own extension mechanism: a pass class with ``match``/``transform``, registered
by name with ``register_pass`` and placed in one of hls4ml's flows with
``update_flow``. Each pass here fixes one way in which hls4ml 1.3.0 builds a design
that differs from the QKeras model (or does not compile), names the case that found
it, and is tested on its own (fpga_tests/test_hls_passes.py).

The passes run in hls4ml's ``convert`` flow just before its precision inference, so a
corrected type is in place before the layers after it infer their accumulators from it.
"""

from __future__ import annotations

from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType

# hls4ml graph classes that only move, copy or select values (a Keras identity at
# inference included: Dropout and Activation('linear') become a linear Activation).
MOVES_VALUES = ('Reshape', 'Transpose', 'Clone', 'Resize', 'ZeroPadding1D', 'ZeroPadding2D')


def _known(precision) -> bool:
    return isinstance(precision, FixedPrecisionType | IntegerPrecisionType)


def _input_precisions(node) -> list:
    return [node.get_input_variable(name).type.precision for name in node.inputs]


class DataMovementKeepsInputType(OptimizerPass):
    """A layer that only moves values (and an inference-time identity) gets its input's type.

    hls4ml 1.3.0 gives such a layer the default precision (``fixed<16,6>``) unless its
    config says ``auto``, and its config from ``config_from_keras_model`` does not:
    - Dropout and ``Activation('linear')`` after a quantized activation became
      ``nnet::linear`` into ``ap_fixed<16,6>``, wrapping a ``ufixed<8,7>`` input (hls4ml's
      example jet tagger, pruned: 34/500 samples exact; lpsubnet issue 27). With its
      input's type the identity is removed by hls4ml's ``eliminate_linear_activation``.
    - UpSampling after a quantized activation: ``nnet::resize_nearest`` takes one type for
      its input and output, so the C++ did not compile (found by the quantizer-range test).
    """

    name = 'lpsubnet_data_movement_keeps_input_type'

    def match(self, node) -> bool:
        if node.class_name == 'Activation':
            if node.get_attr('activation') != 'linear' or node.get_attr('quantizer') is not None:
                return False  # a quantizer's cast has the quantizer's type
        elif node.class_name not in MOVES_VALUES:
            return False
        sources = _input_precisions(node)
        if len(sources) != 1 or not _known(sources[0]):
            return False  # wait for precision inference upstream
        return node.get_output_variable().type.precision != sources[0]

    def transform(self, model, node) -> bool:
        node.get_output_variable().type.precision = _input_precisions(node)[0]
        return True  # hls4ml's optimizer loop starts again (a linear identity is now removable)


def holds(outer, inner) -> bool:
    """Whether fixed-point precision ``outer`` holds every value of ``inner``."""
    if not (_known(outer) and _known(inner)):
        return False
    if inner.signed and not outer.signed:
        return False
    magnitude = inner.integer - (1 if inner.signed else 0)
    return outer.fractional >= inner.fractional and outer.integer - (1 if outer.signed else 0) >= magnitude


def union_type(precisions) -> FixedPrecisionType:
    """The narrowest fixed-point type that holds every value of each of ``precisions``."""
    signed = any(p.signed for p in precisions)
    magnitude = max(p.integer - (1 if p.signed else 0) for p in precisions)
    fractional = max(p.fractional for p in precisions)
    integer = magnitude + (1 if signed else 0)
    return FixedPrecisionType(width=integer + fractional, integer=integer, signed=signed)


class JoinHoldsItsInputs(OptimizerPass):
    """A Concatenate's result holds each of its inputs.

    hls4ml 1.3.0 infers a common type only for ``auto``; with the default precision its
    result ``fixed<16,6>`` rounded or wrapped inputs of other types (found by the
    quantizer-range test: branches with 1- to 8-bit activations of every range).
    """

    name = 'lpsubnet_join_holds_its_inputs'

    def match(self, node) -> bool:
        if node.class_name != 'Concatenate':
            return False
        sources = _input_precisions(node)
        if not all(_known(p) for p in sources):
            return False
        result = node.get_output_variable().type.precision
        return not all(holds(result, p) for p in sources)

    def transform(self, model, node) -> bool:
        node.get_output_variable().type.precision = union_type(_input_precisions(node))
        return True


# Each pass and the hls4ml flow it joins, before that flow's 'infer_precision_types'.
PASSES = {DataMovementKeepsInputType: 'convert', JoinHoldsItsInputs: 'convert'}
BEFORE = 'infer_precision_types'


def register_passes() -> None:
    """Register lpsubnet's passes with hls4ml and put them into their flows (idempotent)."""
    from hls4ml.model.flow import get_flow, update_flow
    from hls4ml.model.optimizer import get_available_passes, register_pass

    for pass_class, flow_name in PASSES.items():
        if pass_class.name not in get_available_passes():
            register_pass(pass_class.name, pass_class)
        flow = get_flow(flow_name)
        if pass_class.name in flow.optimizers:
            continue
        # update_flow only appends: take the inference out and put it back after the pass.
        tail = [BEFORE] if BEFORE in flow.optimizers else []
        update_flow(flow_name, add_optimizers=None, remove_optimizers=tail)
        update_flow(flow_name, add_optimizers=[pass_class.name, *tail])
