"""Fuzzed bit-exactness: random valid QKeras models, C simulation and RTL == QKeras exactly.

Each example is a random architecture (fpga_tests/fuzz_models.py). The back end
either refuses it up front (UnsupportedModelError, naming the reason) or writes a
design whose simulation equals the QKeras model on every sample (float64 equality).
A model that is accepted and then mismatches is a bug; each one found is pinned in
test_fuzz_regressions.py.

The default suite checks a handful of seeded draws per property, chosen so that
together they cover every layer kind the generator builds and none is one of the
simplest models (those are pinned in test_fuzz_regressions.py); at least 80% of them
must be accepted. ``make fuzz`` (fpga_tests/fuzz_campaign.py) runs hundreds of
random seeds per property and records the counts in docs/fuzz.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from fpga_tests.fuzz_checks import EXACT, Tally, check_csim, check_pruned_csim, check_rtl
from fpga_tests.fuzz_models import build_qkeras, covering_specs, input_samples, missing_features

# What the drawn models of each property must cover between them.
CSIM_FEATURES = {'dense', 'conv1d', 'conv2d', 'dwconv', 'residual', 'concat', 'pool_max', 'gpool_max'}
RTL_FEATURES = {'conv1d', 'conv2d', 'residual', 'concat'}  # Dense-only RTL: test_fuzz_regressions.py
PRUNED_FEATURES = {'batchnorm', 'conv2d', 'dense', 'residual', 'concat'}

# The first seeds are fixed so that the suite checks the same models on every run; they
# were picked as the first from which a few draws cover the features above (each
# draw has one input kind) and are all accepted: refusals are pinned, by reason, in
# test_fuzz_regressions.py, and counted over hundreds of seeds in docs/fuzz.md.
CSIM_DRAWS = covering_specs(4, 1011, CSIM_FEATURES)
RTL_DRAWS = covering_specs(
    2, 2007, RTL_FEATURES, kinds=('dense', 'conv1d', 'conv2d'), max_bits=8, max_blocks=2, rtl=True
)
PRUNED_DRAWS = covering_specs(3, 3009, PRUNED_FEATURES, batchnorm=True)


@pytest.mark.parametrize(
    'draws,wanted',
    [(CSIM_DRAWS, CSIM_FEATURES), (RTL_DRAWS, RTL_FEATURES), (PRUNED_DRAWS, PRUNED_FEATURES)],
    ids=['csim', 'rtl', 'pruned'],
)
def test_default_draws_cover_the_generator(draws, wanted):
    assert not missing_features(draws, wanted)


def _check_draws(name: str, draws, tmp_path, check) -> None:
    """``check(i, spec, work)`` on every draw, each in its own folder; >= 80% accepted."""
    tally = Tally(name)
    for i, (seed, spec) in enumerate(draws):
        work = tmp_path / f'seed{seed}'
        work.mkdir()
        tally.add(check(i, spec, work))
    tally.assert_acceptance(0.8)


@pytest.mark.parametrize('io_type', ['io_parallel', 'io_stream'])
def test_fuzz_csim_equals_qkeras(io_type, tmp_path):
    _check_draws(f'csim {io_type}', CSIM_DRAWS, tmp_path, lambda i, spec, work: check_csim(spec, io_type, work))


def test_fuzz_rtl_equals_qkeras(tmp_path):
    """Random small models through the RTL route (a Verilator build takes 15-20 s each)."""
    _check_draws('rtl', RTL_DRAWS, tmp_path, lambda i, spec, work: check_rtl(spec, work))


def test_fuzz_pruned_models_with_batchnorm_are_exact(tmp_path):
    """Float models with BatchNorm through the pruner (masks, cut, fold, quantize) and
    C simulation, alternating io types: what lpsubnet itself hands the back end is
    accepted and exact."""
    io_types = ('io_parallel', 'io_stream')
    _check_draws('pruned', PRUNED_DRAWS, tmp_path, lambda i, spec, work: check_pruned_csim(spec, io_types[i % 2], work))


def test_generated_models_are_not_trivial():
    """The drawn models compute something: outputs vary over the input samples."""
    for seed, spec in CSIM_DRAWS:
        model = build_qkeras(spec)
        y = model.predict(input_samples(spec, 40).astype('float32'), verbose=0)
        assert np.unique(np.round(y, 12).reshape(len(y), -1), axis=0).shape[0] > 1, f'seed {seed}: constant model'


def test_a_refusal_counts_against_the_acceptance_rate():
    """The acceptance check itself: a back end that refused most models must fail it."""
    tally = Tally('control')
    for outcome in (EXACT, "refused: layer 'pool1' (AveragePooling1D) is not bit-exact", 'refused: other'):
        tally.add(outcome)
    with pytest.raises(AssertionError, match=r'only 1/3 .*AveragePooling1D'):
        tally.assert_acceptance(0.8)
    assert tally.refusals == {"layer '*' (AveragePooling1D) is not bit-exact": 1, 'other': 1}


def test_campaign_report_counts_every_outcome(tmp_path):
    """make fuzz's report (fuzz_campaign.write_report): counts per property, refusal
    reasons, every mismatch named with its seed, a cut-short run said to be one."""
    from fpga_tests.fuzz_campaign import write_report

    records = [
        {'property': 'rtl', 'seed': 1, 'outcome': 'exact', 'seconds': 2.0},
        {'property': 'rtl', 'seed': 2, 'outcome': 'refused', 'reason': 'too wide', 'seconds': 1.0},
        {'property': 'rtl', 'seed': 3, 'outcome': 'mismatch', 'message': 'first mismatch 4', 'seconds': 3.0},
        {'property': 'pruned', 'seed': 9, 'outcome': 'exact', 'seconds': 1.0},
    ]
    meta = {'command': 'x', 'date': 'today', 'wall_minutes': 1.0, 'jobs': 2, 'cpus': 2, 'remaining': 5, 'versions': {}}
    out = tmp_path / 'fuzz.md'
    summary = write_report(records, ['rtl', 'pruned'], meta, out)
    assert summary['rtl'] == {
        'tried': 3,
        'accepted_exact': 1,
        'refused': 1,
        'mismatches': 1,
        'errors': 0,
        'refusal_reasons': {'too wide': 1},
        'mean_seconds': 2.0,
    }
    text = out.read_text()
    assert '| 3 | 1 | 1 | 33% | 1 | 0 | 2.0 |' in text and '- 1 x too wide' in text
    assert '`rtl` seed 3: mismatch: first mismatch 4' in text and '5 of the requested examples are not run yet' in text
