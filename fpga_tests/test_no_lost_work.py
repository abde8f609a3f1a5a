"""No lost work: interrupts leave a resumable run, runs do not interfere, inputs stay untouched.

- SIGTERM / SIGINT sent to `lpsubnet run` during a stage: the process stops, the stage
  in progress leaves no temporary directory (``.<stage>.*.partial``) or file
  (``.<name>.*.tmp``), earlier stages' outputs are byte-for-byte intact, and
  ``--resume`` completes the run with the earlier stages cached.
- Two `lpsubnet hls` processes writing different directories at once both finish
  and produce identical, self-consistent projects.
- The user's model, data and configuration files are never modified.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from fpga_tests.cli_helpers import CLI, cli
from fpga_tests.hls_models import jet_mlp

TINY = {
    'seed': 1,
    'model': {'epochs': 3},
    'compress': {'epochs': 3, 'qat_epochs': 1, 'weight_bits': 6, 'activation_bits': 8},
    'rtl': {'enabled': False},
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob('*')) if p.is_file()}


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob('*') if p.name.endswith(('.partial', '.tmp', '.old'))]


def interrupt_during(args, stage_title: str, sig: int, timeout: float = 400):
    """Start `lpsubnet <args>`, send ``sig`` once ``stage_title`` has started; return (rc, stderr)."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def reader():
        for line in proc.stderr:
            lines.append(line)
            if stage_title in line and line.rstrip().endswith('...'):
                started.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert started.wait(timeout), ''.join(lines)[-3000:]
    time.sleep(1.5)  # well inside the stage
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    thread.join(timeout=10)
    return rc, ''.join(lines)


def _interrupt_and_resume(tmp_path, sig, stage='compress'):
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump(TINY))
    config_hash = sha(config)
    run = tmp_path / 'run'
    rc, err = interrupt_during(['run', str(config), '--out', str(run)], f'{stage}: ', sig)
    assert rc == 128 + sig, err[-3000:]  # 143 after SIGTERM, 130 after SIGINT (Ctrl-C)
    assert err.splitlines()[-1].startswith(f'interrupted by {signal.Signals(sig).name}: stopped'), err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
    assert leftovers(tmp_path) == []
    assert not (run / stage).exists() and not (run / 'stages' / f'{stage}.json').exists()
    finished = ['data', 'baseline'] if stage == 'compress' else ['data', 'baseline', 'compress', 'hls']
    for name in finished:
        assert (run / 'stages' / f'{name}.json').exists()
    before = {name: tree_hashes(run / name) for name in finished}
    records = {name: sha(run / 'stages' / f'{name}.json') for name in finished}

    proc = cli('run', config, '--out', run, '--resume')  # in process: only the interrupt needs its own
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in finished:
        assert f'{name}: ' in proc.stderr and any(
            line.endswith(': cached') and line.startswith(name) for line in proc.stderr.splitlines()
        )
        assert tree_hashes(run / name) == before[name]  # earlier outputs intact, not redone
        assert sha(run / 'stages' / f'{name}.json') == records[name]
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['csim']['exact'] is True
    assert leftovers(tmp_path) == []
    assert sha(config) == config_hash  # the user's config is untouched


def test_sigterm_during_compress_then_resume(tmp_path):
    _interrupt_and_resume(tmp_path, signal.SIGTERM, 'compress')


@pytest.mark.slow
def test_sigint_during_compress_then_resume(tmp_path):
    _interrupt_and_resume(tmp_path, signal.SIGINT, 'compress')


@pytest.mark.slow
def test_sigterm_during_csim_then_resume(tmp_path):
    _interrupt_and_resume(tmp_path, signal.SIGTERM, 'csim')


def test_two_hls_runs_at_once_do_not_interfere(tmp_path):
    model = tmp_path / 'mlp.keras'
    jet_mlp(4).save(model)
    x = np.random.default_rng(0).normal(0, 1.5, (50, 16))
    np.save(tmp_path / 'x.npy', x)
    inputs = {p.name: sha(p) for p in (model, tmp_path / 'x.npy')}
    procs = [
        subprocess.Popen(
            [*CLI, 'hls', str(model), '--out', str(tmp_path / name), '--inputs', str(tmp_path / 'x.npy'), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, extra in (('a', []), ('b', ['--io-type', 'io_stream']))
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    for name, io_type in (('a', 'io_parallel'), ('b', 'io_stream')):
        info = json.loads((tmp_path / name / 'lpsubnet_project.json').read_text())
        assert info['project_dir'] == str((tmp_path / name).resolve())
        assert info['options']['io_type'] == io_type
        assert f'OutputDir: {tmp_path / name}' in (tmp_path / name / 'hls4ml_config.yml').read_text()
    # same model, same inputs: the same test vectors in both projects
    for f in ('tb_input_features.dat', 'tb_output_predictions.dat'):
        assert sha(tmp_path / 'a' / 'tb_data' / f) == sha(tmp_path / 'b' / 'tb_data' / f)
    assert {p.name: sha(p) for p in (model, tmp_path / 'x.npy')} == inputs
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_two_runs_at_once_do_not_interfere(tmp_path):
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump(TINY))
    procs = [
        subprocess.Popen(
            [*CLI, 'run', str(config), '--out', str(tmp_path / name), '--stop-after', 'hls'],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ('r1', 'r2')
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
    # same seed, same config: the same data split and the same test vectors
    assert sha(tmp_path / 'r1' / 'data' / 'dataset.npz') == sha(tmp_path / 'r2' / 'data' / 'dataset.npz')
    for run in ('r1', 'r2'):
        info = json.loads((tmp_path / run / 'hls' / 'project' / 'lpsubnet_project.json').read_text())
        assert info['project_dir'] == str((tmp_path / run / 'hls' / 'project').resolve())
    assert leftovers(tmp_path) == []
