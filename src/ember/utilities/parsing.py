"""Hyperparameter containers, reading a constructor's arguments from its frame, and finding a
hyperparameter where Lightning looks for it.

``save_hyperparameters(obj)`` records the arguments of ``obj``'s ``__init__`` (and of the parents'
``__init__`` that called ``super().__init__``, found by ``collect_init_args`` and ``get_init_args``) as
its hyperparameters: what ``LightningModule.save_hyperparameters`` runs.
``lightning_getattr`` / ``lightning_setattr`` / ``lightning_hasattr`` look in the model, ``model.hparams``,
the datamodule and its ``hparams`` (the tuner finds ``batch_size`` and ``lr`` this way)::

    lightning_setattr(model, "batch_size", 64)   # sets it on every holder that has it
    lightning_getattr(model, "batch_size")       # reads the last holder (the datamodule wins)
"""

from __future__ import annotations

import copy
import inspect
import pickle
import types
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import fields, is_dataclass
from typing import Any

from ember.utilities.argument_checks import check_type
from ember.utilities.rank_zero import rank_zero_warn


class AttributeDict(dict):
    """A dict whose keys are also attributes.

    Example::

        >>> h = AttributeDict(lr=0.1)
        >>> h.lr
        0.1
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{key}'") from exc

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]

    def __repr__(self) -> str:
        if not self:
            return ""
        width = max(len(str(k)) for k in self)
        return "\n".join(
            f'"{k}":'.ljust(width + 3) + f" {v}" for k, v in sorted(self.items(), key=lambda kv: str(kv[0]))
        )


def is_picklable(obj: object) -> bool:
    """Whether ``pickle.dumps(obj)`` works.

    Example::

        >>> is_picklable(1), is_picklable(lambda: 1)
        (True, False)
    """
    try:
        pickle.dumps(obj)
    except (pickle.PickleError, AttributeError, RuntimeError, TypeError):
        return False
    return True


def parse_class_init_keys(cls: type) -> tuple[str, str | None, str | None]:
    """The names ``cls.__init__`` gives to ``self``, ``*args`` and ``**kwargs`` (None when absent).

    Example::

        >>> class Model:
        ...     def __init__(self, hparams, *my_args, anykw=42, **my_kwargs): ...
        >>> parse_class_init_keys(Model)
        ('self', 'my_args', 'my_kwargs')
    """
    parameters = list(inspect.signature(cls.__init__).parameters.values())  # type: ignore[misc]  # the class's own
    var_positional = next((p.name for p in parameters if p.kind is p.VAR_POSITIONAL), None)
    var_keyword = next((p.name for p in parameters if p.kind is p.VAR_KEYWORD), None)
    return parameters[0].name, var_positional, var_keyword


def get_init_args(frame: types.FrameType) -> dict[str, Any]:
    """The arguments an ``__init__`` was called with, read from its running ``frame``.

    ``self``, ``*args`` and the ``**kwargs`` name are left out (the keyword arguments themselves are
    included). A frame that is not an ``__init__`` defined in a class gives ``{}``.

    Example::

        class Model(LightningModule):
            def __init__(self, lr=0.1, **kwargs):
                super().__init__()
                get_init_args(inspect.currentframe())  # {"lr": 0.1, **kwargs}
    """
    return _init_args(frame)[1]


def _init_args(frame: types.FrameType) -> tuple[Any, dict[str, Any]]:
    """``(self, arguments)`` of the ``__init__`` running in ``frame``; ``(None, {})`` for any other frame."""
    local_vars = frame.f_locals
    cls = local_vars.get("__class__")
    if cls is None or frame.f_code.co_name != "__init__":
        return None, {}
    self_name, args_name, kwargs_name = parse_class_init_keys(cls)
    args = {name: local_vars[name] for name in inspect.signature(cls.__init__).parameters if name in local_vars}
    if kwargs_name and isinstance(args.get(kwargs_name), dict):
        args.update(args[kwargs_name])
    excluded = {self_name, args_name, kwargs_name, "__class__", "frame", "frame_args"}
    return local_vars.get(self_name), {k: v for k, v in args.items() if k not in excluded}


def collect_init_args(
    frame: types.FrameType,
    path_args: list[dict[str, Any]],
    inside: bool = False,
    classes: tuple[type, ...] = (),
) -> list[dict[str, Any]]:
    """The arguments of every ``__init__`` on the chain of ``super().__init__()`` calls that reached ``frame``.

    Walks from ``frame`` to its callers, appending to ``path_args`` one dict per ``__init__`` whose
    ``self`` is an instance of ``classes`` (any object when empty), the innermost (a base class)
    first and the most specific class last. The walk ends at the first frame past the chain.

    Example::

        for args in collect_init_args(inspect.currentframe(), []):
            hparams.update(args)  # a subclass's values win over its parents'
    """
    current: types.FrameType | None = frame
    while current is not None and isinstance(current.f_back, types.FrameType):
        owner, args = _init_args(current)
        if "__class__" in current.f_locals and (not classes or isinstance(owner, classes)):
            path_args.append(args)
            inside = True
        elif inside:
            break
        current = current.f_back
    return path_args


def save_hyperparameters(
    obj: Any,
    *args: Any,
    ignore: Sequence[str] | str | None = None,
    frame: types.FrameType | None = None,
    given_hparams: dict[str, Any] | None = None,
) -> None:
    """Record the ``__init__`` arguments of ``obj`` (a ``LightningModule``, ``LightningDataModule`` or any
    ``HyperparametersMixin``) as its ``hparams``: what ``obj.save_hyperparameters(...)`` does.

    The arguments are read from ``frame`` (by default the caller's, the running ``__init__``) and from the
    ``__init__`` frames of the parents on its ``super().__init__()`` chain, or taken from ``given_hparams``
    where that frame has none to read (an ``__init__`` assigned to the class from outside it). ``args``
    and ``ignore`` select as in ``save_hyperparameters``.

    Example::

        def patched_init(self, config):
            super(MyDataModule, self).__init__()
            save_hyperparameters(self, given_hparams={"config": config})
    """
    if len(args) == 1 and not args[0]:
        # `save_hyperparameters(config)` with `config=None` (or an empty dict): nothing to save, as in Lightning
        return
    mixin = _hyperparameters_class(obj)
    if frame is None:
        current = inspect.currentframe()
        frame = current.f_back if current is not None else None
    if not isinstance(frame, types.FrameType):
        raise AttributeError("There is no `frame` available while being required.")
    if given_hparams is not None:
        init_args = dict(given_hparams)
    elif is_dataclass(obj):
        init_args = {f.name: getattr(obj, f.name) for f in fields(obj) if f.init}
    else:
        init_args = {}
        for local_args in collect_init_args(frame, [], classes=(mixin,)):
            # the innermost frame (the base class) comes first: the subclass's values win
            init_args.update(local_args)
    ignored = _ignored_names(ignore)
    init_args = {k: v for k, v in init_args.items() if k not in ignored}

    if not args:
        hp: Any = init_args
        obj._hparams_name = "kwargs" if hp else None
    else:
        non_str = [arg for arg in args if not isinstance(arg, str)]
        if len(non_str) == 1:
            hp = non_str[0]
            names = [k for k, v in init_args.items() if v is hp or _safe_eq(v, hp)]
            obj._hparams_name = names[0] if names else None
        else:
            missing = [arg for arg in args if isinstance(arg, str) and arg not in init_args]
            if missing:
                raise KeyError(
                    f"save_hyperparameters({', '.join(map(repr, missing))}): no such `__init__` argument."
                    f" The arguments are: {sorted(init_args)}."
                )
            hp = {arg: init_args[arg] for arg in args if isinstance(arg, str)}
            obj._hparams_name = "kwargs"
    obj._set_hparams(hp)
    # a subclass's `ignore` also drops what a base class's call saved before, as in Lightning
    obj.remove_ignored_hparams(sorted(ignored))

    import torch.nn as nn

    for key, value in obj._hparams.items():
        if isinstance(value, nn.Module):
            rank_zero_warn(
                f"Attribute {key!r} is an instance of `nn.Module` and is already saved during checkpointing."
                f" It is recommended to ignore them using `self.save_hyperparameters(ignore=[{key!r}])`."
            )
    obj._hparams_initial = copy.deepcopy(obj._hparams)


def _hyperparameters_class(obj: Any) -> type:
    """The class that gives ``obj`` its hyperparameters (``HyperparametersMixin`` for Ember's classes): the
    ``__init__`` frames of its instances are the ones read. An object without one is refused by name, with the
    ``AttributeError`` Lightning fails with later (on ``_set_hparams``)."""
    for cls in reversed(type(obj).__mro__):
        if "_set_hparams" in vars(cls) and "remove_ignored_hparams" in vars(cls):
            return cls
    raise AttributeError(
        f"`save_hyperparameters` records hyperparameters into a `LightningModule`, a `LightningDataModule` or"
        f" another `HyperparametersMixin`; {type(obj).__name__!r} is none of them. Derive its class from"
        " `HyperparametersMixin` (`from lightning.pytorch.core.mixins import HyperparametersMixin`)."
    )


def _ignored_names(ignore: Any) -> set[str]:
    if ignore is None:
        return set()
    if isinstance(ignore, str):
        return {ignore}
    # (a number failed with "'int' object is not iterable")
    expected = "the name of an `__init__` argument or a list of them, e.g. ignore=['backbone']"
    check_type("save_hyperparameters", "ignore", ignore, (Iterable,), expected)
    return {name for name in ignore if isinstance(name, str)}


def _safe_eq(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _holders(model: Any, attribute: str) -> list[Any]:
    holders: list[Any] = []
    if hasattr(model, attribute):
        holders.append(model)
    hparams = getattr(model, "hparams", None)
    if hparams is not None and attribute in hparams:
        holders.append(hparams)
    trainer = getattr(model, "_trainer", None)
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    if datamodule is not None:
        if hasattr(datamodule, attribute):
            holders.append(datamodule)
        dm_hparams = getattr(datamodule, "hparams", None)
        if dm_hparams is not None and attribute in dm_hparams:
            holders.append(dm_hparams)
    return holders


def _missing(attribute: str) -> AttributeError:
    return AttributeError(
        f"{attribute} is neither stored in the model namespace nor the `hparams` namespace/dict, nor the datamodule."
    )


def lightning_hasattr(model: Any, attribute: str) -> bool:
    """Whether the model, its hparams, the datamodule or its hparams hold ``attribute``."""
    return bool(_holders(model, attribute))


def lightning_getattr(model: Any, attribute: str) -> Any:
    """The value of ``attribute`` from its last holder (the datamodule's wins, as in Lightning)."""
    holders = _holders(model, attribute)
    if not holders:
        raise _missing(attribute)
    holder = holders[-1]
    return holder[attribute] if isinstance(holder, dict) else getattr(holder, attribute)


def lightning_setattr(model: Any, attribute: str, value: Any) -> None:
    """Set ``attribute`` on every holder, so the model and the datamodule agree."""
    holders = _holders(model, attribute)
    if not holders:
        raise _missing(attribute)
    for holder in holders:
        if isinstance(holder, dict):
            holder[attribute] = value
        else:
            setattr(holder, attribute, value)


def clean_namespace(hparams: MutableMapping) -> None:
    """Remove the entries of ``hparams`` that cannot be pickled, warning about each."""
    for key in [k for k, v in hparams.items() if not is_picklable(v)]:
        rank_zero_warn(
            f"Attribute '{key}' removed from hparams because it cannot be pickled. You can suppress this warning by"
            f" setting `self.save_hyperparameters(ignore=['{key}'])`."
        )
        del hparams[key]
