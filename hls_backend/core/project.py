"""The one record every route writes about the project it generated.

HLS projects keep it as ``lpsubnet_project.json``, RTL projects as
``lpsubnet_rtl_project.json``; the fields are the same, what only one route knows
lives in ``options`` (the route's options as given) and ``design`` (what its tool
decided: hls4ml's layer types, da4ml's pipeline and estimates).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import BadInputError
from .files import write_text_atomic

# The FPGA part both routes target unless told otherwise.
DEFAULT_PART = 'xcvu13p-flga2577-2-e'
PROJECT_FILES = {'hls': 'lpsubnet_project.json', 'rtl': 'lpsubnet_rtl_project.json'}


@dataclass
class ProjectInfo:
    """What lpsubnet records about a generated project."""

    route: str  # 'hls' or 'rtl'
    project_dir: str
    model_path: str
    project_name: str
    part: str
    clock_period: float
    input_type: str
    input_source: str
    input_shape: list[int]
    output_shape: list[int]
    softmax_stripped: str | None
    exact_by_construction: bool
    samples: int
    options: dict = field(default_factory=dict)  # the route's options, under the route's names
    design: dict = field(default_factory=dict)  # what the route's tool decided
    notes: list[str] = field(default_factory=list)

    def save(self, project_dir: str | Path) -> None:
        write_text_atomic(Path(project_dir) / PROJECT_FILES[self.route], json.dumps(asdict(self), indent=2) + '\n')


def read_project_info(project_dir: str | Path, route: str = 'hls') -> ProjectInfo:
    """The ProjectInfo of a project written by the ``route``'s writer."""
    path = Path(project_dir) / PROJECT_FILES[route]
    if not path.is_file():
        raise BadInputError(
            f'{project_dir} is not an lpsubnet {route.upper()} project: {path.name} is missing '
            f'(run `lpsubnet {route}` first)'
        )
    return ProjectInfo(**json.loads(path.read_text()))


def relink_records(project_dir: str | Path, final_dir: str | Path) -> None:
    """Point every ``project_dir`` in the project's lpsubnet records (its
    ``lpsubnet_*.json``: the project record and the check results, their second checks
    included) at ``final_dir``. Projects are built under a temporary name and renamed:
    a finished run's rtl.json named its ``.rtl.*.partial`` directory (issue 27)."""
    target = str(Path(final_dir).absolute().resolve())
    for path in sorted(Path(project_dir).glob('lpsubnet_*.json')):
        data = json.loads(path.read_text())
        fixed = with_project_dir(data, target)
        if fixed != data:
            write_text_atomic(path, json.dumps(fixed, indent=2) + '\n')


def with_project_dir(data, target: str):
    """``data`` (a record: dicts and lists) with every ``project_dir`` value set to ``target``."""
    if isinstance(data, dict):
        return {k: target if k == 'project_dir' else with_project_dir(v, target) for k, v in data.items()}
    if isinstance(data, list):
        return [with_project_dir(v, target) for v in data]
    return data
