"""Suite-wide fixtures."""

import pytest

from ember.utilities.rank_zero import rank_zero_only


@pytest.fixture(autouse=True)
def _restore_the_rank_zero_only_rank():
    """A test that sets up a multi-process strategy in this process (a torchrun or SLURM layout) sets the
    process's rank, as Lightning's strategies do; the next test starts from the rank this one found."""
    rank = rank_zero_only.rank
    yield
    rank_zero_only.rank = rank
