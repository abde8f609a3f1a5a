"""The README's generated tables, each rewritten between its markers.

``python -m lpsubnet.readme_tables README.md`` writes every table here from the code
that implements what it lists: the supported layers from the routes' layer-kind
registries (:func:`hls_backend.supported.supported_layers_markdown`) and the PyTorch
operations from the importer's handler table (:func:`pruner.torch_import.supported_ops_markdown`).
Tests check that the README is current.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def tables() -> dict[str, Callable[[], str]]:
    """Marker name -> the function that writes its table."""
    from hls_backend.supported import supported_layers_markdown
    from pruner.torch_import import supported_ops_markdown

    return {'hls-layers': supported_layers_markdown, 'torch-ops': supported_ops_markdown}


def markers(name: str) -> tuple[str, str]:
    return f'<!-- {name}:start -->', f'<!-- {name}:end -->'


def current_block(text: str, name: str, where: str = 'the README') -> str:
    """What stands between the markers of ``name`` in ``text``."""
    start, end = markers(name)
    if start not in text or end not in text:
        raise SystemExit(f'{where} has no {start} ... {end} markers')
    return text.split(start, 1)[1].split(end, 1)[0].strip('\n')


def write(path) -> list[str]:
    """Rewrite every table of ``path``; returns the names of those that changed."""
    path = Path(path)
    text = original = path.read_text()
    changed = []
    for name, make in tables().items():
        block = current_block(text, name, str(path))
        table = make()
        if block != table:
            start, end = markers(name)
            head, rest = text.split(start, 1)
            text = f'{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}'
            changed.append(name)
    if text != original:
        path.write_text(text)
    return changed


if __name__ == '__main__':  # python -m lpsubnet.readme_tables README.md
    for arg in sys.argv[1:] or ['README.md']:
        changed = write(arg)
        print(f'{arg}: {"updated " + ", ".join(changed) if changed else "up to date"}')
