"""What a later stage would refuse is refused before the first epoch (lpsubnet.preflight).

``prune``, ``run`` and ``sweep`` hold the pruner's preview of the model (the QKeras
model compress would write, no training) against the pruner's own checks and the
hardware routes' planning. Training is made impossible here (``keras.Model.fit``
raises), so a command that reaches its first epoch fails these tests.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from fpga_tests.cli_helpers import cli
from hls_backend.errors import UnsupportedModelError

FIXTURES = Path(__file__).parent / 'fixtures' / 'example_models'


@pytest.fixture
def no_training(monkeypatch):
    import keras

    def refuse(*args, **kwargs):
        raise AssertionError('a training step ran before the refusal')

    monkeypatch.setattr(keras.Model, 'fit', refuse)


def _transpose_model(path: Path) -> Path:
    """A float CNN with a Conv2DTranspose: the pruner quantizes it, no hardware route maps it."""
    import keras

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation='relu', name='conv')(inp)
    h = keras.layers.Conv2DTranspose(2, 3, name='upconv')(h)
    out = keras.layers.Dense(10, activation='softmax', name='classifier')(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    model.save(path)
    return path


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from lpsubnet.datasets import load_digits_images

    x, y = load_digits_images()
    directory = tmp_path_factory.mktemp('data')
    np.savez(directory / 'digits.npz', x_train=x[:1000], y_train=y[:1000], x_val=x[1000:1300], y_val=y[1000:1300])
    rng = np.random.default_rng(0)
    jets = rng.normal(size=(120, 25, 25, 1)).astype(np.float32)
    np.savez(directory / 'jets.npz', x_train=jets, y_train=np.arange(120) % 5)
    return directory


def test_prune_refuses_an_unfoldable_batchnorm_before_training(no_training, data, tmp_path):
    # jetTagger_Conv2D_Small normalizes its input: no conv/dense before the BatchNorm to fold it into.
    result = cli(
        'prune', FIXTURES / 'jetTagger_Conv2D_Small.json', '--data', data / 'jets.npz', '--out', tmp_path / 'o'
    )
    assert result.returncode != 0
    assert "layer 'batch_normalization_1' is a BatchNormalization that could not be folded" in result.stderr
    assert 'Traceback' not in result.stderr
    assert not (tmp_path / 'o').exists()


def test_prune_refuses_a_layer_no_route_maps_before_training(no_training, data, tmp_path):
    model = _transpose_model(tmp_path / 'transpose.keras')
    result = cli('prune', model, '--data', data / 'digits.npz', '--out', tmp_path / 'o')
    assert result.returncode != 0
    message = result.stderr
    # The refusal `lpsubnet hls` would give, summarised, and when it was found.
    assert "layer 'upconv' (QConv2DTranspose) is not supported by the HLS back end (hls4ml)" in message
    assert '`lpsubnet layers` lists them' in message
    assert 'found before training' in message and 'the RTL route (lpsubnet rtl) refuses it too' in message
    assert len(message.strip().splitlines()) <= 2 and 'Traceback' not in message
    assert not (tmp_path / 'o').exists()


def test_run_refuses_before_training(no_training, data, tmp_path):
    model = _transpose_model(tmp_path / 'transpose.keras')
    config = tmp_path / 'run.yaml'
    config.write_text(yaml.safe_dump({'data': {'dataset': 'npz', 'path': str(data / 'digits.npz')},
                                      'model': {'path': str(model)}}))  # fmt: skip
    result = cli('run', config, '--out', tmp_path / 'run')
    assert result.returncode != 0
    assert "layer 'upconv' (QConv2DTranspose) is not supported" in result.stdout + result.stderr
    assert not (tmp_path / 'run' / 'stages' / 'compress').exists()


def test_sweep_refuses_before_any_trial(no_training, data, tmp_path):
    from fpga_tests.sweep_helpers import write_config

    model = _transpose_model(tmp_path / 'transpose.keras')
    config = write_config(tmp_path, str(model), data={'dataset': 'npz', 'path': str(data / 'digits.npz')})
    result = cli('sweep', config, '--out', tmp_path / 'sweep')
    assert result.returncode != 0
    assert "layer 'upconv' (QConv2DTranspose) is not supported" in result.stdout + result.stderr
    assert not (tmp_path / 'sweep' / 'trials.jsonl').exists()


def test_a_model_one_route_refuses_is_pruned_with_a_note(data):
    """``prune``'s output may go to either route: one that maps the model is enough."""
    import keras

    from lpsubnet.preflight import check_before_training

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation='relu', name='conv')(inp)
    h = keras.layers.AveragePooling2D(2, name='avg')(h)  # the RTL route maps it, hls4ml rounds the average
    model = keras.Model(inp, keras.layers.Dense(10, name='out')(keras.layers.Flatten()(h)))
    with np.load(data / 'digits.npz') as d:
        train = (d['x_train'], d['y_train'])
    notes = check_before_training(model, train, {}, ('hls', 'rtl'), require_all=False)
    assert len(notes) == 1 and notes[0].startswith('the HLS route (lpsubnet hls) will refuse the reduced model')
    with pytest.raises(UnsupportedModelError, match=r"layer 'avg' \(AveragePooling2D\) is not bit-exact in hls4ml"):
        check_before_training(model, train, {}, ('hls', 'rtl'), require_all=True)
