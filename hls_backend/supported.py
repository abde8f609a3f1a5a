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


def supported_layers_markdown() -> str:
    """One row per layer family (Keras class names with the same kinds and cells)."""
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
    header = '| Keras / QKeras layer | ' + ' | '.join(title for title, _ in ROUTES) + ' |'
    lines = [header, '|' + '---|' * (len(ROUTES) + 1)]
    for group, cells, _ in rows:
        lines.append(f'| {", ".join(group)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
