"""Keys of cached builds and verdicts: the hash of everything the cached result depends on.

A cache may only answer for exactly what it was filled from. Issue 27 found a verdict
that went stale: hls4ml's ``predict()`` result was cached under a hash of the C++
sources alone, but the compiled firmware reads ``firmware/weights/*.txt`` when it runs,
so after one weight file was negated the testbench reported 13/40 exact while the
cached ``predict()`` still said 40/40. Every cache therefore has one key function, which
names each part it hashes (files by content, tool versions, flags, digests of the inputs
and of the reference), and a test that changes each part in turn and sees a miss.

A :class:`CacheKey` keeps the parts by name (``parts``) so those tests can check that
every part is exercised, and so a key can say what it was made of.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def package_version(distribution: str) -> str:
    """The installed version of a Python distribution ('absent' when it is not installed)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return 'absent'


class CacheKey:
    """Named parts -> one SHA-256 (``digest``). Part values are strings; a file enters
    as its content's digest, a set of files as their relative names and digests."""

    def __init__(self, cache: str):
        self.cache = cache
        self.parts: dict[str, str] = {}

    def add(self, name: str, value) -> CacheKey:
        if name in self.parts:
            raise ValueError(f'cache key {self.cache!r}: part {name!r} given twice')
        self.parts[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return self

    def add_file(self, name: str, path: str | Path) -> CacheKey:
        return self.add(name, file_digest(path))

    def add_files(self, name: str, root: str | Path, paths) -> CacheKey:
        """Files under ``root``: their names relative to it (a renamed or added file counts)
        and their contents, in sorted order."""
        root = Path(root)
        entries = sorted((str(Path(p).relative_to(root)), file_digest(p)) for p in paths)
        return self.add(name, json.dumps(entries))

    def add_versions(self, *distributions: str) -> CacheKey:
        for name in distributions:
            self.add(f'version:{name}', package_version(name))
        return self

    @property
    def digest(self) -> str:
        data = json.dumps({'cache': self.cache, 'parts': self.parts}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()

    def __str__(self) -> str:
        return self.digest


__all__ = ['CacheKey', 'file_digest', 'package_version']
