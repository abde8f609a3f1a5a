import os
import shutil
import signal
from pathlib import Path

import pytest

from fpga_tests import fuzz_seed as _fuzz_seed

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

# Under pytest-xdist every worker is its own process: share the cores between them
# instead of each TensorFlow taking all of them (TensorFlow reads these at import).
_workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _workers > 1:
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault('TF_NUM_INTRAOP_THREADS', _threads)
    os.environ.setdefault('TF_NUM_INTEROP_THREADS', _threads)


# --- the fuzz seed (fpga_tests/fuzz_seed.py): fresh per run, printed, one for all workers ---


def pytest_configure(config):
    config.stash[_fuzz_seed.KEY] = _fuzz_seed.session_seed(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist, on the controller: every worker draws with the seed the controller prints."""
    node.workerinput[_fuzz_seed.WORKER_INPUT] = node.config.stash[_fuzz_seed.KEY]


def pytest_report_header(config):
    return _fuzz_seed.describe(config.stash[_fuzz_seed.KEY])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not hasattr(config, 'workerinput'):
        terminalreporter.write_line(_fuzz_seed.describe(config.stash[_fuzz_seed.KEY]))


@pytest.fixture(scope='session')
def fuzz_seed(pytestconfig) -> int:
    return pytestconfig.stash[_fuzz_seed.KEY]


@pytest.fixture
def stub_vitis_run(tmp_path, monkeypatch):
    """A stub ``vitis-run`` first on PATH (fixtures/vendor: it records its arguments and
    puts the fixture reports where Vitis HLS writes them); returns its directory."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name in ('vitis-run', 'hls.app', 'myproject_csynth.xml', 'myproject_cosim.rpt'):
        shutil.copy(Path(__file__).parent / 'fixtures' / 'vendor' / name, bin_dir / name)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    return bin_dir


@pytest.fixture
def interrupts_installed():
    """lpsubnet's SIGINT/SIGTERM handlers installed in this process (as the CLI does), and
    the handlers, the pending redelivery and the recorded stop put back afterwards."""
    from lpsubnet import interrupts

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    interrupts.install()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    interrupts._requested = None
    for sig, handler in before.items():
        signal.signal(sig, handler)
