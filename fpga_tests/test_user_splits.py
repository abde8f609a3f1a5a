"""The user's own splits in an .npz are respected (lpsubnet.datasets).

x_val/y_val are the validation split of run, sweep and prune; without them it is drawn
from the training data and the tool says so; x_test never decides anything in prune;
a wrong key is answered with the keys the file holds; a float model at chance level is
warned about.
"""

import json

import numpy as np
import pytest
import yaml

from fpga_tests.cli_helpers import cli
from lpsubnet.baseline import chance_warning
from lpsubnet.config import ConfigError, DataConfig
from lpsubnet.datasets import load_digits_images, load_splits, load_train_val


@pytest.fixture(scope='module')
def digits():
    return load_digits_images()


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _rows(a: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in a.reshape(len(a), -1)}


def test_a_runs_validation_split_is_the_files_own(digits, tmp_path):
    x, y = digits
    path = _npz(tmp_path / 'd.npz', x_train=x[:1000], y_train=y[:1000], x_val=x[1000:1123], y_val=y[1000:1123],
                x_test=x[1123:1400], y_test=y[1123:1400])  # fmt: skip
    splits = load_splits(DataConfig(dataset='npz', path=path), seed=0)
    np.testing.assert_array_equal(splits.x_val, x[1000:1123])
    np.testing.assert_array_equal(splits.x_train, x[:1000])  # nothing drawn off the training data
    np.testing.assert_array_equal(splits.x_test, x[1123:1400])
    summary = splits.summary()
    assert (summary['train'], summary['val'], summary['test']) == (1000, 123, 277)
    assert summary['val_source'] == "the file's x_val/y_val" and summary['test_source'] == "the file's x_test/y_test"


def test_without_x_val_the_validation_split_is_drawn_from_training_data_and_said(digits, tmp_path):
    x, y = digits
    path = _npz(tmp_path / 'd.npz', x_train=x[:1000], y_train=y[:1000], x_test=x[1000:1300], y_test=y[1000:1300])
    splits = load_splits(DataConfig(dataset='npz', path=path, val_fraction=0.2), seed=1)
    assert len(splits.y_val) == 200 and len(splits.y_train) == 800
    assert _rows(splits.x_val) <= _rows(x[:1000])
    assert splits.summary()['val_source'].startswith('drawn: val_fraction 0.2 of the training data')


def test_prune_never_validates_on_x_test(digits, tmp_path):
    x, y = digits
    path = _npz(tmp_path / 'd.npz', x_train=x[:1000], y_train=y[:1000], x_test=x[1000:1300], y_test=y[1000:1300])
    (x_train, _), (x_val, _), source = load_train_val(path, seed=0)
    assert _rows(x_val) <= _rows(x[:1000]) and not _rows(x_val) & _rows(x[1000:1300])
    assert len(x_train) + len(x_val) == 1000
    assert 'the file has no x_val/y_val' in source
    with_val = _npz(tmp_path / 'v.npz', x_train=x[:1000], y_train=y[:1000], x_val=x[1000:1100], y_val=y[1000:1100])
    (x_train, _), (x_val, _), source = load_train_val(with_val, seed=0)
    assert len(x_train) == 1000 and len(x_val) == 100 and source == "the file's x_val/y_val"


@pytest.mark.parametrize(
    ('arrays', 'message'),
    [
        ({'images': 'x', 'labels': 'y'}, r"holds arrays \['images', 'labels'\] and lacks \['x_train', 'y_train'\]"),
        ({'x_train': 'x', 'y_train': 'y', 'x_val': 'x'}, r'x_val and y_val go together'),
        ({'x_train': 'x', 'y_train': 'y', 'x_val': 'x5', 'y_val': 'y5'}, r'x_val samples have shape \(5,\)'),
    ],
)
def test_wrong_keys_are_answered_with_the_keys_found(digits, tmp_path, arrays, message):
    x, y = digits
    values = {'x': x[:100], 'y': y[:100], 'x5': np.zeros((10, 5), np.float32), 'y5': np.zeros(10, np.int64)}
    path = _npz(tmp_path / 'd.npz', **{k: values[v] for k, v in arrays.items()})
    with pytest.raises(ConfigError, match=message):
        load_splits(DataConfig(dataset='npz', path=path), seed=0)


def test_a_model_at_chance_level_is_warned_about():
    labels = np.array([0] * 30 + [1] * 50 + [2] * 20)
    assert 'no better than chance (50.0 %' in chance_warning(0.505, labels, 'test')
    assert chance_warning(0.6, labels, 'test') is None


def test_a_run_with_x_val_trains_and_stops_on_it(digits, tmp_path):
    """The manifest of the compress stage shows the size of the file's validation split."""
    from fpga_tests.sweep_helpers import train_tiny_model

    x, y = digits
    path = _npz(tmp_path / 'd.npz', x_train=x[:1100], y_train=y[:1100], x_val=x[1100:1237], y_val=y[1100:1237],
                x_test=x[1237:], y_test=y[1237:])  # fmt: skip
    config = tmp_path / 'run.yaml'
    config.write_text(yaml.safe_dump({
        'seed': 3,
        'data': {'dataset': 'npz', 'path': path},
        'model': {'path': train_tiny_model(tmp_path)},
        'compress': {'epochs': 1, 'finetune_epochs': 1, 'qat_epochs': 1},
    }))  # fmt: skip
    result = cli('run', config, '--out', tmp_path / 'run', '--stop-after', 'compress')
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / 'run' / 'compress' / 'manifest.json').read_text())
    assert manifest['data']['val_samples'] == 137 and manifest['data']['train_samples'] == 1100
    assert manifest['data']['val_source'] == "the file's x_val/y_val"
