"""Bad input, table-driven: every row runs the CLI and checks the exit code and the message.

Rows complement test_hls_bad_input.py and test_cli.py (which cover the API-level
cases and a few CLI ones). Every row also checks that no traceback is printed and
that nothing was written where the output would have gone. The CLI runs in process
(fpga_tests.cli_helpers.cli), so every row is in the default suite.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from qkeras import QActivation, QDense, quantized_bits, quantized_relu

from fpga_tests.cli_helpers import cli
from fpga_tests.hls_models import jet_mlp, wq


def _q_mlp(name, kernel=None, extra=None, input_q=True):
    inp = keras.Input((4,), name='x')
    h = QActivation(quantized_bits(8, 2, alpha=1), name='input_q')(inp) if input_q else inp
    h = QDense(
        3, kernel_quantizer=kernel or wq(4), bias_quantizer=wq(4), activation=quantized_relu(6, 2), name='hidden'
    )(h)
    if extra is not None:
        h = extra(h)
    out = QDense(2, kernel_quantizer=wq(4), bias_quantizer=wq(4), name='out')(h)
    return keras.Model(inp, out, name=name)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('inputs')
    jet_mlp(4).save(d / 'mlp.keras')
    data = (d / 'mlp.keras').read_bytes()
    (d / 'truncated.keras').write_bytes(data[: len(data) // 3])
    (d / 'text.keras').write_text('not a model\n')
    _q_mlp('norm', extra=keras.layers.LayerNormalization(name='my_norm')).save(d / 'norm.keras')
    _q_mlp('float_act', extra=keras.layers.Activation('relu', name='float_relu')).save(d / 'float_act.keras')
    _q_mlp('wide', kernel=quantized_bits(32, 2, alpha=1)).save(d / 'wide.keras')
    _q_mlp('noq', input_q=False).save(d / 'noq.keras')
    # float model with a layer the pruner cannot see through
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation='relu', name='conv')(inp)
    h = keras.layers.LayerNormalization(name='ln')(h)
    out = keras.layers.Dense(10, activation='softmax')(keras.layers.Flatten()(h))
    keras.Model(inp, out).save(d / 'float_ln.keras')
    # an output whose integer bits overflow the RTL's 32-bit simulator port
    inp = keras.Input((16,))
    out = QDense(3, kernel_quantizer=quantized_bits(14, 4, alpha=1), bias_quantizer=quantized_bits(14, 4, alpha=1))(inp)
    m = keras.Model(inp, out, name='wide_out')
    m.set_weights([np.full((16, 3), 11.3, 'float32'), np.full(3, -7.1, 'float32')])
    m.save(d / 'wide_out.keras')
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, 16))
    np.save(d / 'x_shape.npy', x[:, :7])
    np.save(d / 'x_nan.npy', np.where(x > 0.5, np.nan, x))
    np.save(d / 'x_empty.npy', x[:0])
    np.save(d / 'x_str.npy', np.array([['a'] * 16]))
    np.save(d / 'x_float16.npy', x.astype(np.float16))  # a valid dtype: accepted
    (d / 'x_text.npy').write_text('1,2,3\n')
    np.savez(d / 'x_two.npz', a=x, b=x)
    xi = rng.uniform(0, 1, (60, 16)).astype('float32')
    yi = rng.integers(0, 5, 60)
    np.savez(d / 'd_nan.npz', x_train=np.where(xi > 0.9, np.nan, xi), y_train=yi)
    np.savez(d / 'd_empty.npz', x_train=xi[:0], y_train=yi[:0])
    np.savez(d / 'd_str.npz', x_train=np.full((60, 16), 'a'), y_train=yi)
    np.savez(d / 'd_nokeys.npz', features=xi)
    np.savez(d / 'd_ylen.npz', x_train=xi, y_train=yi[:50])
    np.savez(d / 'd_shape.npz', x_train=xi[:, :5], y_train=yi)
    np.savez(d / 'd_ok.npz', x_train=xi, y_train=yi)
    np.save(d / 'd_single.npy', xi)
    np.savez(d / 'd_img.npz', x_train=rng.uniform(0, 1, (300, 8, 8, 1)).astype('float32'), y_train=np.arange(300) % 10)
    np.savez(
        d / 'd_img_few.npz', x_train=rng.uniform(0, 1, (30, 8, 8, 1)).astype('float32'), y_train=np.arange(30) % 10
    )
    for name, cfg in {
        'c_unknown_nested.yaml': {'hls': {'reuse': 2}},
        'c_type.yaml': {'model': {'epochs': 'ten'}},
        'c_enabled.yaml': {'rtl': {'enabled': 'maybe'}},
        'c_bits.yaml': {'compress': {'weight_bits': 17}},
        'c_negative.yaml': {'hls': {'clock_period': -1}},
        'c_npz_nopath.yaml': {'data': {'dataset': 'npz'}},
        'c_npz_missing.yaml': {'data': {'dataset': 'npz', 'path': str(d / 'nope.npz')}},
    }.items():
        (d / name).write_text(yaml.safe_dump(cfg))
    (d / 'c_invalid.yaml').write_text('hls: [1,\n')
    (d / 'c_list.yaml').write_text('- data\n- model\n')
    (d / 'a_file').write_text('I am a file\n')
    return d


# id -> (arguments, exit code, substrings of stderr). {d}: the inputs directory,
# {out}: a fresh output path that must not exist afterwards.
ROWS = {
    # model files
    'hls-truncated-model': (
        ['hls', '{d}/truncated.keras', '--out', '{out}'],
        2,
        ['truncated.keras', 'is not a Keras model'],
    ),
    'hls-text-model': (['hls', '{d}/text.keras', '--out', '{out}'], 2, ['text.keras is not a Keras model']),
    'prune-missing-model': (
        ['prune', '{d}/nope.keras', '--data', '{d}/d_ok.npz', '--out', '{out}'],
        2,
        ['nope.keras does not exist'],
    ),
    'rtl-truncated-model': (
        ['rtl', '{d}/truncated.keras', '--out', '{out}'],
        2,
        ['truncated.keras', 'is not a Keras model'],
    ),
    # unsupported layers / activations
    'hls-unsupported-layer': (
        ['hls', '{d}/norm.keras', '--out', '{out}'],
        2,
        ["layer 'my_norm' (LayerNormalization) is not supported"],
    ),
    'prune-unsupported-layer': (
        ['prune', '{d}/float_ln.keras', '--data', '{d}/d_img.npz', '--out', '{out}'],
        2,
        ["layer 'ln' (LayerNormalization)"],
    ),
    'hls-float-activation-layer': (
        ['hls', '{d}/float_act.keras', '--out', '{out}'],
        2,
        ["'float_relu'", 'quantized_relu'],
    ),
    # sparsity and bit widths
    'prune-sparsity-nan': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_ok.npz', '--out', '{out}', '--sparsity', 'nan'],
        2,
        ['sparsity=nan: should be a number >= 0 and < 1'],
    ),
    'prune-sparsity-text': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_ok.npz', '--out', '{out}', '--sparsity', 'half'],
        2,
        ["'--sparsity'"],
    ),
    'prune-abits-17': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_ok.npz', '--out', '{out}', '--abits', '17'],
        2,
        ["'--abits'", '2<=x<=16'],
    ),
    'hls-quantizer-32-bits': (
        ['hls', '{d}/wide.keras', '--out', '{out}'],
        2,
        ["layer 'hidden' (QDense) kernel_quantizer: 32 bits is more than 24"],
    ),
    'hls-input-precision-80-bits': (
        ['hls', '{d}/noq.keras', '--out', '{out}', '--input-precision', 'ap_fixed<80,10>'],
        2,
        ['width 80 outside 1..64'],
    ),
    'hls-input-precision-30-bits': (
        ['hls', '{d}/noq.keras', '--out', '{out}', '--input-precision', 'ap_fixed<30,10>'],
        2,
        ['wider than 24 bits'],
    ),
    'hls-default-precision-garbage': (
        ['hls', '{d}/mlp.keras', '--out', '{out}', '--default-precision', 'float32'],
        2,
        ["cannot read fixed-point type 'float32'"],
    ),
    'rtl-output-port-over-32-bits': (
        ['rtl', '{d}/wide_out.keras', '--out', '{out}'],
        2,
        ["output port 'model_out'", 'at most 32 bits'],
    ),
    # data for prune
    'prune-data-too-few-for-validation': (
        ['prune', '{d}/float_ln.keras', '--data', '{d}/d_img_few.npz', '--out', '{out}'],
        2,
        ['cannot draw a stratified validation split'],
    ),
    'prune-data-nan': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_nan.npz', '--out', '{out}'],
        2,
        ['d_nan.npz', 'NaN'],
    ),
    'prune-data-empty': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_empty.npz', '--out', '{out}'],
        2,
        ['x_train is empty'],
    ),
    'prune-data-strings': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_str.npz', '--out', '{out}'],
        2,
        ['d_str.npz', 'dtype <U1'],
    ),
    'prune-data-missing-keys': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_nokeys.npz', '--out', '{out}'],
        2,
        ["and lacks ['x_train', 'y_train']"],
    ),
    'prune-data-length-mismatch': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_ylen.npz', '--out', '{out}'],
        2,
        ['60 samples but y_train has 50'],
    ),
    'prune-data-wrong-shape': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_shape.npz', '--out', '{out}'],
        2,
        ['shape (5,), the model expects (16,)'],
    ),
    'prune-data-npy-not-npz': (
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_single.npy', '--out', '{out}'],
        2,
        ['d_single.npy is a single array'],
    ),
    # test inputs for hls
    'hls-inputs-wrong-shape': (
        ['hls', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_shape.npy'],
        2,
        ['shape (7,), the model expects (16,)'],
    ),
    'rtl-inputs-wrong-shape': (
        ['rtl', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_shape.npy'],
        2,
        ['x_shape.npy', 'shape (7,), the model expects (16,)'],
    ),
    'rtl-inputs-nan': (
        ['rtl', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_nan.npy'],
        2,
        ['x_nan.npy', 'NaN or infinite'],
    ),
    'hls-inputs-nan': (['hls', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_nan.npy'], 2, ['NaN or infinite']),
    'hls-inputs-empty': (
        ['hls', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_empty.npy'],
        2,
        ['holds no samples'],
    ),
    'hls-inputs-strings': (
        ['hls', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_str.npy'],
        2,
        ['dtype <U1 is not numeric'],
    ),
    'hls-inputs-not-numpy': (
        ['hls', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_text.npy'],
        2,
        ['x_text.npy is not a .npy/.npz array file'],
    ),
    'hls-inputs-ambiguous-npz': (
        ['hls', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_two.npz'],
        2,
        ["holds arrays ['a', 'b']"],
    ),
    # run configuration
    'run-config-unknown-nested-key': (
        ['run', '{d}/c_unknown_nested.yaml', '--out', '{out}'],
        2,
        ["unknown config key 'hls.reuse'", 'reuse_factor'],
    ),
    'run-config-wrong-type': (
        ['run', '{d}/c_type.yaml', '--out', '{out}'],
        2,
        ["config key 'model.epochs'", 'valid integer'],
    ),
    'run-config-bad-literal': (
        ['run', '{d}/c_enabled.yaml', '--out', '{out}'],
        2,
        ["config key 'rtl.enabled'", "'auto', True or False"],
    ),
    'run-config-bits-out-of-range': (
        ['run', '{d}/c_bits.yaml', '--out', '{out}'],
        2,
        ["config key 'compress.weight_bits'", 'less than or equal to 16'],
    ),
    'run-config-negative-clock': (
        ['run', '{d}/c_negative.yaml', '--out', '{out}'],
        2,
        ["config key 'hls.clock_period'", 'greater than 0'],
    ),
    'run-config-invalid-yaml': (
        ['run', '{d}/c_invalid.yaml', '--out', '{out}'],
        2,
        ['c_invalid.yaml is not valid YAML'],
    ),
    'run-config-not-a-mapping': (['run', '{d}/c_list.yaml', '--out', '{out}'], 2, ['must hold a mapping of sections']),
    'run-config-missing-file': (
        ['run', '{d}/nope.yaml', '--out', '{out}'],
        2,
        ['config file', 'nope.yaml does not exist'],
    ),
    'run-npz-without-path': (['run', '{d}/c_npz_nopath.yaml', '--out', '{out}'], 2, ["'data.path' is required"]),
    'run-force-and-resume': (
        ['run', '--force', '--resume', '--out', '{out}'],
        2,
        ['--force and --resume exclude each other'],
    ),
    'run-resume-nothing': (['run', '--resume', '--out', '{out}'], 2, ['nothing to resume']),
    # unwritable output locations (tests run as root: a path under a file, and /proc)
    'hls-out-under-a-file': (
        ['hls', '{d}/mlp.keras', '--out', '{d}/a_file/project'],
        2,
        ['cannot write into', 'a_file'],
    ),
    'run-out-under-a-file': (['run', '--out', '{d}/a_file/run'], 2, ['cannot create run directory', 'a_file']),
    'hls-out-in-proc': (
        ['hls', '{d}/mlp.keras', '--out', '/proc/lpsubnet-test/project'],
        2,
        ['cannot write into /proc'],
    ),
}

# A run whose data stage fails keeps its (resumable) run directory: config.yaml and stages/.
CREATES_RUN_DIR = {'run-npz-without-path'}


def run_cli(args, env=None):
    return cli(*args, env=env)


@pytest.mark.parametrize('row', list(ROWS))
def test_bad_input_row(row, files, tmp_path):
    args, code, messages = ROWS[row]
    out = tmp_path / 'out'
    args = [a.format(d=files, out=out) for a in args]
    before = _digest(files)
    proc = run_cli(args)
    assert proc.returncode == code, proc.stderr[-2000:]
    for message in messages:
        assert message in proc.stderr, (message, proc.stderr[-2000:])
    assert 'Traceback' not in proc.stderr
    if row in CREATES_RUN_DIR:
        assert sorted(p.name for p in out.iterdir()) == ['config.yaml', 'stages']
        assert list((out / 'stages').iterdir()) == []
    else:
        assert not out.exists()
    assert not (files / 'a_file').is_dir()
    assert _digest(files) == before  # the user's files are untouched


def _digest(root: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir()) if p.is_file()}


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.mark.parametrize(
    'command',
    [
        ['prune', '{d}/mlp.keras', '--data', '{d}/d_ok.npz', '--out', '{out}'],
        ['rtl', '{d}/mlp.keras', '--out', '{out}'],
        ['hls', '{d}/mlp.keras', '--out', '{out}', '--inputs', '{d}/x_float16.npy'],
    ],
    ids=['prune', 'rtl', 'hls'],
)
def test_existing_output_directory_is_refused_and_untouched(command, files, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'results.txt').write_text('a week of work\n')
    before = _tree(out)
    proc = run_cli([a.format(d=files, out=out) for a in command])
    assert proc.returncode == 2 and 'exists and is not empty' in proc.stderr and '--force' in proc.stderr
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']  # no temporary directory left


def test_verilator_host_tools_missing(files, tmp_path):
    """`lpsubnet rtl` with nothing but python on PATH: exit 4 naming the missing tool."""
    env = {**os.environ, 'PATH': str(Path(sys.executable).parent)}
    proc = run_cli(['rtl', str(files / 'mlp.keras'), '--out', str(tmp_path / 'rtl')], env=env)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert 'not found on PATH' in proc.stderr and (
        'make' in proc.stderr or 'perl' in proc.stderr or 'g++' in proc.stderr
    )
    assert 'Traceback' not in proc.stderr


def test_vendor_tool_missing_for_synth(files, tmp_path):
    """`lpsubnet synth --steps cosim` on a Vivado project without vivado_hls: exit 4 with the command to run."""
    project = tmp_path / 'prj'
    proc = run_cli(['hls', str(files / 'mlp.keras'), '--out', str(project), '--backend', 'Vivado'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {**os.environ, 'PATH': os.pathsep.join(p for p in os.environ['PATH'].split(os.pathsep) if p)}
    proc = run_cli(['synth', str(project), '--steps', 'cosim'], env=env)
    assert proc.returncode == 4
    assert 'vivado_hls not found on PATH' in proc.stderr and f'lpsubnet synth {project} --steps cosim' in proc.stderr


# --- disk full: simulated in-process ------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'Makefile')


def test_disk_full_while_writing_a_project_leaves_nothing(files, tmp_path, monkeypatch):
    """write_text_atomic fails with ENOSPC half-way through a project: clear error, exit 1,
    no project, no temporary directory, and an existing project (--force) survives."""
    from click.testing import CliRunner

    import hls_backend.hls.convert
    from lpsubnet.cli import main

    monkeypatch.setattr(hls_backend.hls.convert, 'write_text_atomic', _enospc)
    out = tmp_path / 'prj'
    result = CliRunner().invoke(main, ['hls', str(files / 'mlp.keras'), '--out', str(out)])
    assert result.exit_code == 1, result.output
    assert 'error: Makefile: No space left on device' in result.output
    assert not isinstance(result.exception, OSError) or result.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # with --force, the old project stays as it was
    out.mkdir()
    (out / 'old.txt').write_text('old project\n')
    result = CliRunner().invoke(main, ['hls', str(files / 'mlp.keras'), '--out', str(out), '--force'])
    assert result.exit_code == 1 and 'No space left on device' in result.output
    assert _tree(out) == {'old.txt': b'old project\n'}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['prj']


def test_disk_full_on_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    """os.replace failing (ENOSPC / EIO) in write_text_atomic: target untouched, temp file removed."""
    from hls_backend.core import files as files_mod

    target = tmp_path / 'metrics.json'
    target.write_text('{"old": true}\n')

    def failing_replace(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(files_mod.os, 'replace', failing_replace)
    with pytest.raises(OSError, match='No space left'):
        files_mod.write_text_atomic(target, '{"new": true}\n')
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['metrics.json']


# --- external builds that fail: exit 5, the log named --------------------------------


def _stub(directory: Path, name: str, script: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text('#!/bin/sh\n' + script)
    path.chmod(0o755)
    return path


def test_a_failed_gpp_build_exits_5_naming_its_log(files, tmp_path):
    """A g++ first on PATH that fails (a stub): `lpsubnet csim` exits 5 and names the build
    log, which holds the compiler's own message."""
    project = tmp_path / 'prj'
    assert run_cli(['hls', str(files / 'mlp.keras'), '--out', str(project)]).returncode == 0
    stub = _stub(tmp_path / 'bin', 'g++', 'echo "stub g++: no compiling today" >&2\nexit 1\n')
    proc = run_cli(
        ['csim', str(project), '--no-second-check'], env={'PATH': f'{stub.parent}{os.pathsep}{os.environ["PATH"]}'}
    )
    assert proc.returncode == 5, proc.stderr[-2000:]
    log = project / 'csim_build.log'
    assert f'error: g++ failed (exit 1) building the C simulation; see {log}' in proc.stderr
    assert 'stub g++: no compiling today' in log.read_text()
    assert 'Traceback' not in proc.stderr and not (project / 'csim.exe').exists()


def test_a_failed_verilator_build_exits_5_naming_its_log(files, tmp_path):
    """A Verilator installation (LPSUBNET_VERILATOR_ROOT) whose verilator reports a good
    version and then fails every build: `lpsubnet rtl` exits 5 and names the build log."""
    root = tmp_path / 'verilator'
    _stub(
        root / 'bin',
        'verilator',
        'if [ "$1" = "--version" ]; then echo "Verilator 5.048 2026-01-01"; exit 0; fi\n'
        'echo "stub verilator: broken installation" >&2\nexit 1\n',
    )
    (root / 'include').mkdir()
    (root / 'include' / 'verilated.mk').write_text('')
    out = tmp_path / 'rtl'
    proc = run_cli(['rtl', str(files / 'mlp.keras'), '--out', str(out)], env={'LPSUBNET_VERILATOR_ROOT': str(root)})
    assert proc.returncode == 5, proc.stderr[-2000:]
    log = out / 'sim' / 'build.log'
    assert 'error: Verilator build of the RTL failed' in proc.stderr and f'see {log}' in proc.stderr
    assert 'stub verilator: broken installation' in log.read_text()
    assert 'Traceback' not in proc.stderr


# --- a read-only directory, as a user who cannot write there ----------------------------


def _cli_as(uid: int, gid: int, calls: dict[str, list[str]]) -> dict:
    """Run CLI calls in a child forked from this process that has dropped root for
    ``uid``/``gid``; {name: [exit code, stderr]}. A fork, not a new interpreter: the
    interpreter lives under /root, which the user nobody cannot read, so everything the
    calls import must be imported here first (the caller runs them once as root)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            results = {name: (lambda p: [p.returncode, p.stderr])(cli(*args)) for name, args in calls.items()}
        except BaseException as exc:  # reported to the parent, which fails the test
            results = {'child error': repr(exc)}
        with os.fdopen(write, 'w') as handle:
            handle.write(json.dumps(results))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        text = handle.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def test_a_read_only_directory_as_an_unprivileged_user(tmp_path):
    """As the user nobody (root writes anywhere, so the tests' own user never sees it): an
    existing run directory that is read-only gives exit 1 naming the file the run could
    not write, and nothing is written; a new --out inside a read-only directory is bad
    input (exit 2: it cannot be created)."""
    import pwd
    import tempfile

    nobody = pwd.getpwnam('nobody') if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    # The same calls as root first, where they fail the same way for other reasons (a
    # directory in the way, a file in the path): the child finds every module imported.
    warm = tmp_path / 'warm'
    (warm / 'run' / 'stages').mkdir(parents=True)
    (warm / 'run' / 'config.yaml').mkdir()
    (warm / 'a_file').write_text('')
    assert run_cli(['run', '--resume', '--out', str(warm / 'run')]).returncode == 1
    assert run_cli(['run', '--out', str(warm / 'a_file' / 'run')]).returncode == 2
    # pytest's tmp_path is private to root: a directory nobody can read, not write.
    shared = Path(tempfile.mkdtemp(prefix='lpsubnet-ro-'))
    try:
        shared.chmod(0o755)
        run = shared / 'run'
        (run / 'stages').mkdir(parents=True)
        before = sorted(str(p.relative_to(shared)) for p in shared.rglob('*'))
        results = _cli_as(
            nobody.pw_uid,
            nobody.pw_gid,
            {
                'resume-read-only-run': ['run', '--resume', '--out', str(run)],
                'new-run-in-read-only-dir': ['run', '--out', str(shared / 'new' / 'run')],
            },
        )
        assert 'child error' not in results, results
        code, stderr = results['resume-read-only-run']
        assert code == 1, stderr
        assert stderr.strip() == f'error: {run / "config.yaml"}: Permission denied'
        code, stderr = results['new-run-in-read-only-dir']
        assert code == 2, stderr
        assert f'error: cannot create run directory {shared / "new" / "run"}: Permission denied' in stderr
        assert sorted(str(p.relative_to(shared)) for p in shared.rglob('*')) == before  # nothing written
    finally:
        shutil.rmtree(shared, ignore_errors=True)
