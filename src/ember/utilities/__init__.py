"""Small helpers that user code imports, under the names Lightning uses."""

import torch

from ember.utilities.apply_func import move_data_to_device
from ember.utilities.combined_loader import CombinedLoader
from ember.utilities.data import suggested_max_num_workers
from ember.utilities.enums import GradClipAlgorithmType, LightningEnum
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.grads import grad_norm
from ember.utilities.parameter_tying import find_shared_parameters, set_shared_parameters
from ember.utilities.parsing import AttributeDict, is_picklable
from ember.utilities.rank_zero import (
    rank_zero_debug,
    rank_zero_deprecation,
    rank_zero_info,
    rank_zero_only,
    rank_zero_warn,
)
from ember.utilities.seed import isolate_rng, seed_everything
from ember.utilities.shared_filesystem import is_shared_filesystem
from ember.utilities.throughput import measure_flops
from ember.utilities.warnings import disable_possible_user_warnings

__all__ = [
    "AttributeDict",
    "CombinedLoader",
    "GradClipAlgorithmType",
    "LightningEnum",
    "MisconfigurationException",
    "disable_possible_user_warnings",
    "find_shared_parameters",
    "grad_norm",
    "is_picklable",
    "is_shared_filesystem",
    "isolate_rng",
    "measure_flops",
    "move_data_to_device",
    "rank_zero_debug",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "seed_everything",
    "set_shared_parameters",
    "suggested_max_num_workers",
]

# Lightning's constants here (outside its `__all__`): metric code imports them, as a division's guard
FLOAT16_EPSILON = torch.finfo(torch.float16).eps
FLOAT32_EPSILON = torch.finfo(torch.float32).eps
FLOAT64_EPSILON = torch.finfo(torch.float64).eps
