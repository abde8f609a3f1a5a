"""hls4ml's ``distributed_arithmetic`` strategy (da4ml adder graphs inside the HLS
project): C simulation and hls4ml's predict() equal the QKeras model on every sample,
as for the other strategies; ReuseFactor other than 1 is refused before hls4ml runs.

The default suite converts the small CNN (Conv2D and Dense) once; the MLP, the branched
model, io_stream and Vivado run under ``-m slow``.
"""

import re

import numpy as np
import pytest

import hls_backend
from fpga_tests.cli_helpers import cli
from fpga_tests.hls_models import BUILDERS, save

# The MLP's fully unrolled adder graphs take minutes to compile (twice: C simulation
# and hls4ml's compile()); the default case is the small CNN through C simulation
# only, the slow cases add hls4ml's predict().
CASES = [
    pytest.param('cnn8', 4, 'Vitis', 'io_parallel', id='cnn8-4-Vitis-io_parallel-csim'),
    pytest.param('cnn8', 4, 'Vitis', 'io_parallel', marks=pytest.mark.slow, id='cnn8-4-Vitis-io_parallel'),
    pytest.param('jet_mlp', 6, 'Vitis', 'io_parallel', marks=pytest.mark.slow, id='jet_mlp-6-Vitis-io_parallel'),
    pytest.param('cnn8', 4, 'Vitis', 'io_stream', marks=pytest.mark.slow, id='cnn8-4-Vitis-io_stream'),
    pytest.param('cnn8', 6, 'Vivado', 'io_parallel', marks=pytest.mark.slow, id='cnn8-6-Vivado-io_parallel'),
    pytest.param(
        'residual_concat', 8, 'Vitis', 'io_parallel', marks=pytest.mark.slow, id='residual_concat-8-Vitis-io_parallel'
    ),
]


@pytest.mark.parametrize('model_name,bits,backend,io_type', CASES)
def test_distributed_arithmetic_csim_is_bit_exact(request, tmp_path, model_name, bits, backend, io_type):
    model = BUILDERS[model_name](bits)
    path = save(model, tmp_path)
    x = np.random.default_rng(1).normal(0, 1.5, size=(200, *model.inputs[0].shape[1:]))
    options = hls_backend.HLSOptions(backend=backend, io_type=io_type, strategy='distributed_arithmetic')
    hls_backend.write_project(path, tmp_path / 'prj', options, inputs=x)
    # The layers really are da4ml adder graphs, not the Latency strategy's multiplications.
    firmware = tmp_path / 'prj' / 'firmware'
    generated = (firmware / 'myproject.cpp').read_text() + (firmware / 'parameters.h').read_text()
    assert re.search(r'\b\w+_da_\d+<', generated), 'no da4ml adder-graph function in the generated firmware'

    second = not request.node.callspec.id.endswith('-csim')
    result = hls_backend.csim(tmp_path / 'prj', second_check=second)

    assert result.samples == result.exact_matches == 200, f'first mismatch at sample {result.first_mismatch}'
    assert result.max_abs_diff == 0.0
    if second:
        check = result.checks['hls4ml_predict']
        assert check['samples'] == check['exact_matches'] == 200 and check['max_abs_diff'] == 0.0
    y = np.loadtxt(tmp_path / 'prj' / 'tb_data' / 'tb_output_predictions.dat')
    assert np.unique(y.round(12), axis=0).shape[0] > 100  # not vacuous


def test_distributed_arithmetic_needs_reuse_factor_1(tmp_path):
    path = save(BUILDERS['jet_mlp'](6), tmp_path)
    result = cli('hls', path, '--out', tmp_path / 'prj', '--strategy', 'distributed_arithmetic', '--reuse-factor', '2')
    assert result.returncode == 2
    assert 'distributed_arithmetic builds fully unrolled adder graphs and needs ReuseFactor 1, got 2' in result.stderr
    assert 'Traceback' not in result.stderr and not (tmp_path / 'prj').exists()
