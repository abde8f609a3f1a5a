"""Small Keras models and data for the pruner tests."""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers


def sequential_cnn(seed: int = 0, filters=(8, 12), dense: int = 16, input_shape=(8, 8, 1), classes: int = 10):
    """conv-bn-relu-pool, conv-relu, flatten, dense-relu, dense (a Sequential model)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(filters[0], 3, padding='same', name='conv1'),
            layers.BatchNormalization(name='bn1'),
            layers.ReLU(name='relu1'),
            layers.MaxPooling2D(2, name='pool1'),
            layers.Conv2D(filters[1], 3, padding='same', activation='relu', name='conv2'),
            layers.Flatten(name='flatten'),
            layers.Dense(dense, activation='relu', name='fc1'),
            layers.Dense(classes, name='logits'),
        ],
        name='seq_cnn',
    )


def residual_cnn(seed: int = 0, width: int = 8, input_shape=(8, 8, 1), classes: int = 10):
    """A stem and two residual blocks (identity, then projection shortcut)."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input(input_shape)
    x = layers.Conv2D(width, 3, padding='same', name='stem')(x_in)
    x = layers.BatchNormalization(name='stem_bn')(x)
    x = layers.ReLU(name='stem_relu')(x)
    y = layers.Conv2D(width, 3, padding='same', activation='relu', name='b1_conv1')(x)
    y = layers.Conv2D(width, 3, padding='same', name='b1_conv2')(y)
    y = layers.BatchNormalization(name='b1_bn2')(y)
    x = layers.Add(name='b1_add')([x, y])
    x = layers.ReLU(name='b1_relu')(x)
    y = layers.Conv2D(2 * width, 3, strides=2, padding='same', activation='relu', name='b2_conv1')(x)
    y = layers.Conv2D(2 * width, 3, padding='same', name='b2_conv2')(y)
    y = layers.BatchNormalization(name='b2_bn2')(y)
    s = layers.Conv2D(2 * width, 1, strides=2, name='b2_proj')(x)
    s = layers.BatchNormalization(name='b2_proj_bn')(s)
    x = layers.Add(name='b2_add')([s, y])
    x = layers.ReLU(name='b2_relu')(x)
    x = layers.GlobalAveragePooling2D(name='gap')(x)
    out = layers.Dense(classes, name='logits')(x)
    return keras.Model(x_in, out, name='res_cnn')


def concat_cnn(seed: int = 0, input_shape=(8, 8, 1), classes: int = 10):
    """Two branches concatenated on channels, then a conv reading the concatenation."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input(input_shape)
    a = layers.Conv2D(6, 3, padding='same', activation='relu', name='branch_a')(x_in)
    b = layers.Conv2D(10, 1, padding='same', name='branch_b')(x_in)
    b = layers.BatchNormalization(name='branch_b_bn')(b)
    b = layers.ReLU(name='branch_b_relu')(b)
    x = layers.Concatenate(name='cat')([a, b])
    x = layers.Conv2D(8, 3, padding='same', activation='relu', name='mix')(x)
    x = layers.Concatenate(name='cat2')([x, a])
    x = layers.GlobalMaxPooling2D(name='gmp')(x)
    out = layers.Dense(classes, name='logits')(x)
    return keras.Model(x_in, out, name='cat_cnn')


def flatten_mlp(seed: int = 0, input_shape=(8, 8, 1), classes: int = 10):
    """conv-relu, flatten, dense: channel c of the conv owns rows p*C + c of the dense."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input(input_shape)
    x = layers.Conv2D(6, 3, strides=2, padding='same', activation='relu', name='conv')(x_in)
    x = layers.Flatten(name='flatten')(x)
    x = layers.Dense(12, activation='relu', name='fc')(x)
    out = layers.Dense(classes, name='logits')(x)
    return keras.Model(x_in, out, name='flat_mlp')


@functools.lru_cache(maxsize=1)
def digits():
    """sklearn digits as (x_train, y_train, x_test, y_test), images in [0, 1], 8x8x1."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_tr, y_tr, x_te, y_te


def small_compress(seed: int = 0, importance='activation_l1', model_fn=sequential_cnn, **kw):
    """``pruner.compress`` on 512 digits in steps (a schedule of a few steps, 8 steps an epoch):
    the short run the pruner tests share; ``kw`` overrides any argument."""
    from pruner import compress

    x, y, xt, yt = digits()
    args = dict(
        sparsity=0.5,
        weight_bits=4,
        activation_bits=8,
        importance=importance,
        unit='steps',
        start=2,
        interval=6,
        refresh=3,
        finetune_epochs=0,
        qat_epochs=1,
        seed=seed,
        batch_size=64,
    )
    args.update(kw)
    return compress(model_fn(), (x[:512], y[:512]), (xt[:128], yt[:128]), **args)


def randomize_batchnorm(model, seed: int = 1):
    """Give every BatchNormalization non-trivial statistics (so folding is tested)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c).astype(np.float32),
                    rng.uniform(-0.3, 0.3, c).astype(np.float32),
                    rng.uniform(-0.2, 0.2, c).astype(np.float32),
                    rng.uniform(0.5, 2.0, c).astype(np.float32),
                ]
            )
    return model


def mobile_cnn(seed: int = 0, input_shape=(8, 8, 1), classes: int = 10):
    """Expand conv, depthwise conv (pass-through), projection, transposed conv."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input(input_shape)
    x = layers.Conv2D(6, 1, activation='relu', name='expand')(x_in)
    x = layers.DepthwiseConv2D(3, padding='same', name='dw')(x)
    x = layers.BatchNormalization(name='dw_bn')(x)
    x = layers.ReLU(name='dw_relu')(x)
    x = layers.Conv2D(8, 1, name='project')(x)
    x = layers.BatchNormalization(name='project_bn')(x)
    x = layers.Conv2DTranspose(6, 3, strides=2, padding='same', activation='relu', name='up')(x)
    x = layers.GlobalAveragePooling2D(name='gap')(x)
    out = layers.Dense(classes, name='logits')(x)
    return keras.Model(x_in, out, name='mobile_cnn')


def conv1d_net(seed: int = 0, steps: int = 16, classes: int = 4):
    """Conv1D - BN - ReLU - Conv1D - flatten - dense, for 1-D data."""
    keras.utils.set_random_seed(seed)
    x_in = keras.Input((steps, 2))
    x = layers.Conv1D(8, 3, padding='same', name='c1')(x_in)
    x = layers.BatchNormalization(name='c1_bn')(x)
    x = layers.ReLU(name='c1_relu')(x)
    x = layers.Conv1D(6, 3, strides=2, activation='relu', name='c2')(x)
    x = layers.Flatten(name='flat')(x)
    out = layers.Dense(classes, name='logits')(x)
    return keras.Model(x_in, out, name='conv1d_net')
