"""The supported-layer table, derived from the routes' layer-kind registries.

``python -m lpsubnet.readme_tables README.md`` writes it into the README (a test
checks that the README is current).
"""

from __future__ import annotations

from .core.layer_kinds import REFUSALS, Registry
from .hls.layers import HLS_LAYERS
from .rtl.layers import RTL_LAYERS

ROUTES = (('HLS (hls4ml, C simulation)', HLS_LAYERS), ('RTL (da4ml, Verilator)', RTL_LAYERS))


def _cell(registry: Registry, name: str) -> str:
    kind = registry.get(name)
    if kind is None:
        return 'no'
    if not kind.accepted:
        return kind.limits or 'refused'
    return f'yes: {kind.limits}' if kind.limits else 'yes'


def supported_rows() -> list[tuple[list[str], list[str]]]:
    """(layer class names, one cell per route) per layer family: classes with the same
    kinds and cells on every route share a row."""
    names: list[str] = []
    for _, registry in ROUTES:
        names += [n for n in registry.kinds if n not in names]
    names += [n for n in REFUSALS.kinds if n not in names]
    rows: list[tuple[list[str], list[str], tuple]] = []
    for name in names:
        cells = [_cell(registry, name) for _, registry in ROUTES]
        key = tuple(id(registry.get(name)) for _, registry in ROUTES)
        if rows and rows[-1][2] == key and rows[-1][1] == cells:
            rows[-1][0].append(name)
        else:
            rows.append(([name], cells, key))
    return [(group, cells) for group, cells, _ in rows]


def supported_layers_markdown() -> str:
    """The README's table: one row per layer family."""
    header = '| Keras / QKeras layer | ' + ' | '.join(title for title, _ in ROUTES) + ' |'
    lines = [header, '|' + '---|' * (len(ROUTES) + 1)]
    for group, cells in supported_rows():
        lines.append(f'| {", ".join(group)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def route_registry(route: str) -> Registry:
    """The layer kinds of ``route``: 'hls' or 'rtl'."""
    registries = {'hls': HLS_LAYERS, 'rtl': RTL_LAYERS}
    if route not in registries:
        raise ValueError(f'route {route!r} is not one of {", ".join(registries)}')
    return registries[route]


def check_supported(model, route: str, default_precision: str | None = None) -> list[str]:
    """Plan ``model`` (a QKeras model in memory) for ``route`` ('hls' or 'rtl') as writing
    its project would, so that what the route refuses (a layer it does not map, a float
    activation, an unfolded batch norm) is raised as the same UnsupportedModelError, in
    seconds and before anything is trained or written. Returns the plan's notes."""
    from .core.exact_pairs import plan_folded

    _, plan = plan_folded(model, route_registry(route), None, default_precision if route == 'hls' else None)
    return plan.notes
