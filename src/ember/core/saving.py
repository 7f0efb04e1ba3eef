"""``load_from_checkpoint``: rebuild a module or datamodule from a checkpoint, safely; hparams files."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import pathlib
import re
import sys
from argparse import Namespace
from collections.abc import Mapping, MutableMapping
from enum import Enum
from typing import Any

import torch

from ember.checkpoint.files import get_filesystem  # Lightning's `core.saving` offers it: libraries import it here
from ember.core.hooks import ModelHooks, runs_other_code
from ember.utilities.apply_func import is_dataclass_instance
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

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        func = self.__func__
        cls = owner if owner is not None else type(instance)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # TorchScript reads every attribute of the module it scripts, this one included
            if instance is not None and not getattr(cls, "_jit_is_scripting", False):
                raise TypeError(
                    f"The classmethod `{cls.__name__}.{func.__name__}` cannot be called on an instance."
                    " Please call it on the class type and make sure the return value is used."
                )
            return func(cls, *args, **kwargs)

        return wrapper


def pl_load(path_or_url: Any, map_location: Any = None, weights_only: bool | None = None) -> Any:
    """Lightning's name for reading a checkpoint: :func:`ember.checkpoint.load_checkpoint` (a local or
    fsspec path, a sharded checkpoint folder, or an open file; ``weights_only=None`` loads safely)."""
    from ember.checkpoint.loading import load_checkpoint

    return load_checkpoint(path_or_url, map_location=map_location, weights_only=weights_only)


def load_hparams_from_file(path: str) -> dict[str, Any]:
    """Hyperparameters from a ``hparams.yaml`` (or ``.csv``) file."""
    import yaml

    fs = get_filesystem(path)
    if not fs.exists(path):
        # Lightning's words and category: no hyperparameters, and go on
        rank_zero_warn(f"Missing Tags: {path}.", category=RuntimeWarning)
        return {}
    if str(path).endswith(".csv"):
        import csv

        with fs.open(path, "r", newline="") as f:
            return {row["key"]: convert(row["value"]) for row in csv.DictReader(f)}
    with fs.open(path, "r") as f:
        hparams = yaml.safe_load(f) or {}
    if not isinstance(hparams, dict):  # (what `yaml.safe_load` gives for a mapping)
        # (a list failed with "cannot convert dictionary update sequence element #0", a number "not iterable")
        raise ValueError(
            f"The hyperparameters file {path} holds a {type(hparams).__name__}, not names and values: write one"
            " `name: value` per line (`lr: 0.01`), as a logger's `hparams.yaml` does."
        )
    return hparams


def load_hparams_from_tags_csv(tags_csv: str | os.PathLike) -> dict[str, Any]:
    """The hyperparameters in a ``key,value`` CSV file (the old ``meta_tags.csv``); a missing file warns and
    gives ``{}``. Values are read back as Python literals where they are one (``32``, ``0.1``, ``True``)."""
    path = str(tags_csv)
    if not path.endswith(".csv"):
        raise ValueError(f"`tags_csv={path!r}`: a .csv file is required.")
    return load_hparams_from_file(path)


def save_hparams_to_tags_csv(tags_csv: str | os.PathLike, hparams: dict[str, Any] | Namespace) -> None:
    """Write ``hparams`` as ``key,value`` rows (with that header) to ``tags_csv``; its folder must exist.

    Example::

        save_hparams_to_tags_csv("meta_tags.csv", {"lr": 0.1, "batch_size": 32})
        load_hparams_from_tags_csv("meta_tags.csv")   # {"lr": 0.1, "batch_size": 32}
    """
    import csv

    fs = get_filesystem(tags_csv)
    folder = os.path.dirname(str(tags_csv))
    if folder and not fs.isdir(folder):
        raise RuntimeError(f"Missing folder: {folder}.")
    if isinstance(hparams, Namespace):
        hparams = vars(hparams)
    with fs.open(str(tags_csv), "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["key", "value"])
        writer.writeheader()
        for key, value in hparams.items():
            writer.writerow({"key": key, "value": value})


def load_hparams_from_yaml(config_yaml: str | os.PathLike, use_omegaconf: bool = True) -> dict[str, Any]:
    """The hyperparameters in a YAML file (e.g. a logger's ``hparams.yaml``), read with ``yaml.safe_load``.

    A missing file warns and gives ``{}``. When ``omegaconf`` is installed and ``use_omegaconf``,
    the result is an ``omegaconf.DictConfig`` (where the values allow one), as in Lightning.

    Example::

        hparams = load_hparams_from_yaml("lightning_logs/version_0/hparams.yaml")
    """
    import fsspec
    import yaml

    path = os.fspath(config_yaml)
    fs, _ = fsspec.core.url_to_fs(path)
    if not fs.exists(path):
        rank_zero_warn(f"Missing Tags: {path}.", category=RuntimeWarning)
        return {}
    with fs.open(path, "r") as file:
        hparams = yaml.safe_load(file)
    if use_omegaconf and _omegaconf_available():
        from omegaconf import OmegaConf
        from omegaconf.errors import UnsupportedValueType, ValidationError

        try:
            config: Any = OmegaConf.create(hparams)  # a mapping, as Lightning returns
            return config
        except (UnsupportedValueType, ValidationError):
            pass
    return hparams


def save_hparams_to_yaml(
    config_yaml: str | os.PathLike, hparams: dict[str, Any] | Namespace, use_omegaconf: bool = True
) -> None:
    """Write ``hparams`` (a dict, ``Namespace`` or ``AttributeDict``) to a YAML file, keys sorted.

    Values that are not plain data (numbers, strings, bools, ``None``, lists, dicts) are written as
    strings (an enum as its name, a class or function as its import path), so the file always loads
    with ``yaml.safe_load``; Lightning writes ``!!python/object`` tags for them instead. A value
    that only its ``str`` stands for warns, naming the parameter. Where ``omegaconf`` is installed and
    ``use_omegaconf``, the keys stay in their order when ``OmegaConf`` takes every value, as in Lightning,
    which writes the file with it; ``OmegaConf`` writes it here too, unless it is not imported yet and
    every value is plain (Ember then writes the same text without importing it).

    Raises:
        RuntimeError: the file's folder does not exist.
        TypeError: ``hparams`` is not a mapping.

    Example::

        save_hparams_to_yaml("run/hparams.yaml", {"lr": 0.01, "layers": [64, 64]})
    """
    from ember.checkpoint.files import is_folder, open_file

    path = os.fspath(config_yaml)
    folder = os.path.dirname(path)
    if folder and not is_folder(folder):
        raise RuntimeError(f"Missing folder: {folder}.")
    if isinstance(hparams, Namespace):
        hparams = vars(hparams)
    if not isinstance(hparams, Mapping):
        raise TypeError("hparams must be dictionary")
    # where omegaconf is installed, Lightning writes with it, keys in their order, unless it refuses a value (then
    # `yaml.dump` writes them sorted); a program that does not use omegaconf does not import it for plain values
    in_order = False
    if use_omegaconf and _omegaconf_available():
        if sys.modules.get("omegaconf") is None and all(_accepted_by_omegaconf(v) for v in hparams.values()):
            in_order = True  # OmegaConf's text, written below
        else:
            text = _omegaconf_text(hparams)
            if text is not None and _write_if_safe(path, text):
                return
            in_order = text is not None
    data: dict[Any, Any] = {}
    for key, value in hparams.items():
        written_as_text: list[str] = []
        data[_yaml_key(key)] = _yaml_safe(value, written_as_text)
        if written_as_text:
            rank_zero_warn(
                f"Skipping '{key}' parameter because it is not possible to safely dump to YAML: the file holds"
                f" its text {', '.join(written_as_text)} instead."
            )
    with open_file(path, "w", newline="") as file:
        if not data:
            file.write("{}\n")  # what PyYAML writes for an empty mapping, without importing it
            return
        import yaml

        if not in_order:  # keys sorted, as Lightning's `yaml.dump` writes them
            yaml.safe_dump(data, file, sort_keys=True)
            return
        # in their order, and text that reads as a bool or a number quoted, as OmegaConf writes them
        yaml.dump(data, file, Dumper=_omegaconf_style_dumper(), sort_keys=False, allow_unicode=True)


# the strings OmegaConf's YAML writer quotes as booleans (YAML 1.1's words)
_YAML_BOOL_WORDS = frozenset(
    word
    for base in ("y", "yes", "n", "no", "true", "false", "on", "off")
    for word in (base, base.title(), base.upper())
)


@functools.cache
def _omegaconf_style_dumper() -> type:
    """PyYAML's safe writer with OmegaConf's rule for text: quoted where it would read back as a bool, an int or a
    float (``'n'``, ``'1e3'``), so the file is the one OmegaConf writes, without importing omegaconf."""
    import yaml

    def represent_text(dumper: yaml.SafeDumper, data: str) -> Any:
        quoted = data in _YAML_BOOL_WORDS or _reads_as_number(data)
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'" if quoted else None)

    class OmegaConfStyleDumper(yaml.SafeDumper):
        pass

    OmegaConfStyleDumper.add_representer(str, represent_text)
    return OmegaConfStyleDumper


def _reads_as_number(text: str) -> bool:
    for number in (int, float):
        try:
            number(text)
        except ValueError:
            continue
        return True
    return False


# what a checkpoint's `hparams_type` holds when the hyperparameters were an `omegaconf.DictConfig`
_DICTCONFIG = "DictConfig"


def is_dictconfig(obj: Any) -> bool:
    """Whether ``obj`` is an ``omegaconf.DictConfig`` (without importing omegaconf when nothing uses it)."""
    import sys

    omegaconf = sys.modules.get("omegaconf")
    return omegaconf is not None and isinstance(obj, omegaconf.DictConfig)


def hparams_to_save(hparams: Any) -> tuple[dict[str, Any], str | None]:
    """The hyperparameters as a checkpoint stores them (plain data), and the name of their type when loading must
    rebuild it: ``"DictConfig"`` for an ``omegaconf.DictConfig``, stored unresolved, as plain dicts and lists, so
    that the checkpoint still loads with ``weights_only=True``."""
    if is_dictconfig(hparams):
        from omegaconf import OmegaConf

        container: Any = OmegaConf.to_container(hparams, resolve=False)
        return container, _DICTCONFIG
    return dict(hparams), None


def _rebuild_hparams(hparams: dict[str, Any], kind: Any) -> Any:
    """``hparams`` as the type they were saved as: a ``DictConfig`` again when they were one (Ember's
    ``"DictConfig"``, or the class a Lightning checkpoint holds). Nothing is imported for another name."""
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", None)
    if name != _DICTCONFIG or not _omegaconf_available():
        return hparams
    from omegaconf import OmegaConf
    from omegaconf.errors import UnsupportedValueType, ValidationError

    try:
        return OmegaConf.create(hparams)
    except (UnsupportedValueType, ValidationError):
        return hparams


def _omegaconf_available() -> bool:
    """Whether omegaconf is installed, asked each time (a program can hide it: ``sys.modules["omegaconf"] = None``)."""
    import importlib.util

    return importlib.util.find_spec("omegaconf") is not None


# (it writes `bytes` too, as `!!binary`, which Ember's writer does not: OmegaConf writes a file that holds them)
_OMEGACONF_KEYS = (bool, int, float, str)
_OMEGACONF_SCALARS = (*_OMEGACONF_KEYS, type(None))


def _accepted_by_omegaconf(value: Any) -> bool:
    """Whether OmegaConf surely writes ``value`` as Ember's writer does: its exact scalar types, enums, paths, and
    exact lists, tuples and dicts of them (it refuses subclasses: numpy's scalars, ``OrderedDict``,
    ``AttributeDict``). ``False`` where only OmegaConf can tell (it checks a dataclass's fields against their types)."""
    if type(value) in _OMEGACONF_SCALARS or isinstance(value, (Enum, pathlib.Path)):
        return True
    if type(value) in (list, tuple):
        return all(_accepted_by_omegaconf(v) for v in value)
    if type(value) is dict:
        return all(
            (type(k) in _OMEGACONF_KEYS or isinstance(k, Enum)) and _accepted_by_omegaconf(v) for k, v in value.items()
        )
    return False


def _omegaconf_text(hparams: Mapping[str, Any]) -> str | None:
    """``OmegaConf.to_yaml`` of ``hparams`` (an ``omegaconf.DictConfig`` among them resolved, as Lightning writes
    them), or ``None`` when OmegaConf refuses a value."""
    import copy

    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import UnsupportedValueType, ValidationError

    values = {
        k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
        for k, v in copy.deepcopy(dict(hparams)).items()
    }
    try:
        return OmegaConf.to_yaml(values)
    except (UnsupportedValueType, ValidationError):
        return None


def _write_if_safe(path: str, text: str) -> bool:
    """Write OmegaConf's ``text`` to ``path`` unless ``yaml.safe_load`` cannot read it (``False`` then)."""
    import yaml

    try:
        # OmegaConf's dumper writes `!!python/object` tags for the objects a container created with
        # `allow_objects` holds (what `hydra.utils.instantiate` returns for a list of `_target_`s), and for
        # paths: such a file is written by the safe path instead, so that `yaml.safe_load` always reads it.
        yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    from ember.checkpoint.files import open_file

    with open_file(path, "w", encoding="utf-8") as file:
        file.write(text)
    return True


def _yaml_safe(value: Any, written_as_text: list[str] | None = None) -> Any:
    """``value`` made of plain YAML types; anything else becomes its ``str`` (listed in ``written_as_text``)."""
    if value is None or type(value) in _YAML_SCALARS:
        return value
    if isinstance(value, Enum):  # a StrEnum or IntEnum too: its name, as OmegaConf writes it
        return value.name
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # np.float64(0.01) is 0.01
        return _yaml_safe(value.tolist(), written_as_text)
    if isinstance(value, (bool, int, float, str)):  # a subclass of a library's own: its plain value
        return next(kind for kind in _YAML_SCALARS if isinstance(value, kind))(value)
    if isinstance(value, Namespace):
        value = vars(value)
    if is_dataclass_instance(value):  # a mapping of its fields, as OmegaConf writes one for Lightning
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {_yaml_key(k): _yaml_safe(v, written_as_text) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or _is_listconfig(value):
        return [_yaml_safe(v, written_as_text) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if inspect.isclass(value) or inspect.isfunction(value):
        return f"{value.__module__}.{value.__qualname__}"
    if inspect.isbuiltin(value) and isinstance(getattr(value, "__module__", None), str):
        # `torch.tanh`, `math.sqrt`: by the name Lightning's file tags them with (PyYAML's module and `__name__`; their
        # `__qualname__` may name a class no one imports). A bound method of an object (`[].append`) has no module.
        return f"{value.__module__}.{value.__name__}"
    text = _text_of(value)
    if written_as_text is not None:
        written_as_text.append(repr(text))
    return text


def _yaml_key(key: Any) -> Any:
    """A mapping key ``yaml.safe_dump`` writes: a plain scalar as it is, an enum or numpy scalar made plain,
    anything else its ``str``."""
    if type(key) in _YAML_SCALARS:
        return key
    if isinstance(key, (bool, int, float, str, Enum)) or type(key).__module__ == "numpy":
        plain = _yaml_safe(key)
        if type(plain) in _YAML_SCALARS:
            return plain
    return str(key)


# what `yaml.safe_dump` writes: these exact types (a subclass, such as numpy's float64, it refuses); bool first,
# as a bool is an int too
_YAML_SCALARS = (bool, int, float, str)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")
_FIELD_CHARS = 120


def _text_of(value: Any, depth: int = 0) -> str:
    """The text a value YAML cannot hold is written as: its ``str``, except that an object with Python's
    default text (``<module.Class object at 0x7f...>``, a memory address that differs from run to run)
    shows its class and public attributes, ``module.Class(lr=0.001, betas=(0.9, 0.98))``, the fields
    Lightning's ``!!python/object`` tag would record. Addresses left in other texts are dropped."""
    kind = type(value)
    texts: tuple[Any, Any] = (kind.__repr__, kind.__str__)
    if texts == (object.__repr__, object.__str__) and hasattr(value, "__dict__"):
        name = f"{kind.__module__}.{kind.__qualname__}"
        if depth >= 2:
            return f"{name}(...)"
        fields = []
        for key, field in vars(value).items():
            if not key.startswith("_"):
                shown = _text_of(field, depth + 1) if not isinstance(field, str) else repr(field)
                fields.append(f"{key}={shown if len(shown) <= _FIELD_CHARS else shown[: _FIELD_CHARS - 3] + '...'}")
        return f"{name}({', '.join(fields)})"
    return _ADDRESS.sub(">", str(value) if depth == 0 else repr(value))


def _is_listconfig(value: Any) -> bool:
    omegaconf = sys.modules.get("omegaconf")
    return omegaconf is not None and isinstance(value, omegaconf.ListConfig)


def convert(val: str) -> Any:
    """A value read from a hyperparameters CSV file: the Python literal it spells, else the text itself."""
    import ast

    try:
        return ast.literal_eval(val)
    except (ValueError, SyntaxError):
        return val


def update_hparams(hparams: dict, updates: dict) -> None:
    """Apply ``updates`` to ``hparams`` in place, merging nested dicts key by key (Lightning's helper)."""
    for key, value in updates.items():
        if key in hparams and isinstance(value, dict):
            update_hparams(hparams[key], value)
        else:
            hparams[key] = value


def load_from_checkpoint(
    cls: type,
    checkpoint_path: Any,
    map_location: Any,
    hparams_file: Any,
    strict: bool | None,
    weights_only: bool | None,
    datamodule: bool,
    /,
    **kwargs: Any,
) -> Any:
    """Build ``cls`` from a checkpoint's hyperparameters (``kwargs`` override them), then load its state.

    ``datamodule`` True reads the datamodule's entries (``datamodule_hyper_parameters`` and its
    state); otherwise the module's hyperparameters and weights. The arguments are positional only,
    so that any hyperparameter name can be passed in ``kwargs``.
    """
    from ember.checkpoint import load_checkpoint
    from ember.utilities.migration import migrate_loaded, pl_legacy_patch

    with pl_legacy_patch():
        checkpoint = load_checkpoint(checkpoint_path, map_location=map_location, weights_only=weights_only)
    checkpoint = migrate_loaded(checkpoint, checkpoint_path)
    if hparams_file is not None:
        # the file replaces the saved hyperparameters, as in Lightning (where it holds a value's text, the value)
        key = "datamodule_hyper_parameters" if datamodule else "hyper_parameters"
        checkpoint[key] = _keep_values_written_as_text(_read_hparams_file(hparams_file), checkpoint.get(key))
    return _build_and_load(cls, checkpoint, checkpoint_path, strict, datamodule, hparams_file is not None, kwargs)


def _build_and_load(
    cls: type,
    checkpoint: dict[str, Any],
    checkpoint_path: Any,
    strict: bool | None,
    datamodule: bool,
    from_file: bool,
    kwargs: dict[str, Any],
) -> Any:
    """``cls`` built from the loaded ``checkpoint``'s hyperparameters and ``kwargs``, with its state loaded."""
    if not isinstance(checkpoint, MutableMapping):  # Lightning's type: it fails indexing the object with a key
        where = "" if checkpoint_path is None else f" {checkpoint_path}"
        raise TypeError(
            f"The checkpoint{where} holds a {type(checkpoint).__name__}, not a checkpoint dict: it is not a file"
            " saved by `trainer.save_checkpoint` or `ModelCheckpoint`. Pass the path of a model checkpoint."
        )
    if datamodule:
        hparams_key, name_key, type_key = (
            "datamodule_hyper_parameters",
            "datamodule_hparams_name",
            "datamodule_hparams_type",
        )
    else:
        hparams_key, name_key, type_key = "hyper_parameters", "hparams_name", "hparams_type"
    # as Lightning, the checkpoint the hooks see (`on_load_checkpoint`) holds the hyperparameters the object is
    # built with: the hparams file's, if given (put in above), with the keyword overrides merged in
    stored = checkpoint.setdefault(hparams_key, {})
    if isinstance(stored, MutableMapping):
        stored.update(kwargs)
    hparams = _saved_hparams(cls, checkpoint, hparams_key, legacy=not datamodule, overrides=kwargs)
    hparams.update(kwargs)
    if not from_file:
        hparams = _rebuild_hparams(hparams, checkpoint.get(type_key))
    obj = _instantiate(cls, hparams, checkpoint.get(name_key), kwargs)
    if datamodule:
        state = checkpoint.get(cls.__qualname__)
        if state:
            obj.load_state_dict(state)
        return obj
    _load_module_weights(obj, checkpoint, checkpoint_path, strict)
    return obj


def _is_datamodule_class(cls: type) -> bool:
    """A datamodule class rather than a module's (a LightningModule is a torch module; a datamodule is not)."""
    return not issubclass(cls, torch.nn.Module)


def _load_from_checkpoint(
    cls: type,
    checkpoint_path: Any,
    map_location: Any = None,
    hparams_file: Any = None,
    strict: bool | None = None,
    weights_only: bool | None = None,
    **kwargs: Any,
) -> Any:
    """Lightning's private helper behind ``load_from_checkpoint``, for a module or a datamodule class.

    Libraries that override ``load_from_checkpoint`` call it under this name (rl4co's REINFORCE).
    """
    return load_from_checkpoint(
        cls, checkpoint_path, map_location, hparams_file, strict, weights_only, _is_datamodule_class(cls), **kwargs
    )


def _load_state(cls: type, checkpoint: dict[str, Any], strict: bool | None = None, **cls_kwargs_new: Any) -> Any:
    """Lightning's private helper: build ``cls`` from a checkpoint dict already loaded, and load its state."""
    return _build_and_load(cls, checkpoint, None, strict, _is_datamodule_class(cls), False, cls_kwargs_new)


def _read_hparams_file(hparams_file: Any) -> dict[str, Any]:
    extension = str(hparams_file).rsplit(".", 1)[-1].lower()
    if extension not in ("csv", "yml", "yaml"):
        raise ValueError(f".csv, .yml or .yaml is required for `hparams_file` (got {str(hparams_file)!r}).")
    return load_hparams_from_file(str(hparams_file))


def _keep_values_written_as_text(file_hparams: dict[str, Any], saved: Mapping[str, Any] | None) -> dict[str, Any]:
    """``hparams_file``'s values, where the file holds the text Ember's YAML writer makes of the checkpoint's own
    hyperparameter under the same key (a ``torch.dtype``, a class: values only their text can stand for in a
    safe file) with the checkpoint's value instead: the file says the same thing, and ``__init__`` needs the
    value, not its text. Every other value is the file's (a string, an enum's name, a list for a tuple)."""
    if not saved:
        return file_hparams
    values = dict(file_hparams)
    for key, value in file_hparams.items():
        original = saved.get(key)
        if original is None or isinstance(original, (str, Enum)):
            continue  # written as itself, or as the name Lightning's file holds too
        if isinstance(value, str) and _yaml_safe(original) == value:
            values[key] = original
    return values


# the instantiators Lightning's LightningCLI (and Ember's) records: they only say "built by LightningCLI"
_LIGHTNING_INSTANTIATORS = ("pytorch_lightning.cli.instantiate_module", "lightning.pytorch.cli.instantiate_module")


def _saved_hparams(
    cls: type, checkpoint: dict[str, Any], key: str, legacy: bool, overrides: dict[str, Any]
) -> dict[str, Any]:
    hparams: dict[str, Any] = {}
    if legacy:
        for old_key in ("module_arguments", "hparams"):  # checkpoints from before Lightning 1.0
            if isinstance(checkpoint.get(old_key), dict):
                hparams.update(checkpoint[old_key])
    hparams.update(checkpoint.get(key) or {})
    # a checkpoint never chooses the class: keys that would instantiate something are dropped, silently when they
    # only repeat what is built anyway (LightningCLI records both for every module it builds)
    from ember.checkpoint.safe_load import loaded_object

    instantiator = hparams.pop("_instantiator", None)
    class_path = hparams.pop("_class_path", None)
    ignored = []
    if instantiator is not None and instantiator not in _LIGHTNING_INSTANTIATORS:
        ignored.append("_instantiator")
    if class_path is not None and loaded_object(str(class_path)) is not cls:
        ignored.append("_class_path")
    for name in ignored:
        rank_zero_warn(
            f"Ignoring `{name}` found in the checkpoint's hyperparameters: a checkpoint never selects a class to"
            " import."
        )
    if instantiator is not None:
        _warn_unbuilt_objects(cls, hparams, overrides)
    return hparams


def _warn_unbuilt_objects(cls: type, hparams: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Name the hyperparameters that hold the config of an object LightningCLI built (``backbone: {class_path:
    ...}``), and how to pass the object instead."""
    configs = [k for k, v in hparams.items() if k not in overrides and isinstance(v, Mapping) and "class_path" in v]
    if configs:
        names = ", ".join(f"`{k}`" for k in configs)
        example = ", ".join(f"{k}=..." for k in configs)
        rank_zero_warn(
            f"The hyperparameters {names} hold the `class_path`/`init_args` config LightningCLI built them from."
            " Ember never builds what a checkpoint names, so `__init__` receives the config itself: pass the"
            f" objects instead, `{cls.__name__}.load_from_checkpoint(path, {example})`."
        )


def _instantiate(cls: type, hparams: dict[str, Any], args_name: str | None, overrides: dict[str, Any]) -> Any:
    init = inspect.signature(cls.__init__).parameters  # type: ignore[misc]  # the class's own __init__
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in init.values())
    if args_name and args_name != "kwargs" and args_name in init:
        # the hparams were one dict argument; keyword overrides also go to `__init__` directly
        init_kwargs = {args_name: hparams, **overrides}
    else:
        init_kwargs = hparams
    if not accepts_kwargs:
        init_kwargs = {k: v for k, v in init_kwargs.items() if k in init}
    try:
        return cls(**init_kwargs)
    except TypeError as error:
        missing = [
            name
            for name, p in list(init.items())[1:]
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in init_kwargs
        ]
        if not missing or "missing" not in str(error):
            raise
        raise TypeError(_missing_init_arguments(cls, missing, hparams, overrides, error)) from error


def _missing_init_arguments(
    cls: type, missing: list[str], hparams: dict[str, Any], overrides: dict[str, Any], error: TypeError
) -> str:
    """Which ``__init__`` arguments neither the checkpoint nor the call gave, and the two ways to give them."""
    names = ", ".join(f"`{name}`" for name in missing)
    saved = [name for name in hparams if name not in overrides]
    held = "holds no hyperparameters" if not saved else "holds only " + ", ".join(f"`{name}`" for name in saved)
    example = ", ".join(f"{name}=..." for name in missing)
    return (
        f"`{cls.__name__}.load_from_checkpoint` cannot build the object: `__init__` needs {names}, and the checkpoint"
        f" {held}. Pass them: `{cls.__name__}.load_from_checkpoint(path, {example})`; or call"
        " `self.save_hyperparameters()` in `__init__`, so that the checkpoints written from then on hold every"
        f" argument. ({error})"
    )


def _load_module_weights(module: Any, checkpoint: dict[str, Any], checkpoint_path: Any, strict: bool | None) -> None:
    if module._strict_loading is not None and strict is not None and strict != module.strict_loading:
        raise ValueError(
            f"You set `.load_from_checkpoint(..., strict={strict!r})` which is in conflict with"
            f" `{type(module).__name__}.strict_loading={module.strict_loading!r}`. Please set the same value for both"
            " of them."
        )
    if runs_other_code(module, ModelHooks, "configure_model"):  # the layers it creates must exist before loading
        module.configure_model()
    if callable(module.on_load_checkpoint):  # (`None`: taken away, as a resume skips it too)
        module.on_load_checkpoint(checkpoint)
    if "state_dict" not in checkpoint:
        raise KeyError(f"The checkpoint {checkpoint_path} has no 'state_dict' entry: it holds no model weights.")
    state_dict = checkpoint["state_dict"]
    if not state_dict:
        rank_zero_warn(f"The state dict in {str(checkpoint_path)!r} contains no parameters.")
    strict = module.strict_loading if strict is None else strict
    keys = load_module_state(module, state_dict, strict)
    if not strict and keys is not None:
        # Lightning's two warnings, each only when it has keys to name (a resume says nothing)
        if keys.missing_keys:
            rank_zero_warn(
                f"Found keys that are in the model state dict but not in the checkpoint: {keys.missing_keys}"
            )
        if keys.unexpected_keys:
            rank_zero_warn(
                f"Found keys that are not in the model state dict but in the checkpoint: {keys.unexpected_keys}"
            )
    device = next((t.device for t in state_dict.values() if isinstance(t, torch.Tensor)), None)
    if device is not None:
        module.to(device)


def _loads_its_own_way(module: torch.nn.Module) -> bool:
    """Whether loading ``module`` runs code that may change which keys it takes: a ``load_state_dict`` of its
    class, or a load pre- or post-hook on it or a submodule."""
    if type(module).load_state_dict is not torch.nn.Module.load_state_dict:
        return True
    return any(
        getattr(sub, "_load_state_dict_pre_hooks", None) or getattr(sub, "_load_state_dict_post_hooks", None)
        for sub in module.modules()
    )


def load_module_state(module: torch.nn.Module, state_dict: dict[str, Any], strict: bool, load: Any = None) -> Any:
    """``load_state_dict`` whose error lists the missing and unexpected keys and what to do.

    ``load(state_dict, strict=...)`` replaces ``module.load_state_dict`` (a strategy's loader). Returns
    what it returns: torch's missing and unexpected keys, or None from a Lightning-style strategy.
    """
    if _loads_its_own_way(module):
        # its own `load_state_dict` or a load hook renames or relaxes keys: it decides, as in Lightning
        return (load or module.load_state_dict)(state_dict, strict=strict)
    own_keys = list(module.state_dict())
    own, given = set(own_keys), set(state_dict)
    # in torch's order: the module's keys, then the checkpoint's
    missing = [key for key in own_keys if key not in given]
    unexpected = [key for key in state_dict if key not in own]
    if strict and (missing or unexpected):
        # torch's wording first (tools match on it), checked before anything is copied into the module
        lines = [f"Error(s) in loading state_dict for {type(module).__name__}:"]
        if missing:
            lines.append("\tMissing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". ")
        if unexpected:
            lines.append("\tUnexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ". ")
        lines.append(
            "Build the model with the same architecture as when the checkpoint was saved, or load with"
            " `strict=False` to skip the mismatched keys."
        )
        raise RuntimeError("\n".join(lines))
    return (load or module.load_state_dict)(state_dict, strict=strict)
