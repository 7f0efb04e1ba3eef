"""``save_hyperparameters``: record a module's constructor arguments so it can be rebuilt.

Shared by ``LightningModule`` and ``LightningDataModule``.
"""

from __future__ import annotations

import copy
import inspect
import types
from argparse import Namespace
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import fields
from typing import Any

from ember.utilities.apply_func import is_dataclass_instance
from ember.utilities.parsing import AttributeDict, save_hyperparameters
from ember.utilities.rank_zero import rank_zero_warn

_PRIMITIVES = (bool, int, float, str)

# (the class being built, the hyperparameters its save_hyperparameters records); set by LightningCLI
_given_hyperparameters: ContextVar[tuple[type | None, dict[str, Any]] | None] = ContextVar(
    "_given_hyperparameters", default=None
)


@contextmanager
def _given_hyperparameters_context(
    hparams: dict[str, Any], instantiator: str, owner: type | None = None
) -> Iterator[None]:
    """While ``owner`` is built inside, its ``save_hyperparameters()`` records ``hparams`` (and ``_instantiator``).

    ``LightningCLI`` builds the model and datamodule in this context, so that what is saved is the config that
    built them (``backbone: {class_path: ..., init_args: ...}``) rather than the objects ``__init__`` received,
    as in Lightning. Other objects built meanwhile (``owner`` given) record their own arguments.
    """
    token = _given_hyperparameters.set((owner, {**hparams, "_instantiator": instantiator}))
    try:
        yield
    finally:
        _given_hyperparameters.reset(token)


def _given_for(obj: Any) -> dict[str, Any] | None:
    given = _given_hyperparameters.get()
    if given is None or (given[0] is not None and not isinstance(obj, given[0])):
        return None
    return dict(given[1])


class HyperparametersMixin:
    """Gives a class ``save_hyperparameters``, ``hparams`` and ``hparams_initial``."""

    __jit_unused_properties__: list[str] = ["hparams", "hparams_initial"]
    # set by save_hyperparameters
    _hparams: Any
    _hparams_name: str | None
    _hparams_initial: Any

    def __init__(self) -> None:
        super().__init__()
        self._log_hyperparams = False

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: Sequence[str] | str | None = None,
        frame: types.FrameType | None = None,
        logger: bool = True,
    ) -> None:
        """Save the ``__init__`` arguments into ``self.hparams`` (and into checkpoints).

        With no arguments, every ``__init__`` argument of the class and its parents is saved; with
        names, only those; with one dict, Namespace or dataclass, that object. ``ignore`` drops names.
        ``logger=False`` keeps them from being sent to the loggers.

        Example::

            class Model(LightningModule):
                def __init__(self, lr=0.1, hidden=32):
                    super().__init__()
                    self.save_hyperparameters()   # self.hparams.lr == 0.1
        """
        self._log_hyperparams = logger
        given = _given_for(self)
        if frame is None and given is None:
            current = inspect.currentframe()
            frame = current.f_back if current is not None else None
        saved_before = getattr(self, "_hparams_initial", None)
        save_hyperparameters(self, *args, ignore=ignore, frame=frame, given_hparams=given)
        if getattr(self, "_hparams_initial", None) is not saved_before:  # (nothing is saved from an empty config)
            _warn_unsafe_values(self._hparams)

    def remove_ignored_hparams(self, ignore_list: list[str]) -> None:
        """Drop saved hyperparameters, e.g. ones a base class saved that a subclass doesn't want.

        Example::

            self.remove_ignored_hparams(["backbone"])
        """
        for key in ignore_list:
            self.hparams.pop(key, None)

    def _set_hparams(self, hp: Any) -> None:
        if isinstance(hp, Namespace):
            hp = vars(hp)
        if isinstance(hp, dict):
            hp = AttributeDict(hp)
        elif isinstance(hp, _PRIMITIVES):
            raise ValueError(f"Primitives {_PRIMITIVES} are not allowed as hyperparameters: pass a dict or names.")
        elif is_dataclass_instance(hp):
            hp = AttributeDict({f.name: getattr(hp, f.name) for f in fields(hp)})
        elif not isinstance(hp, MutableMapping):
            raise ValueError(f"Unsupported config type of {type(hp)}. Pass a dict, Namespace or dataclass.")
        if isinstance(hp, dict) and isinstance(getattr(self, "_hparams", None), dict):
            # a second call adds to what the first saved, as in Lightning
            self._hparams.update(hp)
        else:
            self._hparams = hp

    @property
    def hparams(self) -> AttributeDict | MutableMapping:
        """The saved hyperparameters (mutable)."""
        if not hasattr(self, "_hparams"):
            self._hparams = AttributeDict()
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        """A frozen copy of the hyperparameters as they were saved (what the loggers receive)."""
        if not hasattr(self, "_hparams_initial"):
            return AttributeDict()
        return copy.deepcopy(self._hparams_initial)


def _warn_unsafe_values(hparams: Any) -> None:
    from ember.checkpoint import unsafe_hparam_values
    from ember.core.saving import hparams_to_save

    unsafe = unsafe_hparam_values(hparams_to_save(hparams)[0])  # what a checkpoint will store
    if unsafe:
        rank_zero_warn(
            "These hyperparameters are not plain data and will not load from a checkpoint with the safe default"
            f" `weights_only=True`: {', '.join(unsafe)}. Save plain values (numbers, strings, lists, dicts) instead,"
            " ignore them with `save_hyperparameters(ignore=[...])`, or load trusted files with `weights_only=False`."
        )
