"""The motivation experiment: does a layer's channel ranking (activation L1) depend on
how sparse the previous layer is?

For a trained float baseline (digits CNN, letter MLP; seed 0), for every pair of
consecutive prunable layers (prev, target): prune ``prev`` at 0, 25, 50, 75% by its own
activation L1 (measured on the dense network), then rank ``target``'s channels by
activation L1 on the training set. Compared with the ranking at 0%: Kendall's tau and
the Levenshtein distance of the rank sequences. Two variants: right after masking
('no fine-tuning') and after 1 epoch of training with the mask ('1 epoch fine-tuning';
its 0% reference is also fine-tuned 1 epoch with the same seed, so every ranking is
compared with a network trained for the same steps on the same batches). tau at 0% is
1 by construction (below 1 only where dead channels tie at zero activation).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

PREV_SPARSITIES = (0.0, 0.25, 0.5, 0.75)
TASKS = ('digits', 'letter')


def _scores(masked, group: int, x, batch: int = 512) -> np.ndarray:
    masked.pause_collecting()
    masked.reset_statistics(group)
    masked.set_collecting(group, True)
    masked.model.predict(x, batch_size=batch, verbose=0)
    masked.set_collecting(group, False)
    return np.asarray(masked.statistics(group)['l1'], dtype=np.float64)


def motivation_for(task, base, seed: int = 0, finetune_epochs: int = 1, batch: int = 64, lr: float = 1e-3) -> dict:
    import keras

    import pruner

    x = task.x_train
    out = {'task': task.name, 'prev_sparsities': list(PREV_SPARSITIES), 'pairs': []}
    dense = pruner.MaskedModel(base)
    prunable = [g.index for g in dense.table.prunable]
    names = {g.index: g.name for g in dense.table.groups}
    for prev, target in zip(prunable[:-1], prunable[1:]):
        prev_scores = _scores(dense, prev, x)
        entry = {'prev': names[prev], 'target': names[target], 'channels': int(dense.table.groups[target].channels),
                 'variants': {}}  # fmt: skip
        for variant, epochs in (('no fine-tuning', 0), (f'{finetune_epochs} epoch fine-tuning', finetune_epochs)):
            ranks, scores = {}, {}
            for p in PREV_SPARSITIES:
                masked = pruner.MaskedModel(base) if epochs else dense
                keep = np.sort(pruner.rank(prev_scores)[: pruner.kept_count(len(prev_scores), p)])
                masked.set_mask(prev, keep)
                if epochs:
                    keras.utils.set_random_seed(seed)
                    masked.model.compile(optimizer=keras.optimizers.Adam(lr), loss='sparse_categorical_crossentropy')
                    masked.model.fit(x, task.y_train, batch_size=batch, epochs=epochs, shuffle=True, verbose=0)
                s = _scores(masked, target, x)
                scores[p] = s
                ranks[p] = pruner.rank(s)
                if not epochs:
                    masked.set_mask(prev, np.arange(len(prev_scores)))
            entry['variants'][variant] = {
                str(p): {
                    'kendall_tau': pruner.kendall_tau(scores[0.0], scores[p]),
                    'levenshtein': int(pruner.levenshtein(ranks[0.0], ranks[p])),
                    'top_half_overlap': float(len(set(ranks[0.0][: len(s) // 2]) & set(ranks[p][: len(s) // 2])) / max(1, len(s) // 2)),
                    'ranking': ranks[p].tolist(),
                }
                for p in PREV_SPARSITIES
            }  # fmt: skip
        out['pairs'].append(entry)
    return out


def run_motivation(root: Path, log, tiny: bool = False) -> None:
    from . import data as data_lib
    from . import experiments as E

    for name in TASKS:
        out = root / 'motivation' / f'{name}.json'
        if out.exists():
            continue
        try:
            task = data_lib.load(name, tiny=tiny)
        except data_lib.DatasetMissing as exc:
            log(f'[motivation {name}] SKIPPED: {exc}')
            continue
        t0 = time.time()
        base, _ = E.baseline(task, 0, root, tiny)
        s = E.settings(name, tiny)
        result = motivation_for(task, base, 0, 1, s['batch'], s['lr'] / 3)
        result['seconds'] = round(time.time() - t0, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + '\n')
        for pair in result['pairs']:
            for variant, v in pair['variants'].items():
                taus = ', '.join(f'{float(p):.0%}: {v[p]["kendall_tau"]:.2f}' for p in v)
                log(f'[motivation {name}] {pair["target"]} | prev {pair["prev"]} pruned ({variant}) tau {taus}')
