"""Random valid QKeras models for property-based tests (hypothesis), as plain data.

A model is first drawn as a *spec*: a JSON-like dict (layer list, quantizer
parameters, a seed). ``build_qkeras(spec)`` turns it into a Keras model,
``build_float(spec)`` into the same architecture with float layers (for the
pruner). Because specs are plain data, a counterexample hypothesis prints can be
pasted verbatim into a regression test (fpga_tests/test_fuzz_regressions.py).

Models are kept small (a few channels, inputs of a few pixels) so that the
generated C++ compiles in seconds.
"""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import strategies as st

# ---------------------------------------------------------------------------
# Quantizer specs
# ---------------------------------------------------------------------------


def weight_quantizer_specs(min_bits=2, max_bits=16):
    return st.builds(
        lambda b, i: {'bits': b, 'integer': min(i, b - 1)},
        st.integers(min_bits, max_bits),
        st.integers(0, 2),
    )


def activation_specs(min_bits=2, max_bits=16):
    relu = st.builds(
        lambda b, i: {'q': 'relu', 'bits': b, 'integer': min(i, b)},
        st.integers(min_bits, max_bits),
        st.integers(0, 4),
    )
    bits = st.builds(
        lambda b, i, kn, sym: {
            'q': 'bits',
            'bits': b,
            'integer': min(i, b - 1),
            'keep_negative': kn,
            'symmetric': sym and kn,
        },
        st.integers(max(min_bits, 3), max_bits),
        st.integers(0, 4),
        st.booleans(),
        st.booleans(),
    )
    return st.one_of(relu, bits)


def make_quantizer(spec):
    from qkeras import quantized_bits, quantized_relu

    if spec is None:
        return None
    if spec.get('q') == 'relu':
        return quantized_relu(spec['bits'], spec['integer'])
    return quantized_bits(
        spec['bits'],
        spec['integer'],
        keep_negative=spec.get('keep_negative', True),
        symmetric=spec.get('symmetric', False),
        alpha=1,
    )


# ---------------------------------------------------------------------------
# Architecture specs
# ---------------------------------------------------------------------------


@st.composite
def _weighted(draw, max_bits=16):
    w = draw(weight_quantizer_specs(2, max_bits))
    b = draw(weight_quantizer_specs(2, max_bits))
    return {'wq': w, 'bq': b}


@st.composite
def model_specs(draw, kinds=('dense', 'conv1d', 'conv2d'), max_bits=16, max_blocks=3, rtl=False):
    """A spec of a small valid QKeras model (see module docstring).

    ``rtl``: smaller models ending in a quantizer, so every I/O element of the RTL
    route fits in 32 bits and Verilator builds stay short.
    """
    kind = draw(st.sampled_from(kinds))
    if kind == 'dense':
        shape = [draw(st.integers(2, 6 if rtl else 8))]
    elif kind == 'conv1d':
        shape = [draw(st.integers(4, 6 if rtl else 8)), draw(st.integers(1, 2))]
    else:
        side = draw(st.integers(3, 4 if rtl else 6))
        shape = [side, draw(st.integers(side - 1, side)) if not rtl else side, draw(st.integers(1, 2))]
    in_bits = draw(st.integers(3, 10 if rtl else 12))
    input_q = {
        'q': 'bits',
        'bits': in_bits,
        'integer': draw(st.integers(0, min(3, in_bits - 1))),
        'keep_negative': draw(st.booleans()),
        'symmetric': False,
    }
    layers: list[dict] = []
    channels = shape[-1]
    spatial = list(shape[:-1])
    nd = len(spatial)
    max_ch = 3 if rtl else 4

    def act(optional=True):
        if optional and draw(st.booleans()):
            return None
        return draw(activation_specs(2, max_bits))

    n_blocks = draw(st.integers(1, max_blocks))
    for _ in range(n_blocks):
        if nd:
            options = ['conv', 'pool', 'residual', 'concat', 'qact']
            if nd == 2:
                options.append('dwconv')
            op = draw(st.sampled_from(options))
        else:
            op = draw(st.sampled_from(['dense', 'residual', 'concat', 'qact']))
        if op == 'conv':
            k = draw(st.integers(1, 3))
            stride = draw(st.integers(1, 2))
            padding = draw(st.sampled_from(['valid', 'same']))
            if padding == 'valid' and any(s < k for s in spatial):
                padding = 'same'
            filters = draw(st.integers(1, max_ch))
            layers.append(
                {
                    'op': 'conv',
                    'filters': filters,
                    'kernel': k,
                    'strides': stride,
                    'padding': padding,
                    **draw(_weighted(max_bits)),
                    'act': act(optional=False),
                }
            )
            spatial = [(s - k) // stride + 1 if padding == 'valid' else -(-s // stride) for s in spatial]
            channels = filters
        elif op == 'dwconv':
            k = draw(st.integers(1, 3))
            stride = draw(st.integers(1, 2))
            padding = draw(st.sampled_from(['valid', 'same']))
            if padding == 'valid' and any(s < k for s in spatial):
                padding = 'same'
            mult = draw(st.integers(1, 2))
            layers.append(
                {
                    'op': 'dwconv',
                    'kernel': k,
                    'strides': stride,
                    'padding': padding,
                    'depth_multiplier': mult,
                    **draw(_weighted(max_bits)),
                    'act': act(optional=False),
                }
            )
            spatial = [(s - k) // stride + 1 if padding == 'valid' else -(-s // stride) for s in spatial]
            channels *= mult
        elif op == 'pool':
            if min(spatial) < 2:
                continue
            kind_p = draw(st.sampled_from(['max', 'avg']))
            layers.append({'op': 'pool', 'kind': kind_p, 'size': 2})
            spatial = [s // 2 for s in spatial]
        elif op == 'residual':
            # branch: a channel-preserving layer (conv 'same', stride 1 / dense), added to its input.
            inner = {
                'filters': channels,
                'kernel': draw(st.integers(1, 3)),
                **draw(_weighted(max_bits)),
                'act': act(optional=False),
            }
            layers.append({'op': 'residual', 'branch': inner, 'after': act(optional=True)})
        elif op == 'concat':
            a = {
                'filters': draw(st.integers(1, max_ch)),
                'kernel': draw(st.integers(1, 3)),
                **draw(_weighted(max_bits)),
                'act': act(optional=False),
            }
            b = {
                'filters': draw(st.integers(1, max_ch)),
                'kernel': draw(st.integers(1, 3)),
                **draw(_weighted(max_bits)),
                'act': act(optional=False),
            }
            layers.append({'op': 'concat', 'a': a, 'b': b})
            channels = a['filters'] + b['filters']
        elif op == 'qact':
            layers.append({'op': 'qact', 'act': act(optional=False)})
        elif op == 'dense':
            units = draw(st.integers(1, 6 if not rtl else 4))
            layers.append({'op': 'dense', 'units': units, **draw(_weighted(max_bits)), 'act': act(optional=False)})
            channels = units
    if nd:
        if draw(st.booleans()) or rtl:
            layers.append({'op': 'flatten'})
        else:
            layers.append({'op': 'gpool', 'kind': draw(st.sampled_from(['max', 'avg']))})
    out_act = draw(activation_specs(2, max_bits)) if (rtl or draw(st.booleans())) else None
    if rtl and out_act is not None:
        out_act = {**out_act, 'bits': min(out_act['bits'], 12)}
    layers.append({'op': 'dense', 'units': draw(st.integers(1, 4)), **draw(_weighted(max_bits)), 'act': out_act})
    return {
        'kind': kind,
        'input_shape': shape,
        'input_q': input_q,
        'layers': layers,
        'seed': draw(st.integers(0, 2**16)),
    }


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _conv_layer(nd, qkeras_layers: bool, name: str, filters, kernel, strides=1, padding='same', **q):
    from qkeras import QConv1D, QConv2D

    if qkeras_layers:
        cls = QConv1D if nd == 1 else QConv2D
        return cls(
            filters,
            kernel,
            strides=strides,
            padding=padding,
            kernel_quantizer=make_quantizer(q['wq']),
            bias_quantizer=make_quantizer(q['bq']),
            activation=make_quantizer(q['act']),
            name=name,
        )
    cls = keras.layers.Conv1D if nd == 1 else keras.layers.Conv2D
    return cls(filters, kernel, strides=strides, padding=padding, activation='relu' if q['act'] else None, name=name)


def _dense_layer(qkeras_layers: bool, name: str, units, **q):
    from qkeras import QDense

    if qkeras_layers:
        return QDense(
            units,
            kernel_quantizer=make_quantizer(q['wq']),
            bias_quantizer=make_quantizer(q['bq']),
            activation=make_quantizer(q['act']),
            name=name,
        )
    return keras.layers.Dense(units, activation='relu' if q['act'] else None, name=name)


def _build(spec: dict, qkeras_layers: bool) -> keras.Model:
    from qkeras import QActivation, QDepthwiseConv2D

    nd = len(spec['input_shape']) - 1
    inp = keras.Input(tuple(spec['input_shape']), name='x')
    if qkeras_layers:
        h = QActivation(make_quantizer(spec['input_q']), name='input_q')(inp)
    else:
        h = inp
    for i, layer in enumerate(spec['layers']):
        op = layer['op']
        q = {k: layer.get(k) for k in ('wq', 'bq', 'act')}
        if op == 'conv':
            h = _conv_layer(
                nd,
                qkeras_layers,
                f'conv{i}',
                layer['filters'],
                layer['kernel'],
                layer['strides'],
                layer['padding'],
                **q,
            )(h)
        elif op == 'dwconv':
            if qkeras_layers:
                h = QDepthwiseConv2D(
                    layer['kernel'],
                    strides=layer['strides'],
                    padding=layer['padding'],
                    depth_multiplier=layer['depth_multiplier'],
                    depthwise_quantizer=make_quantizer(layer['wq']),
                    bias_quantizer=make_quantizer(layer['bq']),
                    activation=make_quantizer(layer['act']),
                    name=f'dw{i}',
                )(h)
            else:
                h = keras.layers.DepthwiseConv2D(
                    layer['kernel'],
                    strides=layer['strides'],
                    padding=layer['padding'],
                    depth_multiplier=layer['depth_multiplier'],
                    activation='relu',
                    name=f'dw{i}',
                )(h)
        elif op == 'pool':
            cls = {
                ('max', 1): keras.layers.MaxPooling1D,
                ('max', 2): keras.layers.MaxPooling2D,
                ('avg', 1): keras.layers.AveragePooling1D,
                ('avg', 2): keras.layers.AveragePooling2D,
            }[(layer['kind'], nd)]
            h = cls(layer['size'], name=f'pool{i}')(h)
        elif op == 'gpool':
            cls = {
                ('max', 1): keras.layers.GlobalMaxPooling1D,
                ('max', 2): keras.layers.GlobalMaxPooling2D,
                ('avg', 1): keras.layers.GlobalAveragePooling1D,
                ('avg', 2): keras.layers.GlobalAveragePooling2D,
            }[(layer['kind'], nd)]
            h = cls(name=f'gpool{i}')(h)
        elif op == 'flatten':
            h = keras.layers.Flatten(name=f'flatten{i}')(h)
        elif op == 'qact':
            if qkeras_layers:
                h = QActivation(make_quantizer(layer['act']), name=f'qact{i}')(h)
            else:
                h = keras.layers.Activation('relu', name=f'act{i}')(h)
        elif op == 'dense':
            h = _dense_layer(qkeras_layers, f'dense{i}', layer['units'], **q)(h)
        elif op == 'residual':
            br = layer['branch']
            bq = {k: br.get(k) for k in ('wq', 'bq', 'act')}
            channels = h.shape[-1]
            if nd:
                b = _conv_layer(nd, qkeras_layers, f'res{i}', channels, br['kernel'], 1, 'same', **bq)(h)
            else:
                b = _dense_layer(qkeras_layers, f'res{i}', channels, **bq)(h)
            h = keras.layers.Add(name=f'add{i}')([h, b])
            if layer.get('after') is not None:
                if qkeras_layers:
                    h = QActivation(make_quantizer(layer['after']), name=f'addq{i}')(h)
                else:
                    h = keras.layers.Activation('relu', name=f'addq{i}')(h)
        elif op == 'concat':
            branches = []
            for tag in ('a', 'b'):
                br = layer[tag]
                bq = {k: br.get(k) for k in ('wq', 'bq', 'act')}
                if nd:
                    branches.append(
                        _conv_layer(nd, qkeras_layers, f'cat{i}{tag}', br['filters'], br['kernel'], 1, 'same', **bq)(h)
                    )
                else:
                    branches.append(_dense_layer(qkeras_layers, f'cat{i}{tag}', br['filters'], **bq)(h))
            h = keras.layers.Concatenate(name=f'cat{i}')(branches)
        else:  # pragma: no cover
            raise ValueError(f'unknown op {op!r}')
    model = keras.Model(inp, h, name='fuzz_q' if qkeras_layers else 'fuzz_f')
    rng = np.random.default_rng(spec['seed'])
    # Weights spread over about +-1, biased away from 0 so activations are neither all
    # zero nor all saturated; QKeras puts them on the quantizer grid at inference.
    model.set_weights(
        [(rng.uniform(0.1, 1.0, w.shape) * rng.choice([-1, 1], w.shape)).astype('float32') for w in model.get_weights()]
    )
    return model


def build_qkeras(spec: dict) -> keras.Model:
    return _build(spec, qkeras_layers=True)


def build_float(spec: dict) -> keras.Model:
    return _build(spec, qkeras_layers=False)


def input_samples(spec: dict, n: int = 40, seed: int | None = None) -> np.ndarray:
    """Random samples on (and beyond the range of) the input quantizer's grid."""
    from hls_backend.fixed_point import quantizer_type

    fixed = quantizer_type(make_quantizer(spec['input_q']), 'input')
    rng = np.random.default_rng(spec['seed'] + 1 if seed is None else seed)
    x = rng.uniform(fixed.min_value - 0.5, fixed.max_value + 0.5, size=(n, *spec['input_shape']))
    return fixed.quantize(x)
