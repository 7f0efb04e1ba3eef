"""``LightningCLI`` programs run the same way on Ember and on Lightning 2.6.6, returning plain data to compare.

Each program takes the framework's top-level module (``ember`` or ``pytorch_lightning``); nothing here imports
either. ``tests/fixtures/make_lightning_cli_reference.py`` stores Lightning's results in
``tests/fixtures/lightning_cli_reference.json``; ``tests/cli/test_lightning_cli_parity.py`` compares Ember's.

Example::

    import ember
    define_classes(ember)
    run_case(ember, "injected_hparams", tmp_path)
"""

# no `from __future__ import annotations`: the classes are defined inside a function, so their annotations
# must be objects (jsonargparse could not resolve `cli.OptimizerCallable` from this module's globals)
import contextlib
import enum
import importlib
import inspect
import io
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

HERE = __name__  # class paths name this module: tests.helpers.cli_programs


def define_classes(pl: ModuleType) -> None:
    """Create the modules the programs configure, for the framework ``pl``, as this module's attributes."""
    cli = importlib.import_module(f"{pl.__name__}.cli")

    class InjectedModel(pl.LightningModule):
        """A model receiving its layer and its optimizer from the config (dependency injection)."""

        def __init__(
            self, backbone: nn.Module, optimizer: cli.OptimizerCallable = torch.optim.Adam, hidden: int = 3
        ) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.backbone = backbone
            self.optimizer = optimizer

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.backbone(x), y)

        def configure_optimizers(self) -> Any:
            return self.optimizer(self.parameters())

    class PlainModel(pl.LightningModule):
        """A model with plain arguments only."""

        def __init__(self, hidden: int = 3, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = nn.Linear(4, 2)

    class Data(pl.LightningDataModule):
        """Eight samples of four features and two targets."""

        def __init__(self, batch_size: int = 4) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.batch_size = batch_size

        def train_dataloader(self) -> DataLoader:
            g = torch.Generator().manual_seed(0)
            return DataLoader(TensorDataset(torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)))

    def make_trainer(max_epochs: int = 2, limit_train_batches: int = 1) -> pl.Trainer:
        """A function building the Trainer, given as ``trainer_class``."""
        return pl.Trainer(max_epochs=max_epochs, limit_train_batches=limit_train_batches, logger=False)

    for obj in (InjectedModel, PlainModel, Data, make_trainer):
        obj.__module__ = HERE
        obj.__qualname__ = obj.__name__
        globals()[obj.__name__] = obj


def _injected(extra: list[str]) -> list[str]:
    return [
        "--model.backbone=torch.nn.Linear",
        "--model.backbone.in_features=4",
        "--model.backbone.out_features=2",
        "--model.optimizer=SGD",
        "--model.optimizer.lr=0.1",
        "--trainer.logger=false",
        *extra,
    ]


# name -> (what LightningCLI gets, what the case returns). `model`/`data`: a class of this module or None;
# `trainer`: "function" for `make_trainer`; `defaults`: trainer_defaults (the string TMP becomes a folder)
CASES: dict[str, dict[str, Any]] = {
    # the hyperparameters a module built from the config records: the config of what it received
    "injected_hparams": {"model": "InjectedModel", "data": "Data", "args": _injected(["--data.batch_size=8"])},
    "subclass_mode_hparams": {
        "model": None,
        "data": None,
        "args": [f"--model={HERE}.PlainModel", "--model.hidden=5", f"--data={HERE}.Data", "--trainer.logger=false"],
    },
    "linked_hparams": {
        "model": "PlainModel",
        "data": "Data",
        "link": ("data.batch_size", "model.hidden"),
        "args": ["--data.batch_size=6", "--trainer.logger=false"],
    },
    # short class names resolve to the framework's classes, and the printed config names them in full
    "short_names": {
        "model": "InjectedModel",
        "data": None,
        "args": [
            "--model.backbone=torch.nn.Linear",
            "--model.backbone.in_features=4",
            "--model.backbone.out_features=2",
            "--model.optimizer=Adam",
            "--trainer.logger=CSVLogger",
            "--trainer.logger.save_dir=TMP",
            "--trainer.callbacks+=EarlyStopping",
            "--trainer.callbacks.monitor=val_loss",
            "--trainer.callbacks+=LearningRateMonitor",
            "--trainer.callbacks+=ModelCheckpoint",
            "--trainer.profiler=SimpleProfiler",
            "--trainer.precision=16",
            "--optimizer=SGD",
            "--optimizer.lr=0.5",
            "--lr_scheduler=StepLR",
            "--lr_scheduler.step_size=2",
        ],
    },
    # a logger's `**kwargs` documented from the writer it is passed to (torch's SummaryWriter)
    "tensorboard_logger": {
        "model": "PlainModel",
        "data": None,
        "args": ["--trainer.logger=TensorBoardLogger", "--trainer.logger.save_dir=TMP"],
    },
    # class_path/init_args in trainer_defaults for the strategy and the profiler
    "trainer_defaults": {
        "model": "PlainModel",
        "data": None,
        "args": ["--trainer.logger=false"],
        "defaults": {
            "strategy": {"class_path": "PL.strategies.SingleDeviceStrategy", "init_args": {"device": "cpu"}},
            "profiler": {"class_path": "PL.profilers.SimpleProfiler", "init_args": {"filename": "perf"}},
            "max_epochs": 4,
        },
    },
    # a function returning the Trainer, as trainer_class
    "trainer_function": {
        "model": "PlainModel",
        "data": None,
        "trainer": "function",
        "args": ["--trainer.max_epochs=3"],
    },
}


def _normalize(value: Any, pl: ModuleType, tmp: Path) -> Any:
    """The framework's name becomes ``PL`` and the temporary folder ``TMP`` (not in ``_instantiator``)."""
    if isinstance(value, dict):  # `_instantiator` is the same string for both: kept as written
        return {k: v if k == "_instantiator" else _normalize(v, pl, tmp) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v, pl, tmp) for v in value]
    if isinstance(value, str):
        return value.replace(str(tmp), "TMP").replace(f"{pl.__name__}.", "PL.")
    return value


def _cli_kwargs(pl: ModuleType, case: dict[str, Any], tmp: Path) -> dict[str, Any]:
    cli_module = importlib.import_module(f"{pl.__name__}.cli")
    link = case.get("link")

    class CLI(cli_module.LightningCLI):  # type: ignore[name-defined,misc]
        def add_arguments_to_parser(self, parser: Any) -> None:
            if link:
                parser.link_arguments(*link, apply_on="instantiate")

    defaults = yaml.safe_load(yaml.safe_dump(case.get("defaults") or {}).replace("PL.", f"{pl.__name__}."))
    kwargs: dict[str, Any] = {
        "cli": CLI,
        "model_class": globals()[case["model"]] if case["model"] else None,
        "datamodule_class": globals()[case["data"]] if case["data"] else None,
        "trainer_defaults": defaults,
        "args": [arg.replace("TMP", str(tmp)) for arg in case["args"]],
    }
    if case.get("trainer") == "function":
        kwargs["trainer_class"] = globals()["make_trainer"]
    return kwargs


def printed_config(pl: ModuleType, name: str, tmp: Path) -> dict[str, Any]:
    """What ``--print_config`` prints for the case (as data), with names normalized."""
    kwargs = _cli_kwargs(pl, CASES[name], tmp)
    cli_class = kwargs.pop("cli")
    kwargs["args"] = [*kwargs["args"], "--print_config"]
    out = io.StringIO()
    argv, sys.argv = sys.argv, ["main.py"]
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            cli_class(run=False, **kwargs)
    finally:
        sys.argv = argv
    return _normalize(yaml.safe_load(out.getvalue()), pl, tmp)


def built(pl: ModuleType, name: str, tmp: Path) -> dict[str, Any]:
    """What ``LightningCLI(run=False)`` builds for the case: hyperparameters and the Trainer's parts, by type."""
    kwargs = _cli_kwargs(pl, CASES[name], tmp)
    cli_class = kwargs.pop("cli")
    argv, sys.argv = sys.argv, ["main.py"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli = cli_class(run=False, **kwargs)
    finally:
        sys.argv = argv
    trainer = cli.trainer
    result = {
        "model_type": type(cli.model).__name__,
        "model_hparams": dict(cli.model.hparams),
        "data_hparams": dict(cli.datamodule.hparams) if cli.datamodule is not None else None,
        "trainer_type": type(trainer).__name__,
        "max_epochs": trainer.max_epochs,
        "logger": type(trainer.logger).__name__ if trainer.logger is not None else None,
        "callbacks": sorted(type(c).__name__ for c in trainer.callbacks),
        "profiler": type(trainer.profiler).__name__,
        "strategy": type(trainer.strategy).__name__,
        "precision": trainer.precision,
    }
    return _normalize(result, pl, tmp)


def _plain(value: Any) -> Any:
    """Defaults as plain data: enums by value, objects by their type's name."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return f"<{type(value).__name__}>"


def init_defaults(pl: ModuleType) -> dict[str, Any]:
    """Each public callback's, logger's and profiler's ``__init__`` arguments and defaults, as jsonargparse reads
    them (what ``--trainer.callbacks+=Name --print_config`` shows); ``None`` where jsonargparse cannot."""
    from jsonargparse import ArgumentParser

    result: dict[str, Any] = {}
    for package_name in ("callbacks", "loggers", "profilers"):
        package = importlib.import_module(f"{pl.__name__}.{package_name}")
        for name in package.__all__:
            cls = getattr(package, name)
            if not inspect.isclass(cls):
                continue
            parser = ArgumentParser(exit_on_error=False)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    parser.add_class_arguments(cls, "init", fail_untyped=False, sub_configs=True)
            except Exception:  # e.g. a hint naming a class that is not importable (Lightning's WandbLogger)
                result[f"{package_name}.{name}"] = None
                continue
            defaults = parser.get_defaults().get("init")
            result[f"{package_name}.{name}"] = _plain(defaults.as_dict() if defaults is not None else {})
    return _normalize(result, pl, Path("/no/folder"))


def run_case(pl: ModuleType, name: str, tmp: Path) -> dict[str, Any]:
    """Both views of one case: the printed config and what is built."""
    define_classes(pl)
    return {"printed": printed_config(pl, name, tmp), "built": built(pl, name, tmp)}
