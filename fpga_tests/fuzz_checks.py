"""The fuzz checks, shared by the default suite (test_fuzz_exact.py) and the campaign
(fuzz_campaign.py, ``make fuzz``).

Every check takes one spec (fpga_tests/fuzz_models.py) and returns an outcome:
``'exact'`` or ``'refused: <the back end's message>'``. Anything else fails: a
mismatch raises AssertionError naming the spec, a crash propagates. A refused model
is not a pass by itself: callers count outcomes with :class:`Tally` and require a
share of accepted models (:meth:`Tally.assert_acceptance`), so a back end that
refused everything would fail.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import hls_backend
from fpga_tests.fuzz_models import build_float, build_qkeras, input_samples, random_masks
from hls_backend.errors import UnsupportedModelError

EXACT = 'exact'
REFUSED = 'refused'


def check_csim(
    spec: dict,
    io_type: str,
    work: Path,
    backend: str = 'Vitis',
    n: int = 40,
    second_check: bool = False,
    shared_build: bool = False,
) -> str:
    """Write and C-simulate ``spec``; with ``second_check`` also hls4ml's predict(), with
    ``shared_build`` both from one compiled firmware (hls_backend.csim)."""
    model = build_qkeras(spec)
    path = work / 'model.keras'
    model.save(path)
    return _csim_saved(path, input_samples(spec, n), io_type, work, backend, second_check, spec, shared_build)


def check_pruned_csim(
    spec: dict,
    io_type: str,
    work: Path,
    fraction: float = 0.5,
    weight_bits: int = 6,
    activation_bits: int = 8,
    n: int = 40,
) -> str:
    """The product's own route on a float spec (BatchNorm allowed): random channel
    masks, cut, fold BatchNorm, statistics-based quantizers, QKeras model, C simulation."""
    import pruner
    from pruner.quantize import calibrate, plan_quantization
    from pruner.surgery import fold_batchnorm, to_qkeras

    rng = np.random.default_rng(spec['seed'] + 2)
    masked = random_masks(pruner.MaskedModel(build_float(spec)), rng, fraction)
    folded = fold_batchnorm(pruner.reduce(masked))
    x = rng.normal(0, 1, size=(n, *spec['input_shape'])).astype('float32')
    plan = plan_quantization(folded, calibrate(folded, x), weight_bits=weight_bits, activation_bits=activation_bits)
    qmodel = to_qkeras(folded, plan)
    path = work / 'pruned.keras'
    qmodel.save(path)
    return _csim_saved(path, x, io_type, work, 'Vitis', False, spec)


def _csim_saved(path, x, io_type, work, backend, second_check, spec, shared_build=False) -> str:
    options = hls_backend.HLSOptions(backend=backend, io_type=io_type)
    try:
        info = hls_backend.write_project(path, work / io_type, options, inputs=x)
    except UnsupportedModelError as exc:
        return f'{REFUSED}: {exc}'
    assert info.exact_by_construction
    result = hls_backend.csim(work / io_type, second_check=second_check, shared_build=shared_build)
    n = len(x)
    assert result.samples == n
    assert result.exact_matches == n, (
        f'{io_type}: {n - result.exact_matches}/{n} samples differ, first {result.first_mismatch}, '
        f'max |diff| {result.max_abs_diff}; spec={spec!r}'
    )
    assert result.max_abs_diff == 0.0
    if second_check:
        check = result.checks['hls4ml_predict']
        assert check['exact_matches'] == n and check['max_abs_diff'] == 0.0, f'hls4ml predict(): {check}; spec={spec!r}'
    return EXACT


def check_rtl(spec: dict, work: Path, n: int = 30, jobs: int | None = None) -> str:
    """Write the RTL of ``spec``, build it with Verilator (``jobs`` make jobs), simulate
    clock by clock."""
    model = build_qkeras(spec)
    model.save(work / 'model.keras')
    try:
        # force_large: the draws are sized by the generator; the size guard is not under test.
        hls_backend.write_rtl(work / 'model.keras', work / 'rtl', inputs=input_samples(spec, n), force_large=True)
    except UnsupportedModelError as exc:
        return f'{REFUSED}: {exc}'
    result = hls_backend.simulate_rtl(work / 'rtl', jobs=jobs, second_check=True)
    assert result.exact_matches == result.samples == n, f'first mismatch {result.first_mismatch}; spec={spec!r}'
    assert result.max_abs_diff == 0.0
    outputs = np.load(work / 'rtl' / 'tb_data' / 'rtl_outputs.npy')
    if np.all(outputs == outputs[0]):  # constant design: no output change to time
        assert result.latency_cycles is None and result.initiation_interval is None
    else:
        assert result.initiation_interval == 1, f'II {result.initiation_interval}; spec={spec!r}'
    for name, check in result.checks.items():
        assert check['exact'], f'{name}: {check}; spec={spec!r}'
    return EXACT


def refusal_reason(outcome: str) -> str:
    """A refusal message without its particulars (layer names, numbers), so refusals
    of the same kind count together: "layer '*' (AveragePooling1D) is not bit-exact ..."."""
    text = outcome.split(': ', 1)[1] if outcome.startswith(REFUSED) else outcome
    text = text.split('; ')[0]
    text = re.sub(r"'[^']*'", "'*'", text)
    text = re.sub(r'ap_u?fixed<[^>]*>', 'ap_fixed<*>', text)
    return re.sub(r'(?<![\w.])\d+(?![\w.])', 'N', text)  # numbers, not versions such as 1.3.0


@dataclass
class Tally:
    """Outcomes of one property: how many were tried, accepted, refused and why."""

    name: str
    outcomes: list[str] = field(default_factory=list)

    def add(self, outcome: str) -> None:
        self.outcomes.append(outcome)

    @property
    def accepted(self) -> int:
        return sum(outcome == EXACT for outcome in self.outcomes)

    @property
    def refusals(self) -> Counter:
        return Counter(refusal_reason(o) for o in self.outcomes if o.startswith(REFUSED))

    def assert_acceptance(self, minimum: float = 0.8) -> None:
        tried = len(self.outcomes)
        assert tried > 0, f'{self.name}: no model was checked'
        reasons = '; '.join(f'{count} x {reason}' for reason, count in self.refusals.most_common())
        assert self.accepted >= minimum * tried, (
            f'{self.name}: only {self.accepted}/{tried} drawn models were accepted (at least {minimum:.0%} '
            f'must be, or the property checks little); refused: {reasons}'
        )
        print(f'{self.name}: {self.accepted}/{tried} accepted' + (f'; refused: {reasons}' if reasons else ''))
