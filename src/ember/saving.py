"""``load_from_checkpoint``: rebuild a module or datamodule from a checkpoint, safely."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from ember.utilities.rank_zero import rank_zero_warn


class restricted_classmethod(classmethod):
    """A classmethod that refuses to be called on an instance.

    ``model.load_from_checkpoint(path)`` on an instance would build a new model and silently leave
    ``model`` unchanged; Lightning refuses it, and so does Ember.

    Example::

        class Model(LightningModule):
            @restricted_classmethod
            def load_from_checkpoint(cls, path): ...
    """

    def __get__(self, instance: Any, owner: type | None = None) -> Any:  # type: ignore[override]
        func = self.__func__
        cls = owner if owner is not None else type(instance)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from ember.module import LightningModule

            if instance is not None and not LightningModule._jit_is_scripting:
                raise TypeError(
                    f"The classmethod `{cls.__name__}.{func.__name__}` cannot be called on an instance."
                    " Please call it on the class type and make sure the return value is used."
                )
            return func(cls, *args, **kwargs)

        return wrapper


def load_hparams_from_file(path: str) -> dict[str, Any]:
    """Hyperparameters from a ``hparams.yaml`` (or ``.csv``) file."""
    import yaml

    from ember.checkpoint_io import get_filesystem

    fs = get_filesystem(path)
    if not fs.exists(path):
        raise FileNotFoundError(f"Missing hparams file: {path}")
    if str(path).endswith(".csv"):
        import csv

        with fs.open(path, "r", newline="") as f:
            return {row["key"]: _parse_value(row["value"]) for row in csv.DictReader(f)}
    with fs.open(path, "r") as f:
        return yaml.safe_load(f) or {}


def _parse_value(value: str) -> Any:
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def load_from_checkpoint(
    cls: type,
    checkpoint_path: Any,
    map_location: Any = None,
    hparams_file: Any = None,
    strict: bool | None = None,
    weights_only: bool | None = None,
    **kwargs: Any,
) -> Any:
    from ember.checkpoint_io import load_checkpoint
    from ember.datamodule import LightningDataModule
    from ember.module import LightningModule
    from ember.trainer.checkpoint import load_module_state

    checkpoint = load_checkpoint(checkpoint_path, map_location=map_location, weights_only=weights_only)
    is_datamodule = issubclass(cls, LightningDataModule)
    hp_key = "datamodule_hyper_parameters" if is_datamodule else "hyper_parameters"
    name_key = "datamodule_hparams_name" if is_datamodule else "hparams_name"
    if hparams_file is not None:
        extension = str(hparams_file).rsplit(".", 1)[-1].lower()
        if extension not in ("csv", "yml", "yaml"):
            raise ValueError(f"`hparams_file={str(hparams_file)!r}`: a .csv, .yml or .yaml file is required.")
        # the file replaces the saved hyperparameters entirely, as in Lightning
        checkpoint[hp_key] = load_hparams_from_file(str(hparams_file))
    hparams: dict[str, Any] = {}
    if not is_datamodule:
        for old_key in ("module_arguments", "hparams"):  # checkpoints from before Lightning 1.0
            if isinstance(checkpoint.get(old_key), dict):
                hparams.update(checkpoint[old_key])
    hparams.update(checkpoint.get(hp_key) or {})
    # a checkpoint never chooses the class: keys that would instantiate something are dropped
    for key in ("_instantiator", "_class_path"):
        if key in hparams:
            rank_zero_warn(
                f"Ignoring `{key}` found in the checkpoint's hyperparameters: a checkpoint never selects a class to import."
            )
            hparams.pop(key)
    hparams.update(kwargs)

    init = inspect.signature(cls.__init__).parameters
    args_name = checkpoint.get(name_key)
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in init.values())
    if args_name and args_name != "kwargs" and args_name in init:
        # the hparams were one dict argument; keyword overrides also go to `__init__` directly
        init_kwargs = {args_name: hparams, **kwargs}
    else:
        init_kwargs = hparams
    if not accepts_kwargs:
        init_kwargs = {k: v for k, v in init_kwargs.items() if k in init}
    obj = cls(**init_kwargs)
    if is_datamodule:
        state = checkpoint.get(cls.__qualname__)
        if state:
            obj.load_state_dict(state)
        return obj

    assert isinstance(obj, LightningModule)
    if obj._strict_loading is not None and strict is not None and strict != obj.strict_loading:
        raise ValueError(
            f"You set `.load_from_checkpoint(..., strict={strict!r})` which is in conflict with"
            f" `{cls.__name__}.strict_loading={obj.strict_loading!r}`. Please set the same value for both of them."
        )
    if type(obj).configure_model is not LightningModule.configure_model:
        obj.configure_model()
    obj.on_load_checkpoint(checkpoint)
    if "state_dict" not in checkpoint:
        raise KeyError(f"The checkpoint {checkpoint_path} has no 'state_dict' entry: it holds no model weights.")
    load_module_state(obj, checkpoint["state_dict"], obj.strict_loading if strict is None else strict)
    device = next((t.device for t in checkpoint["state_dict"].values() if isinstance(t, torch.Tensor)), None)
    if device is not None:
        obj.to(device)
    return obj
