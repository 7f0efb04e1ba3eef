"""Lightning's ``cli`` module: ``LightningCLI`` and the types its configs use.

jsonargparse loads only when a parser is built: ``import ember.cli`` and ``ember --version`` never
pay for it. The ``ember`` command itself is ``ember.cli.console``.

Example (``main.py``)::

    from ember.cli import LightningCLI

    LightningCLI(MyModel, MyData)      # python main.py fit --config config.yaml
"""

from __future__ import annotations

from typing import Any

from ember.cli.lightning_cli import (
    LightningCLI,
    SaveConfigCallback,
    argument_parser_class,
    instantiate_class,
    instantiate_module,
)
from ember.cli.types import (
    ArgsType,
    LRSchedulerCallable,
    LRSchedulerType,
    LRSchedulerTypeTuple,
    LRSchedulerTypeUnion,
    ModuleType,
    OptimizerCallable,
    ReduceLROnPlateau,
)
from ember.utilities.imports import RequirementCache

# Lightning's flag, which programs test before they import jsonargparse: true where the installed
# jsonargparse is one Ember's command line supports (checked on first use, without importing it)
_JSONARGPARSE_SIGNATURES_AVAILABLE = RequirementCache("jsonargparse[signatures]>=4.27")

__all__ = [
    "ArgsType",
    "LRSchedulerCallable",
    "LRSchedulerType",
    "LRSchedulerTypeTuple",
    "LRSchedulerTypeUnion",
    "LightningArgumentParser",
    "LightningCLI",
    "ModuleType",
    "OptimizerCallable",
    "ReduceLROnPlateau",
    "SaveConfigCallback",
    "instantiate_class",
    "instantiate_module",
]


# the names Lightning's `cli` module imports, which programs take from it (`from lightning.pytorch.cli import
# LightningCLI, Namespace`): each loads on first use, so that `import ember.cli` pulls in neither jsonargparse
# nor the Trainer
_FROM_ELSEWHERE = {
    "ActionConfigFile": "jsonargparse",
    "ArgumentParser": "jsonargparse",
    "Namespace": "jsonargparse",
    "class_from_function": "jsonargparse",
    "register_unresolvable_import_paths": "jsonargparse",
    "Optimizer": "torch.optim",
    "LRScheduler": "torch.optim.lr_scheduler",
    "Callback": "ember.callbacks",
    "LightningDataModule": "ember.core.datamodule",
    "LightningModule": "ember.core.module",
    "Trainer": "ember.trainer.trainer",
    "seed_everything": "ember.utilities.seed",
    "MisconfigurationException": "ember.utilities.exceptions",
    "rank_zero_warn": "ember.utilities.rank_zero",
    "is_overridden": "ember.utilities.model_helpers",
    "get_filesystem": "ember.checkpoint.files",
}


def __getattr__(name: str) -> Any:
    # the parser subclasses jsonargparse's, so it is built (and jsonargparse imported) on first use
    if name == "LightningArgumentParser":
        value = argument_parser_class()
    elif name in _FROM_ELSEWHERE:
        import importlib

        value = getattr(importlib.import_module(_FROM_ELSEWHERE[name]), name)
    else:
        raise AttributeError(f"module 'ember.cli' has no attribute {name!r}")
    globals()[name] = value
    return value
