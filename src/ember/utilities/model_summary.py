"""Lightning's import path for the summary table: ``ember.utilities.model_summary``."""

from ember.callbacks.model_summary import LayerSummary, summarize
from ember.callbacks.model_summary import Summary as ModelSummary

__all__ = ["LayerSummary", "ModelSummary", "summarize"]
