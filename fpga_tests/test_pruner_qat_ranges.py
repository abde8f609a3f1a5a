"""Integer bits follow running statistics during QAT, then freeze; pruning and QAT in one fit.

Issue (pruner): "integer bits chosen from running statistics ... refreshed during
quantization-aware training, then fixed" and "also the option to run both in one fit".
"""

import functools

import keras
import numpy as np
import pytest

import hls_backend
from fpga_tests.pruner_models import digits, small_compress
from pruner.qat import RangeRefreshCallback, activation_inputs, quantizer_slots, refresh_ranges
from pruner.quantize import Fixed, LayerQuant, QuantPlan, StepRule, activation_fixed, weight_fixed
from pruner.surgery import INPUT_QUANTIZER, to_qkeras

# These tests check the refresh against the cover-the-maximum rule, whose choice is easy to
# compute by hand; the least-error rule has its own (test_pruner_step_criterion.py).
COVER = StepRule('max')


def _tiny_qmodel():
    """conv (4 filters) -> QActivation relu -> flatten -> dense 3; hand-chosen plan."""
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(4, 3, name='conv')(inp)
    x = keras.layers.ReLU(name='relu')(x)
    x = keras.layers.Flatten(name='flat')(x)
    out = keras.layers.Dense(3, name='logits')(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    model.get_layer('conv').set_weights([rng.uniform(-0.4, 0.4, (3, 3, 1, 4)).astype('float32'), np.zeros(4, 'f4')])
    model.get_layer('logits').set_weights([rng.uniform(-0.4, 0.4, (16, 3)).astype('float32'), np.zeros(3, 'f4')])
    # Deliberately stale ranges: every type has integer 0.
    plan = QuantPlan(
        Fixed('bits', 8, 0),
        {
            'conv': LayerQuant({'kernel': Fixed('bits', 8, 0), 'bias': Fixed('bits', 8, 0)}),
            'relu': LayerQuant(activation=Fixed('relu', 8, 0)),
            'logits': LayerQuant({'kernel': Fixed('bits', 8, 0), 'bias': Fixed('bits', 8, 0)}),
        },
    )
    return model, plan


def test_refresh_sets_each_integer_to_what_the_statistics_ask_for():
    model, plan = _tiny_qmodel()
    qmodel = to_qkeras(model, plan)
    x = np.random.default_rng(1).uniform(-3, 3, (64, 4, 4, 1)).astype('float32')
    # The weights grew past the old range during training (say): 1.7 needs integer 1.
    kernel = qmodel.get_layer('logits').kernel
    kernel.assign(np.where(np.arange(48).reshape(16, 3) == 5, 1.7, kernel.numpy()).astype('float32'))

    slots = quantizer_slots(qmodel, plan)
    maxima = {name: seen.magnitude for name, seen in activation_inputs(qmodel, slots, x).items()}
    # What the ReLU quantizer receives is the conv's output; only its positive part counts.
    pre_relu = np.asarray(keras.Model(qmodel.inputs[0], qmodel.get_layer('conv').output)(x, training=False))
    assert maxima['relu'] == float(np.max(np.maximum(pre_relu, 0))) > 0
    assert maxima[INPUT_QUANTIZER] == float(np.max(np.abs(x)))
    changes = refresh_ranges(qmodel, slots, x, COVER)

    # Inputs reach |3|: ap_fixed<8,3> (integer 2); the kernel needs integer 1.
    assert plan.input.integer == activation_fixed(maxima[INPUT_QUANTIZER], 8, relu=False).integer == 2
    assert plan.layers['logits'].weights['kernel'].integer == weight_fixed(kernel.numpy(), 8).integer == 1
    # The wider input range lets larger values through to the ReLU: measured again, it fits them.
    settled = {name: seen.magnitude for name, seen in activation_inputs(qmodel, slots, x).items()}
    assert settled['relu'] > maxima['relu']
    assert plan.layers['relu'].activation.integer == activation_fixed(settled['relu'], 8, relu=True).integer
    assert {(c['layer'], c['role']) for c in changes} >= {(INPUT_QUANTIZER, 'input'), ('logits', 'kernel')}
    # The model's quantizers and constraint follow the plan; the saved config says so.
    layer = qmodel.get_layer('logits')
    assert layer.kernel_quantizer_internal.integer == 1
    assert layer.get_config()['kernel_quantizer']['config']['integer'] == 1
    assert layer.kernel_constraint.max_value == 2.0  # QKeras's Clip(-max(1, 2^I), max(1, 2^I))

    # A second refresh with nothing changed changes nothing.
    assert refresh_ranges(qmodel, slots, x, COVER) == []


def test_refreshed_types_take_effect_in_the_compiled_train_and_predict_functions():
    model, plan = _tiny_qmodel()
    qmodel = to_qkeras(model, plan)
    qmodel.compile(optimizer='adam', loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(2).uniform(-3, 3, (64, 4, 4, 1)).astype('float32')
    before = qmodel.predict(x, verbose=0)  # traces a predict function with input integer 0 (saturates at ~1)
    slots = quantizer_slots(qmodel, plan)
    refresh_ranges(qmodel, slots, x)
    after = qmodel.predict(x, verbose=0)
    eager = np.asarray(qmodel(x, training=False))
    np.testing.assert_array_equal(after, eager)  # the compiled function sees the new integer bits
    assert not np.array_equal(before, after)


def test_ranges_refresh_every_n_steps_until_the_freeze_then_stay():
    model, plan = _tiny_qmodel()
    qmodel = to_qkeras(model, plan)
    qmodel.compile(
        optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, (128, 4, 4, 1)).astype('float32')
    y = rng.integers(0, 3, 128)
    callback = RangeRefreshCallback(qmodel, plan, x, refresh_steps=2, freeze_step=6)
    qmodel.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[callback])
    assert callback.refreshes == 3  # at steps 2, 4 and 6 of 16
    assert callback.history and all(c['step'] in (2, 4, 6) for c in callback.history)
    # Frozen: the exported types are the plan's, and the model's quantizers agree with it.
    for slot in quantizer_slots(qmodel, plan):
        assert slot.quantizer.integer == slot.fixed.integer
    disabled = RangeRefreshCallback(qmodel, plan, x, refresh_steps=0, freeze_step=6)
    assert not disabled.active


def _run(**kw):
    """The shared short compress run, with 3 pruning and 3 QAT epochs of 8 steps, refresh every 4;
    one run per setting in a test session (the tests only read what it returns)."""
    return _cached_run(tuple(sorted(kw.items())))


@functools.cache
def _cached_run(settings: tuple):
    return small_compress(**{**dict(activation_bits=6, epochs=3, qat_epochs=3, range_refresh=4), **dict(settings)})


def _model_integers(qmodel) -> dict:
    found = {}
    for layer in qmodel.layers:
        config = layer.get_config()
        for key in ('kernel_quantizer', 'bias_quantizer'):
            if isinstance(config.get(key), dict):
                found[(layer.name, key.split('_')[0])] = config[key]['config']['integer']
        if hasattr(getattr(layer, 'activation', None), 'integer'):
            found[(layer.name, 'activation')] = layer.activation.integer
    return found


def _manifest_integers(manifest) -> dict:
    q = manifest['quantization']
    found = {('input_quantizer', 'activation'): q['input']['integer']}
    for name, entry in q['layers'].items():
        for wname, fixed in entry['weights'].items():
            found[(name, wname)] = fixed['integer']
        if entry['activation'] is not None:
            found[(name, 'activation')] = entry['activation']['integer']
    return found


@pytest.mark.parametrize('joint', [False, True], ids=['prune-then-qat', 'joint'])
def test_compress_records_refreshes_and_exports_the_frozen_types(joint):
    qmodel, manifest = _run(joint=joint)
    phases = {r['phase']: r for r in manifest['range_refreshes']}
    assert set(phases) == ({'pruning', 'qat'} if joint else {'qat'})
    qat = phases['qat']
    # 3 QAT epochs of 8 steps: the ranges follow the statistics for the first quarter, at least one epoch
    assert qat['active'] and qat['refresh_steps'] == 4 and qat['freeze_step'] == 8
    assert qat['refreshes'] == 2
    # Early stopping may restore only epochs that trained with the exported types.
    qat_phase = next(p for p in manifest['recovery']['phases'] if p['phase'] == 'qat')
    assert qat_phase['early_stopping']['from_epoch'] == 1
    for record in manifest['range_refreshes']:
        assert all(c['step'] <= record['freeze_step'] and c['step'] % 4 == 0 for c in record['changes'])
    assert _model_integers(qmodel) == _manifest_integers(manifest)
    assert manifest['pruner']['joint'] is joint
    for name in ('conv1', 'conv2', 'fc1'):
        assert manifest['layers'][name]['channels_after'] == manifest['layers'][name]['channels_before'] // 2


def test_joint_mode_trains_the_masks_on_the_quantized_model_in_one_fit():
    qmodel, manifest = _run(joint=True, qat_epochs=0)
    # One fit: the pruning phase ends frozen for its last epoch, and no QAT phase refreshes.
    pruning = next(r for r in manifest['range_refreshes'] if r['phase'] == 'pruning')
    assert pruning['freeze_step'] == 3 * 8 - 8
    qat = next(r for r in manifest['range_refreshes'] if r['phase'] == 'qat')
    assert not qat['active'] and qat['refreshes'] == 0
    # The masked model that was trained was already quantized: its score equals the export's.
    assert manifest['metrics']['masked']['accuracy'] == pytest.approx(manifest['metrics']['quantized']['accuracy'])
    assert {lay.__class__.__name__ for lay in qmodel.layers} >= {'QConv2D', 'QDense', 'QActivation'}


def test_joint_mode_output_is_bit_exact_in_c_simulation(tmp_path):
    qmodel, _ = _run(joint=True)  # the run test_compress_records_refreshes_and_exports_the_frozen_types reads
    x = digits()[2][:60]
    # Joint mode keeps BatchNorm inside QConv2DBatchnorm, which the HLS route converts as it is.
    assert 'QConv2DBatchnorm' in {lay.__class__.__name__ for lay in qmodel.layers}
    path = tmp_path / 'joint.keras'
    qmodel.save(path)
    hls_backend.write_project(path, tmp_path / 'prj', hls_backend.HLSOptions(), inputs=x)
    result = hls_backend.csim(tmp_path / 'prj', second_check=False)
    assert result.samples == 60 and result.exact_matches == 60 and result.max_abs_diff == 0.0


def test_range_refresh_off_keeps_the_calibrated_types():
    _, manifest = _run(range_refresh=None)
    qat = manifest['range_refreshes'][0]
    assert not qat['active'] and qat['changes'] == []
    with pytest.raises(ValueError, match='range_refresh=-1: should be a number >= 0'):
        _run(range_refresh=-1)
