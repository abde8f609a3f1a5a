"""The QKeras reference every route is compared with: test inputs on the input grid,
and the model's outputs on them (logits when a final softmax is left out)."""

from __future__ import annotations

import numpy as np

from ..errors import BuildError
from .input_range import InputRange
from .model_io import check_inputs
from .plan import ModelPlan


def logits_model(model, plan: ModelPlan):
    """The model without its final softmax (the design returns logits), or the model itself."""
    import keras

    if plan.softmax_layer is None:
        return model
    if plan.softmax_is_layer:
        layer = model.get_layer(plan.softmax_layer)
        return keras.Model(model.inputs, layer.input, name=model.name)
    config = model.get_config()
    for layer_config in config['layers']:
        if layer_config['config']['name'] == plan.softmax_layer:
            layer_config['config']['activation'] = 'linear'
    logits = model.__class__.from_config(config)
    logits.set_weights(model.get_weights())
    return logits


def prepare_inputs(
    model, plan: ModelPlan, x: np.ndarray, source: str, allow_wrap: bool = False
) -> tuple[np.ndarray, InputRange]:
    """Inputs on the input type's grid (the values both the model and the design see), and
    what that did to values outside the type's range (:mod:`hls_backend.core.input_range`):
    a wrapping input type that changes some is refused unless ``allow_wrap``."""
    x = check_inputs(x, model, source)
    seen = InputRange(plan.input_type, source)
    x = seen.quantize(x)
    seen.check(allow_wrap)
    return x, seen


def reference_outputs(model, plan: ModelPlan, x: np.ndarray) -> np.ndarray:
    """The QKeras model's outputs (float32, as QKeras computes) on ``x``, one row per sample."""
    return model_outputs(logits_model(model, plan), x)


def model_outputs(model, x: np.ndarray) -> np.ndarray:
    """``model``'s outputs on ``x`` as float64 (computed in float32, as QKeras computes).

    TensorFlow's graph optimizer rewrites chains of additions into one AddN, and its
    oneDNN kernel has been seen to abort on that node ("could not create a primitive
    descriptor for the reorder primitive"; make fuzz, campaign 6, csim-io_parallel seed
    100199, a QSeparableConv1D) in a process that had run many models, and not on a
    fresh one. The outputs are then computed by calling the model eagerly, batch by
    batch (no graph rewrite); the values are the same because every route refuses a
    model whose float32 sums are not exact (plan.check_float32_reference), so the order
    of the additions cannot change a bit.
    """
    import tensorflow as tf

    x = np.asarray(x, dtype=np.float32)
    try:
        y = model.predict(x, verbose=0, batch_size=1024)
    except (tf.errors.AbortedError, tf.errors.InternalError) as exc:
        try:
            y = np.concatenate([np.asarray(model(x[i : i + 1024], training=False)) for i in range(0, len(x), 1024)])
        except Exception as eager_exc:
            raise BuildError(
                f"TensorFlow could not compute the outputs of model '{model.name}' (predict(): "
                f'{type(exc).__name__}: {_first_line(exc)}; called eagerly: {type(eager_exc).__name__}: '
                f'{_first_line(eager_exc)}); try again with TF_ENABLE_ONEDNN_OPTS=0 in the environment'
            ) from eager_exc
    return np.asarray(y, dtype=np.float64)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    picked = next((line for line in lines if 'message' in line or 'error' in line.lower()), lines[0] if lines else '')
    return picked.strip()[:300]
