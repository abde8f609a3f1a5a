"""A trained design over its LUT budget is trimmed, not trained again (pruner.trim,
budget_fit 'trim'): greedily, one layer's step of weight zeros at a time, the layer whose
step costs least loss per unit of logic saved, until the cost model itself says it fits;
the trimmed design fine-tuned and exported with its zeros, exact; nothing changes where it
fits already or where a trim cannot fit it.
"""

import numpy as np
import pytest

import hls_backend
from fpga_tests.pruner_models import digits, flatten_mlp, small_compress
from pruner.allocate import adder_bits, task_loss
from pruner.quantize import StepRule, calibrate, plan_quantization
from pruner.surgery import fold_batchnorm, to_qkeras
from pruner.trim import TRIM_MAX_SHARE, TRIM_STEP, trim_to_budget
from pruner.weight_masks import keep_mask, kernel_variable, prune_weights, weight_prunable, weight_scores


@pytest.fixture(scope='module')
def trained_qmodel():
    """flatten_mlp trained a little on digits, quantized at 4-bit weights (QKeras), with the
    task loss on held-out samples (what a trim judges a step by)."""
    import keras

    x, y, xt, yt = digits()
    model = flatten_mlp()
    model.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:512], y[:512], epochs=4, batch_size=64, verbose=0)
    model = fold_batchnorm(model)
    plan = plan_quantization(model, calibrate(model, x[:256]), 4, 8, rule=StepRule('mse'))
    qmodel = to_qkeras(model, plan)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return qmodel, x[:256], lambda m: task_loss(m, xt[:128], yt[:128], loss_fn)


def _digits(qmodel) -> float:
    """A cost that, like a fully unrolled design's, drops zero products: nonzero signed digits."""
    return float(adder_bits(qmodel))


def _kernels(qmodel) -> dict:
    return {layer.name: kernel_variable(layer).numpy().copy() for layer in weight_prunable(qmodel)}


def _restore(qmodel, kernels) -> None:
    for name, kernel in kernels.items():
        kernel_variable(qmodel.get_layer(name)).assign(kernel)


def test_each_step_zeros_the_layer_that_costs_least_loss_per_logic_saved(trained_qmodel):
    """Replayed by hand from the trained kernels: at every step, each layer's next TRIM_STEP
    of its remaining weights (lowest |w| x mean |input| on the network as trimmed so far)
    is tried, and the recorded layer is the one with the least loss rise per unit of the
    logic proxy saved; the search stops at the first step the cost fits, and the model is
    left as the last step made it."""
    qmodel, x, loss = trained_qmodel
    start = _kernels(qmodel)
    try:
        prune_weights(qmodel, x, 0.25, 'weight')  # what QAT's masks left
        trained = _kernels(qmodel)
        before = _digits(qmodel)
        limit = 0.9 * before
        trim = trim_to_budget(qmodel, x, 0.25, 'weight', _digits, limit, loss)
        assert trim.within and trim.cost_before == before and trim.steps
        assert _digits(qmodel) == trim.cost == trim.steps[-1].cost <= limit
        assert all(step.cost > limit for step in trim.steps[:-1])
        left = _kernels(qmodel)
        _restore(qmodel, trained)
        level = dict.fromkeys(trained, 0.25)
        for step in trim.steps:
            scores = weight_scores(qmodel, x)
            loss_now, proxy_now = loss(qmodel), adder_bits(qmodel)
            rates, masked = {}, {}
            for layer in weight_prunable(qmodel):
                kernel = kernel_variable(layer).numpy()
                target = level[layer.name] + TRIM_STEP * (1 - level[layer.name])
                keep = keep_mask(scores[layer.name][0], target, 'weight', scores[layer.name][1])
                kernel_variable(layer).assign(np.where(keep, kernel, 0))
                saved = proxy_now - adder_bits(qmodel)
                if saved > 0:
                    rates[layer.name] = (loss(qmodel) - loss_now) / saved
                masked[layer.name] = (np.where(keep, kernel, 0), target)
                kernel_variable(layer).assign(kernel)
            assert step.layer == min(rates, key=rates.get)
            kernel, level[step.layer] = masked[step.layer]
            kernel_variable(qmodel.get_layer(step.layer)).assign(kernel)
            assert step.sparsity == pytest.approx(level[step.layer]) and _digits(qmodel) == step.cost
        assert all(np.array_equal(left[k], v) for k, v in _kernels(qmodel).items())
        assert trim.sparsity == pytest.approx(level)
    finally:
        _restore(qmodel, start)


def test_a_design_within_the_budget_is_left_as_it_is(trained_qmodel):
    qmodel, x, loss = trained_qmodel
    before = _kernels(qmodel)
    trim = trim_to_budget(qmodel, x, 0.0, 'weight', _digits, _digits(qmodel), loss)
    assert trim.within and not trim.steps and trim.cost == trim.cost_before
    assert all(np.array_equal(before[k], v) for k, v in _kernels(qmodel).items())


def test_a_budget_out_of_a_trims_reach_leaves_the_trained_design(trained_qmodel):
    qmodel, x, loss = trained_qmodel
    before = _kernels(qmodel)
    sizes = {k: v.size for k, v in before.items()}
    trim = trim_to_budget(qmodel, x, 0.0, 'weight', _digits, 0.1 * _digits(qmodel), loss)
    assert not trim.within and trim.cost == trim.cost_before and trim.steps
    assert all(step.cost > 0.1 * trim.cost_before for step in trim.steps)
    # It went as far as a trim may (TRIM_MAX_SHARE of the weights), then put the trained design back.
    last = {step.layer: step.sparsity for step in trim.steps}
    zeroed = sum(int(np.floor(last.get(k, 0.0) * n)) for k, n in sizes.items())
    assert zeroed >= TRIM_MAX_SHARE * sum(np.count_nonzero(v) for v in before.values())
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


@pytest.mark.parametrize('fit', ['trim', pytest.param('retrain', marks=pytest.mark.slow)])
def test_an_over_budget_design_is_trimmed_and_fine_tuned_not_trained_again(monkeypatch, fit, tmp_path):
    cost = _over_after_training(monkeypatch)
    qmodel, manifest = small_compress(
        model_fn=flatten_mlp, max_lut=3000, cost=cost, epochs=3, qat_epochs=4, granularity='weight',
        weight_sparsity=0.25, budget_fit=fit,
    )  # fmt: skip
    budget = manifest['budget']
    first = budget['attempts'][0]
    assert first['trained_cost'] > 3000
    phases = [p['phase'] for p in manifest['recovery']['phases']]
    assert budget['cost'] <= 3000 and cost(qmodel) == budget['cost']
    if fit == 'retrain':
        assert 'trim' not in first and len(budget['attempts']) >= 2 and 'trim_finetune' not in phases
        return
    # Trimmed: one training, the same attempt kept, its fine-tune among the exported model's phases.
    assert len(budget['attempts']) == 1 and budget['kept_attempt'] == 1
    trim = first['trim']
    assert trim['first']['within_budget'] and trim['first']['steps'] and trim['cost'] == budget['cost']
    assert first['cost_kept'] == budget['cost']
    assert phases.count('qat') == 1 and phases.count('trim_finetune') == 1
    assert phases.index('trim_finetune') == phases.index('qat') + 1
    # The trimmed sparsity is what the exported kernels hold (the fine-tune kept the zeros).
    held = trim['second']['sparsity']  # the first trim's, and the second's steps if the fine-tune moved it over
    for name, sparsity in held.items():
        kernel = kernel_variable(qmodel.get_layer(name)).numpy()
        masked = int(np.floor(sparsity * kernel.size))
        assert int((kernel == 0).sum()) >= masked
        assert manifest['weight_pruning']['layers'][name]['sparsity'] == pytest.approx(masked / kernel.size, abs=1e-6)
    # lpsubnet prune's summary says so.
    from lpsubnet.describe import budget_line

    line = budget_line(budget)
    assert f'trained to {first["trained_cost"]:,.0f} LUT, over the budget: ' in line
    steps = len(trim['first']['steps']) + len(trim['second']['steps'])
    assert f'trimmed in {steps} steps (' in line and ') and fine-tuned' in line
    # Saved and priced again, the design is the same; da4ml's logic is exact against it.
    path = tmp_path / 'trimmed.keras'
    qmodel.save(path)
    assert cost(path) == budget['cost']
    estimate = hls_backend.estimate_cost(path, inputs=digits()[2][:64])
    assert estimate.exact_samples == estimate.samples == 64
