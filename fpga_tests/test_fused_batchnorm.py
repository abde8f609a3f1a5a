"""QKeras's fused QDenseBatchnorm / QConv2DBatchnorm on both routes, bit-exact.

At inference these layers compute with the batch normalization folded into their
weights and then quantized (kernel_quantizer(gamma / sqrt(var + eps) * kernel), and
the folded bias through bias_quantizer); both routes fold the same way, in float32
as QKeras does, so the designs equal the QKeras model on every sample and bit.
"""

import keras
import numpy as np
import pytest
from qkeras import QActivation, QDense, quantized_bits, quantized_relu
from qkeras.qconv2d_batchnorm import QConv2DBatchnorm
from qkeras.qdense_batchnorm import QDenseBatchnorm

import hls_backend
from fpga_tests.hls_models import save, wq
from hls_backend.core.plan import check_float32_reference, plan_model
from hls_backend.core.reference import reference_outputs
from hls_backend.errors import UnsupportedModelError
from hls_backend.hls.layers import HLS_LAYERS
from hls_backend.rtl.layers import RTL_LAYERS


def _statistics(layer, rng):
    """Batch-norm statistics far from the identity, so that folding changes every weight."""
    bn, n = layer.batchnorm, layer.batchnorm.gamma.shape[0]
    bn.gamma.assign(rng.normal(1.0, 0.4, n).astype('float32'))
    bn.beta.assign(rng.normal(0.0, 0.5, n).astype('float32'))
    bn.moving_mean.assign(rng.normal(0.0, 0.5, n).astype('float32'))
    bn.moving_variance.assign(rng.uniform(0.2, 2.0, n).astype('float32'))


def fused_cnn(seed=0, use_bias=True, bias_quantizer=True):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    bq = {'bias_quantizer': quantized_bits(8, 3, alpha=1)} if bias_quantizer else {}
    inp = keras.Input((6, 6, 2), name='x')
    h = QActivation(quantized_bits(6, 2, alpha=1), name='q_in')(inp)
    conv = QConv2DBatchnorm(
        4, 3, kernel_quantizer=quantized_bits(6, 1, alpha=1), activation=quantized_relu(6, 2),
        use_bias=use_bias, name='conv_bn', **bq,
    )  # fmt: skip
    h = keras.layers.Flatten(name='flat')(conv(h))
    dense = QDenseBatchnorm(
        6, kernel_quantizer=quantized_bits(5, 0, alpha=1), activation=quantized_relu(7, 3), name='dense_bn', **bq
    )
    h = dense(h)
    out = QDense(3, kernel_quantizer=wq(6), bias_quantizer=wq(6), name='out')(h)
    _statistics(conv, rng)
    _statistics(dense, rng)
    return keras.Model(inp, out, name='fused')


def inputs(model, n=200, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(-4, 4, (n, *model.inputs[0].shape[1:]))


@pytest.mark.parametrize('use_bias', [True, False])
def test_rtl_replay_of_fused_layers_is_exact(tmp_path, use_bias):
    """The da4ml trace (the logic the RTL is generated from), run by da4ml's interpreter."""
    from da4ml.trace import HWConfig

    from hls_backend.core.reference import prepare_inputs
    from hls_backend.rtl.replay import replay_model

    model = hls_backend.load_qkeras_model(save(fused_cnn(use_bias=use_bias), tmp_path))  # the saved file loads
    plan = plan_model(model, RTL_LAYERS)
    check_float32_reference(model, plan, RTL_LAYERS)
    x, _ = prepare_inputs(model, plan, inputs(model), 'test inputs')
    comb, _, _ = replay_model(model, plan, HWConfig(1, -1, -1))
    traced = np.asarray(comb.predict(x.reshape(x.shape[0], -1)), dtype=np.float64)
    reference = reference_outputs(model, plan, x)
    assert np.unique(reference, axis=0).shape[0] > 50  # the outputs vary: the check is not vacuous
    assert np.array_equal(traced, reference)
    # Folding matters: the weights computed with differ from the quantized unfolded ones.
    for name in ('conv_bn', 'dense_bn'):
        layer = model.get_layer(name)
        folded = RTL_LAYERS.lookup(layer).quantized(layer, 'kernel')
        assert not np.array_equal(folded, np.asarray(layer.kernel_quantizer_internal(layer.kernel))), name


def test_hls_csim_of_fused_layers_is_exact(tmp_path):
    model = fused_cnn()
    path = save(model, tmp_path)
    info = hls_backend.write_project(path, tmp_path / 'prj', inputs=inputs(model))
    assert info.exact_by_construction
    result = hls_backend.csim(tmp_path / 'prj', second_check=True)
    assert result.exact and result.samples == 200, result
    assert result.checks['hls4ml_predict']['exact']


@pytest.mark.slow  # a Verilator build: about a minute on a busy 2-core machine
def test_rtl_simulation_of_fused_dense_is_exact(tmp_path):
    keras.utils.set_random_seed(4)
    inp = keras.Input((5,), name='x')
    h = QActivation(quantized_bits(6, 2, alpha=1), name='q_in')(inp)
    dense = QDenseBatchnorm(
        3, kernel_quantizer=quantized_bits(5, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1), name='dense_bn'
    )
    model = keras.Model(inp, dense(h))
    _statistics(dense, np.random.default_rng(4))
    result = hls_backend.rtl(save(model, tmp_path), tmp_path / 'rtl', inputs=inputs(model, 60))
    assert result.exact and result.samples == 60, result


def test_fused_layer_without_bias_quantizer_is_refused():
    model = fused_cnn(bias_quantizer=False)
    for registry in (HLS_LAYERS, RTL_LAYERS):
        with pytest.raises(UnsupportedModelError, match=r"layer 'conv_bn' \(QConv2DBatchnorm\) has no bias_quantizer"):
            plan_model(model, registry)
