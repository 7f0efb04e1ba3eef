"""The DeepSpeed config that ``DeepSpeedStrategy`` hands to ``deepspeed.initialize``, built as Lightning builds it.

Plain functions on dicts: nothing here imports DeepSpeed, so the config can be built and checked
without it. The strategy builds it in two steps:

1. from its arguments (:func:`config_from_arguments`), unless the user passed a config (a dict,
   a JSON file, or the file named by ``PL_DEEPSPEED_CONFIG_PATH``; :func:`load_config`);
2. when ``fit`` starts, from the Trainer (:func:`add_trainer_settings`: gradient accumulation,
   the training loader's batch size, gradient clipping) and the precision
   (:func:`add_precision_settings`: the ``fp16`` or ``bf16`` section).

Example::

    config = config_from_arguments(stage=3, offload_optimizer=True)
    add_trainer_settings(config, accumulate_grad_batches=2, batch_size=32, gradient_clip_val=1.0)
    add_precision_settings(config, "bf16-mixed")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info

CONFIG_PATH_VARIABLE = "PL_DEEPSPEED_CONFIG_PATH"  # Lightning's name: a JSON config used when none is passed


def load_config(config: str | os.PathLike | dict[str, Any] | None) -> dict[str, Any] | None:
    """The user's config: a dict as given, a JSON file read, or the file ``PL_DEEPSPEED_CONFIG_PATH`` names.

    None when there is none: the strategy then builds one from its arguments.
    """
    if config is None and CONFIG_PATH_VARIABLE in os.environ:
        rank_zero_info(f"Loading DeepSpeed config from set {CONFIG_PATH_VARIABLE} environment variable")
        config = os.environ[CONFIG_PATH_VARIABLE]
    if isinstance(config, (str, Path, os.PathLike)):
        if not os.path.isfile(config):
            raise MisconfigurationException(
                f"You passed in a path to a DeepSpeed config but the path does not exist: {config}"
            )
        with open(config) as file:
            loaded = json.load(file)
        return loaded
    if config is not None and not isinstance(config, dict):
        raise TypeError(
            f"`DeepSpeedStrategy(config=...)` takes a dict or the path of a JSON file, got {config!r} ({type(config).__name__})."
        )
    return config


def config_from_arguments(
    zero_optimization: bool = True,
    zero_allow_untested_optimizer: bool = True,
    logging_batch_size_per_gpu: str | int = "auto",
    partition_activations: bool = False,
    cpu_checkpointing: bool = False,
    contiguous_memory_optimization: bool = False,
    synchronize_checkpoint_boundary: bool = False,
    offload_optimizer: bool = False,
    offload_parameters: bool = False,
    nvme_path: str = "/local_nvme",
    offload_params_device: str = "cpu",
    params_buffer_count: int = 5,
    params_buffer_size: int = 100_000_000,
    max_in_cpu: int = 1_000_000_000,
    offload_optimizer_device: str = "cpu",
    optimizer_buffer_count: int = 4,
    pin_memory: bool = False,
    block_size: int = 1048576,
    queue_depth: int = 8,
    single_submit: bool = False,
    overlap_events: bool = True,
    thread_count: int = 1,
    stage: int = 2,
    contiguous_gradients: bool = True,
    overlap_comm: bool = True,
    allgather_partitions: bool = True,
    reduce_scatter: bool = True,
    allgather_bucket_size: int = 200_000_000,
    reduce_bucket_size: int = 200_000_000,
    sub_group_size: int = 1_000_000_000_000,
) -> dict[str, Any]:
    """The config for ``DeepSpeedStrategy``'s arguments (the same names and defaults).

    The ZeRO settings (``stage``, ``contiguous_gradients``, ``overlap_comm``, bucket sizes, ...) go
    into the ``zero_optimization`` section as they are; offloading adds its own sub-sections.
    """
    config: dict[str, Any] = {}
    if logging_batch_size_per_gpu != "auto":
        config["train_micro_batch_size_per_gpu"] = logging_batch_size_per_gpu
    if zero_optimization:
        zero: dict[str, Any] = {
            "stage": stage,
            "contiguous_gradients": contiguous_gradients,
            "overlap_comm": overlap_comm,
            "allgather_partitions": allgather_partitions,
            "reduce_scatter": reduce_scatter,
            "allgather_bucket_size": allgather_bucket_size,
            "reduce_bucket_size": reduce_bucket_size,
            "sub_group_size": sub_group_size,
        }
        if offload_optimizer:
            zero["offload_optimizer"] = {
                "device": offload_optimizer_device,
                "nvme_path": nvme_path,
                "buffer_count": optimizer_buffer_count,
                "pin_memory": pin_memory,
            }
        if offload_parameters:
            zero["offload_param"] = {
                "device": offload_params_device,
                "nvme_path": nvme_path,
                "buffer_count": params_buffer_count,
                "buffer_size": params_buffer_size,
                "max_in_cpu": max_in_cpu,
                "pin_memory": pin_memory,
            }
        config["zero_allow_untested_optimizer"] = zero_allow_untested_optimizer
        config["zero_optimization"] = zero
    config["activation_checkpointing"] = {
        "partition_activations": partition_activations,
        "cpu_checkpointing": cpu_checkpointing,
        "contiguous_memory_optimization": contiguous_memory_optimization,
        "synchronize_checkpoint_boundary": synchronize_checkpoint_boundary,
    }
    config["aio"] = {
        "block_size": block_size,
        "queue_depth": queue_depth,
        "single_submit": single_submit,
        "overlap_events": overlap_events,
        "thread_count": thread_count,
    }
    return config


def add_trainer_settings(
    config: dict[str, Any], accumulate_grad_batches: int, batch_size: int, gradient_clip_val: float | None
) -> None:
    """Gradient accumulation, the micro batch size and gradient clipping, from the Trainer, into ``config``.

    The Trainer owns accumulation: a config that sets it is refused. A batch size or clipping value
    already in the config is kept.
    """
    if "gradient_accumulation_steps" in config:
        raise MisconfigurationException(
            "Do not set `gradient_accumulation_steps` in the DeepSpeed config: it comes from"
            " `Trainer(accumulate_grad_batches=...)`. Remove it from the config and set it on the Trainer."
        )
    config["gradient_accumulation_steps"] = accumulate_grad_batches
    config.setdefault("train_micro_batch_size_per_gpu", batch_size)
    config.setdefault("gradient_clipping", gradient_clip_val or 0.0)


def add_precision_settings(
    config: dict[str, Any],
    precision: str,
    loss_scale: float = 0,
    initial_scale_power: int = 16,
    loss_scale_window: int = 1000,
    hysteresis: int = 2,
    min_loss_scale: int = 1,
) -> None:
    """The ``fp16`` section for the 16-bit precisions (dynamic loss scaling when ``loss_scale`` is 0), ``bf16``
    for the bfloat16 ones; a section the config already has is kept."""
    if precision in ("16-mixed", "16-true") and "fp16" not in config:
        rank_zero_info("Enabling DeepSpeed FP16. Model parameters and inputs will be cast to `float16`.")
        config["fp16"] = {
            "enabled": True,
            "loss_scale": loss_scale,
            "initial_scale_power": initial_scale_power,
            "loss_scale_window": loss_scale_window,
            "hysteresis": hysteresis,
            "min_loss_scale": min_loss_scale,
        }
    elif precision in ("bf16-mixed", "bf16-true") and "bf16" not in config:
        rank_zero_info("Enabling DeepSpeed BF16. Model parameters and inputs will be cast to `bfloat16`.")
        config["bf16"] = {"enabled": True}


def zero_stage(config: dict[str, Any]) -> int:
    """The ZeRO stage the config asks for (0: no ZeRO)."""
    return int((config.get("zero_optimization") or {}).get("stage", 0))


__all__ = [
    "CONFIG_PATH_VARIABLE",
    "add_precision_settings",
    "add_trainer_settings",
    "config_from_arguments",
    "load_config",
    "zero_stage",
]
