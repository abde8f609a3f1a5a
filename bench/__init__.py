"""Benchmarks of lpsubnet: the method's claims at small scale on real offline data,
and the tool itself. ``python -m bench.run --task ...`` writes one JSON per
configuration into ``bench/results/<task>/``; ``python -m bench.report`` turns them
into ``docs/benchmarks.md`` and ``docs/bench/*.png``.
"""
