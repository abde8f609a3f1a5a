"""Precision per layer under a budget (issue 26, item 2): the greedy layerwise allocation
never leaves the design over the budget, records every step, is deterministic, and the
trained, exported design is within the budget by the same cost model; designs it makes
stay bit-exact.

The footprint budget needs no hardware; the LUT budget uses da4ml's estimate of the RTL
design (``hls_backend.estimate_cost``), passed in by the caller as lpsubnet does.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hls_backend
from fpga_tests.pruner_models import digits, small_compress
from pruner import metrics
from pruner.allocate import MIN_BITS, BitAllocator, adder_bits, signed_digits
from pruner.errors import PrunerError
from pruner.quantize import StepRule, calibrate, plan_quantization
from pruner.surgery import fold_batchnorm, to_qkeras


def _naf_weight(n: int) -> int:
    """Nonzero digits of the non-adjacent form, digit by digit."""
    n, count = abs(n), 0
    while n:
        if n & 1:
            n -= 2 - (n % 4)  # digit +1 or -1
            count += 1
        n //= 2
    return count


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=30))
def test_signed_digits_count_the_non_adjacent_form(values):
    assert list(signed_digits(np.asarray(values))) == [_naf_weight(v) for v in values]


def _footprint_kbit(model) -> float:
    return metrics.footprint(model)['total'] / 1000.0


@pytest.fixture(scope='module')
def float_mlp():
    """A small float MLP on digits, trained a little, BatchNorm-free (as after folding)."""
    import keras

    keras.utils.set_random_seed(0)
    x, y, xt, yt = digits()
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Flatten(name='flat')(inp)
    h = keras.layers.Dense(32, activation='relu', name='fc1')(h)
    h = keras.layers.Dense(16, activation='relu', name='fc2')(h)
    out = keras.layers.Dense(10, name='logits')(h)
    model = keras.Model(inp, out)
    model.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    return fold_batchnorm(model), (x, y, xt, yt)


def _allocator(float_mlp, cost, unit='kbit', **kwargs):
    import keras

    model, (x, y, xt, yt) = float_mlp
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return BitAllocator(
        model, calibrate(model, x[:256]), xt, yt, loss, cost, unit, 8, 8, rule=StepRule('mse'), **kwargs
    )


def test_the_allocation_meets_the_budget_one_recorded_bit_at_a_time(float_mlp):
    allocator = _allocator(float_mlp, _footprint_kbit)
    start = allocator.allocate(1e9)
    assert start.steps == [] and start.within_budget  # already within: nothing changes
    budget = 0.6 * start.cost
    allocation = allocator.allocate(budget)
    assert allocation.within_budget and allocation.cost <= budget < allocation.start_cost
    steps = allocation.steps
    # The stop is decided on the cost model's own figure; earlier steps were over the budget
    # (measured, or predicted from the logic proxy where the model was not asked).
    assert steps and steps[-1].cost is not None and steps[-1].cost <= budget
    assert all((s.cost if s.cost is not None else s.predicted_cost) > budget for s in steps[:-1])
    assert 1 <= allocation.cost_calls <= len(steps) + 1
    # Every step takes one bit off one quantizer; replaying them gives the final bits.
    replayed = {}
    for s in steps:
        before = replayed.get(s.layer, {}).get(s.setting, 8)
        assert s.bits == before - 1 >= MIN_BITS
        replayed.setdefault(s.layer, {})[s.setting] = s.bits
    assert replayed == allocation.layer_bits
    # The recorded cost is the real one of the model those bits give.
    model, (x, *_) = float_mlp
    plan = plan_quantization(model, calibrate(model, x[:256]), 8, 8, None, allocation.layer_bits, StepRule('mse'))
    assert _footprint_kbit(to_qkeras(model, plan)) == pytest.approx(allocation.cost)
    # Same data, same choices.
    again = _allocator(float_mlp, _footprint_kbit).allocate(budget)
    assert again.to_dict() == allocation.to_dict()


def test_an_unreachable_budget_is_refused_with_the_lowest_cost_reached(float_mlp):
    allocator = _allocator(float_mlp, _footprint_kbit)
    with pytest.raises(PrunerError, match=r'out of reach by precision alone: with every quantizer at 2 bits'):
        allocator.allocate(0.001)


def test_activations_stay_at_or_above_their_floor(float_mlp):
    allocator = _allocator(float_mlp, _footprint_kbit, min_activation_bits=5)
    start = allocator.allocate(1e9).cost
    allocation = allocator.allocate(0.4 * start)
    assert allocation.within_budget
    lowered = {s.setting for s in allocation.steps}
    assert lowered == {'weight_bits', 'activation_bits'}  # both kinds were lowered, activations to 5 at most
    assert all(s.bits >= 5 for s in allocation.steps if s.setting == 'activation_bits')
    assert all(s.bits >= MIN_BITS for s in allocation.steps if s.setting == 'weight_bits')
    assert min(s.bits for s in allocation.steps if s.setting == 'weight_bits') < 5
    assert allocation.activation_floor_relaxed_after is None


def test_activations_go_below_their_floor_only_when_nothing_else_is_left(float_mlp):
    """A budget between the floor's cheapest design (weights at 2 bits, activations at 5)
    and the cheapest of all (everything at 2) is met, not refused: once every weight is at 2
    bits the search goes on with the activations, and the allocation says after which step."""
    model, (x, *_) = float_mlp
    calibration = calibrate(model, x[:256])
    # Biases keep the starting 8 bits: the search lowers a layer's other weights only.
    rule = StepRule('mse')
    floor_lowest = _footprint_kbit(to_qkeras(model, plan_quantization(model, calibration, MIN_BITS, 5, 8, rule=rule)))
    lowest = _footprint_kbit(to_qkeras(model, plan_quantization(model, calibration, MIN_BITS, MIN_BITS, 8, rule=rule)))
    assert lowest < floor_lowest
    allocation = _allocator(float_mlp, _footprint_kbit, min_activation_bits=5).allocate((lowest + floor_lowest) / 2)
    assert allocation.within_budget
    relaxed = allocation.activation_floor_relaxed_after
    assert relaxed is not None
    before, after = allocation.steps[:relaxed], allocation.steps[relaxed:]
    assert all(s.bits >= 5 for s in before if s.setting == 'activation_bits')
    assert after and all(s.setting == 'activation_bits' for s in after)  # the weights were all at 2 already
    assert min(s.bits for s in after) < 5
    with pytest.raises(PrunerError, match=r'with every quantizer at 2 bits the design still costs'):
        _allocator(float_mlp, _footprint_kbit, min_activation_bits=5).allocate(0.001)


def test_the_logic_proxy_falls_with_the_bits(float_mlp):
    model, (x, *_) = float_mlp
    calibration = calibrate(model, x[:256])
    wide = to_qkeras(model, plan_quantization(model, calibration, 8, 8))
    narrow = to_qkeras(model, plan_quantization(model, calibration, 3, 4))
    assert 0 < adder_bits(narrow) < adder_bits(wide)


def test_a_lut_budget_needs_a_cost_model_and_one_budget_at_a_time():
    x, y, xt, yt = digits()
    from pruner import compress

    with pytest.raises(PrunerError, match=r'max_lut=5000 needs a LUT cost model: pass compress\(cost=...\)'):
        compress(fold_batchnorm(float_model_for_errors()), (x[:64], y[:64]), (xt[:32], yt[:32]), max_lut=5000)
    with pytest.raises(PrunerError, match='give one budget, not both'):
        compress(float_model_for_errors(), (x[:64], y[:64]), (xt[:32], yt[:32]), max_lut=5000, max_footprint_kbit=4)
    with pytest.raises(PrunerError, match='joint=True: a budget'):
        compress(float_model_for_errors(), (x[:64], y[:64]), (xt[:32], yt[:32]), max_footprint_kbit=4, joint=True)


def float_model_for_errors():
    import keras

    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(10, name='logits')(keras.layers.Flatten()(inp))
    return keras.Model(inp, out)


def _lut(model) -> float:
    return hls_backend.estimate_cost(model).lut_estimate


@pytest.fixture(scope='module')
def lut_budgeted(tmp_path_factory):
    """The shared short compress run under a LUT budget, with da4ml's estimate."""
    from fpga_tests.pruner_models import flatten_mlp

    qmodel, manifest = small_compress(
        model_fn=flatten_mlp, max_lut=3000, step_criterion='mse', cost=_lut, epochs=3, qat_epochs=2
    )
    path = tmp_path_factory.mktemp('budget') / 'budgeted.keras'
    qmodel.save(path)
    return qmodel, manifest, path


def test_the_exported_design_is_within_the_lut_budget_by_its_own_estimate(lut_budgeted, tmp_path):
    qmodel, manifest, path = lut_budgeted
    budget = manifest['budget']
    assert budget['limit'] == 3000 and budget['unit'] == 'LUT'
    # The exported design is the kept attempt's (with the fill, not always the last one tried).
    allocation = budget['attempts'][budget['kept_attempt'] - 1]
    assert budget['cost'] <= 3000 and allocation['trained_cost'] == budget['cost']
    assert 'qat_phase' not in allocation
    assert allocation['steps'] and allocation['start_cost'] > 3000
    # The saved model, priced again from its file, and the RTL project's own estimate agree.
    assert _lut(path) == budget['cost']
    info = hls_backend.write_rtl(path, tmp_path / 'rtl', inputs=digits()[2][:8])
    assert info.design['lut_estimate'] <= 3000
    # The chosen bits are the exported types.
    for layer, bits in allocation['layer_bits'].items():
        entry = manifest['quantization']['input' if layer == '__input__' else 'layers']
        entry = entry if layer == '__input__' else entry[layer]
        if 'weight_bits' in bits:
            assert entry['weights']['kernel']['bits'] == bits['weight_bits']
        if 'activation_bits' in bits:
            assert (entry if layer == '__input__' else entry['activation'])['bits'] == bits['activation_bits']


def test_budgeted_designs_are_bit_exact_in_c_simulation(lut_budgeted, tmp_path):
    _, _, path = lut_budgeted
    x = digits()[2][:40]
    info = hls_backend.write_project(path, tmp_path / 'prj', hls_backend.HLSOptions(), inputs=x)
    assert info.exact_by_construction
    result = hls_backend.csim(tmp_path / 'prj', second_check=False)
    assert result.exact_matches == result.samples == 40 and result.max_abs_diff == 0.0


def test_lpsubnet_prune_says_what_the_budget_gave(lut_budgeted):
    from lpsubnet.describe import budget_line

    _, manifest, _ = lut_budgeted
    line = budget_line(manifest['budget'])
    assert line.startswith('budget 3,000 LUT: ') and f'-> {manifest["budget"]["cost"]:,.0f} LUT after training' in line
    assert 'one-bit steps' in line and 'bits: ' in line
    budget = manifest['budget']
    kept = budget['attempts'][budget['kept_attempt'] - 1]
    relaxed = kept['activation_floor_relaxed_after']
    assert ('went below the floor (min_activation_bits) after step' in line) == (relaxed is not None)
    if len(budget['attempts']) > 1:  # the line names the exported attempt, whose bits it gives
        assert f'{len(budget["attempts"])} allocations' in line
        assert ('first', 'second', 'third')[budget['kept_attempt'] - 1] + ' kept' in line
        assert f'{len(kept["steps"])} one-bit steps' in line


def test_the_budget_line_says_why_each_other_allocation_was_not_kept():
    """Every trained allocation but the exported one is named with its reason: trimmed or
    not, a design within the budget lost on validation; a design over it stayed over."""
    from lpsubnet.describe import budget_line

    def attempt(n, trained, kept_cost=None, validation=None, trimmed=False):
        entry = {'attempt': n, 'trained_cost': trained, 'cost_kept': kept_cost or trained, 'start_cost': 22091,
                 'steps': [{}] * 5, 'cost_calls': 18, 'layer_bits': {'dense': {'weight_bits': 3}}}  # fmt: skip
        if trimmed:
            entry['trim'] = {'first': {'extra': 0.1}, 'second': {'extra': 0.0}, 'cost': kept_cost}
        return entry | ({'validation': validation} if validation is not None else {})

    budget = {'limit': 4000, 'unit': 'LUT', 'cost': 3880, 'kept_attempt': 1, 'attempts': [
        attempt(1, 4411, 3880, 0.6335, trimmed=True),
        attempt(2, 4006.5, 3930.5, 0.5325, trimmed=True),
        attempt(3, 3206, validation=0.485),
        attempt(4, 4120),
    ]}  # fmt: skip
    line = budget_line(budget)
    assert '4 allocations' in line and 'the first kept' in line
    assert 'the second, trained to 4,006 and trimmed to 3,930 LUT, lost on validation (0.5325 against 0.6335)' in line
    assert 'the third, trained to 3,206 LUT, lost on validation (0.485 against 0.6335)' in line
    assert 'the 4th, trained to 4,120 LUT, stayed over the budget' in line
    assert 'the first, trained' not in line  # the kept one is described by the rest of the line


def _price_trained_designs(monkeypatch, price):
    """Route compress's pricing of each trained design through ``price(n, lut)`` (n = 1 for
    the first one trained); every other pricing is da4ml's estimate. Returns (the cost
    function, the validation accuracy of each trained design, the pruner.phases module)."""
    import sys

    from pruner import compress  # noqa: F401  (loads pruner.phases)

    module = sys.modules['pruner.phases']
    real_qat = module._qat
    results, trained_next = [], [False]

    def qat(*args, **kwargs):
        quantized = real_qat(*args, **kwargs)
        results.append(quantized.result['accuracy'])
        trained_next[0] = True  # compress prices the trained design next
        return quantized

    def cost(model):
        lut = _lut(model)
        if trained_next[0]:
            trained_next[0] = False
            return price(len(results), lut)
        return lut

    monkeypatch.setattr(module, '_qat', qat)
    return cost, results, module


@pytest.mark.slow  # two trainings; test_pruner_trim's default case also allocates an over-budget design again
def test_an_over_budget_trained_design_is_allocated_again(monkeypatch):
    """The first trained design is priced over the budget (5 % over its estimate, at least
    3050): the bits are allocated again for a design smaller by that growth, and the second
    design is exported."""
    from fpga_tests.pruner_models import flatten_mlp

    def price(n, lut):
        return max(lut * 1.05, 3050.0) if n == 1 else lut  # the first over the budget of 3000, by little

    cost, _, module = _price_trained_designs(monkeypatch, price)
    BUDGET_MARGIN = module.BUDGET_MARGIN  # noqa: N806  (the module's constant)
    monkeypatch.setattr(module, 'BUDGET_FILL', 0.0)  # whatever the second design costs under 3000, it is kept
    _, manifest = small_compress(model_fn=flatten_mlp, max_lut=3000, cost=cost, epochs=3, qat_epochs=1)
    attempts = manifest['budget']['attempts']
    assert len(attempts) == 2 and attempts[0]['trained_cost'] > 3000
    allocated = min(3000, attempts[0]['cost'])  # the allocated design's figure, scaled by the overshoot
    assert attempts[1]['target'] == pytest.approx(allocated * 3000 / attempts[0]['trained_cost'] * (1 - BUDGET_MARGIN))
    assert manifest['budget']['cost'] == attempts[1]['trained_cost'] <= 3000
    assert [p['phase'] for p in manifest['recovery']['phases']].count('qat') == 1  # the exported model's QAT only


def test_a_design_well_under_the_budget_is_allocated_again_and_the_better_kept(monkeypatch):
    """The first trained design is priced at half its estimate: the bits are allocated again for
    a design larger by that shrinkage; of the attempts within the budget, the one with the better
    validation accuracy is exported, and its figures are the manifest's."""
    from fpga_tests.pruner_models import flatten_mlp

    def price(n, lut):
        # The first trained far under the budget; the larger design fits (the test is about what is kept).
        return lut / 2 if n == 1 else min(lut, 2999.0)

    cost, results, module = _price_trained_designs(monkeypatch, price)
    _, manifest = small_compress(model_fn=flatten_mlp, max_lut=3000, cost=cost, epochs=3, qat_epochs=1)
    budget = manifest['budget']
    attempts = budget['attempts']
    assert len(attempts) == 2 and attempts[0]['trained_cost'] < module.BUDGET_FILL * 3000
    grown = attempts[0]['cost'] * 3000 / attempts[0]['trained_cost'] * (1 - module.BUDGET_MARGIN)
    assert attempts[1]['target'] == pytest.approx(grown) and attempts[1]['target'] > 3000
    best = int(np.argmax(results))  # the first of equals
    assert budget['kept_attempt'] == best + 1
    assert budget['cost'] == attempts[best]['trained_cost'] <= 3000
    assert 'qat_phase' not in attempts[best] and 'qat_phase' in attempts[1 - best]
    assert [p['phase'] for p in manifest['recovery']['phases']].count('qat') == 1  # the exported model's QAT only
    assert manifest['metrics']['quantized']['accuracy'] == pytest.approx(results[best])


def test_weight_sparsity_competes_with_bits_for_the_budget(float_mlp):
    """With the layers' weight scores, a step may raise one layer's weight sparsity to the
    next level instead of taking a bit: the budget is met on the cost model's figure,
    every step is recorded, and replaying them gives the final bits and sparsities."""
    import keras

    from pruner.allocate import SPARSITY_LEVELS
    from pruner.weight_masks import keep_mask, weight_scores

    model, (x, y, xt, yt) = float_mlp
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    scores = weight_scores(model, x[:256])

    def nonzero_digits(qmodel):  # a cost that, like a fully unrolled design's, drops zero products
        return adder_bits(qmodel) / 1000.0

    def allocator():
        return BitAllocator(model, calibrate(model, x[:256]), xt, yt, loss, nonzero_digits, 'LUT', 8, 8,
                            rule=StepRule('mse'), weight_scores=scores, sparsity=0.0)  # fmt: skip

    start = allocator().allocate(1e9).cost
    budget = 0.2 * start
    allocation = allocator().allocate(budget)
    assert allocation.within_budget and allocation.cost <= budget
    sparsity_steps = [s for s in allocation.steps if s.setting == 'weight_sparsity']
    assert sparsity_steps, 'zeroing weights saves digits at little loss: some layer takes sparsity steps'
    replayed_bits, replayed_sparsity = {}, {}
    for s in allocation.steps:
        if s.setting == 'weight_sparsity':
            before = replayed_sparsity.get(s.layer, 0.0)
            assert s.bits is None and s.sparsity == min(v for v in SPARSITY_LEVELS if v > before)
            replayed_sparsity[s.layer] = s.sparsity
        else:
            replayed_bits.setdefault(s.layer, {})[s.setting] = s.bits
    assert replayed_bits == allocation.layer_bits and replayed_sparsity == allocation.layer_sparsity
    # The figure recorded is the one the chosen bits and masks give.
    plan = plan_quantization(model, calibrate(model, x[:256]), 8, 8, None, allocation.layer_bits, StepRule('mse'))
    qmodel = to_qkeras(model, plan)
    for name, level in allocation.layer_sparsity.items():
        layer = qmodel.get_layer(name)
        kernel, *rest = layer.get_weights()
        layer.set_weights([np.where(keep_mask(scores[name][0], level, 'weight', scores[name][1]), kernel, 0), *rest])
    assert nonzero_digits(qmodel) == pytest.approx(allocation.cost)
    assert allocator().allocate(budget).to_dict() == allocation.to_dict()  # same data, same choices
