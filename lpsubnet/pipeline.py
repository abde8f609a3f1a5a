"""``lpsubnet run``: every stage from data to report, cached in one run directory.

Each stage writes its outputs into ``<run>/<stage>/`` (built under a temporary name
and renamed into place) and then a record ``<run>/stages/<stage>.json`` holding its
key (:func:`stage_key`: everything the stage's result depends on: the configuration it
reads, the seed, the content of the files the configuration names, the versions of the
tools it runs, and the keys and outputs of the stages it uses) and the digest of what
it wrote. ``--resume`` skips a stage whose record has the same key and whose
directory still holds what it wrote, so an interrupted run continues where it stopped,
and a changed configuration, tool, input file or stage output redoes exactly the
stages it affects (and those after them): a verdict is never taken from a record of
other inputs (issue 27).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hls_backend.core.cache_key import CacheKey, file_digest, package_version
from hls_backend.core.files import atomic_directory, write_text_atomic
from hls_backend.errors import BadInputError, OutputExistsError

from . import interrupts, memory
from .config import RunConfig, dump_config


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    reads: tuple[str, ...]  # configuration sections ('hls') or keys ('hls.clock_period')
    after: tuple[str, ...]  # stages whose outputs it uses
    run: Callable  # (ctx, out_dir: Path) -> dict summary
    tools: tuple[str, ...] = ()  # Python distributions or executables whose versions its result depends on
    options: tuple[str, ...] = ()  # the StageOptions fields it reads


@dataclass(frozen=True)
class StageOptions:
    """How a caller runs some stages otherwise than ``lpsubnet run`` does (a sweep's
    trials); a stage reads the fields it names in ``Stage.options``, and their values are
    part of its key."""

    second_check: bool = True  # csim: hls4ml's predict() beside the testbench
    estimate_samples: int = 20  # estimate: test samples the RTL estimate project stores


class RunContext:
    """What the stages share: the configuration, the run directory, the records."""

    def __init__(self, config: RunConfig, run_dir: Path, console, options: StageOptions | None = None):
        self.config = config
        self.run_dir = run_dir
        self.console = console
        self.options = options or StageOptions()
        self.records: dict[str, dict] = {}

    def stage_dir(self, name: str) -> Path:
        return self.run_dir / name

    def summary(self, name: str) -> dict:
        return self.records[name]['summary']


def _config_value(dumped: dict, path: str):
    """A section ('hls') or one key in it ('hls.clock_period')."""
    value = dumped
    for part in path.split('.'):
        value = value.get(part)
    return value


# Executables a stage may run: their path and, where asking is cheap, their version line.
EXECUTABLE_VERSION_FLAGS = {'g++': '--version', 'vitis-run': None, 'vivado_hls': None}


def tool_version(name: str) -> str:
    """A Python distribution's version, or an executable's path and version line ('absent')."""
    if name not in EXECUTABLE_VERSION_FLAGS:
        return package_version(name)
    path = shutil.which(name)
    if path is None:
        return 'absent'
    flag = EXECUTABLE_VERSION_FLAGS[name]
    if flag is None:
        return path
    out = subprocess.run([path, flag], capture_output=True, text=True, check=False).stdout
    return f'{path}: {out.splitlines()[0] if out else ""}'


def _input_files(reads: tuple[str, ...], dumped: dict) -> dict[str, str]:
    """The files the configuration a stage reads names (``data.path``, ``model.path``), by content."""
    files = {}
    for section in {path.split('.')[0] for path in reads}:
        value = (dumped.get(section) or {}).get('path')
        if isinstance(value, str) and value:
            files[f'{section}.path'] = file_digest(value) if Path(value).is_file() else 'not a file'
    return files


def stage_key(
    stage: Stage, config: RunConfig, upstream: dict[str, dict], options: StageOptions | None = None
) -> CacheKey:
    """Key of a stage's record: the configuration sections and keys it reads, the
    StageOptions it reads, the seed, the files the configuration names (by
    content), lpsubnet's and the stage's tools' versions, and for each stage it uses,
    that stage's key and the digest of its outputs."""
    dumped = config.model_dump(mode='json')
    key = CacheKey(f'lpsubnet run stage {stage.name}')
    key.add('configuration', {path: _config_value(dumped, path) for path in stage.reads})
    key.add('settings', {name: getattr(options or StageOptions(), name) for name in stage.options})
    key.add('seed', config.seed)
    key.add('input files', _input_files(stage.reads, dumped))
    key.add('tools', {name: tool_version(name) for name in ('lpsubnet', *stage.tools)})
    key.add('upstream', {name: [upstream[name]['key'], upstream[name].get('outputs')] for name in stage.after})
    return key


def outputs_digest(directory: Path) -> str:
    """Digest of a stage directory: every file's relative name and content (a symbolic
    link by its target; a stage directory that is a link, as a sweep trial's shared
    data and baseline, by what it points to)."""
    root = Path(directory).resolve()
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            path = Path(folder) / name
            relative = str(path.relative_to(root))
            entries.append((relative, 'link ' + os.readlink(path) if path.is_symlink() else file_digest(path)))
    return CacheKey('stage outputs').add('files', entries).digest


# Report files copied to the top of the run directory (see lpsubnet.summary).
PUBLISHED = ('report.md', 'report.html', 'metrics.json', 'accuracy_vs_footprint.png', 'channels.png')


def _dependents(name: str, stages: list[Stage]) -> list[str]:
    """Stages that use ``name``'s outputs, directly or through other stages."""
    found: list[str] = []
    for stage in stages:
        if any(dep == name or dep in found for dep in stage.after):
            found.append(stage.name)
    return found


def _record_path(run_dir: Path, name: str) -> Path:
    return run_dir / 'stages' / f'{name}.json'


def prepare_output_dir(path: Path, what: str, marker: str, force: bool, resume: bool, inside: str) -> None:
    """Make ``path`` ready for a new or resumed ``what`` ('run', 'sweep'): a non-empty
    directory is resumed (``resume``), replaced (``force``) or refused, and only when it
    holds ``marker`` (what proves it is ours: --force never deletes an arbitrary
    directory, think ``--out .``); ``inside`` is then created in it."""
    if force and resume:
        raise BadInputError('--force and --resume exclude each other: --force starts over, --resume continues')
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f'{what} directory {path} exists and is not a directory')
    if path.is_dir() and any(path.iterdir()):
        if not (path / marker).exists():
            if resume:
                raise BadInputError(f'{path} is not an lpsubnet {what} directory (no {marker}); cannot --resume it')
            action = 'refusing to delete it even with --force' if force else 'choose another --out'
            raise OutputExistsError(f'{path} is not an lpsubnet {what} directory (no {marker}); {action}')
        if force:
            shutil.rmtree(path)
        elif not resume:
            raise OutputExistsError(
                f'{what} directory {path} exists and is not empty; pass --resume to continue it or --force to start over'
            )
    elif resume:
        raise BadInputError(f'nothing to resume: {what} directory {path} does not exist or is empty')
    try:
        (path / inside).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f'cannot create {what} directory {path}: {exc.strerror}') from None


def prepare_run_dir(run_dir: Path, force: bool, resume: bool) -> None:
    prepare_output_dir(run_dir, 'run', 'stages', force, resume, inside='stages')


def run_pipeline(
    config: RunConfig,
    run_dir: str | Path,
    stages: list[Stage],
    force=False,
    resume=False,
    console=None,
    stop_after: str | None = None,
    options: StageOptions | None = None,
):
    """Run ``stages`` in order (``options``: how a caller runs some of them otherwise);
    returns the context with every stage's record."""
    run_dir = Path(run_dir).absolute()
    prepare_run_dir(run_dir, force, resume)
    write_text_atomic(run_dir / 'config.yaml', dump_config(config))
    ctx = RunContext(config, run_dir, console, options)
    for stage in stages:
        key = stage_key(stage, config, ctx.records, ctx.options).digest
        record_file = _record_path(run_dir, stage.name)
        if record_file.exists() and ctx.stage_dir(stage.name).exists():
            record = json.loads(record_file.read_text())
            # The same inputs, and its directory still holds what it wrote (a changed
            # weight file in the hls stage's project must not keep the csim verdict).
            if record.get('key') == key and record.get('outputs') == outputs_digest(ctx.stage_dir(stage.name)):
                record['cached'] = True
                ctx.records[stage.name] = record
                _say(console, f'[dim]{stage.title}: cached[/dim]')
                if stage.name == stop_after:
                    break
                continue
        # Outdated or missing: this stage reruns, and so (through their keys) does every
        # stage that depends on it; drop their records now so that a run stopped early
        # never shows results that no longer match the configuration.
        for name in [stage.name, *_dependents(stage.name, stages)]:
            _record_path(run_dir, name).unlink(missing_ok=True)
        if stage.name == 'report' or 'report' in _dependents(stage.name, stages):
            for published in PUBLISHED:
                (run_dir / published).unlink(missing_ok=True)
        start = time.perf_counter()
        per_stage_peak = memory.reset_peak()
        _say(console, f'[bold]{stage.title}[/bold] ...')
        with atomic_directory(ctx.stage_dir(stage.name), force=True) as out_dir:
            summary = stage.run(ctx, out_dir)
            interrupts.raise_if_requested()  # a stop swallowed inside a finalizer: do not keep the stage
        record = {
            'stage': stage.name,
            'key': key,
            'outputs': outputs_digest(ctx.stage_dir(stage.name)),
            'seconds': round(time.perf_counter() - start, 2),
            'peak_rss_mib': memory.peak_mib(),
            'peak_rss_scope': 'stage' if per_stage_peak else 'process so far',
            'summary': summary,
            'cached': False,
        }
        write_text_atomic(record_file, json.dumps(record, indent=2, default=str) + '\n')
        ctx.records[stage.name] = record
        _say(console, f'{stage.title}: done in {record["seconds"]:.1f} s')
        if stage.name == stop_after:
            break
    return ctx


def _say(console, message: str) -> None:
    if console is not None:
        console.print(message)
