"""A trained design over its LUT budget is trimmed, not trained again (pruner.trim,
budget_fit 'trim'): the least share of weights that fits by the cost model itself, the
trimmed design fine-tuned and exported with its zeros, exact; nothing changes where it
fits already or where a trim cannot fit it.
"""

import numpy as np
import pytest

import hls_backend
from fpga_tests.pruner_models import digits, flatten_mlp, small_compress
from pruner.allocate import adder_bits
from pruner.quantize import StepRule, calibrate, plan_quantization
from pruner.surgery import fold_batchnorm, to_qkeras
from pruner.trim import TRIM_MAX_EXTRA, TRIM_RESOLUTION, raised, trim_to_budget
from pruner.weight_masks import kernel_variable, prune_weights, weight_prunable

# Only 'fc' is trimmed: its zeros grow with the share (nested rankings), so the digit count is
# monotone in it and "the least share that fits" has one answer to compare with.
EXCLUDE = ('conv', 'logits')


@pytest.fixture(scope='module')
def trained_qmodel():
    """flatten_mlp trained a little on digits, quantized at 4-bit weights (QKeras)."""
    import keras

    x, y, _, _ = digits()
    model = flatten_mlp()
    model.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:512], y[:512], epochs=4, batch_size=64, verbose=0)
    model = fold_batchnorm(model)
    plan = plan_quantization(model, calibrate(model, x[:256]), 4, 8, rule=StepRule('mse'))
    qmodel = to_qkeras(model, plan)
    return qmodel, x[:256]


def _digits(qmodel) -> float:
    """A cost that, like a fully unrolled design's, drops zero products: nonzero signed digits."""
    return float(adder_bits(qmodel))


def _kernels(qmodel) -> dict:
    return {layer.name: kernel_variable(layer).numpy().copy() for layer in weight_prunable(qmodel)}


def _restore(qmodel, kernels) -> None:
    for name, kernel in kernels.items():
        kernel_variable(qmodel.get_layer(name)).assign(kernel)


def _cost_at(qmodel, x, extra) -> float:
    prune_weights(qmodel, x, raised(qmodel, 0.25, extra, EXCLUDE), 'weight', EXCLUDE)
    return _digits(qmodel)


def test_the_trim_is_the_least_share_of_weights_that_fits_by_the_cost_model(trained_qmodel):
    qmodel, x = trained_qmodel
    start = _kernels(qmodel)
    try:
        prune_weights(qmodel, x, {'fc': 0.25}, 'weight', EXCLUDE)  # what QAT's masks left
        trained = _kernels(qmodel)
        before = _digits(qmodel)
        limit = 0.93 * before
        trim = trim_to_budget(qmodel, x, {'fc': 0.25}, 'weight', _digits, limit, EXCLUDE)
        assert trim.within and trim.cost_before == before and 0 < trim.extra <= TRIM_MAX_EXTRA
        # The model as left is the chosen trim, priced as recorded, within the limit.
        assert _digits(qmodel) == trim.cost <= limit
        kernel = kernel_variable(qmodel.get_layer('fc')).numpy()
        assert trim.sparsity['fc'] == pytest.approx(0.25 + trim.extra * 0.75)
        assert int((kernel == 0).sum()) == int(np.floor(trim.sparsity['fc'] * kernel.size))
        # Brute force over the grid of the search's resolution: the least share that fits.
        grid = np.arange(0, TRIM_MAX_EXTRA + TRIM_RESOLUTION / 2, TRIM_RESOLUTION)
        fits = []
        for extra in grid:
            _restore(qmodel, trained)
            fits.append(_cost_at(qmodel, x, extra) <= limit)
        least = grid[int(np.argmax(fits))]
        assert least - TRIM_RESOLUTION < trim.extra <= least + TRIM_RESOLUTION
        # Every search step is recorded with the cost it measured.
        assert trim.tried
        for extra, cost in trim.tried:
            _restore(qmodel, trained)
            assert _cost_at(qmodel, x, extra) == cost
    finally:
        _restore(qmodel, start)


def test_a_design_within_the_budget_is_left_as_it_is(trained_qmodel):
    qmodel, x = trained_qmodel
    before = _kernels(qmodel)
    trim = trim_to_budget(qmodel, x, 0.0, 'weight', _digits, _digits(qmodel), EXCLUDE)
    assert trim.within and trim.extra == 0 and not trim.tried
    assert all(np.array_equal(before[k], v) for k, v in _kernels(qmodel).items())


def test_a_budget_out_of_a_trims_reach_leaves_the_trained_design(trained_qmodel):
    qmodel, x = trained_qmodel
    before = _kernels(qmodel)
    trim = trim_to_budget(qmodel, x, 0.0, 'weight', _digits, 0.2 * _digits(qmodel), EXCLUDE)
    assert not trim.within and trim.extra == 0 and trim.cost == trim.cost_before
    assert trim.tried[-1][0] == TRIM_MAX_EXTRA  # it tried as far as a trim may go
    assert all(np.array_equal(before[k], v) for k, v in _kernels(qmodel).items())


def _lut(model) -> float:
    return hls_backend.estimate_cost(model).lut_estimate


def _over_after_training(monkeypatch):
    """A cost model that prices every design after the first QAT 4 % over da4ml's estimate
    (at least 3050 for the first trained one): as if training grew it over the budget of 3000."""
    import sys

    from pruner import compress  # noqa: F401  (loads pruner.phases)

    module = sys.modules['pruner.phases']
    real_qat = module._qat
    scale = []

    def qat(*args, **kwargs):
        quantized = real_qat(*args, **kwargs)
        if not scale:
            scale.append(max(1.04, 3050.0 / _lut(quantized.qmodel)))
        return quantized

    monkeypatch.setattr(module, '_qat', qat)
    return lambda model: _lut(model) * (scale[0] if scale else 1.0)


@pytest.mark.parametrize(
    'fit', [pytest.param('trim', marks=pytest.mark.slow), 'both', pytest.param('retrain', marks=pytest.mark.slow)]
)
def test_an_over_budget_design_is_trimmed_and_fine_tuned(monkeypatch, fit, tmp_path):
    """'trim': the trained design is trimmed and exported; 'both': it is one candidate and a
    smaller allocation, trained, the other, the better on validation exported; 'retrain': no
    trim."""
    cost = _over_after_training(monkeypatch)
    if fit == 'both':  # two candidates are enough to see the better one kept (and the suite's time)
        import pruner.phases

        monkeypatch.setattr(pruner.phases, 'BUDGET_ATTEMPTS', 2)
    qmodel, manifest = small_compress(
        model_fn=flatten_mlp, max_lut=3000, cost=cost, epochs=3, qat_epochs=4, granularity='weight',
        weight_sparsity=0.25, budget_fit=fit,
    )  # fmt: skip
    budget = manifest['budget']
    attempts = budget['attempts']
    first = attempts[0]
    assert first['trained_cost'] > 3000
    phases = [p['phase'] for p in manifest['recovery']['phases']]
    assert budget['cost'] <= 3000 and cost(qmodel) == budget['cost']
    if fit == 'retrain':
        assert 'trim' not in first and len(attempts) >= 2 and 'trim_finetune' not in phases
        return
    assert first['trim']['first']['within_budget'] and first['cost_kept'] <= 3000
    if fit == 'both':
        assert len(attempts) >= 2
        candidates = [a for a in attempts if a['cost_kept'] <= 3000]
        assert all('validation' in a for a in candidates)
        best = max(candidates, key=lambda a: a['validation'])  # the first of equals
        assert budget['kept_attempt'] == best['attempt'] and budget['cost'] == best['cost_kept']
        assert ('trim_finetune' in phases) == ('second' in best.get('trim', {}))  # the kept one trimmed
        if best is not first:  # lpsubnet prune's summary names the trimmed candidate that lost
            from lpsubnet.describe import budget_line

            assert f'the first, trained to {first["trained_cost"]:,.0f} and trimmed to ' in budget_line(budget)
        return
    # Trimmed: one training, the same attempt kept, its fine-tune among the exported model's phases.
    assert len(attempts) == 1 and budget['kept_attempt'] == 1
    trim = first['trim']
    assert trim['first']['within_budget'] and trim['first']['extra'] > 0 and trim['cost'] == budget['cost']
    assert first['cost_kept'] == budget['cost']
    assert phases.count('qat') == 1 and phases.count('trim_finetune') == 1
    assert phases.index('trim_finetune') == phases.index('qat') + 1
    # The trimmed sparsity is what the exported kernels hold (the fine-tune kept the zeros).
    held = trim['second']['sparsity'] if trim['second']['extra'] > 0 else trim['first']['sparsity']
    for name, sparsity in held.items():
        kernel = kernel_variable(qmodel.get_layer(name)).numpy()
        masked = int(np.floor(sparsity * kernel.size))
        assert int((kernel == 0).sum()) >= masked
        assert manifest['weight_pruning']['layers'][name]['sparsity'] == pytest.approx(masked / kernel.size, abs=1e-6)
    # lpsubnet prune's summary says so.
    from lpsubnet.describe import budget_line

    line = budget_line(budget)
    assert f'trained to {first["trained_cost"]:,.0f} LUT, over the budget: ' in line
    assert f'{100 * trim["first"]["extra"]:.1f} % more of its remaining weights zeroed and fine-tuned' in line
    # Saved and priced again, the design is the same; da4ml's logic is exact against it.
    path = tmp_path / 'trimmed.keras'
    qmodel.save(path)
    assert cost(path) == budget['cost']
    estimate = hls_backend.estimate_cost(path, inputs=digits()[2][:64])
    assert estimate.exact_samples == estimate.samples == 64
