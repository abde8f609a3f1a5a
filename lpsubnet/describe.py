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


def budget_line(budget: dict) -> str:
    """One line on a budgeted compression: the budget, the trained design's figure, the
    bits chosen per quantizer, what the search took and the trim of a design training grew
    over the budget (manifest['budget'])."""
    # The exported design's allocation (manifests before the fill kept the last one).
    last = budget['attempts'][budget.get('kept_attempt', len(budget['attempts'])) - 1]
    bits = ', '.join(
        f'{layer} '
        + '/'.join(
            f'{"W" if key == "weight_bits" else "A"}{value}' for key, value in sorted(chosen.items(), reverse=True)
        )
        for layer, chosen in last['layer_bits'].items()
    )
    unit = budget['unit']
    tries = len(budget['attempts'])
    return (
        f'budget {budget["limit"]:,.0f} {unit}: {last["start_cost"]:,.0f} -> {budget["cost"]:,.0f} {unit} after training '
        f'({len(last["steps"])} one-bit steps, {last["cost_calls"]} cost-model calls'
        + (
            f', {tries} allocations (training moves a design over or well under the budget), '
            f'the {_ordinal(last["attempt"])} kept'
            if tries > 1
            else ''
        )
        + f'); bits: {bits or "as given"}'
        + (
            f'; trained to {last["trained_cost"]:,.0f} {unit}, over the budget: {100 * trim["first"]["extra"]:.1f} % '
            'more of its remaining weights zeroed and fine-tuned'
            + (f', {100 * trim["second"]["extra"]:.1f} % more after' if trim['second']['extra'] > 0 else '')
            if 'second' in (trim := last.get('trim', {}))
            else ''
        )
        + ''.join(_attempt_not_kept(a, last, budget['limit'], unit) for a in budget['attempts'] if a is not last)
        + (
            f'; activations went below the floor (min_activation_bits) after step {relaxed}: nothing else '
            'was left to lower'
            if (relaxed := last.get('activation_floor_relaxed_after')) is not None
            else ''
        )
    )


def _attempt_not_kept(attempt: dict, kept: dict, limit: float, unit: str) -> str:
    """Why an allocation that was trained is not the exported one: it lost on validation
    against the kept design, or it stayed over the budget."""
    trained = f'trained to {attempt["trained_cost"]:,.0f}'
    if 'second' in attempt.get('trim', {}):
        trained += f' and trimmed to {attempt["cost_kept"]:,.0f}'
    if attempt.get('cost_kept', attempt['trained_cost']) > limit:
        return f'; the {_ordinal(attempt["attempt"])}, {trained} {unit}, stayed over the budget'
    if 'validation' not in attempt or 'validation' not in kept:  # manifests before the candidates were compared
        return ''
    return (
        f'; the {_ordinal(attempt["attempt"])}, {trained} {unit}, lost on validation '
        f'({attempt["validation"]:.4g} against {kept["validation"]:.4g})'
    )


def _ordinal(n: int) -> str:
    return {1: 'first', 2: 'second', 3: 'third'}.get(n, f'{n}th')


def weight_pruning_line(weight_pruning: dict) -> str | None:
    """One line on weight-level sparsity (manifest['weight_pruning']), None without it."""
    layers = weight_pruning.get('layers') or {}
    if not layers:
        return None
    total = sum(entry['weights'] for entry in layers.values())
    nonzero = sum(entry['nonzero'] for entry in layers.values())
    ramp = weight_pruning.get('ramp_steps') or 0
    how = f'ramped in over {ramp:,} QAT steps' if ramp else 'all at once before QAT'
    return (
        f'weight sparsity ({weight_pruning["granularity"]}, {how}): {nonzero:,} of {total:,} weights in '
        f'{len(layers)} layers are not 0 ({1 - nonzero / total:.1%} zero)'
    )
