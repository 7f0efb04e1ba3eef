"""``ember.utilities.model_summary.model_summary``: Lightning's module path for the summary table.

``ModelSummary`` here is the table (``summarize(model)`` returns one), not the callback of the
same name in ``ember.callbacks``.
"""

from ember.callbacks.model_summary import (
    LEFTOVER_PARAMS_NAME,
    NOT_APPLICABLE,
    PARAMETER_NUM_UNITS,
    UNKNOWN_SIZE,
    LayerSummary,
    get_formatted_model_size,
    get_human_readable_count,
    parse_batch_shape,
    summarize,
)
from ember.callbacks.model_summary import Summary as ModelSummary

__all__ = [
    "LEFTOVER_PARAMS_NAME",
    "NOT_APPLICABLE",
    "PARAMETER_NUM_UNITS",
    "UNKNOWN_SIZE",
    "LayerSummary",
    "ModelSummary",
    "get_formatted_model_size",
    "get_human_readable_count",
    "parse_batch_shape",
    "summarize",
]
