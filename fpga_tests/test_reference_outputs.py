"""The QKeras reference when TensorFlow's graph run aborts: the same values, computed
eagerly, or a clear error when that fails too (core.reference.model_outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fpga_tests.fuzz_models import build_qkeras, input_samples
from hls_backend.core.reference import model_outputs
from hls_backend.errors import BuildError

# the layers of make fuzz's csim-io_parallel seed 100199, whose predict() aborted once
SEPARABLE = {
    'kind': 'conv1d',
    'input_shape': [8, 1],
    'input_q': {'q': 'bits', 'bits': 6, 'integer': -2, 'keep_negative': True, 'symmetric': False},
    'layers': [
        {
            'op': 'sepconv',
            'filters': 1,
            'kernel': 2,
            'strides': 1,
            'padding': 'same',
            'wq': {'bits': 6, 'integer': 2, 'symmetric': True},
            'bq': {'bits': 3, 'integer': 3},
            'pq': {'bits': 7, 'integer': 3},
            'act': {'q': 'bits', 'bits': 7, 'integer': 3, 'keep_negative': True, 'symmetric': False},
        },
        {'op': 'flatten'},
        {
            'op': 'dense',
            'units': 4,
            'wq': {'bits': 2, 'integer': -2},
            'bq': {'bits': 7, 'integer': 3},
            'act': {'q': 'bits', 'bits': 3, 'integer': 0, 'keep_negative': False, 'symmetric': False},
        },
    ],
    'seed': 30233,
    'init': 'scaled',
}

ONEDNN_ABORT = 'Status: 2, message: could not create a primitive descriptor for the reorder primitive.'


def _aborting_predict(*args, **kwargs):
    raise tf.errors.AbortedError(None, None, f'Graph execution error:\n\n{ONEDNN_ABORT}')


def test_an_aborted_graph_run_is_computed_eagerly_with_the_same_bits(monkeypatch):
    model = build_qkeras(SEPARABLE)
    x = input_samples(SEPARABLE, 2100)  # more than one eager batch of 1024
    expected = model_outputs(model, x)
    assert np.any(expected != 0)
    monkeypatch.setattr(model, 'predict', _aborting_predict)
    assert np.array_equal(model_outputs(model, x), expected)


def test_an_abort_in_both_ways_names_the_model_and_the_workaround(monkeypatch):
    import keras

    model = build_qkeras(SEPARABLE)
    monkeypatch.setattr(model, 'predict', _aborting_predict)

    def aborting_call(self, *args, **kwargs):
        raise tf.errors.InternalError(None, None, ONEDNN_ABORT)

    monkeypatch.setattr(keras.Model, '__call__', aborting_call)
    with pytest.raises(BuildError) as info:
        model_outputs(model, input_samples(SEPARABLE, 10))
    message = str(info.value)
    assert f"model '{model.name}'" in message
    assert 'AbortedError' in message and 'InternalError' in message and 'reorder primitive' in message
    assert 'TF_ENABLE_ONEDNN_OPTS=0' in message
