"""Every cache of a build or a verdict is keyed on everything its result depends on.

One key function per cache (issue 27: hls4ml's ``predict()`` verdict was cached under a
hash of the C++ sources alone, so a negated weight in ``firmware/weights/*.txt`` left it
at 40/40 "cached" while the testbench said 13/40). For each key, every part it hashes is
changed in turn and must give a different key (a miss); the unchanged project, copied
elsewhere, gives the same key (a hit); and what the result does not depend on (where the
project lies, the libraries a build leaves) leaves it alone. A part added to a key
without a change here fails ``test_every_part_is_changed``.

The caches: the C-simulation testbench build (``csim.exe.key``), the ``predict()`` verdict
and the QKeras reference (``.lpsubnet_csim/``) of ``hls_backend/hls/csim.py``, and the
stage records of ``lpsubnet run`` (``lpsubnet/pipeline.py``). The RTL route keeps no
Verilator build: every simulation builds the Verilog it finds (its negative control in
fpga_tests/test_negative_controls.py changes one constant and sees the mismatch).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
from pathlib import Path

import pytest

import hls_backend
from fpga_tests.hls_models import negate_first_weight, save
from fpga_tests.test_csim_scale import _model
from hls_backend.core import cache_key

csim_module = importlib.import_module('hls_backend.hls.csim')
NAME = 'myproject'


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    """The small project of test_csim_scale, written once (no build: keys hash files)."""
    root = tmp_path_factory.mktemp('keys')
    hls_backend.write_project(save(_model(), root), root / 'prj', n_default_samples=10)
    return root / 'prj'


@pytest.fixture
def project(written, tmp_path):
    copy = tmp_path / 'prj'
    shutil.copytree(written, copy)
    return copy


def edit(path: Path, old: str | None = None, new: str = '') -> None:
    """Replace ``old`` by ``new`` in a text file (append ``new`` when ``old`` is None)."""
    text = path.read_text()
    if old is None:
        path.write_text(text + new)
        return
    assert old in text, f'{old!r} not in {path}'
    path.write_text(text.replace(old, new, 1))


def other_version(monkeypatch, distribution: str) -> None:
    real = cache_key.version
    monkeypatch.setattr(cache_key, 'version', lambda name: '999.0' if name == distribution else real(name))


def other_compiler_version(monkeypatch) -> None:
    monkeypatch.setattr(csim_module, '_compiler_version', lambda compiler: 'g++ (Other) 99.1')


def gxx_elsewhere(monkeypatch, tmp_path) -> str:
    """The same g++ under another path, first on PATH."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'g++').symlink_to(shutil.which('g++'))
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    return str(bin_dir / 'g++')


# --- the testbench build -----------------------------------------------------------------


def build_key(project: Path, compiler: str | None = None, opt: str = '-O2', extra=()):
    return csim_module.testbench_key(project, NAME, compiler or shutil.which('g++'), opt, tuple(extra))


TESTBENCH_CHANGES = {
    'compiler': lambda p, mp, tmp: {'compiler': gxx_elsewhere(mp, tmp)},
    'compiler version': lambda p, mp, tmp: other_compiler_version(mp),
    'flags': lambda p, mp, tmp: {'opt': '-O3'},
    'flags (extra)': lambda p, mp, tmp: {'extra': ['-DLPSUBNET_EXTRA']},
    'testbench': lambda p, mp, tmp: edit(p / f'{NAME}_test.cpp', None, '\n// edited\n'),
    'firmware sources': lambda p, mp, tmp: edit(p / 'firmware' / f'{NAME}.cpp', None, '\n// edited\n'),
    'firmware sources (a weight header)': lambda p, mp, tmp: edit(
        sorted((p / 'firmware' / 'weights').glob('w*.h'))[0], None, '\n'
    ),
    'firmware sources (ap_types)': lambda p, mp, tmp: edit(p / 'firmware' / 'ap_types' / 'ap_fixed.h', None, '\n'),
    'firmware sources (a new header)': lambda p, mp, tmp: (p / 'firmware' / 'extra.h').write_text('#pragma once\n'),
    'firmware sources (a renamed header)': lambda p, mp, tmp: (p / 'firmware' / 'defines.h').rename(
        p / 'firmware' / 'defines2.h'
    ),
}


@pytest.mark.parametrize('change', TESTBENCH_CHANGES)
def test_testbench_key_misses_when_a_build_input_changes(project, monkeypatch, tmp_path, change):
    before = build_key(project)
    arguments = TESTBENCH_CHANGES[change](project, monkeypatch, tmp_path)
    arguments = arguments if isinstance(arguments, dict) else {}
    after = build_key(project, **arguments)
    assert after.digest != before.digest
    assert after.parts[change.split(' (')[0]] != before.parts[change.split(' (')[0]]


def test_testbench_key_hits_for_the_same_build(written, project):
    """A copy elsewhere, a weight .txt changed (read at run time, not built in: the
    testbench verdict is never cached) and hls4ml's libraries left in firmware/."""
    key = build_key(written)
    assert build_key(project).digest == key.digest
    negate_first_weight(project)
    (project / 'firmware' / f'{NAME}-1234abcd.so').write_bytes(b'\0')
    assert build_key(project).digest == key.digest


# --- the predict() verdict ---------------------------------------------------------------


def predict_key(project: Path, samples: str = 'samples-1'):
    return csim_module.predict_key(project, NAME, samples)


PREDICT_CHANGES = {
    'version:hls4ml': lambda p, mp, tmp: other_version(mp, 'hls4ml'),
    'version:numpy': lambda p, mp, tmp: other_version(mp, 'numpy'),
    'build_lib.sh compiler': lambda p, mp, tmp: gxx_elsewhere(mp, tmp),
    'build_lib.sh compiler version': lambda p, mp, tmp: other_compiler_version(mp),
    'build script': lambda p, mp, tmp: edit(p / 'build_lib.sh', 'CFLAGS="-O3', 'CFLAGS="-O2'),
    'bridge': lambda p, mp, tmp: edit(p / f'{NAME}_bridge.cpp', None, '\n// edited\n'),
    'hls4ml config': lambda p, mp, tmp: edit(p / 'hls4ml_config.yml', 'Stamp: ', 'Stamp: 0'),
    'firmware and weights': lambda p, mp, tmp: negate_first_weight(p),
    'firmware and weights (a bias file)': lambda p, mp, tmp: edit(
        sorted((p / 'firmware' / 'weights').glob('b*.txt'))[0], None, ' '
    ),
    'firmware and weights (a source)': lambda p, mp, tmp: edit(p / 'firmware' / f'{NAME}.cpp', None, '\n'),
    'samples': lambda p, mp, tmp: {'samples': 'samples-2'},
}


@pytest.mark.parametrize('change', PREDICT_CHANGES)
def test_predict_key_misses_when_anything_the_verdict_reads_changes(project, monkeypatch, tmp_path, change):
    before = predict_key(project)
    arguments = PREDICT_CHANGES[change](project, monkeypatch, tmp_path)
    arguments = arguments if isinstance(arguments, dict) else {}
    after = predict_key(project, **arguments)
    assert after.digest != before.digest
    assert after.parts[change.split(' (')[0]] != before.parts[change.split(' (')[0]]


def test_predict_key_hits_for_a_copy_and_the_libraries_hls4ml_builds(written, project):
    """A copied project (relinked: its OutputDir differs) keeps its verdict, and so does
    one where hls4ml's compile() left its library."""
    key = predict_key(written)
    hls_backend.relink_project(project)
    assert 'OutputDir: ' + str(project) in (project / 'hls4ml_config.yml').read_text()
    (project / 'firmware' / f'{NAME}-1234abcd.so').write_bytes(b'\0')
    assert predict_key(project).digest == key.digest


# --- the QKeras reference ----------------------------------------------------------------


def reference_key(model_file: Path, inputs: str = 'inputs-1', source: str = 'snapshot'):
    return csim_module.reference_key(inputs, model_file, source)


REFERENCE_CHANGES = {
    'inputs': lambda p, mp: {'inputs': 'inputs-2'},
    'model file': lambda p, mp: (p / 'keras_model.keras').write_bytes((p / 'keras_model.keras').read_bytes() + b'\0'),
    'model source': lambda p, mp: {'source': 're-planned'},
    'version:tensorflow': lambda p, mp: other_version(mp, 'tensorflow'),
    'version:keras': lambda p, mp: other_version(mp, 'keras'),
    'version:qkeras-v3': lambda p, mp: other_version(mp, 'qkeras-v3'),
    'version:numpy': lambda p, mp: other_version(mp, 'numpy'),
    'version:lpsubnet': lambda p, mp: other_version(mp, 'lpsubnet'),
}


@pytest.mark.parametrize('change', REFERENCE_CHANGES)
def test_reference_key_misses_when_inputs_model_or_stack_change(project, monkeypatch, change):
    before = reference_key(project / 'keras_model.keras')
    arguments = REFERENCE_CHANGES[change](project, monkeypatch)
    arguments = arguments if isinstance(arguments, dict) else {}
    after = reference_key(project / 'keras_model.keras', **arguments)
    assert after.digest != before.digest and after.parts[change] != before.parts[change]


def test_reference_key_hits_for_the_same_model_elsewhere(written, project):
    assert reference_key(project / 'keras_model.keras').digest == reference_key(written / 'keras_model.keras').digest


def test_the_reference_source_names_the_replanning_options(written, tmp_path):
    """Without the snapshot, the reference is the recorded model re-planned with the
    project's options: a change of those options is a different reference."""
    info = hls_backend.read_project_info(written)
    _, snapshot = csim_module._model_file(written, info)
    copy = tmp_path / 'prj'
    shutil.copytree(written, copy)
    (copy / 'keras_model.keras').unlink()
    model_file, replanned = csim_module._model_file(copy, info)
    assert model_file == Path(info.model_path) and replanned != snapshot
    info.options['input_precision'] = 'ap_fixed<10,4>'
    assert csim_module._model_file(copy, info)[1] != replanned


# --- every part is exercised ------------------------------------------------------------


def test_every_part_is_changed(written):
    """The changes above cover every part of each key: a new part needs its change."""
    covered = {
        'testbench': {c.split(' (')[0] for c in TESTBENCH_CHANGES},
        'predict': {c.split(' (')[0] for c in PREDICT_CHANGES},
        'reference': set(REFERENCE_CHANGES),
    }
    assert covered['testbench'] == set(build_key(written).parts)
    assert covered['predict'] == set(predict_key(written).parts)
    assert covered['reference'] == set(reference_key(written / 'keras_model.keras').parts)


# --- the stage records of `lpsubnet run` --------------------------------------------------

RAN: list[str] = []


def toy_stage(name: str, reads: tuple[str, ...], after: tuple[str, ...], tools: tuple[str, ...]):
    """A stage that writes '<name>.txt': its inputs' texts and its name (no training)."""
    from lpsubnet.pipeline import Stage

    def run(ctx, out):
        upstream = ''.join((ctx.stage_dir(d) / f'{d}.txt').read_text() for d in after)
        (out / f'{name}.txt').write_text(upstream + name)
        RAN.append(name)
        return {}

    return Stage(name, name, reads, after, run, tools)


TOY = [
    toy_stage('data', ('data',), (), ('numpy',)),
    toy_stage('train', ('model',), ('data',), ('keras',)),
    toy_stage('check', ('hls.clock_period',), ('train',), ('g++',)),
]


def toy_config(data_file: Path, **changes):
    from lpsubnet.config import parse_config

    return parse_config({'data': {'dataset': 'npz', 'path': str(data_file)}, **changes})


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / 'data.npz'
    path.write_bytes(b'first data')
    return path


def records_of(config, run_dir) -> dict[str, dict]:
    from lpsubnet.pipeline import run_pipeline

    return run_pipeline(config, run_dir, TOY, resume=run_dir.is_dir()).records


def changed_stage_input(change: str, stage, config, upstream, monkeypatch, data_file):
    """(stage, config, upstream) with one input of the stage's key changed."""
    import dataclasses

    if change == 'configuration':
        return stage, toy_config(data_file, hls={'clock_period': 3.0}), upstream
    if change == 'settings':  # a caller runs it without predict()
        from lpsubnet.pipeline import StageOptions

        stage = dataclasses.replace(stage, options=('second_check',))
        return stage, config, upstream, StageOptions(second_check=False)
    if change == 'seed':
        return stage, toy_config(data_file, seed=7), upstream
    if change == 'tools':  # the same g++ found elsewhere on PATH
        gxx_elsewhere(monkeypatch, data_file.parent)
    elif change == 'tools (lpsubnet)':
        other_version(monkeypatch, 'lpsubnet')
    elif change == 'upstream':
        upstream = {'train': {**upstream['train'], 'key': 'other'}}
    elif change == 'upstream (its outputs)':
        upstream = {'train': {**upstream['train'], 'outputs': 'other'}}
    return stage, config, upstream


STAGE_CHANGES = [
    'configuration',
    'settings',
    'seed',
    'tools',
    'tools (lpsubnet)',
    'upstream',
    'upstream (its outputs)',
]


@pytest.mark.parametrize('change', STAGE_CHANGES)
def test_stage_key_misses_when_an_input_changes(data_file, monkeypatch, change):
    from lpsubnet.pipeline import stage_key

    stage, config, upstream = TOY[2], toy_config(data_file), {'train': {'key': 'k', 'outputs': 'o'}}
    stage = dataclasses.replace(stage, options=('second_check',))  # it reads one option, at its default
    before = stage_key(stage, config, upstream)
    after = stage_key(*changed_stage_input(change, stage, config, upstream, monkeypatch, data_file))
    part = change.split(' (')[0]
    assert after.digest != before.digest and after.parts[part] != before.parts[part]


def test_stage_key_misses_when_a_named_input_file_changes(data_file):
    """The data stage's key holds the content of the file data.path names."""
    from lpsubnet.pipeline import stage_key

    before = stage_key(TOY[0], toy_config(data_file), {})
    data_file.write_bytes(b'other data')
    after = stage_key(TOY[0], toy_config(data_file), {})
    assert after.digest != before.digest and after.parts['input files'] != before.parts['input files']
    assert set(STAGE_CHANGES_COVER) == set(after.parts)


STAGE_CHANGES_COVER = {c.split(' (')[0] for c in STAGE_CHANGES} | {'input files'}


def test_resume_redoes_what_a_changed_output_input_or_tool_touches(data_file, tmp_path, monkeypatch):
    """A run resumed after a stage's output was edited (as a weight file in the hls
    stage's project), after its input file changed, or after a tool changed redoes that
    stage and the ones after it, and nothing else; unchanged, it redoes nothing."""
    run_dir = tmp_path / 'run'
    config = toy_config(data_file)
    RAN.clear()
    records_of(config, run_dir)
    assert RAN == ['data', 'train', 'check']
    for change, redone in [
        (lambda: None, []),
        (lambda: (run_dir / 'train' / 'train.txt').write_text('edited'), ['train', 'check']),
        (lambda: (run_dir / 'check' / 'extra.txt').write_text('left here'), ['check']),
        (lambda: data_file.write_bytes(b'new data'), ['data', 'train', 'check']),
        (lambda: other_version(monkeypatch, 'keras'), ['train', 'check']),
    ]:
        change()
        RAN.clear()
        records = records_of(config, run_dir)
        assert RAN == redone, change
        assert [name for name, record in records.items() if not record['cached']] == redone
    assert (run_dir / 'check' / 'check.txt').read_text() == 'datatraincheck'
