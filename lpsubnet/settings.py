"""The user-facing surfaces of an options dataclass, derived from its declared settings.

An options dataclass (``pruner.CompressOptions``, ``hls_backend.HLSOptions``,
``hls_backend.RTLOptions``) declares each setting once: ``Annotated[type,
setting(description, ...)] = default``. From those fields come the command line's
options (:func:`click_options`), the run configuration's section (:func:`config_section`,
which the sweep's searchable keys are checked against) and what the manifest echoes,
so adding a field is the whole of adding a setting (docs/architecture.md).
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

import click
from pydantic import create_model, field_validator

from declared_settings import Declared, declared, plain

# --- the command line -------------------------------------------------------------------


class RegistryChoice(click.Choice):
    """A choice among the names in a registry (importance measures, schedules), read when
    first needed: a measure registered later is a choice too."""

    def __init__(self, choices: dict, registry: str):
        self.registries, self.registry = choices, registry
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        return self.registries[self.registry]()


class Alternatives(click.ParamType):
    """A value of one of several kinds: words ('auto'), whole numbers, numbers, each kind
    with its bounds (e.g. 'auto' or a whole number >= 0)."""

    def __init__(self, words: tuple[str, ...], numbers: list[tuple[type, dict]]):
        self.words, self.numbers = words, numbers
        self.name = '|'.join([*words, *('N' if t is int else 'X' for t, _ in numbers)])

    def convert(self, value, param, ctx):
        if value in self.words or (not isinstance(value, str) and value is not None):
            return value
        for kind, bounds in self.numbers:
            try:
                number = kind(value)
            except (TypeError, ValueError):
                continue
            if _within(number, bounds):
                return number
        allowed = [repr(w) for w in self.words] + [_describe_number(t, b) for t, b in self.numbers]
        self.fail(f'{value!r} is not {" or ".join(allowed)}', param, ctx)


def _within(number, bounds: dict) -> bool:
    checks = {'ge': number.__ge__, 'gt': number.__gt__, 'le': number.__le__, 'lt': number.__lt__}
    return all(checks[key](limit) for key, limit in bounds.items())


def _describe_number(kind, bounds: dict) -> str:
    words = {'ge': '>=', 'gt': '>', 'le': '<=', 'lt': '<'}
    limits = ' and '.join(f'{words[k]} {v}' for k, v in bounds.items())
    return ('a whole number' if kind is int else 'a number') + (f' {limits}' if limits else '')


def _range(kind, bounds: dict):
    ranged = click.IntRange if kind is int else click.FloatRange
    return ranged(
        min=bounds.get('ge', bounds.get('gt')),
        max=bounds.get('le', bounds.get('lt')),
        min_open='gt' in bounds,
        max_open='lt' in bounds,
    )


def _click_type(setting: Declared, choices: dict):
    """(click type, multiple) for a declared setting."""
    if setting.surfaces['choices']:
        return RegistryChoice(choices, setting.surfaces['choices']), False
    members = setting.members
    kinds = [plain(m) for m in members]
    if len(kinds) == 1:
        kind = kinds[0]
        origin = typing.get_origin(kind)
        if origin is Literal:
            return click.Choice([str(v) for v in typing.get_args(kind)]), False
        if kind in (int, float):
            bounds = {**setting.bounds(), **setting.bounds(members[0])}
            return (_range(kind, bounds) if bounds else kind), False
        if origin in (tuple, dict):
            return str, True  # repeated: NAME, or NAME=VALUE
        return str, False
    words = tuple(str(v) for k in kinds if typing.get_origin(k) is Literal for v in typing.get_args(k))
    numbers = [(k, setting.bounds(members[i])) for i, k in enumerate(kinds) if k in (int, float)]
    return Alternatives(words, numbers), False


def click_options(cls, choices: dict | None = None, exclude: tuple[str, ...] = ()):
    """Decorator: one click option per setting of ``cls`` shown on the command line, its
    flag, type, bounds, default and help from the declaration (``choices``: the registries
    named by settings whose value is a registered name)."""

    def decorate(command):
        for setting in reversed(declared(cls).values()):
            if not setting.surfaces['cli'] or setting.name in exclude:
                continue
            flag = setting.surfaces['flag'] or '--' + setting.name.replace('_', '-')
            default = setting.default
            kind, multiple = _click_type(setting, choices or {})
            if [plain(m) for m in setting.members] == [bool]:
                option = click.option(f'{flag}/--no-{flag[2:]}', setting.name, default=bool(default), show_default=True)
            else:
                shown = default if not isinstance(default, tuple | dict) and default is not None else None
                pairs = typing.get_origin(plain(setting.members[0])) is dict
                option = click.option(
                    flag,
                    setting.name,
                    type=kind,
                    multiple=multiple,
                    default=shown,
                    show_default=shown is not None,
                    metavar='NAME=VALUE' if pairs else ('NAME' if multiple else None),
                )
            command = option(command)
            command.__click_params__[-1].help = setting.info.description
        return command

    return decorate


def cli_settings(cls, values: dict) -> dict:
    """The settings of ``cls`` from a command's keyword arguments: repeated options back
    into tuples and ``NAME=VALUE`` pairs into dicts, unset (None) options left out."""
    out = {}
    for name, setting in declared(cls).items():
        if name not in values:
            continue
        value = values[name]
        origin = typing.get_origin(plain(setting.members[0])) if len(setting.members) == 1 else None
        if origin is dict:
            value = _pairs(setting.surfaces['flag'] or f'--{name}', value) or None
        elif origin is tuple:
            value = tuple(value)
        if value is None:
            continue
        out[name] = value
    return out


def _pairs(flag: str, items) -> dict:
    pairs = {}
    for item in items or ():
        key, sep, text = str(item).partition('=')
        if not sep or not key:
            raise click.BadParameter(f'{item!r} is not NAME=VALUE', param_hint=flag)
        try:
            pairs[key] = float(text)
        except ValueError:
            raise click.BadParameter(f'{item!r}: {text!r} is not a number', param_hint=flag) from None
    return pairs


# --- the run configuration --------------------------------------------------------------


def config_section(cls, name: str, base, choices: dict | None = None, exclude: tuple[str, ...] = ()):
    """A pydantic model (a section of the run configuration, subclass of ``base``) with one
    field per setting of ``cls`` the configuration shows (but ``exclude``): the same type,
    bounds, default and description; registry names checked against ``choices``."""
    fields = {}
    registries = {}
    for setting in declared(cls).values():
        if not setting.surfaces['config'] or setting.name in exclude:
            continue
        hint = setting.hint
        if setting.surfaces['choices']:
            registries[setting.name] = setting.surfaces['choices']
            hint = Annotated[str, setting.info]
        fields[setting.name] = (hint, setting.default)

    def _registered(value, info):
        names = choices[registries[info.field_name]]()
        if value not in names:
            raise ValueError(f'unknown {info.field_name} {value!r}; choose one of {", ".join(names)}')
        return value

    validators = {'_registered': field_validator(*registries)(_registered)} if registries else {}
    return create_model(name, __base__=base, __validators__=validators, **fields)
