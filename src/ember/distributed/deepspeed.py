"""``DeepSpeedStrategy``: training through a DeepSpeed engine (ZeRO stages 1-3, offloading), as in Lightning.

The ``deepspeed`` package is optional: the strategy imports it when it is created, and says how
to install it when it is missing. What it does, in the order of a ``fit``:

1. the config: built from the arguments (``deepspeed_config.py``) or the one passed in, then
   completed from the Trainer (gradient accumulation, the loader's batch size, clipping) and the
   precision (``fp16``/``bf16`` sections);
2. ``deepspeed.initialize`` with the module and the optimizer (and scheduler) from
   ``configure_optimizers``; ``trainer.optimizers`` then holds DeepSpeed's optimizer;
3. every training batch runs ``training_step`` through the engine's forward, ``engine.backward``
   and ``engine.step`` (the engine accumulates gradients, clips and steps its optimizer at the end
   of each accumulation window); :class:`DeepSpeedPrecision` routes the step there;
4. checkpoints are folders written by ``engine.save_checkpoint`` (every rank its shards, the rest
   of Lightning's checkpoint dict as the engine's client state), read back by
   ``engine.load_checkpoint`` once the engine exists (``fit(ckpt_path=<folder>)``).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from ember.distributed import deepspeed_config
from ember.distributed.ddp import DDPStrategy
from ember.distributed.parallel import default_pg_timeout
from ember.distributed.strategy_names import DEEPSPEED_NAMES
from ember.precision import Precision
from ember.precision.deepspeed import DeepSpeedPrecision
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

_INSTALL_HINT = "Install it with `pip install -U deepspeed`."


def import_deepspeed() -> Any:
    """The ``deepspeed`` module, or an error that says how to install it."""
    try:
        import deepspeed
    except ImportError as error:
        raise MisconfigurationException(
            "To use the `DeepSpeedStrategy` (`strategy='deepspeed'` and its `deepspeed_stage_*` variants), you must"
            f" have the `deepspeed` package installed, and it could not be imported ({error}). {_INSTALL_HINT}"
        ) from error
    return deepspeed


class DeepSpeedStrategy(DDPStrategy):
    """Train with DeepSpeed's ZeRO: optimizer states (stage 1), gradients (2) and parameters (3) sharded across
    processes, optionally offloaded to the CPU or NVMe.

    Lightning's arguments and defaults. Without ``config`` the DeepSpeed config is built from the
    arguments; with one (a dict or a JSON file) they are ignored, except that the Trainer still sets
    ``gradient_accumulation_steps`` and, where the config lacks them, ``train_micro_batch_size_per_gpu``,
    ``gradient_clipping`` and the ``fp16``/``bf16`` section. ``strategy.config`` is the final config.

    Unlike Lightning, it also runs on CPU processes (gloo, DeepSpeed's CPU accelerator), e.g. for tests.

    Example::

        trainer = Trainer(accelerator="cuda", devices=4, strategy="deepspeed_stage_2", precision="bf16-mixed")
        trainer = Trainer(strategy=DeepSpeedStrategy(stage=3, offload_optimizer=True), devices=8)
        trainer = Trainer(strategy=DeepSpeedStrategy(config="ds_config.json"))
        trainer.fit(model, ckpt_path="checkpoints/last.ckpt")  # a folder written by the engine
    """

    strategy_name = "deepspeed"
    setup_optimizers_after_module = False  # the engine is built with the optimizer
    DEEPSPEED_ENV_VAR = deepspeed_config.CONFIG_PATH_VARIABLE

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        """Lightning's DeepSpeed names (``"deepspeed_stage_2"``, ...), each with the stage and offloads it stands for."""
        for name, arguments in DEEPSPEED_NAMES.items():
            description = f"DeepSpeed {arguments or 'with its defaults'}"
            strategy_registry.register(name, cls, description=description, **arguments)

    def __init__(
        self,
        accelerator: Any = None,
        zero_optimization: bool = True,
        stage: int = 2,
        remote_device: str | None = None,
        offload_optimizer: bool = False,
        offload_parameters: bool = False,
        offload_params_device: str = "cpu",
        nvme_path: str = "/local_nvme",
        params_buffer_count: int = 5,
        params_buffer_size: int = 100_000_000,
        max_in_cpu: int = 1_000_000_000,
        offload_optimizer_device: str = "cpu",
        optimizer_buffer_count: int = 4,
        block_size: int = 1048576,
        queue_depth: int = 8,
        single_submit: bool = False,
        overlap_events: bool = True,
        thread_count: int = 1,
        pin_memory: bool = False,
        sub_group_size: int = 1_000_000_000_000,
        contiguous_gradients: bool = True,
        overlap_comm: bool = True,
        allgather_partitions: bool = True,
        reduce_scatter: bool = True,
        allgather_bucket_size: int = 200_000_000,
        reduce_bucket_size: int = 200_000_000,
        zero_allow_untested_optimizer: bool = True,
        logging_batch_size_per_gpu: str | int = "auto",
        config: str | os.PathLike | dict[str, Any] | None = None,
        logging_level: int = logging.WARN,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: Any = None,
        loss_scale: float = 0,
        initial_scale_power: int = 16,
        loss_scale_window: int = 1000,
        hysteresis: int = 2,
        min_loss_scale: int = 1,
        partition_activations: bool = False,
        cpu_checkpointing: bool = False,
        contiguous_memory_optimization: bool = False,
        synchronize_checkpoint_boundary: bool = False,
        load_full_weights: bool = False,
        precision_plugin: Any = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        exclude_frozen_parameters: bool = False,
        start_method: str = "popen",
    ) -> None:
        deepspeed = import_deepspeed()  # first: without the package nothing else can work
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            precision_plugin=precision_plugin,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
        )
        deepspeed.utils.logging.logger.setLevel(logging_level)
        loaded = deepspeed_config.load_config(config)
        if loaded is None:
            loaded = deepspeed_config.config_from_arguments(
                zero_optimization=zero_optimization,
                zero_allow_untested_optimizer=zero_allow_untested_optimizer,
                logging_batch_size_per_gpu=logging_batch_size_per_gpu,
                partition_activations=partition_activations,
                cpu_checkpointing=cpu_checkpointing,
                contiguous_memory_optimization=contiguous_memory_optimization,
                synchronize_checkpoint_boundary=synchronize_checkpoint_boundary,
                offload_optimizer=offload_optimizer,
                offload_parameters=offload_parameters,
                nvme_path=nvme_path,
                offload_params_device=offload_params_device,
                params_buffer_count=params_buffer_count,
                params_buffer_size=params_buffer_size,
                max_in_cpu=max_in_cpu,
                offload_optimizer_device=offload_optimizer_device,
                optimizer_buffer_count=optimizer_buffer_count,
                pin_memory=pin_memory,
                block_size=block_size,
                queue_depth=queue_depth,
                single_submit=single_submit,
                overlap_events=overlap_events,
                thread_count=thread_count,
                stage=stage,
                contiguous_gradients=contiguous_gradients,
                overlap_comm=overlap_comm,
                allgather_partitions=allgather_partitions,
                reduce_scatter=reduce_scatter,
                allgather_bucket_size=allgather_bucket_size,
                reduce_bucket_size=reduce_bucket_size,
                sub_group_size=sub_group_size,
            )
        self.config: dict[str, Any] = loaded
        self._given_config = copy.deepcopy(loaded)  # each fit completes a fresh copy from its Trainer
        self.remote_device = remote_device
        self.load_full_weights = load_full_weights
        self.exclude_frozen_parameters = exclude_frozen_parameters
        self.loss_scale = loss_scale
        self.initial_scale_power = initial_scale_power
        self.loss_scale_window = loss_scale_window
        self.hysteresis = hysteresis
        self.min_loss_scale = min_loss_scale
        self._engine: Any = None  # kept after `fit`: `trainer.save_checkpoint` then writes through it

    # ---- what the trainer asks -------------------------------------------------------------
    @property
    def zero_stage_3(self) -> bool:
        return deepspeed_config.zero_stage(self.config) == 3

    @property
    def deepspeed_engine(self) -> Any:
        """The ``deepspeed.DeepSpeedEngine`` that wraps the module (None before ``fit``)."""
        return self._engine

    @property
    def handles_gradient_accumulation(self) -> bool:
        """The engine accumulates: the trainer calls its step on every batch."""
        return True

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        """Checkpoints are read by the engine, so only once it exists."""
        return True

    @property
    def lightning_restore_optimizer(self) -> bool:
        """The engine restores its optimizer itself (in ``load_checkpoint``)."""
        if self.load_full_weights and self.zero_stage_3 and self._fitting():
            rank_zero_warn(
                "A single checkpoint file has been given. This means optimizer states cannot be restored."
                " If you'd like to restore these states, you must provide a path to the originally saved DeepSpeed"
                " checkpoint. When using ZeRO 3, the original path should be a directory."
            )
        return False

    def _fitting(self) -> bool:
        trainer = self._trainer()
        return trainer is not None and trainer.state.fn == "fit"

    def precision_for(self, precision: str, device_type: str) -> Precision:
        """``DeepSpeedPrecision``: the engine casts, scales the loss and steps."""
        return DeepSpeedPrecision(precision)

    # ---- processes ------------------------------------------------------------------------
    def setup_distributed(self) -> None:
        """Join the process group, then let DeepSpeed's communication layer use it."""
        deepspeed = import_deepspeed()
        super().setup_distributed()
        # as Lightning: DeepSpeed's engine reads this process's place from the environment
        os.environ.update(RANK=str(self.global_rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK=str(self.local_rank))
        if self.root_device.type == "cpu":
            self._use_cpu_accelerator(deepspeed)
        deepspeed.init_distributed(
            self.process_group_backend,
            distributed_port=self.cluster_environment.main_port,
            timeout=self._timeout,
            verbose=False,
        )

    @staticmethod
    def _use_cpu_accelerator(deepspeed: Any) -> None:
        # DeepSpeed picks its accelerator once per process (CUDA when there is a GPU): CPU processes need its CPU one
        from deepspeed.accelerator import get_accelerator, set_accelerator

        if get_accelerator().device_name() != "cpu":
            from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

            set_accelerator(CPU_Accelerator())

    # ---- the engine -----------------------------------------------------------------------
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Build the config and the engine: with the optimizer for ``fit``, without one otherwise."""
        module = module.to(self.root_device)
        trainer = getattr(module, "_trainer", None)
        if trainer is None:
            return module
        self.config = self._completed_config(trainer)
        self._check_clipping(trainer)
        if self._fitting():
            self._engine = self._training_engine(module, trainer)
        else:
            self._engine = self._inference_engine(module)
        if isinstance(self.precision_plugin, DeepSpeedPrecision):
            self.precision_plugin.engine = self._engine  # it runs backward and the step through the engine
            self.precision_plugin.automatic_optimization = bool(getattr(module, "automatic_optimization", True))
        return self._engine

    def _completed_config(self, trainer: Any) -> dict[str, Any]:
        config = copy.deepcopy(self._given_config)
        deepspeed_config.add_trainer_settings(
            config,
            accumulate_grad_batches=trainer.accumulate_grad_batches,
            batch_size=_training_batch_size(trainer) if "train_micro_batch_size_per_gpu" not in config else 1,
            gradient_clip_val=trainer.gradient_clip_val,
        )
        deepspeed_config.add_precision_settings(
            config,
            self.precision_plugin.precision,
            loss_scale=self.loss_scale,
            initial_scale_power=self.initial_scale_power,
            loss_scale_window=self.loss_scale_window,
            hysteresis=self.hysteresis,
            min_loss_scale=self.min_loss_scale,
        )
        return config

    def _check_clipping(self, trainer: Any) -> None:
        module = self._lightning_module
        overridden = type(module).configure_gradient_clipping is not _base_hook("configure_gradient_clipping")
        if overridden:
            rank_zero_warn(
                "DeepSpeed clips gradients itself (the config's `gradient_clipping`): your"
                " `configure_gradient_clipping` hook is still called, but `self.clip_gradients` in it does nothing."
                " Set `Trainer(gradient_clip_val=..., gradient_clip_algorithm='norm')` to have DeepSpeed clip."
            )
        if trainer.gradient_clip_algorithm == "value":
            raise MisconfigurationException(
                "DeepSpeed does not support clipping gradients by value: use `gradient_clip_algorithm='norm'`."
            )
        if type(module).backward is not _base_hook("backward"):
            rank_zero_warn(
                "Your `LightningModule.backward` is not called: DeepSpeed's engine runs the backward pass itself."
            )

    def _training_engine(self, module: nn.Module, trainer: Any) -> Any:
        deepspeed = import_deepspeed()
        optimizer, scheduler_config = None, None
        if "optimizer" in self.config:
            rank_zero_info(
                "The DeepSpeed config defines the optimizer (and maybe the scheduler): it is used, and"
                " `configure_optimizers` is not. Defining them in `configure_optimizers` is recommended."
            )
        else:
            if len(trainer.optimizers) > 1 or len(trainer.lr_scheduler_configs) > 1:
                raise MisconfigurationException(
                    "DeepSpeed currently only supports single optimizer, single optional scheduler: return one"
                    " optimizer (and at most one scheduler) from `configure_optimizers`."
                )
            optimizer = trainer.optimizers[0]
            scheduler_config = trainer.lr_scheduler_configs[0] if trainer.lr_scheduler_configs else None
        engine, engine_optimizer, _, _ = deepspeed.initialize(
            config=self.config,
            model=module,
            model_parameters=[p for p in module.parameters() if p.requires_grad],
            optimizer=optimizer,
            lr_scheduler=scheduler_config.scheduler if scheduler_config is not None else None,
            dist_init_required=False,
        )
        self._configure_activation_checkpointing(deepspeed)
        trainer.optimizers = [engine_optimizer]
        if engine.lr_scheduler is not None:
            # the trainer steps the scheduler on its interval, not the engine on every step
            if scheduler_config is None:
                from ember.trainer.optim import LRSchedulerConfig

                trainer._lr_scheduler_configs = [LRSchedulerConfig(engine.lr_scheduler, interval="step")]
            else:
                scheduler_config.scheduler = engine.lr_scheduler
            engine.lr_scheduler = None
        return engine

    def _configure_activation_checkpointing(self, deepspeed: Any) -> None:
        settings = self.config.get("activation_checkpointing")
        if settings:
            deepspeed.checkpointing.configure(
                mpu_=None,
                partition_activations=settings.get("partition_activations"),
                contiguous_checkpointing=settings.get("contiguous_memory_optimization"),
                checkpoint_in_cpu=settings.get("cpu_checkpointing"),
                profile=settings.get("profile"),
            )

    def _inference_engine(self, module: nn.Module) -> Any:
        deepspeed = import_deepspeed()
        config: dict[str, Any] = {"train_micro_batch_size_per_gpu": 1}
        for section in ("fp16", "bf16"):
            if section in self.config:
                config[section] = self.config[section]
        if self.zero_stage_3:
            config["zero_allow_untested_optimizer"] = self.config.get("zero_allow_untested_optimizer", True)
            config["zero_optimization"] = self.config["zero_optimization"]
        engine, _, _, _ = deepspeed.initialize(
            config=config, model=module, model_parameters=[], optimizer=None, dist_init_required=False
        )
        return engine

    @contextmanager
    def model_sharded_context(self) -> Iterator[None]:
        """Under ZeRO stage 3, layers created here are partitioned as they are built (``deepspeed.zero.Init``)."""
        deepspeed = import_deepspeed()
        with deepspeed.zero.Init(
            enabled=self.zero_stage_3, remote_device=self.remote_device, config_dict_or_path=self.config
        ):
            yield

    # ---- the step ---------------------------------------------------------------------------
    def training_step_fn(self, module: Any) -> Callable[..., Any]:
        return self._through_engine(module, "training_step")

    def eval_step_fn(self, module: Any, name: str) -> Callable[..., Any]:
        return self._through_engine(module, name)

    def _through_engine(self, module: Any, name: str) -> Callable[..., Any]:
        """``module.<name>`` called through the engine's forward, so the engine's hooks (ZeRO-3 gathering) run."""
        engine = self._engine
        if engine is None:
            return getattr(module, name)
        method = getattr(module, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            def redirected(*inner_args: Any, **inner_kwargs: Any) -> Any:
                del module.forward  # the step's own `self(x)` calls the real forward again
                return method(*inner_args, **inner_kwargs)

            module.forward = redirected  # an instance attribute, over the class's forward, for one call
            try:
                return engine(*args, **kwargs)
            finally:
                module.__dict__.pop("forward", None)

        return step

    # ---- checkpoints ----------------------------------------------------------------------
    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        """Empty: the engine writes its optimizer's (sharded) state in ``save_checkpoint``."""
        return {}

    @property
    def keeps_window_gradients(self) -> bool:
        return False

    def accumulated_gradients(self, all_ranks: bool) -> dict[str, torch.Tensor] | None:
        """``None``: the engine accumulates the gradients in its own (partitioned) buffers, which are not kept."""
        return None

    def full_module_state_dict(self) -> dict[str, Any]:
        """The whole weights on every rank (under ZeRO-3 gathered from the shards; all ranks call it)."""
        module = self._lightning_module
        if self._engine is None or not self.zero_stage_3:
            return module.state_dict()
        deepspeed = import_deepspeed()
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            return {key: value.detach().clone() for key, value in module.state_dict().items()}

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        """The engine writes the folder ``filepath`` (every rank its shards), with the rest of ``checkpoint`` in it."""
        if storage_options is not None:
            raise TypeError(
                "`Trainer.save_checkpoint(..., storage_options=...)` with `storage_options` arg is not supported for"
                f" `{type(self).__name__}` as `CheckpointIO` is not used: the DeepSpeed engine writes the folder."
            )
        if self._engine is None:
            raise RuntimeError(
                "The DeepSpeed strategy can save a checkpoint only once its engine exists: call it during or after"
                " `Trainer.fit`."
            )
        if self.zero_stage_3 and self.world_size > 1 and self.is_global_zero:
            rank_zero_warn(
                "When saving the DeepSpeed Stage 3 checkpoint, each worker will save a shard of the checkpoint within"
                " a directory. If a single file is required after training, convert it with DeepSpeed's"
                " `zero_to_fp32.py` script, which the folder contains."
            )
        from ember.checkpoint import sharded

        client_state = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states")}

        def write(folder: str) -> None:
            self._engine.save_checkpoint(
                folder,
                client_state=client_state,
                tag="checkpoint",
                exclude_frozen_parameters=self.exclude_frozen_parameters,
            )

        sharded.save_folder(self, filepath, write)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Load a folder written by the engine (weights and, for ``fit``, optimizer states) into the engine.

        Returns the rest of the checkpoint (epoch, loops, callbacks, schedulers, ...), with the weights
        the module now holds as ``"state_dict"``.
        """
        if self.load_full_weights and self.zero_stage_3:
            return super().load_checkpoint(self.broadcast(checkpoint_path), weights_only=weights_only)
        path = os.fspath(checkpoint_path)
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"The provided path is not a valid DeepSpeed checkpoint: {path}. DeepSpeed checkpoints are folders"
                " written by `DeepSpeedStrategy`; to load the weights of a single checkpoint file under ZeRO stage 3,"
                " use `DeepSpeedStrategy(load_full_weights=True)`."
            )
        if self._engine is None:
            raise RuntimeError("The DeepSpeed engine must exist before a checkpoint is loaded into it.")
        module = self._lightning_module
        # all ranks: each reads its own shards
        _, client_state = self._engine.load_checkpoint(
            path,
            load_optimizer_states=self._fitting(),
            load_lr_scheduler_states=False,
            load_module_strict=module.strict_loading,
        )
        if client_state is None:
            raise MisconfigurationException(
                "DeepSpeed was unable to load the checkpoint. Ensure you passed in a DeepSpeed compatible checkpoint "
                "or a single checkpoint file with `Trainer(strategy=DeepSpeedStrategy(load_full_weights=True))`."
            )
        return {**client_state, "state_dict": module.state_dict()}

    def _load_module_weights(self, state_dict: dict[str, Any], strict: bool = True) -> Any:
        """Nothing to do: the engine loaded the weights in ``load_checkpoint`` (except ``load_full_weights``)."""
        if self.load_full_weights and self.zero_stage_3:
            return self._load_full_weights(state_dict, strict)
        return torch.nn.modules.module._IncompatibleKeys([], [])

    def _load_full_weights(self, state_dict: dict[str, Any], strict: bool) -> Any:
        deepspeed = import_deepspeed()
        module = self._lightning_module
        # all ranks: the shards are gathered, rank 0 copies the weights in, and they are partitioned again
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=0):
            if self.is_global_zero:
                return module.load_state_dict(state_dict, strict=strict)
        return torch.nn.modules.module._IncompatibleKeys([], [])

    def _load_optimizer_state(self, optimizer: Optimizer, state: dict[str, Any]) -> None:
        """Nothing to do: the engine restores its optimizer in ``load_checkpoint``."""


def _base_hook(name: str) -> Any:
    from ember.core.module import LightningModule

    return getattr(LightningModule, name)


def _training_batch_size(trainer: Any) -> int:
    """The batch size of the training loader, for DeepSpeed's throughput numbers (1 when it has none)."""
    from ember.trainer.dataloaders import _requested

    run = trainer._run
    loader = run.train_source if run.train_source is not None else _requested(trainer, run, "train")[0]
    batch_sampler = getattr(loader, "batch_sampler", None)
    batch_size = getattr(batch_sampler, "batch_size", None)
    return batch_size if isinstance(batch_size, int) else 1


__all__ = ["DeepSpeedStrategy"]


lightning_style_annotations(DeepSpeedStrategy)  # Lightning's `typing` forms in the signature
