"""`lpsubnet csim DIR --inputs FILE`: an existing project checked on a new inputs file,
in shards, with the testbench build cached by the hash of the firmware.

One small project is written and its testbench built once for the module; each test
works on a copy (the copy's csim.exe stays valid: the key hashes contents, not paths).
"""

import importlib
import json
import re
import shutil

import keras
import numpy as np
import pytest
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

import hls_backend
from fpga_tests.cli_helpers import cli
from fpga_tests.hls_models import _finish, save, wq
from hls_backend.core.fixed_point import parse_fixed_type
from hls_backend.core.model_io import load_qkeras_model

csim_module = importlib.import_module('hls_backend.hls.csim')  # the module; hls_backend.hls.csim is also the function

INPUT_TYPE = 'ap_fixed<8,3,AP_RND_CONV,AP_SAT>'  # quantized_bits(8, 2)


def _model():
    inp = keras.Input((6,), name='x')
    h = QActivation(quantized_bits(8, 2, alpha=1), name='input_q')(inp)
    h = QDense(8, kernel_quantizer=wq(5), bias_quantizer=wq(5), activation=quantized_relu(6, 2), name='hidden')(h)
    out = QDense(3, kernel_quantizer=wq(5), bias_quantizer=wq(5), name='out')(h)
    return _finish(keras.Model(inp, out, name='scale_mlp'), seed=3)


@pytest.fixture(scope='module')
def built_project(tmp_path_factory):
    root = tmp_path_factory.mktemp('scale')
    hls_backend.write_project(save(_model(), root), root / 'prj', n_default_samples=10)
    result = hls_backend.csim(root / 'prj', second_check=False)  # builds csim.exe once
    assert result.exact and result.samples == 10
    return root / 'prj'


@pytest.fixture
def project(built_project, tmp_path):
    copy = tmp_path / 'prj'
    shutil.copytree(built_project, copy)
    return copy


@pytest.fixture(scope='module')
def inputs_file(tmp_path_factory):
    """Float samples off the input grid (the check rounds them) and spread over its range."""
    path = tmp_path_factory.mktemp('inputs') / 'x.npy'
    np.save(path, np.random.default_rng(7).uniform(-4.5, 4.5, size=(700, 6)).astype(np.float32))
    return path


def _reference(project, x):
    """The QKeras outputs the check must reproduce, computed here independently."""
    model = load_qkeras_model(project / 'keras_model.keras')
    x_q = parse_fixed_type(INPUT_TYPE).quantize(np.asarray(x, dtype=np.float64))
    return np.asarray(model.predict(x_q.astype(np.float32), verbose=0), dtype=np.float64)


def _corrupt_a_weight(project):
    """The first weight of the hidden layer, negated in the file the C simulation reads
    (hls4ml's firmware loads weights/*.txt outside synthesis, so the cached executable
    sees the change without a rebuild)."""
    weights = sorted((project / 'firmware' / 'weights').glob('w*.txt'))[0]
    values = weights.read_text().split(',')
    values[0] = repr(-float(values[0]) or 0.5)
    weights.write_text(','.join(values))


def test_new_inputs_file_is_exact(project, inputs_file):
    proc = cli('csim', project, '--inputs', inputs_file, '--json', '--jobs', '1')
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result['samples'], result['exact_matches'], result['exact']) == (700, 700, True)
    assert result['run_seconds'] > 0 and result['mismatches'] == []
    assert 'hls4ml_predict' not in result['checks']  # off by default with --inputs
    # The verdict is not vacuous: the outputs vary, and the reference the check used is
    # the QKeras model's output on the rounded inputs.
    y = _reference(project, np.load(inputs_file))
    assert np.unique(y, axis=0).shape[0] > 100
    cached = list((project / csim_module.CACHE_DIR).glob('reference-*.f64'))
    assert len(cached) == 1 and np.array_equal(np.fromfile(cached[0]).reshape(y.shape), y)

    # The same file again: the reference comes from the cache (no Keras predict).
    again = json.loads(cli('csim', project, '--inputs', inputs_file, '--json').stdout)
    assert (
        again['exact_matches'] == 700
        and 'QKeras reference: cached for the same inputs, model and Keras stack' in again['notes']
    )

    # .npz, the first N samples only.
    np.savez(project.parent / 'x.npz', x=np.load(inputs_file))
    proc = cli('csim', project, '--inputs', project.parent / 'x.npz', '--max-samples', '50')
    assert proc.returncode == 0, proc.stderr
    assert 'csim: EXACT 50/50 samples bit-exact' in proc.stdout


def test_corrupted_weight_file_names_the_first_mismatching_samples(project, inputs_file):
    _corrupt_a_weight(project)
    proc = cli('csim', project, '--inputs', inputs_file, '--jobs', '2')
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert 'build 0.0 s' in proc.stdout  # weights are read at run time: no rebuild
    result = json.loads((project / csim_module.CSIM_RESULT).read_text())
    assert 0 < result['mismatched_samples'] < 700 and result['exact'] is False
    mismatches = result['mismatches']
    assert len(mismatches) == 10
    samples = [m['sample'] for m in mismatches]
    assert samples == sorted(samples) and samples[0] == result['first_mismatch']
    y = _reference(project, np.load(inputs_file))
    for m in mismatches:
        assert m['expected'] == y[m['sample'], m['output']] and m['actual'] != m['expected']
    first = mismatches[0]
    assert f'sample {first["sample"]}, output {first["output"]}: QKeras {first["expected"]!r}' in proc.stdout
    assert f'first mismatching sample: {first["sample"]}' in proc.stderr


@pytest.mark.parametrize('binary', [True, False], ids=['binary', 'text'])
def test_sharded_and_single_runs_give_the_same_verdict(project, inputs_file, binary, monkeypatch):
    """Also through the text I/O that projects written before the binary mode use."""
    monkeypatch.setattr(csim_module, '_supports_binary', lambda *args: binary)
    _corrupt_a_weight(project)
    keys = ('samples', 'exact_matches', 'mismatched_samples', 'first_mismatch', 'max_abs_diff', 'mismatches')
    verdicts = {}
    for jobs in (1, 3):
        result = hls_backend.csim(project, second_check=False, inputs=inputs_file, jobs=jobs).to_dict()
        verdicts[jobs] = {k: result[k] for k in keys}
        assert any(f'{jobs} testbench process(es)' in note for note in result['notes'])
    assert verdicts[1] == verdicts[3] and verdicts[1]['mismatched_samples'] > 0
    few = hls_backend.csim(project, second_check=False, inputs=inputs_file, jobs=5, max_samples=2)
    assert few.samples == 2 and any('2 testbench process(es)' in note for note in few.notes)


def test_cached_build_is_reused_and_invalidated_by_a_firmware_change(project):
    exe = project / 'csim.exe'
    built = exe.stat().st_mtime_ns
    again = hls_backend.csim(project, second_check=False)
    assert again.exact and again.build_seconds == 0.0 and exe.stat().st_mtime_ns == built
    assert any(note.startswith('testbench reused') for note in again.notes)
    # The outputs of a tb_data check are left where `make csim` writes them.
    tb = project / 'tb_data'
    assert np.array_equal(np.loadtxt(tb / 'csim_results.log'), np.loadtxt(tb / 'tb_output_predictions.dat'))

    source = project / 'firmware' / 'myproject.cpp'
    source.write_text(source.read_text() + '\n// edited\n')
    rebuilt = hls_backend.csim(project, second_check=False)
    assert rebuilt.exact and rebuilt.build_seconds > 0 and exe.stat().st_mtime_ns != built
    assert not any(note.startswith('testbench reused') for note in rebuilt.notes)
    assert (project / 'csim.exe.key').read_text().strip() == csim_module.testbench_key(
        project, 'myproject', shutil.which('g++'), '-O2'
    ).digest


@pytest.mark.parametrize(
    'array, message',
    [
        (np.zeros((5, 7)), r'samples have shape \(7,\) \(array \(5, 7\)\), the project expects \(6,\)'),
        (np.array([['a'] * 6]), r'dtype <U1 is not numeric; expected float or integer arrays of shape \(N, 6\)'),
        (np.full((3, 6), np.nan), 'sample 0 holds NaN or infinite values'),
        (np.zeros((0, 6)), 'holds no samples'),
    ],
    ids=['shape', 'dtype', 'nan', 'empty'],
)
def test_bad_inputs_file_names_the_file_and_the_expected_shape(project, tmp_path, array, message):
    path = tmp_path / 'bad.npy'
    np.save(path, array)
    proc = cli('csim', project, '--inputs', path)
    assert proc.returncode == 2 and f'inputs file {path}' in proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert 'Traceback' not in proc.stderr


def test_inputs_file_that_is_no_array(project, tmp_path):
    path = tmp_path / 'x.npy'
    path.write_text('1 2 3\n')
    proc = cli('csim', project, '--inputs', path)
    assert proc.returncode == 2 and f'inputs file {path} is not a .npy/.npz array file' in proc.stderr
    proc = cli('csim', project, '--inputs', tmp_path / 'missing.npy')
    assert proc.returncode == 2 and 'missing.npy does not exist' in proc.stderr
