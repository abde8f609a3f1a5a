"""Keras-2-era QKeras models (``model.json`` + ``*_weights.h5``, the format of hls4ml's
example models) as input to ``lpsubnet hls`` and ``exact_config``: read with Keras 3's
legacy loader, or refused with what to run instead.

The fixture is written here: a Keras-2 ``to_json()`` layout (class_name/config per layer,
``batch_input_shape``, nested ``inbound_nodes``, quantizers as class_name/config dicts or
strings, ``keras_version`` 2.4.0) and Keras' legacy HDF5 weight layout.
"""

import json

import numpy as np
import pytest

import hls_backend
from fpga_tests.cli_helpers import cli
from hls_backend.errors import BadInputError


def _quantizer(bits, integer):
    config = {'bits': bits, 'integer': integer, 'symmetric': 0, 'alpha': 1, 'keep_negative': True}
    return {'class_name': 'quantized_bits', 'config': {**config, 'use_stochastic_rounding': False}}


def _qdense(name, units, inbound, activation):
    return {
        'class_name': 'QDense',
        'name': name,
        'inbound_nodes': [[[inbound, 0, 0, {}]]],
        'config': {
            'name': name,
            'trainable': True,
            'dtype': 'float32',
            'units': units,
            'activation': activation,
            'use_bias': True,
            'kernel_initializer': {
                'class_name': 'VarianceScaling',
                'config': {'scale': 1.0, 'mode': 'fan_avg', 'distribution': 'uniform', 'seed': None},
            },
            'bias_initializer': {'class_name': 'Zeros', 'config': {}},
            'kernel_regularizer': None,
            'bias_regularizer': None,
            'activity_regularizer': None,
            'kernel_constraint': None,
            'bias_constraint': None,
            'kernel_quantizer': _quantizer(6, 0),
            'bias_quantizer': _quantizer(6, 0),
            'kernel_range': None,
            'bias_range': None,
        },
    }


def keras2_config(first_class='QActivation'):
    layers = [
        {
            'class_name': 'InputLayer',
            'name': 'input_1',
            'inbound_nodes': [],
            'config': {'batch_input_shape': [None, 16], 'dtype': 'float32', 'sparse': False, 'name': 'input_1'},
        },
        {
            'class_name': first_class,
            'name': 'q_in',
            'inbound_nodes': [[['input_1', 0, 0, {}]]],
            'config': {
                'name': 'q_in',
                'trainable': True,
                'dtype': 'float32',
                'activation': 'quantized_bits(8,2,alpha=1)',
            },
        },
        _qdense('fc1', 12, 'q_in', 'quantized_relu(6,2)'),
        _qdense('fc2', 5, 'fc1', 'linear'),
        {
            'class_name': 'Activation',
            'name': 'softmax',
            'inbound_nodes': [[['fc2', 0, 0, {}]]],
            'config': {'name': 'softmax', 'trainable': True, 'dtype': 'float32', 'activation': 'softmax'},
        },
    ]
    return {
        'class_name': 'Functional',
        'config': {
            'name': 'model',
            'layers': layers,
            'input_layers': [['input_1', 0, 0]],
            'output_layers': [['softmax', 0, 0]],
        },
        'keras_version': '2.4.0',
        'backend': 'tensorflow',
    }


@pytest.fixture
def keras2_files(tmp_path):
    """(json path, the weights written): hls4ml example-models naming, <stem>_weights.h5."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format, saving_utils
    from qkeras.utils import _add_supported_quantized_objects

    config = keras2_config()
    json_path = tmp_path / 'qkeras_mlp.json'
    json_path.write_text(json.dumps(config))  # before Keras reads it: model_from_config empties the dict
    custom_objects = {}
    _add_supported_quantized_objects(custom_objects)
    model = saving_utils.model_from_config(config, custom_objects=custom_objects)
    rng = np.random.default_rng(0)
    weights = [rng.uniform(-0.9, 0.9, w.shape).astype('float32') for w in model.get_weights()]
    model.set_weights(weights)
    with h5py.File(tmp_path / 'qkeras_mlp_weights.h5', 'w') as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return json_path, weights


def test_json_and_weights_are_read(keras2_files):
    path, weights = keras2_files
    model = hls_backend.load_qkeras_model(path)
    assert [layer.__class__.__name__ for layer in model.layers][1:3] == ['QActivation', 'QDense']
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights, strict=True))
    config = hls_backend.exact_config(path, softmax='skip')
    assert config['LayerName']['fc1']['Precision']['weight'] == 'fixed<6,1,TRN,WRAP>'
    assert config['LayerName']['softmax']['Skip'] is True


def test_lpsubnet_hls_reads_json(keras2_files, tmp_path):
    path, _ = keras2_files
    result = cli('hls', str(path), '--out', str(tmp_path / 'prj'), '--io-type', 'io_stream')
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'prj' / 'firmware' / 'myproject.cpp').exists()
    assert 'Traceback' not in result.stderr


def test_missing_weights_named(tmp_path):
    path = tmp_path / 'model.json'
    path.write_text(json.dumps(keras2_config()))
    with pytest.raises(BadInputError, match=r'model_weights.h5, model.h5, weights.h5.*none exists'):
        hls_backend.load_qkeras_model(path)
    result = cli('hls', str(path), '--out', str(tmp_path / 'prj'))
    assert result.returncode == 2 and 'none exists' in result.stderr and 'Traceback' not in result.stderr


def test_unreadable_model_refused_with_the_conversion(keras2_files, tmp_path):
    path, _ = keras2_files
    broken = path.with_name('broken.json')
    broken.write_text(json.dumps(keras2_config(first_class='QActivationFromAPlugin')))
    path.with_name('qkeras_mlp_weights.h5').rename(path.with_name('broken_weights.h5'))
    with pytest.raises(
        BadInputError,
        match=r"broken.json \(Keras 2.4.0\) uses the layer class 'QActivationFromAPlugin', which is neither a Keras "
        r'nor a QKeras layer.*`lpsubnet layers`',
    ):
        hls_backend.load_qkeras_model(broken)
    # A config Keras cannot map for another reason: the conversion to run once is named.
    config = keras2_config()
    config['config']['layers'][1]['config']['units'] = 'many'
    broken.write_text(json.dumps(config))
    with pytest.raises(
        BadInputError, match=r"(?s)broken.json \(Keras 2.4.0\) cannot be read.*model.save\('.*broken.keras'\)"
    ):
        hls_backend.load_qkeras_model(broken)
    not_json = tmp_path / 'notes.json'
    not_json.write_text('{"layers": []}')
    with pytest.raises(BadInputError, match='not a Keras model'):
        hls_backend.load_qkeras_model(not_json)
