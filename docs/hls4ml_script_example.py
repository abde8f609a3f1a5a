"""The README's worked example for "Using lpsubnet from an hls4ml script".

An hls4ml user's own conversion script (config_from_keras_model -> convert_from_keras_model
-> compile -> predict) on a QKeras digits MLP with power-of-two weights, run twice on the
360 test images of scikit-learn's digits:

1. hls4ml's default precisions after ``hls_backend.register()`` (the first added line);
2. the config from ``hls_backend.exact_config(...)`` (the second added line).

Each run counts the test images whose every output bit equals the QKeras model's, and the
accuracy of the design's argmax. ``python docs/hls4ml_script_example.py`` writes
docs/hls4ml_script_example.json (the figures the README quotes); it takes about half a minute.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_suffix('.json')


def digits():
    """scikit-learn's digits (bundled, no download): pixels 0..16 scaled to multiples of 1/16,
    which lie on every input grid used here; the last 360 images are the test split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return (x[:-360], y[:-360]), (x[-360:], y[-360:])


def qkeras_mlp():
    """64-64-10 (inputs quantized on their grid) with 3-bit power-of-two weights (4 bits
    shift the 1/16 input grid past hls4ml 1.3.0's product type, which exact_config refuses),
    8-bit bias and ReLU, softmax at the output."""
    import keras
    from qkeras import QActivation, QDense, quantized_bits, quantized_po2, quantized_relu

    keras.utils.set_random_seed(0)
    inp = keras.Input((64,), name='pixels')
    h = QActivation(quantized_bits(6, 1, alpha=1), name='input_q')(inp)  # ap_fixed<6,2>: the pixels' 1/16 grid
    h = QDense(64, kernel_quantizer=quantized_po2(3, 1), bias_quantizer=quantized_bits(8, 2, alpha=1), name='fc1')(h)
    h = QActivation(quantized_relu(8, 3), name='relu1')(h)
    h = QDense(10, kernel_quantizer=quantized_po2(3, 1), bias_quantizer=quantized_bits(8, 2, alpha=1), name='fc2')(h)
    out = keras.layers.Activation('softmax', name='softmax')(h)
    return keras.Model(inp, out, name='digits_po2_mlp')


def hls4ml_run(model, config, x, out_dir: Path) -> np.ndarray:
    """The user's script: hls4ml's own conversion, compile() and predict()."""
    import hls4ml

    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, backend='Vitis', io_type='io_parallel', output_dir=str(out_dir)
    )
    hls_model.compile()
    return np.asarray(hls_model.predict(np.ascontiguousarray(x, dtype=np.float64))).reshape(len(x), -1)


def exact_rows(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.all(a.astype(np.float64) == b.astype(np.float64), axis=1).sum())


def main() -> int:
    import hls4ml
    import keras

    import hls_backend

    (x_train, y_train), (x_test, y_test) = digits()
    model = qkeras_mlp()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    model.fit(x_train, y_train, epochs=60, batch_size=64, verbose=0)
    probabilities = model.predict(x_test, verbose=0)
    logits = keras.Model(model.input, model.get_layer('fc2').output).predict(x_test, verbose=0)

    hls_backend.register()  # added line 1: hls4ml converts qkeras-v3 layers
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        config = hls4ml.utils.config_from_keras_model(model, granularity='name', backend='Vitis')
        y = hls4ml_run(model, config, x_test, Path(tmp) / 'default')
        results['hls4ml_default_after_register'] = {
            'exact_samples_softmax_output': exact_rows(y, probabilities),
            'accuracy': float(np.mean(np.argmax(y, axis=1) == y_test)),
            'seconds': round(time.perf_counter() - start, 1),
        }
        # The same default config with hls4ml's own Skip on the softmax: are the logits exact?
        config['LayerName']['softmax']['Skip'] = True
        y = hls4ml_run(model, config, x_test, Path(tmp) / 'default_logits')
        results['hls4ml_default_after_register']['exact_samples_logits'] = exact_rows(y, logits)

        start = time.perf_counter()
        config = hls_backend.exact_config(model, backend='Vitis', io_type='io_parallel', softmax='skip')  # added line 2
        y = hls4ml_run(model, config, x_test, Path(tmp) / 'exact')
        results['exact_config_softmax_skip'] = {
            'exact_samples_logits': exact_rows(y, logits),
            'accuracy': float(np.mean(np.argmax(y, axis=1) == y_test)),
            'seconds': round(time.perf_counter() - start, 1),
        }
    results['test_samples'] = len(x_test)
    results['qkeras_accuracy'] = float(np.mean(np.argmax(probabilities, axis=1) == y_test))
    results['versions'] = {'hls4ml': hls4ml.__version__, 'keras': keras.__version__}
    results['finished'] = time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())
    OUT.write_text(json.dumps(results, indent=1) + '\n')
    print(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
