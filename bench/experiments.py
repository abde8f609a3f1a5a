"""One benchmark configuration = one JSON. Float baselines are trained once per task and
seed and cached as .keras; every method starts from that baseline, with the same seed
(hence the same batch order) and the same training budget."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from . import data as data_lib
from . import models

RESULTS = Path(__file__).resolve().parent / 'results'

# Training budget per task. Baseline: Adam(lr) for `base_epochs`, batch `batch` (these
# held-out baselines are as before). Every pruning method gets the same recovery, the
# library's: the pruning windows (`interval` epochs per layer, masks refreshed every
# `refresh` epochs), then `finetune_epochs` of fine-tuning with the masks frozen, then
# `qat_epochs` of QAT of the reduced QKeras model; each phase a fresh Adam from the
# baseline's rate `lr` with cosine decay, 'auto' = about 3000 optimizer steps (4-60
# epochs), early stopping on the validation split with the best weights restored, and the
# integer bits refreshed during the first quarter of QAT. `distill`: the library default
# (off) unless an ablation turns it on. `step_criterion`: the matrix was measured with each
# quantizer's step covering the maximum ('max', the default until issue 26); the library's
# default is now the least-error step ('mse'), and the step-criterion part of the plan
# (bench.run.step_criteria) measures both side by side.
SETTINGS = {
    'digits': dict(base_epochs=40, batch=64, lr=3e-3, finetune_epochs='auto', qat_epochs='auto', interval=1.0, refresh=0.25, step_criterion='max'),
    'letter': dict(base_epochs=60, batch=128, lr=3e-3, finetune_epochs='auto', qat_epochs='auto', interval=1.0, refresh=0.25, step_criterion='max'),
    'fmnist': dict(base_epochs=10, batch=128, lr=3e-3, finetune_epochs='auto', qat_epochs='auto', interval=1.0, refresh=0.25, step_criterion='max'),
    'sr': dict(base_epochs=30, batch=64, lr=1e-3, finetune_epochs='auto', qat_epochs='auto', interval=1.0, refresh=0.25, step_criterion='max'),
}  # fmt: skip
TINY = dict(base_epochs=1, finetune_epochs=1, qat_epochs=1, interval=2, refresh=1, unit='steps', batch=32)

# name -> (importance, schedule) for the methods that are plain pruner.compress options
PRUNER_METHODS = {
    'lw_act_l1': ('activation_l1', 'layerwise'),  # the method
    'os_act_l1': ('activation_l1', 'oneshot'),
    'lw_act_l0': ('activation_l0', 'layerwise'),
    'os_act_l0': ('activation_l0', 'oneshot'),
    'os_weight_l1': ('weight_l1', 'oneshot'),  # Li et al. 2017
    'gradual_weight_l1': ('weight_l1', 'gradual'),  # Zhu & Gupta 2017 cubic ramp
    'random': ('random', 'oneshot'),
}
METHOD_TITLES = {
    'lw_act_l1': 'layerwise activation-L1 (the method)',
    'os_act_l1': 'one-shot activation-L1',
    'lw_act_l0': 'layerwise activation-L0',
    'os_act_l0': 'one-shot activation-L0',
    'os_weight_l1': 'weight-L1 (Li et al.)',
    'gradual_weight_l1': 'gradual weight-L1 (Zhu & Gupta)',
    'random': 'random channels',
    'width_scratch': 'width-reduced, trained from scratch',
    'unstructured': 'unstructured magnitude (reference; nonzero weights counted)',
    'quant': 'unpruned, quantized',
    'float': 'float baseline',
    'abl_reverse': 'layerwise act-L1, output->input order',
    'abl_qfixed': 'layerwise act-L1, integer bits fixed after calibration',
    'abl_joint': 'layerwise act-L1, pruning and QAT in one fit',
    'abl_distill': 'layerwise act-L1, distilled from the float model',
    'abl_budget': 'layerwise act-L1, half the auto budget (steps per phase)',
    'abl_scratch_distill': 'width-reduced from scratch, distilled from the float model',
}


def settings(task: str, tiny: bool = False) -> dict:
    s = dict(SETTINGS[task], unit='epochs')
    if tiny or os.environ.get('BENCH_TINY') == '1':
        s.update(TINY)
    return s


def config_name(method: str, sparsity: float | None, wb: int | None, ab: int | None, seed: int) -> str:
    parts = [method]
    if sparsity is not None:
        parts.append(f's{round(sparsity * 100)}')
    if wb is not None:
        parts.append(f'w{wb}a{ab}')
    parts.append(f'seed{seed}')
    return '_'.join(parts)


def _n_out(task) -> int:
    return task.y_train.shape[-1] if task.kind == 'sr' else int(task.y_train.max()) + 1


def _loss_kwargs(task) -> dict:
    if task.kind == 'sr':
        return {'loss': 'mse', 'metrics': ('mse',)}
    return {}


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    pred = data_lib.depth_to_space(np.clip(pred, 0.0, 1.0))
    target = data_lib.depth_to_space(target)
    mse = float(np.mean((pred - target) ** 2))
    return float(10 * np.log10(1.0 / mse)) if mse > 0 else float('inf')


def evaluate(model, task, split: str = 'test') -> float:
    """Top-1 accuracy (%) or PSNR (dB) on ``split``."""
    x, y = getattr(task, f'x_{split}'), getattr(task, f'y_{split}')
    pred = np.asarray(model.predict(x, batch_size=512, verbose=0))
    if task.kind == 'sr':
        return psnr(pred, y)
    return float(100.0 * np.mean(np.argmax(pred.reshape(len(x), -1), axis=1) == y))


def metric_name(task) -> str:
    return 'PSNR (dB)' if task.kind == 'sr' else 'top-1 (%)'


def _fit_float(model, task, epochs, batch, lr, seed, callbacks=()):
    import keras

    keras.utils.set_random_seed(seed)
    kw = _loss_kwargs(task)
    loss = kw.get('loss', 'sparse_categorical_crossentropy')
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=list(kw.get('metrics', ['accuracy'])))
    model.fit(
        task.x_train, task.y_train, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=list(callbacks)
    )
    return model


def baseline(task, seed: int, root: Path, tiny: bool = False):
    """The float baseline of (task, seed) and its path, trained once with the bench's
    recipe and cached as .keras (:func:`cached_float`)."""
    s = settings(task.name, tiny)
    path = root / task.name / 'baselines' / f'float_seed{seed}.keras'

    def fit(model):
        _fit_float(model, task, s['base_epochs'], s['batch'], s['lr'], seed)

    return cached_float(task, seed, path, fit), path


def cached_float(task, seed: int, path: Path, fit, record: dict | None = None):
    """The bench's float model of (task, seed) at ``path``: built, trained once by
    ``fit(model)`` and saved as .keras, with a .json of its training seconds (and ``record``).
    Shards of one task start on the same seeds together: a lock file lets one of them train
    it while the others wait for it."""
    import fcntl

    import keras

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix('.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return keras.models.load_model(path)
        keras.utils.set_random_seed(seed)
        model = models.build(task.name, task.x_train.shape[1:], _n_out(task))
        t0 = time.time()
        fit(model)
        model.save(path)
        path.with_suffix('.json').write_text(
            json.dumps({'seconds': round(time.time() - t0, 2), **(record or {})}) + '\n'
        )
        return model


def _producers(model) -> tuple[str, ...]:
    import pruner

    table = pruner.analyze(model)
    return tuple(n for g in table.groups for n in g.producers)


def phase_epochs(task, s, which: str):
    """``s[which]`` ('finetune_epochs' or 'qat_epochs'): 'auto' stays 'auto' (the library's
    budget) unless the setting asks for another number of steps per phase (``auto_steps``,
    the budget ablation), which is resolved here the way the library resolves 'auto'."""
    from pruner.recovery import auto_epochs

    value = s[which]
    if value == 'auto' and s.get('auto_steps'):
        return auto_epochs(steps_per_epoch(task, s), s['auto_steps'])
    return value


def compress_options(task, s, seed, **kw):
    """The ``pruner.CompressOptions`` of a bench setting ``s`` (``kw``: the method's own settings)."""
    import pruner

    settings = dict(
        epochs=s.get('epochs'),
        finetune_epochs=phase_epochs(task, s, 'finetune_epochs'),
        qat_epochs=phase_epochs(task, s, 'qat_epochs'),
        start=0.0,
        interval=s['interval'],
        refresh=s['refresh'],
        unit=s['unit'],
        seed=seed,
        batch_size=s['batch'],
        learning_rate=s['lr'],
        range_refresh=s.get('range_refresh', 1.0),
        joint=s.get('joint', False),
        distill=s.get('distill', False),
        distill_alpha=s.get('distill_alpha', 0.5),
        distill_temperature=s.get('distill_temperature', 2.0),
        **{key: s[key] for key in ('step_criterion', 'oscillation_dampening') if key in s},  # else the library's
        **_loss_kwargs(task),
    )
    return pruner.CompressOptions.from_settings(settings, **kw)


def _compress(model, task, s, seed, **kw):
    import pruner

    options = compress_options(task, s, seed, **kw)
    return pruner.compress(model, (task.x_train, task.y_train), (task.x_val, task.y_val), options)


def steps_per_epoch(task, s) -> int:
    """Optimizer steps in one epoch of ``task``'s training split at the setting's batch size."""
    return math.ceil(len(task.x_train) / s['batch'])


def pruning_budget_epochs(task, s, groups: int) -> int:
    """Epochs a pruning method trains with masks: its schedule (one window per layer) plus
    fine-tuning; what the width-reduced network from scratch gets on top of the baseline's."""
    from pruner.recovery import auto_epochs

    if s.get('epochs') is not None:
        return int(s['epochs'])
    schedule = 1 if s['unit'] == 'steps' else int(math.ceil(s['interval'] * groups))
    finetune = phase_epochs(task, s, 'finetune_epochs')
    return schedule + (auto_epochs(steps_per_epoch(task, s)) if finetune == 'auto' else int(finetune))


def _fit_scratch(model, task, s, seed, epochs, teacher=None):
    """The width-reduced network from random init with the pruning methods' recipe: one
    phase of ``epochs``, cosine decay from the baseline's rate, early stopping with the best
    weights restored (and the same teacher when the pruned models are distilled)."""
    import keras

    import pruner
    from pruner.recovery import Recovery

    keras.utils.set_random_seed(seed)
    kw = _loss_kwargs(task)
    loss = kw.get('loss', keras.losses.SparseCategoricalCrossentropy())
    recovery = Recovery(
        learning_rate=s['lr'],
        qat_learning_rate=s['lr'],
        distill=teacher is not None,
        distill_alpha=s.get('distill_alpha', 0.5),
        distill_temperature=s.get('distill_temperature', 2.0),
        distill_kind='regression' if task.kind == 'sr' else 'classification',
    )
    return pruner.fit_phase('scratch', model, (task.x_train, task.y_train), (task.x_val, task.y_val), epochs=epochs,
                            steps_per_epoch=steps_per_epoch(task, s), base_rate=s['lr'],
                            recovery=recovery, loss=loss, metrics=list(kw.get('metrics', ['accuracy'])),
                            batch_size=s['batch'], teacher=teacher, student_logits=False, teacher_logits=False)  # fmt: skip


def _prunable_groups(model) -> int:
    import pruner

    return len(pruner.analyze(model).prunable)


def run_method(task, method: str, sparsity, wb, ab, seed, root: Path, tiny=False, overrides=None) -> tuple:
    """Returns (qmodel or float model, record dict)."""
    import keras

    import pruner

    s = settings(task.name, tiny)
    s.update(overrides or {})
    base, _ = baseline(task, seed, root, tiny)
    rec = {'float_metric': evaluate(base, task)}
    if method == 'float':
        model = base
        summary = pruner.summary(base)
        rec.update(val_metric=evaluate(base, task, 'val'))
    elif method in PRUNER_METHODS or (method.startswith('abl_') and method != 'abl_scratch_distill'):
        importance, schedule = PRUNER_METHODS.get(method, ('activation_l1', 'layerwise'))
        kw = {}
        if schedule == 'gradual':  # ramp over the span of the layerwise schedule
            kw['interval'] = s['interval'] * _prunable_groups(base)
        if method == 'abl_reverse':
            from .baselines import reversed_layer_order

            with reversed_layer_order():
                model, manifest = _compress(base, task, s, seed, sparsity=sparsity, weight_bits=wb,
                                            activation_bits=ab, importance=importance, schedule=schedule, **kw)  # fmt: skip
        else:
            model, manifest = _compress(base, task, s, seed, sparsity=sparsity, weight_bits=wb, activation_bits=ab,
                                        importance=importance, schedule=schedule, **kw)  # fmt: skip
        summary = manifest['metrics']['after']
        rec.update(
            channels={g['producers'][0]: [g['channels_before'], g['channels_after']] for g in manifest['groups']},
            schedule=manifest['schedule'],
            schedule_complete=manifest['schedule_complete'],
            val_by_stage={
                k: manifest['metrics'][k]
                for k in ('baseline', 'masked', 'reduced_float', 'quantized_before_qat', 'quantized')
            },
            # How often the QAT range refresh moved an integer bit (0 where it is off).
            range_changes=sum(len(r['changes']) for r in manifest.get('range_refreshes', [])),
            recovery=manifest['recovery'],
        )
    elif method == 'quant':
        model, manifest = _compress(base, task, s, seed, sparsity=0.0, weight_bits=wb, activation_bits=ab,
                                    importance='weight_l1', schedule='oneshot', exclude=_producers(base))  # fmt: skip
        summary = manifest['metrics']['after']
    elif method in ('width_scratch', 'abl_scratch_distill'):
        keras.utils.set_random_seed(seed)
        widths = models.reduced_widths(task.name, sparsity)
        small = models.build(task.name, task.x_train.shape[1:], _n_out(task), widths)
        # the baseline's epochs plus the pruning budget, the same recipe (and teacher); the same QAT
        budget = s['base_epochs'] + pruning_budget_epochs(task, s, _prunable_groups(base))
        teacher = base if method == 'abl_scratch_distill' else None
        rec['scratch'] = _fit_scratch(small, task, s, seed, budget, teacher)
        rec['width_float_metric'] = evaluate(small, task)
        model, manifest = _compress(small, task, s, seed, sparsity=0.0, weight_bits=wb, activation_bits=ab,
                                    importance='weight_l1', schedule='oneshot', exclude=_producers(small), epochs=0,
                                    distill=teacher is not None)  # fmt: skip
        summary = manifest['metrics']['after']
        rec['widths'] = list(widths)
        rec['recovery'] = manifest['recovery']
    elif method == 'unstructured':
        from . import baselines as bl

        # parameter sparsity = that of the structured network at this channel sparsity
        dense_w = bl.weight_count(base)
        small = models.build(
            task.name, task.x_train.shape[1:], _n_out(task), models.reduced_widths(task.name, sparsity)
        )
        fraction = 1.0 - bl.weight_count(small) / dense_w
        model0 = keras.models.clone_model(base)
        model0.set_weights(base.get_weights())
        masks = bl.magnitude_masks(model0, fraction)
        bl.apply_masks(model0, masks)
        _fit_float(model0, task, pruning_budget_epochs(task, s, _prunable_groups(base)), s['batch'], s['lr'], seed,
                   [bl.mask_callback(model0, masks)])  # fmt: skip
        model, manifest = _compress(model0, task, s, seed, sparsity=0.0, weight_bits=wb, activation_bits=ab,
                                    importance='weight_l1', schedule='oneshot', exclude=_producers(model0),
                                    epochs=0, qat_epochs=0)  # fmt: skip
        qmask = bl.zero_masks(model)
        kw = _loss_kwargs(task)
        keras.utils.set_random_seed(seed)
        model.compile(optimizer=keras.optimizers.Adam(s['lr']),
                      loss=kw.get('loss', keras.losses.SparseCategoricalCrossentropy()),
                      metrics=list(kw.get('metrics', ['accuracy'])))  # fmt: skip
        qat = s['qat_epochs']
        if qat == 'auto':
            from pruner.recovery import auto_epochs

            qat = auto_epochs(steps_per_epoch(task, s))
        model.fit(task.x_train, task.y_train, batch_size=s['batch'], epochs=qat, shuffle=True, verbose=0,
                  callbacks=[bl.mask_callback(model, qmask)])  # fmt: skip
        summary = bl.nonzero_footprint(model)
        rec['parameter_sparsity'] = fraction
    else:
        raise ValueError(f'unknown method {method!r}')
    if method != 'float':
        rec['val_metric'] = evaluate(model, task, 'val')
    rec['summary'] = summary
    return model, rec


def run_config(task, method, sparsity, wb, ab, seed, root: Path = RESULTS, tiny=False, overrides=None,
               name: str | None = None, save_model: bool = False) -> dict:  # fmt: skip
    """Run one configuration unless its JSON exists; return the record."""
    name = name or config_name(method, sparsity, wb, ab, seed)
    out = root / task.name / f'{name}.json'
    if out.exists():
        return json.loads(out.read_text())
    t0 = time.time()
    model, rec = run_method(task, method, sparsity, wb, ab, seed, root, tiny, overrides)
    metric = evaluate(model, task)
    s = settings(task.name, tiny)
    s.update(overrides or {})
    summary = rec.pop('summary')
    record = {
        'task': task.name,
        'config': name,
        'method': method,
        'sparsity': sparsity,
        'weight_bits': wb,
        'activation_bits': ab,
        'seed': seed,
        'metric_name': metric_name(task),
        'metric': metric,
        **rec,
        'parameters': summary['parameters'],
        'macs': summary['macs'],
        'bops': summary['bops'],
        'footprint_bits': summary['footprint_bits'],
        'footprint_weight_bits': summary['footprint_weight_bits'],
        'footprint_activation_bits': summary['footprint_activation_bits'],
        'performance_density_per_kbit': metric / (summary['footprint_bits'] / 1000.0),
        'settings': s,
        'tiny': bool(tiny or os.environ.get('BENCH_TINY') == '1'),
        'seconds': round(time.time() - t0, 2),
        'finished': time.strftime('%Y-%m-%d %H:%M:%S'),
    }
    for k in ('parameters_nonzero',):
        if k in summary:
            record[k] = summary[k]
    out.parent.mkdir(parents=True, exist_ok=True)
    if save_model and method != 'float':
        mdir = root / task.name / 'models'
        mdir.mkdir(parents=True, exist_ok=True)
        model.save(mdir / f'{name}.keras')
    tmp = out.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(record, indent=1, default=_default) + '\n')
    tmp.rename(out)
    return record


def _default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
