"""Random valid QKeras models for the fuzz tests and the fuzz campaign, as plain data.

A model is first drawn as a *spec*: a JSON-like dict (layer list, quantizer
parameters, a seed). ``build_qkeras(spec)`` turns it into a Keras model,
``build_float(spec)`` into the same architecture with float layers (for the
pruner). Because specs are plain data, a counterexample can be pasted verbatim into
a regression test (fpga_tests/test_fuzz_regressions.py), and an old finding's spec
still builds the model it was found on after the generator changes.

Specs are drawn for one *route* (``'hls'``, ``'rtl'`` or ``'pruned'``, the float
models the pruner takes), from the layer kinds that route claims to support (its
registry: hls_backend/hls/layers.py, hls_backend/rtl/layers.py; the pruner's float
layers), so that a refusal means a gap in a claim, not a draw of something the route
never offered: average pooling on RTL only (power-of-two windows), separable
convolutions on HLS only, the fused batch-norm layers on both (BatchNormalization
in float models). Quantizers span the range QKeras accepts: integer bits from
below 0 to past the width, ``quantized_bits`` signed, unsigned and symmetric,
``quantized_relu`` (issue 27: the generator never drew integer bits >= bits, where
hls4ml's own rule typed ``quantized_bits(3, 3)`` as ``int<3>``).

Models are kept small (a few channels, inputs of a few pixels) so that the
generated C++ compiles in seconds.
"""

from __future__ import annotations

import keras
import numpy as np
from hypothesis import strategies as st

ROUTES = ('hls', 'rtl', 'pruned')

# ---------------------------------------------------------------------------
# Where the random choices come from
# ---------------------------------------------------------------------------
# The spec is drawn by one function against a small "picker": hypothesis's draw (for
# properties that shrink and keep a database) or a seeded numpy generator (for the
# default suite's draws and for the fuzz campaign, where every example is named by its
# seed and reproduced by ``random_spec(seed, ...)``).


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

# Integer bits run from MIN_INTEGER to the width + EXTRA_INTEGER: below 0 a quantizer's
# step is finer than 2^-bits, at and past the width coarser than 1 (quantized_bits(3, 3)
# steps by 2). Half the draws stay in the usual 0..3, so that most models neither
# saturate nor underflow everywhere.
MIN_INTEGER = -2
EXTRA_INTEGER = 1


def _integer(pick, bits: int, lo: int = MIN_INTEGER) -> int:
    if pick.boolean():
        return pick.integer(0, min(3, bits))
    return pick.integer(lo, bits + EXTRA_INTEGER)


def _weight_quantizer(pick, min_bits=2, max_bits=16) -> dict:
    """Signed ``quantized_bits`` (a 1-bit signed quantizer is QKeras's sign, refused by name)."""
    bits = pick.integer(min_bits, max_bits)
    spec = {'bits': bits, 'integer': _integer(pick, bits)}
    if pick.integer(0, 3) == 0:
        spec['symmetric'] = True
    return spec


def _activation(pick, min_bits=2, max_bits=16) -> dict:
    """``quantized_relu`` (integer >= 0: QKeras fails below) or ``quantized_bits``: signed,
    symmetric (signed only: QKeras ignores it otherwise) or unsigned (1 bit allowed)."""
    if pick.boolean():
        bits = pick.integer(max(1, min_bits - 1), max_bits)
        return {'q': 'relu', 'bits': bits, 'integer': _integer(pick, bits, lo=0)}
    keep_negative = pick.boolean()
    bits = pick.integer(max(2 if keep_negative else 1, min_bits - 1), max_bits)
    return {
        'q': 'bits',
        'bits': bits,
        'integer': _integer(pick, bits),
        'keep_negative': keep_negative,
        'symmetric': keep_negative and pick.integer(0, 3) == 0,
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


def quantizer_range(spec) -> float:
    """About the largest magnitude a quantizer spec holds (2^integer)."""
    return 2.0 ** spec['integer']


# ---------------------------------------------------------------------------
# Architecture specs
# ---------------------------------------------------------------------------


# Pooling kinds per route: the HLS route refuses average pooling (hls4ml rounds the
# average), the RTL route takes it over power-of-two windows.
POOLING = {'hls': ('max',), 'pruned': ('max',), 'rtl': ('max', 'avg')}


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _draw_spec(
    pick,
    route: str = 'hls',
    io_type: str | None = None,
    kinds=('dense', 'conv1d', 'conv2d'),
    max_bits=8,
    max_blocks=4,
):
    """One spec for ``route`` (see the module docstring), every choice taken from ``pick``.

    ``'rtl'``: smaller models ending in a quantizer, so every I/O element of the RTL
    route fits in 32 bits and Verilator builds stay short. ``io_type='io_stream'``
    leaves out what is refused there by name (pinned in test_fuzz_regressions.py: a
    depthwise convolution with a 1x1 kernel and a stride, a reshaped stream feeding two
    layers). Weights and activations have at most ``max_bits`` bits: at 10, the float32
    bound refused 4% of the models (wide sums), at 8 about 1%.
    """
    if route not in ROUTES:
        raise ValueError(f'route {route!r}: expected one of {ROUTES}')
    is_rtl, is_float = route == 'rtl', route == 'pruned'
    if is_rtl:
        max_bits = min(max_bits, 8)
        max_blocks = min(max_blocks, 3)
    stream = io_type == 'io_stream'
    max_ch = 3 if is_rtl else 4
    max_side = 8

    def weighted(separable: bool = False) -> dict:
        part = {'wq': _weight_quantizer(pick, 2, max_bits), 'bq': _weight_quantizer(pick, 2, max_bits)}
        if separable:
            part['pq'] = _weight_quantizer(pick, 2, max_bits)
        return part

    def act(optional=True):
        if optional and pick.boolean():
            return None
        return _activation(pick, 2, max_bits)

    def bn(fused: bool) -> dict:
        """BatchNorm after a weighted layer: float BatchNormalization on the pruner's route,
        QKeras's fused QDenseBatchnorm / QConv2DBatchnorm on the hardware routes."""
        if is_float:
            return {'bn': True} if pick.boolean() else {}
        return {'bn': True} if fused and pick.integer(0, 3) == 0 else {}

    # The RTL route draws feature maps more often: its convolution, pooling, padding and
    # upsampling kinds are rarer per model than on the HLS route (smaller models).
    kind = pick.choice([k for k in kinds for _ in range(2 if is_rtl and k != 'dense' else 1)])
    if kind == 'dense':
        shape = [pick.integer(2, 6 if is_rtl else 8)]
    elif kind == 'conv1d':
        shape = [pick.integer(4, 6 if is_rtl else 8), pick.integer(1, 2)]
    else:
        side = pick.integer(3, 4 if is_rtl else 6)
        shape = [side, pick.integer(side - 1, side) if not is_rtl else side, pick.integer(1, 2)]
    in_bits = pick.integer(3, 10 if is_rtl else 12)
    input_q = {
        'q': 'bits',
        'bits': in_bits,
        'integer': _integer(pick, in_bits),
        'keep_negative': pick.boolean(),
        'symmetric': False,
    }
    layers: list[dict] = []
    channels = shape[-1]
    spatial = list(shape[:-1])

    def identity_ops() -> list[str]:
        # Dropout / Activation('linear') after a quantized activation: issue 27's case.
        return ['dropout', 'linear']

    depthwise_dims: set[int] = set()  # dimensions of the depthwise / separable convolutions drawn
    for _ in range(pick.integer(1, max_blocks)):
        nd = len(spatial)
        if nd:
            options = ['conv', 'conv', 'pool', 'residual', 'concat', 'qact', 'upsample', 'zeropad', 'reshape']
            options += identity_ops()
            if is_rtl:
                options += ['pool', 'upsample', 'zeropad']  # rarer per model on the smaller RTL models
            if nd == 2:
                options += ['dwconv', 'dwconv'] if is_rtl else ['dwconv']
            if route == 'hls':
                options.append('sepconv')
            op = pick.choice(options)
            if op in ('dwconv', 'sepconv') and depthwise_dims - {nd}:
                # 1-D beside 2-D depthwise convolutions: refused by name on the HLS route
                # (pinned: separable_1d_after_depthwise_2d).
                op = 'conv'
        else:
            op = pick.choice(['dense', 'dense', 'residual', 'concat', 'qact', 'reshape', *identity_ops()])
        if op in ('conv', 'dwconv', 'sepconv'):
            k = pick.integer(1, 3)
            stride = pick.integer(1, 2)
            padding = pick.choice(['valid', 'same'])
            if padding == 'valid' and any(s < k for s in spatial):
                padding = 'same'
            if op == 'dwconv' and stream and k == 1 and stride > 1:
                stride = 1  # refused by name with io_stream (pinned: depthwise_1x1_strided_stream)
            if op in ('dwconv', 'sepconv'):
                depthwise_dims.add(nd)
            if op == 'dwconv':
                # depth_multiplier > 1 is refused on every route (pinned: depthwise_multiplier_2).
                shape_keys = {'depth_multiplier': 1}
                extra = bn(fused=False) if is_float else {}
                parts = weighted()
            else:
                channels = pick.integer(1, max_ch)
                shape_keys = {'filters': channels}
                extra = bn(fused=op == 'conv' and nd == 2) if op == 'conv' else {}
                parts = weighted(separable=op == 'sepconv')
            layers.append(
                {
                    'op': op,
                    **shape_keys,
                    'kernel': k,
                    'strides': stride,
                    'padding': padding,
                    **parts,
                    **extra,
                    'act': act(optional=False),
                }
            )
            spatial = [(s - k) // stride + 1 if padding == 'valid' else -(-s // stride) for s in spatial]
        elif op == 'pool':
            if min(spatial) < 2:
                continue
            layers.append({'op': 'pool', 'kind': pick.choice(POOLING[route]), 'size': 2})
            spatial = [s // 2 for s in spatial]
        elif op == 'upsample':
            if max(spatial) * 2 > max_side:
                continue
            size = [pick.integer(1, 2) for _ in spatial]
            if max(size) == 1:
                size[0] = 2
            layers.append({'op': 'upsample', 'size': size})
            spatial = [s * f for s, f in zip(spatial, size)]
        elif op == 'zeropad':
            if max(spatial) + 2 > max_side:
                continue
            pad = [[pick.integer(0, 1), pick.integer(0, 1)] for _ in spatial]
            if not any(map(any, pad)):
                pad[0][1] = 1
            layers.append({'op': 'zeropad', 'pad': pad})
            spatial = [s + a + b for s, (a, b) in zip(spatial, pad)]
        elif op == 'reshape':
            # 2-D feature map -> 1-D sequence, 1-D -> 2-D with a width of 1, vector -> a
            # 1-channel sequence: the next layers change dimension with it.
            if nd == 2:
                spatial = [spatial[0] * spatial[1]]
            elif nd == 1:
                spatial = [spatial[0], 1]
            else:
                if channels < 2 or (is_rtl and channels > 4):
                    continue
                spatial, channels = [channels], 1
            layers.append({'op': 'reshape', 'shape': [*spatial, channels]})
        elif op == 'residual':
            # branch: a channel-preserving layer (conv 'same', stride 1 / dense), added to its input.
            inner = {
                'filters': channels,
                'kernel': pick.integer(1, 3),
                **weighted(),
                **bn(fused=nd in (0, 2)),
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
                    **bn(fused=nd in (0, 2)),
                    'act': act(optional=False),
                }
            layers.append({'op': 'concat', **branches})
            channels = branches['a']['filters'] + branches['b']['filters']
        elif op == 'qact':
            layers.append({'op': 'qact', 'act': act(optional=False)})
        elif op == 'dropout':
            layers.append({'op': 'dropout', 'rate': pick.choice([0.1, 0.25, 0.5])})
        elif op == 'linear':
            layers.append({'op': 'linear'})
        elif op == 'dense':
            channels = pick.integer(1, 6 if not is_rtl else 4)
            layers.append(
                {'op': 'dense', 'units': channels, **weighted(), **bn(fused=True), 'act': act(optional=False)}
            )
    if spatial:
        count = int(np.prod(spatial))
        ends = ['flatten', 'gpool'] if is_rtl else ['flatten', 'flatten', 'gpool']
        end = pick.choice(ends if not is_rtl or count <= 16 else ['flatten'])
        if end == 'flatten':
            layers.append({'op': 'flatten'})
        else:
            kinds_here = POOLING[route] if _is_power_of_two(count) else ('max',)
            layers.append({'op': 'gpool', 'kind': pick.choice(kinds_here)})
    out_act = _activation(pick, 2, max_bits) if (is_rtl or pick.boolean()) else None
    if is_rtl and out_act is not None:
        out_act = {**out_act, 'bits': min(out_act['bits'], 12)}
    last = {'op': 'dense', 'units': pick.integer(1, 4), **weighted(), 'act': out_act}
    if not is_float:
        last.update(bn(fused=True))
    layers.append(last)
    if not is_float and last['units'] > 1 and pick.integer(0, 5) == 0:
        # A softmax at the output is left out of the hardware (the designs give logits).
        layers.append({'op': 'softmax', 'layer': pick.choice(['Softmax', 'Activation'])})  # keras.layers.Softmax or
        # Activation('softmax'): both are left out on both routes
    return {
        'route': route,
        'kind': kind,
        'input_shape': shape,
        'input_q': input_q,
        'layers': layers,
        'seed': pick.integer(0, 2**16),
        'init': 'scaled',
    }


@st.composite
def model_specs(draw, **options):
    """A hypothesis strategy of specs; ``options`` as :func:`_draw_spec` takes them."""
    return _draw_spec(_HypothesisPicker(draw), **options)


def random_spec(seed: int, **options) -> dict:
    """The spec drawn from a numpy generator seeded with ``seed``: the same seed, the same model."""
    return _draw_spec(_RandomPicker(np.random.default_rng(seed)), **options)


# ---------------------------------------------------------------------------
# Which Keras classes a spec builds (one table, used by the builder and by coverage)
# ---------------------------------------------------------------------------

_POOLING = {'max': 'MaxPooling', 'avg': 'AveragePooling'}


def layer_class(op: str, nd: int, part: dict, qkeras_layers: bool) -> str:
    """The Keras / QKeras class name of ``op`` on an ``nd``-dimensional feature map."""
    q = 'Q' if qkeras_layers else ''
    fused = qkeras_layers and bool(part.get('bn'))
    if op == 'conv':
        if fused:
            if nd != 2:
                raise ValueError(f'a fused batch-norm convolution exists in 2-D only, not {nd}-D')
            return 'QConv2DBatchnorm'
        return f'{q}Conv{nd}D'
    if op == 'dense':
        return 'QDenseBatchnorm' if fused else f'{q}Dense'
    if op == 'dwconv':
        if fused:
            raise ValueError('QKeras has no fused batch-norm depthwise convolution')
        return f'{q}DepthwiseConv2D'
    if op == 'sepconv':
        return f'{q}SeparableConv{nd}D'
    if op == 'pool':
        return f'{_POOLING[part["kind"]]}{nd}D'
    if op == 'gpool':
        return f'Global{_POOLING[part["kind"]]}{nd}D'
    if op == 'upsample':
        return f'UpSampling{nd}D'
    if op == 'zeropad':
        return f'ZeroPadding{nd}D'
    if op in ('qact', 'after'):
        return 'QActivation' if qkeras_layers else 'Activation'
    if op == 'softmax':
        return part.get('layer', 'Softmax')
    return {
        'flatten': 'Flatten',
        'reshape': 'Reshape',
        'dropout': 'Dropout',
        'linear': 'Activation',
        'residual': 'Add',
        'concat': 'Concatenate',
    }[op]


def _walk(spec: dict):
    """(layer spec, dimensions of the feature map it takes) for every layer of ``spec``."""
    nd = len(spec['input_shape']) - 1
    for layer in spec['layers']:
        yield layer, nd
        if layer['op'] == 'reshape':
            nd = len(layer['shape']) - 1
        elif layer['op'] in ('flatten', 'gpool'):
            nd = 0


def spec_classes(spec: dict, qkeras_layers: bool = True) -> set[str]:
    """The Keras / QKeras layer classes ``build_qkeras`` (or ``build_float``) makes of ``spec``."""
    classes = {'InputLayer', 'QActivation'} if qkeras_layers else {'InputLayer'}
    for layer, nd in _walk(spec):
        op = layer['op']
        classes.add(layer_class(op, nd, layer, qkeras_layers))
        parts = {'residual': [layer.get('branch')], 'concat': [layer.get('a'), layer.get('b')]}.get(op, [layer])
        branch_op = 'dense' if nd == 0 else 'conv'
        for part in parts:
            if op in ('residual', 'concat'):
                classes.add(layer_class(branch_op, nd, part, qkeras_layers))
            if part.get('bn') and not qkeras_layers:
                classes.add('BatchNormalization')
                if part.get('act'):
                    classes.add('Activation')
        if op == 'residual' and layer.get('after') is not None:
            classes.add(layer_class('after', nd, layer, qkeras_layers))
    return classes


def spec_features(spec: dict) -> set[str]:
    """What a spec exercises: its input kind, its Keras classes and whether it has a BatchNorm."""
    features = {spec['kind'], *spec_classes(spec, qkeras_layers=spec.get('route') != 'pruned')}
    for layer, _ in _walk(spec):
        for part in (layer, layer.get('branch') or {}, layer.get('a') or {}, layer.get('b') or {}):
            if part.get('bn'):
                features.add('batchnorm')
    return features


def is_trivial(spec: dict) -> bool:
    """The simplest models (one layer before the output dense, no branch): already
    pinned in test_fuzz_regressions.py, so covering draws skip them."""
    body = [layer for layer in spec['layers'][:-1] if layer['op'] not in ('flatten', 'gpool', 'softmax')]
    return len(body) < 2 and not any(layer['op'] in ('residual', 'concat') for layer in body)


def covering_specs(n: int, first_seed: int, wanted: set[str], **options) -> list[tuple[int, dict]]:
    """``n`` non-trivial seeded specs, chosen so that together they cover ``wanted``
    (features of :func:`spec_features`).

    Seeds are tried in order from ``first_seed``; a spec is taken while it adds a
    wanted feature not yet covered, or once everything is covered. Deterministic, and
    each one is named by its seed (``random_spec(seed, **options)`` rebuilds it).
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


def missing_features(draws: list[tuple[int, dict]], wanted: set[str]) -> list[str]:
    """The wanted features that none of the drawn specs exercises."""
    covered = set().union(*(spec_features(spec) for _, spec in draws))
    return sorted(wanted - covered)


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _layer_type(name: str):
    """A Keras or QKeras layer class by name."""
    import qkeras
    from qkeras.qconv2d_batchnorm import QConv2DBatchnorm
    from qkeras.qdense_batchnorm import QDenseBatchnorm

    fused = {'QConv2DBatchnorm': QConv2DBatchnorm, 'QDenseBatchnorm': QDenseBatchnorm}
    if name in fused:
        return fused[name]
    return getattr(qkeras, name) if name.startswith('Q') else getattr(keras.layers, name)


def _weighted_layer(part: dict, qkeras_layers: bool, name: str, nd: int, op: str, **shape):
    """One conv / depthwise / separable / dense layer of a spec part, QKeras or float.

    With ``'bn'``: QKeras's fused layer in a QKeras build; in a float build the layer
    is linear and BatchNormalization and the ReLU follow it (see :func:`_apply_weighted`).
    """
    cls = _layer_type(layer_class(op, nd, part, qkeras_layers))
    linear = bool(part.get('bn')) and not qkeras_layers
    act = None if linear else part.get('act')
    positional = [shape.pop('units')] if op == 'dense' else []
    if op in ('conv', 'sepconv'):
        positional = [shape.pop('filters'), shape.pop('kernel')]
    elif op == 'dwconv':
        positional = [shape.pop('kernel')]
    if qkeras_layers:
        weights = {'dwconv': 'depthwise_quantizer', 'sepconv': 'depthwise_quantizer'}.get(op, 'kernel_quantizer')
        quantizers = {
            weights: make_quantizer(part['wq']),
            'bias_quantizer': make_quantizer(part['bq']),
            'activation': make_quantizer(act),
        }
        if op == 'sepconv':
            quantizers['pointwise_quantizer'] = make_quantizer(part['pq'])
        return cls(*positional, name=name, **shape, **quantizers)
    return cls(*positional, activation='relu' if act else None, name=name, **shape)


def _apply_weighted(h, part: dict, qkeras_layers: bool, name: str, nd: int, op: str, **shape):
    """The weighted layer on ``h``; in a float build with ``'bn'``: then BatchNormalization and ReLU."""
    h = _weighted_layer(part, qkeras_layers, name, nd, op, **shape)(h)
    if qkeras_layers or not part.get('bn'):
        return h
    h = keras.layers.BatchNormalization(name=f'{name}_bn')(h)
    return keras.layers.Activation('relu', name=f'{name}_relu')(h) if part.get('act') else h


def _quantized_or_relu(h, act: dict, qkeras_layers: bool, name: str):
    from qkeras import QActivation

    if qkeras_layers:
        return QActivation(make_quantizer(act), name=name)(h)
    return keras.layers.Activation('relu', name=name)(h)


def _build(spec: dict, qkeras_layers: bool) -> keras.Model:
    inp = keras.Input(tuple(spec['input_shape']), name='x')
    h = _quantized_or_relu(inp, spec['input_q'], True, 'input_q') if qkeras_layers else inp
    parts: dict[str, dict] = {}  # layer name -> its spec part (for the weights' ranges)

    def weighted(h, part, name, nd, op, **shape):
        parts[name] = part
        return _apply_weighted(h, part, qkeras_layers, name, nd, op, **shape)

    for i, (layer, nd) in enumerate(_walk(spec)):
        op = layer['op']
        cls_name = layer_class(op, nd, layer, qkeras_layers)
        if op in ('conv', 'sepconv'):
            shape = {k: layer[k] for k in ('filters', 'kernel', 'strides', 'padding')}
            h = weighted(h, layer, f'{op}{i}' if op == 'sepconv' else f'conv{i}', nd, op, **shape)
        elif op == 'dwconv':
            shape = {k: layer[k] for k in ('kernel', 'strides', 'padding', 'depth_multiplier')}
            h = weighted(h, layer, f'dw{i}', nd, 'dwconv', **shape)
        elif op == 'dense':
            h = weighted(h, layer, f'dense{i}', nd, 'dense', units=layer['units'])
        elif op == 'pool':
            h = _layer_type(cls_name)(layer['size'], name=f'pool{i}')(h)
        elif op == 'gpool':
            h = _layer_type(cls_name)(name=f'gpool{i}')(h)
        elif op == 'flatten':
            h = keras.layers.Flatten(name=f'flatten{i}')(h)
        elif op == 'qact':
            h = _quantized_or_relu(h, layer['act'], qkeras_layers, f'qact{i}' if qkeras_layers else f'act{i}')
        elif op == 'upsample':
            size = tuple(layer['size']) if nd == 2 else layer['size'][0]
            h = _layer_type(cls_name)(size, name=f'up{i}')(h)
        elif op == 'zeropad':
            pad = tuple(tuple(p) for p in layer['pad']) if nd == 2 else tuple(layer['pad'][0])
            h = _layer_type(cls_name)(pad, name=f'pad{i}')(h)
        elif op == 'reshape':
            h = keras.layers.Reshape(tuple(layer['shape']), name=f'reshape{i}')(h)
        elif op == 'dropout':
            h = keras.layers.Dropout(layer['rate'], name=f'drop{i}')(h)
        elif op == 'linear':
            h = keras.layers.Activation('linear', name=f'linear{i}')(h)
        elif op == 'softmax':
            softmax = (
                keras.layers.Softmax if cls_name == 'Softmax' else lambda **k: keras.layers.Activation('softmax', **k)
            )
            h = softmax(name=f'softmax{i}')(h)
        elif op in ('residual', 'concat'):
            # Branches preserve the spatial size (conv 'same', stride 1 / dense).
            conv = 'conv' if nd else 'dense'
            branches_spec = {'': layer['branch']} if op == 'residual' else {'a': layer['a'], 'b': layer['b']}
            branches = []
            for tag, part in branches_spec.items():
                name = f'res{i}' if op == 'residual' else f'cat{i}{tag}'
                width = h.shape[-1] if op == 'residual' else part['filters']
                shape = {'filters': width, 'kernel': part['kernel'], 'padding': 'same'} if nd else {'units': width}
                branches.append(weighted(h, part, name, nd, conv, **shape))
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
    scaled = spec.get('init') == 'scaled' and qkeras_layers
    values = []
    for layer in model.layers:
        part = parts.get(layer.name, {})
        for w in layer.weights:
            values.append(_initial_value(w, part if scaled else {}, rng))
    model.set_weights(values)
    return model


# The quantizer whose range a weight variable is drawn over (``init: 'scaled'``).
_ROLE_QUANTIZER = {'kernel': 'wq', 'depthwise_kernel': 'wq', 'pointwise_kernel': 'pq', 'bias': 'bq'}


def _initial_value(w, part: dict, rng: np.random.Generator) -> np.ndarray:
    """Weights spread over about +-1 (or, with ``part``, over their quantizer's range),
    biased away from 0 so activations are neither all zero nor all saturated; QKeras puts
    them on the quantizer grid at inference. A BatchNorm scales by about 1."""
    variable = w.path.split('/')[-1]
    value = rng.uniform(0.1, 1.0, w.shape) * rng.choice([-1, 1], w.shape)
    if variable in ('moving_variance', 'gamma'):
        value = np.abs(value) + 0.5  # a variance is positive
    elif variable == 'bias' and part.get('bq') is not None:
        # A bias as large as its quantizer allows would swamp the sum (dead or saturated
        # activations, constant outputs): at most a quarter of the weights' range.
        value = value * min(quantizer_range(part['bq']), quantizer_range(part['wq']) / 4)
    elif part.get(_ROLE_QUANTIZER.get(variable, '')) is not None:
        # Mostly positive weights: after a ReLU, a channel whose few weights (a 1x1
        # depthwise kernel has one) are all negative is dead, and so is every output.
        sign = np.where(rng.uniform(size=w.shape) < 0.7, 1.0, -1.0)
        value = np.abs(value) * sign * quantizer_range(part[_ROLE_QUANTIZER[variable]])
    return value.astype('float32')


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


def input_samples(spec: dict, n: int = 40, seed: int | None = None) -> np.ndarray:
    """Random samples on (and beyond the range of) the input quantizer's grid."""
    from hls_backend.core.fixed_point import quantizer_type

    fixed = quantizer_type(make_quantizer(spec['input_q']), 'input')
    rng = np.random.default_rng(spec['seed'] + 1 if seed is None else seed)
    x = rng.uniform(fixed.min_value - 0.5, fixed.max_value + 0.5, size=(n, *spec['input_shape']))
    return fixed.quantize(x)
