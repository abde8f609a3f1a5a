"""``compress``: a Keras model + data -> a channel-reduced QKeras model + manifest.

Stages: (1) insert channel masks and train with the pruning schedule; (2) once every
mask is frozen, fine-tune the masked network (weights train throughout); (3) surgery:
cut the masked channels out and fold BatchNorm; (4) choose power-of-two fixed point
from calibration statistics and build the QKeras model; (5) quantization-aware
fine-tuning of that reduced model, its integer bits refreshed from running statistics
and then frozen (``qat``). Each training phase has its own recipe (``recovery``: a
decaying learning rate from the phase's base rate, a budget in steps, early stopping
with the best weights restored, optional distillation from the input model). This is
the reference's joint schedule: prune, then quantize. With ``joint=True`` both happen
in one fit instead: BatchNorm is folded and the model quantized first, and the masks
are trained on the QKeras model.
Same ``seed`` -> same kept channels and weights.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from . import importance as importance_lib
from . import metrics as metrics_lib
from .callback import ChannelPruningCallback
from .errors import PrunerError
from .masking import MaskedModel
from .qat import RangeRefreshCallback
from .quantize import calibrate, plan_quantization
from .recovery import (
    DEFAULT_LEARNING_RATE,
    Recovery,
    compile_model,
    fit_phase,
    is_classification_loss,
    resolve_epochs,
    trained_learning_rate,
)
from .schedule import KINDS, make_schedule, validate_sparsity
from .surgery import fold_batchnorm, reduce, to_qkeras


def _xy(data, what: str, model=None):
    if isinstance(data, dict):
        data = (data['x'], data['y'])
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise PrunerError(f'{what} must be a pair (x, y) of arrays')
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) != len(y):
        raise PrunerError(f'{what}: x has {len(x)} samples, y has {len(y)}')
    if len(x) == 0:
        raise PrunerError(f'{what} holds no samples')
    if x.dtype.kind not in 'fiu':
        raise PrunerError(f'{what}: x has dtype {x.dtype}; expected numbers')
    if not np.all(np.isfinite(x)):
        raise PrunerError(f'{what}: x holds {int(np.sum(~np.isfinite(x)))} NaN or infinite values')
    if model is not None:
        expected = tuple(model.inputs[0].shape[1:])
        if tuple(x.shape[1:]) != expected:
            raise PrunerError(f'{what}: samples have shape {tuple(x.shape[1:])}, the model expects {expected}')
    return x, y


def _ends_in_softmax(model) -> bool:
    last = model.outputs[0]._keras_history.operation
    return last.__class__.__name__ == 'Softmax' or last.get_config().get('activation') == 'softmax'


def _evaluate(model, x, y, batch_size) -> dict:
    result = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    return {k: float(v) for k, v in result.items()}


def _steps(value, unit: str, steps_per_epoch: int) -> int:
    """A length in ``unit`` ('epochs' or 'steps') as a whole number of steps (None: 0)."""
    if value is None:
        return 0
    return int(round(value * steps_per_epoch)) if unit == 'epochs' else int(value)


def _frozen_copy(model):
    """A weight-for-weight copy of ``model`` that never trains: the distillation teacher
    (the caller's model is left as it was, its ``trainable`` flags included)."""
    teacher = keras.models.clone_model(model)
    teacher.set_weights(model.get_weights())
    teacher.trainable = False
    return teacher


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def compress(
    model,
    train_data,
    val_data,
    sparsity: float = 0.5,
    weight_bits: int = 4,
    activation_bits: int = 8,
    importance='activation_l1',
    schedule: str = 'layerwise',
    epochs: int | None = None,
    start: float = 0.0,
    interval: float = 1.0,
    refresh: float = 0.25,
    unit: str = 'epochs',
    round_to: int = 1,
    per_layer_sparsity: dict | None = None,
    exclude_first: bool = False,
    exclude: tuple[str, ...] = (),
    qat_epochs: int | str = 'auto',
    seed: int = 0,
    batch_size: int = 32,
    bias_bits: int | None = None,
    layer_bits: dict | None = None,
    percentile: float | None = None,
    finetune_epochs: int | str = 'auto',
    loss=None,
    metrics=('accuracy',),
    learning_rate: float | None = None,
    qat_learning_rate: float | None = None,
    lr_schedule: str = 'cosine',
    warmup: float = 0.0,
    patience: int | str | None = 'auto',
    distill: bool = False,
    distill_alpha: float = 0.5,
    distill_temperature: float = 2.0,
    calibration_samples: int = 2048,
    range_refresh: float | None = 1.0,
    range_freeze: float | None = None,
    joint: bool = False,
    verbose: int = 0,
):
    """Prune channels with the given schedule, cut them out, quantize, fine-tune.

    ``model``: a functional or Sequential Keras model (not modified). ``train_data``,
    ``val_data``: (x, y) arrays. ``sparsity``: fraction of channels removed per
    layer, in [0, 1): floor(s*C) channels go, at least one stays; ``round_to`` makes
    kept counts multiples of N; ``per_layer_sparsity`` maps producer layer names to
    their own sparsity. ``schedule``: 'layerwise' (the method), 'oneshot' or
    'gradual'; ``start``, ``interval`` (window length), ``refresh`` are in ``unit``
    ('epochs' or 'steps'). ``layer_bits``: per-layer bit overrides, e.g.
    {'logits': {'weight_bits': 8, 'activation_bits': 8}}.

    Recovery (``pruner.recovery``): three phases, each with a fresh Adam whose rate
    starts at its base and decays (``lr_schedule`` 'cosine' or 'constant', after a linear
    ``warmup`` fraction): the pruning windows, then ``finetune_epochs`` of fine-tuning
    once every mask is frozen, then ``qat_epochs`` of quantization-aware training of the
    reduced QKeras model. ``epochs``: all epochs with masks (default: the schedule's
    length plus ``finetune_epochs``). ``'auto'`` budgets are about 3000 optimizer steps
    per phase (4 to 60 epochs). Fine-tuning and QAT stop early on the validation split
    (``patience`` epochs; 'auto': a quarter of the phase; None: never) and restore the
    best weights. ``learning_rate``: the base rate (default: the rate of the optimizer
    saved with ``model``, else 1e-3); ``qat_learning_rate`` defaults to it. ``distill``:
    the input model, frozen, is the teacher in every phase (KL at ``distill_temperature``
    weighted by ``distill_alpha`` for cross-entropy losses, MSE to its outputs otherwise).

    ``loss``: default sparse categorical cross-entropy, from logits unless the model
    ends in a softmax.

    Quantization: integer bits come from calibration maxima (``percentile``: a
    percentile instead) and are refreshed from the current weights and activations
    every ``range_refresh`` (in ``unit``; None or 0: never) during quantization-aware
    training, up to ``range_freeze`` (in ``unit``, counted from the start of QAT;
    default: the first quarter of QAT, at least all but its last epoch when QAT is
    short), then fixed; early stopping only restores epochs with the final types.
    ``joint=True`` folds BatchNorm and quantizes before pruning, so the masks are
    trained on the QKeras model and pruning and quantization run in one fit (then
    ``qat_epochs`` more on the reduced model).

    Returns (reduced QKeras model, manifest dict (JSON-serializable)).
    """
    t0 = time.time()
    sparsity = validate_sparsity(sparsity)
    per_layer_sparsity = {
        str(k): validate_sparsity(v, f"sparsity of layer '{k}'") for k, v in (per_layer_sparsity or {}).items()
    }
    if schedule not in KINDS:
        raise PrunerError(f'unknown schedule {schedule!r}; choose one of {list(KINDS)}')
    measure = importance_lib.get(importance, seed=seed)
    for name, bits in (('weight_bits', weight_bits), ('activation_bits', activation_bits)):
        if int(bits) < 2:
            raise PrunerError(f'{name} must be at least 2, got {bits!r}')
    for name, value in (('range_refresh', range_refresh), ('range_freeze', range_freeze)):
        if value is not None and not (isinstance(value, int | float) and value >= 0):
            raise PrunerError(f'{name} must be a number >= 0 (in {unit}) or None, got {value!r}')
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PrunerError(f'batch_size must be a whole number >= 1, got {batch_size!r}')
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model))
    x_tr, y_tr = _xy(train_data, 'train_data', model)
    x_va, y_va = _xy(val_data, 'val_data', model)
    steps_per_epoch = math.ceil(len(x_tr) / batch_size)
    finetune_epochs, finetune_how = resolve_epochs(finetune_epochs, steps_per_epoch, 'finetune_epochs')
    qat_epochs, qat_how = resolve_epochs(qat_epochs, steps_per_epoch, 'qat_epochs')
    source_rate = 'given'
    if learning_rate is None:
        learning_rate = trained_learning_rate(model)
        source_rate = 'model' if learning_rate is not None else 'default'
        learning_rate = learning_rate or DEFAULT_LEARNING_RATE
    recovery = Recovery(
        learning_rate=learning_rate,
        qat_learning_rate=qat_learning_rate or learning_rate,
        learning_rate_source=source_rate,
        lr_schedule=lr_schedule,
        warmup=warmup,
        patience=patience,
        distill=bool(distill),
        distill_alpha=distill_alpha,
        distill_temperature=distill_temperature,
        distill_kind=('classification' if is_classification_loss(loss) else 'regression') if distill else None,
    )

    keras.utils.set_random_seed(seed)
    calib_x = x_tr[:calibration_samples]
    source = model
    teacher = _frozen_copy(model) if recovery.distill else None
    teacher_logits = not _ends_in_softmax(model)

    def quantized(float_model):  # (plan, QKeras model) from calibration statistics
        calibration = calibrate(float_model, calib_x, batch_size=256, percentile=percentile)
        q_plan = plan_quantization(
            float_model, calibration, weight_bits, activation_bits, bias_bits, layer_bits, percentile
        )
        return q_plan, to_qkeras(float_model, q_plan)

    def phase(name, student, epochs_, base_rate, callbacks=(), monitor_from_epoch=0):
        return fit_phase(
            name,
            student,
            (x_tr, y_tr),
            (x_va, y_va),
            epochs=epochs_,
            steps_per_epoch=steps_per_epoch,
            base_rate=base_rate,
            recovery=recovery,
            loss=loss,
            metrics=metrics,
            batch_size=batch_size,
            teacher=teacher,
            student_logits=not _ends_in_softmax(student),
            teacher_logits=teacher_logits,
            callbacks=callbacks,
            monitor_from_epoch=monitor_from_epoch,
            verbose=verbose,
        )

    if joint:
        plan, source = quantized(fold_batchnorm(model))
    masked = MaskedModel(source, exclude_first=exclude_first, exclude=tuple(exclude))
    table = masked.table
    producer_names = {n for g in table.groups for n in g.producers}
    unknown = set(per_layer_sparsity) - producer_names
    if unknown:
        raise PrunerError(
            f'per_layer_sparsity names layers that are not prunable producers: {sorted(unknown)}; '
            f'producers: {sorted(producer_names)}'
        )
    group_sparsity = {}
    for g in table.prunable:
        given = [per_layer_sparsity[n] for n in g.producers if n in per_layer_sparsity]
        group_sparsity[g.index] = given[0] if given else sparsity

    sched = make_schedule(
        schedule,
        [g.index for g in table.prunable],
        start,
        interval,
        refresh,
        unit,
        steps_per_epoch,
        [g.name for g in table.groups],
    )
    needed = math.ceil(sched.end / steps_per_epoch) if sched.end else 0
    if epochs is None:
        epochs = needed + finetune_epochs
    elif isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise PrunerError(f'epochs must be a whole number >= 0 or None, got {epochs!r}')
    elif epochs < needed:
        raise PrunerError(
            f'epochs={epochs} is shorter than the {schedule} schedule, which ends at step {sched.end} '
            f'(= {needed} epochs of {steps_per_epoch} steps); give epochs >= {needed}'
        )
    if verbose:
        print(sched)

    compile_model(masked.model, loss, metrics, recovery.learning_rate)
    baseline = _evaluate(masked.model, x_va, y_va, batch_size)
    callback = ChannelPruningCallback(masked, sched, measure, group_sparsity, round_to, seed, verbose=bool(verbose))
    range_refreshes = []
    refresh_steps = _steps(range_refresh, unit, steps_per_epoch)
    mask_callbacks = [callback]
    if joint:
        # Ranges follow the statistics through the pruning fit too; with no QAT after it, its last epoch is fixed.
        prune_steps = int(epochs) * steps_per_epoch
        freeze = prune_steps if qat_epochs > 0 else prune_steps - steps_per_epoch
        joint_ranges = RangeRefreshCallback(masked.model, plan, calib_x, refresh_steps, freeze, percentile)
        mask_callbacks.append(joint_ranges)
    # Phase 1, the pruning windows: masks still move, so no best epoch is restored from it.
    phases = [phase('pruning', masked.model, needed, recovery.learning_rate, mask_callbacks, monitor_from_epoch=None)]
    # Phase 2, fine-tuning with every mask frozen (the callback only counts steps now).
    # Joint mode without QAT moves the integer bits until its last epoch: no earlier epoch may be restored.
    phases.append(
        phase(
            'finetune',
            masked.model,
            int(epochs) - needed,
            recovery.learning_rate,
            mask_callbacks,
            monitor_from_epoch=None if (joint and qat_epochs == 0) else 0,
        )
    )
    phases[-1]['how'] = finetune_how if epochs == needed + finetune_epochs else 'given (epochs)'
    masked.pause_collecting()
    masked_result = _evaluate(masked.model, x_va, y_va, batch_size)
    if joint:
        range_refreshes.append({'phase': 'pruning', **joint_ranges.to_dict()})

    if joint:
        qmodel = reduce(masked)  # already QKeras, with the ranges refreshed so far
        compile_model(qmodel, loss, metrics, recovery.qat_learning_rate)
        reduced_result = before_qat = _evaluate(qmodel, x_va, y_va, batch_size)
    else:
        reduced = fold_batchnorm(reduce(masked))
        plan, qmodel = quantized(reduced)
        compile_model(reduced, loss, metrics, recovery.learning_rate)
        reduced_result = _evaluate(reduced, x_va, y_va, batch_size)
        compile_model(qmodel, loss, metrics, recovery.qat_learning_rate)
        before_qat = _evaluate(qmodel, x_va, y_va, batch_size)
    qat_steps = int(qat_epochs) * steps_per_epoch
    if range_freeze is None:
        # The first quarter of QAT follows the statistics; the rest trains with the exported types.
        # Short QAT: all but the last epoch (at least one epoch always trains with the final types).
        freeze = max(steps_per_epoch, (qat_epochs // 4) * steps_per_epoch)
        freeze = min(freeze, qat_steps - steps_per_epoch)
    else:
        freeze = _steps(range_freeze, unit, steps_per_epoch)
    ranges = RangeRefreshCallback(qmodel, plan, calib_x, refresh_steps, min(freeze, qat_steps), percentile)
    # Best weights are restored only from epochs after the last possible range change.
    types_final_epoch = math.ceil(min(freeze, qat_steps) / steps_per_epoch) if ranges.active else 0
    phases.append(
        phase(
            'qat', qmodel, int(qat_epochs), recovery.qat_learning_rate, [ranges], monitor_from_epoch=types_final_epoch
        )
    )
    phases[-1]['how'] = qat_how
    range_refreshes.append({'phase': 'qat', **ranges.to_dict()})
    quantized_result = _evaluate(qmodel, x_va, y_va, batch_size)

    kept = masked.kept()
    groups = []
    layers = {}
    for g in table.groups:
        keep = kept.get(g.index, np.arange(g.channels))
        entry = {
            'index': g.index,
            'producers': g.producers,
            'prunable': g.prunable,
            'reason': g.reason,
            'sparsity': group_sparsity.get(g.index, 0.0),
            'channels_before': g.channels,
            'channels_after': int(len(keep)),
            'kept': keep,
            'mask_points': g.mask_points,
            'scores': callback.scores.get(g.index),
        }
        groups.append(entry)
        for name in g.producers:
            layers[name] = {
                'group': g.index,
                'channels_before': g.channels,
                'channels_after': int(len(keep)),
                'kept': keep,
                'scores': entry['scores'],
            }
    for name, q in plan.layers.items():
        info = layers.setdefault(name, {})
        info['class'] = qmodel.get_layer(name).__class__.__name__
        for wname, fixed in q.weights.items():
            info[f'{wname}_bits'] = fixed.bits
            info[f'{wname}_integer'] = fixed.integer
            info[f'{wname}_type'] = fixed.ap_type
        if q.activation is not None:
            info['activation_bits'] = q.activation.bits
            info['activation_integer'] = q.activation.integer
            info['activation_type'] = q.activation.ap_type
    key = next((k for k in quantized_result if k != 'loss'), 'loss')
    before = metrics_lib.summary(model)
    after = metrics_lib.summary(qmodel)
    manifest = {
        'pruner': {
            'sparsity': sparsity,
            'per_layer_sparsity': per_layer_sparsity,
            'importance': repr(measure),
            'schedule': schedule,
            'round_to': round_to,
            'exclude_first': exclude_first,
            'exclude': list(exclude),
            'weight_bits': weight_bits,
            'activation_bits': activation_bits,
            'bias_bits': bias_bits,
            'layer_bits': layer_bits or {},
            'percentile': percentile,
            'range_refresh': range_refresh,
            'range_freeze': range_freeze,
            'joint': joint,
            'epochs': epochs,
            'finetune_epochs': int(epochs) - needed,
            'qat_epochs': qat_epochs,
            'batch_size': batch_size,
            'seed': seed,
            'steps_per_epoch': steps_per_epoch,
            'quantization_note': 'power-of-two scales (alpha=1): quantized_bits(b, i) == ap_fixed<b, i+1>, '
            'quantized_relu(b, i) == ap_ufixed<b, i>; integer bits from calibration maxima',
        },
        'schedule': sched.to_dict(),
        'schedule_complete': callback.complete,
        'mask_updates': [{'step': s, 'group': g, 'kept': k} for s, g, k in callback.history],
        'groups': groups,
        'layers': layers,
        'quantization': plan.to_dict(),  # the final (frozen) types
        'range_refreshes': range_refreshes,
        'recovery': {**recovery.to_dict(), 'phases': phases},
        'metrics': {
            'metric': key,
            'baseline': baseline,
            'masked': masked_result,
            'reduced_float': reduced_result,
            'quantized_before_qat': before_qat,
            'quantized': quantized_result,
            'before': before,
            'after': after,
            'performance_density': metrics_lib.performance_density(
                quantized_result.get(key, float('nan')), after['footprint_bits']
            ),
            'baseline_performance_density': metrics_lib.performance_density(
                baseline.get(key, float('nan')), before['footprint_bits']
            ),
        },
        'seconds': round(time.time() - t0, 2),
    }
    return qmodel, _jsonable(manifest)
