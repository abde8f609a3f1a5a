"""lpsubnet's corrections to hls4ml 1.3.0, as hls4ml optimizer passes.

hls4ml's own extension mechanism: a pass class with ``match``/``transform``, registered
by name with ``register_pass`` and placed in one of hls4ml's flows (:data:`PASSES` says
where). Each pass here fixes one way in which hls4ml 1.3.0 builds a design that differs
from the QKeras model or cannot be written, names the case that found it, and is tested
on its own against hls4ml without it (fpga_tests/test_hls_passes.py, :func:`without_pass`).
:func:`unregister_passes` gives hls4ml its flows back as they ship.

The type corrections run in hls4ml's ``convert`` flow just before its precision
inference, so a corrected type is in place before the layers after it infer their
accumulators from it (run after the inference, the layer after a corrected one kept a
type inferred from the wrong one: an UpSampling after a Dropout then did not compile).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from hls4ml.backends.vivado.passes.conv_same_pad import InsertZeroPaddingBeforeConv1D
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import ExponentWeightVariable, FixedPrecisionType, IntegerPrecisionType


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


class CloneKeepsInputType(OptimizerPass):
    """Every copy an io_stream Clone makes has the type of the stream it copies.

    hls4ml 1.3.0's Clone takes its copies' type from its source's ``result_t``, and a
    Repack (what an io_stream Reshape becomes) keeps the default ``fixed<16,6>`` there
    while its stream has the input's type: a ``ufixed<6,7>`` input reshaped and fed to two
    layers was copied into ``fixed<16,6>`` (found by fuzzing: seed 200025,
    ``reshape_feeding_two_layers_stream`` in test_fuzz_regressions.py).
    """

    name = 'lpsubnet_clone_keeps_input_type'

    def match(self, node) -> bool:
        if node.class_name != 'Clone':
            return False
        source = _known_input(node)
        return source is not None and any(
            node.get_output_variable(out).type.precision != source for out in node.outputs
        )

    def transform(self, model, node) -> bool:
        source = _known_input(node)
        for out in node.outputs:
            node.get_output_variable(out).type.precision = source
        return True


class ZeroPaddingBeforeItsConv1D(InsertZeroPaddingBeforeConv1D):
    """hls4ml's io_stream padding of a ``padding='same'`` Conv1D, inserted before that
    convolution.

    hls4ml 1.3.0's ``insert_zero_padding_before_conv1d`` calls ``model.insert_node``
    without ``before=``, so where the convolution's input also feeds another layer the
    ZeroPadding1D lands in front of the input's *first* consumer: the sibling branch read
    padded data and the convolution an already drained stream (found by fuzzing:
    ``padding_before_wrong_branch`` in test_fuzz_regressions.py; hls4ml's Conv2D pass
    passes ``before=node``). This pass is hls4ml's own with that one argument, and takes
    its place in the Vivado/Vitis streaming flow.
    """

    name = 'lpsubnet_zero_padding_before_its_conv1d'

    def transform(self, model, node):
        def insert_before_conv(new_node, before=None, input_idx=0):
            return type(model).insert_node(
                model, new_node, before=node if before is None else before, input_idx=input_idx
            )

        model.insert_node = insert_before_conv  # on this graph object only, for this call
        try:
            return super().transform(model, node)
        finally:
            del model.insert_node


class _ExponentWeights(ExponentWeightVariable):
    """hls4ml's power-of-two weights, iterated with ``np.prod`` (hls4ml 1.3.0 calls
    ``np.product``, removed in numpy 2, when it writes their weight file)."""

    def __iter__(self):
        data = self._format()
        self._iterator = iter(data.reshape((int(np.prod(data.shape[:-1])), 2)))
        return self


# hls4ml's writers dispatch on the weight's class name.
_ExponentWeights.__name__ = _ExponentWeights.__qualname__ = 'ExponentWeightVariable'


class ExponentWeightsUnderNumpy2(OptimizerPass):
    """Power-of-two weights written without ``np.product``: without it ``write()`` and
    ``compile()`` of a model with quantized_po2 weights stop with an AttributeError."""

    name = 'lpsubnet_exponent_weights_under_numpy2'

    def match(self, node) -> bool:
        return any(type(w) is ExponentWeightVariable for w in node.weights.values())

    def transform(self, model, node) -> bool:
        for weight in node.weights.values():
            if type(weight) is ExponentWeightVariable:
                weight.__class__ = _ExponentWeights  # before the backend wraps its class
        return False  # types and graph unchanged


@dataclass(frozen=True)
class Placement:
    """Where a pass goes: into hls4ml flow ``flow``, before pass ``before`` (or at its end),
    or in place of hls4ml's pass ``replaces``."""

    flow: str
    before: str | None = None
    replaces: str | None = None


PASSES = {
    IdentityKeepsInputType: Placement('convert', before='infer_precision_types'),
    GlobalMaxPoolingKeepsInputType: Placement('convert', before='infer_precision_types'),
    ExponentWeightsUnderNumpy2: Placement('convert'),
    ZeroPaddingBeforeItsConv1D: Placement('vivado:streaming', replaces='vivado:insert_zero_padding_before_conv1d'),
    # Before the Clone is made: hls4ml's optimizer loop starts again after each insertion,
    # so the copies have their type before the padding inserted after them copies it.
    CloneKeepsInputType: Placement('vivado:streaming', before='vivado:clone_output'),
}


# Passes held out of hls4ml's flows by without_pass (register_passes leaves them out).
_held_out: set[type] = set()


def register_passes() -> None:
    """Register lpsubnet's passes with hls4ml and put them into their flows (idempotent)."""
    from hls4ml.model.optimizer import get_available_passes, register_pass

    for pass_class, where in PASSES.items():
        if pass_class in _held_out:
            continue
        if pass_class.name not in get_available_passes():
            register_pass(pass_class.name, pass_class)
        optimizers = _flow(where.flow).optimizers
        if pass_class.name in optimizers:
            continue
        anchor = where.replaces or where.before
        index = optimizers.index(anchor) if anchor in optimizers else len(optimizers)
        if where.replaces in optimizers:
            optimizers[index] = pass_class.name
        else:
            optimizers.insert(index, pass_class.name)


def unregister_passes() -> None:
    """Take lpsubnet's passes out of hls4ml's flows again (hls4ml's own pass back where
    one was replaced): hls4ml then runs as it ships."""
    for pass_class, where in PASSES.items():
        optimizers = _flow(where.flow).optimizers
        if pass_class.name not in optimizers:
            continue
        index = optimizers.index(pass_class.name)
        if where.replaces:
            optimizers[index] = where.replaces
        else:
            del optimizers[index]


def registered_passes() -> list[str]:
    """lpsubnet's passes in hls4ml's flows now, as ``flow: pass`` lines."""
    return [f'{w.flow}: {p.name}' for p, w in PASSES.items() if p.name in _flow(w.flow).optimizers]


def _flow(name: str):
    # A flow's list of pass names is hls4ml's own state; hls4ml's update_flow can only
    # append or remove, so placement before a pass edits the list in place.
    from hls4ml.model.flow import get_flow

    return get_flow(name)


@contextlib.contextmanager
def without_pass(pass_class):
    """hls4ml's flows without one of lpsubnet's passes, put back afterwards: what hls4ml
    1.3.0 alone makes of a model (the tests' negative controls; a debugging aid)."""
    register_passes()
    where = PASSES[pass_class]
    optimizers = _flow(where.flow).optimizers
    index = optimizers.index(pass_class.name)
    if where.replaces:
        optimizers[index] = where.replaces
    else:
        del optimizers[index]
    _held_out.add(pass_class)
    try:
        yield
    finally:
        _held_out.discard(pass_class)
        if where.replaces:
            optimizers[index] = pass_class.name
        else:
            optimizers.insert(index, pass_class.name)
