"""``sweep.synth: yosys``: each trial's RTL mapped by Yosys (and with ``synth.place``
placed by nextpnr), the objectives lut_synth, ff_synth and fmax_mhz, and budgets answered
in synthesized figures (``--max-lut`` bounds the LUTs Yosys mapped).

The configuration checks and the budget's choice of figure are quick; a trial (its RTL
built by Verilator, then mapped by Yosys: about a minute each) runs in the slow suite, in
process and as a whole sweep on Ray with placement and both budgets. The tiny model runs
at a low precision there (about 6,000 LUTs).
"""

import json

import pytest

from fpga_tests.cli_helpers import cli
from fpga_tests.sweep_helpers import SWEEP, read_jsonl, train_tiny_model, write_config

# Small enough for Yosys in seconds: the tiny CNN at half its channels, 4-bit weights and activations.
SMALL = {'compress': {'epochs': 2, 'qat_epochs': 1, 'weight_bits': 4, 'activation_bits': 4}}
SYNTH_SWEEP = dict(SWEEP, space={'compress.sparsity': [0.5]}, synth='yosys', objectives=['accuracy', 'lut_synth'])


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp('model'))


@pytest.mark.parametrize(
    'sweep, base, message',
    [
        (dict(SWEEP, objectives=['accuracy', 'lut_synth']), {}, 'lut_synth, which needs sweep.synth: yosys'),
        (
            dict(SYNTH_SWEEP, objectives=['accuracy', 'fmax_mhz']),
            {},
            'fmax_mhz, which needs sweep.synth: yosys and synth.place: true',
        ),  # fmt: skip
        (dict(SWEEP, synth='vivado'), {}, "config key 'sweep.synth'"),
    ],
)
def test_a_synthesized_objective_without_synthesis_is_refused(tmp_path, tiny_model, sweep, base, message):
    config = write_config(tmp_path, tiny_model, sweep=sweep, **base)
    result = cli('sweep', config, '--out', tmp_path / 'out')
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'out').exists()


def test_min_fmax_without_placement_is_refused(tmp_path, tiny_model):
    config = write_config(tmp_path, tiny_model, sweep=SYNTH_SWEEP)
    result = cli('sweep', config, '--out', tmp_path / 'out', '--min-fmax', '100')
    assert result.returncode == 2, result.stderr
    assert '--min-fmax bounds the Fmax (nextpnr on ECP5, MHz), which needs sweep.synth: yosys and synth.place' in (
        result.stderr
    )
    assert not (tmp_path / 'out').exists()


def test_the_lut_budget_bounds_the_synthesized_luts_where_the_trials_are_synthesized():
    from lpsubnet.sweep_report import constraints_from_options

    (estimate,) = constraints_from_options(max_lut=5000)
    (mapped,) = constraints_from_options(synth=True, max_lut=5000)
    assert (estimate.metric, estimate.limit) == ('lut_estimate', 5000)
    assert (mapped.metric, mapped.limit, mapped.option) == ('lut_synth', 5000, '--max-lut')
    assert mapped.describe() == '--max-lut 5000 LUT (Yosys)'
    (fmax,) = constraints_from_options(synth=True, place=True, min_fmax=80)
    assert (fmax.metric, fmax.bound) == ('fmax_mhz', 'min')


@pytest.mark.slow
def test_a_synthesized_trial_reports_yosys_figures_and_a_lut_budget_is_answered_in_them(tmp_path, tiny_model):
    """In process: the base stages, then one trial with sweep.synth: its RTL simulated
    exact, mapped by Yosys; lut_synth/ff_synth are the mapping's counts; a --max-lut
    query is met or missed by those counts, not by da4ml's estimate."""
    from lpsubnet.pipeline import run_pipeline
    from lpsubnet.stages import STAGES
    from lpsubnet.sweep import run_trial
    from lpsubnet.sweep_report import answer_lines, budget_query, constraints_from_options
    from lpsubnet.sweep_space import load_sweep

    config = load_sweep(write_config(tmp_path, tiny_model, sweep=SYNTH_SWEEP, **SMALL))
    assert config.run_config.rtl.enabled is True and config.run_config.synth.enabled is True
    out = tmp_path / 'out'
    run_pipeline(config.run_config, out / 'base', STAGES[:2])
    record = run_trial(str(out), config.base, {'compress.sparsity': 0.5}, synth=True)
    assert record['status'] == 'ok', record.get('traceback') or record.get('error')
    metrics = record['metrics']
    synth = json.loads((out / 'trials' / record['trial_id'] / 'synth' / 'synth.json').read_text())
    assert metrics['lut_synth'] == synth['resources']['LUT'] > 0
    assert metrics['ff_synth'] == synth['resources']['FF'] > 0
    assert metrics['synth_family'] == 'xcup' and metrics['rtl_exact'] and 'fmax_mhz' not in metrics
    record['role'] = 'trial'
    lut, estimate = metrics['lut_synth'], metrics['lut_estimate']
    assert lut != estimate  # else the query below could not tell them apart
    between = (lut + estimate) // 2
    answer = budget_query([record], constraints_from_options(synth=True, max_lut=between))
    assert answer['met'] is (lut <= between)
    answer = budget_query([record], constraints_from_options(synth=True, max_lut=lut))
    assert answer['met'] and 'Yosys (xcup): ' in answer_lines(answer, [])[0]


@pytest.mark.slow
def test_a_placed_sweep_answers_lut_and_fmax_budgets_from_yosys_and_nextpnr(tmp_path, tiny_model):
    """Two trials on Ray, each mapped and placed on an ECP5: the budget answer names the
    LUTs Yosys mapped and nextpnr's Fmax; the report has the synthesized columns."""
    sweep = dict(
        SYNTH_SWEEP, space={'compress.sparsity': [0.25, 0.5]}, objectives=['accuracy', 'lut_synth', 'fmax_mhz']
    )
    config = write_config(tmp_path, tiny_model, sweep=sweep, synth={'place': True}, **SMALL)
    out = tmp_path / 'out'
    result = cli('sweep', config, '--out', out, '--max-lut', '100000', '--min-fmax', '1')
    assert result.returncode == 0, result.stderr
    trials = read_jsonl(out / 'trials.jsonl')
    assert len(trials) == 2 and all(t['status'] == 'ok' for t in trials)
    for trial in trials:
        metrics = trial['metrics']
        synth = json.loads((out / 'trials' / trial['trial_id'] / 'synth' / 'synth.json').read_text())
        assert metrics['lut_synth'] == synth['resources']['LUT']
        assert metrics['fmax_mhz'] == synth['resources']['nextpnr']['fmax_mhz'] > 0
        assert metrics['synth_device'].startswith('LFE5U-')
    assert 'most accurate trial within --max-lut 100000 LUT (Yosys), --min-fmax 1 MHz (nextpnr)' in result.stdout
    assert 'nextpnr (LFE5U-' in result.stdout
    report = (out / 'report.md').read_text()
    assert '| LUT (Yosys) | FF (Yosys) | Fmax (MHz) |' in report
    assert (out / 'accuracy_vs_lut_synth.png').is_file()
