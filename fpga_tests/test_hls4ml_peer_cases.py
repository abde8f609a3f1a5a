"""hls4ml's own QKeras test cases (test_qkeras.py, test_binary_cnn.py, test_cnn_mnist_qkeras.py,
test_serialization.py at hls4ml v1.3.0; see fpga_tests/hls4ml_peer_cases.py, which names
the peer test of every case) run as an hls4ml user's script with ``exact_config``: each
passes the peer's own criterion or is refused with an error naming the layer and why.

A few representative cases run by default; the cross-product over Vivado/Vitis x
io_parallel/io_stream is slow (``python -m fpga_tests.hls4ml_peer_cases`` counts it).
"""

import pytest

from fpga_tests.hls4ml_peer_cases import CASES, COMBOS, run_case

# (case, backend, io_type) run by default: one per family, every combination used.
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


@pytest.mark.parametrize('case_id,backend,io_type', PARAMS)
def test_peer_case(case_id, backend, io_type, tmp_path):
    case = CASES[case_id]
    outcome, reason = run_case(case, backend, io_type, tmp_path / 'prj')  # a failed criterion raises
    assert outcome == case.expected, f'{case.peer}: {outcome} {reason}'
    if outcome == 'refused':
        assert "layer '" in reason, reason  # the refusal names the layer
