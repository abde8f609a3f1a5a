"""Every layer kind a route supports has an exactness case on that route (issue 27).

The supported lists come from the code that implements them: the HLS and RTL
registries (``HLS_LAYERS.supported()``, ``RTL_LAYERS.supported()``) and the PyTorch
route's handler table (``pruner.torch_export.LAYER_HANDLERS``). The cases are the
models of fpga_tests/layer_catalogue.py; the HLS and RTL cases run in
test_layer_cases_hls.py and test_layer_cases_rtl.py, the PyTorch ones here. A class
added to a registry without a case fails here, naming it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpga_tests import layer_catalogue as catalogue
from fpga_tests.fuzz_models import input_samples
from hls_backend.hls.layers import HLS_LAYERS
from hls_backend.rtl.layers import RTL_LAYERS
from pruner.torch_export import LAYER_HANDLERS, to_torch
from pruner.torch_import import to_channels_first


def supported(route: str) -> set[str]:
    if route == 'hls':
        return set(HLS_LAYERS.supported())
    if route == 'rtl':
        return set(RTL_LAYERS.supported())
    return set(LAYER_HANDLERS)


# Kinds a route maps without claiming bit-exactness for them, with where they are checked.
NOT_CLAIMED_EXACT = {
    'torch': {
        # pruner/torch_export.py: "except for a softmax (float32 in TensorFlow)".
        'Softmax': 'test_torch_export.py::test_softmax_output_matches_to_float32_rounding (to float32 rounding)',
    },
}


def case_classes(route: str) -> set[str]:
    """The layer classes of the route's exactness cases."""
    if route == 'hls':
        specs = catalogue.HLS_CASES.values()
    elif route == 'rtl':
        specs = catalogue.RTL_CASES.values()
    else:
        specs = catalogue.TORCH_SPECS.values()
    classes = set().union(*(catalogue.spec_case_classes(spec) for spec in specs))
    if route == 'torch':
        for model in catalogue.torch_float_models().values():
            classes |= catalogue.case_classes(model)
    return classes


def missing_cases(route: str, classes: set[str]) -> list[str]:
    return sorted(supported(route) - classes - set(NOT_CLAIMED_EXACT.get(route, {})))


@pytest.mark.parametrize('route', ['hls', 'rtl', 'torch'])
def test_every_supported_layer_kind_has_an_exactness_case(route):
    classes = case_classes(route)
    missing = missing_cases(route, classes)
    assert not missing, f'{route} route: supported but no exactness case in fpga_tests/layer_catalogue.py: {missing}'
    # The cases hold only what the route supports (else they would be refused, not run).
    implicit = {'InputLayer'} if route == 'torch' else set()  # to_torch maps the input itself
    assert classes - implicit <= supported(route), sorted(classes - implicit - supported(route))
    stale = set(NOT_CLAIMED_EXACT.get(route, {})) - supported(route)
    assert not stale, f'exceptions for kinds the {route} route no longer has: {sorted(stale)}'


def test_a_kind_without_a_case_is_named(monkeypatch):
    """The check itself: a class the registry gains without a case is reported."""
    classes = case_classes('rtl')
    monkeypatch.setitem(RTL_LAYERS.kinds, 'Cropping2D', RTL_LAYERS.kinds['ZeroPadding2D'])
    assert missing_cases('rtl', classes) == ['Cropping2D']


def test_the_cases_are_built_as_their_specs_say():
    """spec_classes (what the coverage counts) is what build_qkeras really makes."""
    for spec in [*catalogue.HLS_CASES.values(), *catalogue.RTL_CASES.values(), *catalogue.TORCH_SPECS.values()]:
        model = catalogue.build(spec)
        assert catalogue.case_classes(model) == catalogue.spec_case_classes(spec), spec['name']


# --- the PyTorch route's cases: to_torch(model) == the Keras model, bit for bit ---------


def _torch_outputs(model, x: np.ndarray, dtype) -> np.ndarray:
    module = to_torch(model)
    module = module.double() if dtype == torch.float64 else module
    with torch.no_grad():
        return module(torch.from_numpy(to_channels_first(x).astype(np.float64)).to(dtype)).numpy().astype(np.float64)


def _assert_exact_and_not_trivial(got, expected, name):
    assert got.shape == expected.shape, name
    mismatched = int(np.sum(np.any(got.reshape(len(got), -1) != expected.reshape(len(got), -1), axis=1)))
    assert mismatched == 0, (
        f'{name}: {mismatched}/{len(got)} samples differ, max |diff| {np.max(np.abs(got - expected))}'
    )
    varying = np.mean([len(np.unique(column)) > 1 for column in expected.reshape(len(expected), -1).T])
    assert varying > 0.5, f'{name}: only {varying:.0%} of the outputs vary over the samples'


@pytest.mark.parametrize('name', sorted(catalogue.TORCH_SPECS))
def test_quantized_torch_case_is_exact(name):
    """In float64 and in float32 (every partial sum of these models is exact in float32)."""
    spec = catalogue.TORCH_SPECS[name]
    model = catalogue.build(spec)
    x = input_samples(spec, 200).astype('float32')
    expected = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    for dtype in (torch.float64, torch.float32):
        _assert_exact_and_not_trivial(_torch_outputs(model, x, dtype), expected, f'{name} {dtype}')


def test_float_torch_cases_are_exact():
    for name, model in catalogue.torch_float_models().items():
        x = catalogue.float_inputs(model, 200)
        expected = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
        for dtype in (torch.float64, torch.float32):
            _assert_exact_and_not_trivial(_torch_outputs(model, x, dtype), expected, f'{name} {dtype}')


def test_torch_case_check_reports_a_wrong_module():
    """Negative control: a torch module with one weight changed is reported."""
    spec = catalogue.TORCH_SPECS['torch_quantized_1d']
    model = catalogue.build(spec)
    x = input_samples(spec, 200).astype('float32')
    expected = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    module = to_torch(model).double()
    last = [m for m in module.layers.values() if hasattr(m, 'weight_quantizer')][-1]
    with torch.no_grad():
        last.bias += last.bias_quantizer.step
        got = module(torch.from_numpy(to_channels_first(x).astype(np.float64))).numpy()
    with pytest.raises(AssertionError, match=r'200/200 samples differ'):
        _assert_exact_and_not_trivial(got, expected, 'perturbed')
