"""The peer benchmark's scripts (bench/peer.py): the fronts and the section computed from
known points, the HGQ2 side called through its venv's interpreter (a stub here: hgq2
never enters this venv), and one lpsubnet point end to end on tiny data, priced and
checked exact. No figures are asserted: the real ones are in docs/benchmarks.md."""

from __future__ import annotations

import json
import stat
import sys
import textwrap

import pytest

from bench import peer


def _point(side, seed, lut, acc, exact=True, name=None, val=None):
    return {'side': side, 'seed': seed, 'lut_estimate': lut, 'test_accuracy': acc, 'exact': exact, 'status': 'ok',
            'val_accuracy': acc if val is None else val, 'name': name or f'{side}_{seed}_{lut}',
            'footprint_nonzero_bits': lut * 2}  # fmt: skip


POINTS = [
    _point('hgq2', 0, 1000, 50.0), _point('hgq2', 0, 5000, 70.0), _point('hgq2', 1, 1200, 54.0),
    _point('hgq2', 1, 4000, 74.0),
    _point('lpsubnet', 0, 3000, 60.0), _point('lpsubnet', 0, 6000, 80.0), _point('lpsubnet', 0, 2000, 90.0, exact=False),
    _point('lpsubnet', 1, 2500, 58.0), _point('lpsubnet', 1, 5500, 78.0),
]  # fmt: skip


def test_the_front_keeps_exact_points_that_improve():
    seed0 = [p for p in POINTS if p['side'] == 'lpsubnet' and p['seed'] == 0]
    assert peer.front(seed0) == [(3000.0, 60.0), (6000.0, 80.0)]  # the inexact 90 % point is left out


def test_a_front_chosen_on_validation_reports_the_test_accuracy_of_its_choice():
    # From 2,500 LUT the test split prefers the 64 % point; the validation split keeps the 60 % one
    # until 6,000 LUT (the 5,000 point validates worse than it).
    points = [_point('lpsubnet', 0, 2000, 60.0, val=58.0), _point('lpsubnet', 0, 2500, 64.0, val=55.0),
              _point('lpsubnet', 0, 5000, 66.0, val=57.0), _point('lpsubnet', 0, 6000, 70.0, val=65.0)]  # fmt: skip
    assert peer.front(points) == [(2000.0, 60.0), (2500.0, 64.0), (5000.0, 66.0), (6000.0, 70.0)]
    by_val = peer.front(points, select='val_accuracy')
    assert by_val == [(2000.0, 60.0), (6000.0, 70.0)]
    assert peer.best_within(by_val, 3000) == peer.best_within(by_val, 5500) == 60.0
    assert peer.cost_for(points, 'lpsubnet', 62.0) == 2500
    assert peer.cost_for(points, 'lpsubnet', 62.0, select='val_accuracy') == 6000


def test_mean_fronts_need_every_seed_to_fit():
    at = peer.mean_fronts(POINTS, 'hgq2', (1000, 1500, 5000))['at']
    assert at == {1000: None, 1500: 52.0, 5000: 72.0}
    lps = peer.mean_fronts(POINTS, 'lpsubnet', (3000, 6000))
    assert lps['seeds'] == 2 and lps['at'] == {3000: 59.0, 6000: 79.0}
    assert peer.cost_for(POINTS, 'hgq2', 72.0) == 5000
    assert peer.cost_for(POINTS, 'lpsubnet', 79.0) == 6000


def test_the_section_lists_fronts_and_the_points_left_out(tmp_path):
    for p in POINTS:
        (tmp_path / 'peer' / 'letter').mkdir(parents=True, exist_ok=True)
        (tmp_path / 'peer' / 'letter' / f'{p["name"]}.json').write_text(json.dumps(p))
    lines = '\n'.join(peer.section(tmp_path, tmp_path / 'plots'))
    # At 4,000 LUT: HGQ2 seed 0 has 50 (its 1,000 point), seed 1 74; lpsubnet 60 and 58.
    assert '| 4,000 | 62.0 | 59.0 | -3.0 |' in lines
    assert '| 2,000 | 52.0 | - | - |' in lines  # lpsubnet's only point under 2,000 LUT is not exact
    # Both selections (here validation and test agree), each a table of its own.
    assert lines.count('| 4,000 | 62.0 | 59.0 | -3.0 |') == 2
    assert '**Chosen on the test split**' in lines and '**Chosen on the validation split**' in lines
    assert 'here HGQ2 has 2 points per seed, lpsubnet 2' in lines  # exact or not, per seed
    assert 'Not exact (left out): lpsubnet_0_2000' in lines
    assert (tmp_path / 'plots' / 'peer_letter.png').stat().st_size > 0


def test_the_section_compares_the_seeds_both_sides_ran(tmp_path):
    # HGQ2 alone has a seed 2 (a collapsed design): in the plot, not in the means of the table.
    extra = [_point('hgq2', 2, 500, 5.0), _point('hgq2', 2, 9000, 30.0)]
    for p in [*POINTS, *extra]:
        (tmp_path / 'peer' / 'letter').mkdir(parents=True, exist_ok=True)
        (tmp_path / 'peer' / 'letter' / f'{p["name"]}.json').write_text(json.dumps(p))
    lines = '\n'.join(peer.section(tmp_path, tmp_path / 'plots'))
    assert '| 4,000 | 62.0 | 59.0 | -3.0 |' in lines
    assert 'Seeds compared: HGQ2 2, lpsubnet 2' in lines
    assert 'run by one side only, in the plot, not in the table: hgq2 seed 2' in lines


def test_what_a_side_never_reaches_and_a_refused_budget_are_said_in_words(tmp_path):
    reference = _point('lpsubnet', 0, 9000, 90.0, name='lps_grid_s0_w8a8_seed0')
    refused = {'side': 'lpsubnet', 'seed': 0, 'name': 'lps_bits_lut2000_seed0', 'status': 'failed',
               'message': 'the budget of 2000 LUT is out of reach by precision alone: it still costs 6130 LUT; '
                          'prune more channels (sparsity) or raise the budget'}  # fmt: skip
    for p in [*POINTS, reference, refused]:
        (tmp_path / 'peer' / 'letter').mkdir(parents=True, exist_ok=True)
        (tmp_path / 'peer' / 'letter' / f'{p["name"]}.json').write_text(json.dumps(p))
    lines = '\n'.join(peer.section(tmp_path, tmp_path / 'plots'))
    # 89 %: neither HGQ2's seeds nor lpsubnet's seed 1 (78 % at most) get there.
    assert "(90.0 %): HGQ2's mean front does not reach it, lpsubnet's mean front does not reach it" in lines
    assert 'nan' not in lines
    assert (
        'lps_bits_lut2000_seed0 (the budget of 2000 LUT is out of reach by precision alone: it still costs 6130 LUT)'
        in lines
    )


def test_the_section_says_when_nothing_ran(tmp_path):
    assert 'Not run yet: `make bench-peer`' in '\n'.join(peer.section(tmp_path, tmp_path))


def _stub(tmp_path, body: str):
    script = tmp_path / 'peer-python'
    script.write_text(f'#!{sys.executable}\n' + textwrap.dedent(body))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_the_hgq2_side_runs_in_its_own_interpreter(tmp_path, monkeypatch):
    seen = tmp_path / 'argv.json'
    stub = _stub(
        tmp_path,
        f"""
        import json, sys
        args = sys.argv[1:]
        json.dump(args, open({str(seen)!r}, 'w'))
        out = args[args.index('--out') + 1]
        json.dump({{'test_accuracy': 0.71, 'val_accuracy': 0.7, 'lut_estimate': 6100.0, 'exact': True, 'exact_samples': 4000,
                   'samples': 4000, 'footprint_weight_bits': 900, 'footprint_activation_bits': 300}}, open(out, 'w'))
    """,
    )
    monkeypatch.setattr(peer, 'PEER_PYTHON', stub)
    point = peer.hgq2_points('letter', 1, quick=False)[0]
    record = peer.run_hgq2('letter', point, tmp_path / 'p.json', tiny=False)
    args = json.loads(seen.read_text())
    assert args[:2] == ['-m', 'bench.peer_hgq2'] and args[args.index('--beta') + 1] == repr(point['beta'])
    assert record['side'] == 'hgq2' and record['footprint_nonzero_bits'] == 1200
    assert record['test_accuracy'] == pytest.approx(71.0) and record['val_accuracy'] == pytest.approx(70.0)
    assert json.loads((tmp_path / 'p.json').read_text()) == record


def test_a_failing_hgq2_run_says_what_it_printed(tmp_path, monkeypatch):
    stub = _stub(tmp_path, 'import sys\nprint("hgq2: no such layer QFoo", file=sys.stderr)\nsys.exit(2)\n')
    monkeypatch.setattr(peer, 'PEER_PYTHON', stub)
    with pytest.raises(RuntimeError, match=r'exited with 2: hgq2: no such layer QFoo'):
        peer.run_hgq2('letter', peer.hgq2_points('letter', 1, quick=True)[0], tmp_path / 'p.json', tiny=True)
    assert not (tmp_path / 'p.json').exists()


def test_a_missing_peer_venv_names_the_make_target(tmp_path, monkeypatch):
    monkeypatch.setattr(peer, 'PEER_PYTHON', tmp_path / 'nothing' / 'python')
    with pytest.raises(SystemExit, match='make bench-peer'):
        peer.run_hgq2('letter', peer.hgq2_points('letter', 1, quick=True)[0], tmp_path / 'p.json', tiny=True)


@pytest.mark.slow
def test_one_lpsubnet_point_is_priced_and_checked_exact(tmp_path):
    from bench import data

    task = data.load('digits', tiny=True)
    point = {'side': 'lpsubnet', 'name': 'lps_weight50_lut50000_seed0', 'seed': 0,
             'settings': {'sparsity': 0.0, 'granularity': 'weight', 'weight_sparsity': 0.5, 'max_lut': 50000}}  # fmt: skip
    record = peer.run_lpsubnet(task, point, tmp_path / 'p.json', tiny=True, baselines=tmp_path)
    assert record['status'] == 'ok', record
    assert record['exact'] and record['exact_samples'] == record['samples'] == len(task.x_test)
    assert record['lut_estimate'] <= 50000
    assert all(v['sparsity'] >= 0.49 for v in record['weight_pruning']['layers'].values())
    assert json.loads((tmp_path / 'p.json').read_text())['name'] == point['name']


def test_a_front_is_interpolated_in_log_lut_between_its_points():
    front = [(1000.0, 50.0), (4000.0, 70.0)]
    assert peer.interpolated(front, 500) is None
    assert peer.interpolated(front, 1000) == 50.0
    assert peer.interpolated(front, 2000) == pytest.approx(60.0)  # half way in log
    assert peer.interpolated(front, 9000) == 70.0
    # A design of 0 LUT (a constant output) has no log: the interpolation starts at the next point.
    with_constant = [(0.0, 3.4), *front]
    assert peer.interpolated(with_constant, 500) is None
    assert peer.interpolated(with_constant, 2000) == pytest.approx(60.0)


def test_the_long_qat_points_name_their_epochs_and_train_as_long_as_hgq2():
    points = {p['name']: p['settings'] for p in peer.lpsubnet_points('digits', 1, quick=False, all_variants=True)}
    epochs = peer.HGQ_RECIPE['digits']['epochs']
    for variant in peer.LONG_QAT_VARIANTS:
        settings = points[f'lps_{variant}_qat{epochs}_lut10000_seed0']
        assert settings == {**peer.BUDGET_VARIANTS[variant], 'qat_epochs': epochs, 'max_lut': 10000}
        # The plain variant keeps the QAT its records were made with: 'auto' as it was then.
        plain = points[f'lps_{variant}_lut10000_seed0']
        assert 'qat_epochs' not in plain and plain['qat_steps'] == peer.SHORT_QAT_STEPS == 6000
    assert points[f'lps_grid_s0_w8a8_qat{epochs}_seed0']['qat_epochs'] == epochs
    assert not any('_qat' in name for name in (p['name'] for p in peer.lpsubnet_points('digits', 1, quick=True)))


@pytest.mark.parametrize('task,train_samples', [('letter', 14000), ('digits', 1221)])
def test_a_full_run_plans_the_default_budget_command_from_each_start_and_the_grid(task, train_samples):
    """Without --all-variants: per seed, DEFAULT_STARTS' budgets with the settings
    `lpsubnet prune --max-lut` uses by default (their QAT epochs are what 'auto' resolves to
    under a budget on the bench's batch), and the grid with its long-QAT W8A8 reference."""
    from pruner.options import CompressOptions
    from pruner.recovery import resolve_epochs

    points = peer.lpsubnet_points(task, 2, quick=False)
    epochs = peer.HGQ_RECIPE[task]['epochs']
    steps_per_epoch = -(-train_samples // peer.HGQ_RECIPE[task]['batch'])
    assert resolve_epochs('auto', steps_per_epoch, 'qat', budgeted=True)[0] == epochs
    budgeted = [p for p in points if 'max_lut' in p['settings']]
    starts = peer.DEFAULT_STARTS[task]
    defaults = CompressOptions()
    assert len(budgeted) == 2 * sum(len(b) for b in starts.values())
    for p in budgeted:
        variant = p['name'].split(f'_qat{epochs}_both_lut')[0].removeprefix('lps_')
        assert p['settings']['max_lut'] in starts[variant]
        assert p['settings'] == {**peer.BUDGET_VARIANTS[variant], 'qat_epochs': epochs, 'budget_fit': 'both',
                                 'max_lut': p['settings']['max_lut']}  # fmt: skip
        assert p['settings']['min_activation_bits'] == defaults.min_activation_bits
        assert p['settings']['budget_fit'] == defaults.budget_fit
    grid = {p['name'] for p in points if 'max_lut' not in p['settings'] and p['seed'] == 1}
    assert len(grid) == len(peer.GRID_SPARSITIES) * len(peer.GRID_BITS) + 1
    assert f'lps_grid_s0_w8a8_qat{epochs}_seed1' in grid


def test_the_lut_ratio_is_taken_below_each_seeds_better_w8a8(tmp_path):
    # Seed 0 has W8A8 at both QAT lengths (90 and 92): the better counts; seed 1 has 88. Target (92 + 88) / 2 - 1.
    references = [
        _point('lpsubnet', 0, 9000, 90.0, name='lps_grid_s0_w8a8_seed0'),
        _point('lpsubnet', 0, 9000, 92.0, name='lps_grid_s0_w8a8_qat300_seed0'),
        _point('lpsubnet', 1, 9000, 88.0, name='lps_grid_s0_w8a8_seed1'),
    ]
    for p in [*POINTS, *references]:
        (tmp_path / 'peer' / 'letter').mkdir(parents=True, exist_ok=True)
        (tmp_path / 'peer' / 'letter' / f'{p["name"]}.json').write_text(json.dumps(p))
    lines = '\n'.join(peer.section(tmp_path, tmp_path / 'plots'))
    assert "At 1 point below lpsubnet's unpruned W8A8 (90.0 %)" in lines


def test_the_readme_figures_are_written_from_the_records(tmp_path):
    """The README's block against HGQ2 is generated: both selections' differences at each budget
    and the LUT ratio, written between its markers, the text around them kept."""
    from bench.report import write_readme_block

    references = [_point('lpsubnet', s, 9000, 81.0, name=f'lps_grid_s0_w8a8_seed{s}') for s in (0, 1)]
    for p in [*POINTS, *references]:
        (tmp_path / 'peer' / 'letter').mkdir(parents=True, exist_ok=True)
        (tmp_path / 'peer' / 'letter' / f'{p["name"]}.json').write_text(json.dumps(p))
    lines = peer.readme_summary(tmp_path)
    assert lines[0] == peer.README_BEGIN and lines[-1] == peer.README_END
    text = '\n'.join(lines)
    assert '| letter, 2 of 5 seeds | 2k | 4k | 6k |' in text
    # 80 % (1 below the W8A8 reference): lpsubnet at 9,000 LUT (its reference points), HGQ2 never.
    assert '| chosen on the test split | -' in text and 'not reached by one side' in text
    assert '| chosen on the validation split |' in text
    readme = tmp_path / 'README.md'
    readme.write_text(f'before\n{peer.README_BEGIN}\nold figures\n{peer.README_END}\nafter\n')
    assert write_readme_block(readme, peer.README_BEGIN, peer.README_END, lines)
    written = readme.read_text()
    assert written.startswith('before\n') and written.endswith('\nafter\n') and 'old figures' not in written
    assert text in written


def test_the_repository_readme_has_the_block_bench_report_writes():
    from bench.peer import REPO

    text = (REPO / 'README.md').read_text()
    assert text.count(peer.README_BEGIN) == text.count(peer.README_END) == 1
