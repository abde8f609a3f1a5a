"""make fuzz's campaign (fpga_tests/fuzz_campaign.py): targets, resuming, the record as
history, findings kept with their fate, the exit code.

The examples here are stand-ins (``run_example`` replaced by a function of the seed), so
the bookkeeping is tested in seconds; the checks themselves are those of the default
suite (test_fuzz_exact.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from fpga_tests import fuzz_campaign as campaign
from hls_backend.hls.layers import HLS_LAYERS
from hls_backend.rtl.layers import RTL_LAYERS

SMALL = ['--csim', '4', '--rtl', '2', '--pruned', '2', '--jobs', '2']
MISMATCH_RUN = ['--csim', '4', '--rtl', '4', '--pruned', '2', '--jobs', '2']


def _layers(prop):
    return sorted(RTL_LAYERS.supported() if prop == 'rtl' else HLS_LAYERS.supported())


# The stand-in's verdicts: (property, seed) -> outcome, 'exact' for the rest. A module
# global, so that the campaign's worker processes (forked) see what the test set.
VERDICTS: dict = {}


def fake_example(prop, seed, spec=None):
    """A stand-in for run_example (module level: the process pool pickles it by name)."""
    outcome = VERDICTS.get((prop, seed), 'exact')
    record = {'property': prop, 'seed': seed, 'layers': _layers(prop), 'outcome': outcome, 'seconds': 0.5}
    if outcome == 'refused':
        record.update(reason='too wide', message='layer x is too wide')
    elif outcome == 'mismatch':
        record.update(message=f'{prop} seed {seed}: 3/40 samples differ', spec={'stand-in': seed})
    return record


def verdicts(monkeypatch, table: dict) -> None:
    monkeypatch.setattr(campaign, 'run_example', fake_example)
    VERDICTS.clear()
    VERDICTS.update(table)


def _no_init():
    pass


@pytest.fixture
def record(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, '_worker_init', _no_init)
    monkeypatch.setattr(campaign, 'MP_CONTEXT', 'fork')  # the workers see the stand-in
    monkeypatch.setattr(campaign, 'tool_versions', lambda: {'hls4ml': '1.3.0', 'da4ml': '0.6.0', 'qkeras': '1.2.1'})
    results = tmp_path / 'fuzz_results.jsonl'
    return results, ['--results', str(results), '--out', str(tmp_path / 'fuzz.md')]


def _examples(results):
    return [r for r in campaign.load_jsonl(results) if 'recheck' not in r]


def test_a_campaign_stops_at_its_targets_and_resumes_without_rewriting(record, monkeypatch):
    results, paths = record
    verdicts(monkeypatch, {})
    assert campaign.main([*SMALL, *paths]) == 0
    first = results.read_text()
    examples = _examples(results)
    assert sorted((r['property'], r['seed']) for r in examples) == [
        ('csim-io_parallel', 100_000), ('csim-io_parallel', 100_001), ('csim-io_stream', 200_000),
        ('csim-io_stream', 200_001), ('pruned', 400_000), ('pruned', 400_001), ('rtl', 300_000), ('rtl', 300_001),
    ]  # fmt: skip
    run = campaign.merge_runs(campaign.load_jsonl(campaign.runs_file(results)))
    assert len(run) == 1 and run[0]['status'] == 'finished' and run[0]['versions']['hls4ml'] == '1.3.0'
    assert len(run[0]['commit']) == 40 or run[0]['commit'].startswith('unknown')
    assert {r['run'] for r in examples} == {run[0]['run']} and {r['campaign'] for r in examples} == {
        2
    }  # campaign 1 is closed history

    # Again: the targets are met, nothing runs. Larger targets: the same campaign goes on.
    assert campaign.main([*SMALL, *paths]) == 0
    assert results.read_text() == first
    assert campaign.main(['--csim', '6', '--rtl', '2', '--pruned', '2', '--jobs', '1', *paths]) == 0
    assert results.read_text().startswith(first)  # appended, never rewritten
    seeds = [r['seed'] for r in _examples(results) if r['property'] == 'csim-io_parallel']
    assert sorted(seeds) == [100_000, 100_001, 100_002]
    report = (results.parent / 'fuzz.md').read_text()
    assert '**6 accepted architectures through C simulation' in report and 'Campaign 2: 3 run(s)' in report
    assert '**All met.**' in report


def test_a_new_campaign_keeps_the_old_one_in_the_record(record, monkeypatch):
    results, paths = record
    verdicts(monkeypatch, {})
    campaign.main([*SMALL, *paths])
    before = results.read_text()
    campaign.main([*SMALL, '--new-campaign', *paths])
    assert results.read_text().startswith(before)
    assert {r['campaign'] for r in _examples(results)} == {2, 3}
    data = json.loads((results.parent / 'fuzz.json').read_text())
    assert data['campaign'] == 3 and data['summary']['rtl']['tried'] == 2


def test_a_mismatch_exits_3_and_stays_a_finding_after_its_fix(record, monkeypatch):
    results, paths = record
    # One RTL mismatch in 5 examples (4 accepted): the share stays at 80%.
    verdicts(monkeypatch, {('rtl', 300_001): 'mismatch'})
    assert campaign.main([*MISMATCH_RUN, *paths]) == campaign.MISMATCH_EXIT
    report = (results.parent / 'fuzz.md').read_text()
    assert '`rtl` seed 300001' in report and '3/40 samples differ' in report and 'not re-checked yet' in report

    # "Fixed": the finding's spec is now refused. The next run re-checks it first; the
    # finding stays in the record and the report, with its fate.
    verdicts(monkeypatch, {('rtl', 300_001): 'refused'})
    assert campaign.main([*MISMATCH_RUN, *paths]) == 0
    rechecks = [r for r in campaign.load_jsonl(results) if 'recheck' in r]
    assert [r['recheck'] for r in rechecks] == ['2:rtl:300001'] and rechecks[0]['outcome'] == 'refused'
    report = (results.parent / 'fuzz.md').read_text()
    assert '`rtl` seed 300001' in report and 'refused up front when re-checked' in report
    assert any(r['outcome'] == 'mismatch' for r in _examples(results))

    # Still mismatching on a later commit: the campaign exits 3 on the old finding.
    monkeypatch.setattr(campaign, 'git_commit', lambda: {'commit': 'f' * 40, 'dirty': False})
    verdicts(monkeypatch, {('rtl', 300_001): 'mismatch'})
    assert campaign.main([*MISMATCH_RUN, *paths]) == campaign.MISMATCH_EXIT
    assert 'STILL MISMATCH' in (results.parent / 'fuzz.md').read_text()


def test_an_acceptance_share_below_80_percent_exits_1(record, monkeypatch):
    results, paths = record
    refused = {('pruned', 400_000 + i): 'refused' for i in range(0, 10, 2)}
    verdicts(monkeypatch, refused)
    assert campaign.main([*SMALL, *paths]) == campaign.SHARE_EXIT
    assert '**below 80%**' in (results.parent / 'fuzz.md').read_text()
    # It stopped trying at ceil(target / 0.8) examples: more could not bring the share up.
    assert len([r for r in _examples(results) if r['property'] == 'pruned']) == campaign.max_tries(2)


def test_a_layer_kind_never_drawn_is_reported(tmp_path):
    records = [
        {'property': 'rtl', 'seed': 1, 'outcome': 'exact', 'seconds': 1.0, 'layers': ['QDense', 'InputLayer']},
    ]
    out = tmp_path / 'fuzz.md'
    report = campaign.write_report(records, [], 1, {'rtl': 1}, out)
    assert 'QDense' not in report['verdict']['missing_kinds']['rtl']
    assert 'UpSampling2D' in report['verdict']['missing_kinds']['rtl']
    assert '| RTL | UpSampling2D | **0: not drawn** |' in out.read_text()


def test_the_committed_record_keeps_seed_200090s_mismatch(tmp_path):
    """The campaign of December 2026 found csim-io_stream seed 200090 mismatching; its
    record was once rewritten as "refused" after the fix. The history is restored: the
    finding, its spec and its fix stay in docs/fuzz_results.jsonl, and the report lists it."""
    results = campaign.RESULTS
    findings = campaign.findings_of(campaign.load_jsonl(results))
    found = [f for f in findings if (f['property'], f['seed']) == ('csim-io_stream', 200090)]
    assert len(found) == 1 and found[0]['outcome'] == 'mismatch' and found[0]['spec']['input_shape'] == [5, 4, 2]
    assert '40/40 samples differ' in found[0]['message'] and found[0]['fixed_by'].startswith('59861f5')
    copy = tmp_path / 'fuzz_results.jsonl'
    shutil.copy(results, copy)
    out = tmp_path / 'fuzz.md'
    campaign.write_report(campaign.load_jsonl(copy), [], 1, campaign.TARGETS, out)
    assert '`csim-io_stream` seed 200090 (found 2026-12-02): mismatch' in out.read_text()


def test_replay_names_a_bad_example():
    assert campaign.main(['--replay', 'csim-io_parallel']) == 2
    assert campaign.main(['--replay', 'nonsense:3']) == 2


def dying_example(prop, seed, spec=None):
    """RTL seed 300001 kills its worker process (a native crash: an assertion in C++ code
    loaded into Python, as hls4ml's predict() library did in campaign 5); the rest are exact."""
    if (prop, seed) == ('rtl', 300_001):
        # Killed outright: os.abort() would die the same way but print the test process's
        # faulthandler dump (inherited by the fork) into the suite's output.
        os.kill(os.getpid(), signal.SIGKILL)
    return fake_example(prop, seed, spec)


def test_an_example_that_kills_its_worker_is_a_crash_finding_and_the_campaign_goes_on(record, monkeypatch):
    results, paths = record
    verdicts(monkeypatch, {})
    monkeypatch.setattr(campaign, 'run_example', dying_example)
    assert campaign.main([*MISMATCH_RUN, *paths]) == campaign.MISMATCH_EXIT
    examples = _examples(results)
    crashed = [r for r in examples if r['outcome'] == 'error']
    assert [(r['property'], r['seed']) for r in crashed] == [('rtl', 300_001)]
    assert 'the worker process died' in crashed[0]['message'] and crashed[0]['spec']
    assert '--replay rtl:300001' in crashed[0]['message']
    # The examples in flight with it were run again, alone, and recorded once each; the targets were met.
    seeds = [(r['property'], r['seed']) for r in examples]
    assert len(seeds) == len(set(seeds))
    assert sum(r['outcome'] == 'exact' and r['property'] == 'rtl' for r in examples) == 4
    (run,) = campaign.merge_runs(campaign.load_jsonl(campaign.runs_file(results)))
    assert run['status'] == 'finished'


def test_a_run_that_crashes_says_so_in_the_record(record, monkeypatch):
    results, paths = record
    verdicts(monkeypatch, {})

    def broken(*args, **kwargs):
        raise RuntimeError('the scheduler broke')

    monkeypatch.setattr(campaign, 'next_tasks', broken)
    with pytest.raises(RuntimeError):
        campaign.main([*SMALL, *paths])
    (run,) = campaign.merge_runs(campaign.load_jsonl(campaign.runs_file(results)))
    assert run['status'].startswith('crashed: RuntimeError') and run['commit']


def test_the_least_advanced_property_gets_the_next_slot():
    """A run cut short by --hours covers every property (one once ran only io_parallel)."""
    examples = [{'property': 'csim-io_parallel', 'seed': 100_000 + i, 'outcome': 'exact'} for i in range(5)]
    tasks = campaign.next_tasks(examples, campaign.TARGETS, {'rtl': {300_000}})
    assert [prop for prop, _ in tasks] == ['csim-io_stream', 'pruned', 'rtl', 'csim-io_parallel']
    assert dict(tasks) == {'csim-io_stream': 200_000, 'pruned': 400_000, 'rtl': 300_001, 'csim-io_parallel': 100_005}


def test_a_changed_generator_starts_a_new_campaign(record, monkeypatch):
    """Seeds name specs only under the generator that drew them: no resuming across a change."""
    results, paths = record
    verdicts(monkeypatch, {})
    campaign.main([*SMALL, *paths])
    monkeypatch.setattr(campaign, 'generator_fingerprint', lambda: 'another')
    campaign.main(['--csim', '6', '--rtl', '2', '--pruned', '2', '--jobs', '2', *paths])
    assert {r['campaign'] for r in _examples(results)} == {2, 3}


def test_past_its_target_a_property_goes_on_until_every_kind_is_drawn():
    every = sorted(RTL_LAYERS.supported())
    some = [k for k in every if k != 'UpSampling1D']
    done = [{'property': 'rtl', 'seed': 300_000 + i, 'outcome': 'exact', 'layers': every} for i in range(2)]
    assert campaign.next_tasks(done, {'rtl': 2}, {}) == []
    short = [{**r, 'layers': some} for r in done]
    assert campaign.next_tasks(short, {'rtl': 2}, {}) == [('rtl', 300_002)]
    assert campaign.next_tasks(short, {'rtl': 2}, {'rtl': {300_002}}) == []  # one extra at a time
    tried_twice = short + [{**short[0], 'seed': 300_002 + i} for i in range(2)]
    assert campaign.next_tasks(tried_twice, {'rtl': 2}, {}) == []  # at most twice the target


def test_docs_fuzz_md_is_generated_from_the_record(tmp_path):
    """docs/fuzz.md is what the committed record gives, nothing written by hand."""
    records = campaign.load_jsonl(campaign.RESULTS)
    runs = campaign.merge_runs(campaign.load_jsonl(campaign.runs_file(campaign.RESULTS)))
    latest = max(campaign.campaign_of(r) for r in records)
    out = tmp_path / 'fuzz.md'
    campaign.write_report(records, runs, latest, campaign.TARGETS, out)
    assert out.read_text() == campaign.REPORT.read_text(), 'run: python -m fpga_tests.fuzz_campaign --report-only'
