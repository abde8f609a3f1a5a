"""Vendor-free C simulation of a generated project, compared bit for bit.

Two independent paths through the same C++:
1. lpsubnet's testbench (``<project>_test.cpp``) built with g++ against the ap_types
   headers hls4ml ships;
2. hls4ml's own ``compile()`` / ``predict()`` (a shared library called from Python).
Both are compared exactly with the QKeras model's outputs on the same inputs: by default
``tb_data/`` (written with the project), or any ``.npy``/``.npz`` file given as ``inputs``.

At scale: the testbench is built once and kept as ``csim.exe`` with the key of what it
was built from (``csim.exe.key``), so a repeated check does not rebuild. Inputs and
outputs cross between Python and the testbench as raw float64 files, and the samples
are split into contiguous shards, one process of the same executable each. Samples are
quantized, written, predicted by QKeras and compared in chunks, so memory stays bounded
whatever the number of samples. The QKeras reference for a given inputs file and model
is cached in ``.lpsubnet_csim/`` (the check of the same file again needs no Keras), and
so is the second check's result.

Each of those three caches has one key function that hashes everything its result
depends on (:mod:`hls_backend.core.cache_key`): :func:`testbench_key` (the build),
:func:`predict_key` (the ``predict()`` verdict: also the weight files the firmware reads
when it runs, hls4ml's build script and bridge, the samples and their reference) and
:func:`reference_key` (the inputs, the model file, the Keras stack's versions). The
testbench's verdict itself is never cached: it runs on every check, and reads the
weight files of the moment.

By default the two paths compile the firmware separately (lpsubnet's g++ flags and
hls4ml's ``build_lib.sh``), so a result that depends on compiler flags shows up as a
disagreement. ``shared_build=True`` compiles the firmware once, with hls4ml's script,
and links the testbench against that library: the same C++ through two harnesses at
about two thirds of the build time (the fuzz campaign uses it to check more models).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import processes
from ..core.cache_key import CacheKey, file_digest
from ..core.files import write_text_atomic
from ..core.fixed_point import parse_fixed_type
from ..core.input_range import InputRange
from ..core.progress import step
from ..core.project import ProjectInfo, read_project_info
from ..core.results import ExactTally, RouteResult
from ..errors import BadInputError, BuildError, ToolMissingError
from .convert import relink_project

CSIM_RESULT = 'lpsubnet_csim.json'
CACHE_DIR = '.lpsubnet_csim'  # cached QKeras references and second-check results
EXE_NAME = 'csim.exe'
KEY_SUFFIX = '.key'
# Samples per chunk when quantizing, predicting and comparing: bounds the memory of a
# check (a chunk of the digits CNN's 64 inputs is 32 MiB of float64), large enough that
# Keras and numpy work in big batches.
CHUNK_SAMPLES = 65536
# What the testbench build reads: C++ sources and headers (weight headers included).
# hls4ml's weights/*.txt are not: outside synthesis the firmware loads them when it
# first runs, from WEIGHTS_DIR under the working directory, so a changed .txt is seen
# by the same executable without a rebuild.
FIRMWARE_SUFFIXES = ('.h', '.hpp', '.cpp', '.cc')
BUILD_FLAGS = ('-std=c++14', '-Ifirmware/ap_types', '-Ifirmware', '-DWEIGHTS_DIR="firmware/weights"')
BINARY_MODE = '--binary'  # the testbench's raw float64 mode (templates/hls/testbench.cpp.j2)


def _read_dat(path: Path) -> np.ndarray:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float64)


def find_compiler(cxx: str) -> str:
    compiler = shutil.which(cxx)
    if compiler is None:
        raise ToolMissingError(
            f'C++ compiler {cxx!r} not found on PATH; install g++ (Debian: apt-get install g++)', tool=cxx
        )
    return compiler


def _compiler_version(compiler: str) -> str:
    out = subprocess.run([compiler, '--version'], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else compiler


def testbench_key(
    project_dir: Path, project_name: str, compiler: str, opt: str, extra: tuple[str, ...] = ()
) -> CacheKey:
    """Key of the ``csim.exe`` build: the testbench, every firmware source and header
    (names and contents), the compiler (path and version) and its flags.

    The weight files (``firmware/weights/*.txt``) are not part of it: the executable does
    not contain them, it reads them from WEIGHTS_DIR when it runs (so a changed weight is
    seen without a rebuild, and the testbench's verdict, which is never cached, with it)."""
    project_dir = Path(project_dir)
    testbench = _project_file(project_dir, f'{project_name}_test.cpp')
    key = CacheKey('csim testbench build')
    key.add('compiler', compiler).add('compiler version', _compiler_version(compiler))
    key.add('flags', [opt, *BUILD_FLAGS, *extra])
    key.add_file('testbench', testbench)
    sources = [p for p in _firmware_files(project_dir) if p.suffix in FIRMWARE_SUFFIXES]
    return key.add_files('firmware sources', project_dir, sources)


def predict_key(project_dir: Path, project_name: str, samples: str) -> CacheKey:
    """Key of the hls4ml ``predict()`` verdict: what hls4ml's ``compile()`` builds from
    (``build_lib.sh``, the bridge, every firmware source and header), what the library
    reads when it runs (the weight files: every file under ``firmware/`` but hls4ml's
    built libraries), what ``link_existing_project`` reads (``hls4ml_config.yml``, but for
    its OutputDir: a copied project keeps its verdict), the g++ that ``build_lib.sh``
    calls, hls4ml and numpy, and ``samples``: the digest of the inputs and the reference."""
    project_dir = Path(project_dir)
    key = CacheKey('hls4ml predict() verdict')
    key.add_versions('hls4ml', 'numpy')
    gxx = shutil.which('g++') or 'g++'  # build_lib.sh calls g++ whatever --cxx says
    key.add('build_lib.sh compiler', gxx).add('build_lib.sh compiler version', _compiler_version(gxx))
    key.add_file('build script', _project_file(project_dir, 'build_lib.sh'))
    key.add_file('bridge', _project_file(project_dir, f'{project_name}_bridge.cpp'))
    config = _project_file(project_dir, 'hls4ml_config.yml').read_text().splitlines()
    key.add('hls4ml config', [line for line in config if not line.startswith('OutputDir:')])
    built = re.compile(rf'^{re.escape(project_name)}-.*\.so$')  # hls4ml compile()'s libraries
    firmware = [p for p in _firmware_files(project_dir) if not built.match(p.name)]
    key.add_files('firmware and weights', project_dir, firmware)
    return key.add('samples', samples)


def reference_key(input_digest: str, model_file: Path, model_source: str) -> CacheKey:
    """Key of a cached QKeras reference: the quantized inputs (``input_digest``), the model
    file's content, how the model was made ready (``model_source``: the project's snapshot,
    or the recorded model re-planned with the project's options) and the versions of the
    stack that computes it."""
    key = CacheKey('QKeras reference')
    key.add('inputs', input_digest).add_file('model file', model_file).add('model source', model_source)
    return key.add_versions('tensorflow', 'keras', 'qkeras-v3', 'numpy', 'lpsubnet')


def _project_file(project_dir: Path, name: str) -> Path:
    path = project_dir / name
    if not path.is_file():
        raise BadInputError(f'{project_dir} lacks {name}: not a complete HLS project')
    return path


def _firmware_files(project_dir: Path) -> list[Path]:
    return sorted(p for p in (project_dir / 'firmware').rglob('*') if p.is_file())


def build_testbench(
    project_dir: Path,
    project_name: str,
    cxx: str = 'g++',
    opt: str = '-O2',
    firmware_library: Path | None = None,
) -> tuple[Path, float]:
    """Compile the testbench and firmware into ``csim.exe``; return its path and build seconds.

    With ``firmware_library`` (a shared library hls4ml's ``compile()`` built from the
    same project) only the testbench is compiled, and linked against that library.
    The executable is written under a temporary name and renamed, so a failed or
    interrupted build leaves the previous one intact.
    """
    compiler = find_compiler(cxx)
    exe = project_dir / EXE_NAME
    if firmware_library is None:
        firmware = [f'firmware/{project_name}.cpp']
    else:
        library = Path(firmware_library).resolve()
        firmware = [str(library), f'-Wl,-rpath,{library.parent}']
    partial = f'.{EXE_NAME}.{os.getpid()}.partial'
    cmd = [compiler, opt, *BUILD_FLAGS, f'{project_name}_test.cpp', *firmware, '-o', partial]
    log = project_dir / 'csim_build.log'
    start = time.perf_counter()
    try:
        with step(f'g++ build of {project_dir.name}'):
            proc = processes.run(cmd, cwd=project_dir, capture_output=True, text=True)
        log.write_text(' '.join(cmd[:-1] + [exe.name]) + '\n' + proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise BuildError(f'g++ failed (exit {proc.returncode}) building the C simulation; see {log}')
        os.replace(project_dir / partial, exe)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(project_dir / partial)
    return exe, time.perf_counter() - start


def cached_testbench(
    project_dir: Path, project_name: str, cxx: str = 'g++', opt: str = '-O2'
) -> tuple[Path, float, bool]:
    """``csim.exe`` built from the project's current sources: reused when its recorded key
    matches, built otherwise. Returns the executable, build seconds (0 when reused) and
    whether it was reused."""
    compiler = find_compiler(cxx)
    key = testbench_key(project_dir, project_name, compiler, opt).digest
    exe = project_dir / EXE_NAME
    stamp = project_dir / (EXE_NAME + KEY_SUFFIX)
    if exe.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return exe, 0.0, True
    # The key goes before the build and comes back after it: an executable is never
    # left beside the key of other sources.
    with contextlib.suppress(FileNotFoundError):
        stamp.unlink()
    exe, seconds = build_testbench(project_dir, project_name, cxx, opt)
    write_text_atomic(stamp, key + '\n')
    return exe, seconds, False


def run_testbench(project_dir: Path, exe: Path) -> tuple[np.ndarray, float]:
    """The testbench in its text mode on ``tb_data/tb_input_features.dat`` (as ``make csim``)."""
    results = project_dir / 'tb_data' / 'csim_results.log'
    start = time.perf_counter()
    proc = processes.run(
        [str(exe), 'tb_data/tb_input_features.dat', str(results.relative_to(project_dir))],
        cwd=project_dir,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BuildError(f'C simulation exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}')
    return _read_dat(results), seconds


@dataclass
class Shard:
    first: int  # index of its first sample
    count: int
    output: Path  # count x n_out float64 once it has run


def _shards(n: int, jobs: int, workdir: Path) -> list[Shard]:
    bounds = np.linspace(0, n, max(1, min(jobs, n)) + 1).round().astype(int)
    return [
        Shard(int(a), int(b - a), workdir / f'outputs_{k}.f64')
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        if b > a
    ]


def _supports_binary(project_dir: Path, project_name: str) -> bool:
    """Projects written before the testbench had a binary mode still run, through text."""
    return BINARY_MODE in (project_dir / f'{project_name}_test.cpp').read_text()


def run_shards(
    project_dir: Path,
    project_name: str,
    exe: Path,
    inputs_file: Path,
    n: int,
    n_in: int,
    n_out: int,
    jobs: int,
    workdir: Path,
) -> tuple[list[Shard], float]:
    """Run the testbench on ``n`` samples of ``inputs_file`` (n x n_in float64) in up to
    ``jobs`` concurrent processes; returns the shards (outputs on disk) and the wall
    seconds from starting the first process to the end of the last."""
    shards = _shards(n, jobs, workdir)
    binary = _supports_binary(project_dir, project_name)
    commands = []
    for k, shard in enumerate(shards):
        if binary:
            args = [BINARY_MODE, str(inputs_file), str(shard.output), str(shard.first), str(shard.count)]
        else:
            text_in = workdir / f'inputs_{k}.dat'
            x = np.memmap(inputs_file, dtype=np.float64, mode='r', shape=(n, n_in))
            np.savetxt(text_in, x[shard.first : shard.first + shard.count], fmt='%.17g')
            args = [str(text_in), str(shard.output.with_suffix('.dat'))]
        commands.append([str(exe), *args])
    procs: list[subprocess.Popen] = []
    errors = [workdir / f'shard_{k}.err' for k in range(len(shards))]
    try:
        start = time.perf_counter()
        for command, err in zip(commands, errors, strict=True):
            with open(err, 'wb') as handle:
                procs.append(processes.start(command, cwd=project_dir, stdout=subprocess.DEVNULL, stderr=handle))
        codes = [proc.wait() for proc in procs]
        seconds = time.perf_counter() - start
    finally:
        for proc in procs:  # each shard is a process group: an interrupt ends them all
            if proc.poll() is None:
                processes.end_group(proc)
            processes.finish(proc)
    for shard, code, err in zip(shards, codes, errors, strict=True):
        if code != 0:
            message = err.read_text(errors='replace').strip()
            raise BuildError(
                f'C simulation of samples {shard.first}..{shard.first + shard.count - 1} exited with {code}: {message}'
            )
    for shard in shards:
        if not binary:
            _read_dat(shard.output.with_suffix('.dat')).tofile(shard.output)
        expected = shard.count * n_out * 8
        if shard.output.stat().st_size != expected:
            raise BuildError(
                f'C simulation of samples {shard.first}..{shard.first + shard.count - 1} wrote '
                f'{shard.output.stat().st_size} bytes, expected {expected} ({shard.count} x {n_out} float64)'
            )
    return shards, seconds


def compare_shards(reference_file: Path, shards: list[Shard], n: int, n_out: int, route: str) -> ExactTally:
    """Exact comparison of the shards' outputs with the reference, a chunk at a time."""
    reference = np.memmap(reference_file, dtype=np.float64, mode='r', shape=(n, n_out))
    tally = ExactTally()
    for shard in shards:
        actual = np.memmap(shard.output, dtype=np.float64, mode='r', shape=(shard.count, n_out))
        for start in range(0, shard.count, CHUNK_SAMPLES):
            stop = min(start + CHUNK_SAMPLES, shard.count)
            tally.add(reference[shard.first + start : shard.first + stop], actual[start:stop], route)
    return tally


@dataclass
class CheckData:
    """The samples of one check on disk: quantized inputs and QKeras reference outputs."""

    inputs_file: Path
    reference_file: Path
    n: int
    n_in: int
    n_out: int
    samples_digest: str  # of the inputs and the reference: part of the second check's key
    source: str
    reference_cached: bool = False
    input_range: InputRange | None = None  # an inputs file's values outside the input type


def _write_quantized(x, n: int, input_type, path: Path, source: str, allow_wrap: bool) -> tuple[str, InputRange]:
    """Quantize ``x[:n]`` onto the input grid into ``path`` (float64) chunk by chunk;
    returns the hash of what was written and what the input type did to values outside
    its range (a wrapping type that changes some is refused unless ``allow_wrap``)."""
    digest = hashlib.sha256()
    seen = InputRange(input_type, source)
    with open(path, 'wb') as handle:
        for start in range(0, n, CHUNK_SAMPLES):
            stop = min(start + CHUNK_SAMPLES, n)
            chunk = np.asarray(x[start:stop], dtype=np.float64).reshape(stop - start, -1)
            data = np.ascontiguousarray(seen.quantize(chunk)).tobytes()
            digest.update(data)
            handle.write(data)
    seen.check(allow_wrap)
    return digest.hexdigest(), seen


def _reference_model(project_dir: Path, info: ProjectInfo):
    """The model the design computes (logits when the softmax was left out): hls4ml's copy
    of the converted model in the project, else the recorded model file re-planned."""
    from ..core.exact_pairs import plan_folded
    from ..core.model_io import load_qkeras_model
    from ..core.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    snapshot = project_dir / 'keras_model.keras'
    if snapshot.is_file():
        return load_qkeras_model(snapshot), snapshot
    from ..core.reference import logits_model
    from .layers import HLS_LAYERS

    model, plan = plan_folded(
        load_qkeras_model(info.model_path),
        HLS_LAYERS,
        info.options.get('input_precision'),
        info.options.get('default_precision'),
    )
    return logits_model(model, plan), Path(info.model_path)


def _model_file(project_dir: Path, info: ProjectInfo) -> tuple[Path, str]:
    """The model file the reference is computed from, and how (for the reference's key)."""
    snapshot = project_dir / 'keras_model.keras'
    if snapshot.is_file():
        return snapshot, 'the project snapshot keras_model.keras'
    path = Path(info.model_path)
    if not path.is_file():
        raise BadInputError(
            f'{project_dir} has no keras_model.keras and its model {info.model_path} is gone: '
            'no QKeras reference for new inputs (write the project again with `lpsubnet hls`)'
        )
    options = {k: info.options.get(k) for k in ('input_precision', 'default_precision')}
    return path, f'the recorded model re-planned with {json.dumps(options, sort_keys=True)}'


def _samples_digest(input_digest: str, reference_digest: str) -> str:
    return hashlib.sha256(f'inputs {input_digest} reference {reference_digest}'.encode()).hexdigest()


def prepare_check(
    project_dir: Path,
    info: ProjectInfo,
    workdir: Path,
    inputs: str | Path | None,
    max_samples: int | None,
    allow_wrap: bool = False,
) -> CheckData:
    """Inputs and reference of a check on disk: tb_data (reference written with the
    project) or a new inputs file (quantized to the input type, values outside its range
    counted and, for a wrapping type, refused unless ``allow_wrap``; the QKeras reference
    computed in chunks, or taken from the cache under :func:`reference_key`)."""
    n_in = int(np.prod(info.input_shape))
    n_out = int(np.prod(info.output_shape))
    inputs_file, reference_file = workdir / 'inputs.f64', workdir / 'reference.f64'
    if inputs is None:
        tb = project_dir / 'tb_data'
        x, y = _read_dat(tb / 'tb_input_features.dat'), _read_dat(tb / 'tb_output_predictions.dat')
        n = len(x) if max_samples is None else min(len(x), max_samples)
        if x.shape[1:] != (n_in,) or y.shape[1:] != (n_out,) or len(y) != len(x):
            raise BadInputError(
                f'{tb}: {x.shape} inputs and {y.shape} outputs do not fit the project ({n_in} inputs, {n_out} outputs)'
            )
        x[:n].tofile(inputs_file)
        y[:n].tofile(reference_file)
        digest = _samples_digest(file_digest(inputs_file), file_digest(reference_file))
        return CheckData(inputs_file, reference_file, n, n_in, n_out, digest, f'tb_data ({n} samples)')

    from ..core.model_io import open_samples

    x = open_samples(inputs, info.input_shape)
    n = x.shape[0] if max_samples is None else min(x.shape[0], max_samples)
    source = f'inputs file {inputs}'
    input_digest, seen = _write_quantized(x, n, parse_fixed_type(info.input_type), inputs_file, source, allow_wrap)
    model_file, model_source = _model_file(project_dir, info)
    key = reference_key(input_digest, model_file, model_source).digest
    cache = project_dir / CACHE_DIR
    cached = cache / f'reference-{key[:24]}.f64'
    data = CheckData(inputs_file, reference_file, n, n_in, n_out, '', f'{source} ({n} samples)', input_range=seen)
    # The check reads its own link to the reference: another check of the same project
    # may replace the cached file meanwhile.
    with contextlib.suppress(FileNotFoundError):
        if cached.stat().st_size == n * n_out * 8:
            os.link(cached, reference_file)
            data.reference_cached = True
    if not data.reference_cached:
        _compute_reference(project_dir, info, model_file, data)
        cache.mkdir(exist_ok=True)
        partial = cache / f'.{cached.name}.{os.getpid()}.partial'
        try:
            os.link(reference_file, partial)
            for old in cache.glob('reference-*.f64'):  # one reference kept: the cache stays one file
                old.unlink(missing_ok=True)
            os.replace(partial, cached)
        finally:
            partial.unlink(missing_ok=True)
    data.samples_digest = _samples_digest(input_digest, file_digest(reference_file))
    return data


def _compute_reference(project_dir: Path, info: ProjectInfo, model_file: Path, data: CheckData) -> None:
    """The QKeras model's outputs on ``data.inputs_file`` into ``data.reference_file``, a chunk at a time."""
    from ..core.reference import model_outputs

    model, _ = _reference_model(project_dir, info)
    n, n_out = data.n, data.n_out
    x_q = np.memmap(data.inputs_file, dtype=np.float64, mode='r', shape=(n, data.n_in))
    with step(f'QKeras reference on {n} samples'), open(data.reference_file, 'wb') as handle:
        for start in range(0, n, CHUNK_SAMPLES):
            stop = min(start + CHUNK_SAMPLES, n)
            y = model_outputs(model, x_q[start:stop].reshape(stop - start, *info.input_shape))
            if y.reshape(stop - start, -1).shape[1] != n_out:
                raise BadInputError(f'{model_file} gives {y.shape[1:]} outputs, the project {info.output_shape}')
            np.ascontiguousarray(y, dtype=np.float64).tofile(handle)


def hls4ml_predict_check(project_dir: Path, x: np.ndarray, y: np.ndarray) -> tuple[RouteResult, Path]:
    """hls4ml's compile()/predict() on the same project, as a second path; returns the
    comparison and the shared library hls4ml built."""
    data = (np.asarray(x, dtype=np.float64).reshape(len(x), -1), np.asarray(y, dtype=np.float64))
    return _hls4ml_predict(project_dir, [data])


def _hls4ml_predict(project_dir: Path, chunks) -> tuple[RouteResult, Path]:
    """hls4ml's predict() over ``(inputs, reference)`` chunks, compared exactly."""
    import hls4ml

    relink_project(project_dir)
    result = RouteResult(route='hls4ml_predict', tool=f'hls4ml {hls4ml.__version__}', project_dir=str(project_dir))
    linked = hls4ml.converters.link_existing_project(str(project_dir))
    start = time.perf_counter()
    with step('hls4ml compile()'):
        library = _compile_and_load(linked, project_dir)
    result.build_seconds = time.perf_counter() - start
    tally, seconds = ExactTally(), 0.0
    for x, y in chunks:
        start = time.perf_counter()
        predicted = _hls4ml_outputs(linked, x)
        seconds += time.perf_counter() - start
        tally.add(y, predicted.reshape(y.shape), result.route)
    result.run_seconds = seconds
    return tally.fill(result), library


def _compile_and_load(linked, project_dir: Path) -> Path:
    """hls4ml 1.3.0's ``compile()`` of a linked project (``FPGABackend.compile``: the
    project's ``build_lib.sh``, then its library loaded); returns the path build_lib.sh wrote.

    - The script runs as a process group of its own (core.processes): hls4ml's own call
      runs from the worker thread of the second check, where an interrupt of lpsubnet
      would not end its g++.
    - The library is loaded from a copy of its own. build_lib.sh names it after the stamp
      written with the project, so every build of a project has the same path, and
      dlopen() hands back a library already loaded from the same path: a second check in
      the same process (a test, a sweep worker, a notebook) would run the first build's
      code, with the weights it read then (found by the negative control in
      fpga_tests/test_negative_controls.py: after a weight file changed, the testbench
      reported the mismatch and predict() still said exact). The copy is removed at once;
      the loaded mapping stays.
    """
    import ctypes
    import uuid

    name = linked.config.get_project_name()
    library = project_dir / 'firmware' / f'{name}-{linked.config.get_config_value("Stamp")}.so'
    try:
        proc = processes.run(['bash', 'build_lib.sh'], cwd=project_dir, capture_output=True, text=True)
    except BaseException:
        for partial in (project_dir / f'{name}.o', project_dir / f'{name}_bridge.o', library):
            partial.unlink(missing_ok=True)  # what the interrupted script was writing
        raise
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise BuildError(f"hls4ml's build_lib.sh failed (exit {proc.returncode}) in {project_dir}: {output[-1000:]}")
    fresh = library.with_name(f'.{library.stem}.{uuid.uuid4().hex}.so')
    shutil.copyfile(library, fresh)
    try:
        linked._top_function_lib = ctypes.cdll.LoadLibrary(str(fresh))
    finally:
        fresh.unlink(missing_ok=True)
    return library


def _hls4ml_outputs(linked, x: np.ndarray) -> np.ndarray:
    """hls4ml's predict() on one chunk of flattened samples, as float64."""
    return np.asarray(linked.predict(np.ascontiguousarray(x, dtype=np.float64)), dtype=np.float64)


def _chunks(data: CheckData):
    x = np.memmap(data.inputs_file, dtype=np.float64, mode='r', shape=(data.n, data.n_in))
    y = np.memmap(data.reference_file, dtype=np.float64, mode='r', shape=(data.n, data.n_out))
    for start in range(0, data.n, CHUNK_SAMPLES):
        stop = min(start + CHUNK_SAMPLES, data.n)
        yield np.array(x[start:stop]), np.array(y[start:stop])


def _second_check(
    project_dir: Path, project_name: str, data: CheckData, shared_build: bool
) -> tuple[dict, Path | None]:
    """hls4ml's predict() on the check's samples; the verdict comes from the cache when
    :func:`predict_key` is unchanged (except with ``shared_build``, which needs the library)."""
    key = predict_key(project_dir, project_name, data.samples_digest)
    cache = project_dir / CACHE_DIR / f'hls4ml_predict-{key.digest[:24]}.json'
    if not shared_build:
        with contextlib.suppress(FileNotFoundError):  # another check may replace it meanwhile
            cached = json.loads(cache.read_text())
            if cached.pop('cache_key', None) == key.digest:
                cached['notes'] = [
                    *cached.get('notes', []),
                    'cached: same firmware, weights, build script, tools and samples as an earlier check',
                ]
                return cached, None
    checked, library = _hls4ml_predict(project_dir, _chunks(data))
    cache.parent.mkdir(exist_ok=True)
    for old in cache.parent.glob('hls4ml_predict-*.json'):
        old.unlink(missing_ok=True)
    write_text_atomic(cache, json.dumps({**checked.to_dict(), 'cache_key': key.digest}, indent=2) + '\n')
    return checked.to_dict(), library


def csim(
    project_dir: str | Path,
    cxx: str = 'g++',
    second_check: bool = True,
    shared_build: bool = False,
    inputs: str | Path | None = None,
    max_samples: int | None = None,
    jobs: int = 1,
    allow_wrap: bool = False,
) -> RouteResult:
    """Build (or reuse) and run the C simulation; compare every output bit with the QKeras model.

    ``inputs``: a .npy/.npz file of samples to check instead of tb_data (quantized to the
    project's input type, values outside its range reported in the notes and, with a
    wrapping input type, refused unless ``allow_wrap``; the reference comes from the
    project's QKeras model);
    ``max_samples``: check only the first N; ``jobs``: testbench processes, each on a
    contiguous shard of the samples. ``second_check`` adds hls4ml's predict() (cached
    for the same firmware, weight files, tools and samples); ``shared_build`` (with it) compiles the firmware
    once for both paths (see the module docstring).

    Writes ``lpsubnet_csim.json`` into the project and returns the result; the caller
    decides what a mismatch means (the CLI exits with MismatchError.exit_code).
    ``run_seconds`` is the wall time of the testbench processes only (no build, no reference).
    """
    if shared_build and not second_check:
        raise ValueError('shared_build links the testbench to the library of the second check; it needs second_check')
    if jobs < 1:
        raise BadInputError(f'jobs must be >= 1, got {jobs}')
    if max_samples is not None and max_samples < 1:
        raise BadInputError(f'max_samples must be >= 1, got {max_samples}')
    project_dir = Path(project_dir).resolve()
    info = read_project_info(project_dir)
    name = info.options['project_name']
    compiler = find_compiler(cxx)
    result = RouteResult(route='csim', tool=_compiler_version(compiler), project_dir=str(project_dir))
    with tempfile.TemporaryDirectory(prefix='.csim_run_', dir=project_dir) as tmp:
        workdir = Path(tmp)
        data = prepare_check(project_dir, info, workdir, inputs, max_samples, allow_wrap)
        library, reused = None, False
        if shared_build:  # the testbench links the library hls4ml builds for the second check
            result.checks['hls4ml_predict'], library = _second_check(project_dir, name, data, shared_build)
            exe, result.build_seconds = build_testbench(project_dir, name, cxx, firmware_library=library)
        elif second_check:
            # hls4ml's compile() and the testbench build are two g++ runs: side by side,
            # on two cores the check waits for the longer one only. The testbench runs
            # once both are done, so run_seconds times it alone.
            with processes.thread_pool(1) as pool:
                second = pool.submit(_second_check, project_dir, name, data, False)
                exe, result.build_seconds, reused = cached_testbench(project_dir, name, cxx)
                result.checks['hls4ml_predict'], _ = second.result()
        else:
            exe, result.build_seconds, reused = cached_testbench(project_dir, name, cxx)
        shards, result.run_seconds = run_shards(
            project_dir, name, exe, data.inputs_file, data.n, data.n_in, data.n_out, jobs, workdir
        )
        compare_shards(data.reference_file, shards, data.n, data.n_out, result.route).fill(result)
        if inputs is None:  # as `make csim` leaves them (tb_data is small)
            outputs = np.concatenate([np.fromfile(shard.output).reshape(shard.count, data.n_out) for shard in shards])
            np.savetxt(project_dir / 'tb_data' / 'csim_results.log', outputs, fmt='%.17g')
    result.notes = list(info.notes)
    result.notes.append(f'samples: {data.source}; {len(shards)} testbench process(es)')
    if data.input_range is not None and data.input_range.message():
        result.notes.append(data.input_range.message())
        result.input_range = data.input_range.to_dict()
    if data.reference_cached:
        result.notes.append('QKeras reference: cached for the same inputs, model and Keras stack')
    if reused:
        result.notes.append(
            f'testbench reused: {EXE_NAME} was built from the same sources, compiler and flags ({EXE_NAME}{KEY_SUFFIX})'
        )
    if shared_build:
        result.notes.append(f'firmware compiled once by hls4ml build_lib.sh ({library.name}); testbench linked to it')
    result.save(project_dir / CSIM_RESULT)
    return result


__all__ = [
    'csim',
    'build_testbench',
    'cached_testbench',
    'testbench_key',
    'predict_key',
    'reference_key',
    'run_testbench',
    'run_shards',
    'hls4ml_predict_check',
    'CSIM_RESULT',
]
