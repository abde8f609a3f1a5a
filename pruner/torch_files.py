"""PyTorch models from files: a torch.export program (``.pt2``), a TorchScript file, or
``'file.py:function'`` / ``'package.module:function'`` returning an ``nn.Module``
(:func:`load_torch`), with the input shape a program was exported with; the conversion
itself is :mod:`pruner.torch_import`."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

from .torch_import import TorchImportError, _first_line, _sanitize, _torch, _user_input_nodes

TORCH_FILE_KINDS = "a torch.export program (.pt2), a TorchScript file (torch.jit.save), or 'module:callable'"


def is_torch_spec(spec: str | Path) -> bool:
    """True when ``spec`` names a PyTorch model (by suffix, content or ``module:callable``) rather than a .keras file."""
    text = str(spec)
    if _callable_spec(text) is not None:
        return True
    path = Path(text)
    if path.suffix in ('.pt2', '.pt', '.pth', '.ts', '.torchscript', '.jit'):
        return True
    if path.suffix == '.keras' or not path.is_file():
        return False
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return not any(n == 'config.json' for n in names) and any(n.endswith(('data.pkl', 'constants.pkl')) for n in names)


def _callable_spec(text: str) -> tuple[str, str] | None:
    """('module or file.py', 'callable') for 'pkg.mod:fn' or 'path/to/file.py:fn'."""
    if ':' not in text or text.count(':') > 1 and not re.match(r'^[A-Za-z]:[\\/]', text):
        return None
    head, _, tail = text.rpartition(':')
    if not head or not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_.]*', tail):
        return None
    if head.endswith('.py') or re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*', head):
        return head, tail
    return None


def _import_callable(head: str, tail: str, spec: str):
    if head.endswith('.py'):
        path = Path(head)
        if not path.is_file():
            raise TorchImportError(f"model '{spec}': file {path} does not exist")
        module_name = f'_lpsubnet_torch_{_sanitize(path.stem)}'
        loader = importlib.util.spec_from_file_location(module_name, path)
        mod = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = mod
        try:
            loader.loader.exec_module(mod)
        except Exception as exc:
            raise TorchImportError(f"model '{spec}': importing {path} failed: {_first_line(exc)}") from exc
    else:
        try:
            mod = importlib.import_module(head)
        except Exception as exc:
            raise TorchImportError(f"model '{spec}': cannot import module {head}: {_first_line(exc)}") from exc
    fn = getattr(mod, tail, None)
    if fn is None:
        raise TorchImportError(f"model '{spec}': {head} has no attribute {tail!r}")
    return fn


def load_torch(spec: str | Path, input_shape: tuple[int, ...] | None = None):
    """(model, input shape) from a file or ``module:callable``; the shape is torch's, without the batch axis.

    ``.pt2``: ``torch.export.load`` (the program knows its input shape). TorchScript
    and ``module:callable`` (a function returning an nn.Module, or an nn.Module
    class) need ``input_shape`` (e.g. (1, 8, 8)). A pickled module or state dict is
    refused with what to save instead.
    """
    torch = _torch()
    text = str(spec)
    parts = _callable_spec(text)
    if parts is not None and not Path(text).exists():
        fn = _import_callable(*parts, text)
        try:
            module = fn()
        except Exception as exc:
            raise TorchImportError(f"model '{text}': calling {parts[1]}() failed: {_first_line(exc)}") from exc
        if not isinstance(module, torch.nn.Module):
            raise TorchImportError(f"model '{text}': {parts[1]}() returned {type(module).__name__}, not an nn.Module")
        return module, _needed_shape(input_shape, text)
    path = Path(text)
    if not path.exists():
        raise TorchImportError(f'model file {path} does not exist')
    if path.is_dir():
        raise TorchImportError(f'model file {path} is a directory; expected {TORCH_FILE_KINDS}')
    if path.suffix == '.pt2':
        try:
            program = torch.export.load(path)
        except Exception as exc:
            raise TorchImportError(
                f'model file {path} could not be read by torch.export.load: {_first_line(exc)}; expected a program '
                'saved with torch.export.save'
            ) from exc
        shape = _program_input_shape(program, str(path))
        if input_shape is not None and tuple(input_shape) != shape:
            raise TorchImportError(
                f'model file {path} takes inputs of shape {list(shape)} (torch layout, without the batch axis); '
                f'the configuration or data give {list(input_shape)}'
            )
        return program, shape
    try:
        module = torch.jit.load(str(path), map_location='cpu')
    except Exception as exc:
        raise TorchImportError(
            f'model file {path} is not {TORCH_FILE_KINDS}: {_first_line(exc)}{_pickle_hint(path)}'
        ) from exc
    return module, _needed_shape(input_shape, str(path))


def _pickle_hint(path: Path) -> str:
    import zipfile

    if not zipfile.is_zipfile(path):
        return ''
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(n.endswith('data.pkl') for n in names) and not any(n.endswith('constants.pkl') for n in names):
        return (
            ' (it is a torch.save pickle, a state_dict or pickled module, which holds no graph: save the model with '
            "torch.export.save(torch.export.export(model, (x,)), 'model.pt2'), or give 'file.py:function' returning it)"
        )
    return ''


def _program_input_shape(program, source: str) -> tuple[int, ...]:
    inputs = _user_input_nodes(program)
    val = inputs[0].meta.get('val') if len(inputs) == 1 else None
    if val is None or not hasattr(val, 'shape'):
        raise TorchImportError(f'{source}: the program takes {len(inputs)} inputs; supported: one tensor')
    return tuple(int(s) for s in val.shape[1:])


def _needed_shape(input_shape, source: str) -> tuple[int, ...]:
    if input_shape is None:
        raise TorchImportError(
            f'{source}: the input shape is needed to trace this model; give it (torch layout without the batch axis, '
            'e.g. [1, 8, 8]) as model.input_shape in the run configuration'
        )
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise TorchImportError(f'{source}: input shape {list(input_shape)} is not a shape of positive sizes')
    return shape
