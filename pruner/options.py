"""``CompressOptions``: every setting of ``compress`` in one dataclass.

The CLI (``lpsubnet prune``), the run configuration (``lpsubnet run``) and the
benchmark build it through ``CompressOptions.from_settings`` (one place for the
user-facing conventions); the importance and schedule choices are the names
registered in ``pruner.importance.REGISTRY`` and ``pruner.schedule.REGISTRY``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import importance as importance_lib
from . import schedule as schedule_lib
from .errors import PrunerError
from .schedule import validate_sparsity


@dataclass
class CompressOptions:
    """Settings of ``compress``; see its docstring for what each one does."""

    # Pruning
    sparsity: float = 0.5
    per_layer_sparsity: dict | None = None
    importance: object = 'activation_l1'  # a name in importance.REGISTRY, or an Importance
    schedule: str = 'layerwise'  # a name in schedule.REGISTRY
    start: float = 0.0
    interval: float = 1.0
    refresh: float = 0.25
    unit: str = 'epochs'
    round_to: int = 1
    exclude_first: bool = False
    exclude: tuple[str, ...] = ()
    # Quantization
    weight_bits: int = 4
    activation_bits: int = 8
    bias_bits: int | None = None
    layer_bits: dict | None = None
    percentile: float | None = None
    calibration_samples: int = 2048
    range_refresh: float | None = 1.0
    range_freeze: float | None = None
    joint: bool = False
    # Training and recovery
    epochs: int | None = None
    finetune_epochs: int | str = 'auto'
    qat_epochs: int | str = 'auto'
    batch_size: int = 32
    loss: object = None
    metrics: tuple = ('accuracy',)
    learning_rate: float | None = None
    qat_learning_rate: float | None = None
    lr_schedule: str = 'cosine'
    warmup: float = 0.0
    patience: int | str | None = 'auto'
    distill: bool = False
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    seed: int = 0
    verbose: int = 0
    # Set by ``validated``: the importance measure for this seed.
    measure: object = field(default=None, repr=False, compare=False)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != 'measure')

    @classmethod
    def build(cls, options: CompressOptions | None = None, **settings) -> CompressOptions:
        """``options`` (default: all defaults) with ``settings`` replaced, validated."""
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise PrunerError(f'unknown compress setting(s) {unknown}; known: {", ".join(cls.names())}')
        base = options if options is not None else cls()
        return dataclasses.replace(base, **settings).validated()

    @classmethod
    def from_settings(cls, settings: Mapping, **fixed) -> CompressOptions:
        """Options from user-facing settings (CLI flags, run-config keys, bench settings),
        keyed by field name. Their conventions: a patience of 0 means no early stopping and
        a range refresh of 0 means never (both None here). ``fixed`` adds or overrides keys."""
        values = {**settings, **fixed}
        if values.get('patience') == 0:
            values['patience'] = None
        if values.get('range_refresh') == 0:
            values['range_refresh'] = None
        return cls.build(**values)

    def validated(self) -> CompressOptions:
        """A checked copy: sparsities as floats, the importance measure resolved; errors name the setting."""
        sparsity = validate_sparsity(self.sparsity)
        per_layer = {
            str(k): validate_sparsity(v, f"sparsity of layer '{k}'") for k, v in (self.per_layer_sparsity or {}).items()
        }
        schedule_lib.get(self.schedule)
        measure = importance_lib.get(self.importance, seed=self.seed)
        for name in ('weight_bits', 'activation_bits'):
            if int(getattr(self, name)) < 2:
                raise PrunerError(f'{name} must be at least 2, got {getattr(self, name)!r}')
        for name in ('range_refresh', 'range_freeze'):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value >= 0):
                raise PrunerError(f'{name} must be a number >= 0 (in {self.unit}) or None, got {value!r}')
        batch = self.batch_size
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise PrunerError(f'batch_size must be a whole number >= 1, got {batch!r}')
        epochs = self.epochs
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0):
            raise PrunerError(f'epochs must be a whole number >= 0 or None, got {epochs!r}')
        return dataclasses.replace(
            self, sparsity=sparsity, per_layer_sparsity=per_layer, exclude=tuple(self.exclude), measure=measure
        )


def importance_names() -> tuple[str, ...]:
    return tuple(importance_lib.REGISTRY)


def schedule_names() -> tuple[str, ...]:
    return tuple(schedule_lib.REGISTRY)
