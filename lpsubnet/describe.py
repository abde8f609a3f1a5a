"""One-line descriptions of manifest entries, shared by the CLI and the run report."""

from __future__ import annotations


def recovery_line(recovery: dict) -> str:
    """One line that says how each phase trained: planned/run epochs, base rate, best epoch."""
    parts = []
    for p in recovery['phases']:
        if not p['epochs']:
            continue
        text = f'{p["phase"]} {p["epochs_run"]}/{p["epochs"]} epochs at {p["base_learning_rate"]:.2g}'
        best = (p.get('early_stopping') or {}).get('best_epoch')
        parts.append(text + (f' (best {best})' if best else ''))
    distill = (
        f', distilled (alpha {recovery["distill_alpha"]:g}, T {recovery["distill_temperature"]:g})'
        if recovery['distill']
        else ''
    )
    return f'recovery ({recovery["lr_schedule"]}, rate from {recovery["learning_rate_source"]}{distill}): ' + '; '.join(
        parts
    )
