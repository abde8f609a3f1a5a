"""CompressOptions: one options object, built in one place, choices from the registries."""

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pruner import CompressOptions, Importance, PrunerError
from pruner import importance as importance_lib
from pruner.options import importance_names, schedule_names


def test_choices_are_the_registries():
    assert importance_names() == ('activation_l1', 'activation_l0', 'weight_l1', 'random')
    assert schedule_names() == ('layerwise', 'oneshot', 'gradual')


def test_user_facing_conventions_live_in_from_settings():
    options = CompressOptions.from_settings({'patience': 0, 'range_refresh': 0, 'sparsity': 0.25}, seed=3)
    assert options.patience is None and options.range_refresh is None
    assert options.sparsity == 0.25 and options.seed == 3 and repr(options.measure) == 'ActivationL1()'
    # The library keeps its own meaning of the same values.
    assert CompressOptions.build(range_refresh=0).range_refresh == 0


def test_bad_settings_name_the_setting():
    with pytest.raises(PrunerError, match=r"unknown compress setting\(s\) \['wbits'\]"):
        CompressOptions.from_settings({'wbits': 4})
    with pytest.raises(PrunerError, match="unknown importance 'l2'"):
        CompressOptions.build(importance='l2')
    with pytest.raises(PrunerError, match="unknown schedule 'cyclic'"):
        CompressOptions.build(schedule='cyclic')
    with pytest.raises(PrunerError, match='weight_bits=1: should be a whole number >= 2 and <= 16'):
        CompressOptions.build(weight_bits=1)
    with pytest.raises(PrunerError, match=r'sparsity=1.0: should be a number >= 0 and < 1'):
        CompressOptions.build(sparsity=1.0)
    with pytest.raises(PrunerError, match="finetune_epochs=-1: should be a whole number >= 0 or 'auto'"):
        CompressOptions.build(finetune_epochs=-1)


def test_keywords_replace_the_values_of_an_options_object():
    base = CompressOptions(sparsity=0.75, weight_bits=6)
    options = CompressOptions.build(base, weight_bits=3)
    assert (options.sparsity, options.weight_bits, base.weight_bits) == (0.75, 3, 6)


def test_a_new_measure_becomes_a_choice_of_the_cli_and_the_config(monkeypatch):
    monkeypatch.setattr(importance_lib, 'REGISTRY', dict(importance_lib.REGISTRY))

    class Largest(Importance):
        name = 'largest_first'

        def scores(self, producers, statistics):
            return -np.arange(len(statistics['l1']), dtype=np.float64)

    assert 'largest_first' in importance_names()
    assert CompressOptions.build(importance='largest_first').measure.__class__ is Largest

    from lpsubnet.cli import main
    from lpsubnet.config import ConfigError, parse_config

    assert parse_config({'compress': {'importance': 'largest_first'}}).compress.importance == 'largest_first'
    with pytest.raises(ConfigError, match='choose one of activation_l1, .*largest_first'):
        parse_config({'compress': {'importance': 'nope'}})
    result = CliRunner().invoke(main, ['prune', '--help'])
    assert result.exit_code == 0 and 'largest_first' in result.output


def test_the_cli_does_not_load_keras_to_list_its_commands():
    code = 'import sys; from lpsubnet.cli import main; assert "keras" not in sys.modules; print("ok")'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'ok'
