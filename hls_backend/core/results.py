"""The one result shape every verification or build route writes (csim, rtl, vendor).

Reports compare routes by reading these JSON files, so every route fills the same
keys; a figure a route cannot measure is ``None``, never omitted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .files import write_text_atomic


@dataclass
class RouteResult:
    route: str  # 'csim', 'hls4ml_predict', 'rtl', 'vendor'
    tool: str
    project_dir: str
    samples: int = 0
    exact_matches: int = 0
    mismatched_samples: int = 0
    first_mismatch: int | None = None
    max_abs_diff: float = 0.0
    build_seconds: float | None = None
    run_seconds: float | None = None
    latency_cycles: int | None = None
    initiation_interval: int | None = None
    resources: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)  # secondary checks, each a RouteResult dict
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.samples > 0 and self.exact_matches == self.samples

    def to_dict(self) -> dict:
        data = asdict(self)
        data['exact'] = self.exact
        return data

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + '\n')


def compare_exact(reference: np.ndarray, actual: np.ndarray, result: RouteResult) -> RouteResult:
    """Fill the comparison fields: a sample matches when every output value is equal."""
    reference = np.asarray(reference, dtype=np.float64).reshape(reference.shape[0], -1)
    actual = np.asarray(actual, dtype=np.float64).reshape(actual.shape[0], -1)
    if reference.shape != actual.shape:
        raise ValueError(f'{result.route}: {actual.shape} outputs against {reference.shape} expected')
    equal = np.all(reference == actual, axis=1)
    result.samples = int(reference.shape[0])
    result.exact_matches = int(equal.sum())
    result.mismatched_samples = result.samples - result.exact_matches
    bad = np.flatnonzero(~equal)
    result.first_mismatch = int(bad[0]) if bad.size else None
    result.max_abs_diff = float(np.max(np.abs(reference - actual))) if reference.size else 0.0
    return result
