"""Datasets for runs: scikit-learn's bundled digits (offline) or the user's .npz.

Splits are stratified and seeded, so the same seed gives the same split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    sources: dict = field(default_factory=dict)  # split -> where it came from (the file, or drawn)

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, **{k: getattr(self, k) for k in ('x_train', 'y_train', 'x_val', 'y_val', 'x_test', 'y_test')}
        )

    @classmethod
    def load(cls, path: Path, name: str, sources: dict | None = None) -> Splits:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in data.files}, name=name, sources=sources or {})

    def summary(self) -> dict:
        return {
            'dataset': self.name,
            'input_shape': list(self.x_train.shape[1:]),
            'classes': self.n_classes,
            'train': len(self.y_train),
            'val': len(self.y_val),
            'test': len(self.y_test),
            **{f'{split}_source': source for split, source in self.sources.items()},
        }


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as (N, 8, 8, 1) floats in [0, 1] and int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return x, digits.target.astype(np.int64)


@dataclass
class NpzData:
    """The arrays of a user's .npz: training data, and the validation and test splits it brings."""

    x: np.ndarray
    y: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray] | None


def _checked_pair(file: Path, data, prefix: str, sample_shape: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """x_<prefix>, y_<prefix> of ``data`` as float32 inputs and int64 labels, checked."""
    xn, yn = f'x_{prefix}', f'y_{prefix}'
    x, y = data[xn], data[yn]
    for name, arr in ((xn, x), (yn, y)):
        if arr.size == 0:
            raise ConfigError(f'data file {file}: {name} is empty')
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ConfigError(f'data file {file}: {xn} must be finite numbers (found dtype {x.dtype} or NaN/inf)')
    if len(x) != len(y):
        raise ConfigError(f'data file {file}: {xn} has {len(x)} samples but {yn} has {len(y)}')
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f'data file {file}: {yn} must be a 1-D array of integer class labels')
    if sample_shape is not None and tuple(x.shape[1:]) != sample_shape:
        raise ConfigError(
            f'data file {file}: {xn} samples have shape {tuple(x.shape[1:])}, x_train samples {sample_shape}'
        )
    return x.astype(np.float32), y.astype(np.int64)


def _load_npz(path: str | None) -> NpzData:
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
    with data:
        found = sorted(data.files)
        missing = [k for k in ('x_train', 'y_train') if k not in found]
        if missing:
            raise ConfigError(
                f'data file {file} holds arrays {found} and lacks {missing}; expected x_train, y_train '
                '(and optionally x_val, y_val and x_test, y_test)'
            )
        for prefix in ('val', 'test'):
            if (f'x_{prefix}' in found) != (f'y_{prefix}' in found):
                raise ConfigError(
                    f'data file {file} holds arrays {found}: x_{prefix} and y_{prefix} go together (give both or neither)'
                )
        x, y = _checked_pair(file, data, 'train', None)
        splits = {
            prefix: _checked_pair(file, data, prefix, tuple(x.shape[1:])) if f'x_{prefix}' in found else None
            for prefix in ('val', 'test')
        }
    return NpzData(x, y, splits['val'], splits['test'])


def channels_last(x: np.ndarray, layout: str) -> np.ndarray:
    """``x`` in the channels-last layout every stage uses (Keras's): NCHW/NCL arrays have
    their channel axis moved last; (N, features) arrays have no channel axis."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == 'NCHW' and x.ndim >= 3 else x


def load_splits(config: DataConfig, seed: int) -> Splits:
    """The run's splits. An .npz's own x_val/y_val and x_test/y_test are used as they are;
    what it lacks is drawn (stratified, seeded): the test split from all its data
    (``test_fraction``), the validation split from the training data (``val_fraction``).
    Where each came from is in the splits' summary."""
    val = test = None
    if config.dataset == 'digits':  # channels-last (the configuration refuses another data.layout)
        x, y = load_digits_images()
        name = 'scikit-learn digits (8x8)'
    else:
        data = _load_npz(config.path)
        x, y = channels_last(data.x, config.layout), data.y
        val, test = (
            (channels_last(pair[0], config.layout), pair[1]) if pair is not None else None
            for pair in (data.val, data.test)
        )
        name = f'npz {config.path}' + (' (NCHW, stored channels-last)' if config.layout == 'NCHW' else '')
    sources = {}
    if test is None:
        x, x_test, y, y_test = _split(x, y, config.test_fraction, seed, 'test')
        sources['test'] = f'drawn: test_fraction {config.test_fraction} of the data (seed {seed})'
    else:
        (x_test, y_test), sources['test'] = test, "the file's x_test/y_test"
    if val is None:
        x_train, x_val, y_train, y_val = _split(x, y, config.val_fraction, seed, 'validation')
        sources['val'] = f'drawn: val_fraction {config.val_fraction} of the training data (seed {seed})'
    else:
        (x_train, y_train), (x_val, y_val), sources['val'] = (x, y), val, "the file's x_val/y_val"
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, name, sources)


def _split(x, y, fraction: float, seed: int, what: str):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    except ValueError as exc:  # too few samples per class for a stratified split
        raise ConfigError(
            f'cannot draw a stratified {what} split ({exc}); add x_val/y_val and x_test/y_test arrays to the '
            'data file or give more training samples'
        ) from None


def load_train_val(path: str, seed: int, val_fraction: float = 0.15, layout: str = 'NHWC'):
    """(x, y) train and validation pairs from an .npz for ``lpsubnet prune``, channels-last
    (``layout``: the arrays' layout, see ``channels_last``), and where the validation pair
    came from.

    Validation data: ``x_val``/``y_val`` if present, else a stratified ``val_fraction`` of
    the training data. ``x_test``/``y_test`` are never used: no training decision (early
    stopping, best epochs, the budget's choices) may see the test split.
    """
    data = _load_npz(path)
    x = channels_last(data.x, layout)
    if data.val is not None:
        return (x, data.y), (channels_last(data.val[0], layout), data.val[1]), "the file's x_val/y_val"
    x_train, x_val, y_train, y_val = _split(x, data.y, val_fraction, seed, 'validation')
    source = f'drawn: val_fraction {val_fraction} of x_train (seed {seed}; the file has no x_val/y_val)'
    return (x_train, y_train), (x_val, y_val), source
