"""lpsubnet's additions to hls4ml, put in and taken out as one: the Keras-3 handlers of the
HLS layer kinds that lpsubnet converts (:mod:`hls_backend.hls.qkeras_bridge`) and its
corrections of hls4ml 1.3.0 as hls4ml optimizer passes (:mod:`hls_backend.hls.passes`)."""

from __future__ import annotations

import functools

from ..errors import UnsupportedModelError
from .layers import HLS_LAYERS
from .passes import register_passes, registered_passes, unregister_passes


def _named(handler):
    """A layer handler whose failures name the layer (hls4ml's dispatcher would pass on a
    bare exception from deep inside its parsers)."""

    @functools.wraps(handler)
    def named(layer, in_tensors, out_tensors):
        try:
            return handler(layer, in_tensors, out_tensors)
        except UnsupportedModelError:
            raise
        except Exception as exc:
            raise UnsupportedModelError(
                f"layer '{layer.name}' ({layer.__class__.__name__}): hls4ml 1.3.0 cannot convert it "
                f'({type(exc).__name__}: {exc}); see the README table of supported layers'
            ) from exc

    named.lpsubnet_handler = True
    return named


def register() -> None:
    """Add lpsubnet's QKeras handlers to hls4ml's Keras-3 handler registry and its
    corrections to hls4ml's flows (:mod:`hls_backend.hls.passes`); idempotent.
    :func:`registered` lists both, :func:`unregister` takes them out again."""
    from hls4ml.converters.keras_v3 import layer_handlers

    for kind in HLS_LAYERS.unique_kinds():
        for class_name in kind.bridged:
            # The dispatcher looks up 'module.Class' first, then the bare class name.
            if not getattr(layer_handlers.get(class_name), 'lpsubnet_handler', False):
                layer_handlers[class_name] = _named(kind.hls4ml_layers)
    register_passes()


def registered() -> dict[str, list[str]]:
    """What :func:`register` added to hls4ml and is in place now: the layer classes with
    lpsubnet's handler, and lpsubnet's passes (``flow: pass``)."""
    from hls4ml.converters.keras_v3 import layer_handlers

    handlers = sorted(name for name, h in layer_handlers.items() if getattr(h, 'lpsubnet_handler', False))
    return {'handlers': handlers, 'passes': registered_passes()}


def unregister() -> None:
    """Take out everything :func:`register` added: hls4ml then converts as it ships."""
    from hls4ml.converters.keras_v3 import layer_handlers

    for name in [n for n, h in layer_handlers.items() if getattr(h, 'lpsubnet_handler', False)]:
        del layer_handlers[name]
    unregister_passes()
