"""Each setting is declared once (issue 29): the library, ``lpsubnet prune`` and the run
configuration agree on every default, every declared setting is reachable from each
surface that claims it, and a setting added to the declaration appears everywhere
without another edit."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import click
import pytest

from declared_settings import declared
from lpsubnet.cli import prune
from lpsubnet.config import RunConfig
from pruner.options import CompressOptions


def _cli_params() -> dict[str, click.Parameter]:
    return {p.name: p for p in prune.params}


@pytest.mark.parametrize('name', list(declared(CompressOptions)))
def test_every_surface_that_claims_a_setting_has_it_with_the_same_default(name):
    setting = declared(CompressOptions)[name]
    surfaces, default = setting.surfaces, setting.default
    params = _cli_params()
    config_fields = RunConfig.model_fields['compress'].annotation.model_fields
    assert (name in params) is surfaces['cli'], f'{name}: CLI exposure differs from its declaration'
    assert (name in config_fields) is surfaces['config'], f'{name}: config exposure differs from its declaration'
    if surfaces['cli']:
        cli_default = params[name].default
        expected = None if isinstance(default, tuple | dict) else default
        if params[name].is_flag:
            expected = bool(default)
        if isinstance(default, tuple) and not default:
            cli_default = None if cli_default in ((), None) else cli_default
        assert cli_default == expected, f'{name}: CLI default {cli_default!r}, library {default!r}'
    if surfaces['config']:
        assert config_fields[name].default == default, f'{name}: config default differs from the library'
    if name not in ('loss', 'metrics'):  # objects, not settings a file can hold
        assert name in CompressOptions.build().echo(), f'{name}: not echoed in the manifest'


def test_the_library_and_lpsubnet_prune_quantize_alike_by_default():
    """The issue's drift: weight_bits 4 in the library, 8 on the CLI and in the run."""
    params = _cli_params()
    library = CompressOptions()
    for name in ('weight_bits', 'activation_bits', 'bias_bits', 'last_layer_bits', 'percentile'):
        assert params[name].default == getattr(library, name), name
    assert RunConfig().compress.weight_bits == library.weight_bits == 8


SCRIPT = textwrap.dedent(
    """
    import dataclasses, importlib, json, sys
    from typing import Annotated

    import numpy as np
    import pruner.options as options
    from pruner.options import setting

    @dataclasses.dataclass
    class Extended(options.CompressOptions):
        probe_setting: Annotated[int, setting('A setting added by the test.', ge=0)] = 7

    options.CompressOptions = Extended
    import lpsubnet.settings, lpsubnet.config, lpsubnet.sweep_space, lpsubnet.cli
    for module in (lpsubnet.config, lpsubnet.sweep_space, lpsubnet.cli):
        importlib.reload(module)
    from click.testing import CliRunner

    help_text = CliRunner().invoke(lpsubnet.cli.main, ['prune', '--help']).output
    printed = CliRunner().invoke(lpsubnet.cli.main, ['run', '--print-config']).output
    sweep = lpsubnet.sweep_space.parse_sweep({'sweep': {'space': {'compress.probe_setting': [1, 2]}}})
    try:
        lpsubnet.sweep_space.parse_sweep({'sweep': {'space': {'compress.probe_setting': [-1]}}})
        negative = 'accepted'
    except lpsubnet.config.ConfigError as exc:
        negative = str(exc)

    import keras, pruner
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation='softmax')(keras.layers.Dense(6, activation='relu')(inp)))
    model.compile('adam', 'sparse_categorical_crossentropy')
    x = np.random.default_rng(0).normal(size=(32, 4)); y = np.arange(32) % 3
    _, manifest = pruner.compress(model, (x, y), (x, y), Extended(probe_setting=5), finetune_epochs=0, qat_epochs=1)
    print(json.dumps({
        'help': '--probe-setting' in help_text and 'A setting added by the test.' in help_text,
        'config': 'probe_setting: 7' in printed,
        'sweep_keys': [d.key for d in sweep.dimensions],
        'negative': negative,
        'manifest': manifest['pruner'].get('probe_setting'),
    }))
    """
)


def test_a_new_setting_appears_on_every_surface_without_another_edit(tmp_path):
    """A field with its declaration, added in a subclass: ``lpsubnet prune --help``,
    ``lpsubnet run --print-config``, the sweep's space (with the declared bound) and the
    manifest all have it (in a process of its own: the modules are reloaded)."""
    import json

    script = tmp_path / 'probe.py'
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['help'] and result['config']
    assert result['sweep_keys'] == ['compress.probe_setting']
    assert 'compress.probe_setting' in result['negative'] and '0' in result['negative']
    assert result['manifest'] == 5


def test_declarations_are_complete():
    """Every field of CompressOptions but the resolved measure is a declared setting with a
    description, and a setting the CLI shows has a flag that names it."""
    names = {f.name for f in dataclasses.fields(CompressOptions)} - {'measure'}
    assert names == set(declared(CompressOptions))
    for name, setting in declared(CompressOptions).items():
        assert setting.info.description and setting.info.description.endswith('.'), name
        assert setting.surfaces['flag'] is None or setting.surfaces['flag'].startswith('--'), name
