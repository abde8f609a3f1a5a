"""Whether a design is bit-exact, read one way by every caller: the ``csim`` and ``rtl``
commands, ``lpsubnet run`` and a sweep trial.

A check result (``RouteResult.to_dict()``: csim.json, rtl.json, a trial's stage outputs)
is exact only when its simulation *and every second check* in ``checks`` (hls4ml's
``predict()``, da4ml's ``predict()``, the traced logic) agree with the QKeras model on
every sample. A sweep once recorded trials whose C simulation mismatched (319/4000
exact) as ``status: ok`` beside ``csim_exact: false`` (issue 27): a design that is not
exact is a failed result, never a figure to report as ok.
"""

from __future__ import annotations

# Readable names of the second checks a route may add to its result's ``checks``.
CHECK_NAMES = {
    'tb_data': 'the stored test inputs',
    'hls4ml_predict': "hls4ml's predict()",
    'da4ml_predict': "da4ml's predict()",
    'trace': "da4ml's traced logic",
}


def inexact_paths(result: dict, what: str) -> list[tuple[str, dict]]:
    """(name, result) of each path of ``result`` that is not bit-exact: the simulation
    itself (named ``what``) and each second check; empty when all are exact."""
    found = [] if result['exact'] else [(what, result)]
    for name, check in result.get('checks', {}).items():
        if not check['exact']:
            found.append((CHECK_NAMES.get(name, name), check))
    return found


def describe(name: str, result: dict) -> str:
    """One line with the counts: 'C simulation: 13/40 samples bit-exact (max |diff| 0.5,
    first mismatching sample 2)'."""
    if not result['samples']:
        return f'{name}: no sample was compared'
    return (
        f'{name}: {result["exact_matches"]}/{result["samples"]} samples bit-exact '
        f'(max |diff| {result["max_abs_diff"]:g}, first mismatching sample {result["first_mismatch"]})'
    )


def mismatches(results: dict[str, dict | None]) -> list[str]:
    """A line per inexact path over several saved results ({'C simulation': csim dict,
    'RTL simulation': rtl dict or None when the route did not run})."""
    return [describe(name, r) for what, result in results.items() if result for name, r in inexact_paths(result, what)]


def design_mismatches(records: dict[str, dict]) -> list[str]:
    """The inexact paths of a run's (or a sweep trial's) stage records: the csim stage's
    result, the rtl stage's when it ran (``{'skipped': ...}`` otherwise) and the Yosys
    netlist's simulation when the synth stage checked it."""
    results = {}
    if 'csim' in records:
        results['C simulation'] = records['csim']['summary']
    rtl = records.get('rtl', {}).get('summary', {})
    if 'route' in rtl:
        results['RTL simulation'] = rtl
    netlist = records.get('synth', {}).get('summary', {}).get('checks', {}).get('netlist')
    if netlist:
        results['Yosys netlist simulation'] = netlist
    return mismatches(results)
