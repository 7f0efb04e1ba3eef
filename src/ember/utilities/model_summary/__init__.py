"""Lightning's import path for the summary table: ``ember.utilities.model_summary``.

The table itself is built in ``ember.callbacks.model_summary``; Lightning's deeper path
``utilities.model_summary.model_summary`` has the same names.
"""

from ember.utilities.model_summary.model_summary import (
    LayerSummary,
    ModelSummary,
    get_formatted_model_size,
    get_human_readable_count,
    parse_batch_shape,
    summarize,
)

__all__ = [
    "LayerSummary",
    "ModelSummary",
    "get_formatted_model_size",
    "get_human_readable_count",
    "parse_batch_shape",
    "summarize",
]
