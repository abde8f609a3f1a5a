"""Fuzzed bit-exactness: random valid QKeras models, C simulation and RTL == QKeras exactly.

Each example is a random architecture (fpga_tests/fuzz_models.py). The back end
either refuses it up front (UnsupportedModelError, naming the reason) or writes a
design whose simulation equals the QKeras model on every sample (float64 equality).
A model that is accepted and then mismatches is a bug; each one found is pinned in
test_fuzz_regressions.py. ``LPSUBNET_FUZZ=1`` runs hundreds of examples
(see fuzz_settings.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, note

import hls_backend
from fpga_tests.fuzz_models import build_qkeras, input_samples, model_specs
from fpga_tests.fuzz_settings import examples, fixed_seed
from hls_backend.errors import UnsupportedModelError


def check_csim(spec: dict, io_type: str, work: Path, backend: str = 'Vitis', n: int = 40) -> str:
    """Write and C-simulate ``spec``; 'refused: ...' or 'exact'. Fails on any mismatch."""
    model = build_qkeras(spec)
    path = work / 'model.keras'
    model.save(path)
    x = input_samples(spec, n)
    options = hls_backend.HLSOptions(backend=backend, io_type=io_type)
    try:
        info = hls_backend.write_project(path, work / io_type, options, inputs=x)
    except UnsupportedModelError as exc:
        return f'refused: {exc}'
    assert info.exact_by_construction
    result = hls_backend.csim(work / io_type, second_check=False)
    assert result.samples == n
    assert result.exact_matches == n, (
        f'{io_type}: {n - result.exact_matches}/{n} samples differ, first {result.first_mismatch}, '
        f'max |diff| {result.max_abs_diff}; spec={spec!r}'
    )
    assert result.max_abs_diff == 0.0
    return 'exact'


def _io_types():
    return ['io_parallel', 'io_stream']


@fixed_seed
@examples(default=3, fuzz=300)
@given(spec=model_specs())
def _csim_property(spec, io_type):
    note(f'spec={spec!r}')
    with tempfile.TemporaryDirectory(prefix='fuzz-csim-') as tmp:
        outcome = check_csim(spec, io_type, Path(tmp))
    event(outcome.split(':')[0])


@pytest.mark.parametrize('io_type', _io_types())
def test_fuzz_csim_equals_qkeras(io_type):
    _csim_property(io_type=io_type)


@fixed_seed
@examples(default=1, fuzz=40)
@given(spec=model_specs(kinds=('dense', 'conv1d', 'conv2d'), max_bits=8, max_blocks=2, rtl=True))
def _rtl_property(spec):
    note(f'spec={spec!r}')
    with tempfile.TemporaryDirectory(prefix='fuzz-rtl-') as tmp:
        work = Path(tmp)
        model = build_qkeras(spec)
        model.save(work / 'model.keras')
        x = input_samples(spec, 30)
        try:
            hls_backend.write_rtl(work / 'model.keras', work / 'rtl', inputs=x)
        except UnsupportedModelError as exc:
            event('refused')
            note(f'refused: {exc}')
            return
        result = hls_backend.simulate_rtl(work / 'rtl', second_check=True)
        assert result.exact_matches == result.samples == 30, f'first mismatch {result.first_mismatch}; spec={spec!r}'
        assert result.max_abs_diff == 0.0
        outputs = np.load(work / 'rtl' / 'tb_data' / 'rtl_outputs.npy')
        if np.all(outputs == outputs[0]):  # constant design: no output change to time
            assert result.latency_cycles is None and result.initiation_interval is None
            event('exact, constant output')
        else:
            assert result.initiation_interval == 1
        for name, check in result.checks.items():
            assert check['exact'], name
        event('exact')


def test_fuzz_rtl_equals_qkeras():
    """Random small models through the RTL route: one normally (a Verilator build takes
    15-20 s), 40 under LPSUBNET_FUZZ=1."""
    _rtl_property()


def test_generated_models_are_not_trivial():
    """The generator's models compute something: outputs vary over the input samples."""
    from hypothesis import given as given_
    from hypothesis import settings

    seen = []

    @settings(max_examples=5, deadline=None, derandomize=True, database=None)
    @given_(spec=model_specs())
    def prop(spec):
        model = build_qkeras(spec)
        x = input_samples(spec, 40)
        y = model.predict(x.astype('float32'), verbose=0)
        seen.append(np.unique(np.round(y, 12).reshape(len(y), -1), axis=0).shape[0])

    prop()
    assert len(seen) == 5 and max(seen) > 1
