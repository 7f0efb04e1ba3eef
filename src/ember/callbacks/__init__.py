"""Built-in callbacks. Each lives in its own module and is imported on first use."""

from __future__ import annotations

from typing import Any

from ember.callbacks.callback import Callback
from ember.utilities.lazy import lazy_attribute

_LAZY = {
    "Checkpoint": "ember.callbacks.checkpoint",
    "ModelCheckpoint": "ember.callbacks.model_checkpoint",
    "OnExceptionCheckpoint": "ember.callbacks.on_exception_checkpoint",
    "EarlyStopping": "ember.callbacks.early_stopping",
    "LearningRateMonitor": "ember.callbacks.lr_monitor",
    "ModelSummary": "ember.callbacks.model_summary",
    "RichModelSummary": "ember.callbacks.rich_model_summary",
    "ProgressBar": "ember.callbacks.progress_bar",
    "TQDMProgressBar": "ember.callbacks.tqdm_progress",
    "RichProgressBar": "ember.callbacks.rich_progress",
    "Timer": "ember.callbacks.timer",
    "LambdaCallback": "ember.callbacks.lambda_function",
    "GradientAccumulationScheduler": "ember.callbacks.gradient_accumulation_scheduler",
    "BasePredictionWriter": "ember.callbacks.prediction_writer",
    "StochasticWeightAveraging": "ember.callbacks.stochastic_weight_avg",
    "LearningRateFinder": "ember.callbacks.lr_finder",
    "BatchSizeFinder": "ember.callbacks.batch_size_finder",
    "BaseFinetuning": "ember.callbacks.finetuning",
    "BackboneFinetuning": "ember.callbacks.finetuning",
    "DeviceStatsMonitor": "ember.callbacks.device_stats_monitor",
    "ModelPruning": "ember.callbacks.pruning",
    "SpikeDetection": "ember.callbacks.spike",
    "ThroughputMonitor": "ember.callbacks.throughput_monitor",
    "WeightAveraging": "ember.callbacks.weight_averaging",
    "EMAWeightAveraging": "ember.callbacks.weight_averaging",
}

__all__ = ["Callback", *_LAZY]


def __getattr__(name: str) -> Any:
    return lazy_attribute(globals(), _LAZY, name)


def __dir__() -> list[str]:
    return sorted(__all__)
