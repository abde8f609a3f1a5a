"""When each channel group is ranked, masked and frozen: schedules as data.

A ``Schedule`` is a list of ``Window``s. A window owns some groups for ``length``
training steps from step ``start``: statistics are collected from ``start``; every
``refresh`` steps (and at the window's end) the masks of its groups are recomputed
from the statistics accumulated since ``start``; at ``start + length`` the masks are
frozen and statistics stop. ``ramp`` says which sparsity a mask update applies:
``'step'`` the full target at once, ``'cubic'`` the Zhu & Gupta (2017) ramp
s_t = s (1 - (1 - t/length)^3).

Kinds:
- ``layerwise`` (the method): one window per group, groups in input-to-output order;
  group l's window starts at ``start + l * interval`` and lasts ``interval`` steps, so
  group l is ranked on activations of a network whose groups < l are already masked.
  The first mask is applied after the first ``refresh`` steps of statistics, with
  the full target sparsity (no ramp).
- ``oneshot``: one window for all groups, refresh = length: every group is ranked on
  the dense network, then all are pruned together at the window's end.
- ``gradual``: one window for all groups with the cubic ramp, updated every
  ``refresh`` steps (used with weight_l1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .errors import PrunerError

# Schedule kind -> its window builder ``(groups, start, length, refresh) -> [Window]``, in steps.
REGISTRY: dict = {}


def schedule_kind(name: str):
    """Register a window builder under ``name`` (the CLI's and the run config's choices come from here)."""

    def register(builder):
        REGISTRY[name] = builder
        return builder

    return register


def validate_sparsity(value, what: str = 'sparsity') -> float:
    """Sparsity must be a number in [0, 1); raise ValueError naming the value otherwise."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise PrunerError(f'{what} must be a number in [0, 1), got {value!r}') from None
    if not (0.0 <= s < 1.0) or math.isnan(s):
        raise PrunerError(f'{what} must be in [0, 1), got {value!r}')
    return s


def kept_count(channels: int, sparsity: float, round_to: int = 1) -> int:
    """Channels kept: C - floor(s*C), at least 1; rounded up to a multiple of
    ``round_to`` (capped at C)."""
    s = validate_sparsity(sparsity)
    if int(round_to) < 1:
        raise PrunerError(f'round_to must be a positive integer, got {round_to!r}')
    removed = math.floor(s * channels + 1e-9)
    keep = max(1, channels - removed)
    if round_to > 1:
        keep = min(channels, int(math.ceil(keep / round_to)) * int(round_to))
    return keep


@dataclass(frozen=True)
class Window:
    groups: tuple[int, ...]
    start: int
    length: int
    refresh: int
    ramp: str = 'step'  # 'step' | 'cubic'

    @property
    def end(self) -> int:
        return self.start + self.length

    def update_steps(self) -> list[int]:
        """Steps (counted in completed training steps) at which masks are recomputed."""
        steps = list(range(self.start + self.refresh, self.end, self.refresh))
        return steps + [self.end]

    def sparsity_at(self, step: int, target: float) -> float:
        if self.ramp == 'step':
            return target
        t = min(max(step - self.start, 0), self.length) / self.length
        return target * (1.0 - (1.0 - t) ** 3)


@dataclass
class Schedule:
    kind: str
    windows: list[Window]
    steps_per_epoch: int | None = None
    group_names: list[str] = field(default_factory=list)

    @property
    def end(self) -> int:
        return max((w.end for w in self.windows), default=0)

    def to_dict(self) -> dict:
        return {
            'kind': self.kind,
            'steps_per_epoch': self.steps_per_epoch,
            'group_names': list(self.group_names),
            'windows': [{**asdict(w), 'groups': list(w.groups)} for w in self.windows],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Schedule:
        windows = [
            Window(tuple(w['groups']), int(w['start']), int(w['length']), int(w['refresh']), w.get('ramp', 'step'))
            for w in data['windows']
        ]
        return cls(data['kind'], windows, data.get('steps_per_epoch'), list(data.get('group_names', [])))

    def __str__(self) -> str:
        lines = [
            f'{self.kind} schedule, {len(self.windows)} window(s), ends at step {self.end}'
            + (f' ({self.end / self.steps_per_epoch:.3g} epochs)' if self.steps_per_epoch else '')
        ]
        for w in self.windows:
            names = [self.group_names[g] if g < len(self.group_names) else str(g) for g in w.groups]
            lines.append(f'  steps {w.start:>6}-{w.end:<6} refresh {w.refresh:<5} {w.ramp:<5} groups {names}')
        return '\n'.join(lines)


def to_steps(value, unit: str, steps_per_epoch: int | None, what: str) -> int:
    if unit == 'steps':
        return int(round(value))
    if unit == 'epochs':
        if not steps_per_epoch:
            raise PrunerError(f'{what} given in epochs needs steps_per_epoch')
        return int(round(float(value) * steps_per_epoch))
    raise PrunerError(f"unit must be 'steps' or 'epochs', got {unit!r}")


def make_schedule(
    kind: str,
    groups: list[int],
    start: float = 0,
    interval: float = 100,
    refresh: float = 10,
    unit: str = 'steps',
    steps_per_epoch: int | None = None,
    group_names: list[str] | None = None,
) -> Schedule:
    """Build a schedule over ``groups`` (prunable group indices, input to output).

    ``start``, ``interval`` (window length) and ``refresh`` are in ``unit`` ('steps'
    or 'epochs'; epochs need ``steps_per_epoch``).
    """
    builder = get(kind)
    s0 = to_steps(start, unit, steps_per_epoch, 'start')
    length = max(1, to_steps(interval, unit, steps_per_epoch, 'interval'))
    every = max(1, min(length, to_steps(refresh, unit, steps_per_epoch, 'refresh')))
    if s0 < 0:
        raise PrunerError(f'start must be >= 0, got {start!r}')
    windows = builder(list(groups), s0, length, every)
    return Schedule(kind, windows, steps_per_epoch, list(group_names or []))


def get(kind: str):
    """The window builder of a schedule kind; errors list the registered kinds."""
    if kind not in REGISTRY:
        raise PrunerError(f'unknown schedule {kind!r}; choose one of {list(REGISTRY)}')
    return REGISTRY[kind]


@schedule_kind('layerwise')
def _layerwise(groups, start, length, refresh):
    """One window per group, input to output, each starting where the previous ends."""
    return [Window((g,), start + i * length, length, refresh) for i, g in enumerate(groups)]


@schedule_kind('oneshot')
def _oneshot(groups, start, length, refresh):
    """Every group ranked once on the dense network, at the window's end."""
    return [Window(tuple(groups), start, length, length)] if groups else []


@schedule_kind('gradual')
def _gradual(groups, start, length, refresh):
    """Every group together, the cubic ramp of Zhu and Gupta (2017)."""
    return [Window(tuple(groups), start, length, refresh, 'cubic')] if groups else []
