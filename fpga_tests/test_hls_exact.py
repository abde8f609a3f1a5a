"""C simulation equals the QKeras model on every sample, exactly (issue: HLS back end).

The default suite covers each model family once per backend / io_type family and
every weight width; the full cross product runs under ``-m slow`` (make test-all).
"""

import itertools

import numpy as np
import pytest

import hls_backend
from fpga_tests.hls_models import BUILDERS, save
from hls_backend.hls.options import IO_TYPES

MODELS = ('jet_mlp', 'cnn8', 'residual_concat', 'cnn28')
BITS = (4, 6, 8)
BACKENDS = ('Vitis', 'Vivado')

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


def test_shared_build_runs_both_harnesses_on_one_compiled_firmware(tmp_path):
    """``csim(shared_build=True)`` (the fuzz campaign's mode): hls4ml's build_lib.sh
    compiles the firmware once and the testbench links that library. Both paths must
    still compare every sample: one reference value one LSB off (sample 5) is reported
    by each, the other 59 samples are exact."""
    model = BUILDERS['cnn8'](6)
    x = np.random.default_rng(2).normal(0, 1.5, size=(60, *model.inputs[0].shape[1:]))
    options = hls_backend.HLSOptions(io_type='io_stream')
    info = hls_backend.write_project(save(model, tmp_path), tmp_path / 'prj', options, inputs=x)
    expected = tmp_path / 'prj' / 'tb_data' / 'tb_output_predictions.dat'
    y = np.loadtxt(expected)
    y[5, 0] += 2.0**-14
    np.savetxt(expected, y, fmt='%.17g')

    result = hls_backend.csim(tmp_path / 'prj', second_check=True, shared_build=True)

    build_command = (tmp_path / 'prj' / 'csim_build.log').read_text().splitlines()[0]
    assert 'firmware/myproject.cpp' not in build_command and '.so' in build_command
    assert any('compiled once by hls4ml build_lib.sh' in note for note in result.notes)
    predict = result.checks['hls4ml_predict']
    for check in (result.to_dict(), predict):
        assert (check['samples'], check['exact_matches'], check['first_mismatch']) == (60, 59, 5)
        assert check['max_abs_diff'] == 2.0**-14
    assert info.samples == 60


def test_shared_build_needs_the_second_check(tmp_path):
    with pytest.raises(ValueError, match='needs second_check'):
        hls_backend.csim(tmp_path, second_check=False, shared_build=True)
