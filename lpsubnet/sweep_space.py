"""The ``sweep:`` section of a sweep configuration and the trial points it describes.

A sweep configuration is a run configuration (:mod:`lpsubnet.config`) plus::

    sweep:
      space:                          # run-config keys to vary
        compress.sparsity: [0.25, 0.5, 0.75]          # a list: these values (a grid axis)
        compress.weight_bits: {low: 4, high: 8}       # a range: numeric keys only
        compress.learning_rate: {low: 1e-4, high: 1e-2, log: true}
      search: grid                    # grid | random | optuna
      trials: 24                      # random / optuna: how many points
      seed: 0
      objectives: [accuracy, footprint_bits, lut_estimate]
      synth: yosys                    # optional: also map each trial with Yosys (lut_synth, ...)

Every key and value is checked against the run configuration before anything runs:
an unknown key is named with the keys known there, a bad value with the key's own
message, a range on a key that is not a number is refused. A trial's parameters
(``{key: value}``) identify it: its id is a hash of them, so a resumed sweep finds
finished trials whatever order they come in.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from .config import ConfigError, RunConfig, Section, parse_config
from .objectives import OBJECTIVES, measured, requirement

# The float baseline is trained once and shared by every trial, so what it is made
# from cannot vary between trials.
SHARED_SECTIONS = ('data', 'model', 'seed')
# Dict-valued keys whose entries a sweep may set one by one: the key, then the names that
# follow it (None: any name, e.g. a layer), and the kind of value at the end.
# compress.per_layer_sparsity.<layer>; compress.layer_bits.<layer>.weight_bits (issue 26:
# per-layer bits as sweep keys; '__input__' for the input quantizer's activation_bits).
DICT_KEYS = {
    'compress.per_layer_sparsity': ((None,), 'float'),
    'compress.layer_bits': ((None, ('weight_bits', 'activation_bits', 'bias_bits')), 'int'),
}


class SweepSection(Section):
    space: dict[str, Any] = Field(default_factory=dict)
    search: Literal['grid', 'random', 'optuna'] = 'grid'
    trials: int | None = Field(None, ge=1, description='random / optuna: the number of points (grid: all of them)')
    seed: int = 0
    objectives: list[Literal[tuple(OBJECTIVES)]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ['accuracy', 'footprint_bits', 'lut_estimate'], min_length=1
    )
    reference: bool = Field(
        True, description='also compress the unpruned model (compress.sparsity 0) as the reference point'
    )
    rtl: bool = Field(False, description='also build and simulate each trial clock by clock with Verilator (slow)')
    second_check: bool = Field(
        False,
        description="also cross-check each C simulation with hls4ml's compile()/predict() (a second g++ build "
        'per trial); the C simulation against QKeras is the bit-exact verdict either way',
    )
    estimate_samples: int = Field(
        20, ge=1, description='test samples the RTL estimate project stores (no simulation runs on them)'
    )
    synth: Literal['yosys'] | None = Field(
        None,
        description="yosys: also build each trial's RTL and map it with Yosys as the run configuration's synth: "
        'section says (family, place, ...): objectives lut_synth and ff_synth (fmax_mhz with synth.place: true), '
        'and --max-lut bounds the LUTs Yosys mapped',
    )
    vendor: bool = Field(
        False,
        description="also run the vendor tool's steps (vendor.steps) in each trial; a trial then asks Ray for the "
        "resource named after the tool ('vivado_hls' or 'vitis-run'), so it runs only on nodes that offer it; "
        'without such a node it records the command to run where the tool exists',
    )


@dataclass(frozen=True)
class Dimension:
    key: str
    values: tuple | None = None  # a list: the grid axis
    low: float | None = None  # a range
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.values is None

    def grid_values(self) -> tuple:
        if not self.is_range:
            return self.values
        if self.step is None:
            raise ConfigError(
                f'sweep.space.{self.key} is a range without a step: a grid needs a list or a step; '
                'give step, or use search: random or optuna'
            )
        count = int(round((self.high - self.low) / self.step)) + 1
        return tuple(
            self._cast(self.low + i * self.step) for i in range(count) if self.low + i * self.step <= self.high + 1e-12
        )

    def _cast(self, value: float):
        return int(round(value)) if self.integer else round(float(value), 10)

    def sample(self, rng):
        if not self.is_range:
            return self.values[int(rng.integers(len(self.values)))]
        if self.step is not None:
            return self.grid_values()[int(rng.integers(len(self.grid_values())))]
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            import math

            return self._cast(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self._cast(rng.uniform(self.low, self.high))

    def tune_domain(self):
        """This dimension as a Ray Tune search domain (for the Optuna searcher)."""
        from ray import tune

        if not self.is_range:
            return tune.choice(list(self.values))
        if self.integer:
            step = int(self.step or 1)
            return (
                tune.qlograndint(int(self.low), int(self.high), step)
                if self.log
                else tune.qrandint(int(self.low), int(self.high), step)
            )
        if self.step is not None:
            return (
                tune.qloguniform(self.low, self.high, self.step)
                if self.log
                else tune.quniform(self.low, self.high, self.step)
            )
        return tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)

    def normalise(self, value):
        return self._cast(value) if self.is_range else value


@dataclass
class SweepConfig:
    base: dict  # the run configuration (validated), as plain data
    sweep: SweepSection
    dimensions: list[Dimension]
    source: str

    @property
    def run_config(self) -> RunConfig:
        return parse_config(self.base)

    def config_for(self, params: dict) -> RunConfig:
        return parse_config(apply_params(self.base, params))

    def base_key(self) -> str:
        """A hash of the run configuration every trial starts from."""
        return _hash(self.base)


def _hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def trial_id(params: dict) -> str:
    return 't' + _hash(params)[:10]


def apply_params(base: dict, params: dict) -> dict:
    """A copy of the run configuration ``base`` with each ``section.key`` in ``params`` set."""
    data = json.loads(json.dumps(base))
    for key, value in params.items():
        node = data
        parts = key.split('.')
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return data


def _leaf_type(annotation) -> tuple[str, bool]:
    """('int' | 'float' | 'other', optional) for a field's annotation."""
    args = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    # Annotated[int, Field(ge=1)] is an int with bounds (pydantic checks them when the config is parsed).
    kinds = {typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in args}
    kinds.discard(type(None))
    if float in kinds:
        return 'float', True
    if int in kinds and bool not in kinds:
        return 'int', True
    return 'other', False


def _resolve(key: str) -> str:
    """The kind of value run-config key ``key`` holds ('int', 'float', 'other');
    an error naming the key and the keys known where it stops otherwise."""
    parts = key.split('.')
    if parts[0] in SHARED_SECTIONS:
        raise ConfigError(
            f'sweep.space key {key!r}: the float baseline is trained once and shared by every trial, so '
            f'{", ".join(s + (".*" if s != "seed" else "") for s in SHARED_SECTIONS)} cannot vary in a sweep; '
            'vary compress.*, hls.* or rtl.* keys'
        )
    for prefix, (names, kind) in DICT_KEYS.items():
        if not key.startswith(prefix + '.'):
            continue
        rest = parts[prefix.count('.') + 1 :]
        if len(rest) != len(names):
            raise ConfigError(
                f'sweep.space key {key!r}: {prefix} entries are named {prefix}.'
                + '.'.join('<layer>' if n is None else '<' + '|'.join(n) + '>' for n in names)
            )
        for name, allowed in zip(rest, names, strict=True):
            if allowed is not None and name not in allowed:
                raise ConfigError(f'sweep.space key {key!r}: {name!r} is not one of {", ".join(allowed)}')
        return kind
    section: type[BaseModel] = RunConfig
    for depth, part in enumerate(parts):
        fields = section.model_fields
        if part not in fields:
            where = '.'.join(parts[:depth]) or 'the top level'
            raise ConfigError(f'unknown sweep.space key {key!r}; known keys in {where}: {", ".join(fields)}')
        annotation = fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if depth == len(parts) - 1:
                raise ConfigError(
                    f'sweep.space key {key!r} is a whole section; name one of its keys: {", ".join(annotation.model_fields)}'
                )
            section = annotation
            continue
        if depth != len(parts) - 1:
            raise ConfigError(f'unknown sweep.space key {key!r}: {".".join(parts[: depth + 1])} is not a section')
        return _leaf_type(annotation)[0]
    raise AssertionError('unreachable')


def _check_value(base: dict, key: str, value) -> None:
    try:
        parse_config(apply_params(base, {key: value}))
    except ConfigError as exc:
        raise ConfigError(f'sweep.space.{key}: value {value!r} is not allowed: {exc}') from None


def _dimension(base: dict, key: str, spec) -> Dimension:
    kind = _resolve(key)
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f'sweep.space.{key} is an empty list; give at least one value')
        for value in spec:
            _check_value(base, key, value)
        return Dimension(key, values=tuple(spec))
    if isinstance(spec, dict):
        unknown = set(spec) - {'low', 'high', 'step', 'log'}
        if unknown or not {'low', 'high'} <= set(spec):
            raise ConfigError(
                f'sweep.space.{key}: a range is {{low: A, high: B}} with optional step and log; got {spec!r}'
            )
        if kind == 'other':
            raise ConfigError(
                f'sweep.space.{key}: a range needs a numeric key, and {key} is not a number; give a list of values'
            )
        low, high, step, log = spec['low'], spec['high'], spec.get('step'), bool(spec.get('log', False))
        numbers = [v for v in (low, high, step) if v is not None]
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in numbers):
            raise ConfigError(f'sweep.space.{key}: low, high and step must be numbers; got {spec!r}')
        if not low < high:
            raise ConfigError(f'sweep.space.{key}: low ({low}) must be below high ({high})')
        if step is not None and step <= 0:
            raise ConfigError(f'sweep.space.{key}: step must be > 0; got {step}')
        if log and low <= 0:
            raise ConfigError(f'sweep.space.{key}: a log range needs low > 0; got {low}')
        integer = kind == 'int'
        if integer and any(float(v) != int(v) for v in numbers):
            raise ConfigError(f'sweep.space.{key} holds whole numbers; low, high and step must be whole; got {spec!r}')
        for value in (low, high):
            _check_value(base, key, int(value) if integer else float(value))
        return Dimension(key, low=low, high=high, step=step, log=log, integer=integer)
    raise ConfigError(
        f'sweep.space.{key}: give a list of values (e.g. [0.25, 0.5]) or a range {{low: A, high: B}}; got {spec!r}'
    )


def parse_sweep(data: dict | None, source: str = 'the sweep configuration') -> SweepConfig:
    if not isinstance(data, dict) or 'sweep' not in data:
        raise ConfigError(
            f'{source} has no sweep: section; a sweep configuration is a run configuration plus '
            'sweep: {space: ..., search: grid|random|optuna, trials, seed, objectives}'
        )
    data = dict(data)
    raw = data.pop('sweep')
    if not isinstance(raw, dict):
        raise ConfigError(f'sweep: in {source} must be a mapping with space, search, trials, seed, objectives')
    base = parse_config(data).model_dump(mode='json')
    try:
        sweep = SweepSection.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = 'sweep.' + '.'.join(str(p) for p in error['loc'])
            if error['type'] == 'extra_forbidden':
                problems.append(
                    f'unknown config key {key!r}; known keys in sweep: {", ".join(SweepSection.model_fields)}'
                )
            else:
                problems.append(f'config key {key!r}: {error["msg"]} (got {error.get("input")!r})')
        raise ConfigError('; '.join(problems)) from None
    if sweep.synth is not None:
        # Asked for by name: every trial is built and mapped, whatever its size ('auto' would skip large ones).
        base['rtl']['enabled'] = True
        base['synth'].update(enabled=True, tool=sweep.synth)
    available = measured(sweep.synth is not None, base['synth']['place'])
    for name in sweep.objectives:
        if name not in available:
            raise ConfigError(f'sweep.objectives lists {name}, which needs {requirement(OBJECTIVES[name])}')
    if not sweep.space:
        raise ConfigError('sweep.space is empty: give at least one run-config key with a list of values or a range')
    dimensions = [_dimension(base, str(key), spec) for key, spec in sweep.space.items()]
    if len(set(sweep.objectives)) != len(sweep.objectives):
        raise ConfigError(f'sweep.objectives lists an objective twice: {sweep.objectives}')
    if sweep.search == 'grid':
        size = 1
        for dim in dimensions:
            size *= len(dim.grid_values())
        if sweep.trials is not None and sweep.trials != size:
            raise ConfigError(
                f'sweep.trials is {sweep.trials} but a grid runs every combination ({size}); drop trials, '
                'or use search: random or optuna to run a subset'
            )
    elif sweep.trials is None:
        raise ConfigError(f'sweep.trials is required for search: {sweep.search} (how many points to try)')
    return SweepConfig(base=base, sweep=sweep, dimensions=dimensions, source=source)


def load_sweep(path: str | Path) -> SweepConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f'sweep configuration {path} does not exist')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f'sweep configuration {path} is not valid YAML: {exc}') from None
    return parse_sweep(data, str(path))


def grid_points(config: SweepConfig) -> list[dict]:
    axes = [[(dim.key, v) for v in dim.grid_values()] for dim in config.dimensions]
    return [dict(combo) for combo in itertools.product(*axes)]


def random_points(config: SweepConfig) -> list[dict]:
    """``trials`` distinct points drawn with ``seed`` (fewer if the space has fewer)."""
    import numpy as np

    rng = np.random.default_rng(config.sweep.seed)
    points: dict[str, dict] = {}
    attempts = 0
    while len(points) < config.sweep.trials and attempts < 50 * config.sweep.trials:
        attempts += 1
        point = {dim.key: dim.sample(rng) for dim in config.dimensions}
        points.setdefault(trial_id(point), point)
    return list(points.values())


def reference_point(config: SweepConfig) -> dict:
    """The unpruned model quantized as the base configuration says: the point the front is compared with."""
    return {'compress.sparsity': 0.0}
