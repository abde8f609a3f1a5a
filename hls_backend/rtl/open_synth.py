"""Synthesis of an RTL project with open tools: Yosys maps the design to an FPGA family
(LUTs by size, flip-flops, carry cells, DSPs, block RAMs), nextpnr places and routes it
on a Lattice ECP5 (utilization, Fmax, a bitstream), and the netlist Yosys wrote can be
simulated clock by clock against the model (:mod:`hls_backend.rtl.netlist_check`).

Everything is written under ``<project>/synth`` (the script, the logs, the netlist, the
reports, the bitstream) and the figures into ``<project>/lpsubnet_synth.json`` (the
common result record, route ``yosys``). The directory is built under a temporary name
and renamed when complete: an interrupted or failed run leaves the project as it was.
These are Yosys's technology mapping and nextpnr's placement, not vendor synthesis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.files import atomic_directory
from ..core.project import PROJECT_FILES, ProjectInfo
from ..core.results import RouteResult
from ..errors import BadInputError, BuildError, DesignTooLargeError, OutputExistsError
from .open_tools import NEXTPNR_PHASE, YOSYS_PHASE, run_tool, tool_command, tool_version
from .options import OpenSynthOptions
from .project import read_rtl_info
from .synth_families import FAMILIES, Family, choose_family
from .verilog_text import instantiates

SYNTH_RESULT = 'lpsubnet_synth.json'
SYNTH_DIR = 'synth'
NETLIST = 'netlist.v'  # the mapped netlist, in the family's primitives
# The design size (da4ml's LUT estimate) up to which `lpsubnet run` synthesizes by default:
# Yosys maps a 1.4k-LUT MLP in 9 s and the 111k-LUT demo CNN in 10-13 min here.
AUTO_MAX_LUT = 20_000
# The log of a tool that failed, kept in the project (the run's directory is removed).
FAILED_LOG = 'lpsubnet_synth_failed.log'


@dataclass(frozen=True)
class ECP5Device:
    flag: str
    name: str
    comb_cells: int  # TRELLIS_COMB (LUT4) sites, as nextpnr reports them


ECP5_DEVICES = {
    d.flag: d
    for d in (
        ECP5Device('25k', 'LFE5U-25F', 24288),
        ECP5Device('45k', 'LFE5U-45F', 43848),
        ECP5Device('85k', 'LFE5U-85F', 83640),
    )
}
ECP5_PACKAGE = 'CABGA381'
ECP5_PACKAGE_PINS = 197  # user I/O of the 25k in CABGA381, the fewest of the three
# nextpnr adds route-through LUTs when it packs (about 15 % measured on small designs):
# a device is chosen when the mapped LUT4s, this much more, fit it.
PACKING_MARGIN = 1.2


def design_sources(project_dir: Path, info: ProjectInfo) -> list[Path]:
    """The Verilog files of the design, relative to ``project_dir``: the top, its pipeline
    stages and the static modules they instantiate (only those: da4ml's lookup_table.v
    reads a placeholder memory file that stops Yosys when it is read unused)."""
    src = project_dir / 'src'
    name = info.project_name
    generated = [src / f'{name}.v', *sorted(src.glob(f'{name}_stage*.v'))]
    text = '\n'.join(path.read_text() for path in generated if path.is_file())
    used = [path for path in sorted((src / 'static').glob('*.v')) if instantiates(text, path.stem)]
    return [path.relative_to(project_dir) for path in [*generated, *used] if path.is_file()]


def yosys_script(sources: list[str], top: str, family: Family, *, json_netlist: bool) -> str:
    lines = [
        f'read_verilog -sv {" ".join(sources)}',
        f'hierarchy -check -top {top}',
        f'{family.command} -top {top}',
        'tee -o stat.json stat -json',
        f'write_verilog -noattr {NETLIST}',
    ]
    if json_netlist:
        lines.append('write_json design.json')
    return '\n'.join(lines) + '\n'


def _read_rtl_project(project_dir: Path) -> ProjectInfo:
    if not (project_dir / PROJECT_FILES['rtl']).is_file() and (project_dir / PROJECT_FILES['hls']).is_file():
        raise BadInputError(
            f'{project_dir} is an HLS project; Yosys maps RTL: write it with `lpsubnet rtl MODEL --out DIR` and '
            f'synthesize that, or run `lpsubnet synth {project_dir} --tool vendor` where Vivado/Vitis HLS exists'
        )
    info = read_rtl_info(project_dir)
    if info.options.get('hdl') != 'verilog':
        raise BadInputError(
            f'{project_dir} holds VHDL; the Yosys from PyPI reads Verilog only: write the project with --hdl verilog'
        )
    return info


def _placement_family(options: OpenSynthOptions) -> Family:
    if options.family not in (None, 'ecp5'):
        raise BadInputError(
            f'--place runs nextpnr on a Lattice ECP5; --family {options.family} cannot be placed here: '
            'leave --family out (or give ecp5), or drop --place for the mapping alone'
        )
    return FAMILIES['ecp5']


def _check_placeable(lut_estimate: float, device: str, where: str) -> None:
    """Refuse before Yosys runs a design da4ml already estimates larger than the device."""
    largest = ECP5_DEVICES['85k']
    limit = ECP5_DEVICES[device] if device != 'auto' else largest
    if lut_estimate > limit.comb_cells:
        bigger = '' if limit is largest else f', or --device {largest.flag} ({largest.comb_cells:,})'
        raise DesignTooLargeError(
            f'{where}: da4ml estimates {lut_estimate:,.0f} LUTs, more than the {limit.comb_cells:,} LUT4 sites of '
            f'{limit.name}, the largest ECP5 {"chosen" if device != "auto" else "there is"}: drop --place '
            f'(Yosys mapping alone){bigger}, or prune the model further',
            size=None,
        )


def synth_open(project_dir: str | Path, options: OpenSynthOptions | None = None, *, force: bool = False) -> RouteResult:
    """Map the RTL project with Yosys (and with ``options.place`` place and route it with
    nextpnr, with ``options.check_netlist`` simulate the netlist against the model)."""
    o = options or OpenSynthOptions()
    project_dir = Path(project_dir).resolve()
    info = _read_rtl_project(project_dir)
    family = _placement_family(o) if o.place else choose_family(o.part or info.part, o.family)
    tools = ['yosys', *(['nextpnr-ecp5', 'ecppack'] if o.place else [])]
    for tool in tools:
        tool_command(tool)  # ToolMissingError before anything is written
    if o.place:
        _check_placeable(info.design['lut_estimate'], o.device, str(project_dir))
    result_path = project_dir / SYNTH_RESULT
    if not force and (result_path.exists() or (project_dir / SYNTH_DIR).exists()):
        raise OutputExistsError(
            f'{project_dir} already holds open-synthesis results ({SYNTH_DIR}/, {SYNTH_RESULT}); pass --force to replace them'
        )

    result = RouteResult(route='yosys', tool=tool_version('yosys'), project_dir=str(project_dir))
    with atomic_directory(project_dir / SYNTH_DIR, force=force) as tmp:
        sources = ['../' + str(path) for path in design_sources(project_dir, info)]
        script = yosys_script(sources, info.project_name, family, json_netlist=o.place)
        (tmp / 'synth.ys').write_text(script)
        result.build_seconds = round(
            run_tool(
                'yosys',
                ['synth.ys'],
                cwd=tmp,
                log=tmp / 'yosys.log',
                title=f'Yosys {family.command.split()[0]} ({family.title}) of {project_dir.name}',
                phase=YOSYS_PHASE,
                kept_log=project_dir / FAILED_LOG,
            ),
            2,
        )
        stat = json.loads((tmp / 'stat.json').read_text())['design']
        result.resources = {
            **family.counts(stat.get('num_cells_by_type', {})),
            'family': family.name,
            'estimator': f'{tool_version("yosys")} `{family.command}` technology mapping (not vendor synthesis)',
            'lut_estimate_da4ml': round(info.design['lut_estimate']),
            'ff_estimate_da4ml': info.design['ff_estimate'],
        }
        result.notes.append(f'Yosys read {len(sources)} files: {", ".join(Path(s).name for s in sources)}')
        if o.place:
            placed = place_ecp5(project_dir, tmp, info, result.resources, stat.get('num_port_bits', 0), o)
            result.resources['nextpnr'] = placed
            result.notes.append(placed['summary'])
        unchecked = None
        if o.check_netlist:
            from .netlist_check import check_netlist

            try:
                netlist = check_netlist(
                    project_dir, tmp, NETLIST, family, stat.get('num_cells_by_type', {}), info, project_dir / FAILED_LOG
                )
            except BuildError as exc:
                # The check could not be built or run: the mapping (minutes of Yosys) is kept
                # and the error names what failed; a netlist that runs and differs is not this.
                unchecked = exc
                result.notes.append(f'the netlist check did not run: {unchecked}')
            else:
                result.checks['netlist'] = netlist.to_dict()
                for key in (
                    'samples',
                    'exact_matches',
                    'mismatched_samples',
                    'first_mismatch',
                    'max_abs_diff',
                    'mismatches',
                ):
                    setattr(result, key, getattr(netlist, key))
                result.latency_cycles, result.initiation_interval = netlist.latency_cycles, netlist.initiation_interval
    result.save(result_path)
    if unchecked is not None:
        raise BuildError(
            f'{unchecked}; the mapping is kept in {project_dir / SYNTH_DIR} and {SYNTH_RESULT} (the netlist unchecked: '
            'run again with --force --check-netlist once the cause is fixed)'
        )
    (project_dir / FAILED_LOG).unlink(missing_ok=True)
    return result


def _choose_device(needed: int, o: OpenSynthOptions, where: str) -> ECP5Device:
    if o.device != 'auto':
        device = ECP5_DEVICES[o.device]
        if needed > device.comb_cells:
            raise DesignTooLargeError(
                f'{where}: the mapped design needs {needed:,} LUT4 sites, {device.name} has {device.comb_cells:,}: '
                'choose a larger --device or --device auto',
                size=None,
            )
        return device
    for device in ECP5_DEVICES.values():
        if needed * PACKING_MARGIN <= device.comb_cells:
            return device
    largest = list(ECP5_DEVICES.values())[-1]
    if needed <= largest.comb_cells:
        return largest
    raise DesignTooLargeError(
        f'{where}: the mapped design needs {needed:,} LUT4 sites; the largest ECP5, {largest.name}, has '
        f'{largest.comb_cells:,}: drop --place (the Yosys mapping alone) or prune the model further',
        size=None,
    )


def place_ecp5(
    project_dir: Path, work: Path, info: ProjectInfo, counts: dict, port_bits: int, o: OpenSynthOptions
) -> dict:
    """nextpnr-ecp5 on Yosys's ``design.json`` in ``work``: device, utilization, Fmax and
    (in context) the bitstream. A core whose ports need more pins than the package has is
    placed out of context: its utilization and Fmax, no I/O buffers and no bitstream."""
    needed = counts['LUT'] + 2 * counts['CARRY']
    device = _choose_device(needed, o, str(project_dir))
    period = o.clock_period or info.clock_period
    in_context = port_bits <= ECP5_PACKAGE_PINS  # the clock included
    args = [
        f'--{device.flag}',
        '--package',
        ECP5_PACKAGE,
        '--json',
        'design.json',
        '--report',
        'nextpnr_report.json',
        '--freq',
        f'{1000.0 / period:.3f}',
        '--timing-allow-fail',
        '--seed',
        '1',
        *(['--textcfg', 'ecp5.config', '--lpf-allow-unconstrained'] if in_context else ['--out-of-context']),
    ]
    seconds = run_tool(
        'nextpnr-ecp5',
        args,
        cwd=work,
        log=work / 'nextpnr.log',
        title=f'nextpnr place and route on {device.name} ({needed:,} LUT4 sites)',
        phase=NEXTPNR_PHASE,
        kept_log=project_dir / FAILED_LOG,
    )
    report = json.loads((work / 'nextpnr_report.json').read_text())
    fmax = min((clock['achieved'] for clock in report.get('fmax', {}).values()), default=None)
    utilization = {
        cell: {'used': use['used'], 'available': use['available']}
        for cell, use in report.get('utilization', {}).items()
        if use['used'] or cell in ('TRELLIS_COMB', 'TRELLIS_FF', 'MULT18X18D', 'DP16KD')
    }
    bitstream = None
    if in_context:
        bitstream = f'{info.project_name}.bit'
        seconds += run_tool(
            'ecppack',
            ['ecp5.config', bitstream],
            cwd=work,
            log=work / 'ecppack.log',
            title='ecppack',
            kept_log=project_dir / FAILED_LOG,
        )
        if not (work / bitstream).is_file():
            raise BuildError(f'ecppack wrote no bitstream; see {project_dir / SYNTH_DIR / "ecppack.log"}')
    comb = utilization.get('TRELLIS_COMB', {'used': 0, 'available': 0})
    target = 1000.0 / period
    where = (
        f'in context ({port_bits} port pins auto-placed in {ECP5_PACKAGE}), bitstream {SYNTH_DIR}/{bitstream}'
        if in_context
        else f'out of context: the ports need {port_bits} pins, {ECP5_PACKAGE} has {ECP5_PACKAGE_PINS}; no I/O '
        'buffers and no bitstream (a board design serializes the ports)'
    )
    return {
        'tool': tool_version('nextpnr-ecp5'),
        'device': device.name,
        'package': ECP5_PACKAGE,
        'in_context': in_context,
        'utilization': utilization,
        'fmax_mhz': None if fmax is None else round(fmax, 2),
        'target_mhz': round(target, 2),
        'clock_period_ns': period,
        'timing_met': fmax is not None and fmax >= target,
        'bitstream': f'{SYNTH_DIR}/{bitstream}' if bitstream else None,
        'seconds': round(seconds, 2),
        'summary': (
            f'nextpnr on {device.name}: {comb["used"]:,}/{comb["available"]:,} LUT4 sites, Fmax '
            f'{"unknown" if fmax is None else f"{fmax:.1f}"} MHz against {target:.1f} MHz; {where}'
        ),
    }
