"""The package borders and the absence of import cycles, read from the sources.

Every import counts, also those inside functions (a function-level import was how a
cycle between the RTL layer kinds and the replay was hidden): pruner imports nothing of
hls_backend or lpsubnet, hls_backend nothing of pruner or lpsubnet, declared_settings
nothing of ours; and no two modules of a package import each other, directly or around
a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ('declared_settings', 'pruner', 'hls_backend', 'lpsubnet')
# What each package may import of ours (besides itself).
ALLOWED = {
    'declared_settings': set(),
    'pruner': {'declared_settings'},
    'hls_backend': {'declared_settings'},
    'lpsubnet': {'declared_settings', 'pruner', 'hls_backend'},
}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob('*.py'):
            parts = path.relative_to(ROOT).with_suffix('').parts
            name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
            modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The modules of ours ``name`` imports anywhere in its file."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[: len(base) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            candidates = [target] + [f'{target}.{alias.name}' for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:  # 'pkg.mod.func' -> 'pkg.mod'
                candidate = candidate.rpartition('.')[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


GRAPH = {name: _imports(name, path, _modules()) for name, path in _modules().items()}


@pytest.mark.parametrize('package', PACKAGES)
def test_package_borders(package):
    crossing = {
        (name, target)
        for name, targets in GRAPH.items()
        if name.split('.')[0] == package
        for target in targets
        if target.split('.')[0] not in ALLOWED[package] | {package}
    }
    assert not crossing, f'{package} imports across its border: {sorted(crossing)}'


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize('package', PACKAGES)
def test_no_import_cycles(package):
    inside = {
        name: {t for t in targets if t.split('.')[0] == package}
        for name, targets in GRAPH.items()
        if name.split('.')[0] == package
    }
    assert _cycles(inside) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
