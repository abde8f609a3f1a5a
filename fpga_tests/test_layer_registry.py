"""The routes' layer-kind registries: what each route supports is derived from them."""

from pathlib import Path

import keras
import pytest
from qkeras import QActivation, QDense, QSeparableConv2D, quantized_bits

from fpga_tests.hls_models import wq
from hls_backend import supported
from hls_backend.core import layer_kinds
from hls_backend.core.plan import plan_model
from hls_backend.errors import UnsupportedModelError
from hls_backend.hls.layers import HLS_LAYERS
from hls_backend.rtl.layers import RTL_LAYERS

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_generated_from_the_registries():
    from lpsubnet.readme_tables import current_block

    listed = current_block((ROOT / 'README.md').read_text(), 'hls-layers')
    assert listed == supported.supported_layers_markdown(), 'run: python -m lpsubnet.readme_tables README.md'


def test_every_weighted_kind_bounds_its_sums():
    # The float32 check must cover every layer with weights (QSeparableConv once was not).
    for registry in (HLS_LAYERS, RTL_LAYERS):
        for kind in registry.unique_kinds():
            if isinstance(kind, layer_kinds.Weighted):
                assert type(kind).sum_bound is not layer_kinds.Weighted.sum_bound, type(kind).__name__
                assert all(role in layer_kinds.WEIGHT_ROLES for role in kind.roles)


def test_every_rtl_kind_replays():
    from hls_backend.rtl.layers import RTLLayer

    for kind in RTL_LAYERS.unique_kinds():
        assert type(kind).replay is not RTLLayer.replay, type(kind).__name__


def test_a_class_is_handled_once_per_route():
    with pytest.raises(TypeError, match='both handle QDense'):

        class Again(layer_kinds.DenseOrConv):
            registry = HLS_LAYERS
            handles = ('QDense',)


def _separable_model():
    inp = keras.Input((6, 6, 2), name='x')
    h = QActivation(quantized_bits(8, 2, alpha=1), name='input_q')(inp)
    h = QSeparableConv2D(3, 3, depthwise_quantizer=wq(4), pointwise_quantizer=wq(4), bias_quantizer=wq(4), name='sep')(
        h
    )
    out = QDense(2, kernel_quantizer=wq(4), bias_quantizer=wq(4), name='out')(keras.layers.Flatten()(h))
    return keras.Model(inp, out)


def test_refusal_lists_the_routes_own_supported_layers():
    model = _separable_model()
    plan_model(model, HLS_LAYERS)  # the HLS route maps separable convolutions
    with pytest.raises(UnsupportedModelError) as refused:
        plan_model(model, RTL_LAYERS)
    message = str(refused.value)
    assert "layer 'sep' (QSeparableConv2D) is not supported by the RTL route" in message
    # The whole list is one command away, not in the message; the nearest names are.
    assert f'it maps {len(RTL_LAYERS.supported())} layer classes (`lpsubnet layers` lists them)' in message
    assert 'QConv2D' in message.split('among them')[1]


def test_refusal_kinds_name_the_fix_on_every_route():
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2, name='plain')(inp))
    for registry in (HLS_LAYERS, RTL_LAYERS):
        with pytest.raises(UnsupportedModelError, match=r"layer 'plain' \(Dense\) has float weights; use QDense"):
            plan_model(model, registry)
