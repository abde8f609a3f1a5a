"""Weight-level sparsity in the hardware (issue 26, item 3): the zeros a weight-sparse
model carries are the zeros of its HLS weights and of its RTL design, da4ml's cost
model drops their products, and both routes stay bit-exact. The pruner side
(ranking, QAT, saving) is test_pruner_weight_masks.py."""

from __future__ import annotations

import numpy as np
import pytest

import hls_backend
from fpga_tests.pruner_models import digits, small_compress


@pytest.fixture(scope='module')
def sparse_model(tmp_path_factory):
    root = tmp_path_factory.mktemp('sparse')
    qmodel, manifest = small_compress(granularity='weight', weight_sparsity=0.7, weight_bits=4, activation_bits=6)
    path = root / 'sparse.keras'
    qmodel.save(path)
    return path, qmodel, manifest


def _kernels(model) -> dict[str, np.ndarray]:
    """Each layer's kernel as its quantizer gives it (the values the hardware holds)."""
    return {
        layer.name: np.asarray(layer.kernel_quantizer_internal(layer.kernel), dtype=np.float64)
        for layer in model.layers
        if hasattr(layer, 'kernel')
    }


def _weight_files(project) -> list[np.ndarray]:
    return [np.loadtxt(f, delimiter=',', ndmin=1) for f in sorted((project / 'firmware' / 'weights').glob('w*.txt'))]


def test_the_hls_weights_hold_the_models_zeros(sparse_model, tmp_path):
    path, qmodel, manifest = sparse_model
    x = digits()[2][:8]
    hls_backend.write_project(path, tmp_path / 'prj', inputs=x)
    files = _weight_files(tmp_path / 'prj')
    for name, kernel in _kernels(qmodel).items():
        assert manifest['weight_pruning']['layers'][name]['sparsity'] >= 0.69
        # The same values (hls4ml may lay a conv kernel out in another order): the zeros included.
        same = [w for w in files if w.size == kernel.size and np.array_equal(np.sort(w), np.sort(kernel.ravel()))]
        assert same, f'no weight file of the project holds the kernel of {name}'
        assert np.count_nonzero(same[0] == 0) == np.count_nonzero(kernel == 0) >= 0.69 * kernel.size


def test_da4ml_drops_the_products_of_zero_weights(sparse_model):
    import keras

    path, qmodel, _ = sparse_model
    sparse_cost = hls_backend.estimate_cost(qmodel).lut_estimate
    # The same model with every zero weight replaced by the smallest step its type has.
    dense = keras.models.clone_model(qmodel)
    dense.set_weights(qmodel.get_weights())
    for layer in dense.layers:
        if not hasattr(layer, 'kernel'):
            continue
        q = layer.kernel_quantizer_internal
        step = 2.0 ** (int(q.integer) + 1 - int(q.bits)) if q.keep_negative else 2.0 ** (int(q.integer) - int(q.bits))
        kernel = np.asarray(layer.kernel.numpy())
        layer.kernel.assign(np.where(kernel == 0, step, kernel).astype(kernel.dtype))
    dense_cost = hls_backend.estimate_cost(dense).lut_estimate
    assert sparse_cost < 0.75 * dense_cost, (sparse_cost, dense_cost)


@pytest.mark.slow
def test_a_weight_sparse_model_is_exact_in_c_simulation_and_rtl(sparse_model, tmp_path):
    path, _, _ = sparse_model
    x = digits()[2][:200]
    hls_backend.write_project(path, tmp_path / 'prj', inputs=x)
    result = hls_backend.csim(tmp_path / 'prj')
    assert result.exact_matches == result.samples == 200 and result.max_abs_diff == 0.0
    hls_backend.write_rtl(path, tmp_path / 'rtl', inputs=x)
    result = hls_backend.simulate_rtl(tmp_path / 'rtl', second_check=True)
    assert result.exact_matches == result.samples == 200 and result.max_abs_diff == 0.0


def test_the_priced_logic_is_checked_bit_for_bit(sparse_model, monkeypatch):
    import hls_backend.core.reference as reference

    _, qmodel, _ = sparse_model
    x = digits()[2][:64]
    estimate = hls_backend.estimate_cost(qmodel, inputs=x)
    assert estimate.samples == estimate.exact_samples == 64
    # The control: a reference one LSB off on one sample is one sample not exact.
    original = reference.reference_outputs

    def off_by_one_lsb(*args, **kwargs):
        y = original(*args, **kwargs).copy()
        y[5, 0] += 2.0**-20
        return y

    monkeypatch.setattr(reference, 'reference_outputs', off_by_one_lsb)
    assert hls_backend.estimate_cost(qmodel, inputs=x).exact_samples == 63
