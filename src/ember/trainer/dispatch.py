"""The one place hooks are delivered: to the callbacks that override them, then to the module.

Which callback overrides which hook, and whether the module overrides it, is worked out once per
run. The loops ask for a *caller* per hook before their first batch: a function that delivers the
hook (setting the module's running hook name, so that ``self.log`` knows where it is called from),
or ``None`` when nobody overrides it, so an idle hook costs one ``is not None`` per batch.

Example::

    hooks = HookDispatcher(trainer, module, callbacks)
    on_batch_end = hooks.caller("on_train_batch_end")     # None: nobody listens
    if on_batch_end is not None:
        on_batch_end(outputs, batch, batch_idx)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ember.callbacks.callback import Callback
from ember.core.hooks import CALLBACK_HOOKS, overrides, program_overrides
from ember.core.module import LightningModule
from ember.profilers.profiler import profiled

_set = object.__setattr__  # the running hook's name, without nn.Module.__setattr__'s checks


# the hooks Lightning calls on the strategy too, after the callbacks' and the module's
STRATEGY_HOOKS = (
    "on_train_start",
    "on_train_end",
    "on_train_batch_start",
    "on_validation_start",
    "on_validation_end",
    "on_test_start",
    "on_test_end",
    "on_predict_start",
    "on_predict_end",
)


class HookDispatcher:
    """Calls hooks on callbacks and the module, skipping every callback that doesn't override one.

    With a ``profiler`` (``None`` for none), every call is recorded under Lightning's action names.
    """

    def __init__(self, trainer: Any, module: Any, callbacks: list[Any], profiler: Any = None) -> None:
        self.trainer = trainer
        self.module = module
        self.callbacks = callbacks
        self.profiler = profiler
        self._module_action = f"[LightningModule]{type(module).__name__}."
        # per hook: the callbacks that override it, and their bound methods (what the loop calls). A callback of
        # Ember's may say which of its hooks have nothing to do in this run (`_idle_hooks`, e.g. ModelCheckpoint's
        # batch end without a step interval): those it is not called for, which saves a call on every batch. With a
        # profiler they are, so that its report lists the same actions as Lightning's
        idle = {id(cb): cb._idle_hooks() for cb in callbacks if profiler is None and hasattr(type(cb), "_idle_hooks")}
        self._callbacks_for: dict[str, list[Any]] = {
            name: [cb for cb in callbacks if overrides(cb, Callback, name) and name not in idle.get(id(cb), ())]
            for name in CALLBACK_HOOKS
        }
        self._callback_fns: dict[str, list[Any]] = {
            name: [self._callback_fn(cb, name) for cb in owners] for name, owners in self._callbacks_for.items()
        }
        self._module_overrides = {
            name
            for name in dir(LightningModule)
            if not name.startswith("__") and overrides(module, LightningModule, name)
        }
        # Lightning's strategy hooks that a strategy of the program's own overrides: called after the module's
        strategy = getattr(trainer, "strategy", None)
        self._strategy_fns = {
            name: self._strategy_fn(strategy, name) for name in STRATEGY_HOOKS if program_overrides(strategy, name)
        }

    def _callback_fn(self, callback: Any, name: str) -> Any:
        fn = getattr(callback, name)
        if self.profiler is None:
            return fn
        return profiled(self.profiler, f"[Callback]{callback.state_key}.{name}", fn)

    def _strategy_fn(self, strategy: Any, name: str) -> Any:
        """The strategy's hook ``name``, recorded as Lightning's ``[Strategy]<class>.<name>`` when profiling."""
        return profiled(self.profiler, f"[Strategy]{type(strategy).__name__}.{name}", getattr(strategy, name))

    # ---- what overrides what ----------------------------------------------------------------
    def module_overrides(self, name: str) -> bool:
        """Whether the module (its class or the instance) replaces ``LightningModule.<name>``."""
        return name in self._module_overrides

    def has_callbacks(self, name: str) -> bool:
        """Whether any callback overrides ``name``."""
        return bool(self._callback_fns.get(name))

    def reads_batch_outputs(self) -> bool:
        """Whether anyone may read ``on_train_batch_end``'s ``outputs``: the module's hook, or a callback's
        that is not marked with :func:`~ember.callbacks.callback.ignores_outputs`."""
        name = "on_train_batch_end"
        return self.module_overrides(name) or any(
            not getattr(getattr(type(cb), name, None), "ignores_outputs", False) or name in getattr(cb, "__dict__", {})
            for cb in self._callbacks_for[name]
        )

    # ---- prebuilt callers for the loops ---------------------------------------------------------
    def caller(self, name: str) -> Callable[..., Any] | None:
        """Callbacks, then the module, for ``name``; ``None`` when none of them overrides it.

        The caller returns the module hook's result (``on_train_batch_start`` may return -1).
        """
        fns = self._callback_fns.get(name, [])
        module_fn = self._module_fn(name) if self.module_overrides(name) else None
        strategy_fn = self._strategy_fns.get(name)
        if not fns and module_fn is None and strategy_fn is None:
            return None
        trainer, module = self.trainer, self.module
        if len(fns) == 1 and module_fn is None and strategy_fn is None and self._logs_nothing(name):
            # one built-in callback's hook that never logs (the progress bar's batch end): called as it is, with
            # no frame of ours around it, since nothing in it reads the running hook name
            return functools.partial(fns[0], trainer, module)

        def call(*args: Any) -> Any:
            previous = module._current_fx_name
            _set(module, "_current_fx_name", name)
            try:
                for fn in fns:
                    fn(trainer, module, *args)
                result = module_fn(*args) if module_fn is not None else None
            finally:
                _set(module, "_current_fx_name", previous)
            if strategy_fn is not None:
                strategy_fn(*args)
            return result

        return call

    def _logs_nothing(self, name: str) -> bool:
        """Whether every callback called for ``name`` is one of Ember's own, whose hook is marked with
        :func:`~ember.callbacks.callback.logs_nothing` (and not replaced on the instance)."""
        return self.profiler is None and all(
            getattr(getattr(type(cb), name, None), "logs_nothing", False)
            and type(cb).__module__.startswith("ember.")
            and name not in getattr(cb, "__dict__", {})
            for cb in self._callbacks_for[name]
        )

    def module_caller(self, name: str, always: bool = False) -> Callable[..., Any] | None:
        """The module's hook ``name`` (its default too, with ``always``), or ``None`` when not overridden."""
        if not always and not self.module_overrides(name):
            return None
        return self.as_hook(name, self._module_fn(name))

    def as_hook(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` run as the hook ``name``: ``self.log`` inside it logs under that name."""
        module = self.module

        def call(*args: Any, **kwargs: Any) -> Any:
            previous = module._current_fx_name
            _set(module, "_current_fx_name", name)
            try:
                return fn(*args, **kwargs)
            finally:
                _set(module, "_current_fx_name", previous)

        return call

    def _module_fn(self, name: str) -> Callable[..., Any]:
        return profiled(self.profiler, self._module_action + name, getattr(self.module, name))

    # ---- one-off calls ----------------------------------------------------------------------------
    def call_callbacks(self, name: str, *args: Any, where: Callable[[Any], bool] | None = None, **kwargs: Any) -> None:
        """Call ``name`` on every callback that overrides it (those ``where`` accepts, if given)."""
        if where is None:
            fns = self._callback_fns[name]
        else:
            fns = [self._callback_fn(cb, name) for cb in self._callbacks_for[name] if where(cb)]
        if not fns:
            return
        module = self.module
        previous = module._current_fx_name
        _set(module, "_current_fx_name", name)
        try:
            for fn in fns:
                fn(self.trainer, module, *args, **kwargs)
        finally:
            _set(module, "_current_fx_name", previous)

    def call_module(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the module's hook ``name`` (its default if not overridden) and return its result; a hook set to
        ``None`` (``on_train_epoch_end = None``, how a subclass takes an inherited hook away) is not called and
        gives ``None``, as in Lightning."""
        module = self.module
        fn = getattr(module, name)
        if not callable(fn):
            return None
        previous = module._current_fx_name
        _set(module, "_current_fx_name", name)
        try:
            if self.profiler is not None:
                with self.profiler.profile(self._module_action + name):
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)
        finally:
            _set(module, "_current_fx_name", previous)

    def call_datamodule(self, datamodule: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the datamodule's ``name`` (recorded as ``[LightningDataModule]<class>.<name>``) and return its result
        (``None``, without a call, for a hook set to ``None``, as in Lightning)."""
        fn = getattr(datamodule, name)
        if not callable(fn):
            return None
        if self.profiler is None:
            return fn(*args, **kwargs)
        with self.profiler.profile(f"[LightningDataModule]{type(datamodule).__name__}.{name}"):
            return fn(*args, **kwargs)

    def call_both(self, name: str, *args: Any) -> None:
        """Callbacks, then the module: the usual order (then a program's strategy, for Lightning's strategy hooks)."""
        self.call_callbacks(name, *args)
        self.call_module(name, *args)
        strategy_fn = self._strategy_fns.get(name)
        if strategy_fn is not None:
            strategy_fn(*args)
