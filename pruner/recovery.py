"""How the network recovers after channels go: the training recipe of every phase.

``compress`` trains in up to three phases: the pruning windows (masks being chosen),
fine-tuning of the masked network once every mask is frozen, and quantization-aware
training (QAT) of the reduced QKeras model. At small scale, how well the network
recovers decides more than which channels go (docs/benchmarks.md), so each phase gets
a recipe of its own, built from Keras's own pieces:

- a fresh Adam whose rate starts at the phase's base rate and decays with a cosine
  (``keras.optimizers.schedules.CosineDecay``, optionally after a linear warm-up):
  a phase never starts at the small rate the previous one ended with;
- a budget in optimizer steps rather than a fixed few epochs (``auto_epochs``);
- ``keras.callbacks.EarlyStopping`` on the validation split with the best weights
  restored, watching only the epochs whose masks and fixed-point types are final;
- optionally distillation from the unpruned float model (``Distiller``).

Nothing here changes which channels are kept: the importance measure and the
schedule decide that; this only decides how the remaining weights train.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import keras
from keras import ops

from .errors import PrunerError

LR_SCHEDULES = ('cosine', 'constant')
DEFAULT_LEARNING_RATE = 1e-3
# The auto budget: about this many optimizer steps per phase, within these epoch bounds.
# Small data sets hit the epoch cap first (digits: ~19 steps per epoch), so their budget
# scales down with them instead of running hundreds of epochs. 6000, not 3000: at 3000 the
# letter MLP (110 steps per epoch, 28 epochs) still improved on its validation split in
# the last epoch of every phase, and twice the steps lifted its 50% W8A8 model by about
# 2 points (docs/benchmarks.md, ablation budget-half); early stopping ends a phase sooner
# where the validation metric has stopped improving, so the cap costs time only where it helps.
AUTO_STEPS = 6000
AUTO_MIN_EPOCHS = 4
AUTO_MAX_EPOCHS = 60
# QAT under a LUT or footprint budget trains the low-bit designs the allocation chooses (2-4 bit
# weights, 4-bit activations, weight zeros), and those were still improving at the end of
# AUTO_STEPS: bench-peer's same variants with QAT as long as HGQ2's training (letter: 300 epochs
# of 110 steps instead of 55; digits: 400 epochs instead of the cap of 60) gained 3.8-4.6 points
# at 20k LUT on letter, 12.8 at 10k on digits, and gained at 15 of the 16 budgeted points measured
# both ways (lost 2.3 at letter 14k seed 0, where the design grew over its budget and was retrained
# from the float start; budget_fit 'both' now trims it instead: 89.35 % against auto's 85.9).
# The budget's auto QAT is that length: a budgeted run takes several times longer.
AUTO_BUDGET_QAT_STEPS = 33_000
AUTO_BUDGET_QAT_MAX_EPOCHS = 400


def compile_model(model, loss, metrics, learning_rate) -> None:
    """Compile with Adam at ``learning_rate`` (a float or a schedule), no XLA: how every
    phase, and every evaluation in ``compress``, compiles its model."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=list(metrics), jit_compile=False)


def validate_distillation(alpha, temperature) -> None:
    """Refuse a distillation weight outside [0, 1] or a temperature <= 0, by name."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise PrunerError(f'distill_alpha must lie in [0, 1], got {alpha!r}')
    if not float(temperature) > 0.0:
        raise PrunerError(f'distill_temperature must be > 0, got {temperature!r}')


def auto_epochs(steps_per_epoch: int, target_steps: int = AUTO_STEPS, max_epochs: int = AUTO_MAX_EPOCHS) -> int:
    """Epochs for a phase of about ``target_steps`` optimizer steps, clipped to
    [AUTO_MIN_EPOCHS, max_epochs]."""
    wanted = math.ceil(target_steps / max(1, int(steps_per_epoch)))
    return int(min(max_epochs, max(AUTO_MIN_EPOCHS, wanted)))


def auto_patience(epochs: int) -> int:
    """Early-stopping patience for a phase of ``epochs`` epochs: a quarter of it, at least 3.
    Late cosine epochs still improve slowly, so a short patience would stop too soon."""
    return max(3, int(math.ceil(epochs / 4)))


def trained_learning_rate(model) -> float | None:
    """The learning rate a model was compiled with before it was saved (None if unknown).

    A schedule gives its starting rate; Keras keeps the optimizer in a ``.keras`` file."""
    optimizer = getattr(model, 'optimizer', None)
    if optimizer is None:
        return None
    rate = getattr(optimizer, '_learning_rate', None)
    initial = getattr(rate, 'initial_learning_rate', None)
    if initial is not None:
        return float(initial)
    try:
        value = float(ops.convert_to_numpy(optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def saved_learning_rate(path) -> float | None:
    """The starting learning rate of the optimizer saved in a ``.keras`` file (None if it
    holds none): what the model was trained with, for callers that load it with
    ``compile=False``. Read from the file's ``compile_config``; float32 noise is rounded off."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read('config.json'))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    optimizer = ((config.get('compile_config') or {}).get('optimizer') or {}).get('config') or {}
    rate = optimizer.get('learning_rate')
    if isinstance(rate, dict):  # a schedule: its starting rate
        rate = (rate.get('config') or {}).get('initial_learning_rate')
    if not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        return None
    return float(f'{float(rate):.7g}')


def phase_learning_rate(base: float, total_steps: int, schedule: str = 'cosine', warmup: float = 0.0):
    """The learning rate of one phase: ``base`` held ('constant') or decayed to 0 with a
    cosine over ``total_steps`` ('cosine'), after a linear warm-up from 0 over the first
    ``warmup`` fraction of the phase. Returns a float or a Keras LearningRateSchedule."""
    if schedule not in LR_SCHEDULES:
        raise PrunerError(f'unknown lr_schedule {schedule!r}; choose one of {list(LR_SCHEDULES)}')
    if schedule == 'constant' or total_steps <= 0:
        return float(base)
    warmup_steps = int(round(float(warmup) * total_steps))
    decay_steps = max(1, total_steps - warmup_steps)
    if warmup_steps <= 0:
        return keras.optimizers.schedules.CosineDecay(float(base), decay_steps, alpha=0.0)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps, alpha=0.0, warmup_target=float(base), warmup_steps=warmup_steps
    )


def rate_at(learning_rate, step: int) -> float:
    """The rate a (float or schedule) learning rate gives at optimizer step ``step``."""
    if callable(learning_rate):
        return float(ops.convert_to_numpy(learning_rate(step)))
    return float(learning_rate)


def _log_probabilities(outputs, from_logits: bool, temperature: float):
    """log softmax(logits / T); for probability outputs, the logits are log p (a softmax of
    log p is p again, so this is exact up to the clipping of zeros)."""
    logits = outputs if from_logits else ops.log(ops.clip(outputs, 1e-12, 1.0))
    return ops.log_softmax(logits / temperature, axis=-1)


def distillation_loss(student_out, teacher_out, temperature: float, student_logits: bool, teacher_logits: bool):
    """Hinton et al. (2015): T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over
    the classes (last axis) and averaged over the rest."""
    log_t = _log_probabilities(teacher_out, teacher_logits, temperature)
    log_s = _log_probabilities(student_out, student_logits, temperature)
    kl = ops.sum(ops.exp(log_t) * (log_t - log_s), axis=-1)
    return (temperature**2) * ops.mean(kl)


@keras.saving.register_keras_serializable(package='pruner')
class Distiller(keras.Model):
    """Train ``student`` against the task loss and a frozen ``teacher``'s outputs.

    Classification (``kind='classification'``):
    ``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * task loss``;
    regression (``kind='regression'``, e.g. image outputs):
    ``alpha * MSE(student, teacher) + (1 - alpha) * task loss``. The teacher runs on each
    batch inside the train step (no copy of the data set). ``*_logits``: whether that
    model's output is logits (False: it ends in a softmax).

    Compile it with the task loss and metrics as you would the student, then ``fit``;
    the student's weights train, the teacher's never do. Evaluation (``training=False``)
    reports the task loss alone, so validation losses stay comparable across settings.
    Callbacks see the Distiller as ``self.model``; ``distiller.student`` is the model to keep.
    """

    def __init__(
        self,
        student,
        teacher,
        alpha: float = 0.5,
        temperature: float = 2.0,
        kind: str = 'classification',
        student_logits: bool = True,
        teacher_logits: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in ('classification', 'regression'):
            raise PrunerError(f"distillation kind must be 'classification' or 'regression', got {kind!r}")
        validate_distillation(alpha, temperature)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.kind = kind
        self.student_logits = bool(student_logits)
        self.teacher_logits = bool(teacher_logits)

    def call(self, x, training=False):
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        task = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if not training or self.alpha == 0.0:
            return task
        teacher_out = ops.stop_gradient(self.teacher(x, training=False))
        if self.kind == 'classification':
            soft = distillation_loss(y_pred, teacher_out, self.temperature, self.student_logits, self.teacher_logits)
        else:
            soft = ops.mean(ops.square(ops.cast(y_pred, 'float32') - ops.cast(teacher_out, 'float32')))
        return self.alpha * soft + (1.0 - self.alpha) * task


def is_classification_loss(loss) -> bool:
    """Cross-entropy losses distil with the KL term; anything else with MSE to the teacher."""
    name = loss if isinstance(loss, str) else loss.__class__.__name__
    return 'crossentropy' in str(name).lower().replace('_', '')


@dataclass
class Recovery:
    """The training recipe shared by every phase of ``compress``; saved in the manifest.

    ``learning_rate``: base rate of the pruning and fine-tuning phases; ``qat_learning_rate``
    that of QAT (default: the same). ``learning_rate_source`` says where the rate came
    from ('given', 'model' = the optimizer saved with the input model, 'default').
    ``lr_schedule``: 'cosine' (decay to 0 over each phase) or 'constant'; ``warmup``: the
    fraction of each phase spent warming up linearly from 0. ``patience``: early-stopping
    patience in epochs ('auto': a quarter of the phase; None: no early stopping).
    ``distill``: train against the input float model as teacher with ``distill_alpha``
    and ``distill_temperature`` (see ``Distiller``).
    """

    learning_rate: float = DEFAULT_LEARNING_RATE
    qat_learning_rate: float = DEFAULT_LEARNING_RATE
    learning_rate_source: str = 'default'
    lr_schedule: str = 'cosine'
    warmup: float = 0.0
    patience: int | str | None = 'auto'
    distill: bool = False
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    distill_kind: str | None = None

    def __post_init__(self):
        for name in ('learning_rate', 'qat_learning_rate'):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise PrunerError(f'{name} must be a positive number, got {value!r}')
        if self.lr_schedule not in LR_SCHEDULES:
            raise PrunerError(f'unknown lr_schedule {self.lr_schedule!r}; choose one of {list(LR_SCHEDULES)}')
        if not (isinstance(self.warmup, int | float) and 0.0 <= self.warmup < 1.0):
            raise PrunerError(f'warmup must be a fraction of the phase in [0, 1), got {self.warmup!r}')
        if not (self.patience in (None, 'auto') or (isinstance(self.patience, int) and self.patience >= 1)):
            raise PrunerError(f"patience must be 'auto', None or a whole number of epochs >= 1, got {self.patience!r}")
        validate_distillation(self.distill_alpha, self.distill_temperature)

    def patience_for(self, epochs: int) -> int | None:
        if self.patience is None:
            return None
        return auto_patience(epochs) if self.patience == 'auto' else int(self.patience)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_epochs(value, steps_per_epoch: int, what: str, budgeted: bool = False) -> tuple[int, str]:
    """(epochs, how they were chosen) for an int or 'auto'; ``budgeted``: QAT under a LUT or
    footprint budget, whose 'auto' is AUTO_BUDGET_QAT_STEPS."""
    if value == 'auto' and budgeted:
        epochs = auto_epochs(steps_per_epoch, AUTO_BUDGET_QAT_STEPS, AUTO_BUDGET_QAT_MAX_EPOCHS)
        return epochs, (
            f'auto under a budget: about {AUTO_BUDGET_QAT_STEPS} steps at {steps_per_epoch} steps per epoch '
            f'(at most {AUTO_BUDGET_QAT_MAX_EPOCHS} epochs)'
        )
    if value == 'auto':
        return auto_epochs(steps_per_epoch), f'auto: about {AUTO_STEPS} steps at {steps_per_epoch} steps per epoch'
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PrunerError(f"{what} must be 'auto' or a whole number of epochs >= 0, got {value!r}")
    return int(value), 'given'


def validation_monitor(metrics) -> tuple[str, str]:
    """The validation quantity early stopping watches: the first compiled metric, else the loss."""
    for m in metrics or ():
        name = m if isinstance(m, str) else getattr(m, 'name', None)
        if name in ('accuracy', 'acc', 'sparse_categorical_accuracy', 'categorical_accuracy'):
            return f'val_{name}', 'max'
        if name in ('mse', 'mean_squared_error', 'mae', 'mean_absolute_error'):
            return f'val_{name}', 'min'
    return 'val_loss', 'min'


def fit_phase(
    phase: str,
    model,
    train,
    val,
    *,
    epochs: int,
    steps_per_epoch: int,
    base_rate: float,
    recovery: Recovery,
    loss,
    metrics,
    batch_size: int,
    teacher=None,
    student_logits: bool = True,
    teacher_logits: bool = True,
    callbacks=(),
    monitor_from_epoch: int | None = 0,
    verbose: int = 0,
) -> dict:
    """Train ``model`` for one phase with its own optimizer, rate schedule, early stopping and
    (when ``recovery.distill``) the teacher. ``monitor_from_epoch``: the first epoch whose
    weights may be restored as the best (None: no early stopping in this phase, e.g. while
    masks still move). Leaves ``model`` compiled for evaluation with the task loss.
    Returns what happened, for the manifest."""
    total_steps = int(epochs) * int(steps_per_epoch)
    rate = phase_learning_rate(base_rate, total_steps, recovery.lr_schedule, recovery.warmup)
    record = {
        'phase': phase,
        'epochs': int(epochs),
        'steps': total_steps,
        'base_learning_rate': float(base_rate),
        'lr_schedule': recovery.lr_schedule if total_steps else None,
        'warmup_steps': int(round(recovery.warmup * total_steps)) if recovery.lr_schedule == 'cosine' else 0,
        'distill': bool(recovery.distill and teacher is not None),
    }
    trained = model
    if record['distill']:
        trained = Distiller(
            model,
            teacher,
            recovery.distill_alpha,
            recovery.distill_temperature,
            recovery.distill_kind or 'classification',
            student_logits,
            teacher_logits,
        )
    compile_model(trained, loss, metrics, rate)
    callbacks = list(callbacks)
    stopper = None
    patience = recovery.patience_for(epochs)
    if total_steps and val is not None and patience is not None and monitor_from_epoch is not None:
        monitor, mode = validation_monitor(metrics)
        stopper = keras.callbacks.EarlyStopping(
            monitor=monitor,
            mode=mode,
            patience=patience,
            restore_best_weights=True,
            start_from_epoch=int(monitor_from_epoch),
        )
        callbacks.append(stopper)
        record.update(early_stopping={'monitor': monitor, 'patience': patience, 'from_epoch': int(monitor_from_epoch)})
    if total_steps:
        history = trained.fit(
            train[0],
            train[1],
            batch_size=batch_size,
            epochs=int(epochs),
            shuffle=True,
            verbose=verbose,
            callbacks=callbacks,
            validation_data=val if stopper is not None else None,
        )
        record['epochs_run'] = len(history.epoch)
        if stopper is not None:
            watched = history.history.get(stopper.monitor, [])
            record['early_stopping'].update(
                stopped_early=bool(stopper.stopped_epoch > 0),
                best_epoch=int(stopper.best_epoch) + 1 if stopper.best_weights is not None else None,
                best_value=float(stopper.best) if stopper.best_weights is not None else None,
                history=[float(v) for v in watched],
            )
    else:
        for cb in callbacks:
            cb.set_model(trained)
            cb.on_train_end()
        record['epochs_run'] = 0
    if trained is not model:  # leave the student compiled on its own, for evaluation
        compile_model(model, loss, metrics, base_rate)
    return record
