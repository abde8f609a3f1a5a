"""The short summary table printed at the end of ``lpsubnet run``."""

from __future__ import annotations

import shutil

from rich.console import Console
from rich.table import Table

from .pipeline import PUBLISHED, RunContext


def publish_report(ctx: RunContext) -> None:
    """Copy report.md, report.html, metrics.json and the plots to the run directory's top."""
    source = ctx.stage_dir('report')
    for name in PUBLISHED:
        tmp = ctx.run_dir / f'.{name}.tmp'
        shutil.copyfile(source / name, tmp)
        tmp.replace(ctx.run_dir / name)


def print_summary(ctx: RunContext) -> None:
    publish_report(ctx)
    m = ctx.summary('report')['metrics']
    table = Table(title='lpsubnet run', title_justify='left')
    table.add_column('')
    table.add_column('float baseline', justify='right')
    table.add_column('lpsubnet result', justify='right')
    f, c, a = m['float_cost'], m['compressed_cost'], m['accuracy']
    table.add_row('test accuracy', f'{100 * a["float_model"]:.2f} %', f'{100 * a["quantized"]:.2f} %')
    table.add_row('parameters', f'{f["parameters"]:,}', f'{c["parameters"]:,}')
    table.add_row(
        'memory footprint', f'{f["footprint_bits"] / 1e3:,.1f} kbit', f'{c["footprint_bits"] / 1e3:,.1f} kbit'
    )
    table.add_row('BOPs', f'{f["bops"]:,}', f'{c["bops"]:,}')
    # The accuracy as a fraction over the footprint in Mbit: the unit says it is not a percentage.
    table.add_row('accuracy (0-1) per Mbit', f'{f["performance_density"]:.2f}', f'{c["performance_density"]:.2f}')
    csim = m['csim']
    table.add_row('C simulation', '', f'{csim["exact_matches"]}/{csim["samples"]} bit-exact')
    rtl = m['rtl']
    if rtl:
        table.add_row(
            'RTL simulation',
            '',
            f'{rtl["exact_matches"]}/{rtl["samples"]} bit-exact, {rtl["latency_cycles"]} cycles, II {rtl["initiation_interval"]}',
        )
    else:
        table.add_row('RTL simulation', '', f'skipped ({m["rtl_skipped_reason"]})')
    synth = m.get('synth')
    if synth:
        placed = f', Fmax {synth["placed"]["fmax_mhz"]} MHz on {synth["placed"]["device"]}' if synth['placed'] else ''
        netlist = synth['netlist']
        checked = f', netlist {netlist["exact_matches"]}/{netlist["samples"]} bit-exact' if netlist else ''
        table.add_row(
            f'Yosys mapping ({synth["family"]})', '', f'LUT {synth["lut"]:,}, FF {synth["ff"]:,}{placed}{checked}'
        )
    else:
        table.add_row('Yosys mapping', '', f'skipped ({m.get("synth_skipped_reason")})')
    table.add_row('vendor synthesis', '', m['vendor']['status'])
    console = Console()
    console.print(table)
    if m.get('torch'):
        t = m['torch']
        console.print(
            f'PyTorch model {t["source"]} in (conversion max |diff| {t["conversion_check"]["max_abs_diff"]:.3g}), '
            f'reduced model out: {ctx.stage_dir("compress") / t["reduced"]["file"]}',
            highlight=False,
        )
    if not m['verdict']['exact']:
        console.print('[bold red]NOT EXACT: this design differs from the QKeras model[/bold red]')
        for line in m['verdict']['mismatches']:
            console.print(f'  {line}', highlight=False, markup=False)
    if m['vendor']['status'] == 'tool missing':
        console.print(m['vendor']['message'], highlight=False)
    console.print(f'report: {ctx.run_dir / "report.html"}', highlight=False)
