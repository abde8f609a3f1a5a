"""lpsubnet as a user installs it: from the wheel, not from this checkout.

The templates live in the top-level ``templates/`` folder and must ship inside the
wheel as package data (pyproject.toml maps them); an install that lacks them cannot
write a project. The fast test reads the wheel's file list; the slow one installs
the wheel into a new virtual environment and runs the commands from a directory
outside the checkout, so nothing can be imported from here by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tiny_mlp():
    import keras
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    keras.utils.set_random_seed(3)
    q = {'kernel_quantizer': quantized_bits(4, 0, alpha=1), 'bias_quantizer': quantized_bits(4, 0, alpha=1)}
    inp = keras.Input((8,), name='x')
    h = QActivation(quantized_bits(6, 2, alpha=1), name='q_in')(inp)
    h = QDense(4, activation=quantized_relu(6, 2), name='hidden', **q)(h)
    return keras.Model(inp, QDense(3, name='out', **q)(h), name='tiny')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('wheel')
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--quiet', '-w', str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob('lpsubnet-*.whl')
    return path


def test_wheel_holds_every_template(wheel):
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    templates = sorted((ROOT / 'templates').rglob('*.j2'))
    assert templates, 'no templates found in the checkout'
    packages = {
        'hls': 'hls_backend/hls/template_files',
        'rtl': 'hls_backend/rtl/template_files',
        'report': 'lpsubnet/template_files',
    }
    for template in templates:
        folder = template.parent.relative_to(ROOT / 'templates').as_posix()
        assert f'{packages[folder]}/{template.name}' in names, f'{template} is not in the wheel'
    assert not any(name.startswith('templates/') for name in names), 'a top-level templates package'
    assert 'lpsubnet-0.1.0.dist-info/entry_points.txt' in names
    entry_points = archive.read('lpsubnet-0.1.0.dist-info/entry_points.txt').decode()
    assert 'lpsubnet = lpsubnet.cli:main' in entry_points


@pytest.mark.slow
def test_installed_wheel_writes_and_simulates_projects(wheel, tmp_path):
    """pip install of the wheel (with its pinned dependencies) into a fresh venv, then
    `lpsubnet hls` + `lpsubnet csim` and `lpsubnet rtl` on a small model: bit-exact."""
    env_dir = tmp_path / 'venv'
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / 'bin' / 'python'
    install = subprocess.run(
        [str(python), '-m', 'pip', 'install', '--quiet', str(wheel)], capture_output=True, text=True, check=False
    )
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / 'user'
    work.mkdir()
    model = work / 'tiny.keras'
    tiny_mlp().save(model)
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONPATH': ''}

    def lpsubnet(*args):
        return subprocess.run(
            [str(env_dir / 'bin' / 'lpsubnet'), *map(str, args)], cwd=work, env=env, capture_output=True, text=True
        )

    where = subprocess.run(
        [str(python), '-c', 'import hls_backend, lpsubnet; print(hls_backend.__file__, lpsubnet.__file__)'],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(env_dir)) for path in where), where
    hls = lpsubnet('hls', model, '--out', 'prj')
    assert hls.returncode == 0, hls.stderr
    assert (work / 'prj' / 'myproject_test.cpp').exists() and (work / 'prj' / 'Makefile').exists()
    csim = lpsubnet('csim', 'prj')
    assert csim.returncode == 0, csim.stdout + csim.stderr
    assert 'csim: EXACT' in csim.stdout and 'hls4ml predict(): 100/100 samples bit-exact' in csim.stdout
    rtl = lpsubnet('rtl', model, '--out', 'rtl')
    assert rtl.returncode == 0, rtl.stdout + rtl.stderr
    assert 'rtl: EXACT' in rtl.stdout
