"""Objects injected by the config (``backbone: nn.Module``, ``optimizer: OptimizerCallable``): the run saves
their config in ``hparams.yaml`` and the checkpoint, as Lightning does, and loading never imports what a
checkpoint names; ``--ckpt_path`` rebuilds a model class it names only if the program imported it and the config
accepts it."""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tests.helpers.cli_models import InjectedRegressor, RegressionData, Regressor, Student

import ember
from ember.cli import LightningCLI, instantiate_module

HERE = "tests.helpers.cli_models"
LINEAR = {
    "class_path": "torch.nn.Linear",
    "init_args": {"in_features": 4, "out_features": 1, "bias": True, "device": None, "dtype": None},
}
SGD = {
    "class_path": "torch.optim.SGD",
    "init_args": {
        "lr": 0.05,
        "momentum": 0.0,
        "dampening": 0.0,
        "weight_decay": 0.0,
        "nesterov": False,
        "maximize": False,
        "foreach": None,
        "differentiable": False,
        "fused": None,
    },
}
INJECTED = [
    "--model.backbone=torch.nn.Linear",
    "--model.backbone.in_features=4",
    "--model.backbone.out_features=1",
    "--model.optimizer=SGD",
    "--model.optimizer.lr=0.05",
]


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ember"])


def _quiet(root: Path) -> list[str]:
    return [
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
    ]


def _fit(tmp_path: Path) -> LightningCLI:
    args = ["fit", *INJECTED, "--trainer.max_epochs=1", "--trainer.logger=CSVLogger", *_quiet(tmp_path)]
    args.append(f"--trainer.logger.save_dir={tmp_path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = LightningCLI(InjectedRegressor, RegressionData, args=args)
    # the objects are not what is saved: no warning about modules or values that would not load safely
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "nn.Module" in m or "not plain data" in m], messages
    return cli


def test_injected_objects_are_saved_as_their_config_like_lightning(tmp_path):
    cli = _fit(tmp_path)
    expected = {
        "backbone": LINEAR,
        "optimizer": SGD,
        "scale": 1.0,
        "_instantiator": "pytorch_lightning.cli.instantiate_module",  # Lightning's: its loader can rebuild it
    }
    assert dict(cli.model.hparams) == expected
    assert isinstance(cli.model.backbone, torch.nn.Linear)  # the model itself received the objects
    saved = yaml.safe_load((Path(cli.trainer.log_dir) / "hparams.yaml").read_text())
    assert saved == expected
    checkpoint = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert checkpoint["hyper_parameters"] == expected


def test_loading_never_builds_what_the_checkpoint_names(tmp_path):
    ckpt = _fit(tmp_path).trainer.checkpoint_callback.best_model_path
    with pytest.warns(UserWarning, match=r"`backbone`, `optimizer` hold the `class_path`/`init_args` config") as info:
        InjectedRegressor.load_from_checkpoint(ckpt, strict=False)
    assert "InjectedRegressor.load_from_checkpoint(path, backbone=..., optimizer=...)" in str(info[0].message)
    with warnings.catch_warnings():
        # given the objects: no warning about the config or `_instantiator` (the model's own warning about an
        # nn.Module argument remains, as in Lightning)
        warnings.filterwarnings("error", message=".*(_instantiator|_class_path|hold the)")
        model = InjectedRegressor.load_from_checkpoint(
            ckpt, backbone=torch.nn.Linear(4, 1), optimizer=functools.partial(torch.optim.SGD, lr=0.05)
        )
    assert model.hparams.scale == 1.0
    # for hyperparameters you trust, instantiate_module builds the injected objects too
    rebuilt = instantiate_module(InjectedRegressor, torch.load(ckpt, weights_only=True)["hyper_parameters"])
    assert isinstance(rebuilt.backbone, torch.nn.Linear) and rebuilt.backbone.out_features == 1
    optimizer = rebuilt.optimizer(rebuilt.parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.05


def test_ckpt_path_reuses_the_saved_config_without_warnings(tmp_path):
    ckpt = _fit(tmp_path).trainer.checkpoint_callback.best_model_path
    args = ["validate", f"--ckpt_path={ckpt}", "--trainer.logger=false", *_quiet(tmp_path)]
    injected = [a.replace("out_features=1", "out_features=3") for a in INJECTED]  # the checkpoint's value wins
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(_class_path|_instantiator|checkpoint's)")
        cli = LightningCLI(InjectedRegressor, RegressionData, save_config_callback=None, args=[*args, *injected])
        assert cli.model.backbone.out_features == 1
        # the `ember` command (subclass mode): the checkpoint's `_class_path` names the class the config chose
        cli = LightningCLI(
            save_config_callback=None,
            args=[*args, f"--model={HERE}.InjectedRegressor", f"--data={HERE}.RegressionData", *injected],
        )
    assert type(cli.model) is InjectedRegressor and cli.model.backbone.out_features == 1


def test_the_class_paths_of_a_model_and_data_chosen_by_class_path_are_kept_but_not_logged(tmp_path):
    # each records the class `LightningCLI` chose as `_class_path`; they differ, and that is no conflict
    args = ["fit", f"--model={HERE}.Regressor", f"--data={HERE}.SavingRegressionData", "--trainer.max_epochs=1"]
    args += ["--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}", *_quiet(tmp_path)]
    cli = LightningCLI(args=args)
    assert cli.model.hparams["_class_path"] == f"{HERE}.Regressor"
    assert cli.datamodule.hparams["_class_path"] == f"{HERE}.SavingRegressionData"
    logged = yaml.safe_load((Path(cli.trainer.log_dir) / "hparams.yaml").read_text())
    assert "_class_path" not in logged  # as Lightning: the loggers get the hyperparameters only
    assert logged["hidden"] == 8 and logged["batch_size"] == 16
    checkpoint = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"] == f"{HERE}.Regressor"  # what `--ckpt_path` reads


def test_a_checkpoint_without_a_class_path_keeps_the_class_the_config_chose(tmp_path):
    # a checkpoint from a plain Trainer run records no `_class_path`; Lightning then builds the base class
    ckpt = tmp_path / "plain.ckpt"
    torch.save({"state_dict": Regressor(hidden=3).state_dict(), "hyper_parameters": {"hidden": 3}}, ckpt)
    args = ["validate", f"--model={HERE}.Student", "--model.lr=0.2", f"--ckpt_path={ckpt}", "--trainer.logger=false"]
    cli = LightningCLI(
        Regressor, RegressionData, subclass_mode_model=True, save_config_callback=None, args=[*args, *_quiet(tmp_path)]
    )
    assert type(cli.model) is Student and cli.config.validate.model.class_path == f"{HERE}.Student"
    assert cli.model.hparams.hidden == 3 and cli.model.hparams.lr == 0.2  # the checkpoint's, then the config's


def test_a_checkpoint_naming_a_class_not_imported_does_not_import_it(tmp_path, monkeypatch):
    package = tmp_path / "planted"
    package.mkdir()
    marker = tmp_path / "imported"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nfrom torch.nn import Linear\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = tmp_path / "planted.ckpt"
    backbone = {"class_path": "planted.Linear", "init_args": {"in_features": 4, "out_features": 1}}
    state = {f"backbone.{k}": v for k, v in torch.nn.Linear(4, 1).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"backbone": backbone, "scale": 2.0}}, ckpt)
    with pytest.warns(UserWarning, match=r"Ignoring the checkpoint's `backbone`: it names planted.Linear"):
        cli = LightningCLI(
            InjectedRegressor,
            RegressionData,
            save_config_callback=None,
            args=["validate", f"--ckpt_path={ckpt}", "--trainer.logger=false", *INJECTED, *_quiet(tmp_path)],
        )
    assert not marker.exists() and "planted" not in sys.modules
    assert type(cli.model.backbone) is torch.nn.Linear and cli.model.hparams.scale == 2.0


class DeepRegressor(Regressor):
    """A subclass with an argument of its own: the base class cannot be rebuilt from its hyperparameters."""

    def __init__(self, hidden: int = 8, lr: float = 0.05, in_features: int = 4, depth: int = 1) -> None:
        super().__init__(hidden, lr, in_features)
        self.depth = depth


class Unrelated(ember.LightningModule):
    """A model class the program has imported that is not a subclass of ``Regressor``."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()


DEEP = f"{DeepRegressor.__module__}.DeepRegressor"
PLANTED = """
open({marker!r}, "w").close()
from tests.helpers.cli_models import Regressor

class Planted(Regressor):
    pass
"""


def _checkpoint_naming(tmp_path: Path, class_path: str) -> Path:
    """A checkpoint of a ``Regressor(hidden=3)`` whose ``_class_path`` is ``class_path``."""
    ckpt = tmp_path / "named.ckpt"
    hparams = {"_class_path": class_path, "hidden": 3}
    torch.save({"state_dict": Regressor(hidden=3).state_dict(), "hyper_parameters": hparams}, ckpt)
    return ckpt


def _validate(tmp_path: Path, ckpt: Path | str, *args: str, **kwargs: Any) -> LightningCLI:
    args = ("validate", f"--ckpt_path={ckpt}", "--trainer.logger=false", *args, *_quiet(tmp_path))
    return LightningCLI(save_config_callback=None, args=list(args), **kwargs)


def _validate_in_subclass_mode(tmp_path: Path, ckpt: Path | str) -> LightningCLI:
    """``LightningCLI(Regressor, subclass_mode_model=True)`` with ``--model`` naming the base class itself."""
    args = (f"--model={HERE}.Regressor", f"--data={HERE}.RegressionData")
    return _validate(tmp_path, ckpt, *args, model_class=Regressor, subclass_mode_model=True)


def test_a_checkpoint_rebuilds_the_imported_subclass_it_was_saved_from(tmp_path):
    # as Lightning: a subclass fitted in subclass mode is rebuilt from the checkpoint, even when the config names
    # the base class, which does not take `depth`
    args = ["fit", f"--model={DEEP}", "--model.hidden=3", "--model.depth=2", "--trainer.max_epochs=1"]
    fit = LightningCLI(Regressor, RegressionData, subclass_mode_model=True, args=[*args, *_quiet(tmp_path)])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["_class_path"] == DEEP
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*_class_path")
        cli = _validate_in_subclass_mode(tmp_path, ckpt)
        assert type(cli.model) is DeepRegressor and cli.config.validate.model.class_path == DEEP
        assert cli.model.depth == 2 and cli.model.hparams.hidden == 3 and cli.model.net[0].out_features == 3
        # the `ember` command, whose model class is any LightningModule, does the same
        cli = _validate(tmp_path, ckpt, f"--model={HERE}.Regressor", f"--data={HERE}.RegressionData")
        assert type(cli.model) is DeepRegressor and cli.model.depth == 2


def test_a_checkpoint_naming_a_class_that_is_not_a_subclass_of_the_model_class_is_ignored(tmp_path):
    ckpt = _checkpoint_naming(tmp_path, f"{Unrelated.__module__}.Unrelated")
    with pytest.warns(UserWarning, match=r"Ignoring `_class_path` .*Unrelated: it is not a subclass of Regressor"):
        cli = _validate_in_subclass_mode(tmp_path, ckpt)
    assert type(cli.model) is Regressor and cli.model.hparams.hidden == 3  # the config's class, the values kept


def test_a_checkpoint_naming_a_subclass_not_imported_does_not_import_it(tmp_path, monkeypatch):
    # a subclass of the model class that could be imported, but that this program never imported: it stays so
    marker = tmp_path / "imported"
    (tmp_path / "planted_model.py").write_text(PLANTED.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = _checkpoint_naming(tmp_path, "planted_model.Planted")
    with pytest.warns(UserWarning, match=r"planted_model.Planted: this program has not imported it"):
        cli = _validate_in_subclass_mode(tmp_path, ckpt)
    assert not marker.exists() and "planted_model" not in sys.modules
    assert type(cli.model) is Regressor and cli.model.hparams.hidden == 3


def test_without_subclass_mode_a_checkpoint_never_changes_the_model_class(tmp_path):
    ckpt = _checkpoint_naming(tmp_path, DEEP)  # imported, and a subclass of the model class
    with pytest.warns(UserWarning, match=r"DeepRegressor: the model class is Regressor \(`subclass_mode_model=False`"):
        cli = _validate(tmp_path, ckpt, model_class=Regressor, datamodule_class=RegressionData)
    assert type(cli.model) is Regressor and cli.model.hparams.hidden == 3


def test_a_module_built_inside_the_model_records_its_own_arguments(tmp_path):
    cli = LightningCLI(Student, RegressionData, run=False, args=["--model.hidden=3", *_quiet(tmp_path)])
    assert cli.model.hparams.hidden == 3 and "_instantiator" in cli.model.hparams
    # what the teacher records is what it records outside the CLI, not the student's config
    assert dict(cli.model.teacher.hparams) == dict(Student(hidden=3).teacher.hparams)
    assert cli.model.teacher.hparams.width == 7 and "_instantiator" not in cli.model.teacher.hparams


def test_load_from_checkpoint_support_off_records_the_arguments(tmp_path):
    cli = LightningCLI(Student, RegressionData, run=False, load_from_checkpoint_support=False, args=_quiet(tmp_path))
    assert dict(cli.model.hparams) == {"hidden": 8, "lr": 0.05, "in_features": 4}


_PROGRAM = """
import ember
ember.install_as_lightning()
import {root} as pl
from {root}.cli import LightningCLI


class Model(pl.LightningModule):
    def __init__(self, width: int = 3):
        super().__init__()
        self.save_hyperparameters()


cli = LightningCLI(Model, run=False, args=["--model.width=5"])
print(cli.model.hparams["_instantiator"])
"""


@pytest.mark.parametrize("root", ["lightning.pytorch", "pytorch_lightning"])
def test_the_recorded_instantiator_is_the_imported_lightning_packages(root):
    import subprocess

    program = _PROGRAM.format(root=root)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # what Lightning's package of that name records, so that package's load_from_checkpoint can import it
    assert done.stdout.strip() == f"{root}.cli.instantiate_module"


class _InstantiateOnTheParser(LightningCLI):
    """A subclass that builds the classes the way Lightning's own ``instantiate_classes`` does."""

    def instantiate_classes(self):
        self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self._add_configure_optimizers_method_to_model(self.subcommand)
        self.trainer = self.instantiate_trainer()


def test_a_subclass_instantiating_through_the_parser_still_saves_the_config(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jsonargparse's, on `instantiate_classes`
        cli = _InstantiateOnTheParser(InjectedRegressor, RegressionData, run=False, args=[*INJECTED, *_quiet(tmp_path)])
    assert cli.model.hparams["backbone"] == LINEAR  # the config, not the module it built
    assert cli.model.hparams["_instantiator"] == "pytorch_lightning.cli.instantiate_module"
