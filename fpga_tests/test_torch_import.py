"""from_torch: PyTorch modules -> float Keras 3 models that compute the same outputs.

Every model family of the issue (jet-tagger MLP, CNN with BatchNorm and pooling,
residual block, concatenation, depthwise-separable block, plus 1-D convolutions) is
converted and compared with torch on inputs the conversion's own check never saw;
unsupported ops and arguments stop with an error naming the node, op and module; the
built-in check catches a wrong feature order.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pruner
from fpga_tests import torch_models
from pruner import torch_import
from pruner.torch_import import (
    ConversionMismatchError,
    UnsupportedTorchOpError,
    convert_torch,
    from_torch,
    to_channels_first,
    to_channels_last,
)

ROOT = Path(__file__).resolve().parents[1]


def keras_outputs(model, x: torch.Tensor) -> np.ndarray:
    return to_channels_first(np.asarray(model(to_channels_last(x.numpy()), training=False)))


@pytest.fixture(scope='module', params=sorted(torch_models.MODELS))
def converted(request):
    name = request.param
    module = torch_models.build(name)
    conversion = convert_torch(module, torch_models.inputs(name, 8, seed=1))
    return name, module, conversion


def test_outputs_match_torch_on_unseen_inputs(converted):
    name, module, conversion = converted
    x = torch_models.inputs(name, 64, seed=7) * 2.0  # other inputs, wider spread than the check's
    with torch.no_grad():
        expected = module(x).numpy()
    got = keras_outputs(conversion.model, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_the_check_ran_on_example_and_random_inputs(converted):
    name, module, conversion = converted
    check = conversion.check
    assert check.inputs == 8 + 8  # the example batch and 8 random samples
    assert len(check.per_input) == 16
    assert check.ok and check.max_abs_diff <= check.tolerance < 1e-3
    assert check.max_abs_output > 0


def test_keras_input_is_channels_last(converted):
    name, module, conversion = converted
    _, shape = torch_models.MODELS[name]
    assert conversion.torch_input_shape == shape
    assert conversion.keras_input_shape == (shape[1:] + shape[:1] if len(shape) > 1 else shape)


def test_weights_are_copied_not_reinitialized(converted):
    name, module, conversion = converted
    keras_params = sum(int(np.prod(w.shape)) for w in conversion.model.weights)
    torch_params = sum(p.numel() for p in module.parameters()) + sum(
        b.numel() for n, b in module.named_buffers() if not n.endswith('num_batches_tracked')
    )
    assert keras_params == torch_params


def test_layer_names_follow_module_paths():
    model = from_torch(torch_models.build('residual'), torch_models.inputs('residual'), verbose=0)
    names = {layer.name for layer in model.layers}
    assert {'stem_0', 'stem_1', 'block1_conv1', 'block1_bn2', 'block2_shortcut_0', 'fc'} <= names
    kinds = {layer.__class__.__name__ for layer in model.layers}
    assert {'Conv2D', 'BatchNormalization', 'Add', 'ZeroPadding2D', 'GlobalAveragePooling2D', 'Dense'} <= kinds


def test_sequential_names_are_identifiers():
    """nn.Sequential's forward argument is 'input' and its children are '0', '1', ...; hls4ml
    refuses a layer named 'input' and names C++ types after layers. The Keras input becomes
    'input_layer' (Keras's default) and a child's name is prefixed with its class; elsewhere
    the input keeps the argument's name."""
    sequential = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model = from_torch(sequential, torch.randn(5, 4), verbose=0)
    names = [layer.name for layer in model.layers]
    assert model.inputs[0].name == 'input_layer' and 'input' not in names
    assert {'linear_0', 'relu_1', 'linear_2'} <= set(names) and all(n.isidentifier() for n in names)
    model = from_torch(torch_models.build('jet_mlp'), torch_models.inputs('jet_mlp'), verbose=0)
    assert model.inputs[0].name == 'x'


def test_linear_after_flatten_reads_features_channels_last():
    """torch flattens (C, H, W), Keras (H, W, C): row j of the Keras kernel is torch's
    input feature c*H*W + h*W + w for j = (h*W + w)*C + c."""
    module = torch_models.build('bn_pool_cnn')
    model = from_torch(module, torch_models.inputs('bn_pool_cnn'), verbose=0)
    kernel = model.get_layer('classifier').get_weights()[0]
    weight = module.classifier.weight.detach().numpy()  # (10, C*H*W) with C=8, H=W=2
    for c, h, w in [(0, 0, 1), (3, 1, 0), (7, 1, 1)]:
        np.testing.assert_array_equal(kernel[(h * 2 + w) * 8 + c], weight[:, c * 4 + h * 2 + w])


def test_depthwise_and_explicit_padding_become_keras_layers():
    model = from_torch(torch_models.build('separable'), torch_models.inputs('separable'), verbose=0)
    depthwise = [layer for layer in model.layers if layer.__class__.__name__ == 'DepthwiseConv2D']
    assert sorted(layer.get_config()['depth_multiplier'] for layer in depthwise) == [1, 2]
    assert model.get_layer('dw2_0').get_config()['strides'] == (2, 2)
    assert model.get_layer('dw2_0_pad').__class__.__name__ == 'ZeroPadding2D'  # torch pads 1 on each side
    relu6 = [layer for layer in model.layers if layer.__class__.__name__ == 'ReLU']
    assert any(layer.get_config()['max_value'] == 6.0 for layer in relu6)


def test_check_is_printed_and_saved(tmp_path, capsys):
    report = tmp_path / 'check.json'
    from_torch(torch_models.build('jet_mlp'), torch_models.inputs('jet_mlp'), report=report)
    line = capsys.readouterr().out
    assert re.search(r'torch -> Keras: max \|diff\| \S+ of the float outputs over 24 inputs', line)
    data = json.loads(report.read_text())
    assert data['check']['ok'] is True and data['check']['inputs'] == 24
    assert data['torch_input_shape'] == [16] and data['keras_input_shape'] == [16]


def test_wrong_feature_order_is_caught_by_the_check(monkeypatch):
    """The classic mistake, a flatten treated as if Keras flattened like torch (no
    reordering of the Linear's input features), is what the output check exists for."""
    monkeypatch.setattr(torch_import, 'flatten_perm', lambda shape: None)
    with pytest.raises(ConversionMismatchError, match=r'max \|diff\| .* does not reproduce the torch module'):
        from_torch(torch_models.build('bn_pool_cnn'), torch_models.inputs('bn_pool_cnn'), verbose=0)


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 3)
        self.head = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())

    def forward(self, x):
        return self.head(self.body(x))


def test_unsupported_op_names_node_op_module_and_supported_list():
    with pytest.raises(UnsupportedTorchOpError) as info:
        from_torch(WithSigmoid(), torch.randn(2, 4), verbose=0)
    message = str(info.value)
    assert "node 'sigmoid' (aten.sigmoid.default) from module 'head.1' (Sigmoid)" in message
    assert re.search(r' at test_torch_import\.py:\d+: ', message)  # the user's line that made the node
    assert 'not supported; supported: nn.Linear; nn.Conv1d, nn.Conv2d' in message
    assert message.count('\n') == 0


class Dilated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, dilation=2)

    def forward(self, x):
        return self.conv(x)


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, groups=2)

    def forward(self, x):
        return self.conv(x)


class FlatOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x).flatten(1)


class Scaled(nn.Module):
    def forward(self, x):
        return x + 1.0


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


@pytest.mark.parametrize(
    'module, shape, message',
    [
        (Dilated(), (1, 1, 8, 8), r"node 'conv2d' \(aten.conv2d.default\) from module 'conv' \(Conv2d\).*: dilation "
         r'\(2, 2\) is not supported \(supported: 1\)'),
        (Grouped(), (1, 4, 8, 8), r"module 'conv' \(Conv2d\).*grouped convolution \(groups=2, 4 in, 4 out channels\)"),
        (FlatOutput(), (1, 1, 6, 6), r'a model output is a flattened feature map'),
        (Scaled(), (1, 3), r'aten.add.Tensor.*adding a constant is not supported'),
    ],
    ids=['dilation', 'groups', 'flat_output', 'add_constant'],
)  # fmt: skip
def test_unsupported_arguments_are_named(module, shape, message):
    with pytest.raises(UnsupportedTorchOpError, match=message):
        from_torch(module, torch.randn(shape), verbose=0)


def test_two_inputs_are_refused():
    with pytest.raises(pruner.TorchImportError, match=r'example_input holds 2 tensors; supported: one input tensor'):
        convert_torch(TwoInputs(), (torch.randn(1, 3), torch.randn(1, 3)))
    program = torch.export.export(TwoInputs(), (torch.randn(1, 3), torch.randn(1, 3)))
    with pytest.raises(pruner.TorchImportError, match=r'takes 2 tensor inputs \(x, y\); supported: one'):
        convert_torch(program, torch.randn(1, 3))


def test_module_state_is_left_as_given():
    module = torch_models.build('bn_pool_cnn').train()
    from_torch(module, torch_models.inputs('bn_pool_cnn'), verbose=0)
    assert module.training  # exported in eval mode, then restored


def test_import_pruner_does_not_import_torch():
    code = 'import sys, pruner; assert "torch" not in sys.modules, "torch imported"; print(pruner.from_torch.__name__)'
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'from_torch'


def test_readme_lists_the_handler_table():
    from lpsubnet.readme_tables import current_block

    listed = current_block((ROOT / 'README.md').read_text(), 'torch-ops')
    assert listed == torch_import.supported_ops_markdown(), 'run: python -m lpsubnet.readme_tables README.md'


def test_every_handler_describes_itself():
    for handler in torch_import.handlers():
        assert handler.targets and handler.torch_api and handler.keras and handler.limits, type(handler).__name__
        assert all(t.startswith('aten.') for t in handler.targets)
