"""``LightningOptimizer``: the optimizer ``self.optimizers()`` returns in manual optimization."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import Any

import torch
from torch.optim import Optimizer

from ember.utilities.exceptions import MisconfigurationException


class LightningOptimizer:
    """The optimizer ``self.optimizers()`` returns in manual optimization.

    ``step()`` runs the precision plugin (AMP scaling), ``on_before_optimizer_step`` and counts the
    global step; everything else is the wrapped optimizer's.
    """

    def __init__(self, optimizer: Optimizer, trainer: Any = None) -> None:
        self._optimizer = optimizer
        self._trainer = trainer
        # callables run around every step(); handy to inject logic in manual optimization
        self._on_before_step: Callable[[], Any] = _do_nothing
        self._on_after_step: Callable[[], Any] = _do_nothing
        # automatic optimization through the module's `optimizer_step`: the hooks to run before stepping
        self._closure_hook: Callable[[], None] | None = None
        self.__class__ = type("Lightning" + type(optimizer).__name__, (self.__class__, type(optimizer)), {})

    @property
    def optimizer(self) -> Optimizer:
        return self._optimizer

    @classmethod
    def _to_lightning_optimizer(cls, optimizer: Optimizer | LightningOptimizer, strategy: Any) -> LightningOptimizer:
        """``optimizer`` wrapped to step through the trainer that runs ``strategy``, or ``optimizer`` itself if it
        is a ``LightningOptimizer`` already (Lightning's helper, which ``optimizer_step`` overrides written for
        Lightning 1.x call)."""
        if isinstance(optimizer, LightningOptimizer):
            wrapper = optimizer
        else:
            wrapper = _stepping_automatically(optimizer, strategy) or cls(optimizer)
        wrapper._strategy = strategy
        return wrapper

    @property
    def _strategy(self) -> Any:
        """The strategy of the trainer this wrapper steps through (None without one), where Lightning keeps it."""
        return self._trainer.strategy if self._trainer is not None else None

    @_strategy.setter
    def _strategy(self, strategy: Any) -> None:
        # the wrapper keeps the trainer, not a copy of its strategy: step through the trainer that runs it
        self._trainer = strategy._trainer() if strategy is not None else None

    @contextmanager
    def toggle_model(self, sync_grad: bool = True) -> Generator[None, None, None]:
        """Freeze the parameters of the other optimizers inside the block.

        ``sync_grad=False`` also skips the gradient all-reduce of a distributed run (for batches
        that only accumulate).

        Example::

            with opt_gen.toggle_model():
                opt_gen.step(closure=closure_gen)
        """
        module = self._trainer.lightning_module
        sync = contextlib.nullcontext() if sync_grad else self._trainer.strategy.block_backward_sync()
        with sync:
            module.toggle_optimizer(self)
            yield
            module.untoggle_optimizer(self)

    def __getattr__(self, name: str) -> Any:
        optimizer = self.__dict__.get("_optimizer")
        if optimizer is None:  # mid-copy or mid-unpickle: nothing to delegate to yet
            raise AttributeError(name)
        return getattr(optimizer, name)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self._optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self._optimizer.param_groups = value

    @property
    def state(self) -> Any:
        return self._optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self._optimizer.state = value

    @property
    def defaults(self) -> Any:
        return self._optimizer.defaults

    @defaults.setter
    def defaults(self, value: Any) -> None:
        self._optimizer.defaults = value

    def state_dict(self) -> dict[str, Any]:
        return self._optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._optimizer.load_state_dict(state_dict)

    def zero_grad(self, *args: Any, **kwargs: Any) -> Any:
        """The optimizer's own ``zero_grad``, with the arguments given: its defaults (``set_to_none`` or none at
        all) stay its own, as with Lightning's wrapper, which has no ``zero_grad`` of its own."""
        return self._optimizer.zero_grad(*args, **kwargs)

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """Step the optimizer through the trainer (precision scaling, hooks, step counting).

        Example::

            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        """
        if closure is not None and not callable(closure):
            raise MisconfigurationException("When `optimizer.step(closure)` is called, the closure should be callable")
        # Without a closure (an `optimizer_step` hook that ran `optimizer_closure()` itself, or none), the step
        # runs on the gradients there are; a hook that never ran the closure is refused once it returns.
        self._on_before_step()
        trainer = self._trainer
        if trainer is None:
            raise MisconfigurationException(
                "`optimizer.step()` was called on a `LightningOptimizer` that no Trainer runs: call it on the"
                " optimizer `self.optimizers()` returns, inside a hook of a running Trainer."
            )
        step = trainer._run.step
        if step is not None:
            output = step.optimizer_step_from_wrapper(self, closure, **kwargs)
        else:
            output = _step_outside_training(trainer, self._optimizer, closure, **kwargs)
        self._on_after_step()
        return output

    # no `__repr__` of its own, as in Lightning: the optimizer class's reads the class name, "LightningSGD (...)",
    # and a class with its own `__repr__` keeps it

    def __reduce__(self) -> tuple[Any, ...]:
        # the class is made for the wrapped optimizer's type: rebuild it when copied or unpickled
        state = {k: v for k, v in self.__dict__.items() if k not in ("_optimizer", "_trainer")}
        return (_rebuild, (self._optimizer, self._trainer), state)


def _init_optimizers_and_lr_schedulers(model: Any) -> tuple[list[Optimizer], list[Any]]:
    """The optimizers and scheduler configs (``LRSchedulerConfig``) of ``model``'s ``configure_optimizers``,
    made and checked as ``fit`` makes them, through the trainer ``model`` is attached to; nothing is set on it.
    Lightning's private helper, which strategies that build their own optimizers call in ``setup_optimizers``.

    Example::

        def setup_optimizers(self, trainer):
            self.optimizers, self.lr_scheduler_configs = _init_optimizers_and_lr_schedulers(self.lightning_module)
    """
    return model.trainer._configured_optimizers(model)  # (`model.trainer` raises where there is none)


def _stepping_automatically(optimizer: Optimizer, strategy: Any) -> LightningOptimizer | None:
    """The trainer's wrapper of ``optimizer`` while automatic optimization steps it through the module's
    ``optimizer_step``: it carries the step's hooks and clipping (``_closure_hook``), which a new wrapper would
    step without. None otherwise: Lightning makes a new wrapper."""
    for wrapper in strategy._lightning_optimizers:
        if wrapper._optimizer is optimizer and wrapper._closure_hook is not None:
            return wrapper
    return None


def _rebuild(optimizer: Optimizer, trainer: Any) -> LightningOptimizer:
    return LightningOptimizer(optimizer, trainer)


def _do_nothing() -> None:
    return None


def _step_outside_training(trainer: Any, optimizer: Optimizer, closure: Callable[[], Any] | None, **kwargs: Any) -> Any:
    """``opt.step()`` outside a training step (test-time adaptation in ``test_step`` with
    ``Trainer(inference_mode=False)``, a last step in ``on_train_end``): through the strategy and its precision
    plugin, with the ``on_before_optimizer_step`` hooks, as in Lightning; no step is counted."""
    strategy = trainer.strategy
    hooks = trainer._run.hooks
    before_step = before_step_hooks(hooks, optimizer) if hooks is not None else None
    closure = closure or _do_nothing  # the step runs on the gradients there are
    previous, strategy._before_optimizer_step = strategy._before_optimizer_step, before_step
    try:
        return strategy.optimizer_step(optimizer, closure, **kwargs)
    finally:
        strategy._before_optimizer_step = previous


def before_step_hooks(hooks: Any, optimizer: Optimizer) -> Callable[[], None]:
    """What runs between the closure and a manual ``opt.step()``: the ``on_before_optimizer_step`` hooks of the
    callbacks, then of the module (``hooks``, the running call's dispatcher)."""

    def before_step() -> None:
        hooks.call_callbacks("on_before_optimizer_step", optimizer)
        hooks.call_module("on_before_optimizer_step", optimizer)

    return before_step


class _MockOptimizer(Optimizer):
    """Stands in when ``configure_optimizers`` returns None, so fit still runs (``self.optimizers()`` wraps it;
    libraries test for it here, at Lightning's path)."""

    def __init__(self) -> None:
        super().__init__([torch.zeros(1)], {})

    def step(self, closure: Callable | None = None) -> Any:
        if closure is not None:
            return closure()
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def add_param_group(self, param_group: dict[Any, Any]) -> None:
        pass  # it holds no parameters to add to

    def state_dict(self) -> dict[str, Any]:
        return {}  # nothing to save: a checkpoint holds `[{}]` for it, as Lightning's

    def load_state_dict(self, state_dict: dict[Any, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return "No Optimizer"
