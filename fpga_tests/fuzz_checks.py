"""The fuzz checks, shared by the default suite (test_fuzz_exact.py, test_fuzz_rtl.py)
and the campaign (fuzz_campaign.py, ``make fuzz``).

Every check takes one spec (fpga_tests/fuzz_models.py) and returns an outcome:
``'exact'`` or ``'refused: <the back end's message>'``. Anything else fails: a
mismatch raises AssertionError naming the spec, a crash propagates. A refused model
is not a pass by itself: callers count outcomes with :class:`Tally` and require a
share of accepted models (:meth:`Tally.assert_acceptance`), so a back end that
refused everything would fail.

A *property* (:data:`PROPERTIES`) names a route and how its examples are drawn; an
example is a property and a seed (:func:`spec_for`), run by :func:`check_example`
and replayed by ``python -m fpga_tests.fuzz_campaign --replay PROPERTY:SEED``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import hls_backend
from fpga_tests.fuzz_models import build_float, build_qkeras, input_samples, random_masks, random_spec
from hls_backend.errors import UnsupportedModelError

EXACT = 'exact'
REFUSED = 'refused'
# The share of drawn models a property must accept (README: "at least 80% of the drawn
# models must be accepted"), in the default suite and in the campaign.
MIN_ACCEPTED = 0.8

# property -> the route its specs are drawn for, and the io type of a csim property.
PROPERTIES = {
    'csim-io_parallel': {'route': 'hls', 'io_type': 'io_parallel'},
    'csim-io_stream': {'route': 'hls', 'io_type': 'io_stream'},
    'rtl': {'route': 'rtl'},
    'pruned': {'route': 'pruned'},
}
# The registry whose supported layer classes a property's drawn models must cover
# ('pruned' goes through the HLS route after the pruner).
PROPERTY_ROUTE = {'csim-io_parallel': 'hls', 'csim-io_stream': 'hls', 'rtl': 'rtl', 'pruned': 'hls'}


def spec_for(prop: str, seed: int) -> dict:
    """The spec of example ``seed`` of property ``prop`` (the same on every machine)."""
    if prop not in PROPERTIES:
        raise ValueError(f'unknown fuzz property {prop!r}; known: {", ".join(PROPERTIES)}')
    return random_spec(seed, **PROPERTIES[prop])


def pruned_settings(seed: int) -> dict:
    """Sparsity, bit widths and io type of one ``pruned`` example, drawn from its seed."""
    rng = np.random.default_rng(seed + 7)
    return {
        'fraction': float(rng.choice([0.25, 0.5, 0.75])),
        'weight_bits': int(rng.integers(3, 9)),
        'activation_bits': int(rng.integers(4, 9)),
        'io_type': str(rng.choice(['io_parallel', 'io_stream'])),
    }


def replay_command(prop: str, seed: int) -> str:
    return f'.venv/bin/python -m fpga_tests.fuzz_campaign --replay {prop}:{seed}'


def check_example(prop: str, seed: int, work: Path, spec: dict | None = None, jobs: int | None = None) -> str:
    """Run example ``seed`` of ``prop`` (or the given ``spec``) in ``work``: the outcome,
    or AssertionError naming the property, the seed and the command that replays it.

    C simulation runs lpsubnet's testbench and hls4ml's predict() on one build of the
    firmware (``csim(shared_build=True)``); RTL adds da4ml's predict() and the traced logic.
    """
    spec = spec_for(prop, seed) if spec is None else spec
    try:
        if prop.startswith('csim-'):
            return check_csim(spec, PROPERTIES[prop]['io_type'], work, second_check=True, shared_build=True)
        if prop == 'rtl':
            return check_rtl(spec, work, jobs=jobs)
        return check_pruned_csim(spec, work=work, second_check=True, shared_build=True, **pruned_settings(seed))
    except AssertionError as exc:
        raise AssertionError(f'{prop} seed {seed}: {exc}\nreplay: {replay_command(prop, seed)}') from exc


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
    second_check: bool = False,
    shared_build: bool = False,
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
    return _csim_saved(path, x, io_type, work, 'Vitis', second_check, spec, shared_build)


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
    examples: list[str] = field(default_factory=list)  # what names each outcome (property:seed)

    def add(self, outcome: str, example: str = '') -> None:
        self.outcomes.append(outcome)
        self.examples.append(example)

    @property
    def accepted(self) -> int:
        return sum(outcome == EXACT for outcome in self.outcomes)

    @property
    def refusals(self) -> Counter:
        return Counter(refusal_reason(o) for o in self.outcomes if o.startswith(REFUSED))

    def line(self) -> str:
        reasons = '; '.join(f'{count} x {reason}' for reason, count in self.refusals.most_common())
        refused = [e for e, o in zip(self.examples, self.outcomes) if o.startswith(REFUSED) and e]
        where = f' ({", ".join(refused)})' if refused else ''
        return f'{self.name}: {self.accepted}/{len(self.outcomes)} accepted' + (
            f'; refused{where}: {reasons}' if reasons else ''
        )

    def assert_acceptance(self, minimum: float = MIN_ACCEPTED) -> None:
        tried = len(self.outcomes)
        assert tried > 0, f'{self.name}: no model was checked'
        assert self.accepted >= minimum * tried, (
            f'only {self.accepted}/{tried} drawn models were accepted (at least {minimum:.0%} must be, or the '
            f'property checks little): {self.line()}'
        )
        print(self.line())
