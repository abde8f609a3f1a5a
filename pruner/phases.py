"""``compress``: a Keras model + data -> a channel-reduced QKeras model + manifest.

Three phases, one function each, sharing a ``Run`` (data, options, recovery recipe):

- ``prune_phase``: insert channel masks and train with the pruning schedule, then,
  once every mask is frozen, fine-tune the masked network (weights train throughout).
- ``quantize_phase``: surgery (cut the masked channels out, fold BatchNorm), power-of-
  two fixed point from calibration statistics, the QKeras model, and its
  quantization-aware fine-tuning with integer bits refreshed from running statistics
  and then frozen (``qat``).
- ``manifest_phase``: what was kept, the types, the phases and the metrics, as JSON.

Each training phase has its own recipe (``recovery``: a decaying learning rate from the
phase's base rate, a budget in steps, early stopping with the best weights restored,
optional distillation from the input model). This is the reference's joint schedule:
prune, then quantize. With ``joint=True`` both happen in one fit instead: the model is
quantized first and the masks are trained on the QKeras model.
Same ``seed`` -> same kept channels and weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import keras
import numpy as np

from . import metrics as metrics_lib
from .allocate import Allocation, BitAllocator
from .callback import ChannelPruningCallback
from .errors import PrunerError
from .layers import lookup
from .masking import MaskedModel
from .options import CompressOptions
from .oscillation import OscillationDampening
from .qat import RangeRefreshCallback
from .quantize import QuantPlan, calibrate, plan_quantization
from .recovery import (
    DEFAULT_LEARNING_RATE,
    Recovery,
    compile_model,
    fit_phase,
    is_classification_loss,
    resolve_epochs,
    trained_learning_rate,
    validation_monitor,
)
from .schedule import Schedule, make_schedule, to_steps
from .surgery import fold_batchnorm, reduce, to_qkeras
from .trim import trim_to_budget
from .weight_masks import WeightPruningCallback, prune_weights, weight_prunable, weight_scores


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


def _steps(value, unit: str, steps_per_epoch: int) -> int:
    """A length in ``unit`` as a whole number of steps (None: 0)."""
    return 0 if value is None else to_steps(value, unit, steps_per_epoch, 'length')


def _freeze_batchnorm_after(model, step: int) -> BatchNormFreeze:
    """Fused BatchNorm layers stop updating their statistics after ``step`` training steps
    (counted by each layer), when the integer bits freeze: the last steps train the folded
    weights that are exported, with the exported types. Pass the returned callback to every
    fit of ``model`` from now on: it is what actually holds the statistics still."""
    for layer in model.layers:
        if hasattr(layer, 'ema_freeze_delay'):
            layer.ema_freeze_delay = int(step)
    return BatchNormFreeze(model)


class BatchNormFreeze(keras.callbacks.Callback):
    """Holds the moving mean and variance of fused BatchNorm layers exactly still once a
    layer's step counter passes its ``ema_freeze_delay``.

    QKeras's ``ema_freeze_delay`` alone does not: after that step the fused layer does switch
    its forward pass to the moving statistics, but its inner BatchNorm still updates them,
    and the fused layer's "keep the previous value" branch reads the same variable after that
    update (on TensorFlow ``Variable.value`` is the variable itself, not a snapshot), so the
    running statistics keep moving. Momentum 1 makes the inner update ``m * 1 + x * 0 == m``.
    Keras reads ``momentum`` when it traces the train step, hence the retrace on a change;
    the layers get their own momentum back when each fit ends."""

    def __init__(self, model):
        super().__init__()
        self.student = model  # the fitted model may be a distillation wrapper around it
        self.momentum: dict[str, float] = {}

    def _fused(self):
        return [lay for lay in self.student.layers if getattr(lay, 'ema_freeze_delay', None) is not None]

    def _update(self) -> None:
        changed = False
        for layer in self._fused():
            own = self.momentum.setdefault(layer.name, layer.batchnorm.momentum)
            # QKeras uses batch statistics while its counter (the steps so far, minus one) <= the delay.
            frozen = 0 <= layer.ema_freeze_delay < int(layer._iteration.numpy())
            momentum = 1.0 if frozen else own
            if layer.batchnorm.momentum != momentum:
                layer.batchnorm.momentum = momentum
                changed = True
        if changed:
            self.model.make_train_function(force=True)

    def on_train_begin(self, logs=None):
        self._update()

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def on_train_end(self, logs=None):
        for layer in self._fused():
            layer.batchnorm.momentum = self.momentum.get(layer.name, layer.batchnorm.momentum)
        # The traced step holds the momentum it saw: the next fit traces its own.
        self.model.train_function = None


# Validation samples the budgeted allocation measures each candidate's loss on.
BUDGET_SAMPLES = 2048
# Quantization-aware training moves weights (and, with the range refresh, integer bits), so the
# trained design can cost more than the allocated one: the allocation is redone for a design
# smaller by that growth and BUDGET_MARGIN more, at most this many times (with weight sparsity,
# QAT ranks its masks anew on the quantized network, so the trained design differs from the
# allocated one by more than its weights' moves).
BUDGET_ATTEMPTS = 3
BUDGET_MARGIN = 0.02
# Training also shrinks designs (weights settle on zero, ranges tighten): a trained design under
# this fraction of the budget is allocated again for a design larger by that shrinkage, and the
# attempt with the better validation metric within the budget is kept (same attempt limit).
BUDGET_FILL = 0.9
# A trimmed design is fine-tuned for this share of the QAT epochs (at least one), at this share
# of QAT's learning rate (cosine-decayed again). Measured on letter, 300 QAT epochs, 14k LUT
# (validation accuracy of the trained design over the budget -> trimmed -> fine-tuned): seed 0
# 92.45 -> 81.95 -> 89.45 at 0.1x the rate, 91.8 at 1x; seed 1 86.3 -> 50.8 -> 75.7 at 0.1x,
# 81.6 at 1x. (A greedy trim, one layer's 16th at a time by least loss per logic saved, was
# worse before fine-tuning on seed 0, 72.75, better on seed 1, 61.2, and not better after it.)
TRIM_FINETUNE_SHARE = 0.1
TRIM_FINETUNE_RATE = 1.0


@dataclass(frozen=True)
class Budget:
    """A hardware budget: the most ``cost`` (QKeras model -> figure in ``unit``) may say."""

    limit: float
    unit: str
    cost: object  # Callable[[keras.Model], float]


def budget_of(options: CompressOptions, cost) -> Budget | None:
    """The budget the options ask for, with its cost model: LUTs need one from the caller
    (the pruner knows nothing of hardware); the footprint is the pruner's own."""
    if options.max_lut is not None:
        if cost is None:
            raise PrunerError(
                f'compress setting max_lut={options.max_lut} needs a LUT cost model: pass compress(cost=...), e.g. '
                "lambda model: hls_backend.estimate_cost(model).lut_estimate (lpsubnet prune passes da4ml's)"
            )
        return Budget(float(options.max_lut), 'LUT', cost)
    if options.max_footprint_kbit is not None:
        return Budget(
            float(options.max_footprint_kbit), 'kbit', lambda model: metrics_lib.footprint(model)['total'] / 1000.0
        )
    return None


def _calibrated(float_model, x, options: CompressOptions) -> dict:
    return calibrate(float_model, x, batch_size=256, percentile=options.percentile)


def _quantized(float_model, calibration: dict, options: CompressOptions, allocated: dict | None = None):
    """(plan, QKeras model) of ``float_model`` from its calibration statistics, the options'
    bits, the user's overrides over the ``allocated`` ones."""
    o = options
    overrides = {**(allocated or {}), **bit_overrides(float_model, o.layer_bits, o.last_layer_bits)}
    plan = plan_quantization(
        float_model, calibration, o.weight_bits, o.activation_bits, o.bias_bits, overrides, o.step_rule
    )
    return plan, to_qkeras(float_model, plan)


@dataclass
class Run:
    """What every phase of one ``compress`` call shares."""

    options: CompressOptions
    model: keras.Model
    train: tuple
    val: tuple
    steps_per_epoch: int
    finetune_epochs: int
    finetune_how: str
    qat_epochs: int
    qat_how: str
    recovery: Recovery
    loss: object
    calibration_x: np.ndarray
    teacher: keras.Model | None
    budget: Budget | None = None

    def evaluate(self, model) -> dict:
        return _evaluate(model, *self.val, self.options.batch_size)

    def calibrated(self, float_model) -> dict:
        """What every layer of a float model outputs on the calibration data (``quantize.calibrate``)."""
        return _calibrated(float_model, self.calibration_x, self.options)

    def quantized(
        self, float_model, allocated: dict | None = None, calibration: dict | None = None
    ) -> tuple[QuantPlan, keras.Model]:
        """(plan, QKeras model) of a float model from calibration statistics (``calibration``:
        already measured on this model); ``allocated``: per-layer bits chosen under the
        budget (the user's own overrides win)."""
        calibration = calibration if calibration is not None else self.calibrated(float_model)
        return _quantized(float_model, calibration, self.options, allocated)

    def allocate(self, float_model, calibration: dict, target: float) -> Allocation:
        """Per-layer bits of a float model (``calibration``: measured on it) that bring
        ``budget.cost`` within ``target``; with weight-level sparsity, per-layer weight
        sparsities too (starting from ``weight_sparsity``, the zeros already in the model)."""
        o = self.options
        x, y = self.val[0][:BUDGET_SAMPLES], self.val[1][:BUDGET_SAMPLES]
        scores = None
        if o.granularity != 'channel' and self.budget.unit == 'LUT':
            # Zeros are hardware saved in the LUT cost (fully unrolled logic), not in the footprint's count.
            scores = weight_scores(float_model, self.calibration_x, o.exclude)
        allocator = BitAllocator(
            float_model,
            calibration,
            x,
            y,
            self.loss,
            self.budget.cost,
            self.budget.unit,
            o.weight_bits,
            o.activation_bits,
            o.bias_bits,
            bit_overrides(float_model, o.layer_bits, o.last_layer_bits),
            o.step_rule,
            weight_scores=scores,
            sparsity=o.weight_sparsity,
            granularity=o.granularity,
            min_activation_bits=o.min_activation_bits,
        )
        return allocator.allocate(target)

    def fit(self, name, student, epochs, base_rate, callbacks=(), monitor_from_epoch=0) -> dict:
        o = self.options
        return fit_phase(
            name,
            student,
            self.train,
            self.val,
            epochs=epochs,
            steps_per_epoch=self.steps_per_epoch,
            base_rate=base_rate,
            recovery=self.recovery,
            loss=self.loss,
            metrics=o.metrics,
            batch_size=o.batch_size,
            teacher=self.teacher,
            student_logits=not _ends_in_softmax(student),
            teacher_logits=not _ends_in_softmax(self.model),
            callbacks=callbacks,
            monitor_from_epoch=monitor_from_epoch,
            verbose=o.verbose,
        )


def prepare(model, train_data, val_data, options: CompressOptions, cost=None) -> Run:
    """Check the data, size the phases, choose the learning rates, the budget; seed everything."""
    o = options
    budget = budget_of(o, cost)
    loss = o.loss
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model))
    x_tr, y_tr = _xy(train_data, 'train_data', model)
    x_va, y_va = _xy(val_data, 'val_data', model)
    steps_per_epoch = math.ceil(len(x_tr) / o.batch_size)
    finetune_epochs, finetune_how = resolve_epochs(o.finetune_epochs, steps_per_epoch, 'finetune_epochs')
    qat_epochs, qat_how = resolve_epochs(o.qat_epochs, steps_per_epoch, 'qat_epochs', budgeted=budget is not None)
    learning_rate, source_rate = o.learning_rate, 'given'
    if learning_rate is None:
        learning_rate = trained_learning_rate(model)
        source_rate = 'model' if learning_rate is not None else 'default'
        learning_rate = learning_rate or DEFAULT_LEARNING_RATE
    recovery = Recovery(
        learning_rate=learning_rate,
        qat_learning_rate=o.qat_learning_rate or learning_rate,
        learning_rate_source=source_rate,
        lr_schedule=o.lr_schedule,
        warmup=o.warmup,
        patience=o.patience,
        distill=bool(o.distill),
        distill_alpha=o.distill_alpha,
        distill_temperature=o.distill_temperature,
        distill_kind=('classification' if is_classification_loss(loss) else 'regression') if o.distill else None,
    )
    keras.utils.set_random_seed(o.seed)
    return Run(
        options=o,
        model=model,
        train=(x_tr, y_tr),
        val=(x_va, y_va),
        steps_per_epoch=steps_per_epoch,
        finetune_epochs=finetune_epochs,
        finetune_how=finetune_how,
        qat_epochs=qat_epochs,
        qat_how=qat_how,
        recovery=recovery,
        loss=loss,
        calibration_x=x_tr[: o.calibration_samples],
        teacher=_frozen_copy(model) if recovery.distill else None,
        budget=budget,
    )


@dataclass
class Pruned:
    """The outcome of ``prune_phase``."""

    masked: MaskedModel
    group_sparsity: dict[int, float]
    schedule: Schedule
    callback: ChannelPruningCallback
    epochs: int  # all epochs with masks
    needed: int  # epochs of the schedule
    phases: list[dict]
    baseline: dict
    masked_result: dict
    plan: QuantPlan | None = None  # joint mode: the plan the masked QKeras model was built with
    range_refreshes: list[dict] = field(default_factory=list)


def prune_phase(run: Run) -> Pruned:
    """Masks, the pruning windows, then fine-tuning with every mask frozen."""
    o = run.options
    plan = None
    source = run.model
    if o.joint:
        # BatchNorm goes inside the quantized layers where QKeras has a fused form: the masks train on a network
        # that still normalizes with batch statistics, not on one whose BatchNorm was frozen into its weights.
        plan, source = run.quantized(fold_batchnorm(run.model, fuse=True))
    masked = MaskedModel(source, exclude_first=o.exclude_first, exclude=o.exclude)
    table = masked.table
    producer_names = {n for g in table.groups for n in g.producers}
    unknown = set(o.per_layer_sparsity) - producer_names
    if unknown:
        raise PrunerError(
            f'per_layer_sparsity names layers that are not prunable producers: {sorted(unknown)}; '
            f'producers: {sorted(producer_names)}'
        )
    group_sparsity = {}
    for g in table.prunable:
        given = [o.per_layer_sparsity[n] for n in g.producers if n in o.per_layer_sparsity]
        group_sparsity[g.index] = given[0] if given else o.sparsity

    steps_per_epoch = run.steps_per_epoch
    sched = make_schedule(
        o.schedule,
        [g.index for g in table.prunable],
        o.start,
        o.interval,
        o.refresh,
        o.unit,
        steps_per_epoch,
        [g.name for g in table.groups],
    )
    needed = math.ceil(sched.end / steps_per_epoch) if sched.end else 0
    epochs = o.epochs
    if epochs is None:
        epochs = needed + run.finetune_epochs
    elif epochs < needed:
        raise PrunerError(
            f'epochs={epochs} is shorter than the {o.schedule} schedule, which ends at step {sched.end} '
            f'(= {needed} epochs of {steps_per_epoch} steps); give epochs >= {needed}'
        )
    if o.verbose:
        print(sched)

    compile_model(masked.model, run.loss, o.metrics, run.recovery.learning_rate)
    baseline = run.evaluate(masked.model)
    callback = ChannelPruningCallback(
        masked, sched, o.measure, group_sparsity, o.round_to, o.seed, verbose=bool(o.verbose)
    )
    callbacks = [callback]
    if o.joint:
        # Ranges follow the statistics through the pruning fit too; with no QAT after it, its last epoch is fixed.
        prune_steps = int(epochs) * steps_per_epoch
        freeze = prune_steps if run.qat_epochs > 0 else prune_steps - steps_per_epoch
        joint_ranges = RangeRefreshCallback(
            masked.model,
            plan,
            run.calibration_x,
            _steps(o.range_refresh, o.unit, steps_per_epoch),
            freeze,
            o.step_rule,
        )
        callbacks += [joint_ranges, _freeze_batchnorm_after(masked.model, freeze)]
    rate = run.recovery.learning_rate
    # The pruning windows: masks still move, so no best epoch is restored from them.
    phases = [run.fit('pruning', masked.model, needed, rate, callbacks, monitor_from_epoch=None)]
    # Fine-tuning with every mask frozen (the callback only counts steps now).
    # Joint mode without QAT moves the integer bits until its last epoch: no earlier epoch may be restored.
    frozen_types = None if (o.joint and run.qat_epochs == 0) else 0
    phases.append(run.fit('finetune', masked.model, int(epochs) - needed, rate, callbacks, frozen_types))
    phases[-1]['how'] = run.finetune_how if epochs == needed + run.finetune_epochs else 'given (epochs)'
    masked.pause_collecting()
    pruned = Pruned(masked, group_sparsity, sched, callback, int(epochs), needed, phases, baseline, None, plan)
    pruned.masked_result = run.evaluate(masked.model)
    if o.joint:
        pruned.range_refreshes.append({'phase': 'pruning', **joint_ranges.to_dict()})
    return pruned


@dataclass
class Quantized:
    """The outcome of ``quantize_phase``."""

    qmodel: keras.Model
    plan: QuantPlan
    reduced_result: dict
    before_qat: dict
    result: dict
    range_refreshes: list[dict]
    budget: dict | None = None
    weight_pruning: WeightPruningCallback | None = None
    weight_pruned_result: dict | None = None  # the float model once its weight masks are applied


def quantize_phase(run: Run, pruned: Pruned) -> Quantized:
    """Cut the channels out, build the QKeras model (joint mode: it is one already), train it
    quantized. Under a budget, the bits of each layer are allocated first, and the trained
    design's cost is checked: over it, the design is trimmed to the budget (budget_fit 'trim',
    'both') and/or the allocation is redone against a lower target ('both', 'retrain'); well
    under it (BUDGET_FILL), against a higher one, keeping the better attempt within it."""
    o = run.options
    if o.joint:
        plan = pruned.plan
        qmodel = reduce(pruned.masked)  # already QKeras, with the ranges refreshed so far
        compile_model(qmodel, run.loss, o.metrics, run.recovery.qat_learning_rate)
        reduced_result = before_qat = run.evaluate(qmodel)
        return _qat(run, pruned, plan, qmodel, reduced_result, before_qat)
    reduced = fold_batchnorm(reduce(pruned.masked))
    compile_model(reduced, run.loss, o.metrics, run.recovery.learning_rate)
    reduced_result = run.evaluate(reduced)
    dense_kernels, weight_pruned_result = {}, None
    if o.granularity != 'channel':
        # The weight masks at the target sparsity, ranked on the reduced float model: what the calibration and
        # the budget's allocation see. With a ramp, QAT starts from the dense weights again and brings the
        # sparsity in gradually (ranked anew on the quantized network); the cost is checked after training.
        dense_kernels = {
            layer.name: [w.numpy() for w in layer.weights] for layer in weight_prunable(reduced, o.exclude)
        }
        prune_weights(reduced, run.calibration_x, o.weight_sparsity, o.granularity, o.exclude)
        weight_pruned_result = run.evaluate(reduced)
        if o.weight_ramp == 0 or run.qat_epochs == 0:
            dense_kernels = {}

    def train_quantized(plan, qmodel, sparsity=o.weight_sparsity):
        for name, weights in dense_kernels.items():
            qmodel.get_layer(name).set_weights(weights)
        compile_model(qmodel, run.loss, o.metrics, run.recovery.qat_learning_rate)
        return _qat(run, pruned, plan, qmodel, reduced_result, run.evaluate(qmodel), weight_pruned_result, sparsity)

    if run.budget is None:
        return train_quantized(*run.quantized(reduced))
    budget, target, attempts = run.budget, run.budget.limit, []
    calibration = run.calibrated(reduced)  # the same float model every attempt: measured once
    # Every attempt's allocation starts from the same zeros (those of weight_sparsity).
    start_kernels = {layer.name: layer.get_weights() for layer in weight_prunable(reduced, o.exclude)}
    kept = None  # (validation figure, attempt, Quantized): the best one within the budget
    for attempt in range(1, BUDGET_ATTEMPTS + 1):
        for name, weights in start_kernels.items():
            reduced.get_layer(name).set_weights(weights)
        try:
            allocation = run.allocate(reduced, calibration, target)
        except PrunerError:
            if kept is None:
                raise
            break  # a smaller target out of reach: an earlier design within the budget stands
        chosen = (allocation.layer_bits, allocation.layer_sparsity)
        if kept is not None and any((a['layer_bits'], a['layer_sparsity']) == chosen for a in attempts):
            break  # the greedy's steps are coarse: a new target can give an allocation already trained
        sparsity = o.weight_sparsity
        if allocation.layer_sparsity:
            # The allocated sparsity per layer, ranked layer by layer on the already-masked network.
            sparsity = {
                layer.name: allocation.layer_sparsity.get(layer.name, o.weight_sparsity)
                for layer in weight_prunable(reduced, o.exclude)
            }
            prune_weights(reduced, run.calibration_x, sparsity, o.granularity, o.exclude)
        quantized = train_quantized(*run.quantized(reduced, allocation.layer_bits, calibration), sparsity)
        trained = float(budget.cost(quantized.qmodel))
        attempts.append({'attempt': attempt, 'target': target, 'trained_cost': trained, **allocation.to_dict()})
        # The manifest's phases are the exported model's; each attempt's QAT is kept with the attempt.
        attempts[-1]['qat_phase'] = pruned.phases.pop()
        cost, trimmed = trained, False
        if trained > budget.limit and _trims(run):
            attempts[-1]['trim'] = _trim(run, quantized, sparsity)
            cost = attempts[-1]['trim']['cost']
            trimmed = cost <= budget.limit
        attempts[-1]['cost_kept'] = cost
        if cost <= budget.limit:
            figure = attempts[-1]['validation'] = _validation_figure(quantized.result, o.metrics)
            if kept is None or figure > kept[0]:
                kept = (figure, attempt, quantized)
            # 'both': a trimmed design is one candidate; a smaller allocation, trained, is the other.
            if cost >= BUDGET_FILL * budget.limit and not (trimmed and o.budget_fit == 'both'):
                break
        # The allocated design changed by trained / allocation.cost in training: allocate again for a design
        # that much smaller (over the budget; BUDGET_MARGIN more) or larger (well under it). (Scaling the
        # target instead repeats the same allocation when its last step took the cost well below the target.)
        grow = trained <= budget.limit
        target = (allocation.cost if grow else min(target, allocation.cost)) * budget.limit / trained
        target *= 1 - BUDGET_MARGIN
    if kept is not None:
        _, attempt, quantized = kept
        pruned.phases.append(attempts[attempt - 1].pop('qat_phase'))
        if 'phase' in attempts[attempt - 1].get('trim', {}):
            pruned.phases.append(attempts[attempt - 1]['trim'].pop('phase'))
        cost = attempts[attempt - 1]['cost_kept']
        quantized.budget = {
            'limit': budget.limit, 'unit': budget.unit, 'cost': cost, 'attempts': attempts, 'kept_attempt': attempt
        }  # fmt: skip
        return quantized
    raise PrunerError(
        f'the budget of {budget.limit:g} {budget.unit} was not met: after {BUDGET_ATTEMPTS} allocations the trained '
        f'design costs {trained:g} {budget.unit} (quantization-aware training moved its weights past the '
        'allocated cost); raise the budget, prune more channels (sparsity), or keep the types fixed '
        '(range_refresh none)'
    )


def _trims(run: Run) -> bool:
    """Whether an over-budget design is trimmed (budget_fit 'trim' or 'both'): with weight zeros to add
    (granularity 'weight' or 'kofn') and a LUT budget (zeros cost no logic; the footprint
    counts them)."""
    o = run.options
    return o.budget_fit != 'retrain' and o.granularity != 'channel' and run.budget.unit == 'LUT'


def _trim(run: Run, quantized: Quantized, sparsity) -> dict:
    """Bring a trained design over the budget within it (pruner.trim), fine-tune it with its
    masks and types held, and trim again if the fine-tune moved its cost over. Changes
    ``quantized`` in place (left as trained when the first trim cannot fit it). Returns the
    record: both trims, the fine-tune's phase ('phase', when the design fits) and the
    design's cost ('cost')."""
    o, budget = run.options, run.budget
    qmodel, masks = quantized.qmodel, quantized.weight_pruning

    def trim(current):
        return trim_to_budget(
            qmodel, run.calibration_x, current, o.granularity, budget.cost, budget.limit, o.exclude
        )  # fmt: skip

    first = trim(sparsity)
    record = {'first': first.to_dict(), 'cost': first.cost_before}
    if not first.within:
        return record
    masks.retarget(first.sparsity)
    epochs = max(1, round(TRIM_FINETUNE_SHARE * run.qat_epochs))
    steps = epochs * run.steps_per_epoch
    dampening = OscillationDampening(qmodel, o.oscillation_dampening, steps, 0)
    rate = TRIM_FINETUNE_RATE * run.recovery.qat_learning_rate
    phase = run.fit('trim_finetune', qmodel, epochs, rate, [masks, dampening], 0)
    phase['oscillation'] = dampening.to_dict()
    masks.check()
    second = trim(first.sparsity)
    record.update(second=second.to_dict(), cost=second.cost_before)
    if second.within:  # else the fine-tune moved the cost past what a trim may take back: over the budget
        if second.extra > 0:
            masks.retarget(second.sparsity)
        masks.check()
        record.update(phase=phase, cost=float(budget.cost(qmodel)))
    quantized.result = run.evaluate(qmodel)
    return record


def _validation_figure(result: dict, metrics) -> float:
    """The validation quantity early stopping watches, signed so that larger is better."""
    name, mode = validation_monitor(metrics)
    value = float(result.get(name.removeprefix('val_'), result['loss']))
    return value if mode == 'max' else -value


def _qat(
    run: Run,
    pruned: Pruned,
    plan: QuantPlan,
    qmodel,
    reduced_result: dict,
    before_qat: dict,
    weight_pruned_result: dict | None = None,
    weight_sparsity=None,
) -> Quantized:
    """Quantization-aware training of ``qmodel``, its ranges refreshed and then frozen, and
    its weight sparsity brought in (``granularity`` 'weight' or 'kofn'; ``weight_sparsity``:
    the target, one fraction or one per layer, default the option's)."""
    o = run.options
    steps_per_epoch = run.steps_per_epoch
    qat_epochs = run.qat_epochs
    qat_steps = int(qat_epochs) * steps_per_epoch
    if o.range_freeze is None:
        # The first quarter of QAT follows the statistics; the rest trains with the exported types.
        # Short QAT: all but the last epoch (at least one epoch always trains with the final types).
        freeze = max(steps_per_epoch, (qat_epochs // 4) * steps_per_epoch)
        freeze = min(freeze, qat_steps - steps_per_epoch)
    else:
        freeze = _steps(o.range_freeze, o.unit, steps_per_epoch)
    refresh_steps = _steps(o.range_refresh, o.unit, steps_per_epoch)
    ranges = RangeRefreshCallback(qmodel, plan, run.calibration_x, refresh_steps, min(freeze, qat_steps), o.step_rule)
    qat_callbacks = [ranges]
    weights = None
    if o.granularity != 'channel':
        ramp = round(o.weight_ramp * qat_steps)  # 0 without QAT: the masks of the reduced model, kept
        target = o.weight_sparsity if weight_sparsity is None else weight_sparsity
        weights = WeightPruningCallback(qmodel, run.calibration_x, target, o.granularity, o.exclude, ramp)
        qat_callbacks.append(weights)
    if o.joint:  # the fused layers count their steps on: the masked fit's, then these
        step = pruned.epochs * steps_per_epoch + min(freeze, qat_steps)
        qat_callbacks.append(_freeze_batchnorm_after(qmodel, step))
    # Best weights are restored only from epochs after the last possible range change.
    types_final_epoch = math.ceil(min(freeze, qat_steps) / steps_per_epoch) if ranges.active else 0
    if weights is not None:  # nor from epochs before the last weight masks
        types_final_epoch = max(types_final_epoch, math.ceil(weights.final_step / steps_per_epoch))
    # Weights settle in their bins once the types and masks they are trained for are final.
    dampening = OscillationDampening(qmodel, o.oscillation_dampening, qat_steps, types_final_epoch * steps_per_epoch)
    qat_callbacks.append(dampening)
    rate = run.recovery.qat_learning_rate
    pruned.phases.append(run.fit('qat', qmodel, int(qat_epochs), rate, qat_callbacks, types_final_epoch))
    pruned.phases[-1]['how'] = run.qat_how
    pruned.phases[-1]['oscillation'] = dampening.to_dict()
    if weights is not None:
        weights.check()
    refreshes = [*pruned.range_refreshes, {'phase': 'qat', **ranges.to_dict()}]
    result = run.evaluate(qmodel)
    return Quantized(qmodel, plan, reduced_result, before_qat, result, refreshes, None, weights, weight_pruned_result)


def manifest_phase(run: Run, pruned: Pruned, quantized: Quantized, seconds: float) -> dict:
    """The JSON-serializable record of the run: settings, schedule, groups, types, phases, metrics."""
    o = run.options
    table = pruned.masked.table
    callback = pruned.callback
    plan, qmodel = quantized.plan, quantized.qmodel
    kept = pruned.masked.kept()
    groups = []
    layers = {}
    for g in table.groups:
        keep = kept.get(g.index, np.arange(g.channels))
        entry = {
            'index': g.index,
            'producers': g.producers,
            'prunable': g.prunable,
            'reason': g.reason,
            'sparsity': pruned.group_sparsity.get(g.index, 0.0),
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
    result = quantized.result
    key = next((k for k in result if k != 'loss'), 'loss')
    before = metrics_lib.summary(run.model)
    after = metrics_lib.summary(qmodel)
    manifest = {
        'pruner': {
            **o.echo(),  # every declared setting as given; resolved values below
            'epochs': pruned.epochs,
            'finetune_epochs': pruned.epochs - pruned.needed,
            'qat_epochs': run.qat_epochs,
            'steps_per_epoch': run.steps_per_epoch,
            'quantization_note': 'power-of-two scales (alpha=1): quantized_bits(b, i) == ap_fixed<b, i+1>, '
            'quantized_relu(b, i) == ap_ufixed<b, i>; integer bits by step_criterion (max: cover the '
            'calibration maxima; mse: least quantization error)',
        },
        # What trained and what decided (early stopping, best epochs, the budget): the caller's splits.
        'data': {
            'train_samples': len(run.train[0]),
            'val_samples': len(run.val[0]),
            'calibration_samples': len(run.calibration_x),
        },
        'schedule': pruned.schedule.to_dict(),
        'schedule_complete': callback.complete,
        'mask_updates': [{'step': s, 'group': g, 'kept': k} for s, g, k in callback.history],
        'groups': groups,
        'layers': layers,
        'quantization': plan.to_dict(),  # the final (frozen) types
        'range_refreshes': quantized.range_refreshes,
        'budget': quantized.budget,  # the budget, each allocation's steps and the trained design's cost
        'weight_pruning': {
            'granularity': o.granularity,
            'weight_sparsity': o.weight_sparsity,
            **(quantized.weight_pruning.to_dict() if quantized.weight_pruning else {}),
            'layers': {
                name: mask.to_dict()
                for name, mask in (quantized.weight_pruning.masks if quantized.weight_pruning else {}).items()
            },
        },
        'recovery': {**run.recovery.to_dict(), 'phases': pruned.phases},
        'metrics': {
            'metric': key,
            'baseline': pruned.baseline,
            'masked': pruned.masked_result,
            'reduced_float': quantized.reduced_result,
            'weight_pruned_float': quantized.weight_pruned_result,
            'quantized_before_qat': quantized.before_qat,
            'quantized': result,
            'before': before,
            'after': after,
            'performance_density': metrics_lib.performance_density(
                result.get(key, float('nan')), after['footprint_bits']
            ),
            'baseline_performance_density': metrics_lib.performance_density(
                pruned.baseline.get(key, float('nan')), before['footprint_bits']
            ),
        },
        'seconds': seconds,
    }
    return _jsonable(manifest)


def bit_overrides(model, layer_bits: dict | None, last_layer_bits: int | None) -> dict:
    """Per-layer bit overrides: ``layer_bits``, and ``last_layer_bits`` for the weights and
    activation of the last layer with weights (where ``layer_bits`` does not say otherwise)."""
    overrides = {name: dict(bits) for name, bits in (layer_bits or {}).items()}
    if last_layer_bits is not None:
        weighted = [layer.name for layer in model.layers if (kind := lookup(layer)) and kind.quantized_weights(layer)]
        if weighted:
            last = overrides.setdefault(weighted[-1], {})
            last.setdefault('weight_bits', last_layer_bits)
            last.setdefault('activation_bits', last_layer_bits)
    return overrides


def compress(model, train_data, val_data, options: CompressOptions | None = None, cost=None, **settings):
    """Prune channels with the given schedule, cut them out, quantize, fine-tune.

    ``options``: a :class:`CompressOptions`; keyword ``settings`` (its field names) replace
    its values, so ``compress(model, train, val, sparsity=0.75)`` works too. Each setting
    is described once, on its field (``CompressOptions``; the same text is the help of
    ``lpsubnet prune`` and of the run configuration).

    ``model``: a functional or Sequential Keras model (not modified). ``train_data``,
    ``val_data``: (x, y) arrays; early stopping and the reported metrics use ``val_data``.

    The phases (pruner.recovery): the pruning windows of the schedule with masks in the
    graph, fine-tuning once every mask is frozen, the surgery that cuts the pruned
    channels out, calibration of the fixed-point types, and quantization-aware training
    of the reduced QKeras model, during which the integer bits follow running statistics
    until they freeze. Each phase trains with a fresh Adam (distilling from the input
    model when asked) and restores its best validation weights. With ``joint`` the model
    is quantized first and pruning and QAT run in one fit.

    ``cost``: QKeras model -> LUTs, for a ``max_lut`` budget (e.g. ``lambda m:
    hls_backend.estimate_cost(m).lut_estimate``; the pruner knows nothing of hardware).

    Returns (reduced QKeras model, manifest dict (JSON-serializable)).
    """
    t0 = time.time()
    options = CompressOptions.build(options, **settings)
    run = prepare(model, train_data, val_data, options, cost)
    pruned = prune_phase(run)
    quantized = quantize_phase(run, pruned)
    return quantized.qmodel, manifest_phase(run, pruned, quantized, round(time.time() - t0, 2))


def quantized_preview(model, train_data, options: CompressOptions | None = None, **settings) -> keras.Model:
    """The QKeras model ``compress`` would write for ``model`` if it cut no channel, in
    seconds and without training: the same checks of the graph (the layers the pruner
    knows, the channel groups), the same surgery (BatchNorm folded, every layer in its
    QKeras form, the input quantizer) and fixed-point types calibrated on the first
    ``calibration_samples`` of the training inputs (``train_data``: (x, y), checked as
    ``compress`` checks it).

    What ``compress`` would refuse only after its pruning epochs (a BatchNormalization
    with no layer to fold into, an activation with no quantized form) is raised here, so
    a caller can also hold the result against its own needs (lpsubnet: what its hardware
    routes accept) before any training. ``options`` / ``settings`` as for ``compress``.
    """
    o = CompressOptions.build(options, **settings)
    x, _ = _xy(train_data, 'train_data', model)
    MaskedModel(model, exclude_first=o.exclude_first, exclude=o.exclude)  # the pruner's own refusals
    float_model = fold_batchnorm(model, fuse=o.joint)
    _, qmodel = _quantized(float_model, _calibrated(float_model, x[: o.calibration_samples], o), o)
    return qmodel
