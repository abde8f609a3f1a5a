"""The QKeras reference every route is compared with: test inputs on the input grid,
and the model's outputs on them (logits when a final softmax is left out)."""

from __future__ import annotations

import numpy as np

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


def prepare_inputs(model, plan: ModelPlan, x: np.ndarray, source: str) -> np.ndarray:
    """Inputs on the input type's grid: the values both the model and the design see."""
    x = check_inputs(x, model, source)
    return plan.input_type.quantize(x)


def reference_outputs(model, plan: ModelPlan, x: np.ndarray) -> np.ndarray:
    """The QKeras model's outputs (float32, as QKeras computes) on ``x``, one row per sample."""
    return model_outputs(logits_model(model, plan), x)


def model_outputs(model, x: np.ndarray) -> np.ndarray:
    """``model``'s outputs on ``x`` as float64 (computed in float32, as QKeras computes)."""
    y = model.predict(np.asarray(x, dtype=np.float32), verbose=0, batch_size=1024)
    return np.asarray(y, dtype=np.float64)
