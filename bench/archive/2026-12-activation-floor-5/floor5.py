"""Experiment (not a bench record): `lpsubnet prune --max-lut BUDGET`'s default settings (the
bench's weight_a4_qat300_both points) with activations floored at 5 bits, on letter.

From the repository root: PYTHONPATH=. .venv/bin/python bench/archive/2026-12-activation-floor-5/floor5.py SEED BUDGET
[VARIANT] (default weight_a4; channel75weight_a4 starts from 75 % channels, records named exp_c75_...).
"""

import sys
from pathlib import Path

from bench import data, peer

seed, budget = int(sys.argv[1]), int(sys.argv[2])
variant = sys.argv[3] if len(sys.argv) > 3 else 'weight_a4'
prefix = 'exp_floor5' if variant == 'weight_a4' else 'exp_c75_floor5'
settings = {**peer.BUDGET_VARIANTS[variant], 'qat_epochs': 300, 'budget_fit': 'both', 'min_activation_bits': 5}
point = dict(side='lpsubnet', name=f'{prefix}_lut{budget}_seed{seed}', seed=seed,
             settings={**settings, 'max_lut': budget})  # fmt: skip
record = peer.run_lpsubnet(data.load('letter'), point, Path(__file__).parent / f'{point["name"]}.json', False)
print(point['name'], record.get('status'), record.get('test_accuracy'), record.get('lut_estimate'))
