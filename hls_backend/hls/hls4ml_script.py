"""lpsubnet inside an hls4ml user's own script.

An hls4ml user's conversion script (``config_from_keras_model`` ->
``convert_from_keras_model`` -> ``compile`` -> ``predict``) gets lpsubnet's QKeras
handlers and its exact types by adding two lines::

    import hls_backend
    config = hls_backend.exact_config(model, backend='Vitis', io_type='io_parallel')
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=config, backend='Vitis', io_type='io_parallel', output_dir='prj')

:func:`exact_config` plans the model as ``lpsubnet hls`` does (the same layer kinds,
the same refusals), writes every planned type into hls4ml's own config dictionary,
and converts the model once itself so that a graph hls4ml would compute wrongly is
refused here, naming the layer, rather than found later as a mismatch.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from ..core.fixed_point import parse_fixed_type
from ..core.layer_kinds import ACTIVATION_SUFFIX
from ..core.plan import DEFAULT_INPUT_TYPE, check_float32_reference, plan_model
from ..errors import BadInputError, UnsupportedModelError
from . import registration
from .convert import base_config, hls4ml_step
from .layers import HLS_LAYERS, check_hls_graph
from .options import IO_TYPES
from .vendor import BACKENDS

# hls4ml's Model-level config keys a caller may set (hls4ml's names, passed through).
MODEL_KEYS = ('ReuseFactor', 'Strategy', 'BramFactor', 'TraceOutput')
SOFTMAX_CHOICES = ('refuse', 'skip', 'hls4ml')


def register() -> None:
    """Register lpsubnet's Keras-3 QKeras handlers and its hls4ml 1.3.0 corrections (hls4ml
    optimizer passes) with hls4ml (idempotent). After it, hls4ml's own
    ``convert_from_keras_model`` converts qkeras-v3 models; :func:`exact_config` calls it
    too. :func:`registered` lists what it added, :func:`unregister` takes it out again."""
    registration.register()


def registered() -> dict[str, list[str]]:
    """The layer classes converted by lpsubnet's handlers and lpsubnet's passes in
    hls4ml's flows (``flow: pass``), as they are now."""
    return registration.registered()


def unregister() -> None:
    """Take lpsubnet's handlers and passes out of hls4ml: it converts as it ships."""
    registration.unregister()


def exact_config(
    model,
    backend: str = 'Vitis',
    io_type: str = 'io_parallel',
    *,
    input_precision: str | None = None,
    softmax: str = 'refuse',
    **hls4ml_options,
) -> dict:
    """hls4ml's config dictionary (``granularity='name'``, hls4ml's own key names) that
    makes hls4ml's conversion of ``model`` bit-exact against the QKeras model.

    ``model``: a Keras 3 model with qkeras-v3 layers, or the path of one (``.keras``, or a
    Keras-2-era ``model.json`` with its weights file beside it).
    ``backend``, ``io_type``: pass the same values to ``convert_from_keras_model``.
    ``input_precision``: the input type when the model has no input quantizer
    (default ``ap_fixed<16,6,AP_RND_CONV,AP_SAT>``); inputs must lie on its grid.
    ``softmax``: a softmax at the output is not exact in hls4ml (lookup tables);
    ``'refuse'`` (default) refuses it naming the layer; ``'skip'`` sets hls4ml's own
    ``Skip`` on it, so the design outputs the logits, bit-exact against the model's
    values before its softmax (as ``lpsubnet hls`` does; the argmax is the model's);
    ``'hls4ml'`` keeps hls4ml's softmax with its default types (everything before it
    stays exact).
    ``hls4ml_options``: hls4ml's Model-level keys (ReuseFactor, Strategy, BramFactor,
    TraceOutput), written into ``config['Model']`` (ReuseFactor also per layer).

    Raises :class:`~hls_backend.errors.UnsupportedModelError` naming the layer and
    why, exactly as ``lpsubnet hls`` refuses, or BadInputError for a bad option.
    """
    import keras

    register()
    if backend not in BACKENDS:
        raise BadInputError(f'backend {backend!r} is not supported; choose one of {", ".join(BACKENDS)}')
    if io_type not in IO_TYPES:
        raise BadInputError(f'io_type {io_type!r} is not supported; choose one of {", ".join(IO_TYPES)}')
    if softmax not in SOFTMAX_CHOICES:
        raise BadInputError(f'softmax {softmax!r} is not supported; choose one of {", ".join(SOFTMAX_CHOICES)}')
    unknown = sorted(set(hls4ml_options) - set(MODEL_KEYS))
    if unknown:
        raise BadInputError(
            f'hls4ml option(s) {", ".join(unknown)} not supported here; supported: {", ".join(MODEL_KEYS)}'
        )
    reuse = hls4ml_options.get('ReuseFactor', 1)
    if not isinstance(reuse, int) or reuse < 1:
        raise BadInputError(f'ReuseFactor must be an integer >= 1, got {reuse!r}')

    source = 'the model'
    if isinstance(model, str | Path):
        from ..core.model_io import load_qkeras_model

        source = str(model)
        model = load_qkeras_model(model)
    if not isinstance(model, keras.Model):
        raise BadInputError(
            f'exact_config expects a Keras 3 model, a .keras or a Keras 2 .json path, got {type(model).__name__}'
        )
    from .convert import check_layer_names

    check_layer_names(model, source)
    # The plan walks a functional graph (a Sequential model's layers leave out its input).
    functional = (
        keras.Model(model.inputs, model.outputs, name=model.name) if isinstance(model, keras.Sequential) else model
    )
    plan = plan_model(functional, HLS_LAYERS, input_precision, None)
    if plan.softmax_layer and softmax == 'refuse':
        raise UnsupportedModelError(
            f"layer '{plan.softmax_layer}': the softmax at the output is a lookup table in hls4ml and cannot be "
            "bit-exact; pass softmax='skip' for a design that outputs the exact logits (hls4ml's Skip), or "
            "softmax='hls4ml' to keep hls4ml's softmax (the layers before it stay exact)"
        )
    check_float32_reference(functional, plan, HLS_LAYERS)

    config = base_config(model, backend, reuse)
    for key, value in hls4ml_options.items():
        config['Model'][key] = value
    precisions = dict(plan.precisions)
    if plan.input_quantizer_layer == functional.outputs[0]._keras_history.operation.name:
        # A model that only quantizes its input: with the input given the quantizer's type,
        # hls4ml removes the quantizer as a no-op cast and writes a function whose input is
        # its output (C++ that does not compile). Keep the declared input type; the
        # quantizer then rounds in hardware as in QKeras.
        input_name = functional.inputs[0]._keras_history.operation.name
        precisions[input_name] = {'result': parse_fixed_type(input_precision or DEFAULT_INPUT_TYPE).hls4ml()}
    # The names are hls4ml's: the Keras layer names, a split activation '<layer>_activation'.
    for name, precision in precisions.items():
        if name in config['LayerName']:
            config['LayerName'][name].setdefault('Precision', {}).update(precision)
    if plan.softmax_layer and softmax == 'skip':
        softmax_name = plan.softmax_layer if plan.softmax_is_layer else f'{plan.softmax_layer}{ACTIVATION_SUFFIX}'
        config['LayerName'][softmax_name]['Skip'] = True
    _check_conversion(model, config, backend, io_type, precisions, plan.exact_sums)
    return config


def _check_conversion(model, config: dict, backend: str, io_type: str, planned: dict, sums: dict) -> None:
    """Convert once, as the caller will, and refuse a graph hls4ml would compute wrongly."""
    import copy

    import hls4ml

    with tempfile.TemporaryDirectory(prefix='lpsubnet-exact-config-') as tmp:
        hls_model = hls4ml_step(
            'convert_from_keras_model',
            functools.partial(
                hls4ml.converters.convert_from_keras_model,
                model,
                hls_config=copy.deepcopy(config),  # hls4ml fills in the dict it is given
                backend=backend,
                io_type=io_type,
                output_dir=tmp,
            ),
        )
        check_hls_graph(hls_model, planned, sums)
