"""The one place hooks are delivered: callbacks, then the module (or as Lightning orders them).

Which callback overrides which hook is worked out once per run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.core.hooks import CALLBACK_HOOKS, overrides


class HookDispatcher:
    """Calls hooks on callbacks and the module, skipping every callback that doesn't override one.

    Which callback overrides which hook is worked out once per run; the per-step cost of a hook
    nobody overrides is one dict lookup and an empty loop. With a ``profiler`` (``None`` for
    none), every call is recorded under Lightning's action names.
    """

    def __init__(self, trainer: Any, module: Any, callbacks: list[Any], profiler: Any = None) -> None:
        from ember.callbacks.callback import Callback
        from ember.core.module import LightningModule

        self.trainer = trainer
        self.module = module
        self.callbacks = callbacks
        self.profiler = profiler
        self._module_action = f"[LightningModule]{type(module).__name__}."
        # per hook: the callbacks that override it, and their bound methods (what the loop calls)
        self._callbacks_for: dict[str, list[Any]] = {
            name: [cb for cb in callbacks if overrides(cb, Callback, name)] for name in CALLBACK_HOOKS
        }
        self._callback_fns: dict[str, list[Any]] = {
            name: [self._callback_fn(cb, name) for cb in owners] for name, owners in self._callbacks_for.items()
        }
        self._module_overrides = {
            name
            for name in dir(LightningModule)
            if not name.startswith("__") and overrides(module, LightningModule, name)
        }

    def _callback_fn(self, callback: Any, name: str) -> Any:
        fn = getattr(callback, name)
        if self.profiler is None:
            return fn
        from ember.profilers.profiler import profiled

        return profiled(self.profiler, f"[Callback]{callback.state_key}.{name}", fn)

    def callback_fns(self, name: str) -> list[Any]:
        return self._callback_fns[name]

    def module_overrides(self, name: str) -> bool:
        return name in self._module_overrides

    def call_callbacks(self, name: str, *args: Any, where: Callable[[Any], bool] | None = None) -> None:
        """Call ``name`` on every callback that overrides it (those ``where`` accepts, if given)."""
        if where is None:
            fns = self._callback_fns[name]
        else:
            fns = [self._callback_fn(cb, name) for cb in self._callbacks_for[name] if where(cb)]
        if not fns:
            return
        module = self.module
        previous = module._current_fx_name
        module._current_fx_name = name
        for fn in fns:
            fn(self.trainer, module, *args)
        module._current_fx_name = previous

    def call_module(self, name: str, *args: Any, **kwargs: Any) -> Any:
        module = self.module
        previous = module._current_fx_name
        module._current_fx_name = name
        try:
            if self.profiler is not None:
                with self.profiler.profile(self._module_action + name):
                    return getattr(module, name)(*args, **kwargs)
            return getattr(module, name)(*args, **kwargs)
        finally:
            module._current_fx_name = previous

    def call_both(self, name: str, *args: Any) -> None:
        """Callbacks, then the module: the usual order."""
        self.call_callbacks(name, *args)
        self.call_module(name, *args)
