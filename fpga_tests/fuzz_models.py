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
# Where the random choices come from
# ---------------------------------------------------------------------------
# The spec is drawn by one function against a small "picker": hypothesis's draw (for
# properties that shrink and keep a database) or a seeded numpy generator (for the
# default suite's fixed, non-trivial draws and for the fuzz campaign, where every
# example is named by its seed and reproduced by ``random_spec(seed, ...)``).


class _HypothesisPicker:
    def __init__(self, draw):
        self._draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))

    def choice(self, options):
        return self._draw(st.sampled_from(list(options)))

    def boolean(self) -> bool:
        return self._draw(st.booleans())


class _RandomPicker:
    def __init__(self, rng: np.random.Generator):
        self._rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return int(self._rng.integers(lo, hi + 1))

    def choice(self, options):
        options = list(options)
        return options[int(self._rng.integers(len(options)))]

    def boolean(self) -> bool:
        return bool(self._rng.integers(2))


# ---------------------------------------------------------------------------
# Quantizer specs
# ---------------------------------------------------------------------------


def _weight_quantizer(pick, min_bits=2, max_bits=16) -> dict:
    bits = pick.integer(min_bits, max_bits)
    return {'bits': bits, 'integer': min(pick.integer(0, 2), bits - 1)}


def _activation(pick, min_bits=2, max_bits=16) -> dict:
    if pick.boolean():
        bits = pick.integer(min_bits, max_bits)
        return {'q': 'relu', 'bits': bits, 'integer': min(pick.integer(0, 4), bits)}
    bits = pick.integer(max(min_bits, 3), max_bits)
    integer = pick.integer(0, 4)
    keep_negative = pick.boolean()
    symmetric = pick.boolean()
    return {
        'q': 'bits',
        'bits': bits,
        'integer': min(integer, bits - 1),
        'keep_negative': keep_negative,
        'symmetric': symmetric and keep_negative,
    }


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


# Average pooling is drawn less often than max pooling: the back ends refuse it where
# hls4ml rounds the average (the refusal is tested here; exactness needs the rest).
AVERAGE_ONE_IN_FOUR = ('max', 'max', 'max', 'avg')


def _draw_spec(pick, kinds=('dense', 'conv1d', 'conv2d'), max_bits=10, max_blocks=3, rtl=False, batchnorm=False):
    """One spec (see the module docstring), every choice taken from ``pick``.

    ``rtl``: smaller models ending in a quantizer, so every I/O element of the RTL
    route fits in 32 bits and Verilator builds stay short. ``batchnorm``: weighted
    layers may be followed by a BatchNormalization (``'bn': True``), which only the
    float build has (the pruner folds it before quantizing).
    """

    def weighted() -> dict:
        return {'wq': _weight_quantizer(pick, 2, max_bits), 'bq': _weight_quantizer(pick, 2, max_bits)}

    def act(optional=True):
        if optional and pick.boolean():
            return None
        return _activation(pick, 2, max_bits)

    def bn() -> dict:
        return {'bn': True} if batchnorm and pick.boolean() else {}

    kind = pick.choice(kinds)
    if kind == 'dense':
        shape = [pick.integer(2, 6 if rtl else 8)]
    elif kind == 'conv1d':
        shape = [pick.integer(4, 6 if rtl else 8), pick.integer(1, 2)]
    else:
        side = pick.integer(3, 4 if rtl else 6)
        shape = [side, pick.integer(side - 1, side) if not rtl else side, pick.integer(1, 2)]
    in_bits = pick.integer(3, 10 if rtl else 12)
    input_q = {
        'q': 'bits',
        'bits': in_bits,
        'integer': pick.integer(0, min(3, in_bits - 1)),
        'keep_negative': pick.boolean(),
        'symmetric': False,
    }
    layers: list[dict] = []
    channels = shape[-1]
    spatial = list(shape[:-1])
    nd = len(spatial)
    max_ch = 3 if rtl else 4

    for _ in range(pick.integer(1, max_blocks)):
        if nd:
            options = ['conv', 'pool', 'residual', 'concat', 'qact']
            if nd == 2:
                options.append('dwconv')
            op = pick.choice(options)
        else:
            op = pick.choice(['dense', 'residual', 'concat', 'qact'])
        if op in ('conv', 'dwconv'):
            k = pick.integer(1, 3)
            stride = pick.integer(1, 2)
            padding = pick.choice(['valid', 'same'])
            if padding == 'valid' and any(s < k for s in spatial):
                padding = 'same'
            if op == 'conv':
                channels = pick.integer(1, max_ch)
                shape_keys = {'filters': channels}
            else:
                mult = pick.choice([1, 1, 1, 2])  # hls4ml 1.3.0 refuses depth_multiplier > 1
                channels *= mult
                shape_keys = {'depth_multiplier': mult}
            layers.append(
                {
                    'op': op,
                    **shape_keys,
                    'kernel': k,
                    'strides': stride,
                    'padding': padding,
                    **weighted(),
                    **bn(),
                    'act': act(optional=False),
                }
            )
            spatial = [(s - k) // stride + 1 if padding == 'valid' else -(-s // stride) for s in spatial]
        elif op == 'pool':
            if min(spatial) < 2:
                continue
            layers.append({'op': 'pool', 'kind': pick.choice(AVERAGE_ONE_IN_FOUR), 'size': 2})
            spatial = [s // 2 for s in spatial]
        elif op == 'residual':
            # branch: a channel-preserving layer (conv 'same', stride 1 / dense), added to its input.
            inner = {
                'filters': channels,
                'kernel': pick.integer(1, 3),
                **weighted(),
                **bn(),
                'act': act(optional=False),
            }
            layers.append({'op': 'residual', 'branch': inner, 'after': act(optional=True)})
        elif op == 'concat':
            branches = {}
            for tag in ('a', 'b'):
                branches[tag] = {
                    'filters': pick.integer(1, max_ch),
                    'kernel': pick.integer(1, 3),
                    **weighted(),
                    **bn(),
                    'act': act(optional=False),
                }
            layers.append({'op': 'concat', **branches})
            channels = branches['a']['filters'] + branches['b']['filters']
        elif op == 'qact':
            layers.append({'op': 'qact', 'act': act(optional=False)})
        elif op == 'dense':
            channels = pick.integer(1, 6 if not rtl else 4)
            layers.append({'op': 'dense', 'units': channels, **weighted(), **bn(), 'act': act(optional=False)})
    if nd:
        if rtl or pick.boolean():
            layers.append({'op': 'flatten'})
        else:
            layers.append({'op': 'gpool', 'kind': pick.choice(AVERAGE_ONE_IN_FOUR)})
    out_act = _activation(pick, 2, max_bits) if (rtl or pick.boolean()) else None
    if rtl and out_act is not None:
        out_act = {**out_act, 'bits': min(out_act['bits'], 12)}
    layers.append({'op': 'dense', 'units': pick.integer(1, 4), **weighted(), 'act': out_act})
    return {
        'kind': kind,
        'input_shape': shape,
        'input_q': input_q,
        'layers': layers,
        'seed': pick.integer(0, 2**16),
    }


@st.composite
def model_specs(draw, **options):
    """A hypothesis strategy of specs; ``options`` as :func:`_draw_spec` takes them."""
    return _draw_spec(_HypothesisPicker(draw), **options)


def random_spec(seed: int, **options) -> dict:
    """The spec drawn from a numpy generator seeded with ``seed``: the same seed, the same model."""
    return _draw_spec(_RandomPicker(np.random.default_rng(seed)), **options)


def spec_features(spec: dict) -> set[str]:
    """What a spec exercises: its input kind and every op (pool kinds, depthwise, BatchNorm)."""
    features = {spec['kind']}
    for layer in spec['layers']:
        op = layer['op']
        features.add(f'{op}_{layer["kind"]}' if op in ('pool', 'gpool') else op)
        for part in (layer, layer.get('branch') or {}, layer.get('a') or {}, layer.get('b') or {}):
            if part.get('bn'):
                features.add('batchnorm')
    return features


def is_trivial(spec: dict) -> bool:
    """The simplest models (one layer before the output dense, no branch): already
    pinned in test_fuzz_regressions.py, so the default suite's draws skip them."""
    body = [layer for layer in spec['layers'][:-1] if layer['op'] not in ('flatten', 'gpool')]
    return len(body) < 2 and not any(layer['op'] in ('residual', 'concat') for layer in body)


def covering_specs(n: int, first_seed: int, wanted: set[str], **options) -> list[tuple[int, dict]]:
    """``n`` non-trivial seeded specs, chosen so that together they cover ``wanted``.

    Seeds are tried in order from ``first_seed``; a spec is taken while it adds a
    wanted feature not yet covered, or once everything is covered. Deterministic, so
    the default suite checks the same models on every run, and each one is named by
    its seed (``random_spec(seed, **options)`` rebuilds it).
    """
    chosen: list[tuple[int, dict]] = []
    covered: set[str] = set()
    seed = first_seed
    while len(chosen) < n:
        spec = random_spec(seed, **options)
        new = (spec_features(spec) & wanted) - covered
        if not is_trivial(spec) and (new or covered >= wanted):
            chosen.append((seed, spec))
            covered |= spec_features(spec)
        seed += 1
        if seed - first_seed > 10_000:  # pragma: no cover - the generator lost a feature
            raise AssertionError(f'no spec in 10000 seeds covers {sorted(wanted - covered)}')
    return chosen


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _weighted_layer(part: dict, qkeras_layers: bool, name: str, nd: int, op: str, **shape):
    """One conv / depthwise / dense layer of a spec part, QKeras or float.

    With ``'bn'`` (float build only) the layer is linear: BatchNormalization and the
    ReLU follow it (see :func:`_apply_weighted`).
    """
    from qkeras import QConv1D, QConv2D, QDense, QDepthwiseConv2D

    linear = bool(part.get('bn'))
    act = None if linear else part.get('act')
    if qkeras_layers:
        quantizers = {'bias_quantizer': make_quantizer(part['bq']), 'activation': make_quantizer(act)}
        weights = make_quantizer(part['wq'])
        if op == 'dense':
            return QDense(shape['units'], kernel_quantizer=weights, name=name, **quantizers)
        if op == 'dwconv':
            return QDepthwiseConv2D(shape.pop('kernel'), depthwise_quantizer=weights, name=name, **shape, **quantizers)
        cls = QConv1D if nd == 1 else QConv2D
        return cls(
            shape.pop('filters'), shape.pop('kernel'), kernel_quantizer=weights, name=name, **shape, **quantizers
        )
    activation = 'relu' if act else None
    if op == 'dense':
        return keras.layers.Dense(shape['units'], activation=activation, name=name)
    if op == 'dwconv':
        return keras.layers.DepthwiseConv2D(shape.pop('kernel'), activation=activation, name=name, **shape)
    cls = keras.layers.Conv1D if nd == 1 else keras.layers.Conv2D
    return cls(shape.pop('filters'), shape.pop('kernel'), activation=activation, name=name, **shape)


def _apply_weighted(h, part: dict, qkeras_layers: bool, name: str, nd: int, op: str, **shape):
    """The weighted layer on ``h``; with ``'bn'``: then BatchNormalization and ReLU."""
    if part.get('bn') and qkeras_layers:
        raise ValueError(f'{name}: BatchNorm specs build float models only (the pruner folds them)')
    h = _weighted_layer(part, qkeras_layers, name, nd, op, **shape)(h)
    if not part.get('bn'):
        return h
    h = keras.layers.BatchNormalization(name=f'{name}_bn')(h)
    return keras.layers.Activation('relu', name=f'{name}_relu')(h) if part.get('act') else h


def _quantized_or_relu(h, act: dict, qkeras_layers: bool, name: str):
    from qkeras import QActivation

    if qkeras_layers:
        return QActivation(make_quantizer(act), name=name)(h)
    return keras.layers.Activation('relu', name=name)(h)


_POOLING = {
    ('pool', 'max', 1): 'MaxPooling1D',
    ('pool', 'max', 2): 'MaxPooling2D',
    ('pool', 'avg', 1): 'AveragePooling1D',
    ('pool', 'avg', 2): 'AveragePooling2D',
    ('gpool', 'max', 1): 'GlobalMaxPooling1D',
    ('gpool', 'max', 2): 'GlobalMaxPooling2D',
    ('gpool', 'avg', 1): 'GlobalAveragePooling1D',
    ('gpool', 'avg', 2): 'GlobalAveragePooling2D',
}


def _build(spec: dict, qkeras_layers: bool) -> keras.Model:
    nd = len(spec['input_shape']) - 1
    conv = 'conv' if nd else 'dense'  # what a branch of a residual / concat block is
    inp = keras.Input(tuple(spec['input_shape']), name='x')
    h = _quantized_or_relu(inp, spec['input_q'], True, 'input_q') if qkeras_layers else inp
    for i, layer in enumerate(spec['layers']):
        op = layer['op']
        if op == 'conv':
            shape = {k: layer[k] for k in ('filters', 'kernel', 'strides', 'padding')}
            h = _apply_weighted(h, layer, qkeras_layers, f'conv{i}', nd, 'conv', **shape)
        elif op == 'dwconv':
            shape = {k: layer[k] for k in ('kernel', 'strides', 'padding', 'depth_multiplier')}
            h = _apply_weighted(h, layer, qkeras_layers, f'dw{i}', nd, 'dwconv', **shape)
        elif op == 'dense':
            h = _apply_weighted(h, layer, qkeras_layers, f'dense{i}', nd, 'dense', units=layer['units'])
        elif op in ('pool', 'gpool'):
            cls = getattr(keras.layers, _POOLING[(op, layer['kind'], nd)])
            h = cls(layer['size'], name=f'pool{i}')(h) if op == 'pool' else cls(name=f'gpool{i}')(h)
        elif op == 'flatten':
            h = keras.layers.Flatten(name=f'flatten{i}')(h)
        elif op == 'qact':
            h = _quantized_or_relu(h, layer['act'], qkeras_layers, f'qact{i}' if qkeras_layers else f'act{i}')
        elif op in ('residual', 'concat'):
            # Branches preserve the spatial size (conv 'same', stride 1 / dense).
            parts = {'': layer['branch']} if op == 'residual' else {'a': layer['a'], 'b': layer['b']}
            branches = []
            for tag, part in parts.items():
                name = f'res{i}' if op == 'residual' else f'cat{i}{tag}'
                width = h.shape[-1] if op == 'residual' else part['filters']
                shape = {'filters': width, 'kernel': part['kernel'], 'padding': 'same'} if nd else {'units': width}
                branches.append(_apply_weighted(h, part, qkeras_layers, name, nd, conv, **shape))
            if op == 'residual':
                h = keras.layers.Add(name=f'add{i}')([h, branches[0]])
                if layer.get('after') is not None:
                    h = _quantized_or_relu(h, layer['after'], qkeras_layers, f'addq{i}')
            else:
                h = keras.layers.Concatenate(name=f'cat{i}')(branches)
        else:  # pragma: no cover
            raise ValueError(f'unknown op {op!r}')
    model = keras.Model(inp, h, name='fuzz_q' if qkeras_layers else 'fuzz_f')
    rng = np.random.default_rng(spec['seed'])
    # Weights spread over about +-1, biased away from 0 so activations are neither all
    # zero nor all saturated; QKeras puts them on the quantizer grid at inference.
    values = []
    for w in model.weights:
        value = rng.uniform(0.1, 1.0, w.shape) * rng.choice([-1, 1], w.shape)
        if w.path.endswith(('moving_variance', 'gamma')):
            value = np.abs(value) + 0.5  # a BatchNorm that scales by about 1 (a variance is positive)
        values.append(value.astype('float32'))
    model.set_weights(values)
    return model


def build_qkeras(spec: dict) -> keras.Model:
    return _build(spec, qkeras_layers=True)


def build_float(spec: dict) -> keras.Model:
    return _build(spec, qkeras_layers=False)


def random_masks(masked, rng: np.random.Generator, fraction: float):
    """Keep a random ``1 - fraction`` of every prunable group's channels (at least one); returns ``masked``."""
    for group in masked.table.prunable:
        keep = max(1, int(round(group.channels * (1 - fraction))))
        masked.set_mask(group.index, np.sort(rng.choice(group.channels, keep, replace=False)))
    return masked


def missing_features(draws: list[tuple[int, dict]], wanted: set[str]) -> list[str]:
    """The wanted features that none of the drawn specs exercises."""
    covered = set().union(*(spec_features(spec) for _, spec in draws))
    return sorted(wanted - covered)


def input_samples(spec: dict, n: int = 40, seed: int | None = None) -> np.ndarray:
    """Random samples on (and beyond the range of) the input quantizer's grid."""
    from hls_backend.core.fixed_point import quantizer_type

    fixed = quantizer_type(make_quantizer(spec['input_q']), 'input')
    rng = np.random.default_rng(spec['seed'] + 1 if seed is None else seed)
    x = rng.uniform(fixed.min_value - 0.5, fixed.max_value + 0.5, size=(n, *spec['input_shape']))
    return fixed.quantize(x)
