"""``DDPStrategy``: one model replica per process, gradients averaged by ``DistributedDataParallel``."""

from __future__ import annotations

import contextlib
import functools
import numbers
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ember.distributed.parallel import ParallelStrategy, default_pg_timeout, ember_option
from ember.distributed.strategy_names import DDP_START_METHODS
from ember.utilities.argument_checks import check_type
from ember.utilities.rank_zero import log, rank_zero_deprecation
from ember.utilities.signature_utils import lightning_style_annotations


class _StepForward(nn.Module):
    """Routes ``forward(name, *args)`` to ``module.<name>(*args)``.

    DDP synchronises gradients only for work done inside its ``forward``; calling
    ``training_step`` through it keeps the user's step unchanged while DDP sees the forward pass.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, name)(*args, **kwargs)


class ForwardRedirection:
    """Calls ``module.<name>(*args)`` through ``wrapper``'s ``forward`` (Lightning's forward redirection).

    DDP synchronises the gradients of the work done inside its ``forward`` only, and ``wrapper`` (a
    ``DistributedDataParallel`` around ``module`` itself, as in Lightning, so ``trainer.model.module`` is
    the LightningModule) calls ``module.forward``. For the one call, ``module.forward`` is replaced by a
    function that puts the real one back and runs the step, so a step that calls ``self(x)`` gets the
    real ``forward``.
    """

    __slots__ = ("_own", "_redirect", "method", "module", "wrapper")

    def __init__(self, wrapper: nn.Module, module: nn.Module, name: str) -> None:
        self.wrapper, self.module, self.method = wrapper, module, getattr(module, name)
        self._redirect = self._run_method  # bound once: put into the module's forward for each call
        self._own: Any = _NO_FORWARD

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = self.module.__dict__
        self._own = state.get("forward", _NO_FORWARD)  # a forward set on the instance (usually none)
        state["forward"] = self._redirect
        try:
            return self.wrapper(*args, **kwargs)
        finally:
            if state.get("forward") is self._redirect:  # the wrapper failed before it called forward
                self._restore()

    def _run_method(self, *args: Any, **kwargs: Any) -> Any:
        self._restore()
        return self.method(*args, **kwargs)

    def _restore(self) -> None:
        state = self.module.__dict__
        if self._own is _NO_FORWARD:
            state.pop("forward", None)
        else:
            state["forward"] = self._own


_NO_FORWARD = object()


def _sync_module_states(module: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers, as ``DistributedDataParallel``'s constructor makes them
    (Lightning does this for ``validate``/``test``/``predict``, which run without the wrapper): a program that
    does not seed its ranks evaluates rank 0's weights everywhere."""
    from torch.distributed.distributed_c10d import _get_default_group
    from torch.distributed.utils import _sync_module_states as sync

    ignored = set(getattr(module, "_ddp_params_and_buffers_to_ignore", []))
    sync(module, _get_default_group(), 250 * 1024 * 1024, src=0, params_and_buffers_to_ignore=ignored)


# DDP's error when some parameter got no gradient in the previous step
_UNFINISHED_REDUCTION = re.compile(r"Expected to have finished reduction in the prior iteration")
_UNUSED_PARAMETERS_HELP = (
    # the first sentence is Lightning's, which programs and tests match
    "It looks like your LightningModule has parameters that were not used in producing the loss returned by"
    " training_step, so DDP could not average their gradients. If that is intended, let DDP look for them"
    " at every step: `Trainer(strategy='ddp_find_unused_parameters_true')`, or"
    " `strategy=DDPStrategy(find_unused_parameters=True)`. Otherwise use every parameter in the loss, or set"
    " `requires_grad=False` on the ones you do not train before `fit`."
)


def explain_unused_parameters(exception: BaseException) -> None:
    """Put what to pass to the Trainer in front of DDP's message about parameters that got no gradient."""
    exception.args = tuple(
        f"{_UNUSED_PARAMETERS_HELP}\n\nDistributedDataParallel's message: {arg}"
        # once: a failure in a started process reaches the launching one's `on_exception` too
        if isinstance(arg, str) and _UNFINISHED_REDUCTION.search(arg) and _UNUSED_PARAMETERS_HELP not in arg
        else arg
        for arg in exception.args
    )


def _with_ddps_buffer_sync(ddp: DistributedDataParallel, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``step(*args)`` with what DDP's forward does to the module's buffers around it when Lightning runs
    a manual-optimization step inside that forward: rank 0's buffers are broadcast before it if DDP
    would (its first forward only, since DDP's construction), and the step ends as a forward whose
    gradients DDP does not reduce (Lightning turns that off before the forward returns), so the next
    forward (a step, or the validation) does not broadcast. Every rank keeps its own BatchNorm statistics."""
    if ddp._check_sync_bufs_pre_fwd():
        ddp._sync_buffers()  # all ranks: a broadcast from rank 0
    output = step(*args, **kwargs)
    ddp.require_forward_param_sync = False
    return output


def _check_ddp_flags(strategy: str, options: dict[str, Any]) -> None:
    """The true-or-false options of torch's ``DistributedDataParallel`` among ``options``: torch reads a number or
    None as one, and failed at the start of ``fit`` on anything else, listing its C++ signatures."""
    for flag in ("find_unused_parameters", "static_graph", "gradient_as_bucket_view", "broadcast_buffers"):
        expected = "True or False (an option of torch's `DistributedDataParallel`, which reads a number or None as one)"
        check_type(strategy, flag, options.get(flag), (numbers.Number, type(None)), expected)


class DDPStrategy(ParallelStrategy):
    """Data-parallel training: every process holds the whole model and trains on its share of the data.

    Example::

        trainer = Trainer(accelerator="cuda", devices=4, strategy=DDPStrategy(find_unused_parameters=True))
        trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp")  # gloo on CPU

    Besides Lightning's arguments, ``preemption_check_interval`` (default 10) says every how many batches
    the ranks agree on a preemption signal; the other keyword arguments go to ``DistributedDataParallel``.
    """

    strategy_name = "ddp"
    # as Lightning: `configure_optimizers` runs once the module is wrapped (`self.trainer.model` is the DDP wrapper)
    setup_optimizers_after_module = True

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        """Lightning's DDP names: one for each start method, each also with ``find_unused_parameters`` false and
        true (``"ddp_find_unused_parameters_true"``)."""
        for name, start in DDP_START_METHODS.items():
            description = f"DDP, processes started by {start!r}"
            strategy_registry.register(name, cls, description=description, start_method=start)
            for unused in (False, True):
                strategy_registry.register(
                    f"{name}_find_unused_parameters_{str(unused).lower()}",
                    cls,
                    description=f"{description}, find_unused_parameters={unused}",
                    find_unused_parameters=unused,
                    start_method=start,
                )

    def __init__(
        self,
        accelerator: Any = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: Any = None,
        checkpoint_io: Any = None,
        precision_plugin: Any = None,
        ddp_comm_state: Any = None,
        ddp_comm_hook: Callable | None = None,
        ddp_comm_wrapper: Callable | None = None,
        model_averaging_period: int | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        start_method: str = "popen",
        **kwargs: Any,
    ) -> None:
        # Ember's own option comes through `kwargs`, so that a config saved by the command line reads
        # back on Lightning (every signature argument is written to it)
        preemption_check_interval = ember_option(kwargs, "preemption_check_interval", 10)
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
        _check_ddp_flags(type(self).__name__, kwargs)
        self._ddp_kwargs = kwargs
        self._ddp_comm_state = ddp_comm_state
        self._ddp_comm_hook = ddp_comm_hook
        self._ddp_comm_wrapper = ddp_comm_wrapper
        self._model_averaging_period = model_averaging_period
        self._model_averager: Any = None  # torch's PeriodicModelAverager, for post-local SGD
        self._ddp: DistributedDataParallel | None = None

    @property
    def is_distributed(self) -> bool:
        """Always true; deprecated, as in Lightning (Ember reads ``runs_distributed``)."""
        rank_zero_deprecation(
            f"`{type(self).__name__}.is_distributed` is deprecated. Use is discouraged.", stacklevel=6
        )
        return True

    @property
    def find_unused_parameters(self) -> bool:
        return bool(self._ddp_kwargs.get("find_unused_parameters", False))

    def determine_ddp_device_ids(self) -> list[int] | None:
        """The ``device_ids`` given to ``DistributedDataParallel``: this rank's CUDA device, None on the CPU."""
        return [self.root_device.index] if self.root_device.type == "cuda" else None

    def setup(self, trainer: Any) -> None:
        """The base class's set-up; for ``fit`` with a ``PostLocalSGDState`` as ``ddp_comm_state``, then the
        periodic averaging of the parameters across processes (``_enable_model_averaging``), as in Lightning."""
        super().setup(trainer)
        self._model_averager = None
        if trainer.state.fn == "fit" and self._ddp_comm_state is not None:
            from torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook import PostLocalSGDState

            if isinstance(self._ddp_comm_state, PostLocalSGDState):
                self._enable_model_averaging()

    def _enable_model_averaging(self) -> None:
        """Post-local SGD: after ``ddp_comm_state.start_localSGD_iter`` steps, every ``model_averaging_period``
        optimizer steps the processes average their parameters (torch's ``PeriodicModelAverager``)."""
        if self._model_averaging_period is None:
            raise ValueError(
                "Post-localSGD algorithm is used, but model averaging period is not provided to DDP strategy."
            )
        from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
        from torch.distributed.optim import PostLocalSGDOptimizer, ZeroRedundancyOptimizer

        refused: tuple[type, ...] = (ZeroRedundancyOptimizer, PostLocalSGDOptimizer)
        with contextlib.suppress(ImportError):  # RPC's optimizer, where torch is built with RPC
            from torch.distributed.optim import DistributedOptimizer

            refused += (DistributedOptimizer,)
        for optimizer in self.optimizers:
            optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer's own
            if isinstance(optimizer, refused):
                raise ValueError(
                    "Currently model averaging cannot work with a distributed optimizer of type"
                    f" {type(optimizer).__name__}."
                )
        self._model_averager = PeriodicModelAverager(
            period=self._model_averaging_period, warmup_steps=self._ddp_comm_state.start_localSGD_iter
        )

    def steps_through_optimizer_step(self) -> bool:
        return self._model_averager is not None

    def optimizer_step(self, optimizer: Any, closure: Callable[[], Any], model: Any = None, **kwargs: Any) -> Any:
        """The step (the base class's), then, with post-local SGD, the periodic averaging of the parameters
        that have gradients."""
        output = super().optimizer_step(optimizer, closure, model, **kwargs)
        if self._model_averager is not None:
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            self._model_averager.average_parameters(iter(params))
        return output

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move to this rank's device; for fit, change the layers (``LayerSync``) and wrap in DDP (``configure_ddp``)."""
        module = module.to(self.root_device)
        self._ddp = None
        trainer = getattr(module, "_trainer", None)
        fitting = trainer is not None and trainer.state.fn == "fit"
        if not fitting:
            # no wrapper, so no broadcast by its constructor: every rank takes rank 0's parameters and buffers
            _sync_module_states(module)
            return module
        if self._layer_sync is not None:
            # e.g. the BatchNorm layers replaced by SyncBatchNorm; their parameters (the optimizer's) are kept
            module = self._layer_sync.apply(module)
        if not any(p.requires_grad for p in module.parameters()):
            # DDP refuses a module with nothing to train; its states are rank 0's all the same
            _sync_module_states(module)
            return module
        self.model = module
        self.configure_ddp()  # a strategy of the program's own may override it, or `_setup_model`, as in Lightning
        wrapper = self.model
        assert wrapper is not None
        self._ddp = wrapper if isinstance(wrapper, DistributedDataParallel) else None
        return wrapper

    def configure_ddp(self) -> None:
        """Wrap ``self.model`` (the LightningModule) in ``DistributedDataParallel`` (``_setup_model``) and
        register the communication hook given to the strategy (``_register_ddp_hooks``)."""
        module = self.model
        assert module is not None
        self.model = self._setup_model(module)
        self._register_ddp_hooks()

    def _setup_model(self, model: nn.Module) -> DistributedDataParallel:
        """``model`` wrapped in ``DistributedDataParallel`` with the strategy's keyword arguments."""
        device_ids = self.determine_ddp_device_ids()
        # built on a side stream, as torch's CUDA notes advise for work that overlaps the default stream
        context = torch.cuda.stream(torch.cuda.Stream()) if device_ids is not None else contextlib.nullcontext()
        with context:
            return DistributedDataParallel(module=model, device_ids=device_ids, **self._ddp_kwargs)

    def _register_ddp_hooks(self) -> None:
        """Register ``ddp_comm_hook`` (wrapped by ``ddp_comm_wrapper``, with ``ddp_comm_state``) on the wrapper.

        As in Lightning, only on CUDA devices: CPU processes train without the hook, with the numbers
        Lightning gives them."""
        ddp = self.model
        if self._ddp_comm_hook is None or not isinstance(ddp, DistributedDataParallel):
            return
        if self.root_device.type != "cuda":
            log.debug(f"{type(self).__name__}: `ddp_comm_hook` is registered on CUDA devices only, as in Lightning")
            return
        hook = self._ddp_comm_hook
        if self._ddp_comm_wrapper is not None:
            hook = self._ddp_comm_wrapper(hook)
        ddp.register_comm_hook(self._ddp_comm_state, hook)

    def training_step_fn(self, module: Any) -> Callable[..., Any]:
        if self._ddp is None:
            return module.training_step
        if not module.automatic_optimization:
            # manual optimization runs backward inside the step, which DDP's forward cannot enclose:
            # the step is called directly and `pre_backward` readies the reducer instead
            return functools.partial(_with_ddps_buffer_sync, self._ddp, module.training_step)
        return ForwardRedirection(self._ddp, module, "training_step")

    def eval_step_fn(self, module: Any, name: str) -> Callable[..., Any]:
        # the validation of a fit passes through DDP's forward, as in Lightning: after automatic optimization its
        # first batch takes rank 0's buffers (BatchNorm's running statistics), which DDP broadcasts before the
        # first forward after training (a manual step leaves that off: `_with_ddps_buffer_sync`)
        return ForwardRedirection(self._ddp, module, name) if self._ddp is not None else getattr(module, name)

    def pre_backward(self, closure_loss: torch.Tensor) -> None:
        ddp = self._ddp
        if ddp is None or not torch.is_grad_enabled() or not ddp.require_backward_grad_sync:
            return
        if self.lightning_module.automatic_optimization:
            return  # DDP's forward, which the step ran through, has readied the reducer
        from torch.nn.parallel.distributed import _find_tensors

        used = list(_find_tensors(closure_loss)) if ddp.find_unused_parameters and not ddp.static_graph else []
        ddp.reducer._rebuild_buckets()  # DDP's forward would do this; the first call sets the buckets up
        ddp.reducer.prepare_for_backward(used)

    def block_backward_sync(self) -> contextlib.AbstractContextManager:
        """Accumulating: keep gradients local until the step that updates the weights."""
        return self._ddp.no_sync() if self._ddp is not None else contextlib.nullcontext()

    def on_exception(self, exception: BaseException) -> None:
        explain_unused_parameters(exception)  # before the traceback is shown
        super().on_exception(exception)

    def teardown(self) -> None:
        """Unwrap the module and, after ``fit``, undo the ``LayerSync`` (SyncBatchNorm back to BatchNorm), as Lightning."""
        module = self.lightning_module
        self._ddp = None
        trainer = getattr(module, "_trainer", None)
        if self._layer_sync is not None and trainer is not None and trainer.state.fn == "fit":
            self._layer_sync.revert(module)
        super().teardown()


class DDPSpawnStrategy(DDPStrategy):
    """``DDPStrategy(start_method="spawn")`` under Lightning 1.x's name."""

    strategy_name = "ddp_spawn"

    def __init__(self, *, start_method: str = "spawn", **kwargs: Any) -> None:
        super().__init__(start_method=start_method, **kwargs)


lightning_style_annotations(DDPStrategy, DDPSpawnStrategy)  # Lightning's `typing` forms in the signature
