"""A Keras callback that drives a pruning schedule during ``model.fit``.

Weights keep training during and after the windows: the callback only switches
statistics collection on and off and rewrites the 0/1 masks between batches.
Validation batches inside fit are never counted in the statistics.
"""

from __future__ import annotations

import keras
import numpy as np

from . import importance as importance_lib
from .masking import MaskedModel
from .schedule import Schedule, kept_count


class ChannelPruningCallback(keras.callbacks.Callback):
    """Apply ``schedule`` to ``masked`` (a MaskedModel whose ``.model`` is being fit).

    ``sparsity``: one target for every group, or a dict group index -> target.
    ``history`` lists every mask update: (step, group, kept indices).
    ``scores[g]`` holds the last importance scores of group g.
    """

    def __init__(
        self,
        masked: MaskedModel,
        schedule: Schedule,
        importance='activation_l1',
        sparsity=0.5,
        round_to: int = 1,
        seed: int = 0,
        verbose: bool = False,
    ):
        super().__init__()
        self.masked = masked
        self.schedule = schedule
        self.importance = importance_lib.get(importance, seed=seed)
        groups = [g for w in schedule.windows for g in w.groups]
        self.sparsity = dict(sparsity) if isinstance(sparsity, dict) else {g: float(sparsity) for g in groups}
        self.round_to = int(round_to)
        self.verbose = verbose
        self.step = 0
        self.history: list[tuple[int, int, list[int]]] = []
        self.scores: dict[int, np.ndarray] = {}
        self.frozen: set[int] = set()
        self._open: list = []
        self._paused: list[str] = []

    # --- schedule ------------------------------------------------------------
    def _begin(self, window) -> None:
        for g in window.groups:
            self.masked.reset_statistics(g)
            if self.importance.needs_activations:
                self.masked.set_collecting(g, True)
        self._open.append(window)

    def _update(self, window, step: int) -> None:
        for g in window.groups:
            group = self.masked.table.groups[g]
            stats = self.masked.statistics(g)
            scores = np.asarray(self.importance.scores(self.masked.producers(g), stats), dtype=np.float64)
            if window.ramp == 'cubic':  # gradual: a pruned channel stays pruned
                scores = np.where(self.masked.masks[g] > 0, scores, -np.inf)
            keep_n = kept_count(group.channels, window.sparsity_at(step, self.sparsity[g]), self.round_to)
            keep = np.sort(importance_lib.rank(scores)[:keep_n])
            self.masked.set_mask(g, keep)
            self.scores[g] = scores
            self.history.append((step, g, keep.tolist()))
            if self.verbose:
                print(f'[pruner] step {step}: group {g} ({group.name}) keeps {keep_n}/{group.channels}')

    def _close(self, window) -> None:
        for g in window.groups:
            self.masked.set_collecting(g, False)
            self.frozen.add(g)
        self._open.remove(window)

    def on_train_batch_begin(self, batch, logs=None):
        for window in self.schedule.windows:
            if window.start == self.step and window not in self._open and not set(window.groups) <= self.frozen:
                self._begin(window)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        for window in list(self._open):
            if self.step in window.update_steps():
                self._update(window, self.step)
            if self.step >= window.end:
                self._close(window)

    def on_test_begin(self, logs=None):
        self._paused = self.masked.pause_collecting()

    def on_test_end(self, logs=None):
        self.masked.resume_collecting(self._paused)
        self._paused = []

    def on_train_end(self, logs=None):
        """Windows still open when fit ends are finalized with the statistics they have."""
        for window in list(self._open):
            self._update(window, window.end)
            self._close(window)

    @property
    def complete(self) -> bool:
        """True when every window of the schedule has been frozen."""
        return all(set(w.groups) <= self.frozen for w in self.schedule.windows)
