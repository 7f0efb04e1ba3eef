"""``ModelParallelStrategy``: tensor parallelism and FSDP2 that the user applies over a 2-D device mesh.

The strategy starts the processes, joins them in a process group and builds a device mesh of
shape ``(data_parallel_size, tensor_parallel_size)`` named ``("data_parallel", "tensor_parallel")``.
The module finds it in ``self.device_mesh`` inside ``configure_model`` and parallelizes itself:
``parallelize_module`` over the ``"tensor_parallel"`` mesh, ``fully_shard`` over the
``"data_parallel"`` one. The strategy wraps nothing; it gives each data-parallel group its own
share of the data and saves and loads the sliced weights (``ShardedStrategy``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from torch import nn

from ember.distributed.parallel import default_pg_timeout, ember_option
from ember.distributed.sharded import ShardedStrategy
from ember.utilities.signature_utils import lightning_style_annotations

_MESH_DIMENSIONS = ("data_parallel", "tensor_parallel")
_SUPPORTED_PRECISIONS = ("32-true", "bf16-mixed", "bf16-true", "16-true")


def _check_size(name: str, size: Any) -> None:
    if size == "auto" or (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        return
    raise ValueError(f"`ModelParallelStrategy({name}={size!r})` is not supported: pass 'auto' or a positive int.")


class ModelParallelStrategy(ShardedStrategy):
    """Tensor parallelism and fully sharded data parallelism (FSDP2), applied by the module on a 2-D mesh.

    Args:
        data_parallel_size: the number of model replicas, each fed its own batches; ``"auto"``: the
            number of nodes.
        tensor_parallel_size: the number of processes that share one replica's layers; ``"auto"``:
            the number of processes per node. The two sizes multiplied must equal the world size.
        save_distributed_checkpoint: ``True`` (default): each checkpoint is a folder in which every
            rank writes its slices of the weights and optimizer states. ``False``: they are gathered on
            rank 0 into one ordinary file, which ``load_from_checkpoint`` reads into a plain module.
        process_group_backend: ``"nccl"``, ``"gloo"``, ...; by default NCCL on CUDA, else gloo.
        timeout: how long a collective waits for the other ranks.
        start_method: how the processes start (Ember's addition): ``"popen"`` (re-run the script, the
            default), ``"spawn"``, ``"fork"`` or ``"forkserver"``.
        preemption_check_interval: every how many batches the ranks agree on a preemption signal.

    Example::

        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        class Model(LightningModule):
            def configure_model(self):
                tp_mesh, dp_mesh = self.device_mesh["tensor_parallel"], self.device_mesh["data_parallel"]
                parallelize_module(self.mlp, tp_mesh, {"up": ColwiseParallel(), "down": RowwiseParallel()})
                fully_shard(self.mlp, mesh=dp_mesh)

        strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=4)
        trainer = Trainer(accelerator="cuda", devices=4, num_nodes=2, strategy=strategy)
    """

    strategy_name = "model_parallel"
    sharded_model_key = "state_dict"  # Lightning's key for the model in this strategy's sharded folders

    def __init__(
        self,
        data_parallel_size: int | str = "auto",
        tensor_parallel_size: int | str = "auto",
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        **kwargs: Any,
    ) -> None:
        # Ember's own options come through `kwargs`, so that a config saved by the command line reads back on
        # Lightning (every signature argument is written to it)
        start_method = ember_option(kwargs, "start_method", "popen")
        preemption_check_interval = ember_option(kwargs, "preemption_check_interval", 10)
        if kwargs:
            raise TypeError(f"`ModelParallelStrategy` got unexpected arguments: {sorted(kwargs)}.")
        _check_size("data_parallel_size", data_parallel_size)
        _check_size("tensor_parallel_size", tensor_parallel_size)
        super().__init__(
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
            preemption_check_interval=preemption_check_interval,
        )
        self._data_parallel_size = data_parallel_size
        self._tensor_parallel_size = tensor_parallel_size
        self._save_distributed_checkpoint = save_distributed_checkpoint
        self._device_mesh: Any = None

    @property
    def device_mesh(self) -> Any:
        """The ``("data_parallel", "tensor_parallel")`` ``DeviceMesh``, once the processes have joined."""
        if self._device_mesh is None:
            raise RuntimeError(
                "Accessing the device mesh before processes have initialized is not allowed: it exists once the"
                " processes have joined. Read it in `configure_model()` or later (`self.device_mesh` in the"
                " LightningModule)."
            )
        return self._device_mesh

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int]:
        """One share of the data per data-parallel rank: the processes of a tensor-parallel group read the same batches."""
        data_parallel = self.device_mesh["data_parallel"]
        return {"num_replicas": data_parallel.size(), "rank": data_parallel.get_local_rank()}

    def _mesh_shape(self) -> tuple[int, int]:
        """``(data_parallel_size, tensor_parallel_size)`` with ``"auto"`` resolved: nodes x processes per node."""
        data_parallel = self.num_nodes if self._data_parallel_size == "auto" else int(self._data_parallel_size)
        tensor_parallel = (
            self.num_processes if self._tensor_parallel_size == "auto" else int(self._tensor_parallel_size)
        )
        if data_parallel * tensor_parallel != self.world_size:
            raise RuntimeError(
                f"The sizes `data_parallel_size={data_parallel}` and `tensor_parallel_size={tensor_parallel}`"
                f" multiplied should equal the world size ({self.world_size}): {data_parallel} x {tensor_parallel} ="
                f" {data_parallel * tensor_parallel}. Choose sizes whose product is the number of processes"
                " (`devices` x `num_nodes`), or leave them 'auto'."
            )
        return data_parallel, tensor_parallel

    def _check_module_and_precision(self) -> None:
        from ember.utilities.model_helpers import is_overridden

        if not is_overridden("configure_model", self._lightning_module):
            raise TypeError(
                "When using the ModelParallelStrategy, you are required to override the `configure_model()` hook in"
                " the LightningModule and apply parallelization there (`parallelize_module` and `fully_shard` over"
                " `self.device_mesh`)."
            )
        precision = getattr(self.precision_plugin, "precision", None)
        if precision is not None and precision not in _SUPPORTED_PRECISIONS:
            raise ValueError(
                f"The `ModelParallelStrategy` does not support `Trainer(..., precision={precision!r})`. Choose a"
                f" different precision among: {', '.join(_SUPPORTED_PRECISIONS)}."
            )

    def setup_environment(self) -> None:
        """Check the module and the sizes, join the process group, then build the mesh for ``configure_model``."""
        shape = self._mesh_shape()  # first, as Lightning: the sizes are checked before the module
        self._check_module_and_precision()
        super().setup_environment()
        from torch.distributed.device_mesh import init_device_mesh

        # all ranks: the mesh creates one process group per row and per column
        self._device_mesh = init_device_mesh(self.root_device.type, shape, mesh_dim_names=_MESH_DIMENSIONS)
        self._lightning_module._device_mesh = self._device_mesh

    def setup_module(self, module: nn.Module) -> nn.Module:
        """The module as ``configure_model`` parallelized it, on this rank's device; nothing is wrapped."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        if any(isinstance(layer, FullyShardedDataParallel) for layer in module.modules()):
            raise TypeError(
                "Found modules that are wrapped with `torch.distributed.fsdp.FullyShardedDataParallel` (FSDP1): the"
                " `ModelParallelStrategy` supports only FSDP2. Shard with `torch.distributed.fsdp.fully_shard` in"
                " `configure_model()` instead."
            )
        return module.to(self.root_device)

    # ---- checkpoints (ShardedStrategy) -----------------------------------------------------------
    def _module_is_sharded(self) -> bool:
        from torch.distributed.tensor import DTensor

        module = self._lightning_module
        return module is not None and any(isinstance(p, DTensor) for p in module.parameters())

    def _saves_shards(self) -> bool:
        return bool(self._save_distributed_checkpoint)

    def _full_checkpoint_option(self) -> str:
        return "save_distributed_checkpoint=False"


lightning_style_annotations(ModelParallelStrategy)  # Lightning's `typing` forms in the signature
