"""One declaration per setting: declare, read and validate the fields of an options dataclass.

An options dataclass (``pruner.CompressOptions``, ``hls_backend.HLSOptions``,
``hls_backend.RTLOptions``) declares each setting once, on its field::

    weight_bits: Annotated[int, setting('Weight bits.', flag='--wbits', ge=2, le=16)] = 8

The declaration is pydantic's own ``Field`` (type, bounds, description) plus which
surfaces show the setting. :func:`validate` checks an options object against its
declarations (pydantic), :func:`declared` lists them; lpsubnet/settings.py derives the
command line's options and the run configuration's sections from the same fields.
This package imports nothing of lpsubnet's, so the pruner and the hardware back end
(which must not import each other) both use it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

SURFACE_KEYS = ('cli', 'config', 'flag', 'choices')


def setting(
    description: str,
    *,
    flag: str | None = None,
    cli: bool = True,
    config: bool = True,
    choices: str | None = None,
    **bounds,
) -> FieldInfo:
    """A setting's declaration, for ``Annotated[type, setting(...)]``.

    ``flag``: the command-line option's name when it is not ``--<field-name>``; ``cli``
    / ``config``: whether the command line / the run configuration show it (a setting
    that only makes sense from Python, or that the run derives, says no); ``choices``:
    the name of a registry of allowed names (looked up through the ``choices`` mapping
    given to :func:`validate`); ``bounds``: pydantic's ``ge``/``gt``/``le``/``lt``.
    """
    extra = {'cli': cli, 'config': config, 'flag': flag, 'choices': choices}
    return Field(description=description, json_schema_extra=extra, **bounds)


@dataclass(frozen=True)
class Declared:
    """One declared setting: its full ``Annotated`` type, the declaration and its default."""

    name: str
    hint: typing.Any
    info: FieldInfo
    default: typing.Any

    @property
    def surfaces(self) -> dict:
        return self.info.json_schema_extra

    @property
    def members(self) -> list:
        """The alternatives of the type (each possibly ``Annotated`` with its own bounds),
        None left out."""
        base = typing.get_args(self.hint)[0]
        if typing.get_origin(base) in (typing.Union, types.UnionType):
            return [m for m in typing.get_args(base) if m is not type(None)]
        return [base]

    def bounds(self, member=None) -> dict:
        """ge/gt/le/lt of the declaration, or of one member type of a union."""
        metadata = list(self.info.metadata)
        if member is not None and typing.get_origin(member) is Annotated:
            for meta in typing.get_args(member)[1:]:
                metadata += list(getattr(meta, 'metadata', [meta]))
        names = {'Ge': 'ge', 'Gt': 'gt', 'Le': 'le', 'Lt': 'lt'}
        return {
            names[type(m).__name__]: getattr(m, names[type(m).__name__]) for m in metadata if type(m).__name__ in names
        }

    def allowed(self) -> str | None:
        """What the setting takes, in words ("a whole number >= 0 or 'auto'"); None for a
        type with no short description (pydantic's own message is used then)."""
        words = {'ge': '>=', 'gt': '>', 'le': '<=', 'lt': '<'}
        parts = []
        for member in self.members:
            kind = plain(member)
            if typing.get_origin(kind) is typing.Literal:
                parts.append(' or '.join(repr(v) for v in typing.get_args(kind)))
            elif kind in (int, float):
                bounds = {**self.bounds(), **self.bounds(member)}
                limits = ' and '.join(f'{words[k]} {v}' for k, v in bounds.items())
                parts.append(('a whole number' if kind is int else 'a number') + (f' {limits}' if limits else ''))
            elif kind is bool:
                parts.append('true or false')
            else:
                return None
        return ' or '.join(parts)


def plain(member):
    """A member type without its ``Annotated`` bounds."""
    return typing.get_args(member)[0] if typing.get_origin(member) is Annotated else member


def declared(cls) -> dict[str, Declared]:
    """The declared settings of an options dataclass, in field order (a field without a
    :func:`setting` is internal)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is not Annotated:
            continue
        info = next((m for m in typing.get_args(hint)[1:] if _is_declaration(m)), None)
        if info is not None:
            default = f.default if f.default is not dataclasses.MISSING else None
            out[f.name] = Declared(f.name, hint, info, default)
    return out


def _is_declaration(meta) -> bool:
    extra = getattr(meta, 'json_schema_extra', None)
    return isinstance(extra, dict) and set(SURFACE_KEYS) <= set(extra)


def validate(
    options,
    error: type[Exception],
    what: str,
    choices: Mapping[str, Callable[[], tuple[str, ...]]] | None = None,
):
    """``options`` checked against its declarations: a new object with values converted to
    the declared types (pydantic), registry names in their registries. Raises ``error``
    naming each setting (``what``, e.g. 'compress setting'), its value and what is allowed."""
    cls = type(options)
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(cls) if f.init}
    try:
        checked = _adapter(cls).validate_python(values)
    except ValidationError as exc:
        raise error(describe_errors(exc, declared(cls), what)) from None
    for name, setting_ in declared(cls).items():
        registry = setting_.surfaces['choices']
        value = getattr(checked, name)
        if registry and isinstance(value, str) and value not in choices[registry]():
            raise error(f'unknown {name} {value!r}; choose one of {", ".join(choices[registry]())}')
    return checked


def describe_errors(exc: ValidationError, settings: dict[str, Declared], what: str) -> str:
    """One clause per setting from pydantic's errors: the value and what the setting takes
    (from its declaration: every bound and alternative at once)."""
    by_setting: dict[str, tuple[object, list[str]]] = {}
    for error in exc.errors():
        name = str(error['loc'][0]) if error['loc'] else '?'
        allowed = settings[name].allowed() if name in settings else None
        message = allowed or error['msg'].removeprefix('Input should be ').removeprefix('Value error, ')
        messages = by_setting.setdefault(name, (error.get('input'), []))[1]
        if message not in messages:
            messages.append(message)
    return '; '.join(
        f'{what} {name}={value!r}: should be {" or ".join(messages)}' for name, (value, messages) in by_setting.items()
    )


_adapters: dict[type, TypeAdapter] = {}


def _adapter(cls) -> TypeAdapter:
    if cls not in _adapters:
        _adapters[cls] = TypeAdapter(cls)
    return _adapters[cls]


__all__ = ['Declared', 'declared', 'describe_errors', 'plain', 'setting', 'validate']
