"""The RTL route's layer catalogue (fpga_tests/layer_catalogue.py): small models that hold
every layer kind ``RTL_LAYERS`` supports, through da4ml and Verilator, clock by clock,
bit for bit (and da4ml's own predict() and the traced logic as second checks).
test_layer_coverage.py checks that the models hold every supported kind."""

from __future__ import annotations

import numpy as np
import pytest

import hls_backend
from fpga_tests import layer_catalogue as catalogue
from fpga_tests.fuzz_models import input_samples


@pytest.mark.parametrize('name', sorted(catalogue.RTL_CASES))
def test_every_rtl_layer_kind_is_exact_in_rtl_simulation(name, tmp_path):
    spec = catalogue.RTL_CASES[name]
    model = catalogue.build(spec)
    model.save(tmp_path / 'model.keras')
    x = input_samples(spec, 100)
    y = np.asarray(model.predict(x.astype('float32'), verbose=0))
    assert np.mean([len(np.unique(c)) > 1 for c in y.T]) > 0.5, 'most outputs must vary over the samples'
    hls_backend.write_rtl(tmp_path / 'model.keras', tmp_path / 'rtl', inputs=x)
    result = hls_backend.simulate_rtl(tmp_path / 'rtl', second_check=True)
    assert result.exact_matches == result.samples == len(x), result.first_mismatch
    assert result.max_abs_diff == 0.0
    for check, outcome in result.checks.items():
        assert outcome['exact'], (check, outcome)
