"""The ``lpsubnet`` command line (click). Thin: every command calls a library function.

Exit codes: 0 success; 1 the file system refused a write; 2 bad input (file, option,
unsupported model, existing output, a design too large without --force-large, inputs a
wrapping input type changes without --allow-wrap); 3 hardware and model disagree on
some output bit (``run`` and ``sweep`` write their report first); 4 a required tool is
missing (the message says what to run where it exists); 5 an external build failed; 6
``lpsubnet sweep``: no Ray cluster can be reached at --address, or Ray lost its node
more often than the sweep restarts it; 130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM,
every child process ended and no partial output kept.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from hls_backend.hls.options import HLSOptions
from hls_backend.rtl.options import OpenSynthOptions, RTLOptions
from hls_backend.rtl.size import RTL_MAX_MACS
from pruner.options import CHOICES, CompressOptions

from . import interrupts
from .quiet import import_tensorflow_quietly
from .settings import cli_settings, click_options

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')


def _fail(exc) -> None:
    click.echo(f'error: {exc}', err=True)
    sys.exit(exc.exit_code)


def _interrupted() -> None:
    """Ctrl-C or SIGTERM reached the command: end every child process still running (the
    library ends those it waits on; this catches the rest), say so in one line and exit
    with 128 + the signal's number, as a shell reports a process a signal stopped."""
    import signal

    from hls_backend.core import processes

    processes.stop_all()
    signum = interrupts.signal_received() or signal.SIGINT
    click.echo(
        f'interrupted by {signal.Signals(signum).name}: stopped; child processes ended, partial outputs removed',
        err=True,
    )
    interrupts.exiting()
    sys.exit(128 + signum)


def handle_errors(command=None, *, tensorflow: bool = True):
    """Turn the library's errors into one line on stderr and their exit code.

    ``tensorflow=False`` for commands that may not need Keras at all (``csim``): the
    pruner's errors, whose package imports Keras, cannot come from them, and the library
    imports TensorFlow quietly itself if it needs the QKeras model.
    """
    if command is None:
        return functools.partial(handle_errors, tensorflow=tensorflow)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return _run(*args, **kwargs)
        except KeyboardInterrupt:  # also while TensorFlow is being imported
            _interrupted()

    def _run(*args, **kwargs):
        from hls_backend.errors import HLSBackendError

        one_line: tuple[type[Exception], ...] = (HLSBackendError,)
        pruner_errors: tuple[type[Exception], ...] = ()
        if tensorflow:
            # The error classes live in packages that import Keras, hence TensorFlow:
            # import it first with its start-up chatter captured.
            import_tensorflow_quietly()
            from pruner.errors import PrunerError

            from .config import ConfigError

            one_line += (ConfigError,)
            pruner_errors = (PrunerError,)
        try:
            with interrupts.stop_prevails():
                return command(*args, **kwargs)
        except one_line as exc:
            _fail(exc)
        except pruner_errors as exc:  # bad model, data or option for the pruner
            click.echo(f'error: {exc}', err=True)
            sys.exit(2)
        except OSError as exc:  # disk full, read-only file system, ...: one line, no traceback
            where = f'{exc.filename}: ' if exc.filename else ''
            click.echo(f'error: {where}{exc.strerror or exc}', err=True)
            sys.exit(1)

    return wrapper


def torch_options(data_option: str, shape_default: str):
    """--layout and --input-shape, for the commands whose MODEL may be a PyTorch model."""

    def decorate(command):
        command = click.option(
            '--input-shape',
            type=InputShape(),
            help=f"A PyTorch MODEL's input shape in the torch layout without the batch axis, e.g. 1,8,8 "
            f'(default: {shape_default}).',
        )(command)
        return click.option(
            '--layout',
            type=click.Choice(['NHWC', 'NCHW']),
            default='NHWC',
            show_default=True,
            help=f"Layout of the {data_option} arrays with channels: channels last (Keras's) or first "
            "(PyTorch's, NCHW/NCL).",
        )(command)

    return decorate


def allow_wrap_option(command):
    return click.option(
        '--allow-wrap',
        is_flag=True,
        help='Check inputs even where a wrapping input type (AP_WRAP, the default of a declared ap_fixed<W,I>) '
        'changes values outside its range into others; without it such inputs are refused. Values a saturating '
        'type clips are only reported.',
    )(command)


class InputShape(click.ParamType):
    """A shape without the batch axis: positive sizes separated by commas, e.g. 1,8,8."""

    name = 'C,H,W'

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            shape = tuple(int(part) for part in str(value).strip('()[] ').split(','))
        except ValueError:
            shape = ()
        if not shape or any(s < 1 for s in shape):
            self.fail(f'{value!r} is not a shape of positive sizes separated by commas, e.g. 1,8,8', param, ctx)
        return shape


def _fail_unless_exact(result, what: str) -> None:
    """Exit 3 (MismatchError) unless the simulation and every second check are exact,
    naming each path that differs and its first mismatching sample."""
    from hls_backend.errors import MismatchError

    from .verdict import inexact_paths

    failed = [
        f'{name} (first mismatching sample: {r["first_mismatch"]})' for name, r in inexact_paths(result.to_dict(), what)
    ]
    if failed:
        _fail(MismatchError(f'not bit-exact against the QKeras model: {"; ".join(failed)}'))


def _summary(result) -> str:
    status = 'EXACT' if result.exact else 'MISMATCH'
    return (
        f'{result.route}: {status} {result.exact_matches}/{result.samples} samples bit-exact'
        f' (max |diff| {result.max_abs_diff:g}; build {result.build_seconds:.1f} s, run {result.run_seconds:.2f} s)'
    )


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(package_name='lpsubnet')
def main():
    """Learn low-precision, channel-reduced subnetworks of Keras models and turn them
    into bit-exact FPGA IP cores (hls4ml HLS projects, C simulation, RTL)."""
    # SIGTERM (kill, a batch scheduler) unwinds like Ctrl-C, so the temporary
    # directories and files of the stage in progress are removed, not left behind.
    interrupts.install()


@main.command()
@click.argument('model', type=click.Path(dir_okay=False))
@click.option('--out', 'out_dir', required=True, type=click.Path(file_okay=False), help='Project directory to write.')
@click_options(HLSOptions)
@click.option(
    '--inputs',
    type=click.Path(dir_okay=False),
    help='Test inputs (.npy or .npz) for tb_data; default: 100 random samples.',
)
@allow_wrap_option
@torch_options('--inputs', "the --inputs' (channels first), or a .pt2 program's own")
@click.option('--force', is_flag=True, help='Replace an existing, non-empty output directory.')
@handle_errors
def hls(model, out_dir, inputs, allow_wrap, layout, input_shape, force, **given):
    """Write a Vivado/Vitis HLS project for a saved QKeras MODEL (.keras).

    A PyTorch MODEL (.pt2, TorchScript, 'module:callable') is converted to a float Keras
    model first (the conversion is checked and unsupported ops are named); its float
    weights are refused like any float model's: prune and quantize it with `lpsubnet
    prune`, then give its reduced.keras.
    """
    from pathlib import Path

    from hls_backend.core.files import check_output_dir

    from .pytorch import keras_model_file

    check_output_dir(Path(out_dir).absolute(), force)  # refuse before the conversion
    import_tensorflow_quietly()
    from hls_backend import write_project

    options = HLSOptions(**cli_settings(HLSOptions, given)).validated()
    with keras_model_file(model, inputs, input_shape, layout, say=click.echo) as (model_file, inputs):
        info = write_project(model_file, out_dir, options, inputs=inputs, force=force, allow_wrap=allow_wrap)
    click.echo(f'wrote {info.project_dir} ({options.backend}, {options.io_type}, {info.samples} test samples)')
    click.echo(f'input {info.input_type}: {info.input_source}')
    for note in info.notes:
        click.echo(f'note: {note}')
    click.echo(f'next: lpsubnet csim {out_dir}')


@main.command()
@click.argument('project_dir', type=click.Path(file_okay=False, exists=True))
@click.option(
    '--inputs',
    type=click.Path(dir_okay=False),
    help='Check these samples (.npy or .npz, shape (N, *input shape)) instead of tb_data: rounded to the '
    "project's input type, the reference computed by its QKeras model (cached for the same file).",
)
@click.option('--max-samples', type=click.IntRange(min=1), help='Check only the first N samples.')
@click.option(
    '--jobs',
    type=click.IntRange(min=1),
    help='Testbench processes, each on a contiguous shard of the samples (default: the CPUs available).',
)
@click.option(
    '--second-check/--no-second-check',
    default=None,
    help="hls4ml's compile()/predict() cross-check (default: on for tb_data, off with --inputs); its result "
    'is cached for the same firmware, weight files, tools and samples.',
)
@allow_wrap_option
@click.option('--json', 'as_json', is_flag=True, help='Print the result JSON instead of a summary.')
@handle_errors(tensorflow=False)
def csim(project_dir, inputs, max_samples, jobs, second_check, allow_wrap, as_json):
    """C-simulate PROJECT_DIR with g++ and compare every output bit with the QKeras model.

    The testbench is built once per firmware (kept as csim.exe with the hash of its
    sources) and exchanges raw float64 with Python; `--json` run_seconds is the wall
    time of the testbench processes alone.
    """
    from hls_backend import csim as run_csim

    if second_check is None:
        second_check = inputs is None
    if jobs is None:
        jobs = len(os.sched_getaffinity(0))
    result = run_csim(
        project_dir, second_check=second_check, inputs=inputs, max_samples=max_samples, jobs=jobs, allow_wrap=allow_wrap
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(_summary(result))
        _input_range_line(result)
        for line in _mismatch_lines(result, 'C simulation'):
            click.echo(line)
        check = result.checks.get('hls4ml_predict')
        if check:
            cached = ' (cached)' if any(note.startswith('cached') for note in check['notes']) else ''
            click.echo(f'hls4ml predict(): {check["exact_matches"]}/{check["samples"]} samples bit-exact{cached}')
    _fail_unless_exact(result, 'C simulation')


MISMATCH_LINES = 5


def _input_range_line(result) -> None:
    """The note on test inputs outside the input type's range, when there were any."""
    if result.input_range:
        click.echo(f'note: {result.input_range["message"]}')


def _mismatch_lines(result, what: str) -> list[str]:
    """The first mismatching samples: index, output position, both values."""
    return [
        f'  sample {m["sample"]}, output {m["output"]}: QKeras {m["expected"]!r}, {what} {m["actual"]!r}'
        + (f' ({m["outputs_differing"]} outputs differ)' if m['outputs_differing'] > 1 else '')
        for m in result.mismatches[:MISMATCH_LINES]
    ]


@main.command()
@click.argument('project_dir', type=click.Path(file_okay=False, exists=True))
@click.option(
    '--tool',
    type=click.Choice(['auto', 'vendor', 'yosys']),
    default='auto',
    show_default=True,
    help='vendor: Vivado/Vitis HLS steps on an HLS project; yosys: Yosys mapping (and nextpnr with --place) of '
    'an RTL project; auto: by the project.',
)
@click.option(
    '--steps', default='csynth', show_default=True, help='Vendor steps (csim, csynth, cosim, export), comma-separated.'
)
@click_options(OpenSynthOptions)
@click.option('--force', is_flag=True, help='Replace earlier open-synthesis results of the project.')
@handle_errors(tensorflow=False)
def synth(project_dir, tool, steps, force, **given):
    """Synthesize PROJECT_DIR: vendor HLS steps (needs vivado_hls or vitis-run on PATH) on an
    HLS project, or Yosys (and nextpnr) from PyPI on an RTL project."""
    from pathlib import Path

    from hls_backend.core.project import PROJECT_FILES

    if tool == 'auto':
        tool = 'yosys' if (Path(project_dir) / PROJECT_FILES['rtl']).is_file() else 'vendor'
    if tool == 'vendor':
        from hls_backend import synth as run_synth

        result = run_synth(project_dir, steps)
        click.echo(
            f'{result.tool}: latency {result.latency_cycles} cycles, II {result.initiation_interval}, resources {result.resources}'
        )
        return
    from hls_backend import synth_open

    result = synth_open(project_dir, OpenSynthOptions(**cli_settings(OpenSynthOptions, given)), force=force)
    for line in synth_lines(result.to_dict()):
        click.echo(line)
    netlist = result.checks.get('netlist')
    if netlist and not netlist['exact']:
        # One line: the result mirrors the netlist's comparison, _fail_unless_exact would name it twice.
        from hls_backend.errors import MismatchError

        from .verdict import describe

        _fail(MismatchError(f'not bit-exact against the QKeras model: {describe("the Yosys netlist", netlist)}'))


def synth_lines(result: dict) -> list[str]:
    """What `lpsubnet synth --tool yosys` prints of its result record."""
    r = result['resources']
    sizes = ', '.join(f'{k} {v:,}' for k, v in r['LUT_by_size'].items())
    lines = [
        f'Yosys mapping ({r["family"]}; not vendor synthesis): LUT {r["LUT"]:,} ({sizes}), FF {r["FF"]:,}, '
        f'carry {r["CARRY"]:,}, DSP {r["DSP"]}, BRAM {r["BRAM"]} in {result["build_seconds"]:.0f} s '
        f'(da4ml estimated {r["lut_estimate_da4ml"]:,} LUT, {r["ff_estimate_da4ml"]:,} FF)'
    ]
    if r.get('nextpnr'):
        lines.append(r['nextpnr']['summary'])
    netlist = result['checks'].get('netlist')
    if netlist:
        lines.append(
            f'the Yosys netlist, simulated clock by clock: {"EXACT" if netlist["exact"] else "MISMATCH"} '
            f'{netlist["exact_matches"]}/{netlist["samples"]} samples bit-exact against the model '
            f'(latency {netlist["latency_cycles"]}, II {netlist["initiation_interval"]})'
        )
    lines.append(f'written: {result["project_dir"]}/synth/ and lpsubnet_synth.json')
    return lines


@main.command()
@handle_errors(tensorflow=False)
def layers():
    """List the Keras/QKeras layer classes each hardware route maps, and the channel pruner's."""
    from rich.console import Console
    from rich.table import Table

    from hls_backend.supported import ROUTES, supported_rows
    from pruner.layers import supported_kinds

    table = Table('Keras / QKeras layer', *(title for title, _ in ROUTES), show_lines=False)
    for group, cells in supported_rows():
        table.add_row(', '.join(group), *cells)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(f'channel pruner (lpsubnet prune): {supported_kinds()}', markup=False)


@main.command()
@click.argument('model', type=click.Path(dir_okay=False))
@click.option(
    '--out', 'out_dir', required=True, type=click.Path(file_okay=False), help='RTL project directory to write.'
)
@click_options(RTLOptions)
@click.option(
    '--inputs',
    type=click.Path(dir_okay=False),
    help='Test inputs (.npy/.npz): the first 1000 measure latency and II, then all are streamed through the '
    'design one per clock; default: 200 random samples.',
)
@click.option('--max-samples', type=click.IntRange(min=1), help='Stream only the first N samples of --inputs.')
@click.option(
    '--jobs',
    type=click.IntRange(min=1),
    help='Harness processes streaming --inputs at a time (default: the CPUs available).',
)
@allow_wrap_option
@click.option(
    '--force-large',
    is_flag=True,
    help=f'Build a design above {RTL_MAX_MACS:,} multiply-accumulates (fully unrolled: the da4ml trace and the '
    'Verilator build take minutes to hours and many GB); refused without it.',
)
@torch_options('--inputs', "the --inputs' (channels first), or a .pt2 program's own")
@click.option('--force', is_flag=True, help='Replace an existing, non-empty output directory.')
@handle_errors
def rtl(model, out_dir, inputs, max_samples, jobs, allow_wrap, force_large, layout, input_shape, force, **given):
    """Write Verilog/VHDL for MODEL with da4ml and simulate it cycle by cycle with Verilator.

    A PyTorch MODEL (.pt2, TorchScript, 'module:callable') is converted to a float Keras
    model first, which the RTL route refuses like any float model: prune and quantize it
    with `lpsubnet prune`, then give its reduced.keras.
    """
    from pathlib import Path

    from hls_backend.core.files import check_output_dir

    from .pytorch import keras_model_file

    check_output_dir(Path(out_dir).absolute(), force)  # refuse before the conversion
    options = RTLOptions(**cli_settings(RTLOptions, given)).validated()
    import_tensorflow_quietly()
    from hls_backend import rtl as run_rtl

    with keras_model_file(model, inputs, input_shape, layout, say=click.echo) as (model_file, inputs):
        result = run_rtl(
            model_file,
            out_dir,
            inputs,
            options,
            force=force,
            max_samples=max_samples,
            shards=jobs or len(os.sched_getaffinity(0)),
            force_large=force_large,
            allow_wrap=allow_wrap,
        )
    click.echo(_summary(result))
    _input_range_line(result)
    for line in _mismatch_lines(result, 'RTL simulation'):
        click.echo(line)
    res = result.resources
    click.echo(
        f'latency {result.latency_cycles} cycles, II {result.initiation_interval} (measured); '
        f'da4ml estimate LUT {res.get("LUT")}, FF {res.get("FF")}, pipeline depth {res.get("pipeline_depth")}'
    )
    _fail_unless_exact(result, 'RTL simulation')


@main.command()
@click.argument('model', type=click.Path(dir_okay=False))
@click.option(
    '--data',
    'data_path',
    required=True,
    type=click.Path(dir_okay=False),
    help='npz with x_train, y_train and optionally x_val, y_val (validation: early stopping, best epochs; '
    'without them 15% of x_train is drawn). x_test/y_test are never used here.',
)
@torch_options('--data', "the data's, channels first")
@click.option(
    '--out',
    'out_dir',
    required=True,
    type=click.Path(file_okay=False),
    help='Directory for reduced.keras and manifest.json (and reduced.pt2 for a PyTorch MODEL).',
)
@click_options(CompressOptions, CHOICES)
@click.option('--force', is_flag=True, help='Replace an existing, non-empty output directory.')
@handle_errors
def prune(model, data_path, layout, input_shape, out_dir, force, **given):
    """Prune channels of a float MODEL and quantize it: reduced.keras + manifest.json in --out.

    MODEL: a Keras .keras file, or a PyTorch model (a torch.export .pt2 program, a
    TorchScript file, or 'file.py:function' / 'package.module:function' returning an
    nn.Module), converted to Keras first (its check printed and kept in the manifest)
    and written back as reduced.pt2 too.
    """
    from pathlib import Path

    from hls_backend import load_qkeras_model
    from hls_backend.core.files import atomic_directory, check_output_dir

    from .config import ConfigError
    from .datasets import load_train_val
    from .pytorch import convert, is_torch_model
    from .stages import compress_model, write_compressed

    check_output_dir(Path(out_dir).absolute(), force)
    settings = cli_settings(CompressOptions, given)
    import_tensorflow_quietly()

    from_torch = is_torch_model(model)
    if input_shape is not None and not from_torch:
        raise ConfigError(f'--input-shape is for PyTorch models; {model} is a Keras model, which knows its input shape')
    if not from_torch:
        keras_model = load_qkeras_model(model)
    train, val, val_source = load_train_val(data_path, settings['seed'], layout=layout)
    click.echo(f'validation: {len(val[1])} samples, {val_source}')
    torch_record = None
    if from_torch:
        keras_model, torch_record = convert(
            model, train[0], input_shape, seed=settings['seed'], say=click.echo, names=('--input-shape', '--layout')
        )
    rate_source = None
    learning_rate = settings.pop('learning_rate', None)
    if learning_rate is None and not from_torch:  # loaded without its optimizer: read the rate it was trained with
        from pruner.recovery import saved_learning_rate

        learning_rate = saved_learning_rate(model)
        rate_source = f'the optimizer saved in {model}' if learning_rate is not None else None
    from .baseline import accuracy, chance_warning
    from .preflight import check_before_training

    # Refused now, not after training: the pruner's and both hardware routes' checks on the
    # model compress would write (one route accepting it is enough).
    for note in check_before_training(keras_model, train, settings, ('hls', 'rtl'), require_all=False):
        click.echo(f'note: {note}')
    # After the checks (which read the data against the model): one prediction on the validation split.
    if warning := chance_warning(accuracy(keras_model, *val), val[1], 'validation'):
        click.echo(f'warning: {warning}')
    settings['verbose'] = 1 if sys.stdout.isatty() else 2  # Keras progress bars; one line per epoch in logs
    reduced, manifest = compress_model(keras_model, train, val, settings, learning_rate, rate_source)
    manifest['data'].update(file=str(data_path), val_source=val_source)
    with atomic_directory(out_dir, force=force) as tmp:
        write_compressed(tmp, reduced, manifest, torch_record)
    from .describe import budget_line, recovery_line, weight_pruning_line

    click.echo(recovery_line(manifest['recovery']))
    if manifest.get('budget'):
        click.echo(budget_line(manifest['budget']))
    if line := weight_pruning_line(manifest.get('weight_pruning') or {}):
        click.echo(line)
    m = manifest['metrics']
    key = m['metric']
    click.echo(
        f'{key}: baseline {m["baseline"].get(key, float("nan")):.4f} -> reduced and quantized {m["quantized"].get(key, float("nan")):.4f} (validation); '
        f'footprint {m["before"]["footprint_bits"] / 1e3:.1f} -> {m["after"]["footprint_bits"] / 1e3:.1f} kbit'
    )
    written = 'reduced.pt2 and manifest.json' if torch_record is not None else 'manifest.json'
    click.echo(
        f'wrote {Path(out_dir) / "reduced.keras"}, {written}; next: lpsubnet hls {Path(out_dir) / "reduced.keras"} --out <dir>'
    )


def budget_options(command):
    """One option per sweep objective with a budget (lpsubnet.objectives): --max-lut, ..."""
    from .objectives import OBJECTIVES

    for objective in reversed([o for o in OBJECTIVES.values() if o.budget]):
        if objective.integer:
            kind = click.IntRange(min=0, max=objective.budget_max)
        else:
            kind = click.FloatRange(min=0, max=objective.budget_max, min_open=objective.budget_max is None)
        bound = 'at most' if objective.direction == 'min' else 'at least'
        text = f'Budget: {objective.label} {bound} this'
        if objective.synthesized:
            text += f'; the {OBJECTIVES[objective.synthesized].label} in a sweep with sweep.synth'
        command = click.option(objective.budget, type=kind, help=f'{text}.')(command)
    return command


STAGE_NAMES = ('data', 'baseline', 'compress', 'hls', 'csim', 'rtl', 'synth', 'vendor', 'report')


@main.command()
@click.argument('config', required=False, type=click.Path(dir_okay=False))
@click.option(
    '--out',
    'out_dir',
    default='runs/latest',
    show_default=True,
    type=click.Path(file_okay=False),
    help='Run directory.',
)
@click.option('--force', is_flag=True, help='Start over in an existing run directory (deletes it).')
@click.option(
    '--resume', is_flag=True, help='Continue a run: stages whose inputs and config did not change are not redone.'
)
@click.option(
    '--stop-after', type=click.Choice(STAGE_NAMES), help='Stop after this stage (continue later with --resume).'
)
@click.option(
    '--print-config', is_flag=True, help='Print the configuration (defaults, or CONFIG merged over them) and exit.'
)
@handle_errors
def run(config, out_dir, force, resume, stop_after, print_config):
    """Run every stage on CONFIG (YAML; default: digits CNN) and write a report.

    Stages: data, baseline, compress, hls, csim, rtl, vendor, report.
    """
    from rich.console import Console

    from .config import dump_config, load_config

    run_config = load_config(config)
    if print_config:
        click.echo(dump_config(run_config), nl=False)
        return
    import_tensorflow_quietly()  # first: telling a PyTorch model file apart imports pruner, hence Keras
    if not resume:  # a missing model file stops the run before its directory exists
        from .pytorch import check_model_file

        check_model_file(run_config.model.path)
    from .pipeline import run_pipeline
    from .stages import STAGES
    from .summary import print_summary

    console = Console(stderr=True, highlight=False)
    ctx = run_pipeline(run_config, out_dir, STAGES, force=force, resume=resume, console=console, stop_after=stop_after)
    if 'report' in ctx.records:
        print_summary(ctx)
    else:
        click.echo(
            f'stopped after {stop_after}; continue with: lpsubnet run {config or ""} --out {out_dir} --resume'.replace(
                '  ', ' '
            )
        )
    # A design that differs from its QKeras model ends the run as a failure (exit 3), after
    # its report is written: it shows the counts, and no figure of it is a result.
    from hls_backend.errors import MismatchError

    from .verdict import design_mismatches

    mismatches = design_mismatches(ctx.records)
    if mismatches:
        _fail(MismatchError('NOT EXACT against the QKeras model: ' + '; '.join(mismatches)))


@main.command()
@click.argument('config', type=click.Path(dir_okay=False))
@click.option(
    '--out',
    'out_dir',
    default='runs/sweep',
    show_default=True,
    type=click.Path(file_okay=False),
    help='Sweep directory.',
)
@click.option(
    '--address',
    help="A running Ray cluster (host:port, or auto); default: a local Ray instance on this machine's cores. "
    'Every node must see --out at the same path.',
)
@click.option(
    '--max-concurrent', type=click.IntRange(min=1), help='At most this many trials at once (default: one per CPU).'
)
@click.option('--resume', is_flag=True, help='Continue a sweep: finished trials (keyed by their parameters) are kept.')
@click.option('--force', is_flag=True, help='Start over in an existing sweep directory (deletes it).')
@budget_options
@handle_errors
def sweep(config, out_dir, address, max_concurrent, resume, force, **budgets):
    """Search compressions of one float baseline on Ray Tune: CONFIG is a run config plus a sweep: section.

    Each trial compresses, writes the HLS project, C-simulates it on the test split (bit-exact
    verdict) and estimates its RTL cost with da4ml (LUT, FF, pipeline depth: estimates, not
    synthesis; with sweep.synth: yosys each trial's RTL is also mapped by Yosys, and placed
    by nextpnr with synth.place). Writes trials.jsonl, pareto.json, report.md, report.html
    and trials/<id>/. With a budget (--max-lut, --max-footprint, --max-latency,
    --min-accuracy, --min-fmax) prints the most accurate bit-exact trial within it, or the
    closest one and what it misses; --max-lut bounds the LUTs Yosys mapped where the trials
    were synthesized.
    Exit codes as for every command: 3 when a trial's design is not bit-exact; 6 when
    --address cannot be reached, or Ray's node was lost more often than the sweep restarts it.
    """
    from pathlib import Path

    from rich.console import Console

    from .sweep import run_sweep
    from .sweep_report import answer_lines, budget_query, constraints_from_options, describe_trial
    from .sweep_space import load_sweep

    sweep_config = load_sweep(config)
    constraints = constraints_from_options(
        synth=sweep_config.sweep.synth is not None, place=sweep_config.run_config.synth.place, **budgets
    )
    console = Console(stderr=True, highlight=False)
    result = run_sweep(
        sweep_config,
        out_dir,
        address=address,
        max_concurrent=max_concurrent,
        resume=resume,
        force=force,
        console=console,
        constraints=constraints,
    )
    trials = result['trials']
    ok = [t for t in trials if t['status'] == 'ok']
    inexact = [t for t in trials if t['status'] == 'not_exact']
    click.echo(
        f'{len(trials)} trials: {len(ok)} ok (bit-exact), {len(inexact)} NOT EXACT, '
        f'{len(trials) - len(ok) - len(inexact)} failed; Pareto front: {len(result["pareto"])} trials'
    )
    for trial in result['pareto']:
        click.echo(f'  {describe_trial(trial)}')
    if constraints:
        for line in answer_lines(budget_query(trials, constraints), constraints):
            click.echo(line)
    elif result['pareto']:
        click.echo(f'most accurate trial: {result["pareto"][0]["run_dir"]}')
    out = Path(out_dir).absolute()
    click.echo(f'report: {out / "report.html"}')
    if result['restarts']:
        click.echo(
            f'Ray lost its node {len(result["restarts"])} time(s) during the sweep and was restarted; '
            'the trials finished before were kept (sweep.json, sessions)'
        )
    resume = f'lpsubnet sweep {config} --out {out_dir} --resume'
    if result['lost']:
        from .sweep import ClusterError

        _fail(ClusterError(f'{result["lost"]}; the finished trials are kept: continue with `{resume}`'))
    if result['stopped']:
        click.echo(f'stopped early; continue with: {resume}')
        interrupts.exiting()
        sys.exit(128 + (interrupts.signal_received() or 2))  # 130 after Ctrl-C (SIGINT), 143 after SIGTERM
    if inexact:
        from hls_backend.errors import MismatchError

        _fail(
            MismatchError(
                f'{len(inexact)} trial(s) NOT EXACT against the QKeras model (left out of the front and of budget '
                f'answers; see the report): '
                + '; '.join(f'{t["trial_id"]}: {t["error"].split(": ", 1)[-1]}' for t in inexact)
            )
        )


if __name__ == '__main__':
    main()
