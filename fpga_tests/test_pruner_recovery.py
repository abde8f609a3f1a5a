"""Recovery after pruning: per-phase learning-rate schedules, distillation, budgets, early stopping."""

import json
import math

import keras
import numpy as np
import pytest

from fpga_tests.pruner_models import digits, sequential_cnn, small_compress
from pruner import PrunerError
from pruner.recovery import (
    AUTO_BUDGET_QAT_MAX_EPOCHS,
    AUTO_BUDGET_QAT_STEPS,
    AUTO_MAX_EPOCHS,
    AUTO_MIN_EPOCHS,
    AUTO_STEPS,
    Distiller,
    Recovery,
    auto_epochs,
    fit_phase,
    phase_learning_rate,
    rate_at,
    saved_learning_rate,
    trained_learning_rate,
)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _tiny_pair(classes=4, features=3, seed=0, softmax=False):
    keras.utils.set_random_seed(seed)
    student = keras.Sequential([keras.Input((features,)), keras.layers.Dense(classes, name='s')])
    teacher = keras.Sequential(
        [keras.Input((features,)), keras.layers.Dense(classes, activation='softmax' if softmax else None, name='t')]
    )
    return student, teacher


@pytest.mark.parametrize('teacher_softmax', [False, True], ids=['teacher-logits', 'teacher-softmax'])
def test_distillation_loss_equals_a_hand_computation(teacher_softmax):
    student, teacher = _tiny_pair(softmax=teacher_softmax)
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    y = np.array([0, 3, 1, 2, 3])
    alpha, temperature = 0.7, 3.0
    task_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    distiller = Distiller(student, teacher, alpha, temperature, student_logits=True, teacher_logits=not teacher_softmax)
    distiller.compile(optimizer='adam', loss=task_loss)
    y_pred = distiller(x)
    got = float(distiller.compute_loss(x=x, y=y, y_pred=y_pred, training=True))

    s = np.asarray(student(x), dtype=np.float64)
    t = np.asarray(teacher(x), dtype=np.float64)
    t_logits = np.log(t) if teacher_softmax else t
    p_t, p_s = _softmax(t_logits / temperature), _softmax(s / temperature)
    kl = np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=-1))
    ce = np.mean(-np.log(_softmax(s)[np.arange(len(y)), y]))
    expected = alpha * temperature**2 * kl + (1 - alpha) * ce
    assert got == pytest.approx(expected, rel=1e-5)
    # Evaluation reports the task loss alone.
    assert float(distiller.compute_loss(x=x, y=y, y_pred=y_pred, training=False)) == pytest.approx(ce, rel=1e-5)


def test_regression_distillation_mixes_mse_to_the_teacher():
    student, teacher = _tiny_pair()
    x = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    y = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    distiller = Distiller(student, teacher, alpha=0.25, kind='regression')
    distiller.compile(optimizer='adam', loss='mse')
    got = float(distiller.compute_loss(x=x, y=y, y_pred=distiller(x), training=True))
    s, t = np.asarray(student(x), np.float64), np.asarray(teacher(x), np.float64)
    expected = 0.25 * np.mean((s - t) ** 2) + 0.75 * np.mean((s - y) ** 2)
    assert got == pytest.approx(expected, rel=1e-5)


def test_distiller_on_a_users_own_fit_trains_only_the_student():
    student, teacher = _tiny_pair()
    teacher_before = [w.copy() for w in teacher.get_weights()]
    student_before = [w.copy() for w in student.get_weights()]
    x = np.random.default_rng(4).normal(size=(64, 3)).astype(np.float32)
    y = np.argmax(np.asarray(teacher(x)), axis=1)
    distiller = Distiller(student, teacher, alpha=1.0, temperature=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = distiller.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(teacher_before, teacher.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))
    assert history.history['loss'][-1] < 0.5 * history.history['loss'][0]


def test_cosine_schedule_rates_at_given_steps():
    rate = phase_learning_rate(3e-3, 100, 'cosine')
    assert rate_at(rate, 0) == pytest.approx(3e-3)
    assert rate_at(rate, 50) == pytest.approx(1.5e-3, rel=1e-5)
    assert rate_at(rate, 25) == pytest.approx(3e-3 * 0.5 * (1 + np.cos(np.pi * 0.25)), rel=1e-5)
    assert rate_at(rate, 100) == pytest.approx(0.0, abs=1e-12)
    warm = phase_learning_rate(1e-3, 100, 'cosine', warmup=0.1)  # 10 warm-up steps, then 90 of decay
    assert rate_at(warm, 0) == pytest.approx(0.0, abs=1e-12)
    assert rate_at(warm, 5) == pytest.approx(0.5e-3, rel=1e-5)
    assert rate_at(warm, 10) == pytest.approx(1e-3, rel=1e-5)
    assert rate_at(warm, 55) == pytest.approx(0.5e-3, rel=1e-5)
    assert rate_at(phase_learning_rate(2e-3, 100, 'constant'), 77) == 2e-3
    with pytest.raises(PrunerError, match="unknown lr_schedule 'step'"):
        phase_learning_rate(1e-3, 10, 'step')


def test_each_phase_restarts_at_its_base_rate_and_decays_during_fit():
    x, y, xt, yt = digits()
    model = sequential_cnn()
    seen = []

    class Rates(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    recovery = Recovery(learning_rate=2e-3, patience=None)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for base in (2e-3, 1e-3):  # two phases: each starts at its own base rate
        seen.clear()
        record = fit_phase('p', model, (x[:256], y[:256]), (xt[:64], yt[:64]), epochs=2, steps_per_epoch=4,
                           base_rate=base, recovery=recovery, loss=loss, metrics=['accuracy'], batch_size=64,
                           callbacks=[Rates()])  # fmt: skip
        expected = [base * 0.5 * (1 + np.cos(np.pi * k / 8)) for k in range(8)]
        np.testing.assert_allclose(seen, expected, rtol=1e-5)
        assert record['steps'] == 8 and record['base_learning_rate'] == base and record['lr_schedule'] == 'cosine'


def test_early_stopping_restores_the_best_weights():
    x, y, xt, yt = digits()
    model = sequential_cnn()
    snapshots, watched = [], []

    class SpoilAfterSecondEpoch(keras.callbacks.Callback):
        """Records the weights each validation saw; from epoch 3 on, scrambles them first."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= 2:
                rng = np.random.default_rng(epoch)
                self.model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in self.model.get_weights()])

        def on_epoch_end(self, epoch, logs=None):
            snapshots.append([w.copy() for w in self.model.get_weights()])
            watched.append(logs['val_accuracy'])

    recovery = Recovery(learning_rate=3e-3, patience=2)
    record = fit_phase('finetune', model, (x[:512], y[:512]), (xt[:200], yt[:200]), epochs=12, steps_per_epoch=8,
                       base_rate=3e-3, recovery=recovery, loss=keras.losses.SparseCategoricalCrossentropy(True),
                       metrics=['accuracy'], batch_size=64, callbacks=[SpoilAfterSecondEpoch()])  # fmt: skip
    stop = record['early_stopping']
    assert stop['stopped_early'] and record['epochs_run'] < 12
    best = int(np.argmax(watched))  # Keras keeps the first of equal bests
    assert stop['best_epoch'] == best + 1 and best < len(watched) - 1, (watched, stop)
    assert stop['history'] == pytest.approx(watched)
    for restored, kept in zip(model.get_weights(), snapshots[best], strict=True):
        np.testing.assert_array_equal(restored, kept)


def test_auto_budget_scales_with_the_data():
    assert auto_epochs(19) == AUTO_MAX_EPOCHS  # digits-size: capped
    mid = 2 * AUTO_STEPS // (AUTO_MIN_EPOCHS + AUTO_MAX_EPOCHS)  # steps per epoch between the caps
    assert AUTO_MIN_EPOCHS < auto_epochs(mid) == math.ceil(AUTO_STEPS / mid) < AUTO_MAX_EPOCHS
    assert auto_epochs(10_000) == AUTO_MIN_EPOCHS
    assert all(AUTO_MIN_EPOCHS <= auto_epochs(n) <= AUTO_MAX_EPOCHS for n in (1, 7, 50, 333, 5000))


@pytest.mark.parametrize('budget', [None, {'max_lut': 3000}, {'max_footprint_kbit': 4.0}])
def test_auto_qat_under_a_budget_trains_as_long_as_the_low_bit_designs_keep_improving(budget):
    """'auto' QAT is AUTO_STEPS without a budget and AUTO_BUDGET_QAT_STEPS (capped at
    AUTO_BUDGET_QAT_MAX_EPOCHS) under a LUT or footprint budget; fine-tuning is the same either
    way, and a number given is kept."""
    from pruner import CompressOptions
    from pruner.phases import prepare

    x, y, xt, yt = digits()
    train, val = (x[:512], y[:512]), (xt[:64], yt[:64])
    cost = (lambda model: 1.0) if budget and 'max_lut' in budget else None
    steps = 512  # steps an epoch at batch 1: between the caps of both lengths
    run = prepare(sequential_cnn(), train, val, CompressOptions(batch_size=1, **(budget or {})), cost)
    assert run.finetune_epochs == auto_epochs(steps) and run.finetune_how.startswith('auto: about')
    if budget:
        assert run.qat_epochs == math.ceil(AUTO_BUDGET_QAT_STEPS / steps) < AUTO_BUDGET_QAT_MAX_EPOCHS
        assert run.qat_how.startswith(f'auto under a budget: about {AUTO_BUDGET_QAT_STEPS} steps at {steps}')
    else:
        assert run.qat_epochs == auto_epochs(steps) == math.ceil(AUTO_STEPS / steps) < AUTO_MAX_EPOCHS
    # A small data set (64 steps an epoch) reaches the caps; a number given is the number.
    small = prepare(sequential_cnn(), (x[:64], y[:64]), val, CompressOptions(batch_size=1, **(budget or {})), cost)
    assert small.qat_epochs == (AUTO_BUDGET_QAT_MAX_EPOCHS if budget else AUTO_MAX_EPOCHS)
    given = prepare(sequential_cnn(), train, val, CompressOptions(batch_size=1, qat_epochs=7, **(budget or {})), cost)
    assert given.qat_epochs == 7 and given.qat_how == 'given'


def test_learning_rate_defaults_to_the_models_own():
    model = sequential_cnn()
    assert trained_learning_rate(model) is None
    model.compile(optimizer=keras.optimizers.Adam(2.5e-3), loss='mse')
    assert trained_learning_rate(model) == pytest.approx(2.5e-3)
    schedule = keras.optimizers.schedules.CosineDecay(4e-3, 100)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss='mse')
    assert trained_learning_rate(model) == pytest.approx(4e-3)


def test_saved_learning_rate_is_read_from_the_keras_file(tmp_path):
    model = sequential_cnn()
    model.save(tmp_path / 'plain.keras')
    assert saved_learning_rate(tmp_path / 'plain.keras') is None  # never compiled
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss='mse')
    model.save(tmp_path / 'adam.keras')
    assert saved_learning_rate(tmp_path / 'adam.keras') == 2e-3  # float32 noise rounded off
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(5e-4, 10, 0.9)), loss='mse'
    )
    model.save(tmp_path / 'schedule.keras')
    assert saved_learning_rate(tmp_path / 'schedule.keras') == 5e-4
    (tmp_path / 'junk.keras').write_text('not a zip')
    assert saved_learning_rate(tmp_path / 'junk.keras') is None


@pytest.fixture(scope='module')
def distilled():
    return small_compress(distill=True, distill_alpha=0.3, distill_temperature=2.5, finetune_epochs=2,
                          qat_epochs=2, patience=1, learning_rate=2e-3, warmup=0.1)  # fmt: skip


def test_manifest_records_distillation_schedule_and_budget(distilled):
    _, manifest = distilled
    rec = manifest['recovery']
    assert rec['distill'] is True and rec['distill_alpha'] == 0.3 and rec['distill_temperature'] == 2.5
    assert rec['distill_kind'] == 'classification'
    assert rec['learning_rate'] == 2e-3 and rec['learning_rate_source'] == 'given' and rec['qat_learning_rate'] == 2e-3
    assert rec['lr_schedule'] == 'cosine' and rec['warmup'] == 0.1 and rec['patience'] == 1
    phases = {p['phase']: p for p in rec['phases']}
    assert list(phases) == ['pruning', 'finetune', 'qat']
    steps_per_epoch = manifest['pruner']['steps_per_epoch']
    schedule_end = max(w['start'] + w['length'] for w in manifest['schedule']['windows'])
    for name, epochs in (('pruning', math.ceil(schedule_end / steps_per_epoch)), ('finetune', 2), ('qat', 2)):
        p = phases[name]
        assert p['epochs'] == epochs and p['steps'] == epochs * steps_per_epoch and p['distill'] is True
        assert p['warmup_steps'] == round(0.1 * p['steps']) and 1 <= p['epochs_run'] <= epochs
    assert 'early_stopping' not in phases['pruning']  # masks still move there: nothing to restore
    assert phases['finetune']['early_stopping']['monitor'] == 'val_accuracy'
    # The first QAT epoch still refreshes the integer bits: only later epochs may be restored.
    assert phases['qat']['early_stopping']['from_epoch'] == 1
    assert manifest['pruner']['finetune_epochs'] == 2 and manifest['pruner']['qat_epochs'] == 2


@pytest.mark.slow  # a second distilled compress; same seed without distillation: test_pruner_compress.py
def test_same_seed_same_channels_and_weights_with_distillation(distilled):
    q1, m1 = distilled
    q2, m2 = small_compress(distill=True, distill_alpha=0.3, distill_temperature=2.5, finetune_epochs=2,
                            qat_epochs=2, patience=1, learning_rate=2e-3, warmup=0.1)  # fmt: skip
    assert [g['kept'] for g in m1['groups']] == [g['kept'] for g in m2['groups']]
    assert m1['recovery']['phases'] == m2['recovery']['phases']
    for a, b in zip(q1.get_weights(), q2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_auto_budget_is_chosen_and_saved():
    _, manifest = small_compress(finetune_epochs='auto', qat_epochs=0, patience=1)
    finetune = manifest['recovery']['phases'][1]
    assert finetune['epochs'] == auto_epochs(manifest['pruner']['steps_per_epoch'])
    assert finetune['how'].startswith('auto: about')
    assert finetune['epochs_run'] < finetune['epochs']  # patience 1 on a tiny set stops it early
    assert manifest['recovery']['learning_rate_source'] == 'default' and manifest['recovery']['learning_rate'] == 1e-3


@pytest.mark.parametrize(
    'kw, message',
    [
        ({'learning_rate': -1.0}, r'learning_rate=-1.0: should be a number > 0'),
        ({'lr_schedule': 'linear'}, "lr_schedule='linear': should be 'cosine' or 'constant'"),
        ({'warmup': 1.5}, 'warmup=1.5: should be a number >= 0 and < 1'),
        ({'patience': 0}, 'patience must be'),
        ({'distill_alpha': 2.0}, 'distill_alpha=2.0: should be a number >= 0 and <= 1'),
        ({'distill_temperature': 0.0}, 'distill_temperature=0.0: should be a number > 0'),
        ({'qat_epochs': 'many'}, "qat_epochs='many': should be a whole number >= 0 or 'auto'"),
        ({'finetune_epochs': -2}, "finetune_epochs=-2: should be a whole number >= 0 or 'auto'"),
        ({'batch_size': 0}, 'batch_size=0: should be a whole number >= 1'),
    ],
)
def test_bad_recovery_options_are_refused_by_name(kw, message):
    with pytest.raises(PrunerError, match=message):
        small_compress(**kw)


def test_prune_command_passes_the_recovery_options_and_reads_the_saved_rate(tmp_path):
    from click.testing import CliRunner

    from lpsubnet.cli import main

    x, y, xt, yt = digits()
    np.savez(tmp_path / 'd.npz', x_train=x[:256], y_train=y[:256], x_val=xt[:64], y_val=yt[:64])
    model = sequential_cnn()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.save(tmp_path / 'm.keras')
    args = ['prune', str(tmp_path / 'm.keras'), '--data', str(tmp_path / 'd.npz'), '--sparsity', '0.5',
            '--finetune-epochs', '2', '--qat-epochs', '1', '--batch-size', '64', '--warmup', '0.2',
            '--lr-schedule', 'constant', '--patience', '0', '--distill', '--distill-alpha', '0.4']  # fmt: skip
    result = CliRunner().invoke(main, [*args, '--out', str(tmp_path / 'out')])
    assert result.exit_code == 0, result.output
    assert 'recovery (constant, rate from the optimizer saved in' in result.output
    manifest = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    rec = manifest['recovery']
    assert rec['learning_rate'] == 2e-3 and rec['lr_schedule'] == 'constant' and rec['warmup'] == 0.2
    assert rec['patience'] is None and rec['distill'] and rec['distill_alpha'] == 0.4
    assert [p['epochs'] for p in rec['phases']][1:] == [2, 1] and manifest['pruner']['batch_size'] == 64
    assert all('early_stopping' not in p for p in rec['phases'])  # --patience 0: none
    bad = CliRunner().invoke(main, [*args[:-2], '--qat-epochs', 'lots', '--out', str(tmp_path / 'bad')])
    assert bad.exit_code == 2 and "'lots' is not 'auto' or a whole number >= 0" in bad.output
