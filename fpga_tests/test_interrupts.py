"""Ctrl-C (SIGINT) and SIGTERM during a real build end every child process, keep nothing
half-written, and exit 130 / 143 with one line.

The case (issue 27): a SIGTERM to `lpsubnet rtl` during its Verilator build printed
"Aborted!" (exit 1) and left verilator_bin, make and cc1plus running. Each test starts
`lpsubnet` as a process, waits until the compilers of the build run below it, sends the
signal, and then looks for any process left below the test process: the test process
is a child subreaper meanwhile (fpga_tests/process_tree.py), so every process the
command orphaned, however deep, becomes its child and is found.

Default suite: the C simulation's two g++ builds (lpsubnet's testbench and hls4ml's
build_lib.sh, one in a worker thread) with SIGINT, and the RTL's Verilator build with
SIGTERM. Slow: the other signal for each, and a sweep (Ray workers) with SIGTERM.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from qkeras import QDense, quantized_bits, quantized_relu

from fpga_tests.cli_helpers import CLI
from fpga_tests.process_tree import adopting_orphans, leftovers, wait_for

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
COMPILERS = {'cc1plus', 'verilator_bin'}


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob('*') if p.is_file()
    }


def interrupt(
    args: list,
    sig: int,
    names: set[str],
    count: int = 1,
    timeout: float = 300,
    env: dict | None = None,
    settle: float = 0.0,
):
    """Run `lpsubnet ARGS`, send ``sig`` ``settle`` seconds after ``count`` of ``names`` run
    below it; returns (exit code, stdout, stderr, process names then, processes left over)."""
    with adopting_orphans() as before:
        proc = subprocess.Popen(
            [*CLI, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        try:
            tree = wait_for(proc.pid, names, timeout, count)
        except TimeoutError:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f'the build never started: {err[-3000:]}') from None
        time.sleep(settle)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err, sorted(tree.values()), leftovers(before)


def assert_stopped(rc: int, err: str, sig: int) -> None:
    assert rc == EXIT[sig], err[-3000:]
    assert err.splitlines()[-1] == (
        f'interrupted by {signal.Signals(sig).name}: stopped; child processes ended, partial outputs removed'
    )
    assert 'Traceback' not in err and 'Aborted!' not in err


def mlp(tmp_path: Path) -> Path:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,), name='x')
    q = {'kernel_quantizer': quantized_bits(6, 0, alpha=1), 'bias_quantizer': quantized_bits(6, 0, alpha=1)}
    h = QDense(8, activation=quantized_relu(8, 3), name='hidden', **q)(inp)
    out = QDense(4, name='out', **q)(h)
    model = keras.Model(inp, out, name='mlp')
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.9, 0.9, w.shape).astype('float32') for w in model.get_weights()])
    model.save(tmp_path / 'mlp.keras')
    return tmp_path / 'mlp.keras'


@pytest.fixture(scope='module')
def hls_project(tmp_path_factory):
    from hls_backend import write_project

    root = tmp_path_factory.mktemp('interrupt')
    write_project(mlp(root), root / 'project', n_default_samples=20)
    return root / 'project'


def _csim(hls_project, tmp_path, sig):
    import shutil

    from hls_backend import relink_project

    project = tmp_path / 'project'
    shutil.copytree(hls_project, project)
    relink_project(project)  # as csim does first: the copy's own paths in its config files
    before = tree_hashes(project)
    # Both g++ builds run (the testbench, and hls4ml's build_lib.sh in a worker thread).
    rc, _, err, at_signal, left = interrupt(['csim', project], sig, {'cc1plus'}, count=2)
    assert at_signal.count('cc1plus') == 2, at_signal
    assert_stopped(rc, err, sig)
    assert left == {}
    # Neither build was let finish after the signal, and the project is as it was: no
    # executable, object file, library, partial file or work directory.
    assert 'g++ build of project done' not in err and 'hls4ml compile() done' not in err
    assert tree_hashes(project) == before


def _rtl(tmp_path, sig):
    out = tmp_path / 'rtl'
    rc, _, err, at_signal, left = interrupt(
        ['rtl', mlp(tmp_path), '--out', out],
        sig,
        COMPILERS,
        env={'LPSUBNET_PROGRESS_SECONDS': '0'},
        settle=2.5,  # the build's phase is shown once a second
    )
    assert COMPILERS & set(at_signal), at_signal
    assert_stopped(rc, err, sig)
    assert left == {}
    # The build showed its phase while it ran (a line per update in a log).
    assert any(
        line.startswith('Verilator build of rtl (verilog, verilator ')
        and ('verilating the design' in line or 'compiling the generated C++' in line)
        for line in err.splitlines()
    ), err[-3000:]
    # The project was complete before the build; of the build nothing is left.
    assert (out / 'lpsubnet_rtl_project.json').is_file()
    assert not (out / 'sim' / 'obj_dir').exists()
    assert not list((out / 'sim').glob('*.so')) and not (out / 'lpsubnet_rtl.json').exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.partial')]


def test_sigint_during_the_csim_builds(hls_project, tmp_path):
    _csim(hls_project, tmp_path, signal.SIGINT)


def test_sigterm_during_the_verilator_build(tmp_path):
    _rtl(tmp_path, signal.SIGTERM)


@pytest.mark.slow
def test_sigterm_during_the_csim_builds(hls_project, tmp_path):
    _csim(hls_project, tmp_path, signal.SIGTERM)


@pytest.mark.slow
def test_sigint_during_the_verilator_build(tmp_path):
    _rtl(tmp_path, signal.SIGINT)


@pytest.mark.slow
def test_sigterm_during_a_sweep(tmp_path):
    """A local sweep (Ray workers running the trials' C simulation builds) stops on SIGTERM
    as on Ctrl-C: Ray Tune stops the trials, the sweep says how to resume and exits 143,
    and no Ray process or compiler is left."""
    import yaml

    from lpsubnet.datasets import load_digits_images

    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 1), name='image')
    h = keras.layers.Conv2D(4, 3, name='conv1')(inp)
    h = keras.layers.ReLU(name='relu1')(h)
    h = keras.layers.Flatten(name='flatten')(h)
    out = keras.layers.Dense(10, activation='softmax', name='classifier')(h)
    model = keras.Model(inp, out)
    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')
    x, y = load_digits_images()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / 'float.keras')
    config = tmp_path / 'sweep.yaml'
    config.write_text(
        yaml.safe_dump(
            {
                'seed': 3,
                'model': {'path': str(tmp_path / 'float.keras')},
                'compress': {'epochs': 2, 'qat_epochs': 1, 'weight_bits': 6, 'activation_bits': 8},
                'sweep': {'space': {'compress.sparsity': [0.25, 0.5]}, 'search': 'grid', 'reference': False},
            }
        )
    )
    sweep = tmp_path / 'sweep'
    start = time.monotonic()
    rc, out, err, at_signal, left = interrupt(
        ['sweep', config, '--out', sweep, '--max-concurrent', '1'],
        signal.SIGTERM,
        {'cc1plus'},
        timeout=900,
        env={'RAY_USAGE_STATS_ENABLED': '0'},
    )
    assert 'raylet' in at_signal, at_signal
    assert rc == 143, (time.monotonic() - start, out[-2000:], err[-3000:])
    assert f'stopped early; continue with: lpsubnet sweep {config} --out {sweep} --resume' in out
    assert 'Traceback' not in err and 'SIGTERM received' not in err
    assert left == {}
