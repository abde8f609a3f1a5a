"""``lpsubnet run`` end to end on a tiny configuration: every stage, caching, resume, errors.

The run trains nothing big and builds a small RTL design: a tiny float CNN of the
test's own (``model.path``: a block like the default CNN's first one, 4 -> 2 channels,
then the classifier) on the bundled digits, with explicit small budgets. The default
CNN's training goes through the same stages in test_no_lost_work.py. The commands
run in process (fpga_tests.cli_helpers.cli). The shared run is only read by the
tests; a test that changes a run works on its own copy, so the order does not matter.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from fpga_tests.cli_helpers import cli
from lpsubnet.config import ConfigError, load_config, parse_config
from lpsubnet.metrics_schema import Metrics

BUDGETS = {
    'seed': 3,
    'compress': {'epochs': 3, 'qat_epochs': 1, 'weight_bits': 6, 'activation_bits': 8},
    'rtl': {'enabled': True},
}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """The run configuration (a dict): BUDGETS with a tiny float CNN, trained briefly."""
    from fpga_tests.sweep_helpers import train_tiny_model

    return dict(BUDGETS, model={'path': train_tiny_model(tmp_path_factory.mktemp('model'))})


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp('cfg') / 'tiny.yaml'
    path.write_text(yaml.safe_dump(tiny))
    return path


@pytest.fixture(scope='module')
def interrupted_then_resumed(tmp_path_factory, tiny_config):
    """A run stopped after the hls stage, then resumed; returns (run dir, both results).
    Shared: tests read it and never change it (copy it first)."""
    run = tmp_path_factory.mktemp('runs') / 'run'
    first = cli('run', tiny_config, '--out', run, '--stop-after', 'hls')
    assert first.returncode == 0, first.stderr
    second = cli('run', tiny_config, '--out', run, '--resume')
    assert second.returncode == 0, second.stderr
    return run, first, second


def own_copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / 'run'
    shutil.copytree(run, copy, symlinks=True)
    return copy


def test_stop_after_hls_leaves_a_resumable_run(interrupted_then_resumed):
    run, first, _ = interrupted_then_resumed
    assert 'continue with: lpsubnet run' in first.stdout and '--resume' in first.stdout


def test_resume_does_not_redo_finished_stages(interrupted_then_resumed):
    run, _, second = interrupted_then_resumed
    for stage in ('data', 'baseline', 'compress', 'hls'):
        assert f'{stage}: ' in second.stderr
        record = json.loads((run / 'stages' / f'{stage}.json').read_text())
        assert record['cached'] is False  # written by the first process, read back by the second
    cached_lines = [line for line in second.stderr.splitlines() if line.endswith(': cached')]
    assert len(cached_lines) == 4
    metrics = json.loads((run / 'metrics.json').read_text())
    stages = {s['name']: s for s in metrics['stages']}
    assert [stages[n]['cached'] for n in ('data', 'baseline', 'compress', 'hls')] == [True] * 4
    assert stages['csim']['cached'] is False


def test_run_directory_holds_the_measured_figures(interrupted_then_resumed):
    run, _, second = interrupted_then_resumed
    metrics = Metrics.model_validate_json((run / 'metrics.json').read_text())
    test_size = json.loads((run / 'stages' / 'data.json').read_text())['summary']['test']
    assert metrics.csim.samples == test_size and metrics.csim.exact_matches == test_size
    assert metrics.csim.exact
    # csim accuracy equals the QKeras model's: exactness carries to the argmax.
    assert metrics.accuracy.csim == pytest.approx(metrics.accuracy.quantized, abs=0.5 / test_size)
    assert metrics.compressed_cost.footprint_bits < metrics.float_cost.footprint_bits / 4
    assert all(
        r.channels_after == r.channels_before - r.channels_before // 2
        for r in metrics.layers
        if r.channels_before and r.name != 'classifier'
    )
    assert metrics.vendor.status == 'tool missing' and 'lpsubnet synth' in metrics.vendor.message
    # The RTL route simulated the whole test set clock by clock, bit-exactly.
    assert metrics.rtl.samples == test_size and metrics.rtl.exact_matches == test_size
    assert metrics.rtl.latency_cycles >= 1 and metrics.rtl.initiation_interval == 1
    assert metrics.accuracy.rtl == metrics.accuracy.csim
    assert metrics.rtl.resources['LUT'] > 0
    # The tiny design is under AUTO_MAX_LUT: Yosys mapped it (the project's part: UltraScale+);
    # its netlist is not simulated unless synth.check_netlist (test_open_synth.py does).
    assert metrics.synth.family == 'xcup' and metrics.synth.lut > 0 and metrics.synth.ff > 0
    assert metrics.synth.netlist is None and metrics.synth_skipped_reason is None
    report = (run / 'report.md').read_text()
    assert 'open synthesis, Yosys xcup' in report
    assert f'{test_size}/{test_size} (bit-exact)' in report
    html = (run / 'report.html').read_text()
    assert html.count('data:image/png;base64,') == 2 and f'{test_size}/{test_size}' in html
    assert 'bit-exact' in second.stdout and 'report.html' in second.stdout


def test_changed_config_redoes_only_affected_stages(interrupted_then_resumed, tiny, tmp_path):
    run = own_copy(interrupted_then_resumed[0], tmp_path)
    changed = dict(tiny, hls={'io_type': 'io_stream'})
    path = tmp_path / 'changed.yaml'
    path.write_text(yaml.safe_dump(changed))
    proc = cli('run', path, '--out', run, '--resume', '--stop-after', 'hls')
    assert proc.returncode == 0, proc.stderr
    cached = {line.split(':')[0] for line in proc.stderr.splitlines() if line.endswith(': cached')}
    assert cached == {'data', 'baseline', 'compress'}
    assert json.loads((run / 'stages' / 'hls.json').read_text())['cached'] is False
    # outdated records and the published report are removed; the rtl stage does not use hls
    assert not (run / 'stages' / 'csim.json').exists() and not (run / 'metrics.json').exists()
    assert (run / 'stages' / 'rtl.json').exists()


def test_vendor_stage_runs_the_tool_on_its_own_copy(interrupted_then_resumed, tiny, tmp_path, stub_vitis_run):
    """With a (stub) vitis-run on PATH, the vendor stage synthesizes a copy of the HLS
    project inside vendor/, parses its reports, and leaves hls/ as written."""
    run = own_copy(interrupted_then_resumed[0], tmp_path)
    config = tmp_path / 'vendor.yaml'
    config.write_text(yaml.safe_dump(dict(tiny, vendor={'steps': 'csynth,cosim'})))
    proc = cli('run', config, '--out', run, '--resume')
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['vendor']['status'] == 'ran', metrics['vendor']
    assert metrics['vendor']['result']['latency_cycles'] == 10  # from the fixture co-simulation report
    assert (run / 'vendor' / 'project' / 'called_with.txt').exists()
    assert not (run / 'hls' / 'project' / 'called_with.txt').exists()
    assert not (run / 'hls' / 'project' / 'myproject_prj').exists()


def test_existing_run_dir_is_refused(tmp_path, tiny_config):
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'mine.txt').write_text('keep')
    proc = cli('run', tiny_config, '--out', run)
    # Not a run directory: neither --resume nor --force would help, so neither is suggested.
    assert proc.returncode == 2 and 'is not an lpsubnet run directory' in proc.stderr
    assert 'choose another --out' in proc.stderr
    assert [p.name for p in run.iterdir()] == ['mine.txt']
    # --force replaces earlier runs only, never a directory of the user's.
    proc = cli('run', tiny_config, '--out', run, '--force')
    assert proc.returncode == 2 and 'refusing to delete it even with --force' in proc.stderr
    assert [p.name for p in run.iterdir()] == ['mine.txt']


@pytest.mark.parametrize(
    'config,message',
    [
        ({'compress': {'sparsity': 1.2}}, "config key 'compress.sparsity': Input should be less than 1"),
        ({'hls': {'io_type': 'io_serial'}}, "config key 'hls.io_type': Input should be 'io_parallel' or 'io_stream'"),
        ({'compress': {'schedul': 'layerwise'}}, "unknown config key 'compress.schedul'; known keys here: sparsity"),
        ({'modle': {}}, "unknown config key 'modle'"),
        ({'compress': {'weight_bits': 'eight'}}, "config key 'compress.weight_bits': Input should be a valid integer"),
        ({'vendor': {'steps': 'csynth,place'}}, "unknown step(s) ['place']"),
    ],
)
def test_bad_config_names_key_and_allowed_values(config, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert message in str(info.value)
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(config))
    proc = cli('run', path, '--out', tmp_path / 'run')
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / 'run').exists()


def test_print_config_round_trips(tmp_path):
    proc = cli('run', '--print-config')
    assert proc.returncode == 0
    path = tmp_path / 'defaults.yaml'
    path.write_text(proc.stdout)
    assert load_config(path) == load_config(None)
    assert 'sparsity: 0.5' in proc.stdout and 'backend: Vitis' in proc.stdout


def test_a_design_that_is_not_exact_fails_the_run_after_its_report(
    interrupted_then_resumed, tiny_config, tmp_path, monkeypatch
):
    """Negative control: the hls stage run again writes a project with one bias zeroed (the
    design, not the QKeras reference): the run writes its report, says NOT EXACT at its
    top and in the summary, and exits 3 with the counts."""
    from fpga_tests.inexact_designs import hls_stage_writes_a_zeroed_bias

    run = own_copy(interrupted_then_resumed[0], tmp_path)
    changed = hls_stage_writes_a_zeroed_bias(monkeypatch)
    (run / 'stages' / 'hls.json').unlink()
    proc = cli('run', tiny_config, '--out', run, '--resume')
    assert changed, 'the hls stage did not run again'
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    metrics = json.loads((run / 'metrics.json').read_text())  # the report of this run, published
    csim = metrics['csim']
    assert not csim['exact'] and csim['exact_matches'] < csim['samples'], (changed, csim)
    assert metrics['verdict']['exact'] is False
    line = f'C simulation: {csim["exact_matches"]}/{csim["samples"]} samples bit-exact'
    assert metrics['verdict']['mismatches'][0].startswith(line)
    assert metrics['rtl']['exact']  # the RTL route does not read the HLS project: still exact
    assert f'error: NOT EXACT against the QKeras model: {line}' in proc.stderr
    assert 'NOT EXACT' in proc.stdout and 'report:' in proc.stdout
    report = (run / 'report.md').read_text()
    assert report.index('**NOT EXACT') < report.index('## Result') and line in report
    assert 'NOT EXACT' in (run / 'report.html').read_text()


def test_finished_stages_name_their_final_project_directories(interrupted_then_resumed):
    """Stages are built under a temporary name (``.rtl.*.partial``) and renamed: rtl.json,
    csim.json, the stage records and the records inside the projects name the final
    directory (rtl.json once named the temporary one)."""
    run = interrupted_then_resumed[0]
    for stage, result_file, project_records in (
        ('rtl', 'rtl.json', ('lpsubnet_rtl.json', 'lpsubnet_rtl_project.json')),
        ('csim', 'csim.json', ('lpsubnet_csim.json', 'lpsubnet_project.json')),
        ('synth', 'synth.json', ('lpsubnet_synth.json', 'lpsubnet_rtl_project.json')),
    ):
        final = str((run / stage / 'project').resolve())
        for summary in (
            json.loads((run / stage / result_file).read_text()),
            json.loads((run / 'stages' / f'{stage}.json').read_text())['summary'],
        ):
            assert summary['project_dir'] == final, (stage, summary['project_dir'])
            # csim and rtl carry second checks; the synth stage none without synth.check_netlist.
            assert bool(summary['checks']) == (stage != 'synth')
            assert all(c['project_dir'] == final for c in summary['checks'].values())
        for name in project_records:
            assert json.loads((run / stage / 'project' / name).read_text())['project_dir'] == final, name
    records = [*run.glob('*/*.json'), *run.glob('*/project/lpsubnet_*.json')]
    assert len(records) > 10
    assert not [str(p) for p in records if '.partial' in p.read_text()]
