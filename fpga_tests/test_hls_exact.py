"""C simulation equals the QKeras model on every sample, exactly (issue: HLS back end).

The default suite covers each model family once per backend / io_type family and
every weight width; the full cross product runs under ``-m slow`` (make test-all).
"""

import itertools

import numpy as np
import pytest

import hls_backend
from fpga_tests.hls_models import BUILDERS, save

MODELS = ('jet_mlp', 'cnn8', 'residual_concat', 'cnn28')
BITS = (4, 6, 8)
BACKENDS = ('Vitis', 'Vivado')
IO_TYPES = ('io_parallel', 'io_stream')

# One representative per model / bit width / backend / io_type, about two minutes in all.
FAST = {
    ('jet_mlp', 4, 'Vitis', 'io_parallel'),
    ('jet_mlp', 8, 'Vivado', 'io_stream'),
    ('cnn8', 6, 'Vitis', 'io_stream'),
    ('cnn8', 4, 'Vivado', 'io_parallel'),
    ('residual_concat', 8, 'Vitis', 'io_parallel'),
    ('residual_concat', 6, 'Vivado', 'io_stream'),
    ('cnn28', 6, 'Vitis', 'io_stream'),
}


# hls4ml's compile()/predict() as well: io_parallel and io_stream, MLP, CNN and branches.
SECOND_CHECK = {
    ('jet_mlp', 4, 'Vitis', 'io_parallel'),
    ('cnn8', 6, 'Vitis', 'io_stream'),
    ('residual_concat', 8, 'Vitis', 'io_parallel'),
    ('residual_concat', 6, 'Vivado', 'io_stream'),
}
assert SECOND_CHECK <= FAST


def _cases():
    for case in itertools.product(MODELS, BITS, BACKENDS, IO_TYPES):
        marks = () if case in FAST else (pytest.mark.slow,)
        yield pytest.param(*case, marks=marks, id='-'.join(map(str, case)))


@pytest.mark.parametrize('model_name,bits,backend,io_type', _cases())
def test_csim_is_bit_exact(tmp_path, model_name, bits, backend, io_type):
    model = BUILDERS[model_name](bits)
    path = save(model, tmp_path)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1.5, size=(200, *model.inputs[0].shape[1:]))
    options = hls_backend.HLSOptions(backend=backend, io_type=io_type)
    info = hls_backend.write_project(path, tmp_path / 'prj', options, inputs=x)
    assert info.samples == 200

    # The second path (hls4ml compile/predict) is checked on both io types in the fast suite.
    second = (model_name, bits, backend, io_type) in SECOND_CHECK
    result = hls_backend.csim(tmp_path / 'prj', second_check=second)

    assert result.samples == 200
    assert result.exact_matches == 200, f'first mismatch at sample {result.first_mismatch}'
    assert result.max_abs_diff == 0.0
    if second:
        check = result.checks['hls4ml_predict']
        assert check['samples'] == check['exact_matches'] == 200 and check['max_abs_diff'] == 0.0

    # The comparison is not vacuous: outputs vary across samples and are not all zero.
    y = np.loadtxt(tmp_path / 'prj' / 'tb_data' / 'tb_output_predictions.dat')
    assert np.unique(y.round(12), axis=0).shape[0] > 100
    assert np.count_nonzero(y) > y.size // 2
