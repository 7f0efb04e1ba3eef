"""Ember's public signatures resolve at run time, so jsonargparse (``LightningCLI``) and other tools can read them.

Most modules use ``from __future__ import annotations``: their annotations are strings, and a name imported only
for type checking would make ``typing.get_type_hints`` fail.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import typing
from collections.abc import Iterable

import pytest
from jsonargparse import ArgumentParser

import ember
from ember.cli import LightningCLI, SaveConfigCallback

PACKAGES = ("ember.callbacks", "ember.loggers", "ember.profilers", "ember.strategies", "ember.plugins")


def _public_classes() -> list[type]:
    found: list[type] = [ember.Trainer, ember.LightningModule, ember.LightningDataModule, LightningCLI]
    found += [SaveConfigCallback, importlib.import_module("ember.tuner").Tuner]
    for name in PACKAGES:
        package = importlib.import_module(name)
        found += [getattr(package, n) for n in package.__all__ if inspect.isclass(getattr(package, n))]
    return list(dict.fromkeys(found))


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__qualname__)
def test_init_hints_resolve_and_jsonargparse_reads_them(cls):
    typing.get_type_hints(cls.__init__)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "init", fail_untyped=False, sub_configs=True)


@pytest.mark.parametrize("cls", [ember.LightningModule, ember.LightningDataModule], ids=lambda c: c.__name__)
def test_module_hooks_resolve(cls):
    for _, member in inspect.getmembers(cls, inspect.isfunction):
        if member.__module__.startswith("ember."):
            typing.get_type_hints(member)


def test_trainer_object_arguments_have_lightnings_types():
    from ember.accelerators import Accelerator
    from ember.loggers import Logger
    from ember.plugins import CheckpointIO, ClusterEnvironment, LayerSync, Precision
    from ember.profilers import Profiler
    from ember.strategies import Strategy

    hints = typing.get_type_hints(ember.Trainer.__init__)
    assert hints["accelerator"] == str | Accelerator
    assert hints["strategy"] == str | Strategy
    assert hints["logger"] == Logger | Iterable[Logger] | bool | None
    assert hints["profiler"] == Profiler | str | None
    plugin = typing.Union[Precision, ClusterEnvironment, CheckpointIO, LayerSync]
    assert hints["plugins"] == typing.Optional[typing.Union[plugin, list[plugin]]]
    assert typing.get_args(hints["deterministic"]) == (bool, typing.Literal["warn"], type(None))
    assert "bf16-mixed" in typing.get_args(typing.get_args(hints["precision"])[1])


def test_a_parser_builds_the_trainer_arguments_from_class_paths(tmp_path):
    from ember.loggers import CSVLogger
    from ember.plugins.environments import LightningEnvironment
    from ember.profilers import SimpleProfiler
    from ember.strategies import SingleDeviceStrategy

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ember.Trainer, "trainer", instantiate=False, sub_configs=True, fail_untyped=False)
    config = parser.parse_object(
        {
            "trainer": {
                "strategy": {"class_path": "ember.strategies.SingleDeviceStrategy", "init_args": {"device": "cpu"}},
                "logger": {"class_path": "CSVLogger", "init_args": {"save_dir": str(tmp_path)}},
                "profiler": "SimpleProfiler",
                "plugins": [{"class_path": "ember.plugins.environments.LightningEnvironment"}],
            }
        }
    )
    built = parser.instantiate(config).trainer
    assert isinstance(built.strategy, SingleDeviceStrategy) and isinstance(built.logger, CSVLogger)
    assert isinstance(built.profiler, SimpleProfiler) and isinstance(built.plugins[0], LightningEnvironment)


def test_import_ember_does_not_load_the_classes_the_trainer_hints_name():
    code = (
        "import sys, typing, ember\n"
        "names = ('ember.accelerators', 'ember.loggers', 'ember.distributed', 'ember.checkpoint.io')\n"
        "print([m for m in names if m in sys.modules])\n"
        "typing.get_type_hints(ember.Trainer.__init__)\n"
        "print([m for m in names if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.splitlines()
    assert before == "[]"
    assert after == "['ember.accelerators', 'ember.loggers', 'ember.distributed', 'ember.checkpoint.io']"


@pytest.mark.parametrize(("given", "expected"), [("yes", True), ("false", False), ("link", "link")])
def test_model_checkpoint_save_last_annotation_is_a_type_a_parser_reads(given, expected):
    annotation = inspect.signature(ember.callbacks.ModelCheckpoint).parameters["save_last"].annotation
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--save_last", type=annotation)
    assert parser.parse_args(["--save_last", given]).save_last == expected
