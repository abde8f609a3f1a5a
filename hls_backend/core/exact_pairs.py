"""Float activations that a quantizer right after them makes redundant, folded away.

A float ``relu`` whose only consumer is a quantizer that maps every negative value to 0
(``quantized_relu`` with no negative slope, ``quantized_bits`` without a sign) changes
nothing: for x < 0 both the pair and the quantizer alone give 0, for x >= 0 the relu is
the identity. hls4ml's own QKeras example CNN is written that way (a ``QConv2D`` with
``activation='relu'`` followed by ``QActivation(quantized_relu(6, 0))``). Every route
plans and builds the model with such relus removed, so the design has no float
activation to refuse; the QKeras reference computes the same float32 values with or
without them (the relu output is the input or 0, both exact), so the routes' exactness
promise is unchanged. Each fold is named in the project's notes.

What is folded: the ``activation='relu'`` of a layer (set to linear), and an
``Activation('relu')`` or plain ``ReLU()`` layer (removed, its consumer reads its input).
Nothing is folded at a model output or where the relu's result has another consumer.
"""

from __future__ import annotations

import json

from .fixed_point import quantizer_config
from .plan import inbound


def clips_negatives_to_zero(quantizer) -> bool:
    """Whether a QKeras quantizer maps every negative input to 0."""
    name, config = quantizer_config(quantizer)
    if name == 'quantized_relu':
        return not config.get('use_sigmoid') and float(config.get('negative_slope') or 0.0) == 0.0
    if name == 'quantized_bits':
        return not config.get('keep_negative', True)
    return False


def _float_relu(layer) -> str | None:
    """'activation' for a layer whose ``activation=`` is a float relu, 'layer' for a layer that
    is nothing but a relu (Activation('relu'), a default ReLU()), None otherwise."""
    cls = layer.__class__.__name__
    config = layer.get_config()
    if cls == 'ReLU':
        plain = config.get('max_value') is None and not config.get('negative_slope') and not config.get('threshold')
        return 'layer' if plain else None
    activation = config.get('activation')
    if isinstance(activation, dict) and activation.get('module', '').startswith('keras'):
        activation = activation.get('config', activation.get('class_name'))
    if activation != 'relu':
        return None
    return 'layer' if cls == 'Activation' else 'activation'


def _clipping_consumer(layer, consumers: dict) -> str | None:
    users = consumers.get(layer.name, [])
    if len(users) != 1 or users[0].__class__.__name__ != 'QActivation':
        return None
    return users[0].name if clips_negatives_to_zero(users[0].activation) else None


def fold_exact_pairs(model):
    """(model, notes): ``model`` with every redundant float relu folded away (a new
    functional model with the same weights), or ``model`` itself when there is none."""
    consumers: dict[str, list] = {}
    for layer in model.layers:
        if layer.__class__.__name__ == 'InputLayer':
            continue
        for source in inbound(layer):
            consumers.setdefault(source.name, []).append(layer)
    outputs = {t._keras_history.operation.name for t in model.outputs}
    folds = {}  # layer name -> ('activation' | 'layer', the quantizer layer's name)
    for layer in model.layers:
        how = _float_relu(layer)
        if how is None or layer.name in outputs:
            continue
        user = _clipping_consumer(layer, consumers)
        if user is not None:
            folds[layer.name] = (how, user)
    if not folds:
        return model, []

    import keras

    functional = model if model.__class__.__name__ == 'Functional' else keras.Model(model.inputs, model.outputs)
    config = functional.get_config()
    config['name'] = model.name
    removed = {}
    for layer_config in config['layers']:
        name = layer_config['config']['name']
        if name not in folds:
            continue
        if folds[name][0] == 'activation':
            layer_config['config']['activation'] = 'linear'
        else:
            removed[name] = layer_config['inbound_nodes'][0]['args'][0]['config']['keras_history']
    config['layers'] = [c for c in config['layers'] if c['config']['name'] not in removed]
    config['layers'] = json.loads(json.dumps(config['layers']), object_hook=lambda d: _rewired(d, removed))
    folded = keras.Model.from_config(config)
    for layer in folded.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    what = {'activation': "the float relu activation of layer '{}'", 'layer': "the float relu layer '{}'"}
    notes = [
        f"{what[how].format(name)} is folded into the quantizer of '{user}', which maps negative values to 0 "
        'as well (the same values)'
        for name, (how, user) in folds.items()
    ]
    return folded, notes


def _rewired(node: dict, removed: dict) -> dict:
    """A tensor reference to a removed relu's output becomes one to that relu's input."""
    history = node.get('keras_history') if isinstance(node, dict) else None
    if history and history[0] in removed:
        node['keras_history'] = list(removed[history[0]])
    return node


def plan_folded(model, registry, input_precision: str | None = None, default_precision: str | None = None):
    """(model, plan) as every route plans a model: the redundant float relus folded first,
    each fold named at the head of the plan's notes (``core.plan.plan_model`` on the result)."""
    from .plan import plan_model

    model, folded = fold_exact_pairs(model)
    plan = plan_model(model, registry, input_precision, default_precision)
    plan.notes[:0] = folded
    return model, plan
