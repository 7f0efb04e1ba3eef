"""The type aliases of Lightning's hooks and ``configure_optimizers``, for annotations.

Example::

    from ember.utilities.types import STEP_OUTPUT, OptimizerLRScheduler

    class Model(LightningModule):
        def training_step(self, batch, batch_idx) -> STEP_OUTPUT: ...
        def configure_optimizers(self) -> OptimizerLRScheduler: ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, TypedDict, Union

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from typing_extensions import NotRequired, Required

from ember.trainer.optim import LRSchedulerConfig  # one scheduler and when to step it

_NUMBER = Union[int, float]
STEP_OUTPUT = Optional[Union[Tensor, Mapping[str, Any]]]
_EVALUATE_OUTPUT = list[Mapping[str, float]]  # one dict per dataloader
_PREDICT_OUTPUT = Union[list[Any], list[list[Any]]]
TRAIN_DATALOADERS = Any  # any iterable, or a collection of iterables
EVAL_DATALOADERS = Any  # any iterable, or a collection of iterables

LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, ReduceLROnPlateau]
LRSchedulerType = Union[type[LRScheduler], type[ReduceLROnPlateau]]
LRSchedulerPLType = Union[LRScheduler, ReduceLROnPlateau]


class LRSchedulerConfigType(TypedDict, total=False):
    """The dict ``configure_optimizers`` may return under ``"lr_scheduler"``."""

    scheduler: Required[LRSchedulerTypeUnion]
    name: Optional[str]
    interval: str
    frequency: int
    reduce_on_plateau: bool
    monitor: Optional[str]
    strict: bool


class OptimizerConfig(TypedDict):
    """``{"optimizer": ...}``."""

    optimizer: Optimizer


class OptimizerLRSchedulerConfig(TypedDict):
    """``{"optimizer": ..., "lr_scheduler": ..., "monitor": ...}``."""

    optimizer: Optimizer
    lr_scheduler: Union[LRSchedulerTypeUnion, LRSchedulerConfigType]
    monitor: NotRequired[str]


# everything `configure_optimizers` may return
OptimizerLRScheduler = Optional[
    Union[
        Optimizer,
        Sequence[Optimizer],
        tuple[Sequence[Optimizer], Sequence[Union[LRSchedulerTypeUnion, LRSchedulerConfig]]],
        OptimizerConfig,
        OptimizerLRSchedulerConfig,
        Sequence[OptimizerConfig],
        Sequence[OptimizerLRSchedulerConfig],
    ]
]

__all__ = [
    "EVAL_DATALOADERS",
    "STEP_OUTPUT",
    "TRAIN_DATALOADERS",
    "LRSchedulerConfig",
    "LRSchedulerConfigType",
    "LRSchedulerPLType",
    "LRSchedulerType",
    "LRSchedulerTypeTuple",
    "LRSchedulerTypeUnion",
    "OptimizerConfig",
    "OptimizerLRScheduler",
    "OptimizerLRSchedulerConfig",
]


def __getattr__(name: str) -> Any:
    # `_METRIC` names torchmetrics' `Metric`, imported only when the alias is read
    if name == "_METRIC":
        try:
            from torchmetrics import Metric
        except ImportError:  # without torchmetrics, a logged value is a tensor or a number
            return Union[Tensor, _NUMBER]
        return Union[Metric, Tensor, _NUMBER]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
