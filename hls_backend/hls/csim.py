"""Vendor-free C simulation of a generated project, compared bit for bit.

Two independent paths through the same C++:
1. lpsubnet's testbench (``<project>_test.cpp``) built with g++ against the ap_types
   headers hls4ml ships, run on ``tb_data/tb_input_features.dat``;
2. hls4ml's own ``compile()`` / ``predict()`` (a shared library called from Python).
Both are compared exactly with ``tb_data/tb_output_predictions.dat``, the QKeras
model's outputs on the same inputs.

By default the two paths compile the firmware separately (lpsubnet's g++ flags and
hls4ml's ``build_lib.sh``), so a result that depends on compiler flags shows up as a
disagreement. ``shared_build=True`` compiles the firmware once, with hls4ml's script,
and links the testbench against that library: the same C++ through two harnesses at
about two thirds of the build time (the fuzz campaign uses it to check more models).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from ..core.progress import step
from ..core.project import read_project_info
from ..core.results import RouteResult, compare_exact
from ..errors import BuildError, ToolMissingError
from .convert import relink_project

CSIM_RESULT = 'lpsubnet_csim.json'


def _read_dat(path: Path) -> np.ndarray:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float64)


def find_compiler(cxx: str) -> str:
    compiler = shutil.which(cxx)
    if compiler is None:
        raise ToolMissingError(
            f'C++ compiler {cxx!r} not found on PATH; install g++ (Debian: apt-get install g++)', tool=cxx
        )
    return compiler


def _compiler_version(compiler: str) -> str:
    out = subprocess.run([compiler, '--version'], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else compiler


def build_testbench(
    project_dir: Path,
    project_name: str,
    cxx: str = 'g++',
    opt: str = '-O2',
    firmware_library: Path | None = None,
) -> tuple[Path, float]:
    """Compile the testbench and firmware into ``csim.exe``; return its path and build seconds.

    With ``firmware_library`` (a shared library hls4ml's ``compile()`` built from the
    same project) only the testbench is compiled, and linked against that library.
    """
    compiler = find_compiler(cxx)
    exe = project_dir / 'csim.exe'
    if firmware_library is None:
        firmware = [f'firmware/{project_name}.cpp']
    else:
        library = Path(firmware_library).resolve()
        firmware = [str(library), f'-Wl,-rpath,{library.parent}']
    cmd = [
        compiler,
        opt,
        '-std=c++14',
        '-Ifirmware/ap_types',
        '-Ifirmware',
        '-DWEIGHTS_DIR="firmware/weights"',
        f'{project_name}_test.cpp',
        *firmware,
        '-o',
        exe.name,
    ]
    log = project_dir / 'csim_build.log'
    start = time.perf_counter()
    with step(f'g++ build of {project_dir.name}'):
        proc = subprocess.run(cmd, cwd=project_dir, capture_output=True, text=True, check=False)
    log.write_text(' '.join(cmd) + '\n' + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BuildError(f'g++ failed (exit {proc.returncode}) building the C simulation; see {log}')
    return exe, time.perf_counter() - start


def run_testbench(project_dir: Path, exe: Path) -> tuple[np.ndarray, float]:
    results = project_dir / 'tb_data' / 'csim_results.log'
    start = time.perf_counter()
    proc = subprocess.run(
        [str(exe), 'tb_data/tb_input_features.dat', str(results.relative_to(project_dir))],
        cwd=project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BuildError(f'C simulation exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}')
    return _read_dat(results), seconds


def hls4ml_predict_check(project_dir: Path, x: np.ndarray, y: np.ndarray) -> tuple[RouteResult, Path]:
    """hls4ml's compile()/predict() on the same project, as a second path; returns the
    comparison and the shared library hls4ml built."""
    import hls4ml

    relink_project(project_dir)
    result = RouteResult(route='hls4ml_predict', tool=f'hls4ml {hls4ml.__version__}', project_dir=str(project_dir))
    linked = hls4ml.converters.link_existing_project(str(project_dir))
    start = time.perf_counter()
    with step('hls4ml compile()'):
        linked.compile()
    result.build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = np.asarray(linked.predict(np.ascontiguousarray(x, dtype=np.float64)), dtype=np.float64)
    result.run_seconds = time.perf_counter() - start
    return compare_exact(y, predicted.reshape(y.shape), result), Path(linked._top_function_lib._name)


def csim(
    project_dir: str | Path, cxx: str = 'g++', second_check: bool = True, shared_build: bool = False
) -> RouteResult:
    """Build and run the C simulation; compare every output bit with the QKeras model.

    ``second_check`` adds hls4ml's predict(); ``shared_build`` (with it) compiles the
    firmware once for both paths (see the module docstring).

    Writes ``lpsubnet_csim.json`` into the project and returns the result; the caller
    decides what a mismatch means (the CLI exits with MismatchError.exit_code).
    """
    if shared_build and not second_check:
        raise ValueError('shared_build links the testbench to the library of the second check; it needs second_check')
    project_dir = Path(project_dir).resolve()
    info = read_project_info(project_dir)
    name = info.options['project_name']
    result = RouteResult(route='csim', tool=_compiler_version(find_compiler(cxx)), project_dir=str(project_dir))
    x = _read_dat(project_dir / 'tb_data' / 'tb_input_features.dat')
    y = _read_dat(project_dir / 'tb_data' / 'tb_output_predictions.dat')
    library = None
    if second_check:  # first: with shared_build the testbench links the library hls4ml builds here
        predicted, library = hls4ml_predict_check(project_dir, x, y)
        result.checks['hls4ml_predict'] = predicted.to_dict()
    exe, result.build_seconds = build_testbench(
        project_dir, name, cxx, firmware_library=library if shared_build else None
    )
    outputs, result.run_seconds = run_testbench(project_dir, exe)
    compare_exact(y, outputs, result)
    result.notes = list(info.notes)
    if shared_build:
        result.notes.append(f'firmware compiled once by hls4ml build_lib.sh ({library.name}); testbench linked to it')
    result.save(project_dir / CSIM_RESULT)
    return result


__all__ = ['csim', 'build_testbench', 'run_testbench', 'hls4ml_predict_check', 'CSIM_RESULT']
