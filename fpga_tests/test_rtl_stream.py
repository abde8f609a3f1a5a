"""`lpsubnet rtl MODEL --out DIR --inputs X.npy`: many samples streamed through the
Verilated design one per clock, in runs shared by several harness processes, compared
bit for bit with QKeras. Verilator builds: slow."""

import importlib
import json

import numpy as np
import pytest

from fpga_tests.cli_helpers import cli
from fpga_tests.test_rtl_route import save, small_mlp
from hls_backend import simulate_rtl
from hls_backend.core.fixed_point import parse_fixed_type
from hls_backend.rtl import RTL_RESULT

route = importlib.import_module('hls_backend.rtl.route')
# Streaming (the chunks of an inputs file, the harness runs side by side) lives in rtl/simulate.py.
simulate = importlib.import_module('hls_backend.rtl.simulate')

pytestmark = pytest.mark.slow


def test_streamed_samples_are_exact_and_a_changed_model_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(simulate, 'STREAM_CHUNK', 700)  # several runs, two at a time
    model = small_mlp()
    path = save(model, tmp_path)
    x = np.random.default_rng(4).normal(0, 3, size=(2500, 16)).astype(np.float32)
    np.save(tmp_path / 'x.npy', x)

    proc = cli('rtl', path, '--out', tmp_path / 'rtl', '--inputs', tmp_path / 'x.npy', '--jobs', '2')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / 'rtl' / RTL_RESULT).read_text())
    assert (result['samples'], result['exact_matches'], result['max_abs_diff']) == (2500, 2500, 0.0)
    assert result['run_seconds'] > 0 and result['initiation_interval'] == 1
    stored = result['checks']['tb_data']
    assert (stored['samples'], stored['exact_matches']) == (route.TB_SAMPLES, route.TB_SAMPLES)
    assert any('4 harness run(s), 2 at a time' in note for note in result['notes'])

    # The model the reference comes from changes (one weight): the streamed samples
    # disagree with it, the stored ones (their reference stored with the project) do not.
    weights = model.get_weights()
    weights[0][0, 0] += 0.5
    model.set_weights(weights)
    model.save(path)
    again = simulate_rtl(tmp_path / 'rtl', second_check=False, inputs=tmp_path / 'x.npy', max_samples=1800, shards=2)
    assert again.samples == 1800 and 0 < again.mismatched_samples < 1800
    assert again.checks['tb_data']['exact'] is True
    first = again.mismatches[0]
    assert first['sample'] == again.first_mismatch and first['expected'] != first['actual']
    input_type = parse_fixed_type(route.read_rtl_info(tmp_path / 'rtl').input_type)
    sample = input_type.quantize(x[first['sample']][None].astype(np.float64)).astype(np.float32)
    assert first['expected'] == float(model.predict(sample, verbose=0)[0, first['output']])
