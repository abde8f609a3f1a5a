"""Reading and rewriting the graph of a functional Keras 3 model.

One idea: a model is a list of *calls* (a layer applied to tensors) in topological
order; every rewrite (insert masks, cut channels, fold batch norm, swap in QKeras
layers) walks that list once and rebuilds the model call by call. Sequential models
are read through their functional view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from .errors import PrunerError


class GraphError(PrunerError):
    """The model's graph cannot be read (shared layers, nested models, no inputs)."""


@dataclass
class Call:
    """One application of ``layer`` in the model: its input and output tensors."""

    layer: keras.layers.Layer
    node: object  # keras.src.ops.node.Node
    inputs: list  # KerasTensors read (flattened)
    outputs: list  # KerasTensors produced
    consumers: list = field(default_factory=list)  # calls reading any output, in order

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def kind(self) -> str:
        return self.layer.__class__.__name__


def _history(tensor):
    history = getattr(tensor, '_keras_history', None)
    if history is None:
        raise GraphError(f'tensor {tensor} has no Keras history: pass a functional or built Sequential model')
    return history


def calls(model: keras.Model) -> list[Call]:
    """The model's calls in topological order (inputs first; ties by layer order)."""
    if not getattr(model, 'outputs', None) or not getattr(model, 'inputs', None):
        raise GraphError(f"model '{model.name}' has no symbolic inputs/outputs; build it with keras.Input first")
    order: list[Call] = []
    by_node: dict[int, Call] = {}
    seen_layers: dict[int, str] = {}
    # Iterative post-order DFS from the outputs so deep models do not recurse.
    layer_rank = {id(layer): i for i, layer in enumerate(model.layers)}
    stack = [(_history(t), False) for t in reversed(model.outputs)]
    while stack:
        (operation, node_index, _), expanded = stack.pop()
        node = operation._inbound_nodes[node_index]
        if id(node) in by_node:
            continue
        if expanded:
            if id(operation) in seen_layers:
                raise GraphError(
                    f"layer '{operation.name}' is called more than once in the model; shared layers are not supported"
                )
            if isinstance(operation, keras.Model):
                raise GraphError(
                    f"layer '{operation.name}' is a nested model ({operation.__class__.__name__}); "
                    'flatten it into one functional model first'
                )
            seen_layers[id(operation)] = operation.name
            call = Call(operation, node, list(node.arguments.keras_tensors), list(node.outputs))
            by_node[id(node)] = call
            order.append(call)
            continue
        stack.append(((operation, node_index, 0), True))
        parents = [_history(t) for t in node.arguments.keras_tensors]
        # Visit parents in layer order so the topological order is deterministic.
        parents.sort(key=lambda h: layer_rank.get(id(h[0]), -1), reverse=True)
        for parent in parents:
            parent_node = parent[0]._inbound_nodes[parent[1]]
            if id(parent_node) not in by_node:
                stack.append((parent, False))
    producer = {}
    for call in order:
        for t in call.outputs:
            producer[id(t)] = call
    for call in order:
        for t in call.inputs:
            parent = producer[id(t)]
            if call not in parent.consumers:
                parent.consumers.append(call)
    return order


def clone_layer(layer, **config_changes):
    """A fresh, unbuilt layer of the same class and config (with ``config_changes``)."""
    config = layer.get_config()
    config.update(config_changes)
    return layer.__class__.from_config(config)


def rebuild(
    model: keras.Model, transform: Callable, name: str | None = None, input_transform: Callable | None = None
) -> keras.Model:
    """Rebuild ``model`` call by call.

    ``transform(call, args, kwargs)`` receives the call and its arguments with the
    old tensors replaced by the new ones, and returns the new output tensor(s) (the
    same structure as the old call's outputs). Input layers are recreated here;
    ``input_transform(tensor)``, if given, is applied to each new input tensor before
    any layer reads it (e.g. to insert an input quantizer).
    """
    order = calls(model)
    new = {}
    fresh_inputs = {}
    for call in order:
        if call.kind == 'InputLayer':
            old = call.outputs[0]
            tensor = keras.Input(batch_shape=old.shape, dtype=old.dtype, name=call.layer.name)
            fresh_inputs[id(old)] = tensor
            new[id(old)] = input_transform(tensor) if input_transform else tensor
            continue
        args, kwargs = call.node.arguments.fill_in(new)
        outputs = transform(call, args, kwargs)
        flat = keras.tree.flatten(outputs)
        if len(flat) != len(call.outputs):
            raise GraphError(f"rewriting layer '{call.name}' gave {len(flat)} outputs, expected {len(call.outputs)}")
        for old, tensor in zip(call.outputs, flat, strict=True):
            new[id(old)] = tensor
    inputs = [fresh_inputs[id(t)] for t in model.inputs]
    outputs = [new[id(t)] for t in model.outputs]
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=name or model.name,
    )
