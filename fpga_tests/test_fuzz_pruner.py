"""Fuzzed pruner properties: surgery preserves the masked model; manifests and schedules round-trip.

Architectures come from fpga_tests/fuzz_models.py (the float models of the pruner's
route: Dense / Conv1D / Conv2D / DepthwiseConv2D stacks, BatchNorm, pooling, padding,
upsampling, Reshape, Dropout, Flatten, residual Add and Concatenate). The default suite runs explicit seeded draws that
cover every layer kind (none of the simplest models) plus a few generated ones;
``LPSUBNET_FUZZ=1`` runs many more (fuzz_settings.py).
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import event, example, given, note
from hypothesis import strategies as st

import pruner
from fpga_tests.fuzz_models import build_float, covering_specs, missing_features, model_specs, random_masks
from fpga_tests.fuzz_settings import examples, fixed_seed

# Input kinds, BatchNorm and Keras layer classes (fuzz_models.spec_features) the draws cover.
SURGERY_FEATURES = {
    'dense', 'conv1d', 'conv2d', 'batchnorm', 'DepthwiseConv2D', 'Add', 'Concatenate', 'MaxPooling1D', 'MaxPooling2D',
    'GlobalMaxPooling2D', 'Flatten', 'Reshape', 'Dropout', 'UpSampling2D', 'ZeroPadding1D', 'ZeroPadding2D',
}  # fmt: skip
SURGERY_DRAWS = covering_specs(7, 5000, SURGERY_FEATURES, route='pruned')


def test_surgery_draws_cover_the_generator():
    assert not missing_features(SURGERY_DRAWS, SURGERY_FEATURES)


def _with_draws(test):
    """The seeded, covering draws as explicit examples, run before the generated ones."""
    for seed, spec in SURGERY_DRAWS:
        test = example(spec=spec, mask_seed=seed, fraction=0.5)(test)
    return test


@fixed_seed
@examples(default=3, fuzz=300)
@given(spec=model_specs(route='pruned'), mask_seed=st.integers(0, 2**16), fraction=st.floats(0.2, 0.9))
@_with_draws
def test_fuzz_surgery_preserves_the_masked_model(spec, mask_seed, fraction):
    note(f'spec={spec!r}')
    model = build_float(spec)
    rng = np.random.default_rng(mask_seed)
    masked = random_masks(pruner.MaskedModel(model), rng, fraction)
    reduced = pruner.reduce(masked)
    x = rng.normal(0, 1, size=(16, *spec['input_shape'])).astype('float32')
    expected = masked.model.predict(x, verbose=0)
    got = reduced.predict(x, verbose=0)
    # float32: different summation order after channels are removed; scale-aware tolerance.
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)
    kept = masked.kept()
    if any(len(kept[g.index]) < g.channels for g in masked.table.prunable):
        assert reduced.count_params() < model.count_params(), 'channels were cut but no parameter went'
        event('pruned')
    else:
        assert reduced.count_params() == model.count_params()
        event('nothing to prune (every group has one channel)')
    for g in masked.table.prunable:
        for producer in g.producers:
            assert reduced.get_layer(producer).output.shape[-1] == len(kept[g.index])
    event(f'{len(masked.table.prunable)} prunable groups')


@fixed_seed
@examples(default=1, fuzz=25)
@given(
    spec=model_specs(route='pruned', kinds=('dense', 'conv2d'), max_blocks=2),
    sparsity=st.sampled_from([0.0, 0.25, 0.5]),
    wbits=st.integers(2, 8),
)
def test_fuzz_compress_manifest_round_trips_through_json(spec, sparsity, wbits):
    # a classifier: at least two classes
    spec = {
        **spec,
        'layers': [*spec['layers'][:-1], {**spec['layers'][-1], 'units': max(2, spec['layers'][-1]['units'])}],
    }
    note(f'spec={spec!r}')
    model = build_float(spec)
    n_out = model.outputs[0].shape[-1]
    rng = np.random.default_rng(spec['seed'])
    x = rng.normal(0, 1, size=(64, *spec['input_shape'])).astype('float32')
    y = rng.integers(0, n_out, size=64)
    reduced, manifest = pruner.compress(
        model,
        (x[:48], y[:48]),
        (x[48:], y[48:]),
        sparsity=sparsity,
        weight_bits=wbits,
        activation_bits=8,
        schedule='oneshot',
        epochs=1,
        qat_epochs=0,
        batch_size=16,
        verbose=0,
    )
    text = json.dumps(manifest, allow_nan=True)
    assert json.loads(text) == json.loads(json.dumps(json.loads(text)))
    back = json.loads(text)
    assert back == _normalise(manifest)
    if 'schedule' in manifest:
        schedule = pruner.Schedule.from_dict(back['schedule'])
        assert schedule.to_dict() == back['schedule']


def _normalise(value):
    """What JSON gives back: tuples become lists (NaN compares unequal, so none may occur)."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


windows = st.builds(
    pruner.Window,
    groups=st.lists(st.integers(0, 50), min_size=1, max_size=5).map(tuple),
    start=st.integers(0, 10_000),
    length=st.integers(1, 10_000),
    refresh=st.integers(1, 10_000),
    ramp=st.sampled_from(['step', 'cubic']),
)


@fixed_seed
@examples(default=200, fuzz=5000)
@given(
    kind=st.sampled_from(['layerwise', 'oneshot', 'gradual']),
    ws=st.lists(windows, max_size=6),
    steps=st.none() | st.integers(1, 1000),
    names=st.lists(st.text(min_size=1, max_size=8), max_size=6),
)
def test_fuzz_schedule_round_trips(kind, ws, steps, names):
    schedule = pruner.Schedule(kind, ws, steps, names)
    data = json.loads(json.dumps(schedule.to_dict()))
    again = pruner.Schedule.from_dict(data)
    assert again == schedule
    assert again.to_dict() == data
    assert str(again) == str(schedule)


@fixed_seed
@examples(default=100, fuzz=2000)
@given(
    kind=st.sampled_from(['layerwise', 'oneshot', 'gradual']),
    groups=st.lists(st.integers(0, 30), max_size=8, unique=True),
    start=st.integers(0, 100),
    interval=st.integers(1, 500),
    refresh=st.integers(1, 500),
)
def test_fuzz_make_schedule_round_trips_and_covers_every_group(kind, groups, start, interval, refresh):
    schedule = pruner.make_schedule(kind, groups, start=start, interval=interval, refresh=refresh)
    assert pruner.Schedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    covered = sorted(g for w in schedule.windows for g in w.groups)
    assert covered == sorted(groups)
    for w in schedule.windows:
        assert w.update_steps()[-1] == w.end and all(w.start < s <= w.end for s in w.update_steps())
