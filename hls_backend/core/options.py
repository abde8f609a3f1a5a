"""What every hardware route's options share: the target and the input type.

Each route's options (:class:`hls_backend.hls.options.HLSOptions`,
:class:`hls_backend.rtl.options.RTLOptions`) extends :class:`TargetOptions`; every
setting is declared once, on its field (:mod:`declared_settings`), and ``lpsubnet``'s
command line and run configuration are derived from the fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict

from declared_settings import setting, validate

from ..errors import BadInputError
from .fixed_point import parse_fixed_type
from .project import DEFAULT_PART


@dataclass
class TargetOptions:
    __pydantic_config__ = ConfigDict(extra='forbid')

    project_name: Annotated[str, setting('Top function / project name (a C identifier).')] = 'myproject'
    part: Annotated[str, setting('FPGA part.')] = DEFAULT_PART
    clock_period: Annotated[float, setting('Clock period in ns.', gt=0)] = 5.0
    input_precision: Annotated[
        str | None,
        setting(
            'Input type when the model has no input quantizer, e.g. ap_fixed<16,6> (AP_TRN, AP_WRAP unless given: '
            'ap_fixed<16,6,AP_RND_CONV,AP_SAT> rounds and saturates).',
            config=False,
        ),
    ] = None

    def validated(self):
        """A checked copy: types and bounds as declared, then the checks across settings;
        BadInputError names the setting and what is allowed."""
        checked = validate(self, BadInputError, f'{type(self).__name__} setting')
        checked.check()
        return checked

    def check(self) -> None:
        if not self.project_name.isidentifier():
            raise BadInputError(f'project name {self.project_name!r} must be a C identifier (letters, digits, _)')
        if self.input_precision is not None:
            try:
                parse_fixed_type(self.input_precision)
            except ValueError as exc:
                raise BadInputError(f'input precision: {exc}') from None

    def replace(self, **changes):
        """A copy with ``changes`` (settings by field name), validated."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            names = ', '.join(f.name for f in dataclasses.fields(self))
            raise BadInputError(f'unknown {type(self).__name__} setting(s) {unknown}; known: {names}')
        return dataclasses.replace(self, **changes).validated()
