"""The QKeras families hls4ml 1.3.0 stopped on under Keras 3 + numpy 2, through
``register()`` / ``exact_config()``: power-of-two weights (exact, or refused where hls4ml's
shift product cannot hold them), BatchNormalization after binary/ternary layers and
QLSTM/QGRU (hls4ml's own flow, its tolerance; refused by exact_config), and layers hls4ml
cannot convert (a named error, never a crash from inside hls4ml or da4ml).
"""

import keras
import numpy as np
import pytest
from qkeras import QGRU, QLSTM, QActivation, QConv2D, QDense, QSimpleRNN, quantized_bits, quantized_po2, ternary

import hls_backend
from fpga_tests.hls_models import wq
from hls_backend.errors import UnsupportedModelError


def _on_grid(x, frac=10):
    return np.round(x * 2**frac) / 2**frac


def po2_model(kernel_quantizer, input_quantizer):
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 6, 1), name='x')
    h = QActivation(input_quantizer, name='q_in')(inp)
    h = QConv2D(3, 3, kernel_quantizer=kernel_quantizer, bias_quantizer=wq(6), name='conv')(h)
    h = QActivation(quantized_bits(10, 4, alpha=1), name='conv_q')(h)
    h = keras.layers.Flatten(name='flat')(h)
    out = QDense(4, kernel_quantizer=kernel_quantizer, bias_quantizer=wq(6), name='fc')(h)
    return keras.Model(inp, out, name='po2')


def test_po2_weights_are_exact(tmp_path):
    """hls4ml multiplies by shifts and has no type rule for their sum (it falls back to
    fixed<16,6>); exact_config gives the sum its exact type. Writing the exponent weights
    is where hls4ml 1.3.0 called np.product."""
    import hls4ml

    model = po2_model(quantized_po2(5, max_value=4), quantized_bits(8, 2, alpha=1))
    config = hls_backend.exact_config(model, backend='Vitis', io_type='io_parallel')
    assert config['LayerName']['fc']['Precision']['accum'] == config['LayerName']['fc']['Precision']['result']
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, backend='Vitis', io_type='io_parallel', output_dir=str(tmp_path / 'prj')
    )
    hls_model.compile()
    x = _on_grid(np.random.default_rng(0).uniform(-4, 4, (300, 6, 6, 1)))
    y_qkeras = model.predict(x, verbose=0)
    y_hls = hls_model.predict(x).reshape(y_qkeras.shape)
    assert np.array_equal(y_qkeras, y_hls)
    assert np.unique(y_qkeras).size > 50


def test_po2_shift_wider_than_hls4mls_product_is_refused():
    # Exponents down to -8 on a 2-bit input with 2 fractional bits: 10 fractional bits,
    # hls4ml's product type has 5 + 2.
    model = po2_model(quantized_po2(5, max_value=4), quantized_bits(2, 0, alpha=1, keep_negative=False))
    with pytest.raises(UnsupportedModelError, match=r"layer 'conv'.*power-of-two weights.*product type"):
        hls_backend.exact_config(model)


def test_po2_stochastic_rounding_refused():
    model = po2_model(quantized_po2(4, use_stochastic_rounding=True), quantized_bits(8, 2, alpha=1))
    with pytest.raises(UnsupportedModelError, match="layer 'conv'.*stochastic"):
        hls_backend.exact_config(model)


def recurrent(cls, **kwargs):
    """hls4ml's test_qkeras.py::test_qlstm / test_qgru / test_qsimplernn model. qkeras-v3's
    recurrent layers ignore ``name=`` and take Keras's automatic name, which counts the
    layers made earlier in the process: the assertions read the name from the model."""
    quantizer = 'quantized_bits(8, 0, alpha=1)'
    return keras.Sequential(
        [
            keras.Input((5, 2)),
            cls(
                4,
                kernel_quantizer=quantizer,
                recurrent_quantizer=quantizer,
                bias_quantizer=quantizer,
                state_quantizer=quantizer,
                **kwargs,
            ),
        ]
    )


def test_recurrent_refused_by_exact_config_and_converted_by_hls4ml(tmp_path):
    import hls4ml

    model = recurrent(QLSTM, activation='tanh', recurrent_activation='sigmoid')
    with pytest.raises(UnsupportedModelError, match=rf"layer '{model.layers[0].name}' \(QLSTM\).*tolerance"):
        hls_backend.exact_config(model)
    # hls4ml's own flow after register(), with hls4ml's own test's precision and tolerance.
    hls_backend.register()
    config = hls4ml.utils.config_from_keras_model(model, granularity='name', default_precision='ap_fixed<8,1>')
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, backend='Vivado', output_dir=str(tmp_path / 'prj')
    )
    hls_model.compile()
    x = np.stack([np.linspace(-0.5, 0.5, 5)] * 2, axis=1).reshape(1, 5, 2)
    y_qkeras = model.predict(x, verbose=0)
    np.testing.assert_allclose(y_qkeras, hls_model.predict(x).reshape(y_qkeras.shape), atol=0.1)


def test_recurrent_conversions_fail_with_the_layer_named():
    import hls4ml

    hls_backend.register()
    gru = recurrent(QGRU, activation='tanh', recurrent_activation='sigmoid', reset_after=False)
    with pytest.raises(UnsupportedModelError, match=f"layer '{gru.layers[0].name}'"):
        hls_backend.exact_config(gru)
    rnn = recurrent(QSimpleRNN, activation='relu')
    with pytest.raises(UnsupportedModelError, match=rf"layer '{rnn.layers[0].name}' \(QSimpleRNN\).*SimpleRNN"):
        hls4ml.utils.config_from_keras_model(rnn, granularity='name')  # hls4ml parses the model here already


def test_batchnorm_after_ternary_converts_in_hls4mls_flow(tmp_path):
    """hls4ml's test_qkeras.py::test_btnn case 4 (ternary QDense, BatchNormalization, ternary
    activation): hls4ml 1.3.0 under Keras 3 stopped in its da4ml fallback; with register()
    hls4ml's own BatchNormalization parser and binary/ternary folding convert it."""
    import hls4ml

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((10,)),
            QDense(10, kernel_quantizer=ternary(alpha='auto'), bias_quantizer=quantized_bits(5, 2), name='dense'),
            keras.layers.BatchNormalization(name='bn'),
            QActivation('ternary', name='act'),
        ]
    )
    with pytest.raises(UnsupportedModelError, match="layer 'dense'.*ternary"):
        hls_backend.exact_config(model)
    hls_backend.register()
    config = hls4ml.utils.config_from_keras_model(model, granularity='name', backend='Vitis')
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, backend='Vitis', io_type='io_parallel', output_dir=str(tmp_path / 'prj')
    )
    hls_model.compile()
    x = np.random.default_rng(0).random((100, 10))
    wrong = hls_model.predict(x).reshape(100, 10) != model.predict(x, verbose=0)
    assert wrong.mean() < 0.005  # hls4ml's own criterion for this case


def test_unconvertible_layer_is_named():
    """A layer hls4ml has no handler for: its da4ml fallback used to raise "No plugin found"."""
    inp = keras.Input((8,), name='x')
    h = QDense(4, kernel_quantizer=wq(6), bias_quantizer=wq(6), name='fc')(inp)
    out = keras.layers.LayerNormalization(name='norm')(h)
    with pytest.raises(UnsupportedModelError, match="layer 'norm'"):
        hls_backend.exact_config(keras.Model(inp, out))
