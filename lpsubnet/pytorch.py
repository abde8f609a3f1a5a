"""PyTorch models in lpsubnet's commands: which model paths are PyTorch, what they are
converted with, and where the reduced model goes back out as a ``.pt2``.

The conversion itself lives in pruner (``load_torch``, ``convert_torch``, ``to_torch``,
``export_torch``); this module only decides the inputs (the input shape from the
configuration or the data, the example batch from the training data) and the records
(the conversion check's figures, the ``.pt2`` written). torch is imported by pruner
when a conversion runs, never by ``import lpsubnet``.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .config import ConfigError

# Training samples the conversion is exported with and checked on (plus pruner's
# random inputs): enough to see a layout error, few enough to cost nothing.
EXAMPLE_SAMPLES = 64
REDUCED_PT2 = 'reduced.pt2'


def is_torch_model(path: str | Path | None) -> bool:
    from pruner.torch_files import is_torch_spec

    return path is not None and is_torch_spec(path)


def check_model_file(path: str | None, key: str = 'model.path') -> None:
    """Fail before anything is written when the model file (or the .py of 'file.py:fn') is missing."""
    if not path or Path(path).exists():
        return
    head, colon, _ = str(path).rpartition(':')
    if colon and is_torch_model(path):  # 'file.py:fn' or 'package.module:fn'
        if head.endswith('.py') and not Path(head).is_file():
            raise ConfigError(f"model '{path}' (config key '{key}'): file {head} does not exist")
        return  # a package module is imported when the model is loaded
    raise ConfigError(f"model file {path} (config key '{key}') does not exist")


def torch_layout(sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A channels-last sample shape (H, W, C) / (L, C) in torch's layout (C, H, W) / (C, L)."""
    shape = tuple(int(s) for s in sample_shape)
    return (shape[-1], *shape[:-1]) if len(shape) >= 2 else shape


def convert(
    spec: str | Path,
    x: np.ndarray | None,
    input_shape=None,
    seed: int = 0,
    say=print,
    names: tuple[str, str] = ("config key 'model.input_shape'", 'data.layout (NCHW or NHWC)'),
):
    """The float Keras model of the PyTorch model ``spec`` and the record of its conversion.

    ``x``: channels-last inputs (the training data); the first ``EXAMPLE_SAMPLES`` (in
    torch's layout) are the example input. Without data, the example is standard normal
    noise of ``input_shape`` (torch layout without the batch axis; a .pt2 knows its own).
    The conversion check's line is passed to ``say``. ``names``: how the input shape
    and the data layout are set (config keys, or the CLI's options).
    """
    from pruner.torch_files import load_torch
    from pruner.torch_import import convert_torch, to_channels_first

    if x is None:
        if input_shape is None and Path(str(spec)).suffix != '.pt2':
            raise ConfigError(f'{spec}: give the input shape ({names[0]}, torch layout without the batch axis)')
        module, shape = load_torch(spec, input_shape)
        rng = np.random.default_rng(seed)
        example = rng.standard_normal((EXAMPLE_SAMPLES, *shape)).astype(np.float32)
    else:
        data_shape = torch_layout(x.shape[1:])
        if input_shape is not None and tuple(input_shape) != data_shape:
            raise ConfigError(
                f"{names[0]} is {list(input_shape)} (torch layout), but the data's samples are {list(x.shape[1:])} "
                f'channels-last, i.e. {list(data_shape)} in torch layout; check the input shape and {names[1]}'
            )
        module, shape = load_torch(spec, data_shape)
        example = to_channels_first(x[:EXAMPLE_SAMPLES])
    conversion = convert_torch(module, example, seed=seed)
    say(conversion.check.line())
    check = conversion.check.to_dict()
    check.pop('per_input')  # one entry per sample: the figures below say what matters
    record = {
        'source': str(spec),
        'kind': type(module).__name__,
        'torch_input_shape': list(shape),
        'keras_input_shape': list(conversion.keras_input_shape),
        'conversion_check': check,
    }
    return conversion.model, record


@contextmanager
def keras_model_file(spec, inputs, input_shape, layout: str, say=print):
    """For the commands that read a saved model (hls, rtl): yields (model file, inputs).

    A .keras MODEL comes back as it is (``inputs`` loaded and moved channels-last when
    ``layout`` is NCHW). A PyTorch MODEL is converted (``convert``; its
    example input: ``inputs`` if given, else noise) and saved as a float Keras model in
    a temporary directory, removed when the command ends; ``inputs`` (``layout``) come
    back loaded and channels-last.
    """
    from hls_backend.core.model_io import load_array

    from .datasets import channels_last

    if not is_torch_model(spec):
        if input_shape is not None:
            raise ConfigError(f'--input-shape is for PyTorch models; {spec} is a Keras model, which knows its shape')
        if inputs is not None and layout != 'NHWC':
            inputs = channels_last(np.asarray(load_array(inputs)), layout)
        yield spec, inputs
        return
    x = None if inputs is None else channels_last(np.asarray(load_array(inputs), dtype=np.float32), layout)
    model, _ = convert(spec, x, input_shape, say=say, names=('--input-shape', '--layout'))
    from hls_backend.errors import UnsupportedModelError

    with tempfile.TemporaryDirectory(prefix='lpsubnet-from-torch-') as tmp:
        path = Path(tmp) / f'{model.name}.keras'
        model.save(path)
        try:
            yield path, x
        except UnsupportedModelError as exc:
            # The message names a Keras layer and the QKeras class it needs; a PyTorch
            # user gets there with lpsubnet prune, not by writing QKeras.
            raise UnsupportedModelError(
                f'{exc} (in the float Keras model converted from {spec}: quantize it with '
                f'`lpsubnet prune {spec} --data <npz> --out <dir>` and give <dir>/reduced.keras)'
            ) from None


def export_reduced(reduced, path: Path) -> dict:
    """Write the reduced QKeras model as a torch.export program at ``path``; returns its record."""
    from pruner import export_torch, to_torch

    module = to_torch(reduced)
    export_torch(module, path)
    return {
        'file': Path(path).name,
        'input_shape': list(module.input_shape),
        'layout': 'torch (NCHW / NCL feature maps)',
        'load_with': f"torch.export.load('{Path(path).name}').module()",
    }
