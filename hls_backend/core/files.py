"""Writing files so that an interrupted or failed run never leaves half a result.

Files are written to a temporary name in the same directory and renamed into place
(rename is atomic on POSIX within one file system). Whole directories are built
under a temporary name beside the target and renamed once complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import BadInputError, OutputExistsError


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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_dir(path: Path, force: bool) -> None:
    """Refuse an existing non-empty directory (or a file) unless ``force``."""
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f'output {path} exists and is not a directory; choose another path')
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputExistsError(f'output directory {path} exists and is not empty; pass --force to replace it')


@contextlib.contextmanager
def atomic_directory(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` when the block succeeds.

    On an exception the temporary directory is removed and ``target`` is untouched.
    With ``force`` an existing ``target`` is replaced only after the new one is complete.
    """
    target = Path(target).absolute()
    check_output_dir(target, force)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{target.name}.', suffix='.partial', dir=parent))
    except OSError as exc:
        raise BadInputError(f'cannot write into {parent}: {exc.strerror}') from exc
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f'.{target.name}.', suffix='.old', dir=parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
