"""Experiment (not a bench record): `lpsubnet prune --max-lut BUDGET`'s default settings (the
bench's weight_a4_qat300_both points) with activations floored at 5 bits, on letter.

From the repository root: PYTHONPATH=. .venv/bin/python bench/archive/2026-12-activation-floor-5/floor5.py SEED BUDGET
"""

import sys
from pathlib import Path

from bench import data, peer

seed, budget = int(sys.argv[1]), int(sys.argv[2])
settings = {**peer.BUDGET_VARIANTS['weight_a4'], 'qat_epochs': 300, 'budget_fit': 'both', 'min_activation_bits': 5}
point = dict(side='lpsubnet', name=f'exp_floor5_lut{budget}_seed{seed}', seed=seed,
             settings={**settings, 'max_lut': budget})  # fmt: skip
record = peer.run_lpsubnet(data.load('letter'), point, Path(__file__).parent / f'{point["name"]}.json', False)
print(point['name'], record.get('status'), record.get('test_accuracy'), record.get('lut_estimate'))
