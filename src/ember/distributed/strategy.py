"""``Strategy``: how the model is placed, wrapped and synchronised. One device is the base case."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer


class Strategy:
    """The operations the trainer and users call; a single process implements them trivially.

    Example::

        trainer.strategy.barrier()
        value = trainer.strategy.broadcast(value, src=0)
    """

    strategy_name = "single_device"

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self._root_device = torch.device(device)
        self._lightning_module: Any = None
        self._model: nn.Module | None = None
        self.precision_plugin: Any = None
        self.cluster_environment: Any = None

    # ---- topology ------------------------------------------------------------------------
    @property
    def root_device(self) -> torch.device:
        return self._root_device

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def node_rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    @property
    def num_nodes(self) -> int:
        return 1

    @property
    def num_processes(self) -> int:
        return 1

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def is_distributed(self) -> bool:
        return False

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int] | None:
        return None

    @property
    def lightning_module(self) -> Any:
        return self._lightning_module

    @property
    def model(self) -> nn.Module | None:
        """The module the loop calls: the LightningModule, or its distributed wrapper."""
        return self._model if self._model is not None else self._lightning_module

    @model.setter
    def model(self, model: nn.Module) -> None:
        self._model = model

    # ---- lifecycle -----------------------------------------------------------------------
    def connect(self, module: Any) -> None:
        self._lightning_module = module
        self._model = module

    def setup_environment(self) -> None:
        """Join or create the process group (nothing on one device)."""

    @contextlib.contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
        """New tensors are created on ``root_device``; with ``empty_init``, weights are left uninitialised."""
        from ember.utilities.init import EmptyInit

        with EmptyInit(enabled=bool(empty_init)), self.root_device:
            yield

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move to the device and wrap (e.g. in DDP) for training."""
        return module.to(self.root_device)

    def model_to_device(self) -> None:
        self._lightning_module.to(self.root_device)

    def training_step_fn(self, module: Any) -> Callable[..., Any]:
        """The callable the loop uses for ``training_step`` (through the DDP wrapper when there is one)."""
        return module.training_step

    def eval_step_fn(self, module: Any, name: str) -> Callable[..., Any]:
        return getattr(module, name)

    def pre_backward(self, loss: Tensor) -> None:
        """Called before ``manual_backward`` runs backward (DDP prepares its gradient reducer)."""

    def block_backward_sync(self) -> contextlib.AbstractContextManager:
        """Skip gradient synchronisation while accumulating (DDP ``no_sync``)."""
        return contextlib.nullcontext()

    def teardown(self) -> None:
        """Move the model back to the CPU and release what the strategy holds."""
        if self._lightning_module is not None and self.root_device.type != "cpu":
            self._lightning_module.cpu()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # ---- collectives (identity on one process) --------------------------------------------
    def barrier(self, name: str | None = None) -> None:
        """All ranks wait here for each other."""

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every rank."""
        return obj

    def reduce(self, tensor: Tensor | Any, group: Any | None = None, reduce_op: str | None = "mean") -> Tensor | Any:
        """Reduce ``tensor`` over all ranks with ``reduce_op`` ("mean", "sum", "max", "min")."""
        return tensor

    def all_gather(self, tensor: Tensor, group: Any | None = None, sync_grads: bool = False) -> Tensor:
        """Stack ``tensor`` from every rank along a new first dimension."""
        return tensor.unsqueeze(0) if self.is_distributed else tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True on every rank if all (or, with ``all=False``, any) ranks decided True."""
        return decision

    @property
    def sync_fn(self) -> Callable[[Tensor, str, Any], Tensor] | None:
        """How ``self.log(..., sync_dist=True)`` reduces across ranks (None on one process)."""
        return None

    # ---- checkpoint state --------------------------------------------------------------
    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The module's weights as the checkpoint stores them."""
        return self._lightning_module.state_dict()

    def full_module_state_dict(self) -> dict[str, Any]:
        """The module's complete weights (at least on rank 0), e.g. to hand them to the launching process.

        Sharding strategies gather them here, so every rank must call it.
        """
        return self.lightning_module_state_dict()

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_model_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> Any:
        return self._lightning_module.load_state_dict(state_dict, strict=strict)

    def load_optimizer_state_dict(self, optimizer: Optimizer, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            from ember.checkpoint.sharded import ShardedOptimizerState

            if isinstance(state, ShardedOptimizerState):
                # all ranks: each reads its part of a sharded checkpoint's optimizer state
                return state.load_into(self._lightning_module, optimizer)
        optimizer.load_state_dict(state)
        device = self.root_device
        for param_state in optimizer.state.values():
            for key, value in param_state.items():
                if isinstance(value, Tensor) and key != "step":
                    param_state[key] = value.to(device)

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to ``filepath``. Called on every rank; here rank 0 writes one file atomically."""
        if self.is_global_zero:
            from ember.checkpoint import atomic_save

            atomic_save(checkpoint, filepath, storage_options=storage_options)

    def on_exception(self, exception: BaseException) -> None:
        """Called when the run fails, before teardown."""


class SingleDeviceStrategy(Strategy):
    """Train on one device: ``SingleDeviceStrategy(device="cuda:0")``."""

    strategy_name = "single_device"

    def __init__(
        self,
        device: torch.device | str = "cpu",
        accelerator: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
    ) -> None:
        super().__init__(device)
