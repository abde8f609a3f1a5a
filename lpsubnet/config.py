"""The run configuration: one YAML file whose sections mirror the CLI commands.

``data`` and ``model`` feed the baseline, ``compress`` mirrors ``lpsubnet prune``,
``hls`` mirrors ``lpsubnet hls`` (hls4ml's option names), ``rtl`` mirrors
``lpsubnet rtl``, ``vendor`` mirrors ``lpsubnet synth``. Unknown keys and bad values
are errors that name the key and the allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hls_backend.core.project import DEFAULT_PART
from hls_backend.hls.convert import STRATEGIES


class Section(BaseModel):
    model_config = ConfigDict(extra='forbid', validate_assignment=True)


class DataConfig(Section):
    dataset: Literal['digits', 'npz'] = 'digits'
    path: str | None = Field(None, description='npz file with x_train, y_train and optionally x_test, y_test')
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    layout: Literal['NHWC', 'NCHW'] = Field(
        'NHWC',
        description='layout of the .npz arrays with channels: NHWC/NLC (channels last) or NCHW/NCL (channels first, '
        "PyTorch's); the run stores and feeds channels-last data either way",
    )

    @model_validator(mode='after')
    def _layout_is_for_npz(self):
        if self.dataset == 'digits' and self.layout != 'NHWC':
            raise ValueError(
                'data.layout describes .npz data (dataset: npz); the built-in digits are channels-last: leave it at NHWC'
            )
        return self


class ModelConfig(Section):
    path: str | None = Field(
        None,
        description='a float Keras .keras model, or a PyTorch model: a torch.export program (.pt2), a TorchScript '
        "file or 'file.py:callable' / 'package.module:callable' returning an nn.Module; none: lpsubnet's small CNN",
    )
    input_shape: list[int] | None = Field(
        None,
        description='for a PyTorch model: its input shape in the torch layout without the batch axis, e.g. [1, 8, 8] '
        "(none: the data's sample shape, channels first)",
    )
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-3, gt=0)

    @field_validator('input_shape')
    @classmethod
    def _shape(cls, value):
        if value is not None and (not value or any(s < 1 for s in value)):
            raise ValueError('must be a non-empty list of positive sizes, e.g. [1, 8, 8]')
        return value


class CompressConfig(Section):
    sparsity: float = Field(0.5, ge=0, lt=1)
    per_layer_sparsity: dict[str, float] | None = Field(
        None, description='sparsity of single producer layers by name, over sparsity (each in [0, 1))'
    )
    weight_bits: int = Field(8, ge=2, le=16)
    activation_bits: int = Field(8, ge=2, le=16)
    last_layer_bits: int | None = Field(None, ge=2, le=16)
    importance: str = Field('activation_l1', description='a measure registered in pruner.importance.REGISTRY')
    schedule: str = Field('layerwise', description='a schedule registered in pruner.schedule.REGISTRY')
    epochs: int | None = Field(
        None, ge=1, description='all epochs with masks: windows plus fine-tuning (none: windows + finetune_epochs)'
    )
    finetune_epochs: int | Literal['auto'] = Field(
        'auto',
        description="fine-tuning epochs once every mask is frozen; 'auto': sized from the data "
        '(pruner.recovery.auto_epochs)',
    )
    qat_epochs: int | Literal['auto'] = Field(
        'auto', description="quantization-aware fine-tuning epochs after pruning; 'auto' as for finetune_epochs"
    )
    learning_rate: float | None = Field(
        None, gt=0, description="base rate of every phase (none: the baseline's model.learning_rate)"
    )
    lr_schedule: Literal['cosine', 'constant'] = 'cosine'
    warmup: float = Field(0.0, ge=0, lt=1, description='fraction of each phase spent warming the rate up from 0')
    patience: int | Literal['auto'] | None = Field(
        'auto',
        description="early-stopping patience in epochs, best weights restored ('auto': a quarter of the "
        'phase; none: no early stopping)',
    )
    distill: bool = Field(False, description='distil from the float baseline (frozen) in every phase')
    distill_alpha: float = Field(0.5, ge=0, le=1)
    distill_temperature: float = Field(2.0, gt=0)
    round_to: int = Field(1, ge=1)
    exclude_first: bool = False
    range_refresh: float = Field(
        1.0,
        ge=0,
        description='epochs between integer-bit refreshes during the first quarter of QAT (0: never); then fixed',
    )
    joint: bool = Field(False, description='quantize first, then prune the QKeras model: one fit')

    @field_validator('importance', 'schedule')
    @classmethod
    def _registered(cls, value, info):
        # The choices are the pruner's registries (imported here, not at import time: it loads Keras).
        from pruner import options

        names = options.importance_names() if info.field_name == 'importance' else options.schedule_names()
        if value not in names:
            raise ValueError(f'unknown {info.field_name} {value!r}; choose one of {", ".join(names)}')
        return value

    @field_validator('finetune_epochs', 'qat_epochs', 'patience')
    @classmethod
    def _count(cls, value):
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 'auto' or a whole number >= 0")
        return value


class HLSConfig(Section):
    backend: Literal['Vitis', 'Vivado'] = 'Vitis'
    io_type: Literal['io_parallel', 'io_stream'] = 'io_parallel'
    reuse_factor: int = Field(1, ge=1)
    strategy: Literal[STRATEGIES] = 'Latency'  # type: ignore[valid-type]
    part: str = DEFAULT_PART
    clock_period: float = Field(5.0, gt=0)


class RTLConfig(Section):
    enabled: Literal['auto', True, False] = 'auto'
    hdl: Literal['verilog', 'vhdl'] = 'verilog'
    max_samples: int | None = Field(None, ge=1, description='test samples simulated clock by clock (none: all)')


class VendorConfig(Section):
    steps: str = 'csynth'

    @field_validator('steps')
    @classmethod
    def _known_steps(cls, value: str) -> str:
        allowed = ('csim', 'csynth', 'cosim', 'export')
        bad = [s for s in value.split(',') if s.strip() not in allowed]
        if bad:
            raise ValueError(f'unknown step(s) {bad}; allowed: {", ".join(allowed)}')
        return value


class RunConfig(Section):
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    compress: CompressConfig = CompressConfig()
    hls: HLSConfig = HLSConfig()
    rtl: RTLConfig = RTLConfig()
    vendor: VendorConfig = VendorConfig()


class ConfigError(ValueError):
    """A configuration problem; the message names the key and what is allowed."""

    exit_code = 2


def _describe(error: dict) -> str:
    key = '.'.join(str(part) for part in error['loc'])
    if error['type'] == 'extra_forbidden':
        section = RunConfig
        for part in error['loc'][:-1]:
            section = section.model_fields[part].annotation
        known = ', '.join(section.model_fields)
        return f'unknown config key {key!r}; known keys here: {known}'
    return f'config key {key!r}: {error["msg"]} (got {error.get("input")!r})'


def parse_config(data: dict | None) -> RunConfig:
    try:
        return RunConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError('; '.join(_describe(e) for e in exc.errors())) from None


def load_config(path: str | Path | None) -> RunConfig:
    if path is None:
        return RunConfig()
    path = Path(path)
    if not path.exists():
        raise ConfigError(f'config file {path} does not exist')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f'config file {path} is not valid YAML: {exc}') from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f'config file {path} must hold a mapping of sections (data, model, compress, hls, rtl, vendor)'
        )
    return parse_config(data)


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode='json'), sort_keys=False)
