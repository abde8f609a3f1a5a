"""``lpsubnet run`` with a PyTorch model in: a tiny torch CNN trained here on digits
(NCHW .npz data) goes through conversion, pruning and quantization to a bit-exact C
simulation, and its ``compress/reduced.pt2`` loads back in torch and computes exactly
what the QKeras reduced model computes. The RTL simulation of the same run (a
Verilator build) is the slow part. Bad torch inputs stop with a named error and leave
nothing half-written.

The run is the budget of test_run_pipeline.py's tiny run (same sizes, same seeds);
commands run in process (fpga_tests.cli_helpers.cli).
"""

import json
import re

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from fpga_tests.cli_helpers import cli
from fpga_tests.test_run_pipeline import BUDGETS, own_copy
from lpsubnet.config import ConfigError, parse_config
from lpsubnet.metrics_schema import Metrics


def tiny_torch_cnn() -> nn.Sequential:
    """The tiny Keras CNN of test_run_pipeline.py in PyTorch: Conv(4)-BN-ReLU-MaxPool,
    Flatten, Linear (logits). An nn.Sequential, as many PyTorch models are: its input is
    named 'input' and its children '0', '1', ..., names hls4ml cannot use as they are."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10)
    )


@pytest.fixture(scope='module')
def torch_inputs(tmp_path_factory):
    """(directory, trained torch module): digits as an NCHW .npz, the module saved as a
    .pt2 program and as TorchScript."""
    from lpsubnet.datasets import load_digits_images

    d = tmp_path_factory.mktemp('torch_inputs')
    x, y = load_digits_images()
    x = np.ascontiguousarray(np.moveaxis(x, -1, 1))  # (N, 1, 8, 8): torch's layout
    np.savez(d / 'digits_nchw.npz', x_train=x, y_train=y)
    np.save(d / 'x_nchw.npy', x[:40])
    torch.manual_seed(3)
    net = tiny_torch_cnn()
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(3):  # well under a second
        for i in range(0, len(xt), 64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(xt[i : i + 64]), yt[i : i + 64]).backward()
            optimizer.step()
    net.eval()
    # As a user exports it: a fixed example batch (the conversion runs it chunk by chunk).
    torch.export.save(torch.export.export(net, (xt[:8],)), d / 'tiny_cnn.pt2')
    torch.jit.script(net).save(str(d / 'tiny_cnn_script.pt'))
    return d, net


def write_config(path, d, **sections):
    config = dict(
        BUDGETS,
        data={'dataset': 'npz', 'path': str(d / 'digits_nchw.npz'), 'layout': 'NCHW'},
        model={'path': str(d / 'tiny_cnn.pt2')},
        rtl={'enabled': False},
    )
    config.update(sections)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope='module')
def torch_run(tmp_path_factory, torch_inputs):
    """The .pt2 model's run up to the compress stage (the PyTorch-specific part; the
    hardware stages are the slow test's); returns (run dir, CLI result). Tests only read it."""
    d, _ = torch_inputs
    config = write_config(tmp_path_factory.mktemp('cfg') / 'torch.yaml', d)
    run = tmp_path_factory.mktemp('runs') / 'run'
    proc = cli('run', config, '--out', run, '--stop-after', 'compress')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc


def test_conversion_is_checked_printed_and_recorded(torch_run, torch_inputs):
    run, proc = torch_run
    manifest = json.loads((run / 'compress' / 'manifest.json').read_text())
    record = manifest['torch']
    check = record['conversion_check']
    assert record['source'].endswith('tiny_cnn.pt2') and record['kind'] == 'ExportedProgram'
    assert record['torch_input_shape'] == [1, 8, 8] and record['keras_input_shape'] == [8, 8, 1]
    assert check['ok'] and 0 <= check['max_abs_diff'] <= check['tolerance']
    assert check['inputs'] == 64 + 8  # the example batch from the training data and 8 random inputs
    assert f'torch -> Keras: max |diff| {check["max_abs_diff"]:.3g}' in proc.stderr
    baseline = json.loads((run / 'stages' / 'baseline.json').read_text())['summary']
    assert baseline['torch'] == {k: v for k, v in record.items() if k != 'reduced'}
    assert baseline['trained_epochs'] == 0
    # The converted float model classifies the test split as the torch module does.
    _, net = torch_inputs
    x_test, y_test = split_of(run)
    assert x_test.shape[1:] == (8, 8, 1)  # NCHW data stored channels-last
    with torch.no_grad():
        torch_pred = net(torch.from_numpy(np.moveaxis(x_test, -1, 1).copy())).argmax(1).numpy()
    assert baseline['test_accuracy'] == pytest.approx(float(np.mean(torch_pred == y_test)), abs=1.5 / len(y_test))


def split_of(run):
    with np.load(run / 'data' / 'dataset.npz') as data:
        return data['x_test'], data['y_test']


def on_grid_inputs(directory, x: np.ndarray, seed=0):
    """NHWC inputs on the input quantizer's grid (from ``directory``/manifest.json): ``x``
    rounded to it, and random grid points over the type's whole range (saturating inside the model)."""
    q = json.loads((directory / 'manifest.json').read_text())['quantization']['input']
    assert q['kind'] == 'bits'
    step = 2.0 ** (q['integer'] + 1 - q['bits'])
    lo, hi = -(2 ** (q['bits'] - 1)), 2 ** (q['bits'] - 1) - 1
    rounded = np.clip(np.round(x.astype(np.float64) / step), lo, hi) * step
    spread = np.random.default_rng(seed).integers(lo, hi + 1, (100, *x.shape[1:])) * step
    return np.concatenate([rounded, spread])


def pt2_outputs(path, x: np.ndarray, dtype=torch.float64) -> np.ndarray:
    """The .pt2 at ``path`` loaded with torch.export.load, run on NHWC ``x`` (given to it as NCHW)."""
    module = torch.export.load(path).module().to(dtype)
    with torch.no_grad():
        return module(torch.from_numpy(np.moveaxis(x, -1, 1).copy()).to(dtype)).numpy()


def assert_pt2_equals_qkeras(directory, x: np.ndarray) -> None:
    """``directory``/reduced.pt2 equals ``directory``/reduced.keras exactly on on-grid inputs:
    in float64, and in float32 too (these fixed-point sums are exact in float32, as QKeras's own)."""
    from hls_backend import load_qkeras_model

    x = on_grid_inputs(directory, x)
    qkeras_out = load_qkeras_model(directory / 'reduced.keras').predict(x.astype(np.float32), verbose=0)
    out64 = pt2_outputs(directory / 'reduced.pt2', x)
    assert out64.dtype == np.float64 and out64.shape == qkeras_out.shape == (len(x), 10)
    np.testing.assert_array_equal(out64, qkeras_out.astype(np.float64))
    np.testing.assert_array_equal(pt2_outputs(directory / 'reduced.pt2', x, torch.float32), qkeras_out)


def test_reduced_pt2_loads_in_torch_and_equals_qkeras(torch_run):
    """reduced.pt2 loads in torch and equals the QKeras reduced model exactly on inputs on
    the input grid (float64 and float32); it is the channel-reduced model."""
    run, _ = torch_run
    manifest = json.loads((run / 'compress' / 'manifest.json').read_text())
    assert manifest['torch']['reduced']['file'] == 'reduced.pt2'
    assert manifest['torch']['reduced']['input_shape'] == [1, 8, 8]
    assert json.loads((run / 'stages' / 'compress.json').read_text())['summary']['reduced_pt2'] == 'reduced.pt2'
    assert_pt2_equals_qkeras(run / 'compress', split_of(run)[0])
    # What comes back is the channel-reduced model: the conv keeps 2 of its 4 channels,
    # and the Linear reads the 2 x 3 x 3 features left.
    conv1 = manifest['layers']['conv2d_0']
    assert (conv1['channels_before'], conv1['channels_after']) == (4, 2)
    shapes = {tuple(v.shape) for v in torch.export.load(run / 'compress' / 'reduced.pt2').state_dict.values()}
    assert (2, 1, 3, 3) in shapes and (10, 18) in shapes and not any(s[0] == 4 for s in shapes if len(s) == 4)


@pytest.mark.slow
def test_run_to_bit_exact_csim_and_rtl(torch_run, torch_inputs, tmp_path):
    """The same run continued through the hardware stages with the RTL route on: the C
    simulation and the Verilator simulation match every output bit of every test sample,
    and those outputs (the QKeras logits in tb_data) are reduced.pt2's."""
    run = own_copy(torch_run[0], tmp_path)
    config = write_config(tmp_path / 'rtl.yaml', torch_inputs[0], rtl={'enabled': True})
    proc = cli('run', config, '--out', run, '--resume')
    assert proc.returncode == 0, proc.stderr[-3000:]
    cached = {line.split(':')[0] for line in proc.stderr.splitlines() if line.endswith(': cached')}
    assert cached == {'data', 'baseline', 'compress'}
    metrics = json.loads((run / 'metrics.json').read_text())
    test_size = len(split_of(run)[1])
    for route in ('csim', 'rtl'):
        assert metrics[route]['exact'], metrics[route]
        assert metrics[route]['exact_matches'] == metrics[route]['samples'] == test_size
    assert metrics['accuracy']['rtl'] == metrics['accuracy']['csim'] == metrics['accuracy']['quantized']
    Metrics.model_validate(metrics)
    assert metrics['torch']['reduced']['file'] == 'reduced.pt2' and metrics['torch']['conversion_check']['ok']
    # the summary names where the reduced model went (rich may fold the long path: compare without white space)
    assert f'reducedmodelout:{run / "compress" / "reduced.pt2"}' in ''.join(proc.stdout.split())
    tb = run / 'hls' / 'project' / 'tb_data'
    x = np.loadtxt(tb / 'tb_input_features.dat', ndmin=2).reshape(test_size, 8, 8, 1)
    expected = np.loadtxt(tb / 'tb_output_predictions.dat', ndmin=2)
    np.testing.assert_array_equal(pt2_outputs(run / 'compress' / 'reduced.pt2', x), expected)
    assert 'bit-exact' in proc.stdout


# ---------------------------------------------------------------------------
# Bad torch inputs: a named error, exit 2, nothing half-written
# ---------------------------------------------------------------------------


def test_missing_torch_file_stops_before_the_run_directory(torch_inputs, tmp_path):
    d, _ = torch_inputs
    for spec, message in [
        (tmp_path / 'nope.pt2', f"model file {tmp_path / 'nope.pt2'} (config key 'model.path') does not exist"),
        (f'{tmp_path / "nets.py"}:make', f'file {tmp_path / "nets.py"} does not exist'),
    ]:
        config = write_config(tmp_path / 'missing.yaml', d, model={'path': str(spec)})
        proc = cli('run', config, '--out', tmp_path / 'run')
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert 'Traceback' not in proc.stderr
        assert not (tmp_path / 'run').exists()


def test_unsupported_op_names_the_node_and_keeps_only_finished_stages(torch_inputs, tmp_path):
    """A sigmoid in a 'file.py:callable' model: the baseline stage stops naming the node,
    its op and module; the data stage's outputs stay, nothing of the baseline is written."""
    d, _ = torch_inputs
    source = tmp_path / 'nets.py'
    source.write_text(
        'from torch import nn\n\n\n'
        'def make():\n'
        '    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(144, 10))\n'
    )
    config = write_config(tmp_path / 'sigmoid.yaml', d, model={'path': f'{source}:make', 'input_shape': [1, 8, 8]})
    run = tmp_path / 'run'
    proc = cli('run', config, '--out', run)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "node 'sigmoid' (aten.sigmoid.default) from module '1' (Sigmoid)" in proc.stderr
    assert 'is not supported; supported: nn.Linear' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ['config.yaml', 'data', 'stages']
    assert [p.name for p in (run / 'stages').iterdir()] == ['data.json']


def test_layout_is_for_npz_data(tmp_path):
    message = 'data.layout describes .npz data (dataset: npz)'
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({'data': {'layout': 'NCHW'}})
    config = tmp_path / 'digits_nchw.yaml'
    config.write_text(yaml.safe_dump({'data': {'layout': 'NCHW'}}))
    proc = cli('run', config, '--out', tmp_path / 'run')
    assert proc.returncode == 2 and message in proc.stderr and not (tmp_path / 'run').exists()


def test_input_shape_that_contradicts_the_data_is_named(torch_inputs, tmp_path):
    d, _ = torch_inputs
    config = write_config(tmp_path / 'shape.yaml', d, model={'path': str(d / 'tiny_cnn.pt2'), 'input_shape': [8, 8, 1]})
    proc = cli('run', config, '--out', tmp_path / 'run', '--stop-after', 'baseline')
    assert proc.returncode == 2
    assert "config key 'model.input_shape' is [8, 8, 1] (torch layout)" in proc.stderr
    assert 'i.e. [1, 8, 8] in torch layout' in proc.stderr and 'data.layout' in proc.stderr
    assert not (tmp_path / 'run' / 'baseline').exists()


# ---------------------------------------------------------------------------
# lpsubnet prune with a PyTorch model
# ---------------------------------------------------------------------------


def test_prune_a_torchscript_model_writes_reduced_pt2(torch_inputs, tmp_path):
    d, _ = torch_inputs
    out = tmp_path / 'pruned'
    proc = cli(
        'prune', d / 'tiny_cnn_script.pt', '--data', d / 'digits_nchw.npz', '--layout', 'NCHW',
        '--input-shape', '1,8,8', '--out', out, '--epochs', 3, '--qat-epochs', 1, '--wbits', 6, '--seed', 3,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ['manifest.json', 'reduced.keras', 'reduced.pt2']
    record = json.loads((out / 'manifest.json').read_text())['torch']
    assert record['kind'] == 'RecursiveScriptModule' and record['torch_input_shape'] == [1, 8, 8]
    assert record['conversion_check']['ok'] and record['reduced']['file'] == 'reduced.pt2'
    assert f'torch -> Keras: max |diff| {record["conversion_check"]["max_abs_diff"]:.3g}' in proc.stdout
    assert 'reduced.pt2 and manifest.json' in proc.stdout
    with np.load(d / 'digits_nchw.npz') as data:
        x = np.moveaxis(data['x_train'][:300], 1, -1)
    assert_pt2_equals_qkeras(out, x)


@pytest.mark.parametrize(
    'args,message',
    [
        (['{d}/nope.pt2'], 'model file {d}/nope.pt2 does not exist'),
        (['{d}/tiny_cnn.pt2', '--layout', 'NHWC'], 'takes inputs of shape [1, 8, 8]'),
        (['{d}/tiny_cnn_script.pt', '--input-shape', '8,8,1'], '--input-shape is [8, 8, 1] (torch layout)'),
        (['{d}/tiny_cnn_script.pt', '--input-shape', '1,x'], 'is not a shape of positive sizes'),
    ],
)
def test_prune_bad_torch_input_names_it_and_writes_nothing(torch_inputs, tmp_path, args, message):
    d, _ = torch_inputs
    args = [a.format(d=d) for a in args]
    layout = [] if '--layout' in args else ['--layout', 'NCHW']
    proc = cli('prune', *args, '--data', d / 'digits_nchw.npz', *layout, '--out', tmp_path / 'out')
    assert proc.returncode == 2 and message.format(d=d) in proc.stderr, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out').exists()


# ---------------------------------------------------------------------------
# lpsubnet hls / rtl with a PyTorch model: converted, then the normal flow
# ---------------------------------------------------------------------------


def test_hls_converts_a_torch_model_and_refuses_it_float(torch_inputs, tmp_path):
    """The float model converted from torch cannot be exact in hardware: the normal flow
    names the float layer, and the message says how to quantize it; the conversion
    check is printed first, and nothing is written."""
    d, _ = torch_inputs
    for command in ('hls', 'rtl'):
        proc = cli(command, d / 'tiny_cnn.pt2', '--out', tmp_path / command)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert 'torch -> Keras: max |diff|' in proc.stdout
        assert "layer 'conv2d_0' (Conv2D) has float weights" in proc.stderr and 'Traceback' not in proc.stderr
        assert f'quantize it with `lpsubnet prune {d / "tiny_cnn.pt2"} --data' in proc.stderr
        assert not (tmp_path / command).exists()


def test_hls_torch_model_checked_on_the_inputs_in_their_layout(torch_inputs, tmp_path):
    """--inputs in torch's layout (--layout NCHW) are the conversion's example input (40
    samples + 8 random ones); read as channels-last they contradict the .pt2's shape."""
    d, _ = torch_inputs
    args = ('hls', d / 'tiny_cnn.pt2', '--out', tmp_path / 'p', '--inputs', d / 'x_nchw.npy', '--layout')
    proc = cli(*args, 'NCHW', '--default-precision', 'ap_fixed<16,6>')
    assert 'over 48 inputs' in proc.stdout, proc.stdout
    # a float model's weights are refused even at a default precision
    assert proc.returncode == 2 and "layer 'conv2d_0' (Conv2D) has float weights" in proc.stderr
    proc = cli(*args, 'NHWC')
    assert proc.returncode == 2 and 'takes inputs of shape [1, 8, 8]' in proc.stderr and 'give [8, 1, 8]' in proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'p').exists()


def test_hls_inputs_in_nchw_for_a_keras_model(torch_run, torch_inputs, tmp_path):
    """--layout NCHW moves --inputs channels-last for a Keras MODEL too (here the run's
    reduced.keras): the project's test data are the same digits, NHWC (k/16: on the input grid)."""
    run, _ = torch_run
    d, _ = torch_inputs
    out = tmp_path / 'project'
    proc = cli(
        'hls', run / 'compress' / 'reduced.keras', '--out', out, '--inputs', d / 'x_nchw.npy', '--layout', 'NCHW'
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    x = np.loadtxt(out / 'tb_data' / 'tb_input_features.dat', ndmin=2)
    np.testing.assert_array_equal(x, np.moveaxis(np.load(d / 'x_nchw.npy'), 1, -1).reshape(40, -1))
