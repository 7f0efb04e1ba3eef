"""``torch.compile`` and the Trainer: a compiled ``LightningModule`` trains, evaluates and predicts.

``trainer.fit(torch.compile(model))`` hands the Trainer an ``OptimizedModule``. The Trainer works
on the ``LightningModule`` inside it, with its ``forward`` and step methods replaced by compiled
ones (``from_compiled``), so the loops run compiled code while hooks, ``self.log``, optimizers and
checkpoints see the plain module: checkpoint keys have no ``_orig_mod.`` prefix and load into an
uncompiled module. ``to_uncompiled`` gives the plain methods back. The names are Lightning's
(``lightning.pytorch.utilities.compile``).

Example::

    model = torch.compile(MyModule())
    trainer.fit(model)                      # compiled steps
    MyModule.load_from_checkpoint(path)     # plain keys: loads without compiling
"""

from __future__ import annotations

from typing import Any

from ember.core.hooks import overrides
from ember.core.module import LightningModule

_COMPILED_METHODS = ("forward", "training_step", "validation_step", "test_step", "predict_step")


def is_compiled(model: Any) -> bool:
    """Whether ``model`` is what ``torch.compile(module)`` returns (checked without importing dynamo)."""
    return type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod") and hasattr(model, "dynamo_ctx")


def from_compiled(model: Any) -> LightningModule:
    """The ``LightningModule`` inside ``torch.compile(module)``, its forward and steps compiled.

    ``self.log`` stays out of the compiled graph (it only records values), as in Lightning.
    """
    if not is_compiled(model):
        raise ValueError(f"`model` must be the result of `torch.compile(...)`, got `{type(model).__qualname__}`.")
    module = model._orig_mod
    if not isinstance(module, LightningModule):
        raise TypeError(
            f"`torch.compile` was given a `{type(module).__qualname__}`: the Trainer runs a `LightningModule`."
            " Compile the LightningModule itself: `trainer.fit(torch.compile(lightning_module))`."
        )
    import torch

    to_uncompiled(module)  # compiled before (a second fit): start from the plain methods
    context = model.dynamo_ctx
    # only what the module defines: a compiled default would look like an override to the hook dispatch
    names = [name for name in _COMPILED_METHODS if overrides(module, LightningModule, name)]
    originals = {name: module.__dict__.get(name) for name in (*names, "log")}
    for name in names:
        object.__setattr__(module, name, context(getattr(module, name)))
    object.__setattr__(module, "log", torch.compiler.disable(module.log))
    module._compiler_ctx = {"compiler": "dynamo", "dynamo_ctx": context, "originals": originals}
    return module


def to_uncompiled(model: Any) -> LightningModule:
    """Give a module from ``from_compiled`` (or ``torch.compile``) its plain methods back.

    Example::

        plain = to_uncompiled(compiled_model)
    """
    if is_compiled(model):
        model = model._orig_mod
    context = getattr(model, "_compiler_ctx", None)
    if context is None:
        return model
    for name, original in context["originals"].items():
        if original is None:
            model.__dict__.pop(name, None)  # the class's method shows through again
        else:
            object.__setattr__(model, name, original)
    model._compiler_ctx = None
    return model


def unwrap_compiled(model: Any) -> Any:
    """What the Trainer runs: the compiled module's ``LightningModule`` (compiled), or ``model`` itself."""
    return from_compiled(model) if is_compiled(model) else model
