"""LightningCLI in process: YAML configs and overrides, --print_config, run=False, optimizer and scheduler
groups, links, SaveConfigCallback, seeds, ckpt_path hyperparameters, and every kind of bad input."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tests.helpers.cli_models import BareRegressor, RecordingCallback, RegressionData, Regressor

from ember.callbacks import EarlyStopping
from ember.cli import LightningCLI, ReduceLROnPlateau, SaveConfigCallback
from ember.utilities.exceptions import MisconfigurationException

HERE = "tests.helpers.cli_models"


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    # LightningCLI warns when both `args` and command line arguments are given; pytest's argv is not ours
    monkeypatch.setattr(sys, "argv", ["ember"])


def _quiet(root: Path) -> list[str]:
    return [
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
    ]


def _write(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _lightning_style_config(root: Path) -> dict:
    """What a Lightning user's config looks like once its class paths point at Ember and their code."""
    return {
        "seed_everything": 3,
        "trainer": {
            "max_epochs": 2,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(root),
            "logger": {"class_path": "ember.loggers.CSVLogger", "init_args": {"save_dir": str(root)}},
            "callbacks": [
                {"class_path": "ember.callbacks.EarlyStopping", "init_args": {"monitor": "val_loss", "patience": 5}},
                {"class_path": f"{HERE}.RecordingCallback", "init_args": {"label": "yaml"}},
            ],
        },
        "model": {"class_path": f"{HERE}.Regressor", "init_args": {"hidden": 16}},
        "data": {"class_path": f"{HERE}.RegressionData", "init_args": {"batch_size": 32}},
    }


def test_fit_from_a_lightning_style_yaml_with_command_line_overrides(tmp_path):
    config = _write(tmp_path / "config.yaml", _lightning_style_config(tmp_path))
    cli = LightningCLI(args=["fit", "--config", config, "--trainer.max_epochs=1", "--model.hidden=4"])
    assert cli.subcommand == "fit"
    assert cli.trainer.max_epochs == 1 and cli.trainer.current_epoch == 1
    assert cli.trainer.global_step == 2  # 64 samples, batches of 32 (from the YAML)
    assert isinstance(cli.model, Regressor) and cli.model.hparams.hidden == 4
    assert isinstance(cli.datamodule, RegressionData) and cli.datamodule.batch_size == 32
    assert any(isinstance(cb, EarlyStopping) and cb.patience == 5 for cb in cli.trainer.callbacks)
    recorders = [cb for cb in cli.trainer.callbacks if isinstance(cb, RecordingCallback)]
    assert recorders and recorders[0].label == "yaml" and recorders[0].fit_starts == 1
    assert torch.initial_seed() == 3

    saved = yaml.safe_load((Path(cli.trainer.log_dir) / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 1
    assert saved["model"]["init_args"]["hidden"] == 4
    assert saved["seed_everything"] == 3
    assert (Path(cli.trainer.log_dir) / "metrics.csv").is_file()


def test_several_configs_merge_in_order_and_the_command_line_wins(tmp_path):
    first = _write(
        tmp_path / "a.yaml", {"trainer": {"max_epochs": 5, "limit_train_batches": 1}, "model": {"hidden": 3}}
    )
    second = _write(tmp_path / "b.yaml", {"trainer": {"max_epochs": 2}})
    args = ["--config", first, "--config", second, "--trainer.limit_val_batches=0", *_quiet(tmp_path)]
    cli = LightningCLI(Regressor, RegressionData, run=False, args=args)
    assert cli.trainer.max_epochs == 2
    assert cli.trainer.limit_train_batches == 1 and cli.trainer.limit_val_batches == 0
    assert cli.model.hparams.hidden == 3
    assert cli.trainer.global_step == 0  # run=False builds the objects and runs nothing


def test_print_config_round_trip(tmp_path, capsys):
    config = _write(tmp_path / "config.yaml", _lightning_style_config(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        LightningCLI(args=["fit", "--config", config, "--trainer.max_epochs=7", "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    full = yaml.safe_load(printed)
    assert full["trainer"]["max_epochs"] == 7
    assert full["model"]["class_path"] == f"{HERE}.Regressor"
    assert full["model"]["init_args"] == {"hidden": 16, "lr": 0.05, "in_features": 4}
    assert full["optimizer"] is None and full["ckpt_path"] is None

    again = _write(tmp_path / "full.yaml", full)
    with pytest.raises(SystemExit):
        LightningCLI(args=["fit", "--config", again, "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == full


def test_optimizer_and_scheduler_groups_build_configure_optimizers(tmp_path):
    args = [
        "fit",
        "--model",
        f"{HERE}.BareRegressor",
        "--data",
        f"{HERE}.RegressionData",
        "--optimizer",
        "Adam",
        "--optimizer.lr",
        "0.02",
        "--lr_scheduler",
        "StepLR",
        "--lr_scheduler.step_size",
        "1",
        "--trainer.max_epochs",
        "1",
        *_quiet(tmp_path),
    ]
    cli = LightningCLI(args=args)
    assert isinstance(cli.model, BareRegressor)
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam)
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.002)  # one epoch of StepLR(gamma=0.1)


def test_reduce_on_plateau_names_its_metric(tmp_path):
    plateau = {"class_path": "ember.cli.ReduceLROnPlateau", "init_args": {"monitor": "val_loss", "patience": 1}}
    config = _write(
        tmp_path / "c.yaml",
        {"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}, "lr_scheduler": plateau},
    )
    cli = LightningCLI(
        BareRegressor, RegressionData, args=["fit", "--config", config, "--trainer.max_epochs=1", *_quiet(tmp_path)]
    )
    config = cli.trainer.lr_scheduler_configs[0]
    assert isinstance(config.scheduler, ReduceLROnPlateau) and config.monitor == "val_loss"


def test_add_arguments_to_parser_and_link_arguments(tmp_path):
    class LinkedCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_argument("--note", default="none")
            parser.link_arguments("data.num_features", "model.in_features", apply_on="instantiate")

    cli = LinkedCLI(
        Regressor, RegressionData, run=False, args=["--data.num_features=6", "--note=hello", *_quiet(tmp_path)]
    )
    assert cli.model.net[0].in_features == 6
    assert cli.config.note == "hello"


def test_save_config_refuses_to_overwrite_a_previous_run(tmp_path):
    args = [
        "fit",
        "--trainer.logger=false",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=0",
        *_quiet(tmp_path),
    ]
    LightningCLI(Regressor, RegressionData, args=args)
    assert (tmp_path / "config.yaml").is_file()
    with pytest.raises(RuntimeError, match="expected .*config.yaml to NOT exist"):
        LightningCLI(Regressor, RegressionData, args=args)
    LightningCLI(Regressor, RegressionData, args=args, save_config_kwargs={"overwrite": True})
    LightningCLI(Regressor, RegressionData, args=args, save_config_callback=None)
    with pytest.raises(ValueError, match="save_to_log_dir=False"):
        SaveConfigCallback(None, None, save_to_log_dir=False)


def test_with_a_logger_that_has_no_folder_the_config_goes_to_default_root_dir(tmp_path):
    # Lightning stops with a bare AssertionError in SaveConfigCallback.setup
    from ember.loggers import Logger

    class NoFolder(Logger):
        name, version = "no-folder", 0

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    class CLI(LightningCLI):
        def instantiate_trainer(self, **kwargs):
            return super().instantiate_trainer(logger=NoFolder(), **kwargs)

    args = ["fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=0"]
    cli = CLI(Regressor, RegressionData, args=[*args, *_quiet(tmp_path)])
    assert cli.trainer.log_dir is None and (tmp_path / "config.yaml").is_file()


def test_seed_everything_default_and_explicit(tmp_path):
    cli = LightningCLI(Regressor, RegressionData, run=False, args=["--seed_everything=123", *_quiet(tmp_path)])
    assert cli.config.seed_everything == 123 and torch.initial_seed() == 123
    cli = LightningCLI(Regressor, RegressionData, run=False, args=_quiet(tmp_path))
    assert isinstance(cli.config.seed_everything, int)  # True: a random seed, recorded in the config
    cli = LightningCLI(Regressor, RegressionData, run=False, seed_everything_default=False, args=_quiet(tmp_path))
    assert cli.config.seed_everything is False


def test_trainer_defaults_and_extra_callbacks(tmp_path):
    extra = RecordingCallback("default")
    cli = LightningCLI(
        Regressor,
        RegressionData,
        run=False,
        args=_quiet(tmp_path),
        trainer_defaults={"max_epochs": 4, "callbacks": [extra]},
    )
    assert cli.trainer.max_epochs == 4
    assert extra in cli.trainer.callbacks


def test_ckpt_path_supplies_the_model_hyperparameters(tmp_path):
    fit = LightningCLI(
        Regressor,
        RegressionData,
        args=["fit", "--model.hidden=16", "--trainer.max_epochs=1", "--trainer.logger=false", *_quiet(tmp_path)],
    )
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    assert os.path.isfile(ckpt)
    cli = LightningCLI(
        Regressor,
        RegressionData,
        save_config_callback=None,
        args=["validate", f"--ckpt_path={ckpt}", "--trainer.logger=false", *_quiet(tmp_path)],
    )
    assert cli.model.hparams.hidden == 16
    assert "val_loss" in cli.trainer.callback_metrics
    # subclass mode (the `ember` command): the values fill the init arguments of the class the config chose
    cli = LightningCLI(
        save_config_callback=None,
        args=[
            "validate",
            "--model",
            f"{HERE}.Regressor",
            "--data",
            f"{HERE}.RegressionData",
            f"--ckpt_path={ckpt}",
            "--trainer.logger=false",
            *_quiet(tmp_path),
        ],
    )
    assert isinstance(cli.model, Regressor) and cli.model.hparams.hidden == 16


def test_a_checkpoint_never_chooses_the_model_class(tmp_path):
    ckpt = tmp_path / "foreign.ckpt"
    torch.save(
        {"state_dict": Regressor(hidden=5).state_dict(), "hyper_parameters": {"_class_path": "os.system", "hidden": 5}},
        ckpt,
    )
    with pytest.warns(UserWarning, match="Ignoring `_class_path`"):
        cli = LightningCLI(
            save_config_callback=None,
            args=[
                "validate",
                "--model",
                f"{HERE}.Regressor",
                "--data",
                f"{HERE}.RegressionData",
                f"--ckpt_path={ckpt}",
                "--trainer.logger=false",
                *_quiet(tmp_path),
            ],
        )
    assert type(cli.model) is Regressor and cli.model.hparams.hidden == 5


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_other_subcommands(tmp_path, subcommand):
    cli = LightningCLI(
        Regressor,
        RegressionData,
        save_config_callback=None,
        args=[subcommand, "--trainer.logger=false", *_quiet(tmp_path)],
    )
    assert cli.trainer.state.fn == subcommand


# ---- bad input ---------------------------------------------------------------------------------
def _error(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        LightningCLI(args=args)
    assert exit_info.value.code != 0
    return capsys.readouterr().err


def test_unknown_trainer_option_names_the_nearest(capsys, tmp_path):
    err = _error(capsys, ["fit", "--model", f"{HERE}.Regressor", "--trainer.max_epoch=3"])
    assert "`--trainer.max_epoch` is not an option: did you mean `--trainer.max_epochs`?" in err


def test_an_option_given_before_the_subcommand_is_told_to_come_after_it(capsys):
    # the nearest-name hint named the very option that was given: "did you mean `--trainer.max_epochs`?"
    err = _error(capsys, ["--trainer.max_epochs=3", "fit", "--model", f"{HERE}.Regressor"])
    assert (
        "`--trainer.max_epochs` is an option of the subcommands (fit, validate, test, predict): give it after the"
        " subcommand, e.g. `" in err
    )
    assert " fit --trainer.max_epochs=3`." in err
    assert "did you mean" not in err


@pytest.mark.parametrize("args", ["fit --trainer.max_epochs=1", 5])
def test_args_that_are_no_list_of_strings_are_named(args):
    # text was read a letter at a time ("invalid choice: 'f'"), a number was "'int' object is not iterable"
    with pytest.raises(TypeError, match=re.escape(f"`LightningCLI(args={args!r})` must be a list of command line")):
        LightningCLI(Regressor, RegressionData, args=args)


def test_a_class_named_without_its_module_is_told_to_give_the_import_path(capsys):
    # jsonargparse says only "Expected a dot import path string: MyModel" (it resolves a short name only among the
    # subclasses already imported)
    err = _error(capsys, ["fit", "--model", "MyModel"])
    assert (
        "`MyModel` is a class name without its module: give its import path, e.g. `--model my_package.MyModel`" in err
    )


def test_a_module_object_instead_of_its_class_is_named():
    # a module is callable, and was taken for a function: "'Regressor' object has no attribute '__qualname__'"
    with pytest.raises(MisconfigurationException, match="an instance of Regressor. Pass the class, `Regressor`"):
        LightningCLI(Regressor(), RegressionData, args=["fit"])


@pytest.mark.parametrize("args", [["--model.hiden", "3"], ["fit", "--model.hiden", "3"]])
def test_the_nearest_option_is_named_once_through_every_parser_level(args):
    from jsonargparse import ArgumentError

    run = args[0] == "fit"
    with pytest.raises(ArgumentError) as info:
        LightningCLI(Regressor, RegressionData, run=run, args=args, parser_kwargs={"exit_on_error": False})
    assert str(info.value).count("did you mean `--model.hidden`?") == 1


def test_unknown_yaml_key_names_the_nearest(capsys, tmp_path):
    config = _lightning_style_config(tmp_path)
    config["trainer"]["max_epoch"] = config["trainer"].pop("max_epochs")
    err = _error(capsys, ["fit", "--config", _write(tmp_path / "c.yaml", config)])
    assert "`trainer.max_epoch` is not a valid key: did you mean `trainer.max_epochs`?" in err


def test_unknown_model_argument_names_the_nearest(capsys, tmp_path):
    config = _lightning_style_config(tmp_path)
    config["model"]["init_args"] = {"hiden": 3}
    err = _error(capsys, ["fit", "--config", _write(tmp_path / "c.yaml", config)])
    assert f"`model.hiden` is not an argument of {HERE}.Regressor: did you mean `model.hidden`?" in err
    err = _error(capsys, ["fit", "--modle.hidden=3", "--model", f"{HERE}.Regressor"])
    assert "did you mean `--model.hidden`?" in err


def test_a_callback_value_of_the_wrong_type_is_not_blamed_on_another_class(capsys):
    args = ["fit", "--model", f"{HERE}.Regressor", "--trainer.callbacks+=StochasticWeightAveraging"]
    err = _error(capsys, [*args, "--trainer.callbacks.swa_lrs=0.1", "--trainer.callbacks.annealing_strategy=cosine"])
    assert "Expected a typing.Literal['cos', 'linear']. Got value: cosine" in err
    # `Callback`, the other class the list could hold, takes no arguments; the chosen one takes this one
    assert "is not an argument of" not in err


def test_class_path_that_does_not_import_names_the_module(capsys, tmp_path):
    err = _error(capsys, ["fit", "--model", "no_such_package.models.Net"])
    assert "No module named 'no_such_package'" in err
    assert "The module 'no_such_package' (from class_path 'no_such_package.models.Net') could not be imported" in err


def test_wrong_type_names_argument_expected_type_and_value(capsys):
    err = _error(capsys, ["fit", "--model", f"{HERE}.Regressor", "--trainer.max_epochs=many"])
    assert 'Parser key "trainer.max_epochs"' in err
    assert "Expected a <class 'int'>" in err
    assert "Given value: many" in err


def test_help_lists_trainer_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        LightningCLI(Regressor, args=["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--trainer.max_epochs" in out and "--model.hidden" in out and "--optimizer" in out


def test_missing_model_says_how_to_choose_one(capsys):
    err = _error(capsys, ["fit"])
    assert "arguments are required: fit.model" in err
    assert "Choose the LightningModule: `--model my_package.MyClass`" in err


def test_args_as_a_dict_and_the_warning_for_args_plus_command_line(tmp_path, monkeypatch):
    config = {"trainer": {"max_epochs": 3, "default_root_dir": str(tmp_path)}, "model": {"hidden": 2}}
    cli = LightningCLI(Regressor, RegressionData, run=False, args=config)
    assert cli.trainer.max_epochs == 3 and cli.model.hparams.hidden == 2
    monkeypatch.setattr(sys, "argv", ["main.py", "--trainer.max_epochs=9"])
    with pytest.warns(UserWarning, match="args parameter is intended to run from within Python"):
        LightningCLI(Regressor, RegressionData, run=False, args=["--trainer.max_epochs=4", *_quiet(tmp_path)])
    # as in Lightning, whatever `args` holds: a dict, or the command line's own arguments
    for args in (config, sys.argv[1:]):
        with pytest.warns(UserWarning, match="args parameter is intended to run from within Python"):
            LightningCLI(Regressor, RegressionData, run=False, args=args)


@pytest.mark.parametrize(
    ("strategy", "lightnings_arguments"),
    [
        (
            "ember.strategies.DDPStrategy",
            # Lightning 2.6.6's DDPStrategy.__init__, in order
            ["accelerator", "parallel_devices", "cluster_environment", "checkpoint_io", "precision_plugin"]
            + ["ddp_comm_state", "ddp_comm_hook", "ddp_comm_wrapper", "model_averaging_period"]
            + ["process_group_backend", "timeout", "start_method"],
        ),
        (
            "ember.strategies.ModelParallelStrategy",
            ["data_parallel_size", "tensor_parallel_size", "save_distributed_checkpoint"]
            + ["process_group_backend", "timeout"],
        ),
    ],
)
def test_a_printed_strategy_config_holds_only_lightnings_arguments(capsys, strategy, lightnings_arguments):
    # a config Ember writes must read back on Lightning, which refuses keys it does not know
    # (Ember's `preemption_check_interval` was written there)
    with pytest.raises(SystemExit):
        LightningCLI(
            Regressor,
            RegressionData,
            args=["fit", f'--trainer.strategy={{"class_path": "{strategy}"}}', "--print_config"],
        )
    printed = list(yaml.safe_load(capsys.readouterr().out)["trainer"]["strategy"]["init_args"])
    # DDP's keyword arguments follow, read from torch's `DistributedDataParallel` as on Lightning
    assert printed[: len(lightnings_arguments)] == lightnings_arguments
    assert not {"preemption_check_interval", "start_method"} & set(printed[len(lightnings_arguments) :])


def test_a_config_at_an_fsspec_url_is_read_as_lightning_reads_it(tmp_path):
    import fsspec

    with fsspec.open("memory://ember-cli-test/config.yaml", "w") as file:
        file.write("trainer:\n  max_epochs: 3\nmodel:\n  lr: 0.25\n")
    cli = LightningCLI(
        Regressor,
        RegressionData,
        run=False,
        args=["--config", "memory://ember-cli-test/config.yaml", *_quiet(tmp_path)],
    )
    assert cli.trainer.max_epochs == 3 and cli.model.hparams.lr == 0.25


def test_the_names_lightnings_cli_module_imports_can_be_taken_from_it():
    import jsonargparse
    import torch.optim

    import ember
    import ember.cli as cli_module

    assert (
        cli_module.Namespace is jsonargparse.Namespace and cli_module.ActionConfigFile is jsonargparse.ActionConfigFile
    )
    assert cli_module.Optimizer is torch.optim.Optimizer and cli_module.Trainer is ember.Trainer
    assert cli_module.LightningModule is ember.LightningModule and cli_module.seed_everything is ember.seed_everything
    assert issubclass(cli_module.LightningArgumentParser, jsonargparse.ArgumentParser)
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        cli_module.Nothing  # noqa: B018
