"""``LightningArgumentParser``: jsonargparse's parser with Lightning's class groups and clearer errors.

Kept apart from ``ember.cli.lightning_cli`` because it subclasses jsonargparse's parser: importing it imports
jsonargparse, which ``ember --version`` and ``import ember`` must not pay for.

Example::

    from ember.cli import LightningArgumentParser

    parser = LightningArgumentParser()
    parser.add_lightning_class_args(Trainer, "trainer")
    cfg = parser.parse_args(["--trainer.max_epochs", "3"])
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

import torch
from jsonargparse import ArgumentParser, class_from_function
from torch.optim import Optimizer

from ember.callbacks.callback import Callback
from ember.cli.types import LRSchedulerType, LRSchedulerTypeTuple
from ember.core.datamodule import LightningDataModule
from ember.core.module import LightningModule
from ember.trainer.trainer import Trainer
from ember.utilities.exceptions import MisconfigurationException

try:  # torch's lazily imported submodules confuse jsonargparse's import-path resolution
    from jsonargparse import register_unresolvable_import_paths

    register_unresolvable_import_paths(torch)
except ImportError:  # pragma: no cover - older jsonargparse
    pass

# `--config s3://bucket/config.yaml` (any fsspec URL) reads through fsspec, as Lightning sets it up
try:
    from jsonargparse import set_parsing_settings

    set_parsing_settings(config_read_mode_fsspec_enabled=True)
except ImportError:  # pragma: no cover - jsonargparse before 4.39
    from jsonargparse import set_config_read_mode

    set_config_read_mode(fsspec_enabled=True)

_PUBLIC_PACKAGES = (
    "ember.callbacks",
    "ember.loggers",
    "ember.profilers",
    "ember.strategies",
    "ember.accelerators",
    "ember.plugins",
)


def _import_public_classes() -> None:
    """Import every public callback, logger, profiler, strategy, accelerator and plugin class.

    jsonargparse resolves a short name (``--trainer.logger=CSVLogger``, ``--trainer.callbacks+=EarlyStopping``)
    among the loaded subclasses of the argument's type, and lists them in ``--help``. Ember loads these
    classes on first use, so the parser loads them first; their optional backends (tensorboard, wandb, ...)
    still load only when a logger is created.
    """
    import importlib

    for package in _PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            getattr(module, name)


_import_public_classes()


def _class_from_function_once(function: Callable[..., Any]) -> type:
    """jsonargparse's ``class_from_function``, named after the function object itself.

    jsonargparse names the class after the function's name alone and refuses a second function of the same name
    (two modules' ``make_trainer``, or a notebook cell run twice); each function object gets its own class here,
    and the same function always the same class.
    """
    where = f"{function.__module__}.{function.__qualname__}"
    name = "".join(c if c.isalnum() else "_" for c in where) + f"_{id(function):x}_class"
    return class_from_function(function, name=name)


class LightningArgumentParser(ArgumentParser):
    """jsonargparse's ``ArgumentParser`` with groups for Lightning classes, optimizers and schedulers.

    Errors about an unknown option or config key name the nearest valid one.

    Example::

        parser = LightningArgumentParser()
        parser.add_lightning_class_args(MyModel, "model")
        parser.add_optimizer_args(torch.optim.Adam)
    """

    def __init__(
        self,
        *args: Any,
        description: str = "Lightning Trainer command line tool",
        env_prefix: str = "PL",
        default_env: bool = False,
        **kwargs: Any,
    ) -> None:
        # no abbreviations: `--trainer.max_epoch` must be an error that names `--trainer.max_epochs`,
        # not a silent match
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, description=description, env_prefix=env_prefix, default_env=default_env, **kwargs)
        self.callback_keys: list[str] = []
        self._optimizers: dict[str, tuple[type | tuple[type, ...], str]] = {}
        self._lr_schedulers: dict[str, tuple[type | tuple[type, ...], str]] = {}

    def add_lightning_class_args(
        self,
        lightning_class: Callable[..., Any] | type,
        nested_key: str,
        subclass_mode: bool = False,
        required: bool = True,
    ) -> list[str]:
        """Add the ``__init__`` arguments of a Trainer, LightningModule, LightningDataModule or Callback under ``nested_key``.

        With ``subclass_mode`` any subclass may be chosen with ``class_path`` (``--model my.Model``).
        """
        if isinstance(lightning_class, (Trainer, LightningModule, LightningDataModule, Callback)):
            # (a module is callable, and was taken for a function: "'M' object has no attribute '__qualname__'")
            kind = type(lightning_class).__name__
            raise MisconfigurationException(
                f"Cannot add arguments from: an instance of {kind}. Pass the class, `{kind}`, not an object made from"
                " it: the command line makes the object from its arguments."
            )
        if callable(lightning_class) and not isinstance(lightning_class, type):
            lightning_class = _class_from_function_once(lightning_class)
        if isinstance(lightning_class, type) and issubclass(
            lightning_class, (Trainer, LightningModule, LightningDataModule, Callback)
        ):
            if issubclass(lightning_class, Callback):
                self.callback_keys.append(nested_key)
            if subclass_mode:
                return self.add_subclass_arguments(lightning_class, nested_key, fail_untyped=False, required=required)
            return self.add_class_arguments(
                lightning_class,
                nested_key,
                fail_untyped=False,
                instantiate=not issubclass(lightning_class, Trainer),
                sub_configs=True,
            )
        raise MisconfigurationException(
            f"Cannot add arguments from: {lightning_class}. You should provide either a callable or a subclass of: "
            "Trainer, LightningModule, LightningDataModule, or Callback."
        )

    def add_optimizer_args(
        self,
        optimizer_class: type[Optimizer] | tuple[type[Optimizer], ...] = (Optimizer,),
        nested_key: str = "optimizer",
        link_to: str = "AUTOMATIC",
    ) -> None:
        """Add an optimizer group (``--optimizer Adam --optimizer.lr 0.01``); a tuple allows any subclass."""
        classes = optimizer_class if isinstance(optimizer_class, tuple) else (optimizer_class,)
        if not all(isinstance(c, type) and issubclass(c, Optimizer) for c in classes):
            raise MisconfigurationException(
                f"`add_optimizer_args` expects Optimizer subclasses, got {optimizer_class!r}."
            )
        kwargs: dict[str, Any] = {"instantiate": False, "fail_untyped": False, "skip": {"params"}}
        if isinstance(optimizer_class, tuple):
            self.add_subclass_arguments(optimizer_class, nested_key, **kwargs)
        else:
            self.add_class_arguments(optimizer_class, nested_key, sub_configs=True, **kwargs)
        self._optimizers[nested_key] = (optimizer_class, link_to)

    def add_lr_scheduler_args(
        self,
        lr_scheduler_class: LRSchedulerType | tuple[LRSchedulerType, ...] = LRSchedulerTypeTuple,
        nested_key: str = "lr_scheduler",
        link_to: str = "AUTOMATIC",
    ) -> None:
        """Add a learning rate scheduler group (``--lr_scheduler StepLR --lr_scheduler.step_size 5``)."""
        classes = lr_scheduler_class if isinstance(lr_scheduler_class, tuple) else (lr_scheduler_class,)
        if not all(isinstance(c, type) and issubclass(c, LRSchedulerTypeTuple) for c in classes):
            raise MisconfigurationException(
                f"`add_lr_scheduler_args` expects LRScheduler or ReduceLROnPlateau subclasses, got {lr_scheduler_class!r}."
            )
        kwargs: dict[str, Any] = {"instantiate": False, "fail_untyped": False, "skip": {"optimizer"}}
        if isinstance(lr_scheduler_class, tuple):
            self.add_subclass_arguments(lr_scheduler_class, nested_key, **kwargs)
        else:
            self.add_class_arguments(lr_scheduler_class, nested_key, sub_configs=True, **kwargs)
        self._lr_schedulers[nested_key] = (lr_scheduler_class, link_to)

    def error(self, message: str, ex: Exception | None = None) -> Any:
        """Report a parse error, adding the nearest valid option when a name was mistyped."""
        return super().error(_explain(self, message), ex)


# ---------------------------------------------------------------------------------------------
# clearer errors
# ---------------------------------------------------------------------------------------------
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")
_UNEXPECTED_KEY = re.compile(r"""[Kk]ey ["']([\w.\-]+)["'] is not expected""")
_NOT_ACCEPTED = re.compile(r"""does not accept (?:option|nested key)s? ["']([\w.\-]+)["']""")
_PARSER_KEY = re.compile(r"""Parser key ["']([\w.\-]+)["']""")
_INIT_ARG = re.compile(
    r"""class_path ["']([\w.]+)["']:\s*(?:Option|Key) ["']([\w\-]+)["'] is not (?:accepted|expected)"""
)
_REQUIRED = re.compile(r"arguments are required: (.*)")
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_BAD_CLASS_PATH = re.compile(r"""class_path ["']([\w.]+)["']""")
_BARE_CLASS_NAME = re.compile(r"Expected a dot import path string: (\w+)$", re.MULTILINE)


def _option_names(parser: ArgumentParser) -> list[str]:
    """Every dotted option this parser (and, for subcommands, the chosen subparser) accepts."""
    names: list[str] = []
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                names.append(option[2:])
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for sub in choices.values():
                if isinstance(sub, ArgumentParser):
                    names.extend(_option_names(sub))
    return sorted(set(names))


def _subcommands_taking(parser: ArgumentParser, name: str) -> list[str]:
    """The subcommands (``fit``, ``validate``, ...) whose options include ``name``, where ``parser``'s own do not."""
    found: list[str] = []
    for action in parser._actions:
        if f"--{name}" in action.option_strings:
            return []
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            found += [sub for sub, p in choices.items() if isinstance(p, ArgumentParser) and name in _option_names(p)]
    return found


def _nearest(name: str, candidates: list[str]) -> str | None:
    name = name.lstrip("-").split("=", 1)[0]
    candidates = [c for c in candidates if c.rpartition(".")[2] != "help"]
    group, _, leaf = name.rpartition(".")
    groups = {c.rpartition(".")[0] for c in candidates if "." in c} | set(candidates)
    if group and group not in groups:
        # a mistyped group (`--modle.hidden`): fix the group, keep the leaf; subclass groups such as
        # `model` accept their init arguments without listing them
        fixed = difflib.get_close_matches(group, sorted(groups), n=1, cutoff=0.6)
        if not fixed:
            return None
        group = fixed[0]
        name = f"{group}.{leaf}"
        if name in candidates or not any(c.startswith(group + ".") and c != group for c in candidates):
            return name
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if match:
        return match[0]
    # a wrong leaf under a right group: compare the last part only, among the group's options
    same_group = [c for c in candidates if c.rpartition(".")[0] == group]
    leaves = difflib.get_close_matches(leaf, [c.rpartition(".")[2] for c in same_group], n=1, cutoff=0.5)
    return f"{group}.{leaves[0]}" if leaves and group else None


def _init_arg_names(class_path: str) -> list[str]:
    import importlib
    import inspect

    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        params = inspect.signature(cls).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _bare_class_names(message: str) -> list[str]:
    """A note for each class named without its module (`--model MyModel`): jsonargparse finds a short name only
    among the subclasses already imported, and says just "Expected a dot import path string"."""
    key = _PARSER_KEY.search(message)
    option = f"--{key.group(1)} " if key else ""
    return [
        f"`{name}` is a class name without its module: give its import path, e.g. `{option}my_package.{name}`"
        " (the `ember` command imports modules from the current folder)."
        for name in _BARE_CLASS_NAME.findall(message)
    ]


def _explain(parser: ArgumentParser, message: str) -> str:
    notes: list[str] = []
    candidates = _option_names(parser)
    found = _UNRECOGNIZED.search(message)
    if found:
        for token in found.group(1).split():
            if token.startswith("--"):
                option = token.split("=", 1)[0]
                subcommands = _subcommands_taking(parser, option[2:])
                if subcommands:  # a right option before the subcommand (`main.py --trainer.max_epochs=1 fit`)
                    notes.append(
                        f"`{option}` is an option of the subcommands ({', '.join(subcommands)}): give it after"
                        f" the subcommand, e.g. `{parser.prog} {subcommands[0]} {token}`."
                    )
                    continue
                nearest = _nearest(token, candidates)
                if nearest:
                    notes.append(f"`{token.split('=', 1)[0]}` is not an option: did you mean `--{nearest}`?")
    for key in _UNEXPECTED_KEY.findall(message) + _NOT_ACCEPTED.findall(message):
        nearest = _nearest(key, candidates)
        if nearest:
            notes.append(f"`{key}` is not a valid key: did you mean `{nearest}`?")
    named = set(_BAD_CLASS_PATH.findall(message))
    for class_path, arg in _INIT_ARG.findall(message):
        if any(arg in _init_arg_names(other) for other in named - {class_path}):
            continue  # another class the value could be takes it: that class's own error is the one to read
        parser_key = _PARSER_KEY.search(message)
        prefix = f"{parser_key.group(1)}." if parser_key else ""
        arg_names = _init_arg_names(class_path)
        close = difflib.get_close_matches(arg, arg_names, n=1, cutoff=0.5)
        hint = f" did you mean `{prefix}{close[0]}`?" if close else ""
        notes.append(
            f"`{prefix}{arg}` is not an argument of {class_path}:{hint} (it takes: {', '.join(arg_names) or 'none'})"
        )
    required = _REQUIRED.search(message)
    if required:
        for key in required.group(1).replace(",", " ").split():
            group = key.rpartition(".")[2]
            if group in ("model", "data"):
                kind = "LightningModule" if group == "model" else "LightningDataModule"
                notes.append(
                    f"Choose the {kind}: `--{group} my_package.MyClass` (plus `--{group}.<argument> value`), or a"
                    f" config file with `{group}: {{class_path: my_package.MyClass, init_args: {{...}}}}`."
                )
    module = _NO_MODULE.search(message)
    if module:
        class_path = _BAD_CLASS_PATH.search(message)
        where = f" (from class_path '{class_path.group(1)}')" if class_path else ""
        notes.append(
            f"The module '{module.group(1)}'{where} could not be imported: check the spelling, and that its package"
            " is installed or its folder is on PYTHONPATH (the `ember` command adds the current folder)."
        )
    notes += _bare_class_names(message)
    # jsonargparse reports one error through every parser level (the subcommand's, then the root's): a note
    # is added once
    notes = [note for note in dict.fromkeys(notes) if note not in message]
    if not notes:
        return message
    return message.rstrip() + "\n" + "\n".join(notes)
