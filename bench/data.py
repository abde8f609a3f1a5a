"""Offline datasets of the benchmarks (no download at run time, except the optional
OpenML jet-tagging loader, which the benchmarks never call).

Every loader returns a ``Task`` with fixed train / val / test splits: the split does not
depend on the seed, so seeds vary only initialisation and batch order.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LETTER_PATH = Path('/usr/share/doc/opencv-doc/examples/data/letter-recognition.data')
FMNIST_DIR = Path('/usr/share/datasets/fashion-mnist')
INSTALL_HINT = {
    'letter': f'{LETTER_PATH} is missing: install the Debian package opencv-doc (`apt-get install -y opencv-doc`)',
    'fmnist': f'{FMNIST_DIR}/*.gz are missing: install the Debian package dataset-fashion-mnist '
    '(`apt-get install -y dataset-fashion-mnist`)',
    'sr': "scikit-image is missing in the venv: `make install` (or `pip install -e '.[bench]'`) "
    '(falls back to sklearn.datasets.load_sample_images otherwise)',
}


class DatasetMissing(RuntimeError):
    """The data of a task are not on this machine; the message says how to get them."""


@dataclass
class Task:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    kind: str = 'classification'  # or 'sr'
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            'name': self.name,
            'kind': self.kind,
            'input_shape': list(self.x_train.shape[1:]),
            'train': len(self.x_train),
            'val': len(self.x_val),
            'test': len(self.x_test),
            'notes': self.notes,
        }


def _tiny(task: Task, n: int = 256) -> Task:
    task.x_train, task.y_train = task.x_train[:n], task.y_train[:n]
    task.x_val, task.y_val = task.x_val[: n // 4], task.y_val[: n // 4]
    task.x_test, task.y_test = task.x_test[: n // 4], task.y_test[: n // 4]
    task.notes.append(f'tiny subset ({n} training samples)')
    return task


def digits() -> Task:
    """scikit-learn digits, 8x8x1 in [0, 1]; stratified 20% test, then 15% of the rest val."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    x, x_te, y, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.15, random_state=0, stratify=y)
    return Task(
        'digits', x_tr, y_tr, x_va, y_va, x_te, y_te, notes=['1,797 images; split 1,221 / 216 / 360 (fixed, seed 0)']
    )


def letter(path: Path = LETTER_PATH) -> Task:
    """UCI letter-recognition: 20,000 x 16 integer features (0..15), 26 classes.
    The usual split: first 16,000 train (of which the last 2,000 are val), last 4,000 test."""
    if not Path(path).exists():
        raise DatasetMissing(INSTALL_HINT['letter'])
    raw = np.loadtxt(path, delimiter=',', dtype=str)
    y = np.array([ord(c) - ord('A') for c in raw[:, 0]], dtype=np.int64)
    x = raw[:, 1:].astype(np.float32) / 15.0
    return Task(
        'letter',
        x[:14000],
        y[:14000],
        x[14000:16000],
        y[14000:16000],
        x[16000:],
        y[16000:],
        notes=[
            'UCI letter-recognition from Debian opencv-doc; features scaled to [0, 1]; split 14,000 / 2,000 / 4,000'
        ],
    )


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, 'rb') as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def fmnist(n_train: int = 6000, directory: Path = FMNIST_DIR) -> Task:
    """Fashion-MNIST (28x28x1 in [0, 1]); a fixed random subset of ``n_train`` training
    images for the CPU budget (2,000 more as val), the full 10,000 test images."""
    files = {k: Path(directory) / f'{k}.gz' for k in (
        'train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}  # fmt: skip
    if not all(p.exists() for p in files.values()):
        raise DatasetMissing(INSTALL_HINT['fmnist'])
    xtr = _idx(files['train-images-idx3-ubyte'], 16).reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
    ytr = _idx(files['train-labels-idx1-ubyte'], 8).astype(np.int64)
    xte = _idx(files['t10k-images-idx3-ubyte'], 16).reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
    yte = _idx(files['t10k-labels-idx1-ubyte'], 8).astype(np.int64)
    order = np.random.default_rng(0).permutation(len(xtr))
    tr, va = order[:n_train], order[n_train : n_train + 2000]
    return Task(
        'fmnist',
        xtr[tr],
        ytr[tr],
        xtr[va],
        ytr[va],
        xte,
        yte,
        notes=[
            f'Fashion-MNIST subset: {n_train:,} of 60,000 training images (fixed, seed 0), 2,000 val, full 10,000 test'
        ],
    )


SR_TRAIN = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'brick', 'grass', 'gravel', 'retina')  # fmt: skip
SR_TEST = ('camera', 'moon', 'coins', 'text', 'page', 'clock', 'cell')
SR_SCALE = 3
SR_PATCH = 10  # low-resolution patch side


def _gray_images(names) -> list[np.ndarray]:
    import skimage.data
    from skimage.color import rgb2gray

    out = []
    for name in names:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 3:
            img = rgb2gray(img[..., :3])
        img = img.astype(np.float32)
        if img.max() > 1.5:
            img = img / 255.0
        out.append(img)
    return out


def _downscale(hr: np.ndarray) -> np.ndarray:
    from skimage.transform import resize

    h, w = hr.shape
    return resize(hr, (h // SR_SCALE, w // SR_SCALE), order=3, anti_aliasing=True).astype(np.float32)


def space_to_depth(hr: np.ndarray, r: int = SR_SCALE) -> np.ndarray:
    """(N, H*r, W*r) -> (N, H, W, r*r), the layout a depth-to-space (pixel shuffle) undoes."""
    n, hh, ww = hr.shape
    h, w = hh // r, ww // r
    return hr.reshape(n, h, r, w, r).transpose(0, 1, 3, 2, 4).reshape(n, h, w, r * r)


def depth_to_space(y: np.ndarray, r: int = SR_SCALE) -> np.ndarray:
    n, h, w, _ = y.shape
    return y.reshape(n, h, w, r, r).transpose(0, 1, 3, 2, 4).reshape(n, h * r, w * r)


def _patches(images, n: int | None, rng) -> tuple[np.ndarray, np.ndarray]:
    """LR patches (N, p, p, 1) and HR targets in space-to-depth layout (N, p, p, r*r)."""
    p, r = SR_PATCH, SR_SCALE
    xs, ys = [], []
    for img in images:
        hh, ww = (img.shape[0] // r) * r, (img.shape[1] // r) * r
        hr = img[:hh, :ww]
        lr = _downscale(hr)
        if n is None:  # all non-overlapping tiles
            coords = [(i, j) for i in range(0, lr.shape[0] - p + 1, p) for j in range(0, lr.shape[1] - p + 1, p)]
        else:
            k = n // len(images)
            coords = list(zip(rng.integers(0, lr.shape[0] - p + 1, k), rng.integers(0, lr.shape[1] - p + 1, k)))
        for i, j in coords:
            xs.append(lr[i : i + p, j : j + p])
            ys.append(hr[i * r : (i + p) * r, j * r : (j + p) * r])
    x = np.stack(xs)[..., None].astype(np.float32)
    y = space_to_depth(np.stack(ys)).astype(np.float32)
    return x, y


def sr(n_train: int = 6000) -> Task:
    """x3 single-image super-resolution (luminance): random 10x10 LR patches (bicubic
    downscale of the HR image) of scikit-image's bundled training images; PSNR on all
    non-overlapping patches of held-out images."""
    notes = []
    try:
        train_imgs = _gray_images(SR_TRAIN)
        test_imgs = _gray_images(SR_TEST)
        notes.append(f'scikit-image bundled images; train {", ".join(SR_TRAIN)}; test {", ".join(SR_TEST)}')
    except ImportError:
        from sklearn.datasets import load_sample_images

        imgs = [np.asarray(i, np.float32).mean(axis=2) / 255.0 for i in load_sample_images().images]
        train_imgs = [imgs[0]]
        test_imgs = [imgs[1]]
        notes.append(
            'scikit-image missing: sklearn sample images (china -> train, flower -> test). ' + INSTALL_HINT['sr']
        )
    rng = np.random.default_rng(0)
    x_tr, y_tr = _patches(train_imgs, n_train, rng)
    x_va, y_va = _patches(train_imgs, max(n_train // 6, 64), np.random.default_rng(1))
    x_te, y_te = _patches(test_imgs, None, rng)
    notes.append(
        f'x{SR_SCALE}, LR patch {SR_PATCH}x{SR_PATCH}; {len(x_tr)} train / {len(x_va)} val patches; {len(x_te)} test tiles'
    )
    return Task('sr', x_tr, y_tr, x_va, y_va, x_te, y_te, kind='sr', notes=notes)


def jet_tagging_openml(cache_dir: str | None = None) -> Task:  # pragma: no cover - needs the network
    """The hls4ml jet-tagging benchmark (16 features, 5 classes) from OpenML 'hls4ml_lhc_jets_hlf'.
    For users who are online; the benchmarks never call it (no network here)."""
    from sklearn.datasets import fetch_openml
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    data = fetch_openml('hls4ml_lhc_jets_hlf', version=1, as_frame=False, data_home=cache_dir)
    x = data.data.astype(np.float32)
    y = LabelEncoder().fit_transform(data.target).astype(np.int64)
    x, x_te, y, y_te = train_test_split(x, y, test_size=0.2, random_state=42)
    scaler = StandardScaler().fit(x)
    x, x_te = scaler.transform(x).astype(np.float32), scaler.transform(x_te).astype(np.float32)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.1, random_state=0)
    return Task('jets', x_tr, y_tr, x_va, y_va, x_te, y_te, notes=['OpenML hls4ml_lhc_jets_hlf'])


LOADERS = {'digits': digits, 'letter': letter, 'fmnist': fmnist, 'sr': sr}


def load(name: str, tiny: bool = False) -> Task:
    task = LOADERS[name]()
    if tiny or os.environ.get('BENCH_TINY') == '1':
        task = _tiny(task)
    return task
