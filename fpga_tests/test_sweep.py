"""``lpsubnet sweep`` on Ray Tune: a 2-trial local sweep of a tiny model, its outputs,
resume and the budget query; bad input; a trial that raises; and (slow) a 4-trial
sweep on a two-node Ray cluster on this machine through --address.

The tiny model is the run tests' (a 4-channel conv block and the classifier, trained
briefly); each trial prunes it, writes the HLS project, C-simulates it on the test
split and asks da4ml for its cost. The sweep shared by the tests is only read; a test
that changes a sweep works on its own copy.
"""

import json
import shutil
import socket

import pytest

from fpga_tests.cli_helpers import cli
from fpga_tests.sweep_helpers import SWEEP, read_jsonl, train_tiny_model, write_config


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp('model'))


@pytest.fixture(scope='module')
def local_sweep(tmp_path_factory, tiny_model):
    """A 2-trial grid sweep on a local Ray instance; returns (config, sweep dir, result)."""
    root = tmp_path_factory.mktemp('sweep')
    config = write_config(root, tiny_model)
    out = root / 'out'
    result = cli('sweep', config, '--out', out)
    assert result.returncode == 0, result.stderr
    return config, out, result


def test_local_sweep_writes_every_trial_with_its_metrics(local_sweep):
    _, out, result = local_sweep
    trials = read_jsonl(out / 'trials.jsonl')
    assert sorted(t['params']['compress.sparsity'] for t in trials) == [0.25, 0.5]
    for t in trials:
        assert t['status'] == 'ok'
        assert set(t) >= {'trial_id', 'params', 'metrics', 'seconds', 'node_id', 'status'}
        m = t['metrics']
        assert set(m) >= {
            'accuracy',
            'footprint_bits',
            'lut_estimate',
            'ff_estimate',
            'latency_cycles',
            'csim_exact',
            'csim_samples',
        }
        assert m['csim_exact'] is True and m['csim_exact_matches'] == m['csim_samples'] > 0
        assert 'estimate' in m['estimate_source']
        assert m['lut_estimate'] > 0 and m['ff_estimate'] > 0
        assert (out / 'trials' / t['trial_id'] / 'csim' / 'csim.json').exists()
        assert t['node_id']
    by_sparsity = {t['params']['compress.sparsity']: t['metrics'] for t in trials}
    assert by_sparsity[0.5]['footprint_bits'] < by_sparsity[0.25]['footprint_bits']
    assert 'Pareto front' in result.stdout and 'report:' in result.stdout


def test_pareto_and_reports(local_sweep):
    _, out, _ = local_sweep
    pareto = json.loads((out / 'pareto.json').read_text())
    assert pareto['objectives'] == {'accuracy': 'max', 'footprint_bits': 'min', 'lut_estimate': 'min'}
    trials = {t['trial_id']: t for t in read_jsonl(out / 'trials.jsonl')}
    from lpsubnet.sweep_report import pareto_front

    assert [t['trial_id'] for t in pareto['trials']] == [
        t['trial_id'] for t in pareto_front(list(trials.values()), list(pareto['objectives']))
    ]
    assert pareto['trials']
    html = (out / 'report.html').read_text()
    assert html.count('data:image/png;base64,') == 2 and 'src="http' not in html
    md = (out / 'report.md').read_text()
    assert 'Pareto front' in md and 'estimate' in md
    for t in pareto['trials']:
        assert t['trial_id'] in md and t['trial_id'] in html


def test_resume_runs_nothing_and_answers_a_budget_query(local_sweep, tmp_path):
    config, out, _ = local_sweep
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy, symlinks=True)
    trials = read_jsonl(copy / 'trials.jsonl')
    small = min(trials, key=lambda t: t['metrics']['lut_estimate'])
    limit = small['metrics']['lut_estimate']
    result = cli('sweep', config, '--out', copy, '--resume', '--max-lut', limit)
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(copy / 'trials.jsonl')) == 2  # nothing recomputed
    assert f'most accurate trial within --max-lut {limit}' in result.stdout
    assert small['trial_id'] in result.stdout
    none = cli('sweep', config, '--out', copy, '--resume', '--max-lut', 1, '--min-accuracy', 0.1)
    assert none.returncode == 0, none.stderr
    assert 'no trial meets --max-lut 1' in none.stdout
    assert 'closest:' in none.stdout and 'it misses --max-lut' in none.stdout


def test_a_trial_that_raises_is_recorded_as_an_error(local_sweep, tmp_path):
    """Run in process (no Ray): the trial's own failure becomes its record."""
    from lpsubnet.sweep import run_trial
    from lpsubnet.sweep_space import load_sweep

    config, out, _ = local_sweep
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy, symlinks=True)
    base = load_sweep(config).base
    record = run_trial(str(copy), base, {'compress.per_layer_sparsity.no_such_layer': 0.5})
    assert record['status'] == 'error'
    assert 'no_such_layer' in record['error']
    assert record['seconds'] is not None and 'metrics' not in record


def test_a_trial_whose_design_is_wrong_is_not_exact(local_sweep, tmp_path, monkeypatch):
    """Negative control of a trial's bit-exact flag (the table of
    fpga_tests/test_negative_controls.py): one weight file of the trial's HLS project is
    negated as the hls stage writes it; the trial's C simulation must find the mismatch
    and its record say csim_exact false. Run in process on a copy; only the hls stage
    and those after it run again."""
    import hls_backend
    from fpga_tests.hls_models import negate_first_weight
    from lpsubnet.sweep import run_trial
    from lpsubnet.sweep_space import load_sweep

    config, out, _ = local_sweep
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy, symlinks=True)
    trial = read_jsonl(copy / 'trials.jsonl')[0]
    assert trial['metrics']['csim_exact'] is True
    (copy / 'trials' / trial['trial_id'] / 'stages' / 'hls.json').unlink()
    write_project = hls_backend.write_project

    def write_a_wrong_design(model_path, out_dir, *args, **kwargs):
        info = write_project(model_path, out_dir, *args, **kwargs)
        negate_first_weight(out_dir)
        return info

    monkeypatch.setattr(hls_backend, 'write_project', write_a_wrong_design)
    record = run_trial(str(copy), load_sweep(config).base, trial['params'])
    assert 'metrics' in record, record.get('traceback')
    metrics = record['metrics']
    assert metrics['csim_exact'] is False
    assert 0 <= metrics['csim_exact_matches'] < metrics['csim_samples'] == trial['metrics']['csim_samples']


@pytest.mark.parametrize(
    'sweep, message',
    [
        ({'space': {'compress.sparsty': [0.5]}}, "unknown sweep.space key 'compress.sparsty'"),
        ({'space': {}}, 'sweep.space is empty'),
        ({'space': {'compress.sparsity': []}}, 'sweep.space.compress.sparsity is an empty list'),
        ({'space': {'compress.importance': {'low': 0, 'high': 1}}}, 'a range needs a numeric key'),
        ({'space': {'compress.sparsity': [0.5, 1.5]}}, 'value 1.5 is not allowed'),
        ({'space': {'model.epochs': [1, 2]}}, 'the float baseline is trained once'),
        ({'space': {'compress.sparsity': [0.5]}, 'search': 'random'}, 'sweep.trials is required'),
        ({'space': {'compress.sparsity': [0.5]}, 'serach': 'grid'}, "unknown config key 'sweep.serach'"),
    ],
)
def test_bad_sweep_configuration_is_refused(tmp_path, tiny_model, sweep, message):
    config = write_config(tmp_path, tiny_model, sweep=sweep)
    result = cli('sweep', config, '--out', tmp_path / 'out')
    assert result.returncode == 2
    assert message in result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'out').exists()


def test_unreachable_address_exits_6(tmp_path, tiny_model):
    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    config = write_config(tmp_path, tiny_model)
    result = cli('sweep', config, '--out', tmp_path / 'out', '--address', f'127.0.0.1:{port}')
    assert result.returncode == 6
    assert f'no Ray cluster reachable at --address 127.0.0.1:{port}' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'out').exists()


def test_resume_refuses_a_directory_that_is_not_a_sweep(tmp_path, tiny_model):
    config = write_config(tmp_path, tiny_model)
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'notes.txt').write_text('mine')
    result = cli('sweep', config, '--out', other, '--resume')
    assert result.returncode == 2
    assert 'is not an lpsubnet sweep directory' in result.stderr
    forced = cli('sweep', config, '--out', other, '--force')
    assert forced.returncode == 2 and (other / 'notes.txt').read_text() == 'mine'


@pytest.mark.slow
def test_two_node_cluster_runs_trials_on_both_nodes(tmp_path, tiny_model):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={'num_cpus': 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        sweep = dict(SWEEP, space={'compress.sparsity': [0.25, 0.5], 'compress.weight_bits': [4, 6]})
        config = write_config(tmp_path, tiny_model, sweep=sweep)
        result = cli('sweep', config, '--out', tmp_path / 'out', '--address', cluster.address)
        assert result.returncode == 0, result.stderr
        trials = read_jsonl(tmp_path / 'out' / 'trials.jsonl')
        assert len(trials) == 4 and all(t['status'] == 'ok' for t in trials)
        assert all(t['metrics']['csim_exact'] for t in trials)
        nodes = {t['node_id'] for t in trials}
        assert nodes == {node.node_id for node in cluster.list_all_nodes()}
    finally:
        cluster.shutdown()


@pytest.mark.slow
def test_optuna_sweep_resumes_with_the_finished_trials(tmp_path, tiny_model):
    """Optuna (multi-objective, through Ray Tune) over a range and a list; --resume with
    more trials keeps the finished ones and runs only the difference."""
    sweep = {
        'space': {'compress.sparsity': {'low': 0.2, 'high': 0.6}, 'compress.weight_bits': [4, 6]},
        'search': 'optuna',
        'trials': 2,
        'seed': 1,
    }
    config = write_config(tmp_path, tiny_model, sweep=sweep)
    out = tmp_path / 'out'
    first = cli('sweep', config, '--out', out, '--max-concurrent', '1')
    assert first.returncode == 0, first.stderr
    trials = read_jsonl(out / 'trials.jsonl')
    roles = sorted(t['role'] for t in trials)
    assert roles == ['reference', 'trial', 'trial'] and all(t['status'] == 'ok' for t in trials)
    for t in trials:
        if t['role'] == 'trial':
            assert 0.2 <= t['params']['compress.sparsity'] <= 0.6 and t['params']['compress.weight_bits'] in (4, 6)
    config = write_config(tmp_path, tiny_model, sweep=dict(sweep, trials=3))
    second = cli('sweep', config, '--out', out, '--resume', '--max-concurrent', '1')
    assert second.returncode == 0, second.stderr
    again = read_jsonl(out / 'trials.jsonl')
    assert [t['trial_id'] for t in again[: len(trials)]] == [t['trial_id'] for t in trials]
    assert len(again) == 4 and sum(t['role'] == 'trial' for t in again) == 3


def test_sweep_doc_is_made_from_the_sweep_directory(local_sweep, tmp_path):
    from lpsubnet.sweep_doc import write_doc

    _, out, _ = local_sweep
    text = write_doc(out, tmp_path / 'sweep.md', tmp_path / 'images')
    trials = read_jsonl(out / 'trials.jsonl')
    assert '**2/2 bit-exact**' in text
    for t in json.loads((out / 'pareto.json').read_text())['trials']:
        assert f'`{t["trial_id"]}`' in text
    assert 'most accurate trial within --max-lut' in text and 'no trial meets' in text
    assert str(out) not in text  # no absolute path of this machine
    assert (tmp_path / 'images' / 'sweep_accuracy_vs_lut.png').stat().st_size > 0
    assert len(trials) == 2


def test_trial_resources_ask_for_the_vendor_tool_only_where_a_node_offers_it():
    from lpsubnet.sweep import trial_resources

    assert trial_resources('vitis-run', {'CPU': 2.0, 'vitis-run': 1.0}) == {'cpu': 1, 'vitis-run': 1}
    assert trial_resources('vitis-run', {'CPU': 2.0, 'vivado_hls': 1.0}) == {'cpu': 1}
    assert trial_resources(None, {'CPU': 2.0, 'vitis-run': 1.0}) == {'cpu': 1}


def test_vendor_steps_run_in_a_trial_holding_the_tools_resource(tmp_path, tiny_model, stub_vitis_run):
    """sweep.vendor with a (stub) vitis-run on PATH: the local Ray instance offers the
    'vitis-run' resource, the trial holds one unit of it, and the vendor's reports (the
    fixture csynth report) are the trial's synthesis metrics."""
    sweep = dict(SWEEP, space={'compress.sparsity': [0.5]}, vendor=True)
    config = write_config(tmp_path, tiny_model, sweep=sweep, vendor={'steps': 'csynth'})
    result = cli('sweep', config, '--out', tmp_path / 'out')
    assert result.returncode == 0, result.stderr
    (trial,) = read_jsonl(tmp_path / 'out' / 'trials.jsonl')
    assert trial['status'] == 'ok', trial.get('error')
    assert trial['ray_resources'].get('vitis-run') == 1.0
    metrics = trial['metrics']
    assert metrics['vendor_status'] == 'ran' and metrics['csim_exact']
    assert metrics['synth_resources']['LUT'] == 10894 and metrics['synth_latency_cycles'] == 11


def test_vendor_steps_without_the_tool_record_the_command_to_run(local_sweep, tmp_path):
    """Run in process on a copy of a finished sweep: only the vendor stage is new, and
    with no vitis-run anywhere it records the one-line hint instead of failing the trial."""
    from lpsubnet.sweep import run_trial
    from lpsubnet.sweep_space import load_sweep

    assert shutil.which('vitis-run') is None
    config, out, _ = local_sweep
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy, symlinks=True)
    record = run_trial(str(copy), load_sweep(config).base, {'compress.sparsity': 0.5}, vendor=True)
    assert record['status'] == 'ok', record.get('error')
    assert record['metrics']['vendor_status'] == 'tool missing'
    assert record['metrics']['vendor_message'].startswith('vitis-run not found on PATH')
    assert 'synth_resources' not in record['metrics']


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_and_resume_runs_the_rest(tmp_path, tiny_model):
    """SIGINT (Ctrl-C) once a trial has finished: exit 130 with the --resume command, the
    finished trials kept as they were; --resume then runs only the others."""
    import signal
    import subprocess
    import sys
    import time

    sweep = dict(SWEEP, space={'compress.sparsity': [0.25, 0.5], 'compress.weight_bits': [4, 6]})
    config = write_config(tmp_path, tiny_model, sweep=sweep)
    out = tmp_path / 'out'
    command = [sys.executable, '-m', 'lpsubnet.cli', 'sweep', str(config), '--out', str(out), '--max-concurrent', '1']
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trials_file = out / 'trials.jsonl'
    deadline = time.monotonic() + 600
    while not (trials_file.exists() and trials_file.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, 'no trial finished in 10 minutes'
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, (len(read_jsonl(trials_file)), stdout[-2000:], stderr[-3000:])
    assert f'--out {out} --resume' in stdout
    kept = read_jsonl(trials_file)
    assert 1 <= len(kept) < 4 and all(t['status'] == 'ok' for t in kept)
    resumed = cli('sweep', config, '--out', out, '--resume')
    assert resumed.returncode == 0, resumed.stderr
    trials = read_jsonl(trials_file)
    assert trials[: len(kept)] == kept  # finished trials are never recomputed
    assert sorted(t['trial_id'] for t in trials) == sorted({t['trial_id'] for t in trials})
    assert len(trials) == 4 and all(t['status'] == 'ok' for t in trials)


def test_a_trial_whose_design_is_not_exact_is_a_failure(local_sweep, tmp_path, monkeypatch):
    """Negative control on a copy of the finished sweep: a trial's hls stage run again
    writes its HLS project with one bias zeroed (the design, not the reference), in process,
    no Ray: the trial's status is not_exact with the mismatch counts; then the sweep
    (--resume: nothing left to run, a not-exact trial is final) leaves it out of the front
    and the budget answer, lists it as failed in the report and exits 3."""
    from fpga_tests.inexact_designs import hls_stage_writes_a_zeroed_bias
    from lpsubnet.sweep import append_trial, run_trial
    from lpsubnet.sweep_space import load_sweep

    config, out, _ = local_sweep
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy, symlinks=True)
    trials = {t['params']['compress.sparsity']: t for t in read_jsonl(copy / 'trials.jsonl')}
    bad, good = trials[0.25], trials[0.5]
    trial_dir = copy / 'trials' / bad['trial_id']
    changed = hls_stage_writes_a_zeroed_bias(monkeypatch)
    (trial_dir / 'stages' / 'hls.json').unlink()
    record = run_trial(str(copy), load_sweep(config).base, bad['params'])
    monkeypatch.undo()  # the sweep below runs nothing again
    assert changed, 'the hls stage did not run again'
    assert record['status'] == 'not_exact', record.get('error')
    m = record['metrics']
    assert m['csim_exact'] is False and m['csim_exact_matches'] < m['csim_samples']
    assert f'C simulation: {m["csim_exact_matches"]}/{m["csim_samples"]} samples bit-exact' in record['error']
    append_trial(copy, record)  # as the sweep's Tune callback records it

    limit = max(t['metrics']['lut_estimate'] for t in trials.values())
    result = cli('sweep', config, '--out', copy, '--resume', '--max-lut', limit)
    assert result.returncode == 3, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    assert '1 trial(s) NOT EXACT against the QKeras model' in result.stderr and bad['trial_id'] in result.stderr
    assert '2 trials: 1 ok (bit-exact), 1 NOT EXACT, 0 failed' in result.stdout
    assert len(read_jsonl(copy / 'trials.jsonl')) == 3  # nothing ran again
    assert [t['trial_id'] for t in json.loads((copy / 'pareto.json').read_text())['trials']] == [good['trial_id']]
    assert f'most accurate trial within --max-lut {limit}' in result.stdout
    assert good['trial_id'] in result.stdout.split('most accurate trial within')[1]
    md = (copy / 'report.md').read_text()
    assert '**1 trial(s) NOT EXACT**' in md
    failed_section = md.split('## Failed trials')[1].split('## All trials')[0]
    assert bad['trial_id'] in failed_section and 'NOT EXACT' in failed_section
    assert bad['trial_id'] not in md.split('## All trials')[1]  # not among the results


def test_a_record_written_ok_but_inexact_reads_as_not_exact(tmp_path):
    """A trials.jsonl line of an older lpsubnet (status ok beside csim_exact false, as in
    issue 27's letter sweep) is read as not_exact: never a candidate."""
    from lpsubnet.sweep import read_trials
    from lpsubnet.sweep_report import candidates

    old = {'trial_id': 't1', 'params': {}, 'status': 'ok', 'metrics': {'csim_exact': False, 'accuracy': 0.9}}
    (tmp_path / 'trials.jsonl').write_text(json.dumps(old) + '\n')
    (record,) = read_trials(tmp_path)
    assert record['status'] == 'not_exact' and candidates([record]) == []


def test_resume_leaves_finished_trials_and_runs_failed_ones(local_sweep, tmp_path):
    """What --resume runs: the failed trials and those never recorded, not the ok or
    not-exact ones (the slow test below runs a failed trial again through Ray)."""
    from lpsubnet.sweep import append_trial, remaining
    from lpsubnet.sweep_space import load_sweep

    config, out, _ = local_sweep
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy, symlinks=True)
    sweep = load_sweep(config)
    first, second = read_jsonl(copy / 'trials.jsonl')
    assert remaining(sweep, copy) == ([], None, 0)
    for status, runs_again in (('error', True), ('not_exact', False), ('ok', False)):
        append_trial(copy, {**second, 'status': status, 'error': 'recorded by the test'})
        points, _, _ = remaining(sweep, copy)
        assert points == ([second['params']] if runs_again else []), status


@pytest.mark.slow
def test_a_failed_trial_is_run_again_on_resume(local_sweep, tmp_path):
    """A trial that failed (here its estimate stage could not write its directory) is
    recorded as an error; --resume runs it again on Ray, its stages already done are
    reused, and the trial that had finished is not run again."""
    from lpsubnet.sweep import append_trial, run_trial
    from lpsubnet.sweep_space import load_sweep

    config, out, _ = local_sweep
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy, symlinks=True)
    trials = {t['params']['compress.sparsity']: t for t in read_jsonl(copy / 'trials.jsonl')}
    trial_dir = copy / 'trials' / trials[0.5]['trial_id']
    (trial_dir / 'trial.json').unlink()
    shutil.rmtree(trial_dir / 'estimate')
    (trial_dir / 'stages' / 'estimate.json').unlink()
    (trial_dir / 'estimate').write_text('in the way\n')  # the stage cannot create its directory
    failed = run_trial(str(copy), load_sweep(config).base, trials[0.5]['params'])
    assert failed['status'] == 'error' and 'estimate' in failed['error'], failed.get('error')
    append_trial(copy, failed)
    (trial_dir / 'estimate').unlink()

    result = cli('sweep', config, '--out', copy, '--resume')
    assert result.returncode == 0, result.stderr[-3000:]
    lines = read_jsonl(copy / 'trials.jsonl')
    assert [t['status'] for t in lines] == ['ok', 'ok', 'error', 'ok']
    again = lines[-1]
    assert again['trial_id'] == trials[0.5]['trial_id'] and again['node_id']  # ran again, on Ray
    assert again['metrics'] == trials[0.5]['metrics'] and again['retries'] == 0
    cached = json.loads((trial_dir / 'stages' / 'compress.json').read_text())
    assert cached['cached'] is False and cached == json.loads(
        (out / 'trials' / trials[0.5]['trial_id'] / 'stages' / 'compress.json').read_text()
    )  # the compression was not redone


def test_node_watch_stops_tune_when_the_driver_node_dies_or_no_cpu_is_left(monkeypatch):
    """NodeWatch (the stopper that ends a Tune left waiting for a dead node) on Ray's node
    table, faked: quiet while the driver's node lives, stops when it is dead, and when the
    cluster has offered no CPU for NO_CPU_SECONDS."""
    import ray

    from lpsubnet.sweep import display, driver

    nodes = [{'NodeID': 'a' * 56, 'Alive': True, 'Resources': {'CPU': 2.0}}]
    monkeypatch.setattr(ray, 'nodes', lambda: nodes)
    state = {'node_id': 'a' * 56, 'lost': None, 'checked': 0.0, 'no_cpu_since': None}
    monkeypatch.setitem(display.DRIVER_STATE, -1, state)
    watch = driver.NodeWatch(-1)
    assert watch.stop_all() is False and state['lost'] is None
    nodes[0] = {**nodes[0], 'Alive': False, 'DeathReasonMessage': 'the raylet exited unexpectedly'}
    state['checked'] = 0.0  # checks at most once a second
    assert watch.stop_all() is True
    assert state['lost'] == "this machine's Ray node aaaaaaaa died (the raylet exited unexpectedly)"

    nodes[:] = [{'NodeID': 'b' * 56, 'Alive': True, 'Resources': {}}, {**nodes[0], 'NodeID': 'c' * 56}]
    state.update(lost=None, no_cpu_since=None)
    assert driver._node_lost(state, now=100.0) is None
    assert driver._node_lost(state, now=100.0 + driver.NO_CPU_SECONDS - 1) is None
    assert 'no CPU' in driver._node_lost(state, now=100.0 + driver.NO_CPU_SECONDS)


def test_lost_ray_sessions_are_restarted_at_most_max_ray_restarts_times(monkeypatch, tmp_path):
    """The sweep's restart loop with its Ray sessions faked: a session that loses its node
    is followed by a new one while trials are left; one that finishes ends the loop; after
    MAX_RAY_RESTARTS restarts the sweep gives up and says why (the CLI exits 6)."""
    from lpsubnet.sweep import driver

    monkeypatch.setattr(driver, 'remaining', lambda config, out: ([{'compress.sparsity': 0.5}], None, 0))
    monkeypatch.setattr(driver, 'read_trials', lambda out: [])
    sessions = iter([{'lost': 'node gone'}, {'lost': 'node gone again'}, {'stopped': False}])
    monkeypatch.setattr(driver, '_drive_session', lambda *args: next(sessions))
    outcome = driver._tune(None, tmp_path, None, None, None)
    assert outcome['stopped'] is False and outcome['lost'] is None
    assert [r['reason'] for r in outcome['restarts']] == ['node gone', 'node gone again']

    monkeypatch.setattr(driver, '_drive_session', lambda *args: {'lost': 'the process driving Ray ended with exit 1'})
    outcome = driver._tune(None, tmp_path, None, None, None)
    assert len(outcome['restarts']) == driver.MAX_RAY_RESTARTS + 1 and outcome['stopped'] is True
    assert outcome['lost'].startswith(f'Ray lost its node {driver.MAX_RAY_RESTARTS + 1} times')
