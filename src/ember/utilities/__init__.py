"""Small helpers that user code imports, under the names Lightning uses."""

from ember.utilities.apply_func import move_data_to_device
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.parsing import AttributeDict
from ember.utilities.rank_zero import (
    rank_zero_debug,
    rank_zero_info,
    rank_zero_only,
    rank_zero_warn,
)
from ember.utilities.seed import isolate_rng, seed_everything

__all__ = [
    "AttributeDict",
    "MisconfigurationException",
    "isolate_rng",
    "move_data_to_device",
    "rank_zero_debug",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "seed_everything",
]
