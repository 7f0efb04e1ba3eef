"""Choosing classes in ``LightningCLI`` as Lightning programs do: short class names, ``class_path`` dicts in
``trainer_defaults``, and a function as ``trainer_class``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tests.helpers.cli_models import RecordingCallback, RegressionData, Regressor

import ember
from ember.callbacks import EarlyStopping
from ember.cli import LightningCLI
from ember.profilers import SimpleProfiler
from ember.strategies import SingleDeviceStrategy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ember"])


def _quiet(root: Path) -> list[str]:
    return [
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
    ]


def test_short_class_names_resolve_in_a_fresh_process(tmp_path):
    # a fresh process: Ember loads its callbacks, loggers and profilers on first use, and jsonargparse finds a
    # short name only among the classes loaded (optimizers are covered in process: building one loads dynamo)
    script = textwrap.dedent(
        f"""
        import sys
        from ember.cli import LightningCLI
        from tests.helpers.cli_models import Regressor

        sys.argv = ["main.py"]
        cli = LightningCLI(Regressor, run=False, args=[
            "--trainer.logger=CSVLogger", "--trainer.logger.save_dir={tmp_path}",
            "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val_loss",
            "--trainer.callbacks+=LearningRateMonitor", "--trainer.profiler=AdvancedProfiler",
            "--trainer.plugins=AsyncCheckpointIO", "--trainer.default_root_dir={tmp_path}",
        ])
        print(type(cli.trainer.logger).__module__)
        print(sorted(type(c).__module__ for c in cli.trainer.callbacks if type(c).__name__ in
                     ("EarlyStopping", "LearningRateMonitor")))
        print(type(cli.trainer.profiler).__name__, type(cli.trainer.strategy.checkpoint_io).__name__)
        print(cli.config.trainer.logger.class_path)
        """
    )
    src = Path(ember.__file__).resolve().parents[1]  # the Ember this test imported
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "ember.loggers.csv_logs",
        "['ember.callbacks.early_stopping', 'ember.callbacks.lr_monitor']",
        "AdvancedProfiler AsyncCheckpointIO",
        "ember.loggers.CSVLogger",
    ]


def test_trainer_defaults_take_class_paths_for_strategy_profiler_and_callbacks(tmp_path):
    given = RecordingCallback("object")
    cli = LightningCLI(
        Regressor,
        RegressionData,
        run=False,
        args=["--trainer.logger=false", *_quiet(tmp_path)],
        trainer_defaults={
            "strategy": {"class_path": "ember.strategies.SingleDeviceStrategy", "init_args": {"device": "cpu"}},
            "profiler": {"class_path": "SimpleProfiler", "init_args": {"filename": "perf"}},
            "callbacks": [
                {"class_path": "ember.callbacks.EarlyStopping", "init_args": {"monitor": "val_loss", "patience": 7}},
                given,
            ],
        },
    )
    assert isinstance(cli.trainer.strategy, SingleDeviceStrategy)
    assert isinstance(cli.trainer.profiler, SimpleProfiler) and cli.trainer.profiler.filename == "perf"
    stopping = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stopping) == 1 and stopping[0].patience == 7 and stopping[0].monitor == "val_loss"
    assert given in cli.trainer.callbacks


def test_a_callback_that_cannot_be_built_from_trainer_defaults_says_so(tmp_path):
    with pytest.raises(ValueError, match=r"trainer_defaults=\{'callbacks': \.\.\.\}\) could not build a callback"):
        LightningCLI(
            Regressor,
            run=False,
            args=["--trainer.logger=false", *_quiet(tmp_path)],
            trainer_defaults={"callbacks": {"class_path": "ember.callbacks.EarlyStopping", "init_args": {"x": 1}}},
        )


def make_trainer(max_epochs: int = 5, limit_val_batches: int = 0, default_root_dir: str = ".") -> ember.Trainer:
    """A function building the Trainer, given as ``trainer_class``."""
    return ember.Trainer(
        max_epochs=max_epochs,
        limit_val_batches=limit_val_batches,
        default_root_dir=default_root_dir,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_a_function_returning_the_trainer_runs_a_subcommand(tmp_path, capsys):
    args = ["fit", "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}"]
    cli = LightningCLI(Regressor, RegressionData, trainer_class=make_trainer, args=args)
    assert cli.trainer.current_epoch == 2 and cli.trainer.limit_val_batches == 0
    with pytest.raises(SystemExit):
        LightningCLI(Regressor, RegressionData, trainer_class=make_trainer, args=["fit", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"] == {"max_epochs": 5, "limit_val_batches": 0, "default_root_dir": "."}


def _define_make_trainer():
    # a notebook cell defining the function, run twice: two functions with the same name
    def make_trainer(max_epochs: int = 1) -> ember.Trainer:
        return ember.Trainer(max_epochs=max_epochs, logger=False, enable_progress_bar=False)

    return make_trainer


def test_two_trainer_functions_of_the_same_name_each_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = _define_make_trainer(), _define_make_trainer()
    assert first.__qualname__ == second.__qualname__
    for function, epochs in ((first, 2), (second, 3), (first, 4)):
        cli = LightningCLI(Regressor, trainer_class=function, args=[f"--trainer.max_epochs={epochs}"], run=False)
        assert cli.trainer.max_epochs == epochs
    cli = LightningCLI(Regressor, RegressionData, trainer_class=second, args=["validate"], save_config_callback=None)
    assert cli.trainer.state.fn == "validate"


def test_a_precision_plugin_is_chosen_by_class_path(tmp_path):
    cli = LightningCLI(
        Regressor,
        RegressionData,
        run=False,
        args=[
            "--trainer.logger=false",
            *_quiet(tmp_path),
            "--trainer.plugins=ember.plugins.HalfPrecision",
            "--trainer.plugins.precision=bf16-true",
        ],
    )
    from ember.plugins import HalfPrecision

    assert isinstance(cli.trainer.precision_plugin, HalfPrecision)
    assert cli.trainer.precision == "bf16-true"


def test_a_config_lightning_printed_with_fabrics_plugin_classes_is_read(tmp_path):
    # Lightning's SLURMEnvironment and TorchCheckpointIO are Fabric's classes, so its printed configs name them
    pytest.importorskip("lightning_fabric")
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            """
            trainer:
              logger: false
              plugins:
              - class_path: lightning_fabric.plugins.environments.slurm.SLURMEnvironment
                init_args:
                  auto_requeue: false
              - class_path: lightning_fabric.plugins.TorchCheckpointIO
            """
        )
    )
    cli = LightningCLI(Regressor, RegressionData, run=False, args=[f"--config={config}", *_quiet(tmp_path)])
    from ember.distributed.environments import SLURMEnvironment, environment_in
    from ember.plugins.io import TorchCheckpointIO

    assert type(cli.trainer.strategy.checkpoint_io) is TorchCheckpointIO  # Ember's: crash-safe writes
    environment = environment_in(cli.trainer.plugins)
    assert type(environment) is SLURMEnvironment and environment.auto_requeue is False


@pytest.mark.parametrize("record_shapes", [["--trainer.profiler.record_shapes=true"], []])
def test_a_pytorch_profiler_config_may_set_record_shapes_as_an_argument(tmp_path, record_shapes):
    # Lightning's configs write `record_shapes` under `init_args`: a config parser must know the argument
    args = ["--trainer.profiler=PyTorchProfiler", "--trainer.profiler.dict_kwargs.profile_memory=true", *record_shapes]
    cli = LightningCLI(
        Regressor,
        RegressionData,
        run=False,
        args=[*args, "--trainer.max_steps=2", "--trainer.logger=false", *_quiet(tmp_path)],
    )
    assert cli.config.trainer.profiler.init_args.record_shapes is (True if record_shapes else None)
    assert cli.config.trainer.profiler.dict_kwargs == {"profile_memory": True}  # torch's own, passed on
    cli.trainer.fit(cli.model, cli.datamodule)
    shapes = [e.input_shapes for e in cli.trainer.profiler.function_events if e.name in ("aten::linear", "aten::addmm")]
    assert shapes and any(shapes) == bool(record_shapes)


def test_a_timer_from_the_command_line_runs_and_saves_its_config(tmp_path):
    # Lightning's `Timer` defaults `interval` to an enum member that jsonargparse cannot dump: its run stops
    # with "Does not validate against any of the Union subtypes" before training
    args = ["fit", "--trainer.callbacks+=Timer", "--trainer.callbacks.duration=00:00:01:00", "--trainer.max_epochs=1"]
    cli = LightningCLI(Regressor, RegressionData, args=[*args, "--trainer.logger=false", *_quiet(tmp_path)])
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, ember.callbacks.Timer))
    assert timer.time_elapsed("train") > 0
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["trainer"]["callbacks"][0]["init_args"] == {
        "duration": "00:00:01:00",
        "interval": "step",
        "verbose": True,
    }
