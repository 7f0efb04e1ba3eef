"""``Strategy``: how the model is placed, wrapped and synchronised. One device is the base case."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ember.checkpoint.async_io import wait_for_pending_writes
from ember.checkpoint.io import CheckpointIO, TorchCheckpointIO, _WrappingCheckpointIO, own_checkpoint_io
from ember.distributed.processes import runs_distributed
from ember.utilities.argument_checks import check_type
from ember.utilities.registry import _StrategyRegistry
from ember.utilities.signature_utils import lightning_style_annotations


class Strategy:
    """The operations the trainer and users call; a single process implements them trivially.

    Example::

        trainer.strategy.barrier()
        value = trainer.strategy.broadcast(value, src=0)
    """

    strategy_name = "single_device"
    # whether `configure_optimizers` runs after `setup_module` (FSDP2 replaces the parameters with sharded ones)
    setup_optimizers_after_module = False

    def __init__(self, accelerator: Any = None, checkpoint_io: Any = None, precision_plugin: Any = None) -> None:
        """Lightning's arguments, so that a strategy of the program's own written on ``Strategy`` calls
        ``super().__init__(accelerator=..., checkpoint_io=..., precision_plugin=...)`` as it does in Lightning:
        the Trainer takes the accelerator and the precision plugin given here, and saves through the
        checkpoint IO (``TorchCheckpointIO`` when None)."""
        self._root_device = torch.device("cpu")
        self._lightning_module: Any = None
        self._model: nn.Module | None = None
        self.cluster_environment: Any = None
        self._checkpoint_io: CheckpointIO | None = None
        self.checkpoint_io = checkpoint_io
        self.precision_plugin: Any = precision_plugin
        self._given_accelerator = accelerator  # an `Accelerator` or its name, which the Trainer takes
        self.accelerator = accelerator  # the Trainer's `Accelerator` object once it takes the strategy
        self._in_call = False  # between connect() and teardown(): a trainer call will wait for queued writes

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
    def launcher(self) -> Any:
        """What starts this strategy's processes; ``None`` for one process, as in Lightning."""
        return None

    @property
    def num_nodes(self) -> int:
        return 1

    @property
    def num_processes(self) -> int:
        return 1

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    _in_processes = False  # the module runs in several processes (Ember's parallel strategies)

    @property
    def is_distributed(self) -> bool:
        return self._in_processes

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
    def connect(self, model: Any) -> None:
        """Take ``model`` (the LightningModule) as the one this strategy runs."""
        self._lightning_module = model
        self._model = model

    def setup(self, trainer: Any) -> None:
        """Ready the call on this strategy's devices, once the module is built (and restored, unless
        ``restore_checkpoint_after_setup``): the accelerator, the module on ``root_device`` and wrapped
        (``setup_module``), the optimizers when fitting (``setup_optimizers``, before the wrapper or after
        it where the strategy shards the parameters), then the precision plugin's ``connect``.

        As in Lightning, a strategy that needs more overrides it and calls ``super().setup(trainer)``.
        """
        from ember.trainer.states import TrainerFn

        fitting = trainer.state.fn == TrainerFn.FITTING
        trainer.accelerator.setup(trainer)
        module = self.lightning_module
        self.model_to_device()  # a strategy of the program's own may override it, as in Lightning
        if fitting and not self.setup_optimizers_after_module:
            self.setup_optimizers(trainer)
        self.model = self.setup_module(module)
        if fitting and self.setup_optimizers_after_module:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()
        if fitting and self.root_device.type != "cpu":
            # an optimizer the module keeps across calls holds its states where the last call's teardown left them
            optimizers_to_device(trainer.optimizers, self.root_device)

    def setup_precision_plugin(self) -> None:
        """Let the precision plugin adjust the model, the optimizers and the scheduler configs (its ``connect``),
        last in ``setup``, as in Lightning. A plugin that keeps the base class's ``connect`` changes nothing."""
        from ember.precision.precision import Precision

        precision = self.precision_plugin
        if type(precision).connect is not Precision.connect:
            self.model, self.optimizers, self.lr_scheduler_configs = precision.connect(
                self.model, self.optimizers, self.lr_scheduler_configs
            )

    def setup_optimizers(self, trainer: Any) -> None:
        """Create the optimizers and scheduler configs from the module's ``configure_optimizers``.

        Called once per ``fit``, before ``setup_module`` (after it for strategies that shard the
        parameters). A strategy that builds its own optimizers overrides this and sets
        ``self.optimizers`` and ``self.lr_scheduler_configs``, as in Lightning.
        """
        from ember.trainer.lifecycle import setup_optimizers

        setup_optimizers(trainer, trainer._run, self.lightning_module)

    @property
    def optimizers(self) -> list[Optimizer]:
        """The optimizers of the trainer running this strategy (``trainer.optimizers``); before a trainer runs
        it, the list last set here (``fit`` sets the trainer's own in ``setup_optimizers``)."""
        trainer = self._trainer()
        return trainer.optimizers if trainer is not None else self.__dict__.get("_unattached_optimizers", [])

    @optimizers.setter
    def optimizers(self, optimizers: list[Optimizer]) -> None:
        trainer = self._trainer()
        if trainer is None:
            self.__dict__["_unattached_optimizers"] = list(optimizers)
        else:
            trainer.optimizers = optimizers

    @property
    def lr_scheduler_configs(self) -> list[Any]:
        """The scheduler configs of the trainer running this strategy (``trainer.lr_scheduler_configs``); before
        a trainer runs it, the list last set here."""
        trainer = self._trainer()
        return trainer.lr_scheduler_configs if trainer is not None else self.__dict__.get("_unattached_configs", [])

    @lr_scheduler_configs.setter
    def lr_scheduler_configs(self, configs: list[Any]) -> None:
        trainer = self._trainer()
        if trainer is None:
            self.__dict__["_unattached_configs"] = list(configs)
        else:
            trainer._lr_scheduler_configs = configs

    @property
    def _lightning_optimizers(self) -> list[Any]:
        """The ``LightningOptimizer`` around each optimizer (what ``self.optimizers()`` returns), where Lightning's
        strategies keep them."""
        trainer = self._trainer()
        return trainer._lightning_optimizers if trainer is not None else []

    def _trainer(self) -> Any:
        module = self._lightning_module
        return getattr(module, "_trainer", None) if module is not None else None

    def setup_environment(self) -> None:
        """Join or create the process group (nothing on one device)."""

    @contextlib.contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
        """New tensors are created on ``root_device``, in the precision plugin's dtype; with ``empty_init``,
        weights are left uninitialised. A strategy that overrides it decides all three, as in Lightning."""
        from ember.utilities.init import EmptyInit

        plugin = self.precision_plugin
        dtype = plugin.tensor_init_context() if plugin is not None else contextlib.nullcontext()
        with EmptyInit(enabled=bool(empty_init)), self.root_device, dtype:
            yield

    @contextlib.contextmanager
    def model_sharded_context(self) -> Iterator[None]:
        """Layers created inside are sharded as they are built (DeepSpeed ZeRO-3 overrides it); nothing here."""
        yield

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Wrap the module for training (e.g. in DDP); ``model_to_device`` has moved it already. It is not moved
        again: the optimizers may hold its parameters by now, which a move replaces where torch's
        ``overwrite_module_params_on_conversion`` is on."""
        return module

    def model_to_device(self) -> None:
        self._lightning_module.to(self.root_device)

    def training_step_fn(self, module: Any) -> Callable[..., Any]:
        """The callable the loop uses for ``training_step`` (through the DDP wrapper when there is one)."""
        return module.training_step

    def eval_step_fn(self, module: Any, name: str) -> Callable[..., Any]:
        return getattr(module, name)

    # Lightning's step methods. Ember's loop calls the module's steps directly (``training_step_fn``,
    # ``eval_step_fn``); a strategy class of the program's own that overrides one of these, Lightning's way,
    # has it called for every batch instead (``step_fn``), and ``super()`` reaches the module.
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """One training step: the module's ``training_step``, through the strategy's wrapper (DDP)."""
        return self.training_step_fn(self.lightning_module)(*args, **kwargs)

    def post_training_step(self) -> None:
        """Called after each ``training_step`` (when a strategy of the program's own overrides it)."""

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """One validation step: the module's ``validation_step``, through the strategy's wrapper."""
        return self.eval_step_fn(self.lightning_module, "validation_step")(*args, **kwargs)

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """One test step: the module's ``test_step``, through the strategy's wrapper."""
        return self.eval_step_fn(self.lightning_module, "test_step")(*args, **kwargs)

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        """One prediction step: the module's ``predict_step``, through the strategy's wrapper."""
        return self.eval_step_fn(self.lightning_module, "predict_step")(*args, **kwargs)

    # what `optimizer_step` runs between the closure and the step (the hooks, clipping), set by the loop
    _before_optimizer_step: Callable[[], None] | None = None

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        """Register the names this class stands for in ``strategy_registry`` (a ``StrategyRegistry``), each with
        its arguments, as Lightning's strategy classes do; the base class has none."""

    def steps_through_optimizer_step(self) -> bool:
        """Whether the loop must step the optimizers through this strategy's ``optimizer_step``: true where
        the strategy adds work to each step (DDP's post-local SGD averaging); otherwise the loop steps through
        the precision plugin directly. Asked when a training epoch starts, after ``setup``."""
        return False

    def optimizer_step(self, optimizer: Optimizer, closure: Callable[[], Any], model: Any = None, **kwargs: Any) -> Any:
        """Step ``optimizer`` through the precision plugin's ``optimizer_step``, as Lightning does: ``closure``
        (forward and backward), the hooks before a step and gradient clipping, then the step. ``model`` is the
        LightningModule (when None, this strategy's); ``kwargs`` go to the optimizer's ``step``."""
        model = model if model is not None else self.lightning_module
        return self.precision_plugin.optimizer_step(optimizer, model=model, closure=closure, **kwargs)

    def process_dataloader(self, dataloader: Any) -> Any:
        """Each dataloader once the trainer prepared it (samplers put in): a strategy may wrap it."""
        return dataloader

    # Lightning's strategy hooks, called after the callbacks' and the module's of the same name when a
    # strategy of the program's own overrides them (Ember's own strategies need none)
    def on_train_start(self) -> None:
        """Training starts."""

    def on_train_end(self) -> None:
        """Training ends."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """A training batch starts."""

    def on_validation_start(self) -> None:
        """A validation starts."""

    def on_validation_end(self) -> None:
        """A validation ends."""

    def on_test_start(self) -> None:
        """Testing starts."""

    def on_test_end(self) -> None:
        """Testing ends."""

    def on_predict_start(self) -> None:
        """Prediction starts."""

    def on_predict_end(self) -> None:
        """Prediction ends."""

    def batch_to_device(self, batch: Any, device: torch.device | None = None, dataloader_idx: int = 0) -> Any:
        """``batch`` on ``device`` (default: ``root_device``) through the ``transfer_batch_to_device`` and
        ``on_after_batch_transfer`` hooks, the datamodule's where it overrides them, as in Lightning.

        Example (in a callback)::

            batch = trainer.strategy.batch_to_device(batch)
        """
        from ember.utilities.apply_func import move_data_to_device

        device = device or self.root_device
        module = self.lightning_module
        if module is None:
            return move_data_to_device(batch, device)
        return module._apply_batch_transfer_handler(batch, device, dataloader_idx)  # as Lightning's strategies

    @property
    def handles_gradient_accumulation(self) -> bool:
        """Whether the strategy accumulates gradients itself (DeepSpeed): the trainer then steps on every batch."""
        return False

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        """Whether ``ckpt_path`` is read after ``setup_module`` (DeepSpeed's engine loads it) rather than before."""
        return False

    @property
    def lightning_restore_optimizer(self) -> bool:
        """Whether the trainer restores the optimizer states from the checkpoint (False: the strategy does)."""
        return True

    def precision_for(self, precision: str, device_type: str) -> Any:
        """The precision plugin that ``Trainer(precision=...)`` builds for this strategy (see ``ember.precision``)."""
        from ember.precision import create_precision

        return create_precision(precision, device_type)

    def pre_backward(self, closure_loss: Tensor) -> None:
        """Called before backward runs (in manual optimization, DDP prepares its gradient reducer)."""

    def post_backward(self, closure_loss: Tensor) -> None:
        """Called after backward has run."""

    def backward(self, closure_loss: Tensor, optimizer: Optimizer | None, *args: Any, **kwargs: Any) -> Tensor:
        """The backward of ``self.manual_backward(loss)``, as Lightning runs it: ``pre_backward``, the loss as the
        precision plugin scales it (fp16 AMP), the ``on_before_backward`` hooks (callbacks, then the module) with
        that loss, the backward (the precision plugin's engine for DeepSpeed, else the module's ``backward`` hook),
        the ``on_after_backward`` hooks, ``post_backward``. Returns the scaled loss, detached.

        ``args`` and ``kwargs`` (e.g. ``retain_graph=True``) go to that backward. Automatic optimization runs its
        backward in the training loop's step without this call, unless a strategy class of the program's own
        overrides this method, ``pre_backward`` or ``post_backward``: then every backward goes through it, as in
        Lightning.
        """
        self.pre_backward(closure_loss)
        precision, module = self.precision_plugin, self.lightning_module
        scaled = precision.pre_backward(closure_loss, module)
        precision.backward(scaled, module, optimizer, *args, **kwargs)
        released = precision.post_backward(scaled, module)
        self.post_backward(released)
        return released

    def block_backward_sync(self) -> contextlib.AbstractContextManager:
        """Skip gradient synchronisation while accumulating (DDP ``no_sync``)."""
        return contextlib.nullcontext()

    def teardown(self) -> None:
        """Finish the checkpoint plugin's work (queued writes), end the precision plugin's, move the model back to the CPU, release the rest.

        Raises the error of a checkpoint write that failed in the background, after the clean-up.
        """
        self._in_call = False
        try:
            self.checkpoint_io.teardown()
        finally:
            if self.precision_plugin is not None:
                self.precision_plugin.teardown()
            if self._lightning_module is not None and self.root_device.type != "cpu":
                # as Lightning: the device's memory is free once the call returns (the optimizer states too)
                optimizers_to_device(self.optimizers, torch.device("cpu"))
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
        return tensor.unsqueeze(0) if runs_distributed(self) else tensor

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

    @property
    def keeps_window_gradients(self) -> bool:
        """Whether a checkpoint keeps the gradients of an unfinished accumulation window
        (:meth:`accumulated_gradients`): a preemption then stops at once, not when the window closes."""
        return True

    def accumulated_gradients(self, all_ranks: bool) -> dict[str, Tensor] | None:
        """The gradients that the batches of an unfinished accumulation window have added up, by parameter name,
        on the CPU: a checkpoint written inside the window keeps them, so that the resumed run's next optimizer
        step is the uninterrupted run's. ``None`` where this strategy cannot give them for every rank
        (``all_ranks``: every rank calls this)."""
        return {
            name: parameter.grad.detach().to("cpu", copy=True)
            for name, parameter in self.lightning_module.named_parameters()
            if parameter.grad is not None
        }

    def load_accumulated_gradients(self, gradients: Mapping[str, Tensor]) -> None:
        """Gradients from :meth:`accumulated_gradients` into the module's parameters (and none into the others)."""
        for name, parameter in self.lightning_module.named_parameters():
            saved = gradients.get(name)
            parameter.grad = None if saved is None else saved.to(parameter.device, copy=True)

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> Any:
        """The checkpoint's ``state_dict`` into the module (Lightning's signature: the whole checkpoint)."""
        return self._load_module_weights(checkpoint["state_dict"], strict=strict)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        """The checkpoint's ``optimizer_states`` into ``self.optimizers``, in order (Lightning's signature)."""
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"]):
            self._load_optimizer_state(optimizer, state)

    def _load_module_weights(self, state_dict: dict[str, Any], strict: bool = True) -> Any:
        return self._lightning_module.load_state_dict(state_dict, strict=strict)

    def _load_optimizer_state(self, optimizer: Optimizer, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            from ember.checkpoint.sharded import ShardedOptimizerState

            if isinstance(state, ShardedOptimizerState):
                # all ranks: each reads its part of a sharded checkpoint's optimizer state
                return state.load_into(self._lightning_module, optimizer)
        optimizer.load_state_dict(state)
        optimizers_to_device([optimizer], self.root_device)

    @property
    def checkpoint_io(self) -> CheckpointIO:
        """The plugin that writes, reads and removes checkpoint files (``TorchCheckpointIO`` by default)."""
        if self._checkpoint_io is None:
            self._checkpoint_io = TorchCheckpointIO()
        elif isinstance(self._checkpoint_io, _WrappingCheckpointIO):
            self._checkpoint_io.checkpoint_io = TorchCheckpointIO()  # kept if it already wraps one
        return self._checkpoint_io

    @checkpoint_io.setter
    def checkpoint_io(self, io: CheckpointIO | None) -> None:
        self._checkpoint_io = own_checkpoint_io(io)

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to ``filepath``. Called on every rank; rank 0 writes through ``checkpoint_io``.

        Outside a trainer call (no teardown will wait for it), a queued write is waited for here.
        """
        if self.is_global_zero:
            self.checkpoint_io.save_checkpoint(checkpoint, filepath, storage_options=storage_options)
            if not self._in_call:
                wait_for_pending_writes(self)

    def remove_checkpoint(self, filepath: Any) -> None:
        """Delete the checkpoint at ``filepath`` (rank 0, through ``checkpoint_io``)."""
        if self.is_global_zero:
            self.checkpoint_io.remove_checkpoint(filepath)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Read the checkpoint at ``checkpoint_path`` through ``checkpoint_io`` (every rank reads it)."""
        return self.checkpoint_io.load_checkpoint(checkpoint_path, weights_only=weights_only)

    def on_exception(self, exception: BaseException) -> None:
        """Called when the run fails, before teardown."""


class SingleDeviceStrategy(Strategy):
    """Train on one device: ``SingleDeviceStrategy(device="cuda:0")``."""

    strategy_name = "single_device"

    @property
    def world_size(self) -> int:
        return self._world_size

    @world_size.setter
    def world_size(self, value: int) -> None:
        # Lightning's single-device strategy keeps it as a plain attribute, which programs may set
        self._world_size = value

    def __init__(
        self,
        device: torch.device | str = "cpu",
        accelerator: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
    ) -> None:
        super().__init__(accelerator, checkpoint_io, precision_plugin)
        # (torch's `device()` listed its signatures: "received an invalid combination of arguments")
        check_type(
            type(self).__name__,
            "device",
            device,
            (torch.device, str, int),
            "the device to run on, e.g. 'cpu', 'cuda:0' or a `torch.device`",
            bool_too=False,
        )
        self._root_device = torch.device(device)
        self._world_size = 1

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        strategy_registry.register("single_device", cls, description="one device, one process")


# `Trainer(strategy="<name>")` looks up here the names it does not build itself (a library's own
# strategies); register one with `StrategyRegistry.register(name, StrategyClass, **init_params)`
StrategyRegistry = _StrategyRegistry()


lightning_style_annotations(SingleDeviceStrategy, Strategy)  # Lightning's `typing` forms in the signature


def optimizers_to_device(optimizers: list[Optimizer], device: torch.device) -> None:
    """Move the optimizers' states to ``device``, but a ``step`` count, which stays where the optimizer keeps it
    (on the CPU unless ``capturable``), as Lightning moves them."""
    from ember.utilities.apply_func import move_data_to_device

    for optimizer in optimizers:
        for param, state in optimizer.state.items():
            if not isinstance(state, MutableMapping):
                optimizer.state[param] = move_data_to_device(state, device)  # a custom optimizer's own layout
                continue
            for key, value in state.items():
                if key != "step":
                    state[key] = move_data_to_device(value, device)
