"""The RTL route's size guard: MACs counted from the layer kinds before anything is traced,
one threshold (hls_backend.rtl.size.RTL_MAX_MACS) for `lpsubnet rtl`, the library and
`lpsubnet run`'s rtl.enabled: auto, and progress while a design is traced.

The case behind it (issue 27): hls4ml's QKeras MNIST CNN (28x28, about 380k MACs) gave
`lpsubnet rtl` 5.4 minutes of silent tracing and a 17-minute, 14.4 GB Verilator build.
No test here builds with Verilator: the refusals come before the trace, and a design
let through is traced and written only (the build is the signal tests' business).
"""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
from qkeras import (
    QActivation,
    QConv1D,
    QConv2D,
    QConv2DBatchnorm,
    QDense,
    QDepthwiseConv2D,
    QSeparableConv2D,
    quantized_bits,
    quantized_relu,
)

from fpga_tests.cli_helpers import cli
from hls_backend.errors import DesignTooLargeError
from hls_backend.rtl import size as rtl_size
from hls_backend.rtl import write_rtl


def q4():
    return {'kernel_quantizer': quantized_bits(4, 0, alpha=1), 'bias_quantizer': quantized_bits(4, 0, alpha=1)}


def mnist_cnn() -> keras.Model:
    """A 28x28 CNN of the size of hls4ml's QKeras MNIST example (random weights: only its
    shape matters here). MACs by hand: conv1 26*26 positions x 3*3*1*16 = 97,344;
    conv2 11*11 x 3*3*16*16 = 278,784; dense 400 x 10 = 4,000; 380,128 in all."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1), name='image')
    h = QActivation(quantized_bits(8, 0, alpha=1), name='q_in')(inp)
    h = QConv2D(16, 3, activation=quantized_relu(6, 2), name='conv1', **q4())(h)
    h = keras.layers.MaxPooling2D(2, name='pool1')(h)
    h = QConv2D(16, 3, activation=quantized_relu(6, 2), name='conv2', **q4())(h)
    h = keras.layers.MaxPooling2D(2, name='pool2')(h)
    h = keras.layers.Flatten(name='flatten')(h)
    out = QDense(10, name='logits', **q4())(h)
    return keras.Model(inp, out, name='mnist_cnn')


MNIST_MACS = 97_344 + 278_784 + 4_000


def small_cnn() -> keras.Model:
    """MACs by hand: conv 4*4 positions x 3*3*1*3 = 432; fc 12 x 8 = 96; out 8 x 4 = 32; 560."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((6, 6, 1), name='image')
    h = QActivation(quantized_bits(6, 2, alpha=1), name='q_in')(inp)
    h = QConv2D(3, 3, activation=quantized_relu(6, 2), name='conv', **q4())(h)
    h = keras.layers.MaxPooling2D(2, name='pool')(h)
    h = keras.layers.Flatten(name='flatten')(h)
    h = QDense(8, activation=quantized_relu(6, 2), name='fc', **q4())(h)
    out = QDense(4, name='out', **q4())(h)
    return keras.Model(inp, out, name='small_cnn')


SMALL_MACS = 432 + 96 + 32


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('size')
    paths = {}
    for make in (mnist_cnn, small_cnn):
        model = make()
        paths[model.name] = root / f'{model.name}.keras'
        model.save(paths[model.name])
    return paths


def test_macs_of_every_weighted_kind_counted_by_hand():
    """Positions x weights per layer, from the layer kinds (strides and 'same' padding
    change the positions; a separable layer counts both kernels; a 3-D Dense input
    multiplies per time step)."""
    from hls_backend.hls.layers import HLS_LAYERS
    from hls_backend.rtl.layers import RTL_LAYERS

    inp = keras.Input((10, 10, 2), name='image')
    h = QConv2D(4, 3, strides=2, padding='same', name='strided', **q4())(inp)  # 5*5 x 3*3*2*4 = 1,800
    h = QDepthwiseConv2D(3, name='depthwise', depthwise_quantizer=quantized_bits(4, 0, alpha=1))(h)  # 3*3 x 36 = 324
    h = QConv2DBatchnorm(3, 1, name='fused', **q4())(h)  # 3*3 x 1*1*4*3 = 108
    h = keras.layers.Reshape((9, 3), name='to_sequence')(h)
    h = QConv1D(2, 2, name='conv1d', **q4())(h)  # 8 x 2*3*2 = 96
    h = QDense(5, name='timewise', **q4())(h)  # 8 x 2*5 = 80
    h = keras.layers.Flatten(name='flatten')(h)
    out = QDense(3, name='dense', **q4())(h)  # 40 x 3 = 120
    model = keras.Model(inp, out)
    expected = {
        'strided': 1_800,
        'depthwise': 324,
        'fused': 108,
        'conv1d': 96,
        'timewise': 80,
        'dense': 120,
    }
    size = rtl_size.design_size(model, RTL_LAYERS)
    assert {layer.name: layer.macs for layer in size.layers} == expected
    assert size.macs == 2_528
    # The HLS route's kinds count the same way, and the separable layer (HLS only) both kernels.
    assert rtl_size.design_size(model, HLS_LAYERS).macs == 2_528
    sep_in = keras.Input((6, 6, 3))
    sep = QSeparableConv2D(
        5,
        3,
        name='separable',
        depthwise_quantizer=quantized_bits(4, 0, alpha=1),
        pointwise_quantizer=quantized_bits(4, 0, alpha=1),
        bias_quantizer=quantized_bits(4, 0, alpha=1),
    )(sep_in)
    sep_size = rtl_size.design_size(keras.Model(sep_in, sep), HLS_LAYERS)
    assert sep_size.macs == 4 * 4 * (3 * 3 * 3 + 3 * 5)  # 672


def test_same_count_as_the_pruner_reports(models):
    """The pruner's manifest reports MACs too (pruner.metrics.macs, its own layer kinds): the
    two counts agree, so the figures a user reads in the manifest and in the refusal match."""
    from hls_backend.core.model_io import load_qkeras_model
    from hls_backend.rtl.layers import RTL_LAYERS
    from pruner.metrics import macs

    for name, expected in (('mnist_cnn', MNIST_MACS), ('small_cnn', SMALL_MACS)):
        model = load_qkeras_model(models[name])
        assert rtl_size.design_size(model, RTL_LAYERS).macs == expected
        assert macs(model) == expected


def test_rtl_command_refuses_a_large_design_before_tracing(models, tmp_path):
    out = tmp_path / 'rtl'
    result = cli('rtl', models['mnist_cnn'], '--out', out)
    assert result.returncode == 2, result.stderr[-2000:]
    error = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(error) == 1 and 'Traceback' not in result.stderr
    assert '380,128 multiply-accumulates per sample in 3 layers' in error[0]
    assert "the largest layer, 'conv2', 278,784" in error[0]
    assert 'more than the 20,000 MACs' in error[0]
    assert '--force-large' in error[0]
    assert 'da4ml trace of' not in result.stderr  # refused before the trace started
    assert not out.exists()


def test_library_refuses_unless_force_large_and_the_threshold_is_one_constant(models, tmp_path, monkeypatch):
    """write_rtl / rtl refuse above RTL_MAX_MACS (read when called: lowering it below the
    small CNN's 560 MACs refuses that too), and force_large=True goes on."""
    with pytest.raises(DesignTooLargeError) as refused:
        write_rtl(models['mnist_cnn'], tmp_path / 'a')
    assert refused.value.size.macs == MNIST_MACS and refused.value.exit_code == 2
    monkeypatch.setattr(rtl_size, 'RTL_MAX_MACS', SMALL_MACS - 1)
    with pytest.raises(DesignTooLargeError, match=r'560 multiply-accumulates .* more than the 559 MACs'):
        write_rtl(models['small_cnn'], tmp_path / 'b', n_samples=5)
    assert not (tmp_path / 'b').exists()
    info = write_rtl(models['small_cnn'], tmp_path / 'b', n_samples=5, force_large=True)
    assert info.design['macs'] == SMALL_MACS
    monkeypatch.setattr(rtl_size, 'RTL_MAX_MACS', SMALL_MACS)  # at the threshold: accepted
    assert write_rtl(models['small_cnn'], tmp_path / 'c', n_samples=5).design['macs'] == SMALL_MACS


def test_rtl_command_force_large_goes_on(models, tmp_path, monkeypatch):
    """--force-large reaches the library: the project is traced and written (the Verilator
    simulation is replaced by a stub, the build is not what is tested here)."""
    from hls_backend.core.results import RouteResult
    from hls_backend.rtl import route

    monkeypatch.setattr(rtl_size, 'RTL_MAX_MACS', 100)
    refused = cli('rtl', models['small_cnn'], '--out', tmp_path / 'a')
    assert refused.returncode == 2 and 'more than the 100 MACs' in refused.stderr
    simulated = []

    def simulate(out_dir, **kwargs):
        simulated.append(out_dir)
        return RouteResult(
            route='rtl',
            tool='stub',
            project_dir=str(out_dir),
            samples=1,
            exact_matches=1,
            build_seconds=0,
            run_seconds=0,
        )

    monkeypatch.setattr(route, 'simulate_rtl', simulate)
    result = cli('rtl', models['small_cnn'], '--out', tmp_path / 'a', '--force-large')
    assert result.returncode == 0, result.stderr[-2000:]
    assert simulated == [str(tmp_path / 'a')]
    info = json.loads((tmp_path / 'a' / 'lpsubnet_rtl_project.json').read_text())
    assert info['design']['macs'] == SMALL_MACS
    assert f'da4ml trace of small_cnn.keras ({SMALL_MACS} MACs) done in' in result.stderr


def test_run_stage_auto_skips_with_the_same_threshold(models, tmp_path, monkeypatch):
    """`lpsubnet run`'s rtl stage: 'auto' asks the library with force_large=False (the
    same estimate and constant: lowering RTL_MAX_MACS below the model skips it), and
    rtl.enabled: true passes force_large=True."""
    import hls_backend
    from lpsubnet.config import parse_config
    from lpsubnet.datasets import Splits
    from lpsubnet.pipeline import RunContext
    from lpsubnet.stages import stage_rtl

    run = tmp_path / 'run'
    (run / 'compress').mkdir(parents=True)
    (run / 'data').mkdir()
    (run / 'compress' / 'reduced.keras').write_bytes(models['small_cnn'].read_bytes())
    x = np.random.default_rng(0).uniform(-1, 1, (6, 6, 6, 1)).astype(np.float32)
    y = np.zeros(6, dtype=np.int64)
    Splits(x, y, x, y, x, y, 'digits').save(run / 'data' / 'dataset.npz')

    def context(enabled):
        ctx = RunContext(parse_config({'rtl': {'enabled': enabled}}), run, None)
        ctx.records['data'] = {'summary': {'dataset': 'digits'}}
        return ctx

    monkeypatch.setattr(rtl_size, 'RTL_MAX_MACS', SMALL_MACS - 1)
    skipped = stage_rtl(context('auto'), tmp_path / 'out1')
    assert skipped == {
        'skipped': f'rtl.enabled is auto and the model has {SMALL_MACS} MACs (> {SMALL_MACS - 1}); '
        'set rtl.enabled: true to build it anyway'
    }
    asked = []

    def rtl(*args, **kwargs):
        asked.append(kwargs['force_large'])
        raise RuntimeError('stop here')

    monkeypatch.setattr(hls_backend, 'rtl', rtl)
    for enabled in ('auto', True):
        with pytest.raises(RuntimeError, match='stop here'):
            stage_rtl(context(enabled), tmp_path / f'out_{enabled}')
    assert asked == [False, True]


def test_trace_progress_names_each_layer_and_position(models, tmp_path, monkeypatch, capsys):
    """In a log every progress update is a line once HEARTBEAT_SECONDS have passed (0 here):
    the layer being traced (k of n), its output position and the share of the MACs."""
    from hls_backend.core import progress

    monkeypatch.setattr(progress, 'HEARTBEAT_SECONDS', 0.0)
    write_rtl(models['small_cnn'], tmp_path / 'p', n_samples=5)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith('da4ml trace of')]
    prefix = f'da4ml trace of small_cnn.keras ({SMALL_MACS} MACs): '
    details = [re.sub(r' \(\d+ s\)$', '', line.removeprefix(prefix)) for line in lines[:-1]]
    assert details[0] == f"layer 'q_in' (1/6), 0% of {SMALL_MACS} MACs"
    assert details[1] == f"layer 'conv' (2/6), 0% of {SMALL_MACS} MACs"
    assert details[2 : 2 + 16] == [
        f"layer 'conv' (2/6), {100 * 432 * p / 16 / SMALL_MACS:.0f}% of {SMALL_MACS} MACs, output position {p + 1}/16"
        for p in range(16)
    ]
    assert f"layer 'fc' (5/6), {100 * 432 / SMALL_MACS:.0f}% of {SMALL_MACS} MACs" in details
    assert f"layer 'out' (6/6), {100 * 528 / SMALL_MACS:.0f}% of {SMALL_MACS} MACs" in details
    assert details[-1] == 'collecting the traced operations into one design (comb_trace)'
    assert re.fullmatch(rf'da4ml trace of small_cnn\.keras \({SMALL_MACS} MACs\) done in \d+\.\d s', lines[-1])


def test_build_phase_read_from_the_build_files(tmp_path):
    """The Verilator build's phase as the progress display shows it."""
    from hls_backend.rtl.route import build_phase

    obj, library = tmp_path / 'obj_dir', tmp_path / 'libx.so'
    assert build_phase(obj, library) == 'verilating the design'
    obj.mkdir()
    for name in ('a', 'b', 'c'):
        (obj / f'{name}.cpp').write_text('')
    (obj / 'a.o').write_text('')
    assert build_phase(obj, library) == 'compiling the generated C++: 1/3 files'
    for name in ('b', 'c'):
        (obj / f'{name}.o').write_text('')
    assert build_phase(obj, library) == 'linking the emulator'
    library.write_text('')
    assert build_phase(obj, library) == 'emulator linked'
