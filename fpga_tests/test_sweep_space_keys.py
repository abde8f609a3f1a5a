"""Which run-configuration keys a sweep may vary (lpsubnet.sweep_space), read without Ray:
per-layer bits (issue 26: compress.layer_bits.<layer>.<weight_bits|activation_bits>) and
the budgets; each point becomes a configuration the run accepts."""

import pytest

from lpsubnet.config import ConfigError, parse_config
from lpsubnet.sweep_space import apply_params, grid_points, parse_sweep


def _sweep(space: dict) -> dict:
    return {'sweep': {'space': space, 'search': 'grid'}}


def test_per_layer_bits_and_budgets_are_sweep_keys():
    config = parse_sweep(
        _sweep(
            {
                'compress.layer_bits.fc1.weight_bits': [3, 4],
                'compress.layer_bits.__input__.activation_bits': {'low': 6, 'high': 8, 'step': 2},
                'compress.max_lut': [5000],
            }
        )
    )
    dims = {d.key: d for d in config.dimensions}
    assert dims['compress.layer_bits.__input__.activation_bits'].integer  # a whole-number range
    assert dims['compress.layer_bits.fc1.weight_bits'].values == (3, 4)
    points = grid_points(config)
    assert len(points) == 4
    run = parse_config(apply_params(config.base, points[0]))
    assert run.compress.layer_bits == {'fc1': {'weight_bits': 3}, '__input__': {'activation_bits': 6}}
    assert run.compress.max_lut == 5000


@pytest.mark.parametrize(
    'key, message',
    [
        ('compress.layer_bits.fc1', r'compress.layer_bits entries are named compress.layer_bits.<layer>.<weight_bits'),
        ('compress.layer_bits.fc1.bits', "'bits' is not one of weight_bits, activation_bits, bias_bits"),
    ],
)
def test_a_per_layer_bits_key_names_layer_and_setting(key, message):
    with pytest.raises(ConfigError, match=message):
        parse_sweep(_sweep({key: [4]}))
