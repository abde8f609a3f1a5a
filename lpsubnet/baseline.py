"""The float baseline: lpsubnet's default small CNN, the user's own .keras model, or
the user's PyTorch model converted to float Keras (lpsubnet.pytorch, pruner.from_torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import ConfigError, ModelConfig
from .datasets import Splits


def default_cnn(input_shape: tuple[int, ...], n_classes: int):
    """Conv(8)-BN-ReLU-Pool, Conv(16)-BN-ReLU-Pool, Dense(32)-ReLU, Dense(classes) softmax.

    Small enough that its pruned, quantized form builds as fully unrolled RTL in
    minutes, large enough to reach ~97% on digits.
    """
    import keras
    from keras import layers

    inp = keras.Input(input_shape, name='image')
    x = inp
    for i, filters in enumerate((8, 16), start=1):
        x = layers.Conv2D(filters, 3, padding='same', use_bias=False, name=f'conv{i}')(x)
        x = layers.BatchNormalization(name=f'bn{i}')(x)
        x = layers.ReLU(name=f'relu{i}')(x)
        x = layers.MaxPooling2D(2, name=f'pool{i}')(x)
    x = layers.Flatten(name='flatten')(x)
    x = layers.Dense(32, activation='relu', name='fc1')(x)
    out = layers.Dense(n_classes, activation='softmax', name='classifier')(x)
    return keras.Model(inp, out, name='digits_cnn')


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    predictions = model.predict(x, verbose=0, batch_size=512)
    return float(np.mean(np.argmax(predictions.reshape(len(x), -1), axis=1) == y))


# How far above the most frequent class's share an accuracy must be not to count as chance.
CHANCE_MARGIN = 0.01


def chance_warning(accuracy_value: float, labels: np.ndarray, split: str) -> str | None:
    """A warning when a float model is no better than always answering the most frequent
    class of ``labels``: pruning and quantizing it can only measure noise (a model trained
    on other data, or labels that do not match its outputs)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    chance = float(counts.max() / counts.sum())
    if accuracy_value > chance + CHANCE_MARGIN:
        return None
    return (
        f'the float model reaches {100 * accuracy_value:.1f} % on the {split} split, no better than chance '
        f'({100 * chance:.1f} %: always the most frequent of {len(counts)} classes); was it trained on this data, '
        'with these labels?'
    )


# Keras-2-era files, read by hls_backend's loader (the one `lpsubnet hls` and `prune` use).
LEGACY_SUFFIXES = ('.json', '.h5', '.hdf5')


def train_baseline(config: ModelConfig, splits: Splits, seed: int, say=print):
    """Train the default CNN (or load the user's model) and return (model, history dict).

    A PyTorch model is converted (its conversion check's line goes to ``say``) and the
    record of the conversion is the history's ``torch`` entry.
    """
    import keras

    from .pytorch import check_model_file, convert, is_torch_model

    keras.utils.set_random_seed(seed)
    if config.path and is_torch_model(config.path):
        check_model_file(config.path)
        model, record = convert(config.path, splits.x_train, config.input_shape, seed=seed, say=say)
        return model, {'source': str(config.path), 'trained_epochs': 0, 'torch': record}
    if config.input_shape is not None:
        raise ConfigError(
            "config key 'model.input_shape' is for PyTorch models (model.path: .pt2, TorchScript or "
            "'module:callable'); a Keras model knows its input shape"
        )
    if config.path:
        path = Path(config.path)
        if not path.exists():
            raise ConfigError(f"model file {path} (config key 'model.path') does not exist")
        if path.suffix in LEGACY_SUFFIXES:  # Keras 2 model.json + weights, or a whole-model .h5
            from hls_backend import load_qkeras_model

            model = load_qkeras_model(path)
        else:
            try:  # with its optimizer: compress reads the learning rate it was trained with
                model = keras.models.load_model(path)
            except Exception as exc:
                raise ConfigError(f'model file {path} could not be loaded as a Keras model: {exc}') from None
        expected = tuple(model.inputs[0].shape[1:])
        if expected != tuple(splits.x_train.shape[1:]):
            raise ConfigError(f'model {path} expects inputs {expected}, the data has {tuple(splits.x_train.shape[1:])}')
        return model, {'source': str(path), 'trained_epochs': 0}
    model = default_cnn(tuple(splits.x_train.shape[1:]), splits.n_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss='sparse_categorical_crossentropy',
        metrics=['accuracy'],
    )
    history = model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
    )
    return model, {
        'source': 'default_cnn',
        'trained_epochs': config.epochs,
        'val_accuracy': history.history['val_accuracy'],
    }
