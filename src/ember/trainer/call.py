"""Lightning's private hook callers (``trainer.call``), for programs and libraries that deliver a hook themselves.

Ember's own loop delivers hooks through its per-run dispatcher (``dispatch.py``); these are the one-off calls
Lightning's code and the code written against it make: each is profiled under Lightning's action name, and the
module's running hook name is set for the length of the call, so that ``self.log`` inside it logs there.

Example::

    from lightning.pytorch.trainer import call

    call._call_callback_hooks(trainer, "on_predict_epoch_end")
    call._call_lightning_module_hook(trainer, "on_predict_epoch_end")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def _call_lightning_module_hook(trainer: Any, hook_name: str, *args: Any, pl_module: Any = None, **kwargs: Any) -> Any:
    """The module's hook ``hook_name`` (``pl_module``, else the trainer's module) with the arguments given; its
    result. ``None``, without a call, for a hook set to ``None``."""
    pl_module = pl_module or trainer.lightning_module
    if pl_module is None:
        raise TypeError("No `LightningModule` is available to call hooks on.")
    fn = getattr(pl_module, hook_name)
    if not callable(fn):
        return None
    with (
        _running(pl_module, hook_name),
        trainer.profiler.profile(f"[LightningModule]{type(pl_module).__name__}.{hook_name}"),
    ):
        return fn(*args, **kwargs)


def _call_callback_hooks(
    trainer: Any, hook_name: str, *args: Any, monitoring_callbacks: bool | None = None, **kwargs: Any
) -> None:
    """``hook_name`` on every callback of the trainer, in order, as ``hook(trainer, module, *args, **kwargs)``.
    ``monitoring_callbacks``: ``True`` only the checkpoint and early-stopping callbacks, ``False`` all others."""
    from ember.callbacks.checkpoint import Checkpoint
    from ember.callbacks.early_stopping import EarlyStopping

    callbacks = trainer.callbacks
    if monitoring_callbacks is not None:
        callbacks = [cb for cb in callbacks if isinstance(cb, (EarlyStopping, Checkpoint)) == monitoring_callbacks]
    pl_module = trainer.lightning_module
    with _running(pl_module, hook_name):
        for callback in callbacks:
            fn = getattr(callback, hook_name)
            if callable(fn):
                with trainer.profiler.profile(f"[Callback]{callback.state_key}.{hook_name}"):
                    fn(trainer, pl_module, *args, **kwargs)


def _call_strategy_hook(trainer: Any, hook_name: str, *args: Any, **kwargs: Any) -> Any:
    """The strategy's method ``hook_name`` with the arguments given; its result (``None`` where it is no method)."""
    fn = getattr(trainer.strategy, hook_name)
    if not callable(fn):
        return None
    action = f"[Strategy]{type(trainer.strategy).__name__}.{hook_name}"
    with _running(trainer.lightning_module, hook_name), trainer.profiler.profile(action):
        return fn(*args, **kwargs)


def _call_lightning_datamodule_hook(trainer: Any, hook_name: str, *args: Any, **kwargs: Any) -> Any:
    """The trainer's datamodule's hook ``hook_name``; its result (``None`` for a hook set to ``None``)."""
    datamodule = trainer.datamodule
    if datamodule is None:
        raise TypeError("No `LightningDataModule` is available to call hooks on.")
    fn = getattr(datamodule, hook_name)
    if not callable(fn):
        return None
    with trainer.profiler.profile(f"[LightningDataModule]{type(datamodule).__name__}.{hook_name}"):
        return fn(*args, **kwargs)


@contextlib.contextmanager
def _running(pl_module: Any, hook_name: str) -> Iterator[None]:
    """``pl_module``'s running hook name is ``hook_name`` inside (none to set without a module); the one before
    comes back after, also when the hook raises."""
    if pl_module is None:
        yield
        return
    previous = pl_module._current_fx_name
    pl_module._current_fx_name = hook_name
    try:
        yield
    finally:
        pl_module._current_fx_name = previous
