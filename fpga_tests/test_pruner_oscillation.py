"""Oscillation dampening during QAT: quantized kernels settle in their bins.

Issue 26: "Quantization that holds at 2-4 bits". At low bit widths latent weights sit on
rounding thresholds and flip to the last step of QAT (Nagel et al. 2022); the penalty of
pruner.oscillation pulls each toward the centre of its bin.
"""

import keras
import numpy as np
import tensorflow as tf
from qkeras import QDense, QDenseBatchnorm, quantized_bits

from fpga_tests.pruner_models import small_compress
from pruner.oscillation import OscillationDampening, dampened_kernels


def _qdense(seed: int = 0) -> keras.Model:
    """6 inputs -> QDense(4), kernel quantized_bits(3, 0): ap_fixed<3,1>, LSB 0.25, range [-1, 0.75]."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    outputs = QDense(
        4,
        kernel_quantizer=quantized_bits(3, 0, alpha=1),
        bias_quantizer=quantized_bits(8, 3, alpha=1),
        name='dense',
    )(inputs)
    return keras.Model(inputs, outputs)


def _ramped(model, strength: float, steps: int = 4) -> OscillationDampening:
    """The callback at the end of its ramp, as after ``steps`` training steps."""
    callback = OscillationDampening(model, strength, steps)
    callback.set_model(model)
    callback.on_train_begin()
    for step in range(steps):
        callback.on_train_batch_end(step)
    return callback


def test_the_penalty_is_the_squared_distance_of_every_weight_to_its_bin():
    model = _qdense()
    kernel = model.get_layer('dense').kernel
    values = np.array(
        [0.1, 0.2, 0.37, -0.9, 1.4, -3.0, 0.125, 0.74, -0.13, 0.0, 0.6, -0.51] * 2, dtype=np.float32
    ).reshape(6, 4)
    kernel.assign(values)
    callback = _ramped(model, 2.0)
    # By hand: round to the LSB 0.25 within [-1, 0.75]; beyond the range only the range counts.
    clipped = np.clip(values.astype(np.float64), -1.0, 0.75)
    quantized = np.clip(np.round(values / 0.25) * 0.25, -1.0, 0.75)
    expected = 2.0 * np.sum((clipped - quantized) ** 2)
    assert kernel.regularizer is not None
    assert np.isclose(float(kernel.regularizer(kernel)), expected, rtol=1e-6)
    # Its gradient points from the bin's centre outwards: a descent step moves each weight toward it.
    with tf.GradientTape() as tape:
        penalty = kernel.regularizer(kernel)
    gradient = tape.gradient(penalty, kernel).numpy()
    inside = (values > -1.0) & (values < 0.75) & (clipped != quantized)
    assert np.all(np.sign(gradient[inside]) == np.sign((clipped - quantized)[inside]))
    assert np.all(gradient[(values <= -1.0) | (values >= 0.75)] == 0)  # beyond the range: the range's business
    # The model's training loss carries it while training, and nothing once training ended.
    assert len(model.losses) == 1
    callback.on_train_end()
    assert kernel.regularizer is None and model.losses == []


def test_the_strength_rises_on_a_half_cosine_from_zero():
    model = _qdense()
    callback = OscillationDampening(model, 8.0, 4)
    callback.set_model(model)
    callback.on_train_begin()
    seen = []
    for step in range(4):
        callback.on_train_batch_end(step)
        seen.append(float(callback._strength.numpy()))
    assert np.allclose(seen, [8.0 * 0.5 * (1 - np.cos(np.pi * t / 4)) for t in (1, 2, 3, 4)])
    callback.on_train_end()


def _train(strength: float, epochs: int = 12) -> tuple[OscillationDampening, np.ndarray]:
    model = _qdense(seed=3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(256, 6)).astype(np.float32)
    y = (x @ rng.uniform(-0.8, 0.8, (6, 4))).astype(np.float32)
    callback = OscillationDampening(model, strength, epochs * 8)
    model.compile(keras.optimizers.Adam(0.02), 'mse')
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0, callbacks=[callback])
    kernel = model.get_layer('dense').kernel.numpy()
    clipped = np.clip(kernel, -1.0, 0.75)
    return callback, np.abs(clipped - np.clip(np.round(kernel / 0.25) * 0.25, -1.0, 0.75)) / 0.25


def test_dampened_kernels_end_nearer_their_bins_centres_and_flip_less():
    free, free_offsets = _train(0.0)
    damped, damped_offsets = _train(50.0)
    # Without the penalty latent weights gather near the thresholds (further than the quarter LSB from
    # the centre a uniform spread would give) and keep crossing them; with it they end near the centre
    # and stop crossing by the last epochs.
    assert free_offsets.mean() > 0.25 and damped_offsets.mean() < 0.1
    assert sum(damped.flips[-3:]) == 0 < sum(free.flips[-3:])
    assert len(damped.flips) == len(free.flips) == 12
    assert damped.to_dict()['layers'] == ['dense']


def test_a_kernel_quantized_after_a_fused_batchnorm_is_left_alone():
    inputs = keras.Input((6,))
    outputs = QDenseBatchnorm(
        4, kernel_quantizer=quantized_bits(3, 0, alpha=1), bias_quantizer=quantized_bits(8, 3, alpha=1), name='fused'
    )(inputs)
    plain = QDense(3, kernel_quantizer=quantized_bits(4, 0, alpha=1), name='plain')(outputs)
    model = keras.Model(inputs, plain)
    # The fused layer quantizes its kernel folded with the BatchNorm, not the variable a penalty would see.
    assert [name for name, _, _ in dampened_kernels(model)] == ['plain']


def test_compress_records_the_dampening_and_the_flips_of_every_qat_epoch():
    _, manifest = small_compress(oscillation_dampening=10.0, qat_epochs=2)
    qat = next(p for p in manifest['recovery']['phases'] if p['phase'] == 'qat')
    record = qat['oscillation']
    assert record['strength'] == 10.0
    assert record['layers']  # the QDense and QConv2D kernels of the reduced CNN
    assert len(record['kernel_flips_per_epoch']) == qat['epochs_run']
    assert manifest['pruner']['oscillation_dampening'] == 10.0
