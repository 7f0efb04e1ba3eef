"""``FSDPStrategy`` on FSDP2 (``torch.distributed.fsdp.fully_shard``): parameters, gradients and
optimizer state sharded across ranks, gathered layer by layer when needed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import torch
from torch import nn

from ember.distributed.ddp import _StepForward
from ember.distributed.parallel import default_pg_timeout, ember_option
from ember.distributed.sharded import ShardedStrategy
from ember.utilities.rank_zero import rank_zero_deprecation
from ember.utilities.signature_utils import lightning_style_annotations

# sharding_strategy -> (reshard the parameters after forward, the mesh's layout): "flat" shards over all
# ranks; "hybrid" shards within a node and replicates across nodes (HSDP, on a (replicate, shard) mesh);
# "replicate" keeps a full copy on every rank, as DDP
_SHARDING = {
    "FULL_SHARD": (True, "flat"),
    "SHARD_GRAD_OP": (False, "flat"),
    "HYBRID_SHARD": (True, "hybrid"),
    "_HYBRID_SHARD_ZERO2": (False, "hybrid"),
    "NO_SHARD": (False, "replicate"),
}
_MESH_DIMENSIONS = ("replicate", "shard")


def _check_mesh_argument(device_mesh: Any) -> None:
    """``device_mesh`` is None, a 2-D ``DeviceMesh`` or a ``(replicas, shards)`` tuple of positive ints."""
    if device_mesh is None or (hasattr(device_mesh, "mesh_dim_names") and device_mesh.ndim == 2):
        return
    pair = isinstance(device_mesh, (tuple, list)) and len(device_mesh) == 2
    if pair and all(type(size) is int and size > 0 for size in device_mesh):
        return
    raise ValueError(
        f"`FSDPStrategy(device_mesh={device_mesh!r})` is not supported: pass `(replicas, shards)`, two positive ints"
        " whose product is the number of processes (e.g. `(2, 8)` on 2 nodes of 8 devices), or a 2-D `DeviceMesh`."
    )


def _as_classes(policy: Any) -> tuple[type, ...]:
    if policy is None:
        return ()
    if isinstance(policy, type):
        return (policy,)
    if isinstance(policy, (set, list, tuple, frozenset)):
        return tuple(policy)
    raise TypeError(
        f"The wrapping policy {policy!r} is not supported: pass a set of layer classes, e.g. {{nn.TransformerEncoderLayer}}."
    )


class FSDPStrategy(ShardedStrategy):
    """Fully sharded data parallel training.

    ``auto_wrap_policy`` and ``activation_checkpointing_policy`` are sets of layer classes: each
    such layer is sharded (and re-computed in backward) on its own.

    ``sharding_strategy``: ``"FULL_SHARD"`` (default) and ``"SHARD_GRAD_OP"`` (parameters stay gathered
    from forward to backward) shard over every rank; ``"HYBRID_SHARD"`` and ``"_HYBRID_SHARD_ZERO2"``
    shard within a node and replicate across nodes; ``"NO_SHARD"`` replicates everything, as DDP.
    ``device_mesh=(replicas, shards)`` (or a 2-D ``DeviceMesh``) sets the hybrid layout itself: the
    sizes multiply to the number of processes, e.g. ``(2, 8)`` for two copies, each sharded over 8.

    ``state_dict_type`` chooses the checkpoint format:

    * ``"full"`` (default): the weights and optimizer states are gathered on rank 0 into one
      ordinary ``.ckpt`` file that loads anywhere.
    * ``"sharded"``: every rank writes its own shards, with ``torch.distributed.checkpoint``, into a
      folder named like the file would be (``epoch=0-step=8.ckpt/``: ``__0_0.distcp``,
      ``__1_0.distcp``, ..., ``.metadata``), and rank 0 adds ``meta.pt`` with everything else
      (epoch, step, loops, callbacks, hyperparameters, schedulers). No rank ever holds the full
      state, and the folder appears in one atomic step once complete. ``fit(ckpt_path=<folder>)``,
      ``"last"`` and ``"best"`` resume from it on any number of ranks, and
      ``LightningModule.load_from_checkpoint(<folder>)`` loads it in a single process.

    Either format is read whatever ``state_dict_type`` is set to.

    Example::

        strategy = FSDPStrategy(auto_wrap_policy={nn.TransformerEncoderLayer},
                                activation_checkpointing_policy={nn.TransformerEncoderLayer},
                                state_dict_type="sharded")
        trainer = Trainer(accelerator="cuda", devices=8, strategy=strategy, precision="bf16-mixed",
                          callbacks=[ModelCheckpoint(save_last=True)])
        trainer.fit(model)                     # writes checkpoints/epoch=0-step=100.ckpt/, last.ckpt/
        trainer.fit(model, ckpt_path="last")   # resumes from the folder
    """

    strategy_name = "fsdp"
    setup_optimizers_after_module = True  # FSDP2 replaces the parameters with sharded ones

    def __init__(
        self,
        accelerator: Any = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        cpu_offload: bool | None = None,
        mixed_precision: Any = None,
        auto_wrap_policy: Any = None,
        activation_checkpointing: Any = None,
        activation_checkpointing_policy: Any = None,
        sharding_strategy: str = "FULL_SHARD",
        state_dict_type: str = "full",
        device_mesh: Any = None,
        **kwargs: Any,
    ) -> None:
        # Ember's own options come through `kwargs`, so that a config saved by the command line reads back on
        # Lightning (every signature argument is written to it)
        preemption_check_interval = ember_option(kwargs, "preemption_check_interval", 10)
        start_method = ember_option(kwargs, "start_method", "popen")
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
            preemption_check_interval=preemption_check_interval,
        )
        key = str(sharding_strategy).split(".")[-1]
        key = key if key == "_HYBRID_SHARD_ZERO2" else key.upper()
        if key not in _SHARDING:
            raise ValueError(
                f"`sharding_strategy={sharding_strategy!r}` is not supported: use one of {', '.join(map(repr, _SHARDING))}."
            )
        if activation_checkpointing is not None:
            if activation_checkpointing_policy is not None:
                raise ValueError(
                    "You cannot set both `activation_checkpointing` and `activation_checkpointing_policy`. Use the"
                    " latter."
                )
            activation_checkpointing_policy = set(_as_classes(activation_checkpointing))
            rank_zero_deprecation(
                f"`FSDPStrategy(activation_checkpointing={activation_checkpointing})` is deprecated, use"
                f" `FSDPStrategy(activation_checkpointing_policy={activation_checkpointing_policy})` instead."
            )
        _check_mesh_argument(device_mesh)
        if state_dict_type not in ("full", "sharded"):
            raise ValueError(
                f"`FSDPStrategy(state_dict_type={state_dict_type!r})` is not supported: use 'full' (one file, gathered"
                " on rank 0) or 'sharded' (a folder of every rank's shards)."
            )
        self.cpu_offload = bool(cpu_offload)
        self.mixed_precision = mixed_precision
        self._wrap_classes = _as_classes(auto_wrap_policy)
        self._checkpoint_classes = _as_classes(activation_checkpointing_policy)
        self.sharding_strategy = key
        self._reshard_after_forward, self._layout = _SHARDING[key]
        # a shape until `setup_environment` builds the mesh (a config file gives a list)
        self.device_mesh = tuple(device_mesh) if isinstance(device_mesh, list) else device_mesh
        self.state_dict_type = state_dict_type
        self.kwargs = kwargs
        self._wrapper: nn.Module | None = None

    def _policy(self) -> Any:
        from torch.distributed.fsdp import MixedPrecisionPolicy

        if self.mixed_precision is not None:
            return self.mixed_precision
        precision = getattr(self.precision_plugin, "precision", None) or getattr(self.precision_plugin, "name", None)
        dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
        return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype else MixedPrecisionPolicy()

    def _configure(self, accelerator: str, devices: list[int], num_nodes: int, layer_sync: Any = None) -> None:
        super()._configure(accelerator, devices, num_nodes, layer_sync)
        self._mesh_shape()  # a mesh that does not fit fails at `Trainer(...)`, before any process starts

    def _mesh_shape(self) -> tuple[int, int] | None:
        """The (replicate, shard) sizes to build; None: fully_shard's flat mesh, or a ``DeviceMesh`` given."""
        mesh = self.device_mesh
        if mesh is not None and not isinstance(mesh, tuple):
            return None  # a DeviceMesh, built by the user
        if mesh is None and self._layout == "flat":
            return None
        if mesh is None:
            per_node = self.world_size // self.num_nodes if self._layout == "hybrid" else 1
            return (self.world_size // per_node, per_node)
        if mesh[0] * mesh[1] != self.world_size:
            raise ValueError(
                f"`FSDPStrategy(device_mesh={mesh})` holds {mesh[0] * mesh[1]} devices, but the run has"
                f" {self.world_size} processes: the sizes must multiply to the number of processes, e.g."
                f" `device_mesh=({self.num_nodes}, {self.world_size // self.num_nodes})` to shard within each node."
            )
        return mesh

    def setup_environment(self) -> None:
        """Join the process group, then build the (replicate, shard) mesh a hybrid layout shards over."""
        super().setup_environment()
        shape = self._mesh_shape()
        if shape is not None:
            from torch.distributed.device_mesh import init_device_mesh

            # all ranks: the mesh creates one process group per row and per column
            self.device_mesh = init_device_mesh(self.root_device.type, shape, mesh_dim_names=_MESH_DIMENSIONS)

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Shard the chosen layers, then the rest; wrap ``training_step`` so the root gathers its parameters."""
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

        module = module.to(self.root_device)
        trainer = getattr(module, "_trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return module if self._wrapper is None else self._wrapper
        if self._checkpoint_classes:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

            classes = self._checkpoint_classes
            apply_activation_checkpointing(module, check_fn=lambda m: isinstance(m, classes))
        options = {
            "reshard_after_forward": self._reshard_after_forward,
            "mp_policy": self._policy(),
            "offload_policy": CPUOffloadPolicy() if self.cpu_offload else OffloadPolicy(),
            "mesh": self.device_mesh,
        }
        for layer in module.modules():
            if self._wrap_classes and isinstance(layer, self._wrap_classes):
                fully_shard(layer, **options)
        wrapper = cast(nn.Module, fully_shard(_StepForward(module), **options))  # an nn.Module, sharded
        self._wrapper = wrapper
        return wrapper

    def training_step_fn(self, module: Any) -> Callable[..., Any]:
        return functools.partial(self._wrapper, "training_step") if self._wrapper is not None else module.training_step

    def eval_step_fn(self, module: Any, name: str) -> Callable[..., Any]:
        # the parameters stay sharded after fit: calls must pass through the root to gather them
        return functools.partial(self._wrapper, name) if self._wrapper is not None else getattr(module, name)

    # ---- checkpoints (ShardedStrategy): full (gathered on rank 0) or sharded (every rank its own part) --
    def _module_is_sharded(self) -> bool:
        return self._wrapper is not None

    def _saves_shards(self) -> bool:
        return self.state_dict_type == "sharded"

    def _full_checkpoint_option(self) -> str:
        return "state_dict_type='full'"


lightning_style_annotations(FSDPStrategy)  # Lightning's `typing` forms in the signature
