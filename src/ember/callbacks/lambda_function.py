"""``LambdaCallback``: a callback made of plain functions, one per hook, without writing a class."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ember.callbacks.callback import Callback
from ember.core.hooks import CALLBACK_HOOKS as _HOOKS
from ember.utilities.signature_utils import lightning_style_annotations


class LambdaCallback(Callback):
    """Build a callback on the fly from functions, passed by hook name.

    Each function receives the hook's arguments (``trainer, pl_module, ...``). The parameters are
    Lightning's, in its order: the first positional argument is the ``setup`` hook.

    Raises:
        TypeError: if a keyword is not a hook name or its value is not callable.

    Example::

        trainer = Trainer(callbacks=[LambdaCallback(on_train_epoch_end=lambda trainer, pl_module: print("done"))])
    """

    def __init__(self, *functions: Callable[..., Any] | None, **hook_functions: Callable[..., Any] | None) -> None:
        if len(functions) > len(_HOOKS):
            raise TypeError(
                f"`LambdaCallback` takes at most {len(_HOOKS)} positional arguments (one per hook, from `setup` to"
                f" `on_predict_epoch_end`), got {len(functions)}."
            )
        for name, function in zip(_HOOKS, functions):
            if name in hook_functions:
                raise TypeError(f"`LambdaCallback` got the hook {name!r} both by position and by keyword.")
            hook_functions[name] = function
        for name, function in hook_functions.items():
            if name not in _HOOKS:
                raise TypeError(
                    f"`LambdaCallback` got an unexpected hook {name!r}. Pass functions for callback hooks such as"
                    f" `on_train_start`, `on_train_batch_end` or `setup`."
                )
            if function is None:
                continue
            if not callable(function):
                raise TypeError(f"`LambdaCallback({name}=...)` must be a function, got {type(function).__name__}.")
            # an instance attribute shadows the no-op method of the base class
            setattr(self, name, function)


# Lightning spells out one keyword per hook; advertise the same signature for introspection (CLIs, help())
LambdaCallback.__init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Callable | None)
        for name in _HOOKS
    ]
)


lightning_style_annotations(LambdaCallback)  # Lightning's `typing` forms in the signature
