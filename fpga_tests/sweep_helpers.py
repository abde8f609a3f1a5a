"""What the sweep tests share: a tiny float model trained briefly, a sweep configuration
around it, and reading trials.jsonl. The tiny model is the run tests' (a 4-channel conv
block and the classifier); each trial prunes it, writes the HLS project, C-simulates it
on the test split and asks da4ml for its cost.
"""

import json
import os

import yaml

os.environ['RAY_USAGE_STATS_ENABLED'] = '0'

BASE = {
    'seed': 3,
    'compress': {'epochs': 2, 'qat_epochs': 1, 'weight_bits': 6, 'activation_bits': 8},
}
SWEEP = {
    'space': {'compress.sparsity': [0.25, 0.5]},
    'search': 'grid',
    'reference': False,
    'objectives': ['accuracy', 'footprint_bits', 'lut_estimate'],
}


def train_tiny_model(directory) -> str:
    """The tiny float model, trained briefly and saved in ``directory``; returns its path."""
    import keras

    from lpsubnet.datasets import load_digits_images

    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 1), name='image')
    h = keras.layers.Conv2D(4, 3, use_bias=False, name='conv1')(inp)
    h = keras.layers.BatchNormalization(name='bn1')(h)
    h = keras.layers.ReLU(name='relu1')(h)
    h = keras.layers.MaxPooling2D(2, name='pool1')(h)
    h = keras.layers.Flatten(name='flatten')(h)
    out = keras.layers.Dense(10, activation='softmax', name='classifier')(h)
    model = keras.Model(inp, out, name='tiny_cnn')
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss='sparse_categorical_crossentropy')
    x, y = load_digits_images()
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    path = directory / 'tiny_cnn.keras'
    model.save(path)
    return str(path)


def write_config(directory, tiny_model, sweep=None, **base):
    data = {**BASE, 'model': {'path': tiny_model}, **base, 'sweep': sweep if sweep is not None else SWEEP}
    path = directory / 'sweep.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
