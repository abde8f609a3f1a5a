"""lpsubnet's own file helpers for run directories, so the orchestration layer does not
reach into the hardware package's internals: a file is written under a temporary name
and renamed; a stage directory is built beside its target and swapped in when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hls_backend.errors import BadInputError, OutputExistsError


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    except OSError as exc:  # name the file the user knows, not the temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_dir(path: Path, force: bool) -> None:
    """Refuse a file, or a non-empty directory unless ``force``."""
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f'output {path} exists and is not a directory; choose another path')
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputExistsError(f'output directory {path} exists and is not empty; pass --force to replace it')


@contextlib.contextmanager
def atomic_directory(target: str | Path, force: bool = False) -> Iterator[Path]:
    """A temporary directory that replaces ``target`` when the block succeeds (and only then)."""
    target = Path(target).absolute()
    check_output_dir(target, force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{target.name}.', suffix='.partial', dir=target.parent))
    except OSError as exc:
        raise BadInputError(f'cannot write into {target.parent}: {exc.strerror}') from exc
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f'.{target.name}.', suffix='.old', dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
