"""The types of the ``Trainer`` arguments that take objects, named as Lightning names them.

``Trainer.__init__`` annotates with them (``logger: types.Logger | Iterable[types.Logger] | bool | None``), so
``typing.get_type_hints(Trainer.__init__)`` resolves to real classes and ``LightningCLI`` can turn a
``class_path`` (or a short name, ``--trainer.logger=CSVLogger``) into a logger, strategy, profiler or plugin.
The classes load on first use of these names, not with ``import ember``.

Example::

    import typing

    typing.get_type_hints(Trainer.__init__)["logger"]   # Logger | Iterable[Logger] | bool | None
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Union

if TYPE_CHECKING:
    from ember.accelerators.accelerator import Accelerator
    from ember.checkpoint.io import CheckpointIO
    from ember.distributed.environments import ClusterEnvironment
    from ember.distributed.layer_sync import LayerSync
    from ember.distributed.strategy import Strategy
    from ember.loggers.logger import Logger
    from ember.precision.precision import Precision
    from ember.profilers.profiler import Profiler

    _PLUGIN = Union[Precision, ClusterEnvironment, CheckpointIO, LayerSync]

__all__ = ["_LITERAL_WARN", "_PLUGIN", "_PRECISION_INPUT", "Accelerator", "Logger", "Profiler", "Strategy"]

_PRECISION_INPUT_INT = Literal[64, 32, 16]
_PRECISION_INPUT_STR = Literal["16-true", "16-mixed", "bf16-true", "bf16-mixed", "32-true", "64-true"]
_PRECISION_INPUT_STR_ALIAS = Literal["64", "32", "16", "bf16"]
_PRECISION_INPUT = Union[_PRECISION_INPUT_INT, _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS]
_LITERAL_WARN = Literal["warn"]

_LAZY = ("Accelerator", "CheckpointIO", "ClusterEnvironment", "Strategy", "Logger", "Profiler", "_PLUGIN")


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ember.trainer.types' has no attribute {name!r}")
    from ember.accelerators.accelerator import Accelerator
    from ember.checkpoint.io import CheckpointIO
    from ember.distributed.environments import ClusterEnvironment
    from ember.distributed.layer_sync import LayerSync
    from ember.distributed.strategy import Strategy
    from ember.loggers.logger import Logger
    from ember.precision.precision import Precision
    from ember.profilers.profiler import Profiler

    loaded = {
        "Accelerator": Accelerator,
        "CheckpointIO": CheckpointIO,
        "ClusterEnvironment": ClusterEnvironment,
        "Strategy": Strategy,
        "Logger": Logger,
        "Profiler": Profiler,
        # what `Trainer(plugins=...)` acts on, as in Lightning
        "_PLUGIN": Union[Precision, ClusterEnvironment, CheckpointIO, LayerSync],
    }
    globals().update(loaded)
    return loaded[name]
