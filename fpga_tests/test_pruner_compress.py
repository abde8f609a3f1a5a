"""compress() end to end on sklearn digits: accuracy, manifest, save/reload, determinism."""

import json

import keras
import numpy as np
import pytest

from fpga_tests.pruner_models import digits, residual_cnn, sequential_cnn
from fpga_tests.pruner_models import small_compress as small_run
from pruner import compress


@pytest.fixture(scope='module')
def baseline():
    x, y, xt, yt = digits()
    model = sequential_cnn(filters=(16, 16), dense=32)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=['accuracy'],
        jit_compile=False,
    )
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    accuracy = model.evaluate(xt, yt, verbose=0, return_dict=True)['accuracy']
    return model, accuracy


@pytest.fixture(scope='module')
def compressed(baseline):
    model, _ = baseline
    x, y, xt, yt = digits()
    before = [w.copy() for w in model.get_weights()]
    qmodel, manifest = compress(
        model,
        (x, y),
        (xt, yt),
        sparsity=0.5,
        weight_bits=8,
        activation_bits=8,
        interval=0.5,
        refresh=0.1,
        finetune_epochs=2,
        qat_epochs=2,
        seed=0,
    )
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)), 'input model modified'
    return qmodel, manifest


def test_half_channels_w8a8_within_two_points_of_float(baseline, compressed):
    _, float_accuracy = baseline
    qmodel, manifest = compressed
    assert float_accuracy > 0.95
    x, y, xt, yt = digits()
    accuracy = float(np.mean(np.argmax(qmodel.predict(xt, verbose=0), axis=1) == yt))
    assert accuracy == pytest.approx(manifest['metrics']['quantized']['accuracy'], abs=1e-6)
    assert accuracy >= float_accuracy - 0.02, (accuracy, float_accuracy)


def test_reduced_model_has_half_the_channels_and_the_manifest_says_so(compressed):
    qmodel, manifest = compressed
    expected = {'conv1': (16, 8), 'conv2': (16, 8), 'fc1': (32, 16), 'logits': (10, 10)}
    for name, (before, after) in expected.items():
        info = manifest['layers'][name]
        assert (info['channels_before'], info['channels_after']) == (before, after)
        assert len(info['kept']) == after == qmodel.get_layer(name).output.shape[-1]
        assert info['kernel_bits'] == 8 and info['class'].startswith('Q')
    assert len(manifest['layers']['conv1']['scores']) == 16
    assert manifest['schedule']['kind'] == 'layerwise' and manifest['schedule_complete']
    assert manifest['metrics']['after']['footprint_bits'] < manifest['metrics']['before']['footprint_bits'] / 4
    assert manifest['metrics']['after']['parameters'] < manifest['metrics']['before']['parameters'] / 2
    json.dumps(manifest)  # JSON-serializable as is
    # Quantizers in the model are the manifest's.
    cfg = qmodel.get_layer('conv1').get_config()['kernel_quantizer']['config']
    assert (cfg['bits'], cfg['integer'], cfg['alpha']) == (8, manifest['layers']['conv1']['kernel_integer'], 1)
    assert qmodel.get_layer('input_quantizer').__class__.__name__ == 'QActivation'


def test_reduced_qkeras_model_saves_and_reloads_identically(compressed, tmp_path):
    import qkeras  # noqa: F401  registers QKeras objects for loading

    qmodel, _ = compressed
    path = tmp_path / 'reduced.keras'
    qmodel.save(path)
    loaded = keras.models.load_model(path, compile=False)
    x = digits()[2][:200]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), qmodel.predict(x, verbose=0))


def test_same_seed_same_kept_channels_and_identical_weights():
    q1, m1 = small_run(seed=3)
    q2, m2 = small_run(seed=3)
    assert [g['kept'] for g in m1['groups']] == [g['kept'] for g in m2['groups']]
    for a, b in zip(q1.get_weights(), q2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_random_importance_depends_on_seed_only():
    kept = [[g['kept'] for g in small_run(seed=s, importance='random', qat_epochs=0)[1]['groups']] for s in (0, 0, 1)]
    assert kept[0] == kept[1]
    assert kept[0] != kept[2]


@pytest.mark.parametrize('schedule,importance', [('oneshot', 'activation_l0'), ('gradual', 'weight_l1')])
def test_other_schedules_and_measures_reach_the_target(schedule, importance):
    q, manifest = small_run(
        seed=0, importance=importance, schedule=schedule, model_fn=residual_cnn, qat_epochs=0, round_to=2
    )
    for g in manifest['groups']:
        if g['prunable']:
            assert g['channels_after'] == g['channels_before'] // 2
            for name in g['producers']:
                assert q.get_layer(name).output.shape[-1] == g['channels_after']
    assert manifest['schedule']['kind'] == schedule


def test_epochs_shorter_than_schedule_is_an_error():
    with pytest.raises(ValueError, match='epochs=1 is shorter'):
        small_run(seed=0, epochs=1)
