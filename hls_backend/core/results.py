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
    # Test inputs outside the input type's range (core.input_range.InputRange.to_dict), or None.
    input_range: dict | None = None
    # The first mismatching samples (at most MISMATCHES_KEPT): sample index, first differing
    # output position, expected (QKeras) and actual value there, and how many outputs differ.
    mismatches: list[dict] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.samples > 0 and self.exact_matches == self.samples

    def to_dict(self) -> dict:
        data = asdict(self)
        data['exact'] = self.exact
        return data

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + '\n')


MISMATCHES_KEPT = 10


class ExactTally:
    """Exact comparison over a stream of sample chunks, so that a million-sample check
    holds one chunk at a time: counts, the first mismatching samples and the largest
    difference. A sample matches when every one of its output values is equal."""

    def __init__(self, keep: int = MISMATCHES_KEPT):
        self.keep = keep
        self.samples = 0
        self.exact_matches = 0
        self.max_abs_diff = 0.0
        self.first_mismatch: int | None = None
        self.mismatches: list[dict] = []

    def add(self, reference: np.ndarray, actual: np.ndarray, route: str = 'check') -> ExactTally:
        """Compare the next chunk (samples numbered on from the previous chunks)."""
        reference = np.asarray(reference, dtype=np.float64).reshape(reference.shape[0], -1)
        actual = np.asarray(actual, dtype=np.float64).reshape(actual.shape[0], -1)
        if reference.shape != actual.shape:
            raise ValueError(f'{route}: {actual.shape} outputs against {reference.shape} expected')
        equal_values = reference == actual
        equal = equal_values.all(axis=1)
        bad = np.flatnonzero(~equal)
        if bad.size and self.first_mismatch is None:
            self.first_mismatch = self.samples + int(bad[0])
        for row in bad[: max(0, self.keep - len(self.mismatches))]:
            differing = np.flatnonzero(~equal_values[row])
            col = int(differing[0])
            self.mismatches.append(
                {
                    'sample': self.samples + int(row),
                    'output': col,
                    'expected': float(reference[row, col]),
                    'actual': float(actual[row, col]),
                    'outputs_differing': int(differing.size),
                }
            )
        if reference.size:
            self.max_abs_diff = max(self.max_abs_diff, float(np.max(np.abs(reference - actual))))
        self.samples += int(reference.shape[0])
        self.exact_matches += int(equal.sum())
        return self

    def fill(self, result: RouteResult) -> RouteResult:
        result.samples = self.samples
        result.exact_matches = self.exact_matches
        result.mismatched_samples = self.samples - self.exact_matches
        result.first_mismatch = self.first_mismatch
        result.max_abs_diff = self.max_abs_diff
        result.mismatches = list(self.mismatches)
        return result


def compare_exact(reference: np.ndarray, actual: np.ndarray, result: RouteResult) -> RouteResult:
    """Fill the comparison fields: a sample matches when every output value is equal."""
    return ExactTally().add(reference, actual, result.route).fill(result)
