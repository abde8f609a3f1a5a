"""Test inputs outside the input type's range: counted, reported, and refused where a
wrapping type would change them (hls, csim --inputs, rtl --inputs; --allow-wrap).

The case (issue 27): [0, 1] pixels with `--input-precision 'ap_ufixed<8,0>'` (AP_TRN,
AP_WRAP: a declared type's defaults): every pixel equal to 1.0 becomes 0 on both sides
of the check, so C simulation said EXACT while accuracy fell from 99.22 % to 96.78 %.
Here a 4-input MLP without an input quantizer and inputs whose first feature is 1.0 in
every other sample stand for it.
"""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
from qkeras import QDense, quantized_bits, quantized_relu

from fpga_tests.cli_helpers import cli
from hls_backend.core.fixed_point import FixedType, parse_fixed_type
from hls_backend.core.input_range import InputRange, scan
from hls_backend.errors import BadInputError

WRAPPING = 'ap_ufixed<8,0>'  # AP_TRN, AP_WRAP
SATURATING = 'ap_ufixed<8,0,AP_TRN,AP_SAT>'
TOP = 0.99609375  # the largest value of both: 255/256


@pytest.mark.parametrize(
    'text, values, expected',
    [
        # AP_WRAP keeps the low bits: 1.0 (256 LSBs) -> 0, 1.5 -> 0.5, -0.25 (-64 LSBs) -> 192 LSBs.
        (WRAPPING, [1.0, 0.5, 1.5, -0.25, TOP, 0.9999], [0.0, 0.5, 0.5, 0.75, TOP, TOP]),
        (SATURATING, [1.0, 0.5, 1.5, -0.25, TOP, 0.9999], [TOP, 0.5, TOP, 0.0, TOP, TOP]),
        # Signed, LSB 0.25, range [-2, 1.75]; AP_RND_CONV rounds half to even first.
        ('ap_fixed<4,2,AP_RND_CONV,AP_WRAP>', [2.0, -2.25, 1.875, -2.125, 1.0], [-2.0, 1.75, -2.0, -2.0, 1.0]),
        ('ap_fixed<4,2,AP_RND_CONV,AP_SAT>', [2.0, -2.25, 1.875, -2.125, 1.0], [1.75, -2.0, 1.75, -2.0, 1.0]),
        ('ap_fixed<4,2,AP_RND_CONV,AP_SAT_ZERO>', [2.0, -2.25, 1.875, -2.125, 1.0], [0.0, 0.0, 0.0, -2.0, 1.0]),
    ],
)
def test_quantize_follows_the_overflow_mode(text, values, expected):
    """As a C++ assignment to the ap type: round onto the grid, then saturate, zero or wrap."""
    assert parse_fixed_type(text).quantize(np.array(values)).tolist() == expected


def probe_inputs() -> np.ndarray:
    """20 samples of 4 features in [0, 1): the first feature is 1.0 in samples 0, 2, ..., 18
    (10 samples, 10 values outside ap_ufixed<8,0>), nothing else outside."""
    x = np.random.default_rng(0).uniform(0, TOP, (20, 4))
    x[::2, 0] = 1.0
    return x


def test_counts_and_distances_exact_over_chunks():
    x = probe_inputs()
    x[5, 3] = 1.25  # the farthest: 1.25 - 255/256 beyond the range
    x[7, 1] = -0.125
    for chunk in (20, 3):  # the same tally whole or in chunks
        seen = scan(x, parse_fixed_type(WRAPPING), 'x.npy', chunk=chunk)
        assert (seen.samples, seen.samples_outside, seen.values, seen.values_outside) == (20, 12, 80, 12)
        assert seen.first_sample == 0
        assert seen.max_distance == 1.25 - TOP and seen.farthest == 1.25
        assert seen.max_change == 1.0  # one wrap: 1.0 -> 0.0, 1.25 -> 0.25, -0.125 -> 0.875
    saturating = scan(x, parse_fixed_type(SATURATING), 'x.npy')
    assert saturating.values_outside == 12 and saturating.max_change == 1.25 - TOP
    assert saturating.message() == (
        'x.npy: 12 of 20 samples (12 of 80 values) lie outside the range [0.0, 0.99609375] of the input type '
        'ap_ufixed<8,0,AP_TRN,AP_SAT>, by up to 0.25390625 (value 1.25; first in sample 0), and were saturated '
        'to the nearest end (changed by up to 0.25390625); the model and the design both see the changed values'
    )
    saturating.check(allow_wrap=False)  # saturation is only reported
    wrapping = scan(x, parse_fixed_type(WRAPPING), 'x.npy')
    with pytest.raises(BadInputError, match=r'12 of 20 samples .* --allow-wrap') as refused:
        wrapping.check(allow_wrap=False)
    assert 'the value 1.25 becomes 0.25' in str(refused.value)
    assert 'e.g. ap_ufixed<9,1,AP_TRN,AP_WRAP>' in str(refused.value)
    wrapping.check(allow_wrap=True)
    inside = InputRange(parse_fixed_type(WRAPPING), 'in range')
    inside.quantize(np.full((3, 4), 0.5))
    assert inside.message() is None and inside.to_dict() is None
    inside.check(allow_wrap=False)


def test_non_finite_values_are_named():
    x = probe_inputs()
    x[13, 2] = np.nan
    with pytest.raises(BadInputError, match='x.npy: sample 13 holds NaN or infinite values'):
        scan(x, FixedType(8, 0, False, 'TRN', 'WRAP'), 'x.npy', chunk=5)


@pytest.fixture(scope='module')
def mlp(tmp_path_factory):
    """4-3-2 QDense MLP without an input quantizer, and the probe inputs as x.npy."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name='x')
    q = {'kernel_quantizer': quantized_bits(6, 0, alpha=1), 'bias_quantizer': quantized_bits(6, 0, alpha=1)}
    h = QDense(3, activation=quantized_relu(8, 3), name='hidden', **q)(inp)
    out = QDense(2, name='out', **q)(h)
    model = keras.Model(inp, out, name='mlp')
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.9, 0.9, w.shape).astype('float32') for w in model.get_weights()])
    root = tmp_path_factory.mktemp('range')
    model.save(root / 'mlp.keras')
    np.save(root / 'x.npy', probe_inputs())
    return root


WRAP_COUNTS = '10 of 20 samples (10 of 80 values) lie outside the range [0.0, 0.99609375]'


def test_hls_refuses_wrapping_inputs_and_reports_saturated_ones(mlp, tmp_path):
    model, x = mlp / 'mlp.keras', mlp / 'x.npy'
    refused = cli('hls', model, '--out', tmp_path / 'a', '--inputs', x, '--input-precision', WRAPPING)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.startswith(f'error: inputs file {x}: {WRAP_COUNTS} of the input type ap_ufixed<8,0,AP_TRN')
    assert 'wrapped around (changed by up to 1.0)' in refused.stderr
    assert 'pass --allow-wrap' in refused.stderr and 'Traceback' not in refused.stderr
    assert not (tmp_path / 'a').exists()

    allowed = cli('hls', model, '--out', tmp_path / 'a', '--inputs', x, '--input-precision', WRAPPING, '--allow-wrap')
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert f'note: inputs file {x}: {WRAP_COUNTS}' in allowed.stdout
    tb = np.loadtxt(tmp_path / 'a' / 'tb_data' / 'tb_input_features.dat')
    assert tb[::2, 0].tolist() == [0.0] * 10  # what the model and the design were given

    saturated = cli('hls', model, '--out', tmp_path / 'b', '--inputs', x, '--input-precision', SATURATING)
    assert saturated.returncode == 0, saturated.stderr[-2000:]
    assert f'note: inputs file {x}: {WRAP_COUNTS} of the input type {SATURATING},' in saturated.stdout
    assert 'saturated to the nearest end (changed by up to 0.00390625)' in saturated.stdout
    tb = np.loadtxt(tmp_path / 'b' / 'tb_data' / 'tb_input_features.dat')
    assert tb[::2, 0].tolist() == [TOP] * 10


def test_csim_inputs_file_refused_then_checked_with_allow_wrap(mlp, tmp_path):
    """The project is written with in-range inputs; a wrapping inputs file given to csim is
    refused before any build, and checked (EXACT on the wrapped values) with --allow-wrap."""
    model, x = mlp / 'mlp.keras', mlp / 'x.npy'
    np.save(tmp_path / 'inside.npy', np.clip(probe_inputs(), 0, TOP))
    written = cli(
        'hls', model, '--out', tmp_path / 'p', '--inputs', tmp_path / 'inside.npy', '--input-precision', WRAPPING
    )
    assert written.returncode == 0, written.stderr[-2000:]
    assert 'lie outside' not in written.stdout
    refused = cli('csim', tmp_path / 'p', '--inputs', x, '--no-second-check')
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f'error: inputs file {x}: {WRAP_COUNTS}' in refused.stderr and '--allow-wrap' in refused.stderr
    assert 'g++ build' not in refused.stderr and not (tmp_path / 'p' / 'csim.exe').exists()
    checked = cli('csim', tmp_path / 'p', '--inputs', x, '--no-second-check', '--allow-wrap', '--json')
    assert checked.returncode == 0, checked.stderr[-2000:]
    result = json.loads(checked.stdout)
    assert result['exact'] and result['samples'] == 20
    assert {k: result['input_range'][k] for k in ('samples_outside', 'values_outside', 'max_change')} == {
        'samples_outside': 10,
        'values_outside': 10,
        'max_change': 1.0,
    }
    plain = cli('csim', tmp_path / 'p', '--inputs', x, '--no-second-check', '--allow-wrap')
    assert plain.returncode == 0 and f'note: inputs file {x}: {WRAP_COUNTS}' in plain.stdout


def test_rtl_input_precision_and_wrap_refused_before_tracing(mlp, tmp_path, monkeypatch):
    """`lpsubnet rtl --input-precision` as `lpsubnet hls`; a wrapping inputs file is refused
    before the trace, and with --allow-wrap the project stores the wrapped values (the
    Verilator simulation is a stub here: the values are decided before it)."""
    from hls_backend.core.results import RouteResult
    from hls_backend.rtl import route

    model, x = mlp / 'mlp.keras', mlp / 'x.npy'
    refused = cli('rtl', model, '--out', tmp_path / 'r', '--inputs', x, '--input-precision', WRAPPING)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f'error: inputs file {x}: {WRAP_COUNTS}' in refused.stderr and '--allow-wrap' in refused.stderr
    assert 'da4ml trace of' not in refused.stderr and not (tmp_path / 'r').exists()

    monkeypatch.setattr(
        route,
        'simulate_rtl',
        lambda out_dir, **kw: RouteResult('rtl', 'stub', str(out_dir), 1, 1, build_seconds=0, run_seconds=0),
    )
    allowed = cli('rtl', model, '--out', tmp_path / 'r', '--inputs', x, '--input-precision', WRAPPING, '--allow-wrap')
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    info = json.loads((tmp_path / 'r' / 'lpsubnet_rtl_project.json').read_text())
    assert info['input_type'] == 'ap_ufixed<8,0,AP_TRN,AP_WRAP>'
    assert info['design']['input_range']['values_outside'] == 10
    assert np.load(tmp_path / 'r' / 'tb_data' / 'inputs.npy')[::2, 0].tolist() == [0.0] * 10


def test_rtl_default_inputs_stay_inside_a_declared_type(mlp, tmp_path):
    """Without --inputs the RTL route draws its own samples: inside the type's range, so a
    wrapping declared type is not refused for data the user never gave."""
    from hls_backend.rtl import write_rtl

    info = write_rtl(mlp / 'mlp.keras', tmp_path / 'r', input_precision=WRAPPING, n_samples=200)
    assert info.design['input_range'] is None
    stored = np.load(tmp_path / 'r' / 'tb_data' / 'inputs.npy')
    assert stored.min() >= 0 and stored.max() <= TOP and (stored == TOP).any()


def test_streamed_inputs_checked_before_the_reference(mlp, tmp_path):
    """simulate_rtl(inputs=...) on its own (the library path that skips rtl()'s early scan)
    refuses a wrapping inputs file before any QKeras reference or harness run."""
    from hls_backend.core.results import RouteResult
    from hls_backend.rtl import read_rtl_info, write_rtl
    from hls_backend.rtl.simulate import Timing, _stream_check

    write_rtl(mlp / 'mlp.keras', tmp_path / 'r', input_precision=WRAPPING, n_samples=5)
    info = read_rtl_info(tmp_path / 'r')
    timing = Timing(1, [1], 1, np.zeros((0, 2)), np.zeros((0, 2)), 16, 0)
    tb = RouteResult('rtl', 'stub', str(tmp_path / 'r'))
    with pytest.raises(BadInputError, match=re.escape(f'inputs file {mlp / "x.npy"}: {WRAP_COUNTS}')):
        _stream_check(tmp_path / 'r', info, None, timing, tb, mlp / 'x.npy', None, 1)
    assert not (tmp_path / 'r' / 'sim' / 'stream').exists()
