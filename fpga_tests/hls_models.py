"""QKeras models the HLS back-end tests convert: built here, saved to .keras by the tests.

Weights are random (seeded) but biased away from zero so that activations are
neither all saturated nor all zero, which would make exactness trivially true.
"""

from __future__ import annotations

import keras
import numpy as np
from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu


def wq(bits: int):
    """Weight quantizer: quantized_bits(bits, 0) == ap_fixed<bits, 1>."""
    return quantized_bits(bits, 0, alpha=1)


def _finish(model: keras.Model, seed: int) -> keras.Model:
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-0.9, 0.9, size=w.shape).astype('float32') for w in model.get_weights()]
    model.set_weights(weights)
    return model


def jet_mlp(bits: int = 6, seed: int = 0) -> keras.Model:
    """16-64-32-32-5, the shape of hls4ml's jet-tagging benchmark, with an input quantizer."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16,), name='x')
    h = QActivation(quantized_bits(10, 3, alpha=1), name='input_q')(inp)
    for i, units in enumerate((64, 32, 32)):
        h = QDense(
            units, kernel_quantizer=wq(bits), bias_quantizer=wq(bits), activation=quantized_relu(8, 3), name=f'dense{i}'
        )(h)
    out = QDense(5, kernel_quantizer=wq(bits), bias_quantizer=wq(bits), name='logits')(h)
    out = keras.layers.Activation('softmax', name='softmax')(out)
    return _finish(keras.Model(inp, out, name='jet_mlp'), seed)


def cnn(input_shape=(8, 8, 1), bits: int = 6, seed: int = 0, filters: int = 4) -> keras.Model:
    """Two 3x3 QConv2D with max pooling, Flatten, QDense: the digits / MNIST shape."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape, name='image')
    h = QActivation(quantized_bits(8, 0, alpha=1), name='input_q')(inp)
    h = QConv2D(
        filters,
        3,
        padding='same',
        kernel_quantizer=wq(bits),
        bias_quantizer=wq(bits),
        activation=quantized_relu(6, 2),
        name='conv1',
    )(h)
    h = keras.layers.MaxPooling2D(2, name='pool1')(h)
    h = QConv2D(
        filters, 3, kernel_quantizer=wq(bits), bias_quantizer=wq(bits), activation=quantized_relu(6, 2), name='conv2'
    )(h)
    if input_shape[0] > 8:
        h = keras.layers.MaxPooling2D(2, name='pool2')(h)
    h = keras.layers.Flatten(name='flatten')(h)
    out = QDense(10, kernel_quantizer=wq(bits), bias_quantizer=wq(bits), name='logits', activation='softmax')(h)
    return _finish(keras.Model(inp, out, name='cnn'), seed)


def residual_concat(bits: int = 6, seed: int = 0) -> keras.Model:
    """A residual Add and a Concatenate of two branches."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12,), name='x')
    x = QActivation(quantized_bits(8, 2, alpha=1), name='input_q')(inp)
    a = QDense(16, kernel_quantizer=wq(bits), bias_quantizer=wq(bits), activation=quantized_relu(8, 3), name='stem')(x)
    b = QDense(16, kernel_quantizer=wq(bits), bias_quantizer=wq(bits), activation=quantized_relu(8, 3), name='branch')(
        a
    )
    r = keras.layers.Add(name='residual')([a, b])
    r = QActivation(quantized_relu(8, 4), name='residual_q')(r)
    c = QDense(8, kernel_quantizer=wq(bits), bias_quantizer=wq(bits), activation=quantized_relu(8, 3), name='side')(x)
    j = keras.layers.Concatenate(name='join')([r, c])
    out = QDense(4, kernel_quantizer=wq(bits), bias_quantizer=wq(bits), name='out')(j)
    out = QActivation(quantized_bits(10, 4, alpha=1), name='out_q')(out)
    return _finish(keras.Model(inp, out, name='residual_concat'), seed)


BUILDERS = {
    'jet_mlp': jet_mlp,
    'cnn8': lambda bits, seed=0: cnn((8, 8, 1), bits, seed),
    'cnn28': lambda bits, seed=0: cnn((28, 28, 1), bits, seed),
    'residual_concat': residual_concat,
}


def negate_first_weight(project) -> None:
    """A wrong design: the first non-zero value of the project's first weight file
    (``firmware/weights/w*.txt``, which the C simulation and hls4ml's library read when
    they run) negated."""
    weights = sorted((project / 'firmware' / 'weights').glob('w*.txt'))[0]
    values = weights.read_text().split(',')
    first = next(i for i, v in enumerate(values) if float(v) != 0.0)
    values[first] = repr(-float(values[first]))
    weights.write_text(','.join(values))


def save(model: keras.Model, directory) -> str:
    path = str(directory / f'{model.name}.keras')
    model.save(path)
    return path
