"""DeepSpeedStrategy: the error without the package, the config Lightning builds, and real runs when deepspeed
is installed (1 process, and 2 forked CPU ranks over gloo with DeepSpeed's CPU accelerator)."""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from tests.helpers.distributed_models import TwoLayers, loader, sharding_trainer
from torch import nn

import ember
from ember.callbacks import ModelCheckpoint
from ember.distributed.deepspeed_config import (
    add_precision_settings,
    add_trainer_settings,
    config_from_arguments,
    load_config,
)
from ember.strategies import DeepSpeedStrategy
from ember.utilities.exceptions import MisconfigurationException

pytestmark = pytest.mark.timeout(120)

REFERENCE = json.loads((Path(__file__).parents[1] / "fixtures" / "lightning_deepspeed_config.json").read_text())
CASES = {case["name"]: case for case in REFERENCE["cases"]}
NAMES = [
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "deepspeed_stage_3_offload_nvme",
]


# ---- without deepspeed ------------------------------------------------------------------------------
@pytest.fixture
def no_deepspeed(monkeypatch):
    """``import deepspeed`` fails, whether or not the package is installed."""
    for name in list(sys.modules):
        if name == "deepspeed" or name.startswith("deepspeed."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "deepspeed", None)


def test_the_class_without_deepspeed_says_how_to_install_it(no_deepspeed):
    with pytest.raises(MisconfigurationException, match=r"`deepspeed` package.*pip install -U deepspeed"):
        DeepSpeedStrategy(stage=3)


@pytest.mark.parametrize("name", NAMES)
def test_each_strategy_name_without_deepspeed_says_how_to_install_it(no_deepspeed, name):
    with pytest.raises(MisconfigurationException, match=r"`deepspeed` package.*pip install -U deepspeed"):
        ember.Trainer(accelerator="cpu", devices=1, strategy=name, logger=False)


def test_the_lightning_path_names_the_strategy():
    from ember.distributed import DeepSpeedStrategy as from_distributed

    assert from_distributed is DeepSpeedStrategy
    assert DeepSpeedStrategy.strategy_name == "deepspeed"


# ---- the config, compared with Lightning's ----------------------------------------------------------
def _config_from(arguments: dict) -> dict:
    given = load_config(arguments.get("config"))
    if given is not None:
        return given
    names = inspect.signature(config_from_arguments).parameters
    return config_from_arguments(**{key: value for key, value in arguments.items() if key in names})


def _completed(case: dict) -> dict:
    config = _config_from(case["arguments"])
    trainer = case["trainer"]
    add_trainer_settings(
        config,
        accumulate_grad_batches=trainer.get("accumulate_grad_batches", 1),
        batch_size=case["batch_size"] or 1,
        gradient_clip_val=trainer.get("gradient_clip_val"),
    )
    names = inspect.signature(add_precision_settings).parameters
    scaling = {key: value for key, value in case["arguments"].items() if key in names and key != "config"}
    add_precision_settings(config, trainer.get("precision", "32-true"), **scaling)
    return config


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_config_from_the_arguments_is_lightnings(name):
    assert _config_from(CASES[name]["arguments"]) == CASES[name]["config"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_config_completed_from_the_trainer_is_lightnings(name):
    assert _completed(CASES[name]) == CASES[name]["fit_config"]


def test_a_config_file_and_the_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    assert load_config(str(path)) == {"zero_optimization": {"stage": 3}}
    monkeypatch.setenv("PL_DEEPSPEED_CONFIG_PATH", str(path))
    assert load_config(None) == {"zero_optimization": {"stage": 3}}
    with pytest.raises(MisconfigurationException, match="path does not exist"):
        load_config(str(tmp_path / "missing.json"))


def test_the_trainer_owns_gradient_accumulation():
    with pytest.raises(MisconfigurationException, match="gradient_accumulation_steps"):
        add_trainer_settings({"gradient_accumulation_steps": 2}, 1, 4, None)


# ---- with deepspeed ----------------------------------------------------------------------------------
@pytest.fixture
def deepspeed(monkeypatch):
    module = pytest.importorskip("deepspeed")
    for key in (
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TORCHELASTIC_RUN_ID",
        "SLURM_NTASKS",
    ):
        monkeypatch.setenv(key, "")  # recorded, so that what the strategy sets is undone after the test
        monkeypatch.delenv(key)
    # On CPU, DeepSpeed compiles a shared-memory collective when it first starts (about 45 s, again for
    # every new environment); it only speeds up its own all-reduce, so the tests run on torch's collectives
    monkeypatch.setitem(module.ops.__compatible_ops__, "deepspeed_shm_comm", False)
    return module


class RecordEngine(ember.Callback):
    """Writes what the engine was built with, from the rank that trained, for the test to read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        strategy = trainer.strategy
        record = {
            "config": strategy.config,
            "engine_steps": strategy.deepspeed_engine.global_steps,
            "optimizer": type(trainer.optimizers[0]).__module__,
        }
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _engine_record(folder: Path) -> dict:
    return json.loads((folder / "rank0.json").read_text())


def _deepspeed(**kwargs) -> DeepSpeedStrategy:
    # every run in forked processes: DeepSpeed's process-wide state stays out of the test process
    return DeepSpeedStrategy(start_method="fork", **kwargs)


def _trainer(tmp_path, strategy, devices=1, **kwargs) -> ember.Trainer:
    return sharding_trainer(tmp_path, strategy, devices=devices, **kwargs)


def _plain_run(tmp_path, epochs: int, batch_size: int) -> tuple[float, dict]:
    """The same model and data, trained by Ember in one process without DeepSpeed."""
    torch.manual_seed(0)
    model = TwoLayers(momentum=0.9)
    trainer = _trainer(tmp_path / "plain", "auto", max_epochs=epochs, enable_checkpointing=False)
    trainer.fit(model, loader(16, batch_size=batch_size))
    return float(trainer.callback_metrics["loss"]), model.state_dict()


def _assert_same_weights(model: nn.Module, expected: dict) -> None:
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_one_process_trains_like_plain_ember_and_builds_lightnings_config(tmp_path, deepspeed, stage):
    expected_loss, expected_weights = _plain_run(tmp_path, epochs=1, batch_size=2)
    torch.manual_seed(0)
    model = TwoLayers(momentum=0.9)
    trainer = _trainer(
        tmp_path, _deepspeed(stage=stage), max_epochs=1, enable_checkpointing=False, callbacks=[RecordEngine(tmp_path)]
    )
    trainer.fit(model, loader(16, batch_size=2))
    assert trainer.global_step == 8
    assert float(trainer.callback_metrics["loss"]) == pytest.approx(expected_loss, rel=1e-5)
    _assert_same_weights(model, expected_weights)
    record = _engine_record(tmp_path)
    assert record["config"]["zero_optimization"]["stage"] == stage
    assert record["config"]["train_micro_batch_size_per_gpu"] == 2  # the loader's batch size
    assert record["config"]["gradient_accumulation_steps"] == 1
    assert record["optimizer"].startswith("deepspeed")  # `trainer.optimizers` holds the engine's optimizer
    assert DeepSpeedStrategy(**CASES["tuned"]["arguments"]).config == CASES["tuned"]["config"]


def test_accumulation_and_clipping_go_to_the_engine(tmp_path, deepspeed):
    torch.manual_seed(0)
    trainer = _trainer(
        tmp_path,
        _deepspeed(stage=2),
        max_epochs=1,
        enable_checkpointing=False,
        accumulate_grad_batches=2,
        gradient_clip_val=0.5,
        callbacks=[RecordEngine(tmp_path)],
    )
    trainer.fit(TwoLayers(momentum=0.9), loader(16, batch_size=2))
    assert trainer.global_step == 4  # one step per window of 2 batches, as without DeepSpeed
    record = _engine_record(tmp_path)
    assert record["engine_steps"] == 4
    assert record["config"]["gradient_accumulation_steps"] == 2
    assert record["config"]["gradient_clipping"] == 0.5
    by_value = _trainer(tmp_path, _deepspeed(), max_epochs=1, gradient_clip_val=0.5, gradient_clip_algorithm="value")
    with pytest.raises(Exception, match="does not support clipping gradients by value"):  # raised in the rank
        by_value.fit(TwoLayers(momentum=0.9), loader(4, batch_size=2))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux")
@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_train_like_one_process_and_resume_from_the_engines_folder(tmp_path, deepspeed, stage):
    # 2 ranks x batches of 2 see the same samples per step as one process with batches of 4
    expected_loss, expected_weights = _plain_run(tmp_path, epochs=2, batch_size=4)
    torch.manual_seed(0)
    model = TwoLayers(momentum=0.9)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
    trainer = _trainer(tmp_path, _deepspeed(stage=stage), devices=2, max_epochs=1, callbacks=[checkpoints])
    trainer.fit(model, loader(16, batch_size=2))
    last = tmp_path / "ckpts" / "last.ckpt"
    assert last.is_dir() and (last / "latest").read_text() == "checkpoint"
    saved = os.listdir(last / "checkpoint")
    assert any(name.endswith("model_states.pt") for name in saved)
    assert sum(name.endswith("optim_states.pt") for name in saved) == 2  # one optimizer shard per rank

    resumed = TwoLayers(momentum=0.9)
    trainer = _trainer(tmp_path, _deepspeed(stage=stage), devices=2, max_epochs=2, enable_checkpointing=False)
    trainer.fit(resumed, loader(16, batch_size=2), ckpt_path=str(last))
    assert trainer.global_step == 8
    assert float(trainer.callback_metrics["loss"]) == pytest.approx(expected_loss, rel=1e-5)
    _assert_same_weights(resumed, expected_weights)  # momentum buffers were restored by the engine


def test_the_precision_plugin_is_deepspeeds_and_unsupported_precisions_are_refused_at_once(deepspeed):
    from ember.plugins import DeepSpeedPrecision

    trainer = ember.Trainer(strategy="deepspeed", precision="bf16-mixed", accelerator="cpu", devices=1, logger=False)
    assert isinstance(trainer.precision_plugin, DeepSpeedPrecision) and trainer.precision == "bf16-mixed"
    with pytest.raises(ValueError, match=r"precision='64-true'\)` is not supported. `precision` must be one of"):
        ember.Trainer(strategy="deepspeed", precision="64-true", accelerator="cpu", devices=1, logger=False)
