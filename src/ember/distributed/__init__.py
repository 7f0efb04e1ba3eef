"""Where the model runs: one device, or many processes with torch.distributed.

- ``strategy``: ``Strategy`` and ``SingleDeviceStrategy`` (one process).
- ``parallel``, ``ddp``, ``fsdp``, ``model_parallel``, ``deepspeed``: the multi-process strategies (process
  group, collectives, wrappers); ``sharded``: the checkpoints of FSDP and model parallel.
- ``factory``: the strategy for the Trainer's ``accelerator``/``devices``/``strategy``/``num_nodes``.
- ``launch``: starting the other processes (re-running the script, spawn, fork) or joining them.
- ``environments``: where ranks and addresses come from (torchrun, SLURM, Ember's own launcher).
- ``failure``: a failing rank ends the job quickly, with a message that names it.
"""

from __future__ import annotations

from typing import Any

from ember.distributed.factory import create_strategy, parse_devices, resolve_accelerator
from ember.distributed.strategy import SingleDeviceStrategy, Strategy

__all__ = [
    "DDPStrategy",
    "DeepSpeedStrategy",
    "FSDPStrategy",
    "ModelParallelStrategy",
    "ParallelStrategy",
    "SingleDeviceStrategy",
    "Strategy",
    "create_strategy",
    "parse_devices",
    "resolve_accelerator",
]


def __getattr__(name: str) -> Any:
    # the multi-process strategies load on first use: `import ember` stays light
    if name in ("DDPStrategy", "DDPSpawnStrategy"):
        from ember.distributed import ddp

        return getattr(ddp, name)
    if name == "DeepSpeedStrategy":
        from ember.distributed.deepspeed import DeepSpeedStrategy

        return DeepSpeedStrategy
    if name == "FSDPStrategy":
        from ember.distributed.fsdp import FSDPStrategy

        return FSDPStrategy
    if name == "ModelParallelStrategy":
        from ember.distributed.model_parallel import ModelParallelStrategy

        return ModelParallelStrategy
    if name == "ParallelStrategy":
        from ember.distributed.parallel import ParallelStrategy

        return ParallelStrategy
    raise AttributeError(f"module 'ember.distributed' has no attribute {name!r}")
