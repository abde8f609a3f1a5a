"""No claim without a test: docs/claims.md lists every promise the README makes about
lpsubnet's behaviour with the tests or benchmark scripts that back it.

- the README's markers ``<!-- claim: ID -->`` and the table's ids are the same set;
- every row names at least one backing item, and each is a test function that exists
  (``fpga_tests/test_x.py::test_name``, read with ``ast``, so nothing is imported), a
  file that exists (a benchmark or example script), or ``pending: <area>`` (a test another
  piece of work is adding, named so the lead can fill it in).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / 'README.md'
CLAIMS = ROOT / 'docs' / 'claims.md'
MARKER = re.compile(r'<!--\s*claim:\s*([^>]*?)\s*-->')
ROW = re.compile(r'^\|\s*([a-z][a-z0-9-]*)\s*\|(.*)\|(.*)\|\s*$')


def readme_ids() -> set[str]:
    ids = set()
    for group in MARKER.findall(README.read_text()):
        ids.update(part.strip() for part in group.split(',') if part.strip())
    return ids


def claim_rows() -> dict[str, tuple[str, list[str]]]:
    """id -> (claim text, backing items) from the table in docs/claims.md."""
    rows = {}
    for line in CLAIMS.read_text().splitlines():
        match = ROW.match(line)
        if not match or match[1] == 'id':
            continue
        claim_id, text, backing = match[1], match[2].strip(), match[3]
        assert claim_id not in rows, f'docs/claims.md: {claim_id} listed twice'
        rows[claim_id] = (text, [item.strip() for item in backing.split(';') if item.strip()])
    return rows


@cache
def defined_tests(path: Path) -> frozenset[str]:
    """``test_x`` and ``TestY::test_x`` names defined in a test file."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(
                f'{node.name}::{item.name}'
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return frozenset(names)


def backing_problem(item: str) -> str | None:
    """None when ``item`` is an existing test, an existing file or a named pending area."""
    if item.startswith('pending:'):
        return None if item.removeprefix('pending:').strip() else 'a pending item must name the area adding its test'
    path_text, _, name = item.partition('::')
    path = ROOT / path_text
    if not path.is_file():
        return f'{path_text} does not exist'
    if name and name not in defined_tests(path):
        return f'{path_text} defines no test {name}'
    if name and not name.split('::')[-1].startswith('test'):
        return f'{item} is not a test'
    return None


def test_readme_markers_and_table_rows_are_the_same_claims():
    ids, rows = readme_ids(), claim_rows()
    assert len(rows) >= 40, 'docs/claims.md: the table was not read'
    assert sorted(ids - set(rows)) == [], 'README claims missing from docs/claims.md'
    assert sorted(set(rows) - ids) == [], 'docs/claims.md rows whose claim has no marker in the README'


@pytest.mark.parametrize('claim_id', sorted(claim_rows()))
def test_every_claim_is_backed(claim_id):
    text, backing = claim_rows()[claim_id]
    assert text, f'{claim_id}: no claim text'
    assert backing, f'{claim_id}: names no test, script or pending area'
    problems = [f'{item}: {problem}' for item in backing if (problem := backing_problem(item))]
    assert problems == []
    assert any(not item.startswith('pending:') for item in backing) or len(backing) == 1, (
        f'{claim_id}: a pending claim names one area'
    )


def test_the_checker_can_fail():
    """The checks above reject what they should (a missing function, a missing file, an
    empty pending area)."""
    assert backing_problem('fpga_tests/test_claims.py::test_no_such_test') == (
        'fpga_tests/test_claims.py defines no test test_no_such_test'
    )
    assert backing_problem('bench/no_such_script.py') == 'bench/no_such_script.py does not exist'
    assert backing_problem('pending:') is not None
    assert backing_problem('fpga_tests/test_claims.py::backing_problem') == (
        'fpga_tests/test_claims.py::backing_problem is not a test'
    )
    assert backing_problem('fpga_tests/test_claims.py::test_the_checker_can_fail') is None
