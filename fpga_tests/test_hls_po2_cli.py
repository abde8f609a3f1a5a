"""Power-of-two weights (``quantized_po2``) through lpsubnet's own commands: ``lpsubnet hls``
writes a project that ``lpsubnet csim`` finds bit-exact on new inputs; ``lpsubnet rtl`` (da4ml's
replay has no power-of-two weight form) refuses them naming the layer, never a crash inside da4ml."""

import json

import numpy as np
from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_po2

from fpga_tests.cli_helpers import cli
from fpga_tests.hls_models import save, wq


def po2_cnn():
    import keras

    keras.utils.set_random_seed(2)
    inp = keras.Input((6, 6, 1), name='x')
    h = QActivation(quantized_bits(8, 2, alpha=1), name='q_in')(inp)
    h = QConv2D(3, 3, kernel_quantizer=quantized_po2(5, max_value=4), bias_quantizer=wq(6), name='conv')(h)
    h = QActivation(quantized_bits(10, 4, alpha=1), name='conv_q')(h)
    h = keras.layers.Flatten(name='flat')(h)
    out = QDense(4, kernel_quantizer=quantized_po2(5, max_value=4), bias_quantizer=wq(6), name='fc')(h)
    return keras.Model(inp, out, name='po2_cnn')


def test_hls_and_csim_of_po2_weights_are_exact_on_new_inputs(tmp_path):
    model_file = save(po2_cnn(), tmp_path)
    written = cli('hls', model_file, '--out', tmp_path / 'prj')
    assert written.returncode == 0, written.stderr
    x = np.random.default_rng(0).uniform(-4, 4, (500, 6, 6, 1)).astype(np.float32)
    np.save(tmp_path / 'x.npy', x)
    checked = cli('csim', tmp_path / 'prj', '--inputs', tmp_path / 'x.npy', '--json')
    assert checked.returncode == 0, checked.stderr
    result = json.loads(checked.stdout)
    assert (result['samples'], result['exact_matches'], result['exact']) == (500, 500, True)


def test_rtl_refuses_po2_weights_naming_the_layer(tmp_path):
    model_file = save(po2_cnn(), tmp_path)
    result = cli('rtl', model_file, '--out', tmp_path / 'rtl')
    assert result.returncode == 2, result.stderr
    assert "layer 'conv' (QConv2D) kernel_quantizer: quantizer quantized_po2" in result.stderr
    assert 'supported: quantized_bits' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'rtl').exists()
