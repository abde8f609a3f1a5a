"""``CompressOptions``: every setting of ``compress``, each declared once.

A field carries its default, its type (with bounds or choices), the help text and
which user-facing surfaces show it (:func:`declared_settings.setting`). ``lpsubnet prune``'s options,
the ``compress`` section of the run configuration (hence the sweep's searchable
``compress.*`` keys) and the settings echoed in the manifest are all derived from
these fields (lpsubnet/settings.py); nothing else declares a compress setting. The
importance and schedule choices are the names registered in
``pruner.importance.REGISTRY`` and ``pruner.schedule.REGISTRY``.

This module imports neither Keras nor TensorFlow, so the command line can build its
options from it without loading them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from declared_settings import declared, setting, validate

from . import importance as importance_lib
from . import schedule as schedule_lib
from .errors import PrunerError
from .quantize import DEFAULT_STEP_CRITERION, StepRule
from .schedule import validate_sparsity


def importance_names() -> tuple[str, ...]:
    return tuple(importance_lib.REGISTRY)


def schedule_names() -> tuple[str, ...]:
    return tuple(schedule_lib.REGISTRY)


# Registries a setting's value is chosen from (looked up when asked: a measure registered
# later is a choice too).
CHOICES = {'importance': importance_names, 'schedule': schedule_names}

# What is pruned besides whole channels (pruner.weight_masks implements the last two).
GRANULARITIES = ('channel', 'weight', 'kofn')

Auto = Literal['auto']
# A whole number >= 0, in a union with 'auto' or None (bounds inside a union go on its member).
Count = Annotated[int, Field(ge=0)]
Bits = Annotated[int, Field(ge=2, le=16)]
Rate = Annotated[float, Field(gt=0)]


@dataclass
class CompressOptions:
    """Settings of :func:`pruner.compress` (each field's description says what it does)."""

    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)

    # Pruning
    sparsity: Annotated[float, setting('Fraction of channels removed per layer, in [0, 1).', ge=0, lt=1)] = 0.5
    per_layer_sparsity: Annotated[
        dict[str, float] | None,
        setting(
            'Sparsity of single producer layers by name, over sparsity (each in [0, 1); on the command line '
            'NAME=S, repeated).',
            flag='--layer-sparsity',
        ),
    ] = None
    importance: Annotated[
        object, setting('Channel importance: a measure registered in pruner.importance.', choices='importance')
    ] = 'activation_l1'
    schedule: Annotated[
        str, setting('When each layer is ranked and frozen: a schedule in pruner.schedule.', choices='schedule')
    ] = 'layerwise'
    start: Annotated[float, setting("Start of the first layer's pruning window (in unit).", ge=0)] = 0.0
    interval: Annotated[float, setting('Length of each pruning window (in unit).', gt=0)] = 1.0
    refresh: Annotated[float, setting('Masks recomputed this often inside a window (in unit).', gt=0)] = 0.25
    unit: Annotated[Literal['epochs', 'steps'], setting('Unit of start, interval, refresh and the range refresh.')] = (
        'epochs'
    )
    round_to: Annotated[int, setting('Kept channel counts are multiples of this.', ge=1)] = 1
    exclude_first: Annotated[bool, setting('Do not prune the first layer.')] = False
    exclude: Annotated[tuple[str, ...], setting('Layers not to prune, by name (on the command line: repeated).')] = ()
    granularity: Annotated[
        Literal[GRANULARITIES],
        setting(
            "What is pruned besides whole channels: 'channel' nothing more; 'weight' the weight_sparsity fraction "
            "of each remaining kernel's weights, lowest |w| times mean |input| first, ranked layer by layer on the "
            "already-pruned network (pruner.weight_masks); 'kofn' as 'weight' but the same number per output "
            'neuron. Zero weights cost no logic in fully unrolled designs (hls4ml Latency, the RTL route).'
        ),
    ] = 'channel'
    weight_sparsity: Annotated[
        float,
        setting(
            "Fraction of the weights of each kept layer set to 0 (granularity 'weight' or 'kofn'), in [0, 1). "
            'Under a LUT budget (max_lut) the starting point: the allocation raises a '
            "layer's sparsity (to 1/4, 1/2, 5/8, 3/4, 13/16, 7/8, 15/16) where that costs less validation loss "
            'per unit saved than a bit does.',
            ge=0,
            lt=1,
        ),
    ] = 0.0
    weight_ramp: Annotated[
        float,
        setting(
            'Fraction of QAT over which the weight sparsity grows from 0 to weight_sparsity (cubic schedule, '
            'ranked anew 8 times on the quantized network); 0: all at once before QAT.',
            ge=0,
            le=1,
        ),
    ] = 0.5
    # Quantization
    weight_bits: Annotated[int, setting('Weight bits.', flag='--wbits', ge=2, le=16)] = 8
    activation_bits: Annotated[int, setting('Activation bits.', flag='--abits', ge=2, le=16)] = 8
    bias_bits: Annotated[Bits | None, setting('Bias bits (default: the larger of the weight and activation bits).')] = (
        None
    )
    last_layer_bits: Annotated[
        Bits | None, setting('Weight and activation bits of the last weighted layer (default: as the others).')
    ] = None
    layer_bits: Annotated[
        dict[str, dict[str, int]] | None,
        setting(
            "Bit overrides per layer, e.g. {'logits': {'weight_bits': 8, 'activation_bits': 8}} "
            "('__input__' for the input quantizer's activation_bits).",
            cli=False,
        ),
    ] = None
    step_criterion: Annotated[
        Literal['max', 'mse'],
        setting(
            "How each quantizer's power-of-two step is chosen, at calibration and at every range refresh: 'max' "
            "covers the maximum (nothing saturates); 'mse' gives the least quantization error on the weights and "
            'on the calibration activations (a few outliers saturate, the bulk gets a finer step).'
        ),
    ] = DEFAULT_STEP_CRITERION
    percentile: Annotated[
        Annotated[float, Field(gt=0, le=100)] | None,
        setting("With step_criterion 'max': integer bits from this percentile of |values| instead of the maximum."),
    ] = None
    max_lut: Annotated[
        Annotated[int, Field(ge=1)] | None,
        setting(
            'LUT budget: lower the weight and activation bits layer by layer (greedy: least loss per LUT saved) '
            "until da4ml's estimate of the RTL design fits, then train quantized (lpsubnet passes da4ml's cost "
            'model; from Python give compress(cost=...)).'
        ),
    ] = None
    min_activation_bits: Annotated[
        int,
        setting(
            'Under a budget (max_lut, max_footprint_kbit): the fewest bits the allocation gives an activation '
            'or the input while anything else can still be lowered (weights go down to 2; then, if the budget '
            'needs it, activations too, and the manifest says after which step). Judged before retraining, a '
            'lower activation width looks cheap and saves much logic, yet QAT does not recover it (letter, '
            '50 % channels: 4 beat 2 by 11.7-16.5 points at 2k-6k LUT, lost 5.4 at 10k, tied at 14k and 20k).',
            ge=2,
            le=16,
        ),
    ] = 4
    budget_fit: Annotated[
        Literal['both', 'trim', 'retrain'],
        setting(
            'Under max_lut, when the trained design comes out over the budget (QAT moves weights): '
            "'trim' zeros more of its weights (granularity 'weight' or 'kofn': the same share of every layer's "
            'remaining ones, the least that fits by the cost model; pruner.trim) and fine-tunes it briefly; '
            "'retrain' allocates a smaller design and trains it from the float start; 'both' keeps the trimmed "
            'design as a candidate, retrains too, and exports the better on validation (letter 14k, 300 QAT '
            'epochs: trimmed 89.4 / 81.5 %, retrained 83.5 / 83.1 % test, seeds 0 / 1). Channel granularity '
            'and footprint budgets always retrain.'
        ),
    ] = 'both'
    max_footprint_kbit: Annotated[
        Annotated[float, Field(gt=0)] | None,
        setting('Footprint budget in kbit (weights and activations), met the same way as max_lut.'),
    ] = None
    calibration_samples: Annotated[int, setting('Training samples the activation ranges are calibrated on.', ge=1)] = (
        2048
    )
    range_refresh: Annotated[
        Annotated[float, Field(ge=0)] | None,
        setting(
            'Epochs (in unit) between refreshes of the integer bits from running statistics during QAT '
            '(0 or none: never); after range_freeze they stay fixed.'
        ),
    ] = 1.0
    range_freeze: Annotated[
        Annotated[float, Field(ge=0)] | None,
        setting(
            'When the integer bits stop moving, counted from the start of QAT (in unit; default: the first '
            'quarter of QAT, at least all but its last epoch).'
        ),
    ] = None
    oscillation_dampening: Annotated[
        float,
        setting(
            'QAT oscillation dampening: the loss term S x sum((w - q(w))^2) over the quantized kernel weights, '
            'S rising from 0 on a half cosine once the masks and integer bits are final (pruner.oscillation; '
            'Nagel et al. 2022): at 2-4 bits weights otherwise flip across rounding thresholds to the last '
            'step; 0: off.',
            ge=0,
        ),
    ] = 0.3
    joint: Annotated[bool, setting('Quantize first and prune the QKeras model: pruning and QAT in one fit.')] = False
    # Training and recovery
    epochs: Annotated[
        Annotated[int, Field(ge=1)] | None,
        setting('All epochs with masks: the schedule plus fine-tuning (default: the schedule plus finetune_epochs).'),
    ] = None
    finetune_epochs: Annotated[
        Count | Auto,
        setting(
            "Fine-tuning epochs once every mask is frozen; 'auto': sized from the data (pruner.recovery.auto_epochs: "
            'a fixed number of optimizer steps within an epoch range).'
        ),
    ] = 'auto'
    qat_epochs: Annotated[
        Count | Auto,
        setting(
            "Quantization-aware fine-tuning epochs; 'auto' as for finetune_epochs, and under a LUT or footprint "
            'budget about 33,000 steps (at most 400 epochs): the low-bit designs a budget gives keep improving '
            'that long (letter at 20k LUT: 300 epochs instead of 55 gave 3.8-4.6 points; '
            'pruner.recovery.AUTO_BUDGET_QAT_STEPS). Give a number for a shorter run.'
        ),
    ] = 'auto'
    batch_size: Annotated[
        int, setting('Batch size of every phase (the run uses its baseline model.batch_size).', ge=1, config=False)
    ] = 32
    loss: Annotated[
        object, setting('A Keras loss (default: sparse categorical cross-entropy).', cli=False, config=False)
    ] = None
    metrics: Annotated[tuple, setting('Keras metrics; the first is the task metric.', cli=False, config=False)] = (
        'accuracy',
    )
    learning_rate: Annotated[
        Rate | None,
        setting(
            'Base rate of every phase (default: the rate of the optimizer saved with the model; the run: its '
            "baseline's model.learning_rate; else 0.001)."
        ),
    ] = None
    qat_learning_rate: Annotated[Rate | None, setting('Base rate of QAT (default: learning_rate).')] = None
    lr_schedule: Annotated[
        Literal['cosine', 'constant'],
        setting('Each phase starts at its base rate; cosine decays it to 0 over the phase.'),
    ] = 'cosine'
    warmup: Annotated[float, setting('Fraction of each phase spent warming the rate up from 0.', ge=0, lt=1)] = 0.0
    patience: Annotated[
        Count | Auto | None,
        setting(
            "Early-stopping patience in epochs on the validation split, best weights restored ('auto': a quarter "
            'of the phase; 0 or none: no early stopping).'
        ),
    ] = 'auto'
    distill: Annotated[bool, setting('Distil from the float model (frozen) in every phase.')] = False
    distill_alpha: Annotated[float, setting('Weight of the distillation loss.', ge=0, le=1)] = 0.5
    distill_temperature: Annotated[float, setting('Temperature of the soft targets.', gt=0)] = 2.0
    seed: Annotated[int, setting('Seed of every random choice (the run: its top-level seed).', config=False)] = 0
    verbose: Annotated[int, setting('Keras progress output (0, 1, 2).', cli=False, config=False, ge=0, le=2)] = 0
    # Set by ``validated``: the importance measure for this seed.
    measure: object = field(default=None, repr=False, compare=False)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(declared(cls))

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

    @property
    def step_rule(self) -> StepRule:
        """How every quantizer's step is chosen (``step_criterion``, ``percentile``)."""
        return StepRule(self.step_criterion, self.percentile)

    def validated(self) -> CompressOptions:
        """A checked copy: types and bounds as declared, sparsities as floats, the importance
        measure resolved; errors name the setting."""
        checked = validate(self, PrunerError, 'compress setting', CHOICES)
        per_layer = {
            str(k): validate_sparsity(v, f"sparsity of layer '{k}'")
            for k, v in (checked.per_layer_sparsity or {}).items()
        }
        schedule_lib.get(checked.schedule)
        if checked.max_lut is not None and checked.max_footprint_kbit is not None:
            raise PrunerError('compress settings max_lut and max_footprint_kbit: give one budget, not both')
        if checked.joint and (checked.max_lut is not None or checked.max_footprint_kbit is not None):
            raise PrunerError(
                'compress setting joint=True: a budget (max_lut, max_footprint_kbit) chooses the bits after pruning; '
                'joint mode quantizes before it'
            )
        if checked.granularity == 'channel' and checked.weight_sparsity > 0:
            # (the other way round is allowed: a sweep may try weight_sparsity 0 beside the others)
            raise PrunerError(
                f"compress settings granularity='channel', weight_sparsity={checked.weight_sparsity}: "
                "weight_sparsity > 0 needs granularity 'weight' or 'kofn'"
            )
        if checked.joint and checked.granularity != 'channel':
            raise PrunerError(
                f'compress setting joint=True: weight sparsity (granularity={checked.granularity!r}) is ranked on '
                'the channel-reduced model after pruning; joint mode has no such step'
            )
        if checked.percentile is not None and checked.step_criterion != 'max':
            raise PrunerError(
                f"compress setting percentile={checked.percentile}: sets the range of step_criterion 'max', "
                f'not of {checked.step_criterion!r}; leave it unset'
            )
        measure = importance_lib.get(checked.importance, seed=checked.seed)
        return dataclasses.replace(
            checked,
            sparsity=validate_sparsity(checked.sparsity),
            per_layer_sparsity=per_layer,
            exclude=tuple(checked.exclude),
            measure=measure,
        )

    def echo(self) -> dict:
        """The settings as given, for the manifest: every declared setting a file can hold
        (the importance measure by its repr; loss and metrics objects left out)."""
        values = {}
        for name in declared(type(self)):
            value = getattr(self, name)
            if name == 'importance':
                value = repr(self.measure) if self.measure is not None else value
            elif name in ('loss', 'metrics'):
                continue
            elif isinstance(value, tuple):
                value = list(value)
            values[name] = value
        return values
