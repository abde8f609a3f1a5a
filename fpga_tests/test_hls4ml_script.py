"""lpsubnet inside an hls4ml user's own script: ``hls_backend.register()`` and
``hls_backend.exact_config(...)``, then hls4ml's own convert -> compile -> predict,
equal to QKeras predict on every sample and bit (np.array_equal).

Two model families run one backend x io type each by default; the full cross-product is slow.
"""

import itertools

import keras
import numpy as np
import pytest
from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

import hls_backend
from fpga_tests.hls_models import residual_concat, wq
from fpga_tests.test_fused_batchnorm import fused_cnn
from hls_backend.errors import BadInputError, UnsupportedModelError


def sequential_mlp():
    """A Sequential model without an input quantizer: inputs on the declared ap_fixed<16,6> grid."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((16,), name='features'),
            QDense(12, kernel_quantizer=wq(6), bias_quantizer=wq(6), name='fc1'),
            QActivation(quantized_relu(6, 0), name='relu1'),
            QDense(5, kernel_quantizer=wq(6), bias_quantizer=wq(6), name='fc2'),
        ]
    )
    return model


def cnn_logits():
    """QConv2D with a 'same' padding and pooling, then a QDense: the MNIST-CNN shape in small."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((8, 8, 1), name='image')
    h = QActivation(quantized_bits(8, 0, alpha=1), name='input_q')(inp)
    h = QConv2D(4, 3, padding='same', kernel_quantizer=wq(6), bias_quantizer=wq(6), name='conv1')(h)
    h = QActivation(quantized_relu(6, 2), name='relu1')(h)
    h = keras.layers.MaxPooling2D(2, name='pool1')(h)
    h = keras.layers.Flatten(name='flatten')(h)
    out = QDense(10, kernel_quantizer=wq(6), bias_quantizer=wq(6), activation=quantized_bits(10, 4), name='logits')(h)
    return keras.Model(inp, out, name='cnn_logits')


FAMILIES = {
    'sequential_mlp': sequential_mlp,
    'cnn': cnn_logits,
    'residual_concat': residual_concat,
    'fused_batchnorm': fused_cnn,
}
COMBOS = list(itertools.product(('Vivado', 'Vitis'), ('io_parallel', 'io_stream')))
# Two families by default (the others run in fpga_tests/test_hls4ml_peer_cases.py too); the
# full cross-product is slow.
DEFAULT = {'sequential_mlp': ('Vivado', 'io_parallel'), 'residual_concat': ('Vitis', 'io_stream')}
CASES = [
    pytest.param(name, backend, io, marks=() if DEFAULT.get(name) == (backend, io) else pytest.mark.slow)
    for name in FAMILIES
    for backend, io in COMBOS
]


def user_script(model, x, backend, io_type, output_dir):
    """What an hls4ml user writes, with the two lpsubnet lines."""
    import hls4ml

    hls_backend.register()
    config = hls_backend.exact_config(model, backend=backend, io_type=io_type)
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, backend=backend, io_type=io_type, output_dir=str(output_dir)
    )
    hls_model.compile()
    return hls_model.predict(np.ascontiguousarray(x))


@pytest.mark.parametrize('name,backend,io_type', CASES)
def test_user_script_is_exact(name, backend, io_type, tmp_path):
    model = FAMILIES[name]()
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, (300, *model.inputs[0].shape[1:]))
    x = np.round(x * 2**10) / 2**10  # on the ap_fixed<16,6> grid, as hls4ml's own exact tests do
    y_hls = user_script(model, x, backend, io_type, tmp_path / 'prj')
    y_qkeras = model.predict(x, verbose=0)
    assert np.array_equal(y_qkeras, np.asarray(y_hls).reshape(y_qkeras.shape))
    assert np.unique(y_qkeras).size > 10  # not trivially equal (all saturated or zero)


def test_config_uses_hls4mls_names_and_the_plan():
    model = sequential_mlp()
    config = hls_backend.exact_config(model, backend='Vivado', io_type='io_stream', ReuseFactor=2, Strategy='Resource')
    assert config['Model']['ReuseFactor'] == 2 and config['Model']['Strategy'] == 'Resource'
    assert config['LayerName']['fc1']['ReuseFactor'] == 2
    assert config['LayerName']['fc1']['Precision']['weight'] == 'fixed<6,1,TRN,WRAP>'
    assert config['LayerName']['relu1']['Precision']['result'] == 'ufixed<6,0,RND_CONV,SAT>'
    assert config['LayerName']['features']['Precision']['result'] == 'fixed<16,6,RND_CONV,SAT>'
    declared = hls_backend.exact_config(model, input_precision='ap_fixed<10,4>')
    assert declared['LayerName']['features']['Precision']['result'] == 'fixed<10,4,TRN,WRAP>'


def test_register_is_idempotent():
    from hls4ml.converters.keras_v3 import layer_handlers

    hls_backend.register()
    before = dict(layer_handlers)
    hls_backend.register()
    assert dict(layer_handlers) == before
    assert 'QDense' in layer_handlers and 'QConv2DBatchnorm' in layer_handlers


def test_refusals_are_lpsubnets():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name='x')
    h = QDense(4, kernel_quantizer=wq(6), bias_quantizer=wq(6), name='fc', activation='softmax')(inp)
    with pytest.raises(UnsupportedModelError, match="layer 'fc'.*softmax='hls4ml'"):
        hls_backend.exact_config(keras.Model(inp, h))
    # With softmax='hls4ml' the layers before the softmax keep their exact types.
    config = hls_backend.exact_config(keras.Model(inp, h), softmax='hls4ml')
    assert config['LayerName']['fc']['Precision']['weight'] == 'fixed<6,1,TRN,WRAP>'

    h = QDense(4, kernel_quantizer=quantized_bits(4, 0, alpha='auto'), bias_quantizer=wq(6), name='scaled')(inp)
    with pytest.raises(UnsupportedModelError, match="layer 'scaled'.*alpha"):
        hls_backend.exact_config(keras.Model(inp, h))
    with pytest.raises(BadInputError, match='io_type'):
        hls_backend.exact_config(keras.Model(inp, h), io_type='io_serial')
    with pytest.raises(BadInputError, match='Precision'):
        hls_backend.exact_config(keras.Model(inp, h), Precision='fixed<8,3>')
