"""The HLS route's layer catalogue (fpga_tests/layer_catalogue.py): one model holding every
layer kind ``HLS_LAYERS`` supports, through C simulation with both io types, bit for bit:
lpsubnet's testbench and hls4ml's predict(), each compiled separately, as ``lpsubnet csim``
does. test_layer_coverage.py checks that the model holds every supported kind."""

from __future__ import annotations

import numpy as np
import pytest

import hls_backend
from fpga_tests import layer_catalogue as catalogue
from fpga_tests.fuzz_models import input_samples


@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
@pytest.mark.parametrize('name', sorted(catalogue.HLS_CASES))
def test_every_hls_layer_kind_is_exact_in_c_simulation(name, io_type, tmp_path):
    spec = catalogue.HLS_CASES[name]
    model = catalogue.build(spec)
    model.save(tmp_path / 'model.keras')
    x = input_samples(spec, 100)
    y = np.asarray(model.predict(x.astype('float32'), verbose=0))
    assert np.mean([len(np.unique(c)) > 1 for c in y.T]) > 0.5, 'most outputs must vary over the samples'
    options = hls_backend.HLSOptions(io_type=io_type)
    info = hls_backend.write_project(tmp_path / 'model.keras', tmp_path / 'prj', options, inputs=x)
    assert info.exact_by_construction
    result = hls_backend.csim(tmp_path / 'prj', second_check=True)
    assert result.samples == len(x)
    assert result.exact_matches == len(x) and result.max_abs_diff == 0.0, result.mismatches[:3]
    predict = result.checks['hls4ml_predict']
    assert predict['exact_matches'] == len(x) and predict['max_abs_diff'] == 0.0, predict
