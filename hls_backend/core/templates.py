"""Jinja2 rendering of lpsubnet's templates.

The sources live in the repository's top-level ``templates/`` folder; setuptools maps
``templates/hls`` into this package's data (``hls_backend.template_files``) and
``templates/report`` into ``lpsubnet.template_files`` (pyproject.toml), so they ship
inside the wheel and are found through importlib.resources, installed or editable.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import jinja2


def template_dir(package: str):
    """The folder of a template package (a real directory, installed or editable)."""
    folder = resources.files(package)
    if not folder.is_dir():  # a broken install
        raise FileNotFoundError(f'template package {package} has no folder: reinstall lpsubnet')
    return folder


@cache
def _environment(package: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir(package))),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, context: dict, package: str) -> str:
    """Render template ``name`` of the template package ``package`` (a route's ``template_files``)."""
    return _environment(package).get_template(name).render(**context)
