"""The installed lpsubnet version, written into every project (a module of its own, so the
routes read it without importing the package that imports them)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version('lpsubnet')
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = '0+unknown'
