"""hls4ml's own QKeras test cases, rebuilt for Keras 3 + qkeras-v3, run the way an hls4ml
user runs them with lpsubnet: ``hls_backend.exact_config`` instead of hls4ml's
``config_from_keras_model``, then hls4ml's ``convert_from_keras_model`` -> ``compile`` ->
``predict``.

The verdict is lpsubnet's promise, not the peer's tolerance: every case ``exact_config``
accepts is compared with the QKeras model bit for bit (float64 equality of hls4ml's
``predict()`` and QKeras's ``predict`` on every sample and output; the logits where the
softmax is skipped). Each case ends in one of three outcomes:

- ``exact``: accepted, and equal on every bit;
- ``refused``: ``exact_config`` raised UnsupportedModelError naming the layer and why;
- ``failed``: accepted but not equal (or anything else went wrong). A case that passes
  only the peer's tolerance is a failure of ``exact_config``.

The peer test's own criterion (``allclose`` with its tolerances, or argmax agreement) is
run too and reported beside the verdict, never instead of it.

Each case names the hls4ml test it follows (hls4ml v1.3.0, test/pytest/<file>::<test>,
with its parameters). The models and criteria are the peer's; the code is ours. Where
the peer feeds raw floats (relying on its tolerance to absorb hls4ml's input cast), the
inputs here are put on the input type's grid first: the design and the model must see
the same values, and the harness checks that they lie on the grid of the input type of
hls4ml's converted graph. Two peers need files this project does not ship (hls4ml's
example-models jet tagger and MNIST CNN, and their data sets, downloaded at run time
there): those cases use a model of the same shape built here, and as labels the QKeras
model's own predictions, so the peer's accuracy criterion becomes "hls4ml's argmax
agrees with QKeras's" (which, with QKeras's accuracy against its own argmax, cannot fail
on the QKeras side: one more reason it is not the verdict). Their final softmax is left
out with ``softmax='skip'`` (hls4ml's own Skip; the peers tune hls4ml's softmax tables
instead, which are not exact), so the design outputs exact logits.

``python -m fpga_tests.hls4ml_peer_cases [--out FILE] [-k ID]`` runs every case on
Vivado and Vitis x io_parallel and io_stream and prints the counts of bit-exact /
refused / failed per backend x io type, the refusal reasons and every failure (the test
file runs the same cases under pytest).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hls_backend.hls.options import IO_TYPES

BACKENDS = ('Vivado', 'Vitis')
UNIT_INPUT = 'ap_ufixed<10,0,AP_RND_CONV,AP_SAT>'  # [0, 1) on a 2^-10 grid
OUTCOMES = ('exact', 'refused', 'failed')


@dataclass
class Case:
    id: str
    peer: str  # hls4ml v1.3.0 test it follows: file::test[parameters]
    build: Callable  # () -> (model, x)
    check: Callable  # (y_qkeras, y_hls) -> None, raises AssertionError: the peer's criterion
    expected: str  # 'exact' or 'refused' (what this project gives today)
    options: dict = field(default_factory=dict)  # exact_config keywords


@dataclass
class Result:
    outcome: str  # one of OUTCOMES
    reason: str = ''  # the refusal, or what failed
    samples: int = 0
    exact_samples: int = 0  # samples whose every output equals QKeras's (float64)
    max_abs_diff: float = 0.0
    peer_criterion: str = ''  # 'pass', 'fail: ...' or '' when not run (refused)


def _grid(x):
    """The peer's ``np.round(X * 2**10) * 2**-10``: inputs exact in ap_fixed<16,6>."""
    return np.round(x * 2**10) * 2**-10


def _on_type(ap_type: str, x):
    """``x`` rounded and saturated onto ``ap_type`` (the input quantizer's type)."""
    from hls_backend.core.fixed_point import parse_fixed_type

    return parse_fixed_type(ap_type).quantize(x)


def _rng(seed=0):
    return np.random.default_rng(seed)


# --- criteria (the peer's assertions) ----------------------------------------------------


def equal(y_qkeras, y_hls):
    np.testing.assert_array_equal(y_qkeras, np.asarray(y_hls).reshape(y_qkeras.shape))


def allclose(**tol):
    def check(y_qkeras, y_hls):
        np.testing.assert_allclose(y_qkeras, np.asarray(y_hls).reshape(y_qkeras.shape), **tol)

    return check


def allclose_ravel(**tol):
    def check(y_qkeras, y_hls):
        np.testing.assert_allclose(y_qkeras.ravel(), np.asarray(y_hls).ravel(), **tol)

    return check


def wrong_fraction(limit, xnor):
    def check(y_qkeras, y_hls):
        y_hls = np.asarray(y_hls).reshape(y_qkeras.shape)
        if xnor:  # hls4ml may return XNOR binary (0 for -1)
            y_hls = np.where(y_hls == 0, -1, 1)
        assert np.mean(y_hls != y_qkeras) <= limit

    return check


def accuracy(min_qkeras, max_rel_diff):
    """The peers' accuracy tests, labels = QKeras's own argmax (see the module docstring):
    QKeras's accuracy is then 1 by construction, so this only asks hls4ml's argmax to agree
    on all but ``max_rel_diff`` of the samples. Reported beside the verdict, never as it."""

    def check(y_qkeras, y_hls):
        labels = np.argmax(y_qkeras, axis=1)
        acc_qkeras = np.mean(np.argmax(y_qkeras, axis=1) == labels)
        acc_hls = np.mean(np.argmax(np.asarray(y_hls).reshape(y_qkeras.shape), axis=1) == labels)
        assert acc_qkeras > min_qkeras and abs(acc_qkeras - acc_hls) / acc_qkeras < max_rel_diff, (
            f'accuracy QKeras {acc_qkeras}, hls4ml {acc_hls}'
        )

    return check


def same_clone(y_qkeras, y_hls):
    """test_serialization.py: hls4ml's saved/linked clone predicts what the original does
    (run here as the original's own exactness against QKeras, the stronger check)."""
    equal(y_qkeras, y_hls)


# --- models --------------------------------------------------------------------------------


def single_dense_activation(bits, alpha):
    def build():
        import keras
        from qkeras import QActivation, QDense, quantized_bits, quantized_relu

        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((16,)),
                QDense(
                    16,
                    name='fc1',
                    kernel_quantizer=quantized_bits(bits, 0, alpha=alpha),
                    bias_quantizer=quantized_bits(bits, 0, alpha=1),
                    kernel_initializer='lecun_uniform',
                ),
                QActivation(activation=quantized_relu(bits, 0), name='relu1'),
            ]
        )
        return model, _grid(_rng().random((100, 16)))  # the peer: raw floats

    return build


def one_quantizer(quantizer):
    def build():
        import keras
        from qkeras import QActivation

        model = keras.Sequential([keras.Input((1,)), QActivation(activation=quantizer(), name='quantizer')])
        return model, _grid(_rng().random((1000, 1)))

    return build


def btnn(kernel_quantizer, bias_quantizer, activation_quantizer, use_batchnorm):
    def build():
        import keras
        from qkeras import QActivation, QDense

        keras.utils.set_random_seed(0)
        layers = [
            keras.Input((10,)),
            QDense(10, kernel_quantizer=kernel_quantizer(), bias_quantizer=bias_quantizer(), name='dense'),
        ]
        if use_batchnorm:
            layers.append(keras.layers.BatchNormalization(name='bn'))
        layers.append(QActivation(activation=activation_quantizer()))
        return keras.Sequential(layers), _grid(_rng().random((100, 10)))  # the peer: raw floats

    return build


def qactivation_kwarg(weight_quantizer, activation_quantizer):
    def build():
        import keras
        from qkeras import QDense

        keras.utils.set_random_seed(0)
        inputs = keras.Input(shape=(10,))
        outputs = QDense(
            10,
            activation=activation_quantizer,
            name='qdense',
            kernel_quantizer=weight_quantizer,
            bias_quantizer=weight_quantizer,
            kernel_initializer='lecun_uniform',
        )(inputs)
        return keras.Model(inputs, outputs), _grid(_rng().random((100, 10)))

    return build


def qconv2dbn():
    import keras
    from qkeras.qconv2d_batchnorm import QConv2DBatchnorm

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            QConv2DBatchnorm(
                4,
                kernel_size=(3, 3),
                kernel_quantizer='quantized_bits(8, 0, alpha=1)',
                kernel_initializer='ones',
                bias_quantizer='quantized_bits(8, 0, alpha=1)',
                bias_initializer='zeros',
                activation='quantized_relu(8, 0)',
            ),
        ]
    )
    # The peer's grid rounds some values up to 1.0, outside the declared UNIT_INPUT (they
    # would saturate in hardware and not in QKeras): on UNIT_INPUT itself instead.
    return model, _on_type(UNIT_INPUT, _rng().random((100, 8, 8, 1)))


def qdepthwiseconv2d():
    import keras
    from qkeras import QDepthwiseConv2D

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            QDepthwiseConv2D(
                kernel_size=(3, 3),
                depthwise_quantizer='quantized_bits(6, 0, alpha=1)',
                bias_quantizer='quantized_bits(4, 0, alpha=1)',
                bias_initializer='he_normal',
                activation='quantized_relu(3, 0)',
            ),
        ]
    )
    # The peer's grid rounds some values up to 1.0, outside the declared UNIT_INPUT (they
    # would saturate in hardware and not in QKeras): on UNIT_INPUT itself instead.
    return model, _on_type(UNIT_INPUT, _rng().random((10, 32, 32, 3)))


def po2_bit_width():
    import keras
    from qkeras import QDense, quantized_po2

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((26,)), QDense(6, name='dense', kernel_quantizer=quantized_po2(18, max_value=2**20))]
    )
    weights = model.layers[0].get_weights()
    weights[0] = (2**18) * _rng().random((26, 6))
    model.layers[0].set_weights(weights)
    return model, _grid(_rng().random((100, 26)))  # the peer: raw floats


def recurrent(kind):
    def build():
        import keras
        from qkeras import QGRU, QLSTM, QSimpleRNN

        q = 'quantized_bits(8, 0, alpha=1)'
        common = dict(kernel_quantizer=q, recurrent_quantizer=q, bias_quantizer=q, state_quantizer=q)
        layer = {
            'qsimplernn': lambda: QSimpleRNN(4, activation='relu', **common),
            'qlstm': lambda: QLSTM(4, activation='tanh', recurrent_activation='sigmoid', **common),
            'qgru': lambda: QGRU(4, activation='tanh', recurrent_activation='sigmoid', reset_after=False, **common),
        }[kind]()
        x = np.linspace(-0.5, 0.5, 5)
        return keras.Sequential([keras.Input((5, 2)), layer]), np.stack([x, x], axis=1).reshape(1, 5, 2)

    return build


def separable(dims):
    def build():
        import keras
        from qkeras import QSeparableConv1D, QSeparableConv2D, quantized_bits

        keras.utils.set_random_seed(0)
        shape = (13, 20) if dims == 1 else (13, 21, 20)
        cls = QSeparableConv1D if dims == 1 else QSeparableConv2D
        x_in = keras.Input(shape, name='input_layer')
        x = cls(
            5,
            3,
            depthwise_quantizer=quantized_bits(8, 3, alpha=1),
            pointwise_quantizer=quantized_bits(8, 3, alpha=1),
            bias_quantizer=quantized_bits(8, 3, alpha=1),
            name='qsepconv_1',
        )(x_in)
        data = _rng().random((100, *shape))
        dataq = np.asarray(quantized_bits(8, 0, alpha=1)(data))
        return keras.Model(x_in, x), dataq

    return build


def binary_cnn():
    import keras
    from qkeras import QActivation, QBatchNormalization, QConv2D, QDense

    keras.utils.set_random_seed(0)
    x_in = keras.Input(shape=(28, 28, 1))
    x = x_in
    for i, filters in enumerate((4, 8, 8), start=1):
        x = QConv2D(filters, (3, 3), kernel_quantizer='binary', name=f'conv2d_{i}', use_bias=False)(x)
        x = QBatchNormalization()(x)
        x = QActivation('binary', name=f'act{i}')(x)
        if i > 1:
            x = keras.layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = keras.layers.Flatten()(x)
    x = QDense(10, kernel_quantizer='binary', name='q_dense_6', use_bias=False)(x)
    x = QBatchNormalization()(x)
    x = QActivation('binary_tanh', name='act4')(x)
    x = QDense(10, kernel_quantizer='binary', activation='softmax', name='q_dense_7', use_bias=False)(x)
    return keras.Model(x_in, x), _grid(_rng().random((1, 28, 28, 1)))  # the peer: raw floats


def jet_tagger():
    """The shape of hls4ml's example-models qkeras_3layer (16-64-32-32-5, softmax); inputs
    on the grid of its input quantizer, quantized_bits(10, 3)."""
    from fpga_tests.hls_models import jet_mlp

    return jet_mlp(bits=6, seed=0), _on_type('ap_fixed<10,4>', _rng().normal(0, 1, (2000, 16)))


def mnist_cnn():
    """The shape of hls4ml's example-models qkeras_mnist_cnn (28x28 CNN, softmax); pixels on
    the grid of its input quantizer, quantized_bits(8, 0)."""
    from fpga_tests.hls_models import cnn

    return cnn((28, 28, 1), bits=6, seed=0), _on_type('ap_fixed<8,1>', _rng().random((300, 28, 28, 1)))


def serialization_model():
    import keras
    from qkeras import QActivation, QConv2D, QDense, binary, quantized_bits, quantized_relu, ternary

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            QConv2D(4, (3, 3), kernel_quantizer='quantized_bits(8,4)', bias_quantizer=ternary(), name='conv2d_1'),
            QActivation(name='relu_1', activation='quantized_relu(6)'),
            QConv2D(5, (3, 3), kernel_quantizer=quantized_bits(8, 4), bias_quantizer=binary(), name='conv2d_2'),
            QActivation(name='relu_2', activation=quantized_relu(2)),
            keras.layers.Flatten(),
            QDense(5, activation='softmax', kernel_quantizer='quantized_po2(8,4)', name='dense_1'),
        ]
    )
    return model, _grid(_rng().uniform(0, 1, (10, 8, 8, 3)))


def _cases() -> list[Case]:
    from qkeras import binary, quantized_bits, quantized_relu, quantized_sigmoid, quantized_tanh, ternary

    qk = 'test_qkeras.py'
    cases = []
    for strategy in ('latency', 'resource'):
        cases.append(
            Case(
                f'jet_accuracy_{strategy}',
                f'{qk}::test_accuracy[{strategy}]',
                jet_tagger,
                accuracy(0.7, 0.01),
                'exact',
                {'softmax': 'skip', 'Strategy': strategy},
            )
        )
    for bits, alpha in ((4, 1), (4, 'auto_po2')):
        cases.append(
            Case(
                f'single_dense_activation_{bits}_{alpha}',
                f'{qk}::test_single_dense_activation_exact[{bits}-{alpha}]',
                single_dense_activation(bits, alpha),
                allclose_ravel(atol=2.0**-bits, rtol=1.0),
                'exact' if alpha == 1 else 'refused',
            )
        )
    for name, make in (
        ('tanh8', lambda: quantized_tanh(8)),
        ('sigmoid5', lambda: quantized_sigmoid(5)),
        ('sigmoid7_real', lambda: quantized_sigmoid(7, use_real_sigmoid=True)),
    ):
        cases.append(
            Case(
                f'quantizer_special_{name}',
                f'{qk}::test_quantizer_special[{name}]',
                one_quantizer(make),
                allclose(rtol=1e-2, atol=0.02),
                'refused',
            )
        )
    btnn_params = [
        (1, lambda: ternary(alpha=1), lambda: 'binary_tanh', False, False),
        (2, binary, lambda: 'binary_tanh', False, True),
        (3, lambda: ternary(alpha='auto'), binary, True, True),
        (4, lambda: ternary(alpha='auto'), lambda: 'ternary', True, False),
        (5, lambda: ternary(alpha='auto'), lambda: ternary(threshold=0.2), True, False),
        (6, lambda: ternary(alpha='auto'), lambda: ternary(threshold=0.8), True, False),
        (7, binary, binary, False, True),
    ]
    for no, kernel, act, bn, xnor in btnn_params:
        cases.append(
            Case(
                f'btnn_{no}',
                f'{qk}::test_btnn[{no}]',
                btnn(kernel, lambda: quantized_bits(5, 2), act, bn),
                wrong_fraction(0.005, xnor),
                'refused',
            )
        )
    for bits, integer, relu in (
        (8, 0, False),
        (8, 4, False),
        (4, 2, False),
        (4, 0, False),
        (10, 0, False),
        (4, 0, True),
        (4, 2, True),
        (8, 0, True),
        (8, 4, True),
        (10, 0, True),
        (10, 5, True),
    ):
        kind = 'quantized_relu' if relu else 'quantized_bits'

        def make(bits=bits, integer=integer, relu=relu):
            return quantized_relu(bits, integer) if relu else quantized_bits(bits, integer)

        cases.append(
            Case(
                f'quantizer_{kind}_{bits}_{integer}',
                f'{qk}::test_quantizer[{kind}({bits},{integer})]',
                one_quantizer(make),
                equal,
                'exact',
            )
        )
    for weight, act in (
        ('binary', 'binary'),
        ('ternary', 'ternary'),
        ('quantized_bits(4, 0, alpha=1)', 'quantized_relu(2, 0)'),
        ('quantized_bits(4, 0, alpha=1)', 'quantized_relu(4, 0)'),
        ('quantized_bits(4, 0, alpha=1)', 'quantized_relu(8, 0)'),
    ):
        binary_like = act in ('binary', 'ternary')
        bits = None if binary_like else int(act.split('(')[1].split(',')[0])
        check = (
            wrong_fraction(0.005, act == 'binary') if binary_like else allclose_ravel(atol=2.0 ** -(bits - 1), rtol=1.0)
        )
        cases.append(
            Case(
                f'qactivation_kwarg_{weight.split("(")[0]}_{act.replace(" ", "")}',
                f'{qk}::test_qactivation_kwarg[{weight}-{act}]',
                qactivation_kwarg(weight, act),
                check,
                'refused' if binary_like else 'exact',
            )
        )
    cases += [
        # The peer's inputs lie in [0, 1) on a 2^-10 grid; with the default input type
        # (ap_fixed<16,6>, up to 32) the float32 QKeras sums are not provably exact, and
        # exact_config refuses; declaring the inputs' own type makes them so.
        Case('qconv2dbn', f'{qk}::test_qconv2dbn', qconv2dbn, equal, 'exact', {'input_precision': UNIT_INPUT}),
        Case(
            'qdepthwiseconv2d',
            f'{qk}::test_qdepthwiseconv2d',
            qdepthwiseconv2d,
            allclose(rtol=1e-2, atol=0.01),
            'exact',
            {'input_precision': UNIT_INPUT},
        ),
    ]
    for strategy in ('Latency', 'Resource'):
        cases.append(
            Case(
                f'quantised_po2_bit_width_{strategy}',
                f'{qk}::test_quantised_po2_bit_width[{strategy}]',
                po2_bit_width,
                allclose_ravel(rtol=2e-2),
                'refused',
                {'Strategy': strategy},
            )
        )
    for kind in ('qsimplernn', 'qlstm', 'qgru'):
        cases.append(Case(kind, f'{qk}::test_{kind}', recurrent(kind), allclose(atol=0.1), 'refused'))
    for dims in (1, 2):
        cases.append(
            Case(
                f'qseparableconv{dims}d',
                f'{qk}::test_qseparableconv{dims}d',
                separable(dims),
                allclose(rtol=0, atol=0),
                'exact',
                {'input_precision': 'ap_fixed<8,1,AP_RND_CONV,AP_SAT>'},  # the peer's own input type
            )
        )
    cases.append(Case('binary_cnn', 'test_binary_cnn.py::test_model2', binary_cnn, lambda a, b: None, 'refused'))
    for strategy in ('latency', 'resource'):
        cases.append(
            Case(
                f'mnist_cnn_accuracy_{strategy}',
                f'test_cnn_mnist_qkeras.py::test_accuracy[{strategy}]',
                mnist_cnn,
                accuracy(0.92, 0.01),
                'exact',
                {'softmax': 'skip', 'Strategy': strategy},
            )
        )
    for test in ('test_save_load__model', 'test_linking_project'):
        cases.append(
            Case(
                f'serialization_{test}',
                f'test_serialization.py::{test}',
                serialization_model,
                same_clone,
                'refused',
                {'softmax': 'hls4ml'},
            )
        )
    return cases


CASES = {case.id: case for case in _cases()}
COMBOS = list(itertools.product(BACKENDS, IO_TYPES))


def input_type(hls_model):
    """The fixed-point type of the converted graph's input (what hls4ml casts inputs to)."""
    from hls_backend.core.fixed_point import parse_fixed_type

    (variable,) = hls_model.get_input_variables()
    return parse_fixed_type(variable.type.precision.definition_cpp())


def qkeras_logits(model, options: dict, x: np.ndarray) -> np.ndarray:
    """QKeras's outputs on ``x`` as float64, before the final softmax when exact_config
    was asked to skip it (the design then outputs the logits)."""
    import keras

    from hls_backend.core.plan import plan_model
    from hls_backend.core.reference import logits_model, model_outputs
    from hls_backend.hls.layers import HLS_LAYERS

    if options.get('softmax') == 'skip':
        functional = (
            keras.Model(model.inputs, model.outputs, name=model.name) if isinstance(model, keras.Sequential) else model
        )
        model = logits_model(functional, plan_model(functional, HLS_LAYERS, options.get('input_precision'), None))
    return model_outputs(model, x).reshape(len(x), -1)


def compare(y_ref: np.ndarray, y_hls: np.ndarray) -> Result:
    """Bit for bit, float64: the verdict ``exact`` or ``failed`` with the counts."""
    y_hls = np.asarray(y_hls, dtype=np.float64).reshape(y_ref.shape)
    equal_rows = np.all(y_hls == y_ref, axis=1)
    diff = float(np.max(np.abs(y_hls - y_ref))) if y_ref.size else 0.0
    result = Result('exact', samples=len(y_ref), exact_samples=int(equal_rows.sum()), max_abs_diff=diff)
    if not equal_rows.all():
        first = int(np.argmin(equal_rows))
        result.outcome = 'failed'
        result.reason = (
            f'not bit-exact: {result.exact_samples}/{result.samples} samples equal, max |diff| {diff:g}; '
            f'first sample {first}: hls4ml {y_hls[first][:4].tolist()} QKeras {y_ref[first][:4].tolist()}'
        )
    return result


def peer_criterion(case: Case, y_qkeras: np.ndarray, y_hls) -> str:
    try:
        case.check(y_qkeras, y_hls)
    except AssertionError as exc:
        return f'fail: {str(exc).strip().splitlines()[0] if str(exc).strip() else "assertion"}'[:200]
    return 'pass'


def run_case(case: Case, backend: str, io_type: str, output_dir: Path, edit_config=None) -> Result:
    """The user's script with exact_config, the bit-for-bit verdict, the peer's criterion
    beside it. Exceptions other than exact_config's refusal propagate (main counts them
    as failures). ``edit_config(config)`` changes the config before the conversion (the
    tests' negative control: a wrong design must be reported)."""
    import hls4ml

    import hls_backend
    from hls_backend.errors import UnsupportedModelError

    model, x = case.build()
    try:
        config = hls_backend.exact_config(model, backend=backend, io_type=io_type, **case.options)
    except UnsupportedModelError as exc:
        return Result('refused', str(exc))
    if edit_config is not None:
        edit_config(config)
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, backend=backend, io_type=io_type, output_dir=str(output_dir)
    )
    hls_model.compile()
    x = np.asarray(x, dtype=np.float64)
    in_type = input_type(hls_model)
    off_grid = int(np.sum(in_type.quantize(x) != x))
    if off_grid:  # the design would see other values than the model: not a comparison
        return Result('failed', f'{off_grid} input values are not on the grid of the input type {in_type.ap()}')
    y_hls = hls_model.predict(np.ascontiguousarray(x))
    result = compare(qkeras_logits(model, case.options, x), y_hls)
    result.peer_criterion = peer_criterion(case, model.predict(x, verbose=0), y_hls)
    return result


def run_logged(case: Case, backend: str, io_type: str, output_dir: Path) -> Result:
    """run_case, with any exception a ``failed`` result (the traceback printed)."""
    try:
        return run_case(case, backend, io_type, output_dir)
    except Exception as exc:  # noqa: BLE001  a failure is counted and reported, not raised
        traceback.print_exc()
        return Result('failed', f'{type(exc).__name__}: {exc}')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, help='write the per-case results here (JSON)')
    parser.add_argument('-k', default='', help='only cases whose id contains this')
    args = parser.parse_args(argv)
    rows = []
    counts = {combo: Counter({outcome: 0 for outcome in OUTCOMES}) for combo in COMBOS}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='hls4ml-peer-') as tmp:
        for (backend, io_type), case in itertools.product(COMBOS, CASES.values()):
            if args.k not in case.id:
                continue
            result = run_logged(case, backend, io_type, Path(tmp) / f'{case.id}_{backend}_{io_type}')
            counts[(backend, io_type)][result.outcome] += 1
            rows.append({'case': case.id, 'peer': case.peer, 'backend': backend, 'io_type': io_type,
                         'expected': case.expected, **asdict(result)})  # fmt: skip
            detail = f'{result.exact_samples}/{result.samples} equal; peer criterion: {result.peer_criterion}'
            print(f'{backend:6} {io_type:11} {case.id:45} {result.outcome}: '
                  f'{detail if result.outcome == "exact" else result.reason[:200]}', flush=True)  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    print(f'\n{len(rows)} case x combination runs in {minutes:.1f} min\n')
    print('| backend | io_type | bit-exact | refused | failed |\n|---|---|---|---|---|')
    for (backend, io_type), c in counts.items():
        print(f'| {backend} | {io_type} | {c["exact"]} | {c["refused"]} | {c["failed"]} |')
    total = sum(counts.values(), Counter())
    print(f'| all | | {total["exact"]} | {total["refused"]} | {total["failed"]} |')
    print('\nrefused (case: reason, on the combinations listed):')
    for (case_id, reason), combos in _grouped(rows, 'refused').items():
        print(f'- {case_id} ({combos}): {reason}')
    failures = _grouped(rows, 'failed')
    print('\nfailed:' if failures else '\nfailed: none')
    for (case_id, reason), combos in failures.items():
        print(f'- {case_id} ({combos}): {reason}')
    unexpected = [row for row in rows if row['outcome'] != row['expected']]
    print(f'\noutcomes other than the expected ones (Case.expected): {len(unexpected) or "none"}')
    for row in unexpected:
        print(f'- {row["case"]} ({row["backend"]} {row["io_type"]}): {row["outcome"]}, expected {row["expected"]}')
    if args.out:
        summary = {f'{b} {i}': dict(c) for (b, i), c in counts.items()}
        args.out.write_text(
            json.dumps({'counts': summary, 'minutes': round(minutes, 1), 'cases': rows}, indent=1) + '\n'
        )
    return 0 if total['failed'] == 0 and not unexpected else 1


def _grouped(rows: list[dict], outcome: str) -> dict[tuple[str, str], str]:
    """(case, reason) -> the combinations that gave it."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row['outcome'] == outcome:
            grouped.setdefault((row['case'], row['reason']), []).append(f'{row["backend"]} {row["io_type"]}')
    return {key: ', '.join(combos) for key, combos in grouped.items()}


if __name__ == '__main__':
    sys.exit(main())
