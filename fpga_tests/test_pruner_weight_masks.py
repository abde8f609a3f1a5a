"""Weight-level sparsity after channel pruning (issue 26, item 3; pruner.weight_masks):
the ranking is the brute-force one, each layer is ranked on the already-masked network,
the zeros survive quantization-aware training and saving, the manifest and the
footprint count them, and the same seed gives the same result. The hardware side (the
zeros in the HLS weights and the RTL, and what they cost) is test_weight_sparsity_hw.py."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fpga_tests.pruner_models import digits, flatten_mlp, sequential_cnn, small_compress
from pruner import metrics
from pruner.errors import PrunerError
from pruner.options import CompressOptions
from pruner.weight_masks import keep_mask, prune_weights, ramp_sparsity, weight_prunable

SCORES = arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=st.floats(0, 4, width=16))


@settings(max_examples=150, deadline=None)
@given(SCORES, st.floats(0, 0.99))
def test_weight_granularity_drops_the_lowest_scores_of_the_layer(scores, sparsity):
    keep = keep_mask(scores, sparsity, 'weight', out_axis=-1)
    drop = int(np.floor(sparsity * scores.size))
    assert keep.sum() == scores.size - drop
    if 0 < drop < scores.size:  # no kept score below a dropped one
        assert scores[keep].min() >= scores[~keep].max()
    # Brute force over every set of the right size: the kept set has the largest sum.
    best = max(
        itertools.combinations(range(scores.size), scores.size - drop), key=lambda c: scores.ravel()[list(c)].sum()
    )
    assert np.isclose(scores.ravel()[keep.ravel()].sum(), scores.ravel()[list(best)].sum())


@settings(max_examples=150, deadline=None)
@given(SCORES, st.floats(0, 0.99))
def test_kofn_keeps_the_same_count_of_the_highest_scores_per_output_neuron(scores, sparsity):
    keep = keep_mask(scores, sparsity, 'kofn', out_axis=-1)
    n = scores.shape[0]
    k = n - int(np.floor(sparsity * n))
    assert np.all(keep.sum(axis=0) == k)
    for column in range(scores.shape[1]):
        kept, dropped = scores[keep[:, column], column], scores[~keep[:, column], column]
        if dropped.size:
            assert kept.min() >= dropped.max()


def test_kofn_groups_a_conv_kernel_by_filter():
    scores = np.random.default_rng(0).random((3, 3, 4, 5))  # kh, kw, cin, filters: fan-in 36
    keep = keep_mask(scores, 0.75, 'kofn', out_axis=-1)
    assert np.all(keep.reshape(-1, 5).sum(axis=0) == 36 - 27)


@pytest.fixture(scope='module')
def trained_mlp():
    keras.utils.set_random_seed(0)
    x, y, _, _ = digits()
    model = flatten_mlp()
    model.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:512], y[:512], epochs=3, batch_size=64, verbose=0)
    return model, x[:256]


def test_each_layer_is_ranked_on_the_already_masked_network(trained_mlp):
    model, x = trained_mlp
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    masks = prune_weights(clone, x, 0.5, 'weight')
    names = [layer.name for layer in weight_prunable(clone)]
    assert list(masks) == names and len(names) >= 2
    second = clone.get_layer(names[1])
    # What the second layer's ranking saw: its input on the network with the first layer masked ...
    masked_view = keras.Model(clone.inputs[0], second.input)
    expected = np.abs(np.asarray(masked_view(x), dtype=np.float64)).mean(axis=0)
    assert np.allclose(masks[names[1]].input_l1, expected, rtol=1e-6)
    # ... which is not what the dense network gives it.
    dense_view = keras.Model(model.inputs[0], model.get_layer(names[1]).input)
    dense = np.abs(np.asarray(dense_view(x), dtype=np.float64)).mean(axis=0)
    assert not np.allclose(dense, expected, rtol=1e-3)
    for name, mask in masks.items():
        kernel = np.asarray(clone.get_layer(name).kernel.numpy())
        assert np.all(kernel[~mask.keep] == 0)
        assert np.array_equal(kernel[mask.keep], np.asarray(model.get_layer(name).kernel.numpy())[mask.keep])


# kofn runs in make test-slow (the default suite's time budget); its structure is also tested above.
@pytest.mark.parametrize('granularity', ['weight', pytest.param('kofn', marks=pytest.mark.slow)])
def test_zeros_survive_qat_and_saving_and_are_counted(granularity, tmp_path):
    qmodel, manifest = small_compress(
        model_fn=sequential_cnn, granularity=granularity, weight_sparsity=0.6, qat_epochs=2
    )
    layers = manifest['weight_pruning']['layers']
    assert manifest['weight_pruning']['granularity'] == granularity
    assert set(layers) == {layer.name for layer in weight_prunable(qmodel)}
    qmodel.save(tmp_path / 'm.keras')
    from qkeras.utils import _add_supported_quantized_objects

    objects = {}
    _add_supported_quantized_objects(objects)
    loaded = keras.models.load_model(tmp_path / 'm.keras', custom_objects=objects, compile=False)
    total_nonzero = 0
    for name, entry in layers.items():
        kernel = np.asarray(loaded.get_layer(name).kernel.numpy())
        assert entry['weights'] == kernel.size
        # QAT trained the kept weights; the zeros stayed (a kept weight may also round to 0).
        assert np.count_nonzero(kernel) <= entry['nonzero']
        if granularity == 'kofn':
            n = entry['fan_in']
            assert entry['kept_per_neuron_min'] == entry['kept_per_neuron_max'] == n - int(np.floor(0.6 * n))
        else:
            assert entry['nonzero'] == kernel.size - int(np.floor(0.6 * kernel.size))
        total_nonzero += np.count_nonzero(kernel)
    footprint = metrics.footprint(loaded)
    assert footprint['weights_nonzero'] < footprint['weights']
    assert footprint['n_nonzero_weights'] < footprint['n_weights']
    assert manifest['metrics']['after']['footprint_nonzero_weight_bits'] == footprint['weights_nonzero']
    assert manifest['metrics']['weight_pruned_float'] is not None
    from lpsubnet.describe import weight_pruning_line

    line = weight_pruning_line(manifest['weight_pruning'])
    total = sum(entry['weights'] for entry in layers.values())
    nonzero = sum(entry['nonzero'] for entry in layers.values())
    assert line.startswith(f'weight sparsity ({granularity}, ramped in over ')
    assert f'{nonzero:,} of {total:,} weights in {len(layers)} layers are not 0' in line


@pytest.mark.parametrize('ramp', [pytest.param(0.0, marks=pytest.mark.slow), 0.5])
def test_zeros_are_exactly_where_the_last_masks_are_after_qat(ramp, monkeypatch):
    import pruner.weight_masks

    rankings = []

    def recording(*args, **kwargs):
        rankings.append((args[2], prune_weights(*args, **kwargs)))
        return rankings[-1][1]

    monkeypatch.setattr(pruner.weight_masks, 'prune_weights', recording)
    qmodel, manifest = small_compress(
        model_fn=sequential_cnn, granularity='weight', weight_sparsity=0.5, qat_epochs=2, weight_ramp=ramp
    )
    history = manifest['weight_pruning']['rankings']
    # The QAT rankings are the last ones (before them, compress's ranking of the float model may be recorded).
    sparsities = [s for s, _ in rankings][-len(history) :]
    assert [h['sparsity'] for h in history] == pytest.approx(sparsities, abs=1e-6)  # the manifest rounds to 6 digits
    if ramp:  # cubic: growing to the target, ranked anew at evenly spaced steps of the ramp
        assert len(sparsities) > 2 and sparsities == sorted(sparsities) and sparsities[-1] == 0.5
        assert manifest['weight_pruning']['ramp_steps'] == 8  # half of 2 epochs of 8 steps
    else:
        assert sparsities == [0.5] and history[0]['step'] == 0
    for name, mask in rankings[-1][1].items():
        kernel = np.asarray(qmodel.get_layer(name).kernel.numpy())
        assert np.all(kernel[~mask.keep] == 0), name
        assert np.count_nonzero(kernel[mask.keep]) > 0.8 * mask.keep.sum(), name  # the kept ones trained on


def test_the_cubic_ramp():
    assert ramp_sparsity(0, 100, 0.8) == 0.0
    assert ramp_sparsity(50, 100, 0.8) == pytest.approx(0.8 * (1 - 0.5**3))
    assert ramp_sparsity(100, 100, 0.8) == ramp_sparsity(500, 100, 0.8) == ramp_sparsity(3, 0, 0.8) == 0.8


@pytest.mark.slow
def test_same_seed_same_weight_masks():
    a, ma = small_compress(seed=3, granularity='kofn', weight_sparsity=0.5)
    b, mb = small_compress(seed=3, granularity='kofn', weight_sparsity=0.5)
    assert ma['weight_pruning'] == mb['weight_pruning']
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        assert np.array_equal(wa, wb)


@pytest.mark.parametrize(
    'settings, message',
    [
        ({'weight_sparsity': 0.5}, r"granularity='channel', weight_sparsity=0.5: weight_sparsity > 0 needs"),
        ({'granularity': 'weight', 'weight_sparsity': 1.0}, r'weight_sparsity=1.0'),
        (
            {'granularity': 'rows', 'weight_sparsity': 0.5},
            r"granularity='rows': should be 'channel' or 'weight' or 'kofn'",
        ),
        ({'granularity': 'kofn', 'weight_sparsity': 0.5, 'joint': True}, r'joint mode has no such step'),
    ],
)
def test_bad_weight_sparsity_settings_name_the_setting(settings, message):
    with pytest.raises(PrunerError, match=message):
        CompressOptions.build(**settings)


def test_a_weight_granularity_at_sparsity_0_is_a_no_op_a_sweep_can_try(trained_mlp):
    assert CompressOptions.build(granularity='weight').weight_sparsity == 0.0
    model, x = trained_mlp
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    assert prune_weights(clone, x, 0.0, 'weight') == {}
    for a, b in zip(clone.get_weights(), model.get_weights(), strict=True):
        assert np.array_equal(a, b)
