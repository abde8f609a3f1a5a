"""Vendor tool steps (C simulation, C synthesis, co-simulation, IP export).

When ``vivado_hls`` (Vivado backend) or ``vitis-run`` (Vitis backend) is on PATH the
chosen steps run in the project directory and hls4ml's report parser reads the
results into the common result shape. When the tool is absent, ToolMissingError
carries one line saying what to run on a machine that has it.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import time
from pathlib import Path

from ..core import processes
from ..core.files import write_text_atomic
from ..core.progress import step
from ..core.project import read_project_info
from ..core.results import RouteResult
from ..errors import BadInputError, BuildError, ToolMissingError

# The vendor tool of each hls4ml backend, and the steps lpsubnet runs with it.
BACKENDS = {'Vivado': 'vivado_hls', 'Vitis': 'vitis-run'}
STEPS = ('csim', 'csynth', 'cosim', 'export')
VENDOR_RESULT = 'lpsubnet_vendor.json'


def parse_steps(steps: str | list[str]) -> list[str]:
    chosen = [s.strip() for s in steps.split(',')] if isinstance(steps, str) else list(steps)
    unknown = [s for s in chosen if s not in STEPS]
    if unknown or not chosen:
        raise BadInputError(f'unknown step(s) {unknown or chosen}; choose from {", ".join(STEPS)}')
    return chosen


def vendor_command(backend: str, steps: list[str]) -> tuple[list[str], str | None]:
    """The command line for ``steps``, and the build_opt.tcl text Vitis reads (None for Vivado)."""
    flags = {
        'reset': 0,
        'csim': int('csim' in steps),
        'synth': int(any(s in steps for s in ('csynth', 'cosim', 'export'))),
        'cosim': int('cosim' in steps),
        'validation': 0,
        'export': int('export' in steps),
        'vsynth': 0,
        'fifo_opt': 0,
    }
    if backend == 'Vivado':
        return ['vivado_hls', '-f', 'build_prj.tcl', ' '.join(f'{k}={v}' for k, v in flags.items())], None
    opt = 'array set opt {\n' + ''.join(f'    {k} {v}\n' for k, v in flags.items()) + '}\n'
    return ['vitis-run', '--tcl', 'build_prj.tcl', '--mode', 'hls'], opt


def makefile_commands(backend: str) -> dict[str, str]:
    """One shell command per step, as the generated project's Makefile runs them
    (the same command lines :func:`synth` runs)."""
    import shlex

    commands = {}
    for step_name in STEPS:
        argv, opt_tcl = vendor_command(backend, [step_name])
        command = ' '.join(shlex.quote(arg) for arg in argv)
        if opt_tcl is not None:
            body = ' '.join(line.strip() for line in opt_tcl.splitlines()[1:-1])
            command = f"echo 'array set opt {{ {body} }}' > build_opt.tcl && {command}"
        commands[step_name] = command
    return commands


def missing_tool_hint(project_dir: Path, backend: str, steps: list[str]) -> str:
    tool = BACKENDS[backend]
    targets = ' '.join(f'vendor-{s}' for s in steps)  # the project Makefile has one target per step
    return f'{tool} not found on PATH: on a machine with {backend} HLS, run `lpsubnet synth {project_dir} --steps {",".join(steps)}` (or `make {targets}` in {project_dir})'


def read_reports(project_dir: Path, result: RouteResult, steps: list[str]) -> RouteResult:
    """Fill latency, II and resources from the vendor reports via hls4ml's parser.

    Only the reports of the steps just run are read: a co-simulation report left by
    an earlier run must not pass for this one's.
    """
    from hls4ml.report import parse_vivado_report

    with contextlib.redirect_stdout(io.StringIO()):  # the parser prints what it cannot find
        report = parse_vivado_report(str(project_dir)) or {}
    synth = report.get('CSynthesisReport', {})
    if synth:
        result.latency_cycles = int(synth['WorstLatency'])
        result.initiation_interval = int(synth['IntervalMax'])
        result.resources = {
            key: int(synth[key])
            for key in ('BRAM_18K', 'DSP', 'FF', 'LUT', 'URAM')
            if str(synth.get(key, '')).isdigit()
        }
        result.resources['EstimatedClockPeriod'] = float(synth['EstimatedClockPeriod'])
    cosim = report.get('CosimReport', {}) if 'cosim' in steps else {}
    if cosim:
        result.checks['cosim'] = dict(cosim)
        if str(cosim.get('LatencyMax', '')).isdigit():
            result.latency_cycles = int(cosim['LatencyMax'])
    return result


def synth(project_dir: str | Path, steps: str | list[str] = 'csynth') -> RouteResult:
    """Run the vendor tool's ``steps`` on the project; raise ToolMissingError if absent."""
    project_dir = Path(project_dir).resolve()
    info = read_project_info(project_dir)
    steps = parse_steps(steps)
    backend = info.options['backend']
    cmd, opt_tcl = vendor_command(backend, steps)
    if shutil.which(cmd[0]) is None:
        hint = missing_tool_hint(project_dir, backend, steps)
        raise ToolMissingError(hint, tool=cmd[0], hint=hint)
    if opt_tcl is not None:
        write_text_atomic(project_dir / 'build_opt.tcl', opt_tcl)
    result = RouteResult(route='vendor', tool=cmd[0], project_dir=str(project_dir))
    log = project_dir / 'vendor_build.log'
    start = time.perf_counter()
    with step(f'{cmd[0]} {",".join(steps)}') as running, open(log, 'w') as handle:
        proc = processes.run(
            cmd, cwd=project_dir, stdout=handle, stderr=subprocess.STDOUT, poll=lambda: running.update(f'log: {log}')
        )
    result.build_seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BuildError(f'{cmd[0]} exited with {proc.returncode}; see {log}')
    result.notes.append(f'steps: {",".join(steps)}; log: {log.name}')
    read_reports(project_dir, result, steps)
    result.save(project_dir / VENDOR_RESULT)
    return result
