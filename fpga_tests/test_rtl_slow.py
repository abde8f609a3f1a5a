"""Slow RTL-route cases: benchmark-size models, and an independent cycle count.

- the 16-64-32-32-5 MLP (hls4ml jet-tagging shape) and a digits-size CNN
  (8x8x1, two 3x3 convs of 8 filters, max pooling, Dense 32->10) on scikit-learn's
  bundled digits: built with Verilator, bit-exact, latency/II measured;
- cocotb + Icarus Verilog re-measure the latency of the same Verilog from the
  waveform, independently of Verilator and of lpsubnet's harness (skipped where
  cocotb or iverilog is absent).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap

import keras
import numpy as np
import pytest
from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

from fpga_tests.test_rtl_route import assert_estimates
from hls_backend.rtl import read_rtl_info, simulate_rtl, write_rtl

pytestmark = pytest.mark.slow


def wq(bits: int = 4):
    return {'kernel_quantizer': quantized_bits(bits, 0, alpha=1), 'bias_quantizer': quantized_bits(bits, 0, alpha=1)}


def jet_mlp() -> keras.Model:
    keras.utils.set_random_seed(10)
    inp = keras.Input((16,), name='x')
    h = QActivation(quantized_bits(10, 3, alpha=1), name='q_in')(inp)
    for i, units in enumerate((64, 32, 32)):
        h = QDense(units, activation=quantized_relu(8, 3), name=f'dense{i}', **wq(6))(h)
    out = QDense(5, name='logits', **wq(6))(h)
    out = keras.layers.Activation('softmax', name='softmax')(out)
    return keras.Model(inp, out, name='jet_mlp')


def digits_cnn() -> keras.Model:
    keras.utils.set_random_seed(11)
    inp = keras.Input((8, 8, 1), name='image')
    h = QActivation(quantized_bits(8, 0, alpha=1), name='q_in')(inp)
    h = QConv2D(8, 3, activation=quantized_relu(6, 2), name='conv1', **wq())(h)
    h = QConv2D(8, 3, activation=quantized_relu(6, 2), name='conv2', **wq())(h)
    h = keras.layers.MaxPooling2D(2, name='pool')(h)
    h = keras.layers.Flatten(name='flatten')(h)
    out = QDense(10, name='logits', **wq())(h)
    return keras.Model(inp, out, name='digits_cnn')


def digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    images = load_digits().images[:n] / 16.0
    return images[..., None]


@pytest.fixture(scope='module')
def jet_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('jet')
    model = jet_mlp()
    model.save(work / 'jet.keras')
    x = np.random.default_rng(3).normal(0, 1.5, (1000, 16))
    info = write_rtl(work / 'jet.keras', work / 'rtl', inputs=x)
    return info, simulate_rtl(work / 'rtl'), work


@pytest.fixture(scope='module')
def digits_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('digits')
    model = digits_cnn()
    model.save(work / 'cnn.keras')
    info = write_rtl(work / 'cnn.keras', work / 'rtl', inputs=digits(500))
    return info, simulate_rtl(work / 'rtl'), work


def test_jet_mlp(jet_run):
    info, result, _ = jet_run
    assert info.softmax_stripped == 'softmax'
    assert result.samples == 1000 and result.exact_matches == 1000
    assert result.latency_cycles == info.design['pipeline_stages'] == 8
    assert result.initiation_interval == 1
    assert_estimates(result.resources, info)
    assert result.checks['da4ml_predict']['exact'] and result.checks['trace']['exact']
    assert result.build_seconds > 0  # how long: bench/ (tool timings), not a test expectation


def test_digits_cnn(digits_run):
    info, result, _ = digits_run
    assert result.samples == 500 and result.exact_matches == 500
    assert result.latency_cycles == info.design['pipeline_stages'] == 6
    assert result.initiation_interval == 1
    assert_estimates(result.resources, info)
    assert result.checks['da4ml_predict']['exact'] and result.checks['trace']['exact']


# --- independent cycle count: cocotb + Icarus Verilog -------------------------------------

COCOTB_TB = '''
"""cocotb testbench written by lpsubnet's test_rtl_slow: streams one sample per clock."""
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


def _int(value):
    """The port as an unsigned integer, or "x" while registers are still uninitialized."""
    try:
        return str(value.to_unsigned() if hasattr(value, "to_unsigned") else int(value))
    except ValueError:
        return "x"


@cocotb.test()
async def stream(dut):
    spec = json.loads(open(os.environ["LPSUBNET_TB_SPEC"]).read())
    words = [int(w) for w in spec["input_words"]]
    try:
        clock = Clock(dut.clk, 10, unit="ns")
    except TypeError:  # cocotb 1.x
        clock = Clock(dut.clk, 10, units="ns")
    cocotb.start_soon(clock.start())
    outputs = []
    for cycle in range(len(words) + spec["drain"]):
        await FallingEdge(dut.clk)
        dut.model_inp.value = words[min(cycle, len(words) - 1)]
        await RisingEdge(dut.clk)
        await ReadOnly()
        outputs.append(_int(dut.model_out.value))
    with open(os.environ["LPSUBNET_TB_OUT"], "w") as handle:
        json.dump(outputs, handle)
'''


def _pack(codes: np.ndarray, width: int) -> list[int]:
    mask = (1 << width) - 1
    words = []
    for row in codes:
        word = 0
        for i, value in enumerate(int(v) for v in row):
            word |= (value & mask) << (i * width)
        words.append(word)
    return words


def test_cycle_count_with_cocotb_and_icarus(jet_run, tmp_path):
    if shutil.which('iverilog') is None:
        pytest.skip(
            'iverilog (Icarus Verilog) is not on PATH; install it (Debian: apt-get install iverilog) for this check'
        )
    cocotb = pytest.importorskip('cocotb', reason='cocotb is not installed (pip install cocotb==2.1.0) for this check')
    try:
        from cocotb_tools.runner import get_runner  # cocotb >= 2.0
    except ImportError:
        from cocotb.runner import get_runner  # cocotb 1.9

    _, result, work = jet_run
    project = work / 'rtl'
    info = read_rtl_info(project)
    io = info.design['io']
    x = np.load(project / 'tb_data' / 'inputs.npy')[:50]
    reference = np.load(project / 'tb_data' / 'reference.npy')[:50]
    codes = (x.reshape(len(x), -1) * 2.0 ** io['input']['f']).astype(np.int64)
    expected = _pack(np.round(reference * 2.0 ** io['output']['f']).astype(np.int64), io['output']['width'])

    spec = tmp_path / 'spec.json'
    spec.write_text(json.dumps({'input_words': [str(w) for w in _pack(codes, io['input']['width'])], 'drain': 20}))
    (tmp_path / 'lpsubnet_cocotb_tb.py').write_text(textwrap.dedent(COCOTB_TB))
    sources = sorted((project / 'src').glob('*.v')) + sorted((project / 'src' / 'static').glob('*.v'))
    runner = get_runner('icarus')
    top = f'{info.project_name}_wrapper'
    runner.build(sources=sources, hdl_toplevel=top, build_dir=tmp_path / 'build', always=True)
    out_file = tmp_path / 'outputs.json'
    sys.path.insert(0, str(tmp_path))
    try:
        runner.test(
            hdl_toplevel=top,
            test_module='lpsubnet_cocotb_tb',
            build_dir=tmp_path / 'build',
            test_dir=tmp_path,
            extra_env={
                'LPSUBNET_TB_SPEC': str(spec),
                'LPSUBNET_TB_OUT': str(out_file),
                'PYTHONPATH': os.pathsep.join([str(tmp_path), *sys.path]),
            },
        )
    finally:
        sys.path.remove(str(tmp_path))
    observed = [None if v == 'x' else int(v) for v in json.loads(out_file.read_text())]
    latencies = [lat for lat in range(20) if observed[lat : lat + len(expected)] == expected]
    assert latencies == [result.latency_cycles], (
        f'Icarus latency {latencies}, Verilator-measured {result.latency_cycles}'
    )
    assert cocotb is not None
