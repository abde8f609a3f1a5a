"""Channel importance: one score per channel of a group, higher = keep.

Interface: ``measure.scores(producers, statistics) -> 1-D numpy array``, where
``producers`` is a list of (layer, kind) of the group's producer layers and
``statistics`` the group's recorded activation statistics (``l1``, ``l0``,
``max_abs`` per channel, ``steps`` and ``group_index``). New measures plug in by
subclassing ``Importance`` with a ``name``: the subclass registers itself in
``REGISTRY`` (the CLI's and the run config's choices come from there); schedules do
not change.
"""

from __future__ import annotations

import numpy as np

from .errors import PrunerError

REGISTRY: dict[str, type[Importance]] = {}


class Importance:
    name = 'base'
    needs_activations = False  # True: the schedule must collect activation statistics

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if 'name' in cls.__dict__:
            REGISTRY[cls.name] = cls

    @classmethod
    def from_seed(cls, seed: int) -> Importance:
        """The measure for a run with ``seed`` (only random measures use it)."""
        return cls()

    def scores(self, producers, statistics: dict) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self):
        return f'{self.__class__.__name__}()'


def _require_steps(statistics: dict, name: str) -> None:
    if statistics.get('steps', 0) <= 0:
        raise RuntimeError(
            f"importance '{name}' of group {statistics.get('group_index')} has no recorded activations: "
            'its window saw no training step (window or refresh too short?)'
        )


class ActivationL1(Importance):
    """Running mean over steps of mean(|a_c|) over batch and spatial positions, on the
    unmasked activation (the method's measure; nonparametric)."""

    name = 'activation_l1'
    needs_activations = True

    def scores(self, producers, statistics):
        _require_steps(statistics, self.name)
        return np.asarray(statistics['l1'], dtype=np.float64)


class ActivationL0(Importance):
    """Fraction of non-zero activations per channel (1 - APoZ, Hu et al. 2016)."""

    name = 'activation_l0'
    needs_activations = True

    def scores(self, producers, statistics):
        _require_steps(statistics, self.name)
        return np.asarray(statistics['l0'], dtype=np.float64)


class WeightL1(Importance):
    """L1 norm of each output filter (Li et al. 2017); summed over tied producers."""

    name = 'weight_l1'

    def scores(self, producers, statistics):
        total = None
        for layer, kind in producers:
            norms = kind.filter_l1(layer).astype(np.float64)
            total = norms if total is None else total + norms
        return total


class Random(Importance):
    """Uniform random scores, reproducible from ``seed`` and the group index."""

    name = 'random'

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    @classmethod
    def from_seed(cls, seed: int) -> Random:
        return cls(seed=seed)

    def scores(self, producers, statistics):
        layer, _ = producers[0]
        channels = int(layer.output.shape[-1])
        rng = np.random.default_rng([self.seed, int(statistics.get('group_index', 0))])
        return rng.random(channels)

    def __repr__(self):
        return f'Random(seed={self.seed})'


def get(measure, seed: int = 0) -> Importance:
    """An importance measure by name (or pass an ``Importance`` instance through)."""
    if isinstance(measure, Importance):
        return measure
    if measure not in REGISTRY:
        raise PrunerError(f'unknown importance {measure!r}; choose one of {sorted(REGISTRY)}')
    return REGISTRY[measure].from_seed(seed)


def rank(scores) -> np.ndarray:
    """Channel indices from most to least important; ties broken by lower index."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.lexsort((np.arange(len(scores)), -scores))
