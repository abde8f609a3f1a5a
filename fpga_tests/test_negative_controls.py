"""Negative controls: every check the product runs reports a design that is wrong.

A check that never fails proves nothing. Each control below perturbs the *design* (what
the check verifies: a weight file, a Verilog constant, a torch weight, a precision in the
hls4ml config), never the reference, and the check must report the mismatch; a command
must exit 3. Every control first sees its check pass on the unperturbed design, so the
failure is the perturbation's.

| check (where the product runs it)                           | the design perturbed                                   | must report                                     | test |
|-------------------------------------------------------------|--------------------------------------------------------|-------------------------------------------------|------|
| testbench C simulation (`lpsubnet csim`, hls/csim.py)       | one weight in `firmware/weights/w*.txt` negated, after a check that was exact (its verdicts cached) | MISMATCH, exit 3 | test_csim_reports_a_weight_file_changed_after_an_exact_check |
| hls4ml `predict()` (second check of `lpsubnet csim`)        | the same weight file (a cached verdict must not answer) | mismatch, named in the exit-3 message          | same |
| RTL cycle simulation (`lpsubnet rtl`, rtl/simulate.py)      | one adder of the Verilog made a subtracter (`IS_SUB`)  | MISMATCH, exit 3                                | test_rtl_reports_a_changed_verilog_constant |
| da4ml `predict()` (second check of `lpsubnet rtl`)          | the same Verilog (the same Verilated model)            | mismatch, named in the exit-3 message           | same |
| da4ml traced logic (third check of `lpsubnet rtl`)          | the same adder made a subtracter in `model/comb_full.json` (the traced logic never reads the Verilog: it stays exact above, which tells an RTL error from a replay error) | mismatch | test_trace_check_reports_a_changed_traced_operation |
| `to_torch` module (pruner/torch_export.py)                  | one torch weight moved one step along its grid         | outputs differ from QKeras (float64 equality)   | test_to_torch_module_with_a_changed_weight_differs |
| `.pt2` export (`export_torch`, `lpsubnet prune` / `run`)    | one weight in the exported program                     | outputs differ from QKeras (float64 equality)   | test_pt2_with_a_changed_weight_differs |
| `exact_config` in an hls4ml script (hls/hls4ml_script.py)   | one planned precision (a result, a weight) narrowed in the config it converts | UnsupportedModelError naming the layer | test_exact_config_refuses_a_changed_precision |
| a sweep trial's `csim_exact` (lpsubnet/sweep/trial.py)      | one weight file of the trial's HLS project negated as it is written | `csim_exact` false                  | test_sweep.py::test_a_trial_whose_design_is_wrong_is_not_exact |

The HLS and torch controls share test_csim_scale.py's small model; the RTL control builds
that model's Verilog once (the one Verilator build of this file).
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import hls_backend
from fpga_tests.cli_helpers import cli
from fpga_tests.hls_models import negate_first_weight, save
from fpga_tests.test_csim_scale import INPUT_TYPE, _model
from hls_backend.core.fixed_point import parse_fixed_type
from hls_backend.errors import UnsupportedModelError

csim_module = importlib.import_module('hls_backend.hls.csim')
route = importlib.import_module('hls_backend.rtl.route')
simulate = importlib.import_module('hls_backend.rtl.simulate')
script = importlib.import_module('hls_backend.hls.hls4ml_script')

SAMPLES = 40  # as the reproduction: 13/40 exact after the weight was negated


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    return Path(save(_model(), tmp_path_factory.mktemp('model')))


def grid_inputs(n: int = 200, seed: int = 11) -> np.ndarray:
    """Samples on the model's input grid, spread over its range."""
    x = np.random.default_rng(seed).uniform(-4.5, 4.5, (n, 6))
    return parse_fixed_type(INPUT_TYPE).quantize(x).astype(np.float32)


# --- C simulation: the testbench and hls4ml predict() --------------------------------------


def test_csim_reports_a_weight_file_changed_after_an_exact_check(model_file, tmp_path):
    """The issue's stale verdict, as a user meets it: a project checked exact (both
    verdicts cached), then one weight file rewritten. The testbench reads the file when it
    runs (no rebuild), and the predict() verdict's key holds the weight files: both must
    report the mismatch, and `lpsubnet csim` must exit 3 naming both."""
    project = tmp_path / 'prj'
    hls_backend.write_project(model_file, project, n_default_samples=SAMPLES)
    proc = cli('csim', project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'csim: EXACT {SAMPLES}/{SAMPLES}' in proc.stdout
    assert f'hls4ml predict(): {SAMPLES}/{SAMPLES} samples bit-exact' in proc.stdout
    assert list((project / csim_module.CACHE_DIR).glob('hls4ml_predict-*.json'))  # a verdict was cached

    negate_first_weight(project)
    proc = cli('csim', project)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    result = json.loads((project / csim_module.CSIM_RESULT).read_text())
    second = result['checks']['hls4ml_predict']
    assert result['build_seconds'] == 0.0  # the same executable: it read the new weights
    assert not result['exact'] and 0 < result['exact_matches'] < SAMPLES
    assert not second['exact'] and not any(note.startswith('cached') for note in second['notes'])
    # The two paths run the same C++: they agree with each other, sample by sample.
    assert second['mismatches'] == result['mismatches'] and second['exact_matches'] == result['exact_matches']
    assert f'csim: MISMATCH {result["exact_matches"]}/{SAMPLES}' in proc.stdout
    assert f'hls4ml predict(): {second["exact_matches"]}/{SAMPLES} samples bit-exact\n' in proc.stdout
    assert (
        f'not bit-exact against the QKeras model: C simulation (first mismatching sample: {result["first_mismatch"]}); '
        f"hls4ml's predict() (first mismatching sample: {second['first_mismatch']})"
    ) in proc.stderr


# --- RTL: the cycle simulation, da4ml predict() and the traced logic -----------------------


def flip_first_adder(project: Path) -> str:
    """The first shift_adder of the first pipeline stage made a subtracter (its IS_SUB
    parameter, the last one, inverted): one wrong sign in the arithmetic. Returns the line."""
    stage = project / 'src' / 'myproject_stage0.v'
    text = stage.read_text()
    match = re.search(r'shift_adder #\(([^)]*), ([01])\)', text)
    assert match, f'no shift_adder in {stage}'
    flipped = f'shift_adder #({match[1]}, {1 - int(match[2])})'
    stage.write_text(text[: match.start()] + flipped + text[match.end() :])
    return flipped


@pytest.fixture(scope='module')
def rtl_with_a_changed_constant(model_file, tmp_path_factory):
    """`lpsubnet rtl` with one Verilog constant changed between writing the project and
    building it (the command writes and simulates in one go)."""
    out = tmp_path_factory.mktemp('rtl') / 'rtl'
    real = route.simulate_rtl
    flipped = []

    def simulate_changed_design(project_dir, *args, **kwargs):
        flipped.append(flip_first_adder(Path(project_dir)))
        return real(project_dir, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(route, 'simulate_rtl', simulate_changed_design)
        proc = cli('rtl', model_file, '--out', out)
    assert flipped, 'the design was not changed'
    return out, proc


def test_rtl_reports_a_changed_verilog_constant(rtl_with_a_changed_constant):
    out, proc = rtl_with_a_changed_constant
    assert proc.returncode == 3, proc.stdout + proc.stderr
    result = json.loads((out / route.RTL_RESULT).read_text())
    assert not result['exact'] and result['mismatched_samples'] > 0
    assert not result['checks']['da4ml_predict']['exact']
    assert result['checks']['trace']['exact']  # it never reads the Verilog
    assert f'rtl: MISMATCH {result["exact_matches"]}/{result["samples"]}' in proc.stdout
    assert (
        f'not bit-exact against the QKeras model: RTL simulation (first mismatching sample: {result["first_mismatch"]}); '
        f"da4ml's predict() (first mismatching sample: {result['checks']['da4ml_predict']['first_mismatch']})"
    ) in proc.stderr
    assert "da4ml's traced logic" not in proc.stderr


def test_trace_check_reports_a_changed_traced_operation(rtl_with_a_changed_constant, tmp_path):
    """The same wrong sign in the traced logic (an add op made a subtraction) is reported
    by the trace check, which passes on the logic as written."""
    out, _ = rtl_with_a_changed_constant
    project = tmp_path / 'rtl'
    shutil.copytree(out, project)
    x, reference = np.load(project / 'tb_data' / 'inputs.npy'), np.load(project / 'tb_data' / 'reference.npy')
    assert simulate._trace_check(project, x, reference).exact
    comb_file = project / 'model' / 'comb_full.json'
    comb = json.loads(comb_file.read_text())
    ops = comb[5]  # da4ml's CombLogic: shape, inp_shifts, out_idxs, out_shifts, out_negs, ops, ...
    first_add = next(i for i, op in enumerate(ops) if op[2] == 0 and op[1] >= 0)  # id0, id1, opcode 0 (add)
    ops[first_add][2] = 1  # subtract
    comb_file.write_text(json.dumps(comb))
    check = simulate._trace_check(project, x, reference)
    assert not check.exact and check.mismatched_samples > 0


# --- the torch round trip ------------------------------------------------------------------


@pytest.fixture(scope='module')
def torch_case():
    """The small QKeras model, its inputs on the grid, its outputs, its to_torch module."""
    from pruner.torch_export import to_torch

    model = _model()
    x = grid_inputs()
    expected = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    return model, x, expected, to_torch


def torch_outputs(module, x: np.ndarray) -> np.ndarray:
    """The module in float64 on the samples (features: the torch layout is the Keras one)."""
    import torch

    with torch.no_grad():
        return module.double()(torch.from_numpy(x.astype(np.float64))).numpy()


def shift_one_weight(weight, step: float) -> None:
    """One weight moved one step along its fixed-point grid (it stays on the grid, so the
    weight quantizer in forward keeps it: a different design, not a rounding error)."""
    import torch

    first = (0,) * weight.dim()
    with torch.no_grad():
        weight[first] += step if weight[first] < 0 else -step


def test_to_torch_module_with_a_changed_weight_differs(torch_case):
    model, x, expected, to_torch = torch_case
    module = to_torch(model)
    assert np.array_equal(torch_outputs(module, x), expected)
    hidden = module.layers['hidden']
    shift_one_weight(hidden.weight, hidden.weight_quantizer.step)
    got = torch_outputs(module, x)
    assert not np.array_equal(got, expected)
    assert np.any(got != expected, axis=1).sum() > 0


def test_pt2_with_a_changed_weight_differs(torch_case, tmp_path):
    import torch

    from pruner.torch_export import export_torch

    model, x, expected, to_torch = torch_case
    module = to_torch(model)
    path = tmp_path / 'reduced.pt2'
    export_torch(module, path)
    assert np.array_equal(torch_outputs(torch.export.load(path).module(), x), expected)
    program = torch.export.load(path)
    shift_one_weight(program.state_dict['layers.hidden.weight'], module.layers['hidden'].weight_quantizer.step)
    changed = tmp_path / 'changed.pt2'
    with warnings.catch_warnings():  # as export_torch: torch's note on saving CPU tensors
        warnings.filterwarnings('ignore', message='No complete tensor found')
        torch.export.save(program, changed)
    got = torch_outputs(torch.export.load(changed).module(), x)
    assert not np.array_equal(got, expected)


# --- exact_config in an hls4ml script --------------------------------------------------------


def narrowed(text: str) -> str:
    """The same fixed-point type one fractional bit narrower (hls4ml's spelling)."""
    precision = parse_fixed_type(text)
    return f'{"" if precision.signed else "u"}fixed<{precision.width - 1},{precision.integer}>'


def test_exact_config_refuses_a_changed_precision(monkeypatch):
    """exact_config converts the model once and checks every type it planned in hls4ml's
    graph: each planned result precision narrowed in turn in the config it converts (as
    a wrong plan would write it) must be refused, naming the layer. (A weight precision
    in the config is no control: hls4ml takes a quantized layer's weight type from its
    quantizer, and the design stays exact.)"""
    model = _model()
    hls_backend.exact_config(model)  # passes as planned
    real = script._check_conversion
    refused = {}
    for_each = {}

    def convert_changed_config(model, config, backend, io_type, planned, sums):
        name = for_each['layer']
        config = copy.deepcopy(config)
        config['LayerName'][name]['Precision']['result'] = narrowed(planned[name]['result'])
        return real(model, config, backend, io_type, planned, sums)

    monkeypatch.setattr(script, '_check_conversion', convert_changed_config)
    from hls_backend.core.plan import plan_model
    from hls_backend.hls.layers import HLS_LAYERS

    planned = plan_model(model, HLS_LAYERS).precisions
    layers = [name for name, types in planned.items() if 'result' in types]
    assert len(layers) >= 3  # the input, its quantizer, the hidden activation
    for name in layers:
        for_each['layer'] = name
        with pytest.raises(UnsupportedModelError) as error:
            hls_backend.exact_config(model)
        refused[name] = str(error.value)
    for name, message in refused.items():
        assert f"'{name}'" in message and 'typed its result' in message, message


def test_exact_config_refuses_a_narrowed_automatic_result(monkeypatch):
    model = _model()
    real = script._check_conversion

    def convert_changed_config(model, config, *args):
        config = copy.deepcopy(config)
        assert config['LayerName']['hidden']['Precision']['result'] == 'auto'
        config['LayerName']['hidden']['Precision']['result'] = 'fixed<8,3>'
        return real(model, config, *args)

    monkeypatch.setattr(script, '_check_conversion', convert_changed_config)
    with pytest.raises(UnsupportedModelError, match="'hidden'.*cannot hold its exact sum"):
        hls_backend.exact_config(model)
