"""lpsubnet's hls4ml optimizer passes (hls_backend/hls/passes.py), each on its own.

Each pass is checked on hls4ml's converted graph (no compiler needed): with the pass the
type is the one QKeras computes in; with the pass taken out of hls4ml's flow the graph
shows the hls4ml 1.3.0 behaviour it corrects, so the test would fail without it.
Exactness through C simulation is checked by test_quantizer_range.py.
"""

from __future__ import annotations

import keras
import pytest
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

import hls_backend
from hls_backend.core.plan import plan_model
from hls_backend.hls import passes
from hls_backend.hls.convert import HLSOptions, hls_config
from hls_backend.hls.layers import HLS_LAYERS


def _q(bits, integer):
    return quantized_bits(bits, integer, alpha=1)


def _convert(model, tmp_path, io_type='io_parallel'):
    import hls4ml

    hls_backend.register()
    plan = plan_model(model, HLS_LAYERS)
    config = hls_config(model, plan, HLSOptions(io_type=io_type))
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, backend='Vitis', io_type=io_type, output_dir=str(tmp_path / 'prj')
    )


def _is_default(precision) -> bool:
    """hls4ml's default precision, fixed<16,6>."""
    return (precision.width, precision.integer, precision.signed) == (16, 6, True)


def _dropout_model(identity: str) -> keras.Model:
    inp = keras.Input((4,), name='x')
    h = QActivation(_q(8, 2), name='input_q')(inp)
    h = QDense(6, kernel_quantizer=_q(8, 3), bias_quantizer=_q(8, 3), activation=quantized_relu(8, 7), name='d1')(h)
    if identity == 'Dropout':
        h = keras.layers.Dropout(0.25, name='ident')(h)
    else:
        h = keras.layers.Activation('linear', name='ident')(h)
    out = QDense(2, kernel_quantizer=_q(8, 3), bias_quantizer=_q(8, 3), name='d2')(h)
    return keras.Model(inp, out)


@pytest.mark.parametrize('identity', ['Dropout', 'Activation'])
def test_an_identity_after_a_quantized_activation_is_removed(tmp_path, identity):
    """The issue's jet tagger case: Dropout after quantized_relu(8, 7)."""
    hls_model = _convert(_dropout_model(identity), tmp_path)
    names = [node.name for node in hls_model.get_layers()]
    assert 'ident' not in names
    d2 = hls_model.graph['d2']
    assert str(d2.get_input_variable().type.precision).startswith('ufixed<8,7')


def test_without_the_pass_hls4ml_casts_the_identity_to_its_default(tmp_path):
    with passes.without_pass(passes.IdentityKeepsInputType):
        hls_model = _convert(_dropout_model('Dropout'), tmp_path)
    ident = hls_model.graph['ident']
    assert _is_default(ident.get_output_variable().type.precision)


def test_global_max_pooling_keeps_its_input_type(tmp_path):
    inp = keras.Input((4, 2), name='x')
    h = QActivation(_q(8, 2), name='input_q')(inp)
    h = QActivation(quantized_relu(3, 5), name='act')(h)
    out = keras.layers.GlobalMaxPooling1D(name='gpool')(h)
    model = keras.Model(inp, out)
    hls_model = _convert(model, tmp_path)
    node = hls_model.graph['gpool']
    for role in ('result_t', 'accum_t'):
        assert str(node.types[role].precision).startswith('ufixed<3,5'), (role, node.types[role].precision)
    with passes.without_pass(passes.GlobalMaxPoolingKeepsInputType):
        plain = _convert(model, tmp_path / 'plain')
    assert _is_default(plain.graph['gpool'].get_output_variable().type.precision)


def test_register_places_every_pass_and_unregister_restores_hls4ml():
    from hls4ml.converters.keras_v3 import layer_handlers
    from hls4ml.model.flow import get_flow

    def flows():
        return {w.flow: list(get_flow(w.flow).optimizers) for w in passes.PASSES.values()}

    hls_backend.register()
    hls_backend.register()  # idempotent
    for pass_class, where in passes.PASSES.items():
        order = get_flow(where.flow).optimizers
        assert order.count(pass_class.name) == 1
        if where.before:
            assert order.index(pass_class.name) < order.index(where.before)
        if where.replaces:
            assert where.replaces not in order
    listed = hls_backend.registered()
    assert len(listed['passes']) == len(passes.PASSES)
    assert {'QDense', 'QConv2D', 'QActivation'} <= set(listed['handlers'])
    with_ours = flows()

    hls_backend.unregister()
    try:
        assert hls_backend.registered() == {'handlers': [], 'passes': []}
        assert 'QDense' not in layer_handlers
        shipped = flows()
        assert 'vivado:insert_zero_padding_before_conv1d' in shipped['vivado:streaming']
        assert all(not name.startswith('lpsubnet_') for names in shipped.values() for name in names)
    finally:
        hls_backend.register()
    assert flows() == with_ours


def test_power_of_two_weights_are_written_under_numpy2(tmp_path):
    """hls4ml 1.3.0 writes power-of-two weight files with np.product (gone in numpy 2)."""
    from qkeras import quantized_po2

    inp = keras.Input((4,), name='x')
    h = QActivation(_q(8, 2), name='input_q')(inp)
    out = QDense(3, kernel_quantizer=quantized_po2(4, max_value=2), bias_quantizer=_q(6, 2), name='d')(h)
    model = keras.Model(inp, out)
    hls_model = _convert(model, tmp_path / 'ours')
    hls_model.write()
    assert list((tmp_path / 'ours' / 'prj' / 'firmware' / 'weights').glob('w*.txt'))
    with passes.without_pass(passes.ExponentWeightsUnderNumpy2):
        plain = _convert(model, tmp_path / 'plain')
        with pytest.raises(AttributeError, match='product'):
            plain.write()
