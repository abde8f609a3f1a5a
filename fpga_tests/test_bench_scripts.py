"""The benchmark scripts run end to end on a tiny setting (1 epoch, tiny subsets, 1 seed,
2 methods) and write valid JSON; the report generator turns them into markdown + plots.
No timing assertions: the real benchmark numbers live in docs/benchmarks.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, 'BENCH_TINY': '1', 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONPATH': str(REPO)}


def bench(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp('bench_results')
    proc = bench('-m', 'bench.run', '--task', 'digits', '--tiny', '--results', str(root))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root


@pytest.mark.slow  # the tiny bench run takes ~80 s of the default suite's budget
def test_run_writes_one_valid_json_per_config(results):
    files = sorted((results / 'digits').glob('*.json'))
    names = {p.stem for p in files}
    assert {'float_seed0', 'quant_w8a8_seed0', 'lw_act_l1_s50_w8a8_seed0', 'os_weight_l1_s50_w8a8_seed0'} <= names
    for p in files:
        rec = json.loads(p.read_text())
        if p.name == 'task.json':
            continue
        assert rec['tiny'] is True
        assert np.isfinite(rec['metric']) and 0 <= rec['metric'] <= 100
        assert rec['footprint_bits'] > 0 and rec['bops'] > 0
    method = json.loads((results / 'digits' / 'lw_act_l1_s50_w8a8_seed0.json').read_text())
    assert method['schedule']['kind'] == 'layerwise' and method['schedule_complete']
    assert method['channels']['conv1'] == [8, 4]
    assert (results / 'digits' / 'baselines' / 'float_seed0.keras').exists()


@pytest.mark.slow  # the tiny bench run takes ~80 s of the default suite's budget
def test_existing_json_is_not_recomputed(results):
    path = results / 'digits' / 'lw_act_l1_s50_w8a8_seed0.json'
    before = path.read_text()
    proc = bench('-m', 'bench.run', '--task', 'digits', '--tiny', '--results', str(results))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert path.read_text() == before
    assert '0 configurations run' in proc.stdout


@pytest.mark.slow  # the tiny bench run takes ~80 s of the default suite's budget
def test_report_writes_markdown_and_plots(results, tmp_path):
    from bench.report import README_BEGIN, README_END

    out = tmp_path / 'docs' / 'benchmarks.md'
    readme = tmp_path / 'README.md'
    readme.write_text(f'# intro\n{README_BEGIN}\nstale table\n{README_END}\n## next section\n')
    proc = bench('-m', 'bench.report', '--results', str(results), '--out', str(out), '--readme', str(readme))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert 'tensorflow' in text and 'cores' in text
    assert 'Status' in text
    assert (out.parent / 'bench' / 'digits_metric_vs_footprint.png').exists()
    # the README's block is replaced from the same results; the text around it is kept
    summary = readme.read_text()
    assert 'stale table' not in summary
    assert summary.startswith('# intro\n') and summary.endswith(f'{README_END}\n## next section\n')
    digits_row = next(line for line in summary.splitlines() if line.startswith('| digits'))
    float_metric = json.loads((results / 'digits' / 'float_seed0.json').read_text())['metric']
    assert f'| {float_metric:.1f} (' in digits_row  # the float cell is the recorded metric
    assert '50% W8A8 within 1 point of float' in summary


def test_reversed_layer_order_and_baselines():
    """Reversed schedule, unstructured magnitude masks and nonzero footprint, in process."""
    import keras

    import pruner
    from bench import baselines as bl

    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation='relu', name='a')(inp)
    h = keras.layers.Dense(8, activation='relu', name='b')(h)
    model = keras.Model(inp, keras.layers.Dense(3, name='out')(h))
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    y = np.arange(64) % 3
    with bl.reversed_layer_order():
        _, manifest = pruner.compress(model, (x, y), (x, y), sparsity=0.5, epochs=1, qat_epochs=0, unit='steps',
                                      interval=2, refresh=1, batch_size=16)  # fmt: skip
    names = manifest['schedule']['group_names']
    order = [names[w['groups'][0]] for w in manifest['schedule']['windows']]
    assert order == ['b', 'a']
    masks = bl.magnitude_masks(model, 0.5)
    bl.apply_masks(model, masks)
    assert all(abs(float(np.mean(m)) - 0.5) < 0.1 for m in masks.values())
    fp = bl.nonzero_footprint(model)
    assert fp['footprint_weight_bits'] < pruner.summary(model)['footprint_weight_bits']


@pytest.mark.slow
def test_verify_scale_writes_rows_and_the_report_table(tmp_path):
    """bench/verify_scale.py on 200 samples of the MLP (a g++ build, hls4ml's compile(), a
    Verilator build and two TensorFlow processes: about two minutes), and its table in the report."""
    from bench.report import verify_scale_section

    proc = bench('-m', 'bench.verify_scale', '--tiny', '--results', str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / 'tool' / 'verify_scale.json').read_text())
    (row,) = data['rows']
    assert (row['model'], row['samples'], row['exact_matches'], row['exact']) == ('jet_mlp', 200, 200, True)
    assert row['csim_samples_per_second'] > 0 and row['keras_predict_samples_per_second_batch512'] > 0
    assert row['rtl_samples_per_second'] > 0 and row['rtl_initiation_interval'] == 1  # streamed, bit-exact
    table = verify_scale_section(tmp_path / 'tool' / 'verify_scale.json')
    assert '| jet_mlp [16] -> [5] | 200 | 200/200 |' in '\n'.join(table)


@pytest.mark.slow
def test_synth_bench_writes_a_design_record_and_its_section(tmp_path):
    """bench/synth.py on one tiny digits design (75 % of the channels pruned, 4-bit weights):
    trained, written by da4ml, mapped by Yosys (about two minutes); the record holds both
    counts and the report section its row. No placement: the design is above --place-max-lut."""
    from bench.synth import load_results, section

    proc = bench('-m', 'bench.synth', '--tasks', 'digits', '--sparsities', '0.75', '--weight-bits', '4',
                 '--place-max-lut', '0', '--tiny', '--results', str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / 'synth' / 'digits_s75_w4a8.json').read_text())
    assert record['tiny'] and record['yosys']['family'] == 'xcup' and 'ecp5' not in record
    assert record['yosys']['LUT'] == sum(record['yosys']['LUT_by_size'].values()) > 0
    assert record['lut_da4ml'] > 0 and record['ff_da4ml'] > 0 and record['yosys']['yosys_seconds'] > 0
    assert load_results(tmp_path) == []  # tiny runs never reach docs/benchmarks.md
    assert 'Not run yet' in '\n'.join(section(tmp_path, tmp_path / 'plots'))
    # The same record as a real run's: its row, the ratio and the plot.
    real = tmp_path / 'real'
    (real / 'synth').mkdir(parents=True)
    (real / 'synth' / 'digits_s75_w4a8.json').write_text(json.dumps({**record, 'tiny': False}))
    text = '\n'.join(section(real, tmp_path / 'plots'))
    ratio = record['yosys']['LUT'] / record['lut_da4ml']
    assert f'| digits_s75_w4a8 | {record["test_metric"]:.1f} | {record["lut_da4ml"]:,} |' in text
    assert f'LUTs, Yosys / da4ml: {ratio:.3f} ± 0.000' in text
    assert (tmp_path / 'plots' / 'synth_estimate_vs_yosys.png').is_file()
