"""One exactness case per route that holds every layer kind the route supports.

Issue 27: the README's layer table said UpSampling, ZeroPadding and Reshape were
supported on both routes and global pooling on RTL, yet no test simulated them. Here
each route has fixed models (specs in the format of fpga_tests/fuzz_models.py, or
Keras code for the PyTorch route's float layers) that together contain every class
the route's registry accepts; test_layer_coverage.py derives the lists from the
registries and fails on a class no case holds, and test_layer_cases_hls.py,
test_layer_cases_rtl.py and test_layer_coverage.py run the cases bit for bit.

A model ends a 2-D part with a global pooling, reshapes the pooled vector into a
1-channel sequence and continues in 1-D, so one model covers both dimensions.
"""

from __future__ import annotations

import numpy as np

from fpga_tests.fuzz_models import build_qkeras, spec_classes


def q(bits: int, integer: int = 0, **options) -> dict:
    return {'bits': bits, 'integer': integer, **options}


def relu(bits: int, integer: int) -> dict:
    return {'q': 'relu', 'bits': bits, 'integer': integer}


def qbits(bits: int, integer: int, keep_negative: bool = True, symmetric: bool = False) -> dict:
    return {'q': 'bits', 'bits': bits, 'integer': integer, 'keep_negative': keep_negative, 'symmetric': symmetric}


def conv(filters, kernel, act, wq=None, bq=None, strides=1, padding='same', **extra) -> dict:
    return {
        'op': 'conv',
        'filters': filters,
        'kernel': kernel,
        'strides': strides,
        'padding': padding,
        'wq': wq or q(5, 0),
        'bq': bq or q(6, 1),
        'act': act,
        **extra,
    }


def branch(filters, kernel, act, wq=None, bq=None, **extra) -> dict:
    return {'filters': filters, 'kernel': kernel, 'wq': wq or q(5, 0), 'bq': bq or q(6, 1), 'act': act, **extra}


def dense(units, act=None, wq=None, bq=None, **extra) -> dict:
    return {'op': 'dense', 'units': units, 'wq': wq or q(5, 0), 'bq': bq or q(6, 1), 'act': act, **extra}


def _spec(name: str, shape: list[int], input_q: dict, layers: list[dict], seed: int) -> dict:
    kind = {1: 'dense', 2: 'conv1d', 3: 'conv2d'}[len(shape)]
    return {'name': name, 'kind': kind, 'input_shape': shape, 'input_q': input_q, 'layers': layers, 'seed': seed,
            'init': 'scaled'}  # fmt: skip


# The HLS route (hls4ml): every accepted kind, run with io_parallel and io_stream.
# Quantizers include integer bits past the width (q(3, 4): a step of 2) and below 0.
HLS_CASES = {
    'hls_every_kind': _spec(
        'hls_every_kind',
        [6, 6, 2],
        qbits(8, 2),
        [
            conv(3, 3, relu(6, 2), wq=q(6, 1)),
            conv(3, 3, qbits(8, 2), padding='valid', bn=True),  # QConv2DBatchnorm -> 4x4
            {
                'op': 'dwconv',
                'depth_multiplier': 1,
                'kernel': 3,
                'strides': 1,
                'padding': 'same',
                'wq': q(5, 1),
                'bq': q(3, 4),
                'act': relu(7, 2),
            },
            {
                'op': 'sepconv',
                'filters': 3,
                'kernel': 2,
                'strides': 1,
                'padding': 'same',
                'wq': q(5, 0),
                'pq': q(5, 0),
                'bq': q(6, 1),
                'act': relu(6, 3),
            },
            {'op': 'zeropad', 'pad': [[1, 0], [0, 1]]},  # 5x5
            {'op': 'pool', 'kind': 'max', 'size': 2},  # 2x2
            {'op': 'upsample', 'size': [2, 1]},  # 4x2
            {'op': 'qact', 'act': qbits(6, 2, keep_negative=False)},
            {'op': 'dropout', 'rate': 0.25},
            {'op': 'linear'},
            {'op': 'residual', 'branch': branch(3, 3, relu(6, 2), bn=True), 'after': relu(7, 3)},
            {'op': 'concat', 'a': branch(2, 1, relu(5, 2)), 'b': branch(2, 3, qbits(6, -1))},
            {'op': 'gpool', 'kind': 'max'},  # GlobalMaxPooling2D -> 4
            {'op': 'reshape', 'shape': [4, 1]},  # the 4 channels as a 1-D sequence
            conv(2, 3, relu(8, 3), bq=q(6, -1)),
            conv(2, 2, qbits(8, 3), bq=q(6, -2)),
            {'op': 'zeropad', 'pad': [[1, 1]]},  # 6
            {'op': 'pool', 'kind': 'max', 'size': 2},  # 3
            {'op': 'upsample', 'size': [2]},  # 6
            {'op': 'gpool', 'kind': 'max'},  # GlobalMaxPooling1D
            dense(4, relu(8, 3), bn=True),  # QDenseBatchnorm
            {'op': 'flatten'},
            dense(3),
            {'op': 'softmax', 'layer': 'Softmax'},
        ],
        seed=11,
    ),
    # hls4ml 1.3.0 cannot compile 1-D and 2-D depthwise convolutions in one design (refused:
    # separable_1d_after_depthwise_2d in test_fuzz_regressions.py): QSeparableConv1D apart.
    'hls_separable_1d': _spec(
        'hls_separable_1d',
        [8, 2],
        qbits(7, 1),
        [
            {
                'op': 'sepconv',
                'filters': 3,
                'kernel': 3,
                'strides': 1,
                'padding': 'same',
                'wq': q(5, 0),
                'pq': q(4, 0),
                'bq': q(6, -1),
                'act': qbits(8, 3),
            },
            {
                'op': 'sepconv',
                'filters': 2,
                'kernel': 2,
                'strides': 2,
                'padding': 'valid',
                'wq': q(4, 1),
                'pq': q(5, 0),
                'bq': q(3, 3),
                'act': relu(7, 3),
            },
            {'op': 'flatten'},
            dense(3),
        ],
        seed=17,
    ),
}

# The RTL route (da4ml + Verilator): small models (the build time grows with the design),
# average pooling over power-of-two windows. Two models: each global pooling kind once.
RTL_CASES = {
    'rtl_2d_max_then_1d_average': _spec(
        'rtl_2d_max_then_1d_average',
        [4, 4, 1],
        qbits(6, 1),
        [
            conv(2, 3, relu(5, 2)),
            {
                'op': 'dwconv',
                'depth_multiplier': 1,
                'kernel': 2,
                'strides': 1,
                'padding': 'same',
                'wq': q(4, 0),
                'bq': q(3, 3),
                'act': qbits(6, 2),
            },
            {'op': 'pool', 'kind': 'avg', 'size': 2},  # 2x2
            {'op': 'upsample', 'size': [2, 2]},  # 4x4
            {'op': 'zeropad', 'pad': [[0, 1], [1, 0]]},  # 5x5
            {'op': 'pool', 'kind': 'max', 'size': 2},  # 2x2
            {'op': 'gpool', 'kind': 'max'},  # GlobalMaxPooling2D -> 2
            dense(4, relu(6, 2)),
            {'op': 'reshape', 'shape': [4, 1]},
            conv(1, 2, qbits(6, 2), bq=q(4, -1)),
            {'op': 'zeropad', 'pad': [[0, 2]]},  # 6
            {'op': 'pool', 'kind': 'avg', 'size': 2},  # 3
            {'op': 'upsample', 'size': [2]},  # 6
            {'op': 'pool', 'kind': 'max', 'size': 2},  # 3
            {'op': 'zeropad', 'pad': [[1, 0]]},  # 4
            {'op': 'gpool', 'kind': 'avg'},  # GlobalAveragePooling1D over 4
            dense(2, qbits(8, 3)),
            {'op': 'softmax', 'layer': 'Activation'},
        ],
        seed=12,
    ),
    'rtl_2d_average_then_1d_max': _spec(
        'rtl_2d_average_then_1d_max',
        [4, 4, 2],
        qbits(5, 0, keep_negative=False),
        [
            conv(2, 1, relu(6, 1), bn=True),  # QConv2DBatchnorm
            {'op': 'qact', 'act': qbits(5, 1)},
            {'op': 'dropout', 'rate': 0.5},
            {'op': 'linear'},
            {'op': 'residual', 'branch': branch(2, 2, relu(5, 1)), 'after': relu(6, 2)},
            {'op': 'concat', 'a': branch(1, 1, relu(4, 1)), 'b': branch(1, 2, qbits(5, 1))},
            {'op': 'gpool', 'kind': 'avg'},  # GlobalAveragePooling2D over 16 -> 2
            {'op': 'reshape', 'shape': [2, 1]},
            {'op': 'gpool', 'kind': 'max'},  # GlobalMaxPooling1D -> 1
            dense(3, qbits(8, 2), bq=q(4, -1), bn=True),  # QDenseBatchnorm
            {'op': 'flatten'},
            dense(2, qbits(12, 7), wq=q(4, 4)),  # weights steps of 2: -16..14
            {'op': 'softmax', 'layer': 'Softmax'},
        ],
        seed=13,
    ),
}

# The PyTorch route (pruner.to_torch): QKeras models (no fused batch norm: it has no
# handler) and the float layers, with weights on a coarse power-of-two grid so that every
# float32 sum of the Keras model is exact and a torch module must give the same bits.
TORCH_SPECS = {
    'torch_quantized': _spec(
        'torch_quantized',
        [6, 6, 2],
        qbits(7, 2),
        [
            conv(3, 3, relu(6, 2)),
            {
                'op': 'dwconv',
                'depth_multiplier': 1,
                'kernel': 3,
                'strides': 1,
                'padding': 'valid',
                'wq': q(5, 1),
                'bq': q(6, 2),
                'act': relu(7, 2),
            },  # 4x4
            {'op': 'zeropad', 'pad': [[1, 1], [1, 1]]},  # 6x6
            {'op': 'pool', 'kind': 'max', 'size': 2},  # 3x3
            {'op': 'residual', 'branch': branch(3, 3, relu(6, 2)), 'after': relu(7, 3)},
            {'op': 'concat', 'a': branch(2, 1, relu(5, 2)), 'b': branch(2, 3, qbits(6, 1))},
            {'op': 'zeropad', 'pad': [[0, 1], [0, 1]]},  # 4x4
            {'op': 'pool', 'kind': 'avg', 'size': 2},  # 2x2, 4 values each
            {'op': 'qact', 'act': qbits(8, 3)},
            {'op': 'dropout', 'rate': 0.25},
            {'op': 'gpool', 'kind': 'max'},  # GlobalMaxPooling2D -> 4
            dense(4, relu(7, 3)),
            {'op': 'reshape', 'shape': [4]},  # the same shape: the torch handler's other form
            dense(3),
        ],
        seed=14,
    ),
    'torch_quantized_1d': _spec(
        'torch_quantized_1d',
        [8, 2],
        qbits(6, 1),
        [
            conv(3, 3, relu(6, 2)),
            {'op': 'zeropad', 'pad': [[1, 1]]},  # 10
            {'op': 'pool', 'kind': 'max', 'size': 2},  # 5
            conv(2, 2, relu(6, 2), padding='valid'),  # 4
            {'op': 'pool', 'kind': 'avg', 'size': 2},  # 2
            {'op': 'flatten'},
            dense(3, relu(6, 2)),
            {'op': 'linear'},
            dense(2),
        ],
        seed=15,
    ),
}


def torch_float_models():
    """Float Keras models with every float layer the torch route maps, weights on a grid.

    Inputs on a 2^-3 grid times weights on a 2^-2 grid stay exact in float32 through a
    few layers; a batch norm with ``variance + epsilon`` = 1 or 4 scales exactly."""
    import keras

    rng = np.random.default_rng(16)
    models = {}

    inp = keras.Input((6, 6, 2), name='x')
    h = keras.layers.Conv2D(3, 3, padding='same', name='conv2d')(inp)
    h = keras.layers.BatchNormalization(epsilon=0.25, name='bn2d')(h)
    h = keras.layers.ReLU(name='relu')(h)
    h = keras.layers.DepthwiseConv2D(2, name='dw2d')(h)  # 5x5
    h = keras.layers.SpatialDropout2D(0.3, name='sdrop2d')(h)
    h = keras.layers.GaussianNoise(0.5, name='noise')(h)
    h = keras.layers.Identity(name='identity')(h)
    h = keras.layers.Activation('relu', name='act_relu')(h)
    h = keras.layers.ZeroPadding2D(((0, 1), (1, 2)), name='pad2d')(h)  # 6x8
    h = keras.layers.AveragePooling2D(2, name='avg2d')(h)  # 3x4
    a = keras.layers.GlobalAveragePooling2D(name='gavg2d')(keras.layers.ZeroPadding2D(((0, 1), (0, 0)))(h))  # 16
    b = keras.layers.GlobalMaxPooling2D(name='gmax2d')(h)
    h = keras.layers.Concatenate(name='cat')([a, b])
    h = keras.layers.GaussianDropout(0.2, name='gdrop')(h)
    out = keras.layers.Dense(3, name='dense')(h)
    models['torch_float_2d'] = keras.Model(inp, out, name='torch_float_2d')

    inp = keras.Input((8, 2), name='x')
    h = keras.layers.Conv1D(3, 3, padding='same', name='conv1d')(inp)
    h = keras.layers.BatchNormalization(epsilon=0.25, name='bn1d')(h)
    h = keras.layers.Activation('linear', name='act_linear')(h)
    h = keras.layers.DepthwiseConv1D(2, padding='same', name='dw1d')(h)
    h = keras.layers.SpatialDropout1D(0.3, name='sdrop1d')(h)
    h = keras.layers.AveragePooling1D(2, name='avg1d')(h)  # 4
    h = keras.layers.Add(name='add')([h, keras.layers.Conv1D(3, 1, name='side')(h)])
    a = keras.layers.GlobalAveragePooling1D(name='gavg1d')(h)
    b = keras.layers.GlobalMaxPooling1D(name='gmax1d')(keras.layers.MaxPooling1D(2, name='max1d')(h))
    h = keras.layers.Concatenate(name='cat')([a, b])
    h = keras.layers.Dropout(0.5, name='drop')(h)
    out = keras.layers.Dense(2, name='dense')(h)
    models['torch_float_1d'] = keras.Model(inp, out, name='torch_float_1d')

    for model in models.values():
        values = []
        for w in model.weights:
            name = w.path.split('/')[-1]
            if name == 'moving_variance':
                value = rng.choice([0.75, 3.75], w.shape)  # + epsilon 0.25: 1 or 4, an exact square root
            elif name == 'gamma':
                value = rng.choice([0.5, 1.0, 1.5], w.shape)
            else:
                value = np.round(rng.uniform(-1, 1, w.shape) * 4) / 4
            values.append(value.astype('float32'))
        model.set_weights(values)
    return models


def float_inputs(model, n: int = 64, seed: int = 0) -> np.ndarray:
    """Inputs on a 2^-3 grid in [-2, 2]."""
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return (np.round(np.random.default_rng(seed).uniform(-2, 2, (n, *shape)) * 8) / 8).astype('float32')


def case_classes(model) -> set[str]:
    return {layer.__class__.__name__ for layer in model.layers}


def spec_case_classes(spec: dict) -> set[str]:
    return spec_classes(spec, qkeras_layers=True)


def build(spec: dict):
    return build_qkeras(spec)
