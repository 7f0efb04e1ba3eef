"""Lightning's import path for strategies: ``from ember.strategies import DDPStrategy``."""

from ember.distributed.ddp import DDPSpawnStrategy, DDPStrategy
from ember.distributed.deepspeed import DeepSpeedStrategy
from ember.distributed.factory import register_built_in_strategies
from ember.distributed.fsdp import FSDPStrategy
from ember.distributed.model_parallel import ModelParallelStrategy
from ember.distributed.parallel import ParallelStrategy
from ember.distributed.strategy import SingleDeviceStrategy, Strategy, StrategyRegistry
from ember.distributed.xla import SingleDeviceXLAStrategy, XLAStrategy  # by name only
from ember.utilities.registry import _StrategyRegistry as _StrategyRegistry

# isort: split
# Lightning 1.x's TPU names and Lightning's removed HPU classes, which Lightning 2.x keeps: by name only
from ember.accelerators.hpu import HPUParallelStrategy as HPUParallelStrategy
from ember.accelerators.hpu import SingleHPUStrategy as SingleHPUStrategy
from ember.distributed.xla import SingleTPUStrategy as SingleTPUStrategy

register_built_in_strategies()  # Lightning's names, listed in `StrategyRegistry` as in Lightning

__all__ = [
    "DDPSpawnStrategy",
    "DDPStrategy",
    "DeepSpeedStrategy",
    "FSDPStrategy",
    "ModelParallelStrategy",
    "ParallelStrategy",
    "SingleDeviceStrategy",
    "SingleDeviceXLAStrategy",
    "Strategy",
    "StrategyRegistry",
    "XLAStrategy",
]
