"""hypothesis settings for the fuzz tests (fpga_tests/test_fuzz_*.py).

Default: a few examples per property, so the fuzz tests fit in the normal suite.
``LPSUBNET_FUZZ=1``: the ``fuzz`` profile, hundreds of examples, with the example
database kept in ``fpga_tests/.hypothesis-fuzz/`` so that a counterexample found
once is replayed first on the next run. (Every counterexample also becomes an
explicit test in fpga_tests/test_fuzz_regressions.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase

FUZZ = os.environ.get('LPSUBNET_FUZZ', '') not in ('', '0')
DB_DIR = Path(__file__).parent / '.hypothesis-fuzz'

_common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)

if FUZZ:
    settings.register_profile('lpsubnet-fuzz', database=DirectoryBasedExampleDatabase(str(DB_DIR)), **_common)
else:
    # No shrinking by default: one failing example is reported as drawn (shrinking
    # a model that needs a g++ build per try takes minutes); the fuzz profile shrinks.
    settings.register_profile(
        'lpsubnet-default',
        database=None,
        phases=[Phase.explicit, Phase.generate],
        **_common,
    )


def examples(default: int, fuzz: int) -> settings:
    """Settings for one property: ``default`` examples normally, ``fuzz`` under LPSUBNET_FUZZ=1."""
    profile = settings.get_profile('lpsubnet-fuzz' if FUZZ else 'lpsubnet-default')
    return settings(profile, max_examples=fuzz if FUZZ else default)


# The pruner's hypothesis properties draw the same examples on every run of the default
# suite (a fixed seed), so they are deterministic; hypothesis's derandomized mode would
# always start from the simplest model. (The hardware fuzz, test_fuzz_exact.py, draws new
# models on every run from the session's printed seed: fpga_tests/fuzz_seed.py.)
DEFAULT_SEED = 20261122


def fixed_seed(test):
    """Apply the default suite's fixed seed (not under LPSUBNET_FUZZ=1: random, with the database)."""
    return test if FUZZ else seed(DEFAULT_SEED)(test)
