"""The user-facing surfaces of an options dataclass, derived from its declared settings.

An options dataclass (``pruner.CompressOptions``, ``hls_backend.HLSOptions``,
``hls_backend.RTLOptions``) declares each setting once: ``Annotated[type,
setting(description, ...)] = default``. From those fields come the command line's
options (:func:`click_options`), the run configuration's section (:func:`config_section`,
which the sweep's searchable keys are checked against) and what the manifest echoes,
so adding a field is the whole of adding a setting (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Literal

import annotated_types
import click
from pydantic import create_model, field_validator


def declared(cls) -> dict[str, tuple[typing.Any, typing.Any, dict]]:
    """name -> (type without the declaration, FieldInfo of the declaration, its surfaces)
    for every declared setting of ``cls``, in field order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is not Annotated:
            continue
        base, *metadata = typing.get_args(hint)
        info = next((m for m in metadata if _is_declaration(m)), None)
        if info is not None:
            out[f.name] = (hint, info, info.json_schema_extra)
    return out


def defaults(cls) -> dict[str, typing.Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _is_declaration(meta) -> bool:
    extra = getattr(meta, 'json_schema_extra', None)
    return isinstance(extra, dict) and {'cli', 'config', 'flag', 'choices'} <= set(extra)


def _members(hint) -> tuple[list, bool]:
    """The alternatives of a declared type (each possibly Annotated with its own bounds),
    and whether None is one of them."""
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        members = list(typing.get_args(base))
    else:
        members = [base]
    optional = type(None) in members
    return [m for m in members if m is not type(None)], optional


def _bounds(member, info=None) -> dict:
    """ge/gt/le/lt of a member type (its own Annotated metadata, or the declaration's)."""
    metadata = list(getattr(info, 'metadata', []) or [])
    if typing.get_origin(member) is Annotated:
        for meta in typing.get_args(member)[1:]:
            metadata += list(getattr(meta, 'metadata', [meta]))
    out = {}
    for meta in metadata:
        for key in ('ge', 'gt', 'le', 'lt'):
            if isinstance(meta, getattr(annotated_types, key.capitalize())):
                out[key] = getattr(meta, key)
    return out


def _plain(member):
    return typing.get_args(member)[0] if typing.get_origin(member) is Annotated else member


# --- the command line -------------------------------------------------------------------


class RegistryChoice(click.Choice):
    """A choice among the names of one of the pruner's registries (importance measures,
    schedules), read when first needed: a measure registered later is a choice too."""

    def __init__(self, registry: str):
        self.registry = registry
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        from pruner.options import CHOICES

        return CHOICES[self.registry]()


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


def _click_type(hint, info, extra):
    """(click type, multiple) for a declared type."""
    if extra['choices']:
        return RegistryChoice(extra['choices']), False
    members, _ = _members(hint)
    plain = [_plain(m) for m in members]
    if len(plain) == 1:
        kind = plain[0]
        origin = typing.get_origin(kind)
        if origin is Literal:
            return click.Choice([str(v) for v in typing.get_args(kind)]), False
        if kind in (int, float):
            bounds = _bounds(members[0], info)
            return (_range(kind, bounds) if bounds else kind), False
        if origin is tuple:
            return str, True
        if origin is dict:
            return str, True  # NAME=VALUE, repeated
        return str, False
    words = tuple(str(v) for m in plain if typing.get_origin(m) is Literal for v in typing.get_args(m))
    numbers = [(m, _bounds(members[i], info)) for i, m in enumerate(plain) if m in (int, float)]
    return Alternatives(words, numbers), False


def click_options(cls, exclude: tuple[str, ...] = ()):
    """Decorator: one click option per setting of ``cls`` shown on the command line, its
    flag, type, bounds, default and help from the declaration."""

    def decorate(command):
        default_of = defaults(cls)
        for name, (hint, info, extra) in reversed(declared(cls).items()):
            if not extra['cli'] or name in exclude:
                continue
            flag = extra['flag'] or '--' + name.replace('_', '-')
            default = default_of.get(name)
            members, _ = _members(hint)
            kind, multiple = _click_type(hint, info, extra)
            if [_plain(m) for m in members] == [bool]:
                option = click.option(f'{flag}/--no-{flag[2:]}', name, default=bool(default), show_default=True)
            else:
                shown = default if not isinstance(default, tuple | dict) and default is not None else None
                pairs = typing.get_origin(_plain(members[0])) is dict
                option = click.option(
                    flag,
                    name,
                    type=kind,
                    multiple=multiple,
                    default=shown,
                    show_default=shown is not None,
                    metavar='NAME=VALUE' if pairs else ('NAME' if multiple else None),
                )
            command = option(command)
            command.__click_params__[-1].help = info.description
        return command

    return decorate


def cli_settings(cls, values: dict) -> dict:
    """The settings of ``cls`` from a command's keyword arguments: repeated options back
    into tuples and ``NAME=VALUE`` pairs into dicts, unset (None) options left out."""
    out = {}
    for name, (hint, _info, extra) in declared(cls).items():
        if name not in values:
            continue
        value = values[name]
        members, _ = _members(hint)
        origin = typing.get_origin(_plain(members[0])) if len(members) == 1 else None
        if origin is dict:
            value = _pairs(name, extra['flag'] or f'--{name}', value) or None
        elif origin is tuple:
            value = tuple(value)
        if value is None:
            continue
        out[name] = value
    return out


def _pairs(name: str, flag: str, items) -> dict:
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


def config_section(cls, name: str, base):
    """A pydantic model (a section of the run configuration, subclass of ``base``) with one
    field per setting of ``cls`` the configuration shows: the same type, bounds, default
    and description; registry choices checked with the names allowed."""
    fields = {}
    choices = {}
    default_of = defaults(cls)
    for setting, (hint, info, extra) in declared(cls).items():
        if not extra['config']:
            continue
        if extra['choices']:
            choices[setting] = extra['choices']
            hint = Annotated[str, info]
        default = default_of.get(setting)
        fields[setting] = (hint, default)

    def _registered(value, info):
        from pruner.options import CHOICES

        names = CHOICES[choices[info.field_name]]()
        if value not in names:
            raise ValueError(f'unknown {info.field_name} {value!r}; choose one of {", ".join(names)}')
        return value

    validators = {'_registered': field_validator(*choices)(_registered)} if choices else {}
    return create_model(name, __base__=base, __validators__=validators, **fields)
