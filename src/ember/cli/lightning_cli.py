"""``LightningCLI``: configure a run from YAML files and the command line.

The YAML format is Lightning's (``trainer:``, ``model:``, ``data:``, ``optimizer:``,
``lr_scheduler:``, ``ckpt_path:``, ``seed_everything:``), so a Lightning config works after its
class paths point at Ember classes. jsonargparse loads only when a parser is built: ``import
ember`` and ``ember --version`` never pay for it.

Example (``main.py``)::

    from ember.cli import LightningCLI
    from my_project import MyModel, MyData

    LightningCLI(MyModel, MyData)      # python main.py fit --config config.yaml --trainer.max_epochs 5

or, with no script at all::

    ember fit --model my_project.MyModel --data my_project.MyData --trainer.max_epochs 5
    ember fit --config config.yaml --print_config > full.yaml
"""

from __future__ import annotations

import copy
import inspect
import os
import sys
import warnings
from argparse import Namespace
from collections.abc import Callable, Iterable, Sequence
from functools import partial, update_wrapper
from types import MethodType
from typing import Any, Union, get_type_hints

from torch.optim import Optimizer

from ember.callbacks.callback import Callback
from ember.cli.types import ArgsType, LRSchedulerTypeTuple, LRSchedulerTypeUnion, ModuleType, ReduceLROnPlateau
from ember.core.datamodule import LightningDataModule
from ember.core.hparams import _given_hyperparameters_context
from ember.core.module import LightningModule
from ember.trainer.trainer import Trainer
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.seed import seed_everything
from ember.utilities.signature_utils import lightning_style_annotations


def _instantiator_name() -> str:
    """What ``save_hyperparameters`` records as ``_instantiator`` for a module the CLI built: Lightning's name.

    Lightning's ``load_from_checkpoint`` imports that name to rebuild the module, and each Lightning package
    records its own: ``lightning.pytorch.cli.instantiate_module`` in ``lightning``,
    ``pytorch_lightning.cli.instantiate_module`` in ``pytorch-lightning``. A program on the alias that
    imported only ``lightning.pytorch`` gets the first; every other program the second.
    """
    from ember.utilities.imports import lightning_package

    return f"{lightning_package() or 'pytorch_lightning'}.cli.instantiate_module"


def argument_parser_class() -> type:
    """``LightningArgumentParser``, importing jsonargparse (it subclasses its parser) on first use."""
    try:
        import jsonargparse  # noqa: F401
    except ImportError as err:
        raise ModuleNotFoundError(
            "The Ember command line needs jsonargparse: install it with `pip install 'ember[cli]'`"
            " (or `pip install 'jsonargparse[signatures]'`)."
        ) from err
    from ember.cli.parser import LightningArgumentParser

    return LightningArgumentParser


class SaveConfigCallback(Callback):
    """Writes the run's full config to ``<log_dir>/config.yaml`` when the run starts.

    Args:
        parser: the parser that read the config.
        config: the parsed config.
        config_filename: the file name in the log folder.
        overwrite: replace an existing file (by default an existing file is an error, to protect an earlier run).
        multifile: keep the structure of several input config files.
        save_to_log_dir: write into the log folder; set False only in a subclass that overrides ``save_config``.

    Example::

        class LogConfig(SaveConfigCallback):
            def save_config(self, trainer, pl_module, stage):
                trainer.logger.log_hyperparams({"config": self.parser.dump(self.config, skip_none=False)})

        LightningCLI(MyModel, save_config_callback=LogConfig)
    """

    def __init__(
        self,
        parser: Any,
        config: Namespace,
        config_filename: str = "config.yaml",
        overwrite: bool = False,
        multifile: bool = False,
        save_to_log_dir: bool = True,
    ) -> None:
        self.parser = parser
        self.config = config
        self.config_filename = config_filename
        self.overwrite = overwrite
        self.multifile = multifile
        self.save_to_log_dir = save_to_log_dir
        self.already_saved = False
        if not save_to_log_dir and type(self).save_config is SaveConfigCallback.save_config:
            raise ValueError(
                "`save_to_log_dir=False` only makes sense when subclassing SaveConfigCallback to implement "
                "`save_config` and it is desired to disable the standard behavior of saving to log_dir."
            )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            from ember.checkpoint import get_filesystem

            log_dir = trainer.log_dir or trainer.default_root_dir
            config_path = os.path.join(log_dir, self.config_filename)
            fs = get_filesystem(log_dir)
            if not self.overwrite:
                file_exists = fs.isfile(config_path) if trainer.is_global_zero else False
                if trainer.world_size > 1:
                    file_exists = trainer.strategy.broadcast(file_exists)  # all ranks: agree before raising
                if file_exists:
                    raise RuntimeError(
                        f"{self.__class__.__name__} expected {config_path} to NOT exist. Aborting to avoid overwriting"
                        " results of a previous run. You can delete the previous config file,"
                        " set `LightningCLI(save_config_callback=None)` to disable config saving,"
                        ' or set `LightningCLI(save_config_kwargs={"overwrite": True})` to overwrite the config file.'
                    )
            if trainer.is_global_zero:
                fs.makedirs(log_dir, exist_ok=True)
                self.parser.save(
                    self.config, config_path, overwrite=self.overwrite, multifile=self.multifile, **_keep_none()
                )
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        if trainer.world_size > 1:
            self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Override to save the config somewhere else as well (runs on rank zero only: no collectives here)."""


class LightningCLI:
    """A command line (and YAML) front end for a LightningModule, a datamodule and the Trainer.

    Subcommands ``fit``, ``validate``, ``test`` and ``predict`` call the Trainer method of that name;
    every Trainer argument is ``--trainer.<name>``, the model's and datamodule's ``__init__`` arguments
    are ``--model.<name>`` / ``--data.<name>``, and ``--optimizer`` / ``--lr_scheduler`` configure
    ``configure_optimizers`` without code. ``--config`` reads YAML (several are merged in order,
    later options win) and ``--print_config`` prints the merged config.

    Example::

        class MyCLI(LightningCLI):
            def add_arguments_to_parser(self, parser):
                parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

        MyCLI(MyModel, MyDataModule)   # python main.py fit --config config.yaml
    """

    def __init__(
        self,
        model_class: type[LightningModule] | Callable[..., LightningModule] | None = None,
        datamodule_class: type[LightningDataModule] | Callable[..., LightningDataModule] | None = None,
        save_config_callback: type[SaveConfigCallback] | None = SaveConfigCallback,
        save_config_kwargs: dict[str, Any] | None = None,
        trainer_class: type[Trainer] | Callable[..., Trainer] = Trainer,
        trainer_defaults: dict[str, Any] | None = None,
        seed_everything_default: bool | int = True,
        parser_kwargs: dict[str, Any] | dict[str, dict[str, Any]] | None = None,
        parser_class: type | None = None,
        subclass_mode_model: bool = False,
        subclass_mode_data: bool = False,
        args: ArgsType = None,
        run: bool = True,
        auto_configure_optimizers: bool = True,
        load_from_checkpoint_support: bool = True,
    ) -> None:
        self.save_config_callback = save_config_callback
        self.save_config_kwargs = save_config_kwargs or {}
        self.trainer_class = trainer_class
        self.trainer_defaults = trainer_defaults or {}
        self.seed_everything_default = seed_everything_default
        self.parser_kwargs = parser_kwargs or {}
        self.parser_class = parser_class if parser_class is not None else argument_parser_class()
        self.auto_configure_optimizers = auto_configure_optimizers
        self.load_from_checkpoint_support = load_from_checkpoint_support
        self._instantiators: list[tuple[Callable[..., Any], Any, bool]] = []

        self.model_class = model_class
        self._model_class = model_class or LightningModule
        self.subclass_mode_model = (model_class is None) or subclass_mode_model
        self.datamodule_class = datamodule_class
        self._datamodule_class = datamodule_class or LightningDataModule
        self.subclass_mode_data = (datamodule_class is None) or subclass_mode_data

        main_kwargs, subparser_kwargs = self._setup_parser_kwargs(self.parser_kwargs)
        self.setup_parser(run, main_kwargs, subparser_kwargs)
        self.parse_arguments(self.parser, args)
        self._parse_ckpt_path()
        self.subcommand = self.config["subcommand"] if run else None
        self._set_seed()
        if load_from_checkpoint_support:
            self._add_instantiators()
        self.before_instantiate_classes()
        self.instantiate_classes()
        self.after_instantiate_classes()
        if self.subcommand is not None:
            self._run_subcommand(self.subcommand)

    # ---- parser construction --------------------------------------------------------------
    def _setup_parser_kwargs(self, parser_kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        names = self.subcommands().keys()
        main_kwargs = {k: v for k, v in parser_kwargs.items() if k not in names}
        subparser_kwargs = {k: v for k, v in parser_kwargs.items() if k in names}
        return main_kwargs, subparser_kwargs

    def init_parser(self, **kwargs: Any) -> Any:
        """Create the parser, with ``-c/--config`` for YAML or JSON files."""
        from jsonargparse import ActionConfigFile

        from ember._version import __version__

        kwargs.setdefault("dump_header", [f"ember=={__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c", "--config", action=ActionConfigFile, help="Path to a configuration file in json or yaml format."
        )
        return parser

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        """Build the parser, with one subparser per subcommand when ``run`` is True."""
        self.parser = self.init_parser(**main_kwargs)
        if add_subcommands:
            self._subcommand_method_arguments: dict[str, list[str]] = {}
            self._add_subcommands(self.parser, **subparser_kwargs)
        else:
            self._add_arguments(self.parser)

    def add_default_arguments_to_parser(self, parser: Any) -> None:
        """Add ``--seed_everything``."""
        parser.add_argument(
            "--seed_everything",
            type=Union[bool, int],
            default=self.seed_everything_default,
            help=(
                "Set to an int to run seed_everything with this value before classes instantiation."
                "Set to True to use a random seed."
            ),
        )

    def add_core_arguments_to_parser(self, parser: Any) -> None:
        """Add the ``trainer``, ``model`` and ``data`` groups."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        trainer_defaults = {"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"}
        parser.set_defaults(trainer_defaults)
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        if self.datamodule_class is not None:
            parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data)
        else:
            parser.add_lightning_class_args(
                self._datamodule_class, "data", subclass_mode=self.subclass_mode_data, required=False
            )

    def _add_arguments(self, parser: Any) -> None:
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        if self.auto_configure_optimizers:
            if not parser._optimizers:
                parser.add_optimizer_args((Optimizer,))
            if not parser._lr_schedulers:
                parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        self.link_optimizers_and_lr_schedulers(parser)

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Override to add arguments or links, e.g. ``parser.link_arguments("data.num_classes", "model.num_classes")``."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """The subcommands, each with the Trainer-method arguments the CLI fills in itself."""
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
            "test": {"model", "dataloaders", "datamodule"},
            "predict": {"model", "dataloaders", "datamodule"},
        }

    def _add_subcommands(self, parser: Any, **kwargs: Any) -> None:
        from ember.cli.parser import _class_from_function_once

        self._subcommand_parsers: dict[str, Any] = {}
        parser_subcommands = parser.add_subcommands()
        trainer_class = (
            self.trainer_class
            if isinstance(self.trainer_class, type)
            else _class_from_function_once(self.trainer_class)
        )
        for subcommand in self.subcommands():
            fn = getattr(trainer_class, subcommand)
            description = _short_description(fn)
            subparser_kwargs = kwargs.get(subcommand, {})
            subparser_kwargs.setdefault("description", description)
            subcommand_parser = self._prepare_subcommand_parser(trainer_class, subcommand, **subparser_kwargs)
            self._subcommand_parsers[subcommand] = subcommand_parser
            parser_subcommands.add_subcommand(subcommand, subcommand_parser, help=description)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> Any:
        parser = self.init_parser(**kwargs)
        self._add_arguments(parser)
        skip: set[str | int] = set(self.subcommands()[subcommand])
        added = parser.add_method_arguments(klass, subcommand, skip=skip)
        self._subcommand_method_arguments[subcommand] = added
        return parser

    @staticmethod
    def link_optimizers_and_lr_schedulers(parser: Any) -> None:
        """Link optimizer and scheduler groups that name a ``link_to`` target."""
        for key, (class_type, link_to) in {**parser._optimizers, **parser._lr_schedulers}.items():
            if link_to == "AUTOMATIC":
                continue
            if isinstance(class_type, tuple):
                parser.link_arguments(key, link_to)
            else:
                parser.link_arguments(key, link_to, compute_fn=partial(_global_add_class_path, class_type))

    # ---- parsing ----------------------------------------------------------------------------
    def parse_arguments(self, parser: Any, args: ArgsType) -> None:
        """Parse ``args`` (a list of command line strings, a dict, or None for ``sys.argv``) into ``self.config``."""
        from jsonargparse import Namespace

        if args is not None and len(sys.argv) > 1:  # a dict or the same list too, as in Lightning
            rank_zero_warn(
                "LightningCLI's args parameter is intended to run from within Python like if it were from the command "
                "line. To prevent mistakes it is not recommended to provide both args and command line arguments, got: "
                f"sys.argv[1:]={sys.argv[1:]}, args={args}."
            )
        if isinstance(args, str) or not (args is None or isinstance(args, (dict, Namespace, Iterable))):
            # (text was read a letter at a time, "invalid choice: 'f'"; a number was "not iterable")
            example = f" (`args={args!r}.split()`)" if isinstance(args, str) else ""
            raise TypeError(
                f"`LightningCLI(args={args!r})` must be a list of command line strings{example}, a dict or a"
                f" Namespace of the config, or None to read `sys.argv`; not {type(args).__name__}."
            )
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    def _parse_ckpt_path(self) -> None:
        """With ``ckpt_path`` given, take the model's hyperparameters from the checkpoint (safe load, plain data only)."""
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not ckpt_path or not os.path.isfile(ckpt_path):
            return
        from ember.checkpoint import load_checkpoint
        from ember.checkpoint.safe_load import loaded_object

        checkpoint = load_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        model_config = self.config[self.config.subcommand].get("model")
        class_path = model_config.get("class_path") if hasattr(model_config, "get") else None
        saved_class = hparams.pop("_class_path", None)
        if saved_class is not None:
            configured = loaded_object(class_path) if class_path else _get_module_type(self._model_class)
            class_path = self._class_path_from_checkpoint(str(saved_class), configured) or class_path
        for key in [k for k, v in hparams.items() if _unloaded_class_paths(v)]:
            names = ", ".join(_unloaded_class_paths(hparams.pop(key)))
            rank_zero_warn(
                f"Ignoring the checkpoint's `{key}`: it names {names}, which this program has not imported, and a"
                f" checkpoint never causes an import. The config's `model.{key}` is used."
            )
        if not hparams:
            return
        if class_path:
            # subclass mode: the values are the init arguments of the class the config chose
            hparams = {"class_path": class_path, "init_args": hparams}
        try:
            self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def _class_path_from_checkpoint(self, saved: str, configured: Any) -> str | None:
        """The model class that the checkpoint's ``_class_path`` (``saved``) selects, or ``None`` to keep ``configured``.

        As in Lightning, a checkpoint saved in subclass mode rebuilds its own class, even over ``--model``: a
        subclass with arguments of its own cannot be rebuilt as the base class. Safe loading sets two limits: the
        class must be one the config itself accepts (a subclass of the model class given to ``LightningCLI``, in
        subclass mode), and one the program has already imported. The name is looked up among the loaded modules
        only, and parsing the returned path finds its module loaded, so a checkpoint never causes an import, and
        never runs code that the program and its config did not choose. Any other ``_class_path`` is ignored with a
        warning that says why; the model class then comes from the config.
        """
        from ember.checkpoint.safe_load import loaded_object

        chosen = loaded_object(saved)
        if chosen is not None and chosen is configured:
            return None  # the class the config chose: nothing to change, nothing to say
        base = _get_module_type(self._model_class)
        base_name = getattr(base, "__qualname__", repr(base))
        if not self.subclass_mode_model:
            reason = f"the model class is {base_name} (`subclass_mode_model=False`)"
        elif chosen is None:
            reason = "this program has not imported it, and a checkpoint never causes an import (`--model` chooses it)"
        elif not (isinstance(chosen, type) and isinstance(base, type) and issubclass(chosen, base)):
            reason = f"it is not a subclass of {base_name}, the model class of this LightningCLI"
        elif loaded_object(_class_path_from_class(chosen)) is not chosen:
            # parsing imports the class by its module's name: that module must be loaded too
            reason = f"its module {chosen.__module__} is not loaded under that name"
        else:
            return _class_path_from_class(chosen)
        rank_zero_warn(
            f"Ignoring `_class_path` found in the checkpoint's hyperparameters, {saved}: {reason}."
            " The model class comes from the config."
        )
        return None

    def _set_seed(self) -> None:
        config_seed = self._get(self.config, "seed_everything")
        if config_seed is False:
            return
        config_seed = (
            seed_everything(workers=True) if config_seed is True else seed_everything(config_seed, workers=True)
        )
        if self.subcommand:
            self.config[self.subcommand]["seed_everything"] = config_seed
        else:
            self.config["seed_everything"] = config_seed

    # ---- instantiation ----------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        """Override to run code before the classes are instantiated."""

    def _dump_config(self) -> None:
        """``self.config_dump``: the config as plain data (the subcommand's part), what the modules record."""
        if hasattr(self, "config_dump"):
            return
        import yaml

        dumped = self.parser.dump(self.config, skip_link_targets=False, format="yaml", **_keep_none())
        self.config_dump = yaml.safe_load(dumped)
        if "subcommand" in self.config:
            self.config_dump = self.config_dump[self.config.subcommand]

    def _add_instantiators(self) -> None:
        """Build the model and datamodule so that ``save_hyperparameters`` records the config that built them.

        As in Lightning: an argument such as ``backbone: nn.Module`` is saved as its ``class_path``/``init_args``
        (not the object), a subclass chosen by ``class_path`` as ``_class_path``, plus ``_instantiator``.
        They are registered on the parser too, as Lightning does, so that a subclass building the classes with
        ``self.parser.instantiate_classes(self.config)`` records the config as well.
        """
        self._instantiators = [
            (_InstantiatorFn(self, "model"), _get_module_type(self._model_class), self.subclass_mode_model),
            (_InstantiatorFn(self, "data"), _get_module_type(self._datamodule_class), self.subclass_mode_data),
        ]
        if hasattr(self.parser, "add_instantiator"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # jsonargparse >= 4.49 prefers per-call ones
                for instantiator, class_type, subclasses in self._instantiators:
                    self.parser.add_instantiator(instantiator, class_type, subclasses=subclasses)

    def instantiate_classes(self) -> None:
        """Instantiate the datamodule, the model and the trainer from the config."""
        self.config_init = _instantiate(self.parser, self.config, self._instantiators)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()

    def after_instantiate_classes(self) -> None:
        """Override to run code after the classes are instantiated."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Create the Trainer from the ``trainer`` group, adding configured callbacks and ``SaveConfigCallback``."""
        extra_callbacks = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        return self._instantiate_trainer(trainer_config, extra_callbacks)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        key = "callbacks"
        if key in config:
            if config[key] is None:
                config[key] = []
            elif not isinstance(config[key], list):
                config[key] = [config[key]]
            config[key].extend(callbacks)
            if key in self.trainer_defaults:
                config[key] += _build_callbacks(self.trainer_defaults[key])
            if self.save_config_callback and not config.get("fast_dev_run", False):
                config_callback = self.save_config_callback(
                    self._parser(self.subcommand),
                    self.config.get(str(self.subcommand), self.config),
                    **self.save_config_kwargs,
                )
                config[key].append(config_callback)
        else:
            rank_zero_warn(
                f"The `{self.trainer_class.__qualname__}` class does not expose the `{key}` argument so they will"
                " not be included."
            )
        return self.trainer_class(**config)

    def _parser(self, subcommand: str | None) -> Any:
        if subcommand is None:
            return self.parser
        return self._subcommand_parsers[subcommand]

    @staticmethod
    def configure_optimizers(
        lightning_module: LightningModule, optimizer: Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        """Override to customise what the configured optimizer and scheduler turn into."""
        if lr_scheduler is None:
            return optimizer
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": lr_scheduler, "monitor": lr_scheduler.monitor},
            }
        return [optimizer], [lr_scheduler]

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """Give the model a ``configure_optimizers`` built from the ``optimizer``/``lr_scheduler`` groups."""
        if not self.auto_configure_optimizers:
            return
        parser = self._parser(subcommand)

        def automatic(class_type: Any, register: dict[str, tuple[Any, str]]) -> list[str]:
            keys = []
            for key, (base_class, link_to) in register.items():
                bases = base_class if isinstance(base_class, tuple) else (base_class,)
                if link_to == "AUTOMATIC" and any(issubclass(c, class_type) for c in bases):
                    keys.append(key)
            return keys

        optimizers = automatic(Optimizer, parser._optimizers)
        lr_schedulers = automatic(LRSchedulerTypeTuple, parser._lr_schedulers)
        if not optimizers:
            return
        if len(optimizers) > 1 or len(lr_schedulers) > 1:
            raise MisconfigurationException(
                f"`{self.__class__.__name__}.add_configure_optimizers_method_to_model` expects at most one optimizer "
                f"and one lr_scheduler to be 'AUTOMATIC', but found {optimizers + lr_schedulers}. In this case the "
                "user is expected to link the argument groups and implement `configure_optimizers`, see "
                "https://lightning.ai/docs/pytorch/stable/common/lightning_cli.html"
                "#optimizers-and-learning-rate-schedulers"
            )
        optimizer_class = parser._optimizers[optimizers[0]][0]
        optimizer_init = self._get(self.config_init, optimizers[0])
        if not isinstance(optimizer_class, tuple):
            optimizer_init = _global_add_class_path(optimizer_class, optimizer_init)
        if not optimizer_init:
            return  # no optimizer configured: the model's own configure_optimizers stays
        lr_scheduler_init = None
        if lr_schedulers:
            lr_scheduler_class = parser._lr_schedulers[lr_schedulers[0]][0]
            lr_scheduler_init = self._get(self.config_init, lr_schedulers[0])
            if not isinstance(lr_scheduler_class, tuple):
                lr_scheduler_init = _global_add_class_path(lr_scheduler_class, lr_scheduler_init)
        if type(self.model).configure_optimizers is not LightningModule.configure_optimizers:
            rank_zero_warn(
                f"`{self.model.__class__.__name__}.configure_optimizers` will be overridden by "
                f"`{self.__class__.__name__}.configure_optimizers`."
            )
        optimizer = instantiate_class(self.model.parameters(), optimizer_init)
        lr_scheduler = instantiate_class(optimizer, lr_scheduler_init) if lr_scheduler_init else None
        fn = partial(self.configure_optimizers, optimizer=optimizer, lr_scheduler=lr_scheduler)
        update_wrapper(fn, self.configure_optimizers)
        self.model.configure_optimizers = MethodType(fn, self.model)

    def _get(self, config: Any, key: str, default: Any = None) -> Any:
        """A config value, looked up inside the subcommand's section when there is one."""
        return config.get(str(self.subcommand), config).get(key, default)

    # ---- running ------------------------------------------------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        before_fn = getattr(self, f"before_{subcommand}", None)
        if callable(before_fn):
            before_fn()
        default = getattr(self.trainer, subcommand)
        fn = getattr(self, subcommand, default)
        fn(**self._prepare_subcommand_kwargs(subcommand))
        after_fn = getattr(self, f"after_{subcommand}", None)
        if callable(after_fn):
            after_fn()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        fn_kwargs = {
            k: v for k, v in self.config_init[subcommand].items() if k in self._subcommand_method_arguments[subcommand]
        }
        fn_kwargs["model"] = self.model
        if self.datamodule is not None:
            fn_kwargs["datamodule"] = self.datamodule
        return fn_kwargs


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _class_path_from_class(class_type: type) -> str:
    return class_type.__module__ + "." + class_type.__name__


def _global_add_class_path(class_type: type, init_args: Any = None) -> dict[str, Any]:
    if hasattr(init_args, "as_dict"):
        init_args = init_args.as_dict()
    return {"class_path": _class_path_from_class(class_type), "init_args": init_args or {}}


def instantiate_class(args: Any, init: dict[str, Any]) -> Any:
    """Create ``init["class_path"]`` with positional ``args`` and ``init["init_args"]``.

    Example::

        opt = instantiate_class(model.parameters(), {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}})
    """
    import importlib

    kwargs = init.get("init_args", {})
    if not isinstance(args, tuple):
        args = (args,)
    class_module, class_name = init["class_path"].rsplit(".", 1)
    module = importlib.import_module(class_module)
    return getattr(module, class_name)(*args, **kwargs)


def instantiate_module(class_type: type[ModuleType], config: dict[str, Any]) -> ModuleType:
    """Build a module (or datamodule) from the hyperparameters ``LightningCLI`` saved for it, injected objects too.

    ``load_from_checkpoint`` never does this by itself: a checkpoint does not choose the classes to build (see
    ``docs/compat.md``). Call it on hyperparameters you trust; the weights are then yours to load.

    Example::

        checkpoint = torch.load(path, weights_only=True)
        model = instantiate_module(MyModel, checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
    """
    from jsonargparse import ArgumentParser

    config = {k: v for k, v in config.items() if k != "_instantiator"}
    parser = ArgumentParser(exit_on_error=False)
    if "_class_path" in config:
        parser.add_subclass_arguments(class_type, "module", fail_untyped=False)
        config = {
            "class_path": config["_class_path"],
            "dict_kwargs": {k: v for k, v in config.items() if k != "_class_path"},
        }
    else:
        parser.add_class_arguments(class_type, "module", fail_untyped=False)
    cfg = parser.parse_object({"module": config})
    return _instantiate(parser, cfg).module


class _InstantiatorFn:
    """Builds the model (``key="model"``) or datamodule so that its ``save_hyperparameters`` records its config."""

    def __init__(self, cli: LightningCLI, key: str) -> None:
        self.cli = cli
        self.key = key

    def __call__(
        self, class_type: type, *args: Any, applied_instantiation_links: dict | None = None, **kwargs: Any
    ) -> Any:
        self.cli._dump_config()
        hparams = copy.deepcopy(self.cli.config_dump.get(self.key) or {})
        if "class_path" in hparams:
            if not _names_class(hparams["class_path"], class_type):
                # a LightningModule given as an argument of the configured one: it records its own arguments
                return class_type(*args, **kwargs)
            # the values directly, the class in `_class_path`, whether or not the class was chosen by class_path
            hparams = {
                "_class_path": hparams["class_path"],
                **(hparams.get("init_args") or {}),
                **(hparams.get("dict_kwargs") or {}),
            }
        for key, value in (applied_instantiation_links or {}).items():
            if key.startswith(f"{self.key}."):  # a value set by `link_arguments(..., apply_on="instantiate")`
                key = key[len(self.key) + 1 :]
                _set_dict_nested(hparams, key.removeprefix("init_args."), value)
        # the object that records them: the class built, or what the configured function returns
        configured = self.cli._model_class if self.key == "model" else self.cli._datamodule_class
        owner = class_type if isinstance(configured, type) else _get_module_type(configured)
        with _given_hyperparameters_context(hparams, _instantiator_name(), owner if isinstance(owner, type) else None):
            return class_type(*args, **kwargs)


def _names_class(class_path: str, class_type: type) -> bool:
    """Whether ``class_path`` names ``class_type``, looked up among loaded modules only (nothing is imported)."""
    from ember.checkpoint.safe_load import loaded_object

    return loaded_object(class_path) is class_type


def _unloaded_class_paths(value: Any) -> list[str]:
    """The ``class_path`` values inside ``value`` that name nothing the program has loaded."""
    from ember.checkpoint.safe_load import loaded_object

    found: list[str] = []
    if isinstance(value, dict):
        path = value.get("class_path")
        if path is not None and loaded_object(str(path)) is None:
            found.append(str(path))
        for item in value.values():
            found.extend(_unloaded_class_paths(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_unloaded_class_paths(item))
    return found


def _set_dict_nested(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def _get_module_type(value: Any) -> Any:
    """The class a model or datamodule argument builds: the class itself, or a function's return type."""
    if callable(value) and not isinstance(value, type):
        try:
            return get_type_hints(value)["return"]
        except (KeyError, NameError, TypeError):
            return inspect.signature(value).return_annotation
    return value


def _takes_instantiators(parser: Any) -> bool:
    instantiate = getattr(parser, "instantiate", None)
    return instantiate is not None and "instantiators" in inspect.signature(instantiate).parameters


def _instantiate(parser: Any, config: Any, instantiators: Sequence[tuple[Callable[..., Any], Any, bool]] = ()) -> Any:
    """``parser.instantiate`` with per-call ``instantiators`` (jsonargparse >= 4.49), else ``instantiate_classes``."""
    if _takes_instantiators(parser):
        return parser.instantiate(config, instantiators=list(instantiators) or None)
    return parser.instantiate_classes(config)


def _build_callbacks(value: Any) -> list[Any]:
    """``trainer_defaults["callbacks"]`` as callbacks: objects as given, ``class_path``/``init_args`` dicts built."""
    callbacks = list(value) if isinstance(value, (list, tuple)) else [value]
    specs = [c for c in callbacks if isinstance(c, dict) and "class_path" in c]
    if not specs:
        return callbacks
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callbacks", type=list[Callback])
    try:
        built = iter(_instantiate(parser, parser.parse_object({"callbacks": specs})).callbacks)
    except Exception as err:  # jsonargparse's ArgumentError, or the callback's own error
        raise ValueError(
            f"LightningCLI(trainer_defaults={{'callbacks': ...}}) could not build a callback from {specs}: {err}"
        ) from err
    return [next(built) if isinstance(c, dict) and "class_path" in c else c for c in callbacks]


def _keep_none() -> dict[str, bool]:
    """The dump option that keeps ``None`` values (renamed ``skip_unset`` in jsonargparse 4.49)."""
    import jsonargparse

    version = tuple(int(part) for part in jsonargparse.__version__.split(".")[:2] if part.isdigit())
    return {"skip_unset": False} if version >= (4, 49) else {"skip_none": False}


def _short_description(component: object) -> str | None:
    doc = getattr(component, "__doc__", None)
    if not doc:
        return None
    first = doc.strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in first.splitlines())


lightning_style_annotations(LightningCLI)  # Lightning's `typing` forms in the signature
