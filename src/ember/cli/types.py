"""The types ``LightningCLI`` configs name: ``ReduceLROnPlateau`` with a monitor, and the type aliases."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, Union

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class ReduceLROnPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """``ReduceLROnPlateau`` that knows the metric it watches, so a config can name it.

    Example (YAML)::

        lr_scheduler:
          class_path: ember.cli.ReduceLROnPlateau
          init_args: {monitor: val_loss, patience: 2}
    """

    def __init__(self, optimizer: Optimizer, monitor: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, *args, **kwargs)
        self.monitor = monitor


LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)
LRSchedulerTypeUnion = Union[LRScheduler, ReduceLROnPlateau]
LRSchedulerType = Union[type[LRScheduler], type[ReduceLROnPlateau]]
# jsonargparse's Namespace (what LightningCLI parses into) is an argparse.Namespace; naming argparse's keeps
# jsonargparse unloaded until a parser is built
ArgsType = Union[list[str], dict[str, Any], Namespace, None]
OptimizerCallable = Callable[[Iterable], Optimizer]
LRSchedulerCallable = Callable[[Optimizer], LRScheduler | ReduceLROnPlateau]
# the class `instantiate_module` builds, and what it returns
ModuleType = TypeVar("ModuleType")
