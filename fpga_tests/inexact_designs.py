"""Negative controls for the orchestration's verdicts: a design made wrong on purpose.

The change is to the *design* (a weight file of the HLS project, which the testbench and
hls4ml's library read at run time), never to the reference, so a check that still calls
the design exact is broken.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def zero_largest_output_bias(project: Path) -> Path:
    """Set the largest bias of the last layer (hls4ml's highest-numbered ``b<i>.txt``) to
    0, a value every fixed-point type holds: each sample's output there moves by that
    bias. Returns the file changed."""
    weights = Path(project) / 'firmware' / 'weights'
    last = max(weights.glob('b*.txt'), key=lambda p: int(p.stem[1:]))
    values = np.array(last.read_text().replace(',', ' ').split(), dtype=np.float64)
    index = int(np.argmax(np.abs(values)))
    assert values[index] != 0, f'{last}: every bias is 0; nothing to perturb'
    values[index] = 0.0
    last.write_text(', '.join(f'{v:.17g}' for v in values) + '\n')
    return last


def hls_stage_writes_a_zeroed_bias(monkeypatch) -> list[Path]:
    """From now on ``hls_backend.write_project`` (what the hls stage of a run or a sweep
    trial calls) writes the project, then zeroes its largest output bias: the stage's own
    output is the wrong design, so the stage records of ``lpsubnet run`` (which redo a stage
    whose output was edited afterwards) cannot undo the perturbation. Returns the list of
    weight files changed, filled as projects are written."""
    import hls_backend

    real = hls_backend.write_project
    changed: list[Path] = []

    def write_then_perturb(model_path, output_dir, *args, **kwargs):
        info = real(model_path, output_dir, *args, **kwargs)
        changed.append(zero_largest_output_bias(Path(output_dir)))
        return info

    monkeypatch.setattr(hls_backend, 'write_project', write_then_perturb)
    return changed
