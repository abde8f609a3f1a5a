"""Reading the user's files: a saved QKeras model and test inputs.

Every failure names the file and says what was expected, so that a wrong path or
a wrong file type never surfaces as a stack trace from deep inside Keras.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np

from ..errors import BadInputError

MODEL_FORMATS = 'Keras 3 .keras file, a Keras 2 model.json (weights beside it) or a whole-model .h5'


def load_qkeras_model(path: str | Path):
    """Load a Keras 3 ``.keras`` file that may contain qkeras-v3 layers, a Keras-2-era
    ``model.json`` with its weights beside it (:func:`load_keras2_json`), or a whole model in
    a legacy HDF5 file (:func:`load_legacy_h5`)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f'model file {path} does not exist')
    if path.is_dir():
        raise BadInputError(f'model file {path} is a directory; expected a {MODEL_FORMATS}')
    if path.suffix == '.json':
        return load_keras2_json(path)
    if path.suffix in ('.h5', '.hdf5'):
        return load_legacy_h5(path)
    if not zipfile.is_zipfile(path):
        raise BadInputError(
            f'model file {path} is not a Keras model (.keras files are zip archives); expected a {MODEL_FORMATS}'
        )
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    if 'config.json' not in names:
        raise BadInputError(f'model file {path} is a zip archive without config.json: not a Keras 3 .keras file')

    import keras
    import qkeras  # noqa: F401  registers the QKeras layers and quantizers with Keras

    try:
        return keras.models.load_model(path, compile=False, custom_objects=_fused_batchnorm_loaders())
    except Exception as exc:  # Keras raises many types for broken archives
        raise BadInputError(f'model file {path} could not be loaded by Keras: {exc}') from exc


# Where the weights of a Keras-2-era ``<stem>.json`` are looked for, in this order (hls4ml's
# example models name them ``<stem>_weights.h5``).
KERAS2_WEIGHTS = ('{stem}_weights.h5', '{stem}.h5', 'weights.h5')


def load_keras2_json(path: str | Path, weights: str | Path | None = None):
    """A Keras-2-era QKeras model: the architecture as JSON (``model.to_json()``, the format
    of hls4ml's example models) and the weights in a Keras-2 HDF5 file (``save_weights``),
    found beside it (:data:`KERAS2_WEIGHTS`) unless given. Keras 3 reads such files with its
    legacy loader (the one it uses for Keras-2 .h5 models); what it cannot read is refused
    with what to do instead."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f'model file {path} is not a JSON file: {exc}') from exc
    if not isinstance(config, dict) or 'class_name' not in config or 'config' not in config:
        raise BadInputError(f'model file {path} is JSON but not a Keras model (no class_name and config)')
    if weights is None:
        candidates = [path.with_name(name.format(stem=path.stem)) for name in KERAS2_WEIGHTS]
        weights = next((c for c in candidates if c.is_file()), None)
        if weights is None:
            raise BadInputError(
                f'model file {path} holds only the architecture (a Keras 2 model.json); its weights were looked '
                f'for in {", ".join(c.name for c in candidates)} beside it and none exists'
            )
    weights = Path(weights)
    convert = (
        f'convert it once: build the same model in Keras 3 with qkeras-v3 layers, then run '
        f"`model.load_weights('{weights}'); model.save('{path.with_suffix('.keras')}')` and give the .keras file"
    )

    model = _model_from_keras2_config(config, path, config.get('keras_version', 'unknown'), convert)
    try:
        model.load_weights(weights)
    except Exception as exc:
        raise BadInputError(
            f'weights file {weights} does not fit the model of {path} ({type(exc).__name__}: {exc}); {convert}'
        ) from exc
    return model


def load_legacy_h5(path: Path):
    """A whole model in a legacy HDF5 file (Keras 2's ``model.save('m.h5')``, or Keras 3's
    with the .h5 suffix), read by Keras 3's own legacy loader; a weights-only file (what
    ``save_weights`` writes beside a model.json) is refused with the file to give instead."""
    import h5py

    try:
        with h5py.File(path, 'r') as h5:
            config = h5.attrs.get('model_config')
            version = h5.attrs.get('keras_version', 'unknown')
    except OSError as exc:
        raise BadInputError(
            f'model file {path} is not an HDF5 file ({exc}); expected a Keras .h5 or .keras model'
        ) from None
    if config is None:
        stem = path.stem.removesuffix('_weights')
        twin = path.with_name(f'{stem}.json')
        which = f'{twin}' if twin.is_file() else 'the Keras 2 model.json whose weights these are'
        raise BadInputError(
            f'model file {path} holds weights only (no model_config): give {which}; its weights are read from '
            f'{stem}_weights.h5 beside it'
        )
    if isinstance(version, bytes):
        version = version.decode()
    if isinstance(config, bytes):
        config = config.decode()
    # Keras 3's own HDF5 reader passes the stored config to its legacy converter as it is;
    # the config is normalised first (keras3_config), then the weights are read by name.
    from keras.src.legacy.saving import legacy_h5_format

    fix = 'load it with the Keras that wrote it and save it as .keras, or give its model.json and weights'
    model = _model_from_keras2_config(json.loads(config), path, version, fix)
    try:
        with h5py.File(path, 'r') as h5:
            legacy_h5_format.load_weights_from_hdf5_group(h5['model_weights'], model)
    except Exception as exc:  # Keras raises many types for weights it cannot map
        raise BadInputError(
            f'model file {path} (Keras {version}): its weights could not be loaded by Keras 3 '
            f'({type(exc).__name__}: {exc}); {fix}'
        ) from None
    return model


def _model_from_keras2_config(config: dict, path: Path, version: str, fix: str):
    """The model of a Keras-2-era config (``keras3_config``, every QKeras object known), or a
    BadInputError naming ``path``: a custom layer class by name, anything else with ``fix``."""
    from keras.src.legacy.saving import saving_utils

    try:
        return saving_utils.model_from_config(keras3_config(config), custom_objects=_qkeras_objects())
    except Exception as exc:  # Keras raises many types for configs it cannot map
        unknown = re.search(r"Unknown layer: '([^']+)'", str(exc))
        if unknown:
            raise BadInputError(
                f"model file {path} (Keras {version}) uses the layer class '{unknown.group(1)}', which is neither "
                'a Keras nor a QKeras layer (a custom layer of the code that wrote it); `lpsubnet layers` lists the '
                'layers lpsubnet reads'
            ) from None
        raise BadInputError(
            f'model file {path} (Keras {version}) cannot be read by Keras 3 ({type(exc).__name__}: {exc}); {fix}'
        ) from exc


def keras3_config(config: dict) -> dict:
    """A Keras-2-era model config in the form Keras 3's legacy loader reads.

    - Keras 2.0-2.1 stored a Sequential model's config as the bare list of its layers;
      Keras 3 expects ``{'name': ..., 'layers': [...]}``.
    - Such a Sequential's first layer carries ``batch_input_shape``; Keras 3's legacy
      converter turns it into ``input_shape`` batch axis included (a 4-D Conv2D input
      becomes 5-D), so it is moved into an explicit InputLayer (and dropped from the
      other layers of a model that has one).
    """
    config = json.loads(json.dumps(config))  # never edit the caller's dict
    body = config.get('config')
    if config.get('class_name') == 'Sequential' and isinstance(body, list):
        body = {'name': 'sequential', 'layers': body}
        config['config'] = body
    layers = body.get('layers') if isinstance(body, dict) else None
    if not layers:
        return config
    if config.get('class_name') == 'Sequential' and layers[0].get('class_name') != 'InputLayer':
        first = layers[0].get('config', {})
        shape = first.pop('batch_input_shape', None)
        if shape is not None:
            name = f'{first.get("name", "input")}_input'
            input_config = {'batch_shape': shape, 'dtype': first.get('dtype', 'float32'), 'name': name}
            layers.insert(0, {'class_name': 'InputLayer', 'config': input_config})
    # A functional model's InputLayer holds the shape; a copy on another layer would become
    # a (wrong) input_shape argument.
    if any(layer.get('class_name') == 'InputLayer' for layer in layers):
        for layer in layers:
            if layer.get('class_name') != 'InputLayer':
                layer.get('config', {}).pop('batch_input_shape', None)
    return config


def _qkeras_objects() -> dict:
    """Every QKeras layer and quantizer by name, with the fused batch-norm loaders."""
    import qkeras  # noqa: F401  registers the QKeras layers and quantizers with Keras
    from qkeras.utils import _add_supported_quantized_objects

    custom_objects: dict = {}
    _add_supported_quantized_objects(custom_objects)
    custom_objects.update(_fused_batchnorm_loaders())
    return custom_objects


class _FusedBatchnormLoader:
    """Builds a qkeras-v3 fused batch-norm layer from its saved config. qkeras-v3 1.2.1
    does not register these classes with Keras, and their ``get_config`` includes
    Keras-3 BatchNormalization keys their constructor refuses; those hold the defaults
    the layer uses (plain, unsynchronized batch norm), so they are dropped."""

    UNACCEPTED = ('synchronized', 'renorm', 'renorm_clipping', 'renorm_momentum')

    def __init__(self, cls):
        self.cls = cls

    def from_config(self, config: dict):
        for key in self.UNACCEPTED:
            config.pop(key, None)
        return self.cls.from_config(config)


def _fused_batchnorm_loaders() -> dict:
    from qkeras.qconv2d_batchnorm import QConv2DBatchnorm
    from qkeras.qdense_batchnorm import QDenseBatchnorm

    return {cls.__name__: _FusedBatchnormLoader(cls) for cls in (QDenseBatchnorm, QConv2DBatchnorm)}


NPZ_INPUT_KEYS = ('x', 'X', 'inputs', 'x_test', 'X_test')


def load_array(path: str | Path, name: str = 'inputs', mmap: bool = False) -> np.ndarray:
    """Load test inputs from ``.npy`` or ``.npz`` (key ``x``, ``X``, ``inputs`` or the only array).

    With ``mmap`` a ``.npy`` file is memory-mapped, so a large file is read as it is used.
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f'{name} file {path} does not exist')
    if path.is_dir():
        raise BadInputError(f'{name} file {path} is a directory; expected a .npy or .npz file')
    try:
        data = np.load(path, allow_pickle=False, mmap_mode='r' if mmap else None)
    except Exception as exc:
        raise BadInputError(f'{name} file {path} is not a .npy/.npz array file: {exc}') from exc
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        for key in NPZ_INPUT_KEYS:
            if key in keys:
                return np.asarray(data[key])
        if len(keys) == 1:
            return np.asarray(data[keys[0]])
        raise BadInputError(f'{name} file {path} holds arrays {keys}; name the inputs x, X or inputs')
    return data if mmap else np.asarray(data)


def open_samples(path: str | Path, sample_shape, name: str = 'inputs') -> np.ndarray:
    """Samples of shape ``sample_shape`` from a .npy (memory-mapped) or .npz file, as an
    array of shape (N, *sample_shape) in the file's dtype; a single sample gets its batch
    axis. Values are not checked here (the caller reads them chunk by chunk)."""
    expected = tuple(int(s) for s in sample_shape)
    x = load_array(path, name, mmap=True)
    layout = f'arrays of shape (N, {", ".join(map(str, expected))})'
    if x.dtype.kind not in 'fiu':
        raise BadInputError(f'{name} file {path}: dtype {x.dtype} is not numeric; expected float or integer {layout}')
    if x.ndim == len(expected):
        x = x[None, ...]
    if tuple(x.shape[1:]) != expected:
        raise BadInputError(
            f'{name} file {path}: samples have shape {tuple(x.shape[1:])} (array {tuple(x.shape)}), '
            f'the project expects {expected}: {layout}'
        )
    if x.shape[0] == 0:
        raise BadInputError(f'{name} file {path}: holds no samples')
    return x


def check_inputs(x: np.ndarray, model, source: str) -> np.ndarray:
    """Validate shape, dtype and values of test inputs against the model's input."""
    expected = tuple(model.inputs[0].shape[1:])
    if x.dtype.kind not in 'fiu':
        raise BadInputError(f'{source}: dtype {x.dtype} is not numeric')
    if x.ndim == len(expected):
        x = x[None, ...]
    if tuple(x.shape[1:]) != expected:
        raise BadInputError(f'{source}: samples have shape {tuple(x.shape[1:])}, the model expects {expected}')
    if x.shape[0] == 0:
        raise BadInputError(f'{source}: holds no samples')
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise BadInputError(f'{source}: {bad} values are NaN or infinite')
    return x.astype(np.float64)
