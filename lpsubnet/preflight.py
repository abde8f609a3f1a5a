"""Checks before training: what a later stage would refuse, found in seconds.

``prune``, ``run`` and ``sweep`` train for minutes to hours before the hardware stages
see the model. The pruner's preview (``pruner.quantized_preview``: the QKeras model
compress would write, no channel cut, no training) goes through the hardware routes'
own planning (``hls_backend.check_supported``), so a layer a route does not map or a
BatchNorm that cannot be folded stops the command before its first epoch, with the
error the later stage would give.
"""

from __future__ import annotations

from hls_backend.errors import UnsupportedModelError

from .config import RunConfig

ROUTE_NAMES = {'hls': 'the HLS route (lpsubnet hls)', 'rtl': 'the RTL route (lpsubnet rtl)'}


def run_routes(config: RunConfig) -> tuple[str, ...]:
    """The routes a run (or a sweep's trials) builds: HLS always, RTL unless rtl.enabled is false."""
    return ('hls', 'rtl') if config.rtl.enabled is not False else ('hls',)


def check_before_training(model, train, settings: dict, routes: tuple[str, ...], require_all: bool = True) -> list[str]:
    """Raise what compress or a route would refuse of ``model`` after training.

    ``settings``: the compress settings (``CompressOptions`` fields); ``train``: the
    training data (x, y), whose first inputs calibrate the preview. ``require_all``:
    every route must accept the model (a run builds them all); otherwise one suffices
    (``lpsubnet prune``, whose output may go to either) and the refusals of the others
    are returned as notes.
    """
    import hls_backend
    import pruner
    from pruner import CompressOptions

    options = CompressOptions.from_settings({**settings, 'verbose': 0})
    preview = pruner.quantized_preview(model, train, options)
    refused: dict[str, UnsupportedModelError] = {}
    for route in routes:
        try:
            hls_backend.check_supported(preview, route)
        except UnsupportedModelError as exc:
            refused[route] = exc
    if refused and (require_all or len(refused) == len(routes)):
        route, exc = next(iter(refused.items()))
        others = [r for r in refused if r != route]
        also = f' ({" and ".join(ROUTE_NAMES[r] for r in others)} refuses it too)' if others else ''
        raise UnsupportedModelError(
            f'{exc} [found before training: {ROUTE_NAMES[route]} would refuse the reduced model{also}]'
        ) from None
    return [f'{ROUTE_NAMES[route]} will refuse the reduced model: {exc}' for route, exc in refused.items()]
