"""hls4ml's own QKeras test cases (test_qkeras.py, test_binary_cnn.py, test_cnn_mnist_qkeras.py,
test_serialization.py at hls4ml v1.3.0; see fpga_tests/hls4ml_peer_cases.py, which names
the peer test of every case) run as an hls4ml user's script with ``exact_config``: each
is bit-exact against the QKeras model (float64 equality on every sample and output) or
refused with an error naming the layer and why. The peer's own tolerance criterion is
reported beside the verdict, never instead of it.

A few representative cases run by default; the cross-product over Vivado/Vitis x
io_parallel/io_stream is slow (``python -m fpga_tests.hls4ml_peer_cases`` counts it).
"""

import re
from pathlib import Path

import pytest

from fpga_tests.hls4ml_peer_cases import CASES, COMBOS, OUTCOMES, run_case

README = Path(__file__).resolve().parent.parent / 'README.md'

# (case, backend, io_type) run by default: one per family, every combination used; the
# jet tagger was one of the cases that passed only the peer's tolerance before.
DEFAULT = {
    ('quantizer_quantized_relu_4_2', 'Vitis', 'io_parallel'),
    ('qconv2dbn', 'Vivado', 'io_stream'),
    ('qseparableconv1d', 'Vitis', 'io_stream'),
    ('jet_accuracy_latency', 'Vivado', 'io_parallel'),
    ('btnn_4', 'Vitis', 'io_stream'),
    ('qlstm', 'Vivado', 'io_parallel'),
    ('quantised_po2_bit_width_Latency', 'Vivado', 'io_stream'),
    ('binary_cnn', 'Vitis', 'io_parallel'),
    ('serialization_test_save_load__model', 'Vitis', 'io_stream'),
}
PARAMS = [
    pytest.param(case_id, backend, io, marks=() if (case_id, backend, io) in DEFAULT else pytest.mark.slow)
    for case_id in CASES
    for backend, io in COMBOS
]


def test_default_selection_exists():
    assert {case_id for case_id, _, _ in DEFAULT} <= set(CASES)
    assert {case.expected for case in CASES.values()} <= {'exact', 'refused'}  # no case is expected to fail


@pytest.mark.parametrize('case_id,backend,io_type', PARAMS)
def test_peer_case(case_id, backend, io_type, tmp_path):
    case = CASES[case_id]
    result = run_case(case, backend, io_type, tmp_path / 'prj')
    assert result.outcome == case.expected, f'{case.peer}: {result.outcome} {result.reason}'
    if result.outcome == 'exact':
        assert result.samples > 0 and result.exact_samples == result.samples and result.max_abs_diff == 0
    else:
        assert "layer '" in result.reason, result.reason  # the refusal names the layer


def test_a_wrong_precision_in_the_config_is_a_failure(tmp_path):
    """Negative control: the design, not the reference, is perturbed. The result of an
    accepted case's QDense (a sum with 13 fractional bits, then quantized_relu(4, 0)) is
    truncated to 4 fractional bits in the config exact_config returned; the verdict must
    be ``failed`` with the samples counted (3/100 equal when measured). (hls4ml takes a Q-layer's weight type from its
    quantizer, not from the config: a changed 'weight' precision would change nothing.)"""

    def truncate_the_sum(config):
        config['LayerName']['qdense']['Precision']['result'] = 'fixed<8,4,TRN,SAT>'

    case = CASES['qactivation_kwarg_quantized_bits_quantized_relu(4,0)']
    result = run_case(case, 'Vitis', 'io_parallel', tmp_path / 'prj', edit_config=truncate_the_sum)
    assert result.outcome == 'failed', result
    assert 0 <= result.exact_samples < result.samples == 100 and result.max_abs_diff > 0
    assert result.reason.startswith(f'not bit-exact: {result.exact_samples}/100 samples equal')
    # ... while the peer's own criterion (allclose, atol 2^-3, rtol 1) accepts this design:
    # why it is reported beside the verdict and never decides it.
    assert result.peer_criterion == 'pass'


def test_readme_counts_are_the_expected_outcomes():
    """The README's counts are what the parametrised test above asserts, case by case."""
    expected = {outcome: 0 for outcome in OUTCOMES}
    for case in CASES.values():
        expected[case.expected] += len(COMBOS)
    text = ' '.join(README.read_text().split())
    match = re.search(
        r'[Oo]f (\d+) cases × (\d+), (\d+) are bit-exact against the QKeras model, (\d+) are refused.*?, (\d+) fail',
        text,
    )
    assert match, 'README: the peer-case counts sentence is missing'
    assert [int(n) for n in match.groups()] == [
        len(CASES),
        len(COMBOS),
        expected['exact'],
        expected['refused'],
        expected['failed'],
    ]
