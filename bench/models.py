"""The benchmark models, each with a width argument (channels per hidden layer), so the
width-reduced-from-scratch baseline is the same architecture with fewer channels."""

from __future__ import annotations

from pruner.schedule import kept_count

WIDTHS = {
    'digits': (8, 16, 32),  # conv, conv, dense: lpsubnet's default CNN
    'letter': (64, 32, 32),  # the 16-64-32-32-26 MLP
    'fmnist': (16, 32, 64),
    'sr': (32, 16),  # ESPCN-style: conv5x5, conv3x3, then conv3x3 to r*r sub-pixels
}
TITLES = {
    'digits': 'Conv(8)-BN-ReLU-Pool, Conv(16)-BN-ReLU-Pool, Dense(32)-ReLU, Dense(10)',
    'letter': 'MLP 16-64-32-32-26 (ReLU)',
    'fmnist': 'Conv(16)-BN-ReLU-Pool, Conv(32)-BN-ReLU-Pool, Dense(64)-ReLU, Dense(10)',
    'sr': 'ESPCN-style x3: Conv5x5(32)-ReLU, Conv3x3(16)-ReLU, Conv3x3(9); depth-to-space outside the model',
}


def reduced_widths(task: str, sparsity: float) -> tuple[int, ...]:
    """Hidden widths after removing floor(s*C) channels (what the pruner keeps)."""
    return tuple(kept_count(c, sparsity) for c in WIDTHS[task])


def build(task: str, input_shape, n_out: int, widths=None):
    import keras
    from keras import layers

    w = tuple(widths or WIDTHS[task])
    inp = keras.Input(tuple(input_shape), name='features')  # hls4ml reserves the name 'input'
    if task in ('digits', 'fmnist'):
        x = inp
        for i, f in enumerate(w[:2], start=1):
            x = layers.Conv2D(f, 3, padding='same', use_bias=False, name=f'conv{i}')(x)
            x = layers.BatchNormalization(name=f'bn{i}')(x)
            x = layers.ReLU(name=f'relu{i}')(x)
            x = layers.MaxPooling2D(2, name=f'pool{i}')(x)
        x = layers.Flatten(name='flatten')(x)
        x = layers.Dense(w[2], activation='relu', name='fc1')(x)
        out = layers.Dense(n_out, activation='softmax', name='classifier')(x)
    elif task == 'letter':
        x = inp
        for i, units in enumerate(w, start=1):
            x = layers.Dense(units, activation='relu', name=f'fc{i}')(x)
        out = layers.Dense(n_out, activation='softmax', name='classifier')(x)
    elif task == 'sr':
        x = layers.Conv2D(w[0], 5, padding='same', activation='relu', name='conv1')(inp)
        x = layers.Conv2D(w[1], 3, padding='same', activation='relu', name='conv2')(x)
        out = layers.Conv2D(n_out, 3, padding='same', name='subpixel')(x)
    else:
        raise ValueError(f'unknown task {task!r}')
    return keras.Model(inp, out, name=f'{task}_model')
