"""The run report: metrics.json (validated), report.md and a self-contained report.html.

Everything shown is read from the stage outputs of the run directory; nothing is
recomputed here.
"""

from __future__ import annotations

import base64
import io
import json
import math
from importlib import resources
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from pathlib import Path

import jinja2

from hls_backend.core.files import write_text_atomic

from .describe import recovery_line
from .metrics_schema import Metrics
from .pipeline import RunContext
from .verdict import design_mismatches

REPORT_TEMPLATES = 'lpsubnet.template_files'  # templates/report, mapped by pyproject.toml


def _version_of_lpsubnet() -> str:
    try:
        return _version('lpsubnet')
    except PackageNotFoundError:  # a source tree without installation
        return '0+unknown'


def render(name: str, context: dict) -> str:
    """Render report template ``name`` (strict: a missing value is a bug, not an empty string)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files(REPORT_TEMPLATES))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(name).render(**context)


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _cost(summary: dict, accuracy: float) -> dict:
    footprint = int(summary['footprint_bits'])
    return {
        'parameters': int(summary['parameters']),
        'macs': int(summary['macs']),
        'footprint_bits': footprint,
        'bops': int(summary['bops']),
        'performance_density': accuracy / (footprint / 1e6) if footprint else 0.0,
    }


def _verification(result: dict) -> dict:
    keys = (
        'route',
        'tool',
        'samples',
        'exact_matches',
        'exact',
        'max_abs_diff',
        'build_seconds',
        'run_seconds',
        'latency_cycles',
        'initiation_interval',
        'resources',
    )
    return {k: result.get(k) for k in keys}


def _layer_rows(manifest: dict) -> list[dict]:
    """One row per quantized layer, in model order; channel counts where the layer produces channels."""
    rows = []
    for name, q in manifest['quantization']['layers'].items():
        info = manifest['layers'].get(name, {})
        weights = q.get('weights', {})
        kernel = weights.get('kernel') or weights.get('depthwise_kernel') or {}
        act = q.get('activation') or {}
        rows.append(
            {
                'name': name,
                'channels_before': info.get('channels_before'),
                'channels_after': info.get('channels_after'),
                'weight_bits': kernel.get('bits'),
                'weight_integer_bits': kernel.get('integer'),
                'activation_bits': act.get('bits'),
                'activation_integer_bits': act.get('integer'),
            }
        )
    return rows


def _open_synthesis(result: dict) -> dict:
    """The synth stage's figures (its RouteResult of route 'yosys') for metrics.json."""
    r = result['resources']
    netlist = result['checks'].get('netlist')
    return {
        'family': r['family'],
        'lut': r['LUT'],
        'lut_kind': r['lut_kind'],
        'lut_by_size': r['LUT_by_size'],
        'ff': r['FF'],
        'carry': r['CARRY'],
        'dsp': r['DSP'],
        'bram': r['BRAM'],
        'lut_estimate_da4ml': r['lut_estimate_da4ml'],
        'ff_estimate_da4ml': r['ff_estimate_da4ml'],
        'seconds': result['build_seconds'],
        'placed': {k: v for k, v in r['nextpnr'].items() if k != 'summary'} if r.get('nextpnr') else None,
        'netlist': _verification(netlist) if netlist else None,
    }


def collect_metrics(ctx: RunContext) -> dict:
    run = ctx.run_dir
    baseline = _read(run / 'baseline' / 'metrics.json')
    manifest = _read(run / 'compress' / 'manifest.json')
    csim = _read(run / 'csim' / 'csim.json')
    rtl = ctx.summary('rtl')
    synth = ctx.summary('synth') if 'synth' in ctx.records else {}
    vendor = _read(run / 'vendor' / 'vendor.json')
    m = manifest['metrics']
    key = m['metric']
    pruned = m.get('reduced_float', {}).get(key)
    quantized = manifest['test_accuracy_quantized']
    mismatches = design_mismatches(ctx.records)
    metrics = {
        'lpsubnet_version': _version_of_lpsubnet(),
        'verdict': {'exact': not mismatches, 'mismatches': mismatches},
        'dataset': ctx.summary('data'),
        'compression': ctx.config.compress.model_dump(mode='json'),
        'recovery': {**manifest['recovery'], 'summary': recovery_line(manifest['recovery'])},
        'accuracy': {
            'float_model': baseline['test_accuracy'],
            'pruned_float': pruned,  # validation accuracy of the reduced float model (the pruner sees no test set)
            'quantized': quantized,
            'csim': csim['accuracy'],
            'rtl': rtl.get('accuracy'),
        },
        'float_cost': _cost(baseline['cost'], baseline['test_accuracy']),
        'compressed_cost': _cost(m['after'], quantized),
        'layers': _layer_rows(manifest),
        'csim': _verification(csim),
        'rtl': _verification(rtl) if 'route' in rtl else None,
        'rtl_skipped_reason': rtl.get('skipped'),
        'synth': _open_synthesis(synth) if 'route' in synth else None,
        'synth_skipped_reason': synth.get('skipped'),
        'vendor': {
            'status': vendor['status'],
            'message': vendor['message'],
            'result': _verification(vendor['result']) if vendor.get('result') else None,
        },
        'stages': [
            {
                'name': name,
                'seconds': rec['seconds'],
                'cached': rec['cached'],
                'peak_rss_mib': rec['peak_rss_mib'],
                'peak_rss_scope': rec.get('peak_rss_scope', 'process so far'),
            }
            for name, rec in ctx.records.items()
        ],
        'torch': manifest.get('torch'),
    }
    return Metrics.model_validate(metrics).model_dump(mode='json')


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=110, bbox_inches='tight')
    return base64.b64encode(buffer.getvalue()).decode()


def make_plots(metrics: dict, out: Path) -> dict[str, str]:
    """Two plots as PNG files and base64 strings: accuracy vs footprint, channels per layer."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    plots = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    f, c = metrics['float_cost'], metrics['compressed_cost']
    acc = metrics['accuracy']
    ax.scatter(
        [f['footprint_bits'] / 1e3],
        [100 * acc['float_model']],
        s=80,
        marker='o',
        color='tab:gray',
        label='float baseline (32-bit)',
    )
    ax.scatter(
        [c['footprint_bits'] / 1e3],
        [100 * acc['quantized']],
        s=110,
        marker='*',
        color='tab:red',
        label='lpsubnet result (QKeras)',
    )
    ax.scatter(
        [c['footprint_bits'] / 1e3], [100 * acc['csim']], s=40, marker='x', color='black', label='HLS C simulation'
    )
    drop = 100 * (acc['float_model'] - acc['quantized'])
    ax.annotate(
        f'{f["footprint_bits"] / c["footprint_bits"]:.1f}x smaller, '
        + (f'{drop:.2f} points less accurate' if drop >= 0 else f'{-drop:.2f} points more accurate'),
        xy=(c['footprint_bits'] / 1e3, 100 * acc['quantized']),
        xytext=(10, 10),
        textcoords='offset points',
    )
    ax.set_xscale('log')
    ax.set_xlabel('memory footprint (kbit, weights + feature maps, log scale)')
    ax.set_ylabel('test accuracy (%)')
    # A floor at least 5 points under the lowest accuracy (on a multiple of 5): a drop of a
    # few tenths must not fill the axis.
    shown = [100 * a for a in (acc['float_model'], acc['quantized'], acc.get('csim')) if a is not None]
    ax.set_ylim(max(0.0, 5 * math.floor((min(shown) - 5) / 5)), min(100.5, max(shown) + 1.5))
    ax.set_title('Accuracy against memory footprint')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    plots['accuracy_vs_footprint'] = _png(fig)
    fig.savefig(out / 'accuracy_vs_footprint.png', dpi=110, bbox_inches='tight')
    plt.close(fig)

    rows = [r for r in metrics['layers'] if r['channels_before']]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [r['name'] for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r['channels_before'] for r in rows], width=0.4, color='tab:gray', label='before')
    ax.bar([i + 0.2 for i in x], [r['channels_after'] for r in rows], width=0.4, color='tab:red', label='after')
    ax.set_xticks(list(x), names, rotation=30, ha='right')
    ax.set_ylabel('output channels')
    ax.set_title('Channels per layer')
    ax.legend(fontsize=8)
    plots['channels'] = _png(fig)
    fig.savefig(out / 'channels.png', dpi=110, bbox_inches='tight')
    plt.close(fig)
    return plots


def write_report(ctx: RunContext, out: Path) -> dict:
    metrics = collect_metrics(ctx)
    plots = make_plots(metrics, out)
    context = {
        'm': metrics,
        'run_dir': str(ctx.run_dir),
        'config': ctx.config.model_dump(mode='json'),
        'hls': ctx.summary('hls'),
    }
    write_text_atomic(out / 'metrics.json', json.dumps(metrics, indent=2) + '\n')
    write_text_atomic(out / 'report.md', render('report.md.j2', context))
    write_text_atomic(out / 'report.html', render('report.html.j2', {**context, 'plots': plots}))
    # Written under the stage's temporary name: the record names where it ends up.
    return {'report': str(ctx.stage_dir('report') / 'report.html'), 'metrics': metrics}
