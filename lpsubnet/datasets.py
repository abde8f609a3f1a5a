"""Datasets for runs: scikit-learn's bundled digits (offline) or the user's .npz.

Splits are stratified and seeded, so the same seed gives the same split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ConfigError, DataConfig


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, **{k: getattr(self, k) for k in ('x_train', 'y_train', 'x_val', 'y_val', 'x_test', 'y_test')}
        )

    @classmethod
    def load(cls, path: Path, name: str) -> Splits:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in data.files}, name=name)

    def summary(self) -> dict:
        return {
            'dataset': self.name,
            'input_shape': list(self.x_train.shape[1:]),
            'classes': self.n_classes,
            'train': len(self.y_train),
            'val': len(self.y_val),
            'test': len(self.y_test),
        }


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as (N, 8, 8, 1) floats in [0, 1] and int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return x, digits.target.astype(np.int64)


def _load_npz(path: str | None) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    if not path:
        raise ConfigError("config key 'data.path' is required when data.dataset is 'npz'")
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"data file {file} (config key 'data.path') does not exist")
    try:
        data = np.load(file, allow_pickle=False)
    except Exception as exc:
        raise ConfigError(f'data file {file} is not an .npz archive: {exc}') from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ConfigError(f'data file {file} is a single array, not an .npz archive with x_train and y_train')
    missing = [k for k in ('x_train', 'y_train') if k not in data.files]
    if missing:
        raise ConfigError(
            f'data file {file} lacks arrays {missing}; expected x_train, y_train (and optionally x_test, y_test)'
        )
    x, y = data['x_train'], data['y_train']
    test = (data['x_test'], data['y_test']) if 'x_test' in data.files and 'y_test' in data.files else None
    for name, arr in (('x_train', x), ('y_train', y)):
        if arr.size == 0:
            raise ConfigError(f'data file {file}: {name} is empty')
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ConfigError(f'data file {file}: x_train must be finite numbers (found dtype {x.dtype} or NaN/inf)')
    if len(x) != len(y):
        raise ConfigError(f'data file {file}: x_train has {len(x)} samples but y_train has {len(y)}')
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f'data file {file}: y_train must be a 1-D array of integer class labels')
    return x.astype(np.float32), y.astype(np.int64), test


def channels_last(x: np.ndarray, layout: str) -> np.ndarray:
    """``x`` in the channels-last layout every stage uses (Keras's): NCHW/NCL arrays have
    their channel axis moved last; (N, features) arrays have no channel axis."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == 'NCHW' and x.ndim >= 3 else x


def load_splits(config: DataConfig, seed: int) -> Splits:
    from sklearn.model_selection import train_test_split

    if config.dataset == 'digits':  # channels-last (the configuration refuses another data.layout)
        x, y = load_digits_images()
        test = None
        name = 'scikit-learn digits (8x8)'
    else:
        x, y, test = _load_npz(config.path)
        x = channels_last(x, config.layout)
        if test is not None:
            test = (channels_last(test[0], config.layout), test[1])
        name = f'npz {config.path}' + (' (NCHW, stored channels-last)' if config.layout == 'NCHW' else '')
    if test is None:
        x, x_test, y, y_test = train_test_split(x, y, test_size=config.test_fraction, random_state=seed, stratify=y)
    else:
        x_test, y_test = test[0].astype(np.float32), test[1].astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=config.val_fraction, random_state=seed, stratify=y
    )
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, name)


def load_train_val(path: str, seed: int, val_fraction: float = 0.15, layout: str = 'NHWC'):
    """(x, y) train and validation pairs from an .npz for ``lpsubnet prune``, channels-last
    (``layout``: the arrays' layout, see ``channels_last``).

    Validation data: ``x_val``/``y_val`` if present, else ``x_test``/``y_test``, else a
    stratified ``val_fraction`` of the training data.
    """
    from sklearn.model_selection import train_test_split

    x, y, test = _load_npz(path)
    x = channels_last(x, layout)
    with np.load(path) as data:
        if 'x_val' in data.files and 'y_val' in data.files:
            return (x, y), (channels_last(data['x_val'].astype(np.float32), layout), data['y_val'].astype(np.int64))
    if test is not None:
        return (x, y), (channels_last(test[0].astype(np.float32), layout), test[1].astype(np.int64))
    try:
        x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=y)
    except ValueError as exc:  # too few samples per class for a stratified split
        raise ConfigError(
            f'data file {path}: cannot split off a stratified validation set ({exc}); '
            'add x_val/y_val (or x_test/y_test) arrays or more training samples'
        ) from None
    return (x_train, y_train), (x_val, y_val)
