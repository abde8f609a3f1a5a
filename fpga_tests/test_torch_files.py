"""PyTorch model files: a torch.export program (.pt2), TorchScript (scripted or traced)
and 'file.py:callable' / 'package.module:callable' all convert to the same Keras model;
every wrong file or spec gets a one-line error that names it and says what to give."""

import numpy as np
import pytest
import torch

from fpga_tests import torch_models
from pruner.torch_files import is_torch_spec, load_torch
from pruner.torch_import import TorchImportError, convert_torch, to_channels_last

NAME = 'bn_pool_cnn'
SHAPE = torch_models.MODELS[NAME][1]


@pytest.fixture(scope='module')
def module():
    return torch_models.build(NAME)


@pytest.fixture(scope='module')
def reference(module):
    x = torch_models.inputs(NAME, 20, seed=3)
    with torch.no_grad():
        return x, module(x).numpy()


def keras_matches(model, reference):
    x, expected = reference
    got = np.asarray(model(to_channels_last(x.numpy()), training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pt2_program_knows_its_input_shape(tmp_path, module, reference):
    path = tmp_path / 'net.pt2'
    # exported with a batch of 1: the check runs the program chunk by chunk
    torch.export.save(torch.export.export(module, (torch_models.inputs(NAME, 1),)), path)
    loaded, shape = load_torch(path)
    assert shape == SHAPE
    conversion = convert_torch(loaded, torch_models.inputs(NAME, 5))
    assert conversion.check.inputs == 13 and conversion.check.ok
    keras_matches(conversion.model, reference)


@pytest.mark.parametrize('kind', ['script', 'trace'])
def test_torchscript_file(tmp_path, module, reference, kind):
    path = tmp_path / f'net_{kind}.pt'
    scripted = torch.jit.script(module) if kind == 'script' else torch.jit.trace(module, torch_models.inputs(NAME, 2))
    scripted.save(str(path))
    loaded, shape = load_torch(path, SHAPE)
    assert shape == SHAPE and isinstance(loaded, torch.jit.ScriptModule)
    conversion = convert_torch(loaded, torch_models.inputs(NAME, 4))
    keras_matches(conversion.model, reference)


def test_callable_in_a_python_file(tmp_path, reference):
    source = tmp_path / 'my_nets.py'
    source.write_text(
        'from fpga_tests import torch_models\n\ndef make():\n    return torch_models.build("bn_pool_cnn")\n'
    )
    spec = f'{source}:make'
    assert is_torch_spec(spec)
    loaded, shape = load_torch(spec, list(SHAPE))
    assert shape == SHAPE
    keras_matches(convert_torch(loaded, torch_models.inputs(NAME, 4)).model, reference)


def test_callable_in_an_importable_module():
    loaded, shape = load_torch('fpga_tests.torch_models:JetMLP', (16,))
    assert isinstance(loaded, torch.nn.Module) and shape == (16,)


def test_is_torch_spec_tells_torch_from_keras(tmp_path):
    assert is_torch_spec('net.pt2') and is_torch_spec('net.pt') and is_torch_spec('pkg.mod:build')
    assert not is_torch_spec('model.keras') and not is_torch_spec(tmp_path / 'missing.h5')


def one_line(exc) -> str:
    message = str(exc.value)
    assert '\n' not in message
    return message


def test_state_dict_pickle_says_what_to_save(tmp_path, module):
    path = tmp_path / 'weights.pt'
    torch.save(module.state_dict(), path)
    with pytest.raises(TorchImportError) as info:
        load_torch(path, SHAPE)
    message = one_line(info)
    assert str(path) in message and 'torch.save pickle' in message
    assert 'torch.export.save(torch.export.export(model, (x,)), ' in message and "'file.py:function'" in message


@pytest.mark.parametrize(
    'spec, shape, message',
    [
        ('{tmp}/missing.pt2', None, r'model file \S+missing.pt2 does not exist'),
        ('{tmp}/nets.py:make', (1, 8, 8), r'file \S+nets.py does not exist'),
        ('fpga_tests.torch_models:no_such', (1, 8, 8), r"fpga_tests.torch_models has no attribute 'no_such'"),
        ('fpga_tests.torch_models:JetMLP', None, r'the input shape is needed .* model.input_shape'),
        ('fpga_tests.torch_models:randomize_batchnorm', (16,), r'calling randomize_batchnorm\(\) failed: TypeError'),
        ('{tmp}/garbage.pt2', None, r'could not be read by torch.export.load'),
        ('{tmp}/garbage.ts', (3,), r'garbage.ts is not a torch.export program \(.pt2\), a TorchScript file'),
    ],
    ids=['missing', 'missing_py', 'no_attribute', 'no_shape', 'call_fails', 'bad_pt2', 'bad_torchscript'],
)
def test_bad_specs_name_the_file(tmp_path, spec, shape, message):
    (tmp_path / 'garbage.pt2').write_bytes(b'not a program')
    (tmp_path / 'garbage.ts').write_bytes(b'not a program')
    with pytest.raises(TorchImportError, match=message) as info:
        load_torch(spec.format(tmp=tmp_path), shape)
    one_line(info)


def test_pt2_shape_disagreeing_with_the_data_is_refused(tmp_path, module):
    path = tmp_path / 'net.pt2'
    torch.export.save(torch.export.export(module, (torch_models.inputs(NAME, 2),)), path)
    with pytest.raises(TorchImportError, match=r'takes inputs of shape \[1, 8, 8\] .* give \[8, 8, 1\]'):
        load_torch(path, (8, 8, 1))


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # control flow on values: torch.export cannot trace it
            return x * 2
        return x


def test_untraceable_module_says_why():
    with pytest.raises(TorchImportError, match=r'torch.export could not trace DataDependent: \w+') as info:
        convert_torch(DataDependent(), torch.randn(2, 3))
    one_line(info)
