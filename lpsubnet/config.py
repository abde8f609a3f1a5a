"""The run configuration: one YAML file whose sections mirror the CLI commands.

``data`` and ``model`` feed the baseline, ``compress`` mirrors ``lpsubnet prune``,
``hls`` mirrors ``lpsubnet hls`` (hls4ml's option names), ``rtl`` mirrors
``lpsubnet rtl``, ``synth`` mirrors ``lpsubnet synth --tool yosys``, ``vendor`` mirrors
``lpsubnet synth --tool vendor``. Unknown keys and bad values
are errors that name the key and the allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hls_backend.hls.options import HLSOptions
from hls_backend.rtl.options import SYNTH_TOOLS, OpenSynthOptions, RTLOptions
from pruner.options import CHOICES, CompressOptions

from .settings import config_section

# The run builds the RTL for the hls section's target: one part, clock and top name.
RTL_SHARED_WITH_HLS = ('project_name', 'part', 'clock_period')


class Section(BaseModel):
    model_config = ConfigDict(extra='forbid', validate_assignment=True)


class DataConfig(Section):
    dataset: Literal['digits', 'npz'] = 'digits'
    path: str | None = Field(
        None,
        description='npz file with x_train, y_train and optionally x_val, y_val (the validation split) and '
        'x_test, y_test (the test split); what it lacks is drawn from its training data',
    )
    test_fraction: float = Field(0.2, gt=0, lt=1, description='share of the data drawn as test split (no x_test)')
    val_fraction: float = Field(
        0.15, gt=0, lt=1, description='share of the training data drawn as validation split (no x_val)'
    )
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
        description='a float Keras model (.keras, a Keras 2 model.json with its weights beside it, or a '
        'whole-model .h5), or a PyTorch model: a torch.export program (.pt2), a TorchScript '
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


# Every compress setting the run configuration shows, as pruner.CompressOptions declares it.
CompressConfig = config_section(CompressOptions, 'CompressConfig', Section, CHOICES)


# hls4ml's options the run configuration shows, as hls_backend.HLSOptions declares them.
HLSConfig = config_section(HLSOptions, 'HLSConfig', Section)


class RTLConfig(config_section(RTLOptions, 'RTLOptionsConfig', Section, exclude=RTL_SHARED_WITH_HLS)):
    """The RTL route's settings (hls_backend.RTLOptions; its target is the hls section's),
    and when the run builds it."""

    enabled: Literal['auto', True, False] = 'auto'
    max_samples: int | None = Field(None, ge=1, description='test samples simulated clock by clock (none: all)')


class SynthConfig(config_section(OpenSynthOptions, 'SynthOptionsConfig', Section)):
    """Open synthesis of the run's RTL design (hls_backend.OpenSynthOptions, as `lpsubnet
    synth --tool yosys`), and when the run does it."""

    tool: Literal[SYNTH_TOOLS] = 'yosys'  # type: ignore[valid-type]
    enabled: Literal['auto', True, False] = Field(
        'auto',
        description='auto: when the RTL was built and da4ml estimates at most '
        'hls_backend.rtl.open_synth.AUTO_MAX_LUT LUTs (Yosys then takes a few minutes at most)',
    )


class VendorConfig(Section):
    steps: str = 'csynth'

    @field_validator('steps')
    @classmethod
    def _known_steps(cls, value: str) -> str:
        from hls_backend.hls.vendor import STEPS

        bad = [s for s in value.split(',') if s.strip() not in STEPS]
        if bad:
            raise ValueError(f'unknown step(s) {bad}; allowed: {", ".join(STEPS)}')
        return value


class RunConfig(Section):
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    compress: CompressConfig = CompressConfig()
    hls: HLSConfig = HLSConfig()
    rtl: RTLConfig = RTLConfig()
    synth: SynthConfig = SynthConfig()
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
            f'config file {path} must hold a mapping of sections (data, model, compress, hls, rtl, synth, vendor)'
        )
    return parse_config(data)


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode='json'), sort_keys=False)
