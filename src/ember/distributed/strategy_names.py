"""Lightning's registered strategy names that stand for arguments of Ember's strategies: what
``Trainer(strategy=name)`` builds, and what each strategy class registers (``register_strategies``)."""

from __future__ import annotations

from typing import Any

# the DDP names and the start method each stands for
DDP_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}

# the DeepSpeed names and the arguments each stands for
DEEPSPEED_NAMES: dict[str, dict[str, Any]] = {
    "deepspeed": {},
    "deepspeed_stage_1": {"stage": 1},
    "deepspeed_stage_2": {"stage": 2},
    "deepspeed_stage_2_offload": {"stage": 2, "offload_optimizer": True},
    "deepspeed_stage_3": {"stage": 3},
    "deepspeed_stage_3_offload": {"stage": 3, "offload_optimizer": True, "offload_parameters": True},
    "deepspeed_stage_3_offload_nvme": {
        "stage": 3,
        "offload_optimizer": True,
        "offload_parameters": True,
        "remote_device": "nvme",
        "offload_params_device": "nvme",
        "offload_optimizer_device": "nvme",
    },
}

# the FSDP names and the arguments each stands for
FSDP_NAMES: dict[str, dict[str, Any]] = {"fsdp": {}, "fsdp_cpu_offload": {"cpu_offload": True}}

# a TPU's names: Ember has no XLA strategies, Lightning's names only
XLA = "XLA (TPU): not supported on Ember, Lightning's name only"
