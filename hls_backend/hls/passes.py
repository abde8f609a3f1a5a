"""lpsubnet's corrections to hls4ml's graph, as hls4ml optimizer passes.

hls4ml's own extension mechanism: a pass class with ``match``/``transform``, registered
by name with ``register_pass`` and placed in one of hls4ml's flows with
``update_flow``. Each pass here fixes one way in which hls4ml 1.3.0 builds a design
that differs from the QKeras model, names the case that found it, and is tested on its
own (fpga_tests/test_hls_passes.py).

The passes run in hls4ml's ``convert`` flow just before its precision inference, so a
corrected type is in place before the layers after it infer their accumulators from it
(run after the inference, the layer after a corrected one kept a type inferred from the
wrong one: an UpSampling after a Dropout then did not compile).
"""

from __future__ import annotations

import contextlib

from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType


def _known_input(node):
    """The precision of ``node``'s single input, or None while it is not inferred yet."""
    if len(node.inputs) != 1:
        return None
    precision = node.get_input_variable().type.precision
    return precision if isinstance(precision, FixedPrecisionType | IntegerPrecisionType) else None


class IdentityKeepsInputType(OptimizerPass):
    """A linear activation without a quantizer (Keras's Dropout family at inference and
    ``Activation('linear')`` become one) is the identity: it gets its input's type, and
    hls4ml's ``eliminate_linear_activation`` then removes it.

    hls4ml 1.3.0 has no precision rule for it and falls back to the default
    ``fixed<16,6>`` unless the layer before has no type yet: after a quantized activation
    a Dropout became ``nnet::linear`` into ``ap_fixed<16,6>``, wrapping a ``ufixed<8,7>``
    input (hls4ml's example jet tagger, pruned: 34/500 samples exact; lpsubnet issue 27).
    """

    name = 'lpsubnet_identity_keeps_input_type'

    def match(self, node) -> bool:
        if node.class_name != 'Activation' or node.get_attr('activation') != 'linear':
            return False
        if node.get_attr('quantizer') is not None:
            return False  # a quantizer's cast has the quantizer's type
        source = _known_input(node)
        return source is not None and node.get_output_variable().type.precision != source

    def transform(self, model, node) -> bool:
        node.get_output_variable().type.precision = _known_input(node)
        return True  # hls4ml's optimizer loop starts again: the identity is now removable


class GlobalMaxPoolingKeepsInputType(OptimizerPass):
    """Global max pooling only selects: its accumulator and result get its input's type.

    hls4ml 1.3.0's precision inference has a rule for MaxPooling but none for
    GlobalPooling1D/2D, whose types fell back to the default ``fixed<16,6>``, cutting the
    input's fractional bits or wrapping its integer bits (found by fuzzing:
    ``global_max_pooling_default_type`` in test_fuzz_regressions.py).
    """

    name = 'lpsubnet_global_max_pooling_keeps_input_type'
    roles = ('result_t', 'accum_t')

    def match(self, node) -> bool:
        if node.class_name not in ('GlobalPooling1D', 'GlobalPooling2D') or node.get_attr('pool_op') != 'Max':
            return False
        source = _known_input(node)
        return source is not None and any(
            role in node.types and node.types[role].precision != source for role in self.roles
        )

    def transform(self, model, node) -> bool:
        source = _known_input(node)
        for role in self.roles:
            if role in node.types:
                node.types[role].precision = source
        return True


# Each pass and the hls4ml flow it joins, before that flow's precision inference.
PASSES = {IdentityKeepsInputType: 'convert', GlobalMaxPoolingKeepsInputType: 'convert'}
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
        update_flow(flow_name, remove_optimizers=tail)
        update_flow(flow_name, add_optimizers=[pass_class.name, *tail])


@contextlib.contextmanager
def without_pass(pass_class):
    """hls4ml's flow without one of lpsubnet's passes, put back afterwards: what hls4ml
    1.3.0 alone makes of a model (the tests' negative controls; a debugging aid)."""
    from hls4ml.model.flow import get_flow

    register_passes()
    optimizers = get_flow(PASSES[pass_class]).optimizers
    index = optimizers.index(pass_class.name)
    optimizers.remove(pass_class.name)
    try:
        yield
    finally:
        optimizers.insert(index, pass_class.name)
