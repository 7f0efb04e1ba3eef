"""Lightning's ``FSDPPrecision`` plugin on Ember: what it accepts, its FSDP1 ``mixed_precision_config``, its
conversions and contexts, and ``FSDPStrategy`` training with it (its config mapped onto FSDP2 as the strategy's
``mixed_precision=`` argument is), the sharded gradient scaler of ``"16-mixed"`` and gradient clipping. The fits
run on 2 forked CPU ranks over gloo, as in ``test_fsdp.py``."""

from __future__ import annotations

import sys
import warnings
from unittest import mock

import pytest
import torch
from tests.helpers.distributed_models import (
    NormedLayers,
    TwoLayers,
    loader,
    read_records,
    sharding_trainer,
    write_record,
)
from torch import nn
from torch.distributed.fsdp import MixedPrecision
from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

import ember
from ember.callbacks import ModelCheckpoint
from ember.distributed import FSDPStrategy
from ember.distributed.fsdp import _plan_from_fsdp1
from ember.precision import FSDPPrecision
from ember.precision import MixedPrecision as AmpPrecision

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux"),
    pytest.mark.timeout(120),
]

LOW = {"16-true": torch.float16, "bf16-true": torch.bfloat16, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


@pytest.fixture(autouse=True)
def clean_env(no_rank_variables):
    """No rank variables of an outer launcher (the forked ranks set their own)."""


# ---- the plugin on its own ---------------------------------------------------------------------------
def test_the_plugin_takes_lightnings_precisions_and_a_scaler_for_16_mixed_only():
    for precision in ("32-true", "16-true", "bf16-true", "bf16-mixed"):
        assert FSDPPrecision(precision).scaler is None
    assert isinstance(FSDPPrecision("16-mixed").scaler, ShardedGradScaler)
    # a scaler of one's own is kept (Lightning refuses any scaler given, as its check reads the class's precision)
    scaler = ShardedGradScaler("cpu", init_scale=4.0)
    assert FSDPPrecision("16-mixed", scaler=scaler).scaler is scaler
    with pytest.raises(ValueError, match=r"^`precision='bf16-mixed'` does not use a scaler, found "):
        FSDPPrecision("bf16-mixed", scaler=scaler)
    allowed = "('32-true', '16-true', 'bf16-true', '16-mixed', 'bf16-mixed')"
    for precision in ("64-true", "bf16", 16):
        with pytest.raises(ValueError) as error:
            FSDPPrecision(precision)
        assert str(error.value) == (
            f"`precision={precision!r})` is not supported in FSDP. `precision` must be one of: {allowed}."
        )


@pytest.mark.parametrize("precision", ["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"])
def test_mixed_precision_config_has_the_precisions_dtype_for_all_three_and_the_true_ones_warn(precision):
    plugin = FSDPPrecision(precision)
    dtype = LOW.get(precision, torch.float32)
    if precision in ("16-true", "bf16-true"):
        with pytest.warns(UserWarning, match=r"enables computation in lower precision. The module is converted"):
            config = plugin.mixed_precision_config
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            config = plugin.mixed_precision_config
    assert config == MixedPrecision(param_dtype=dtype, reduce_dtype=dtype, buffer_dtype=dtype)


@pytest.mark.parametrize("precision", ["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"])
def test_conversions_and_contexts_are_half_precisions_or_mixed_precisions_by_the_kind(precision):
    plugin = FSDPPrecision(precision)
    mixed = precision.endswith("-mixed")
    dtype = torch.float32 if mixed else LOW.get(precision, torch.float32)  # the module's, the batches', new tensors'
    module = plugin.convert_module(nn.Linear(2, 2).double())
    assert module.weight.dtype == (torch.float64 if mixed else dtype)  # the mixed ones leave the module as it is
    batch = plugin.convert_input({"x": torch.zeros(2, dtype=torch.float64), "i": torch.zeros(2, dtype=torch.long)})
    assert (batch["x"].dtype, batch["i"].dtype) == (dtype, torch.long)  # as Lightning: float32 for the mixed ones
    assert plugin.convert_output(torch.zeros(2, dtype=torch.float16)).dtype == torch.float32
    for context in (plugin.tensor_init_context, plugin.module_init_context):
        with context():
            assert torch.get_default_dtype() == dtype
        assert torch.get_default_dtype() == torch.float32
    with plugin.forward_context():
        if mixed:  # autocast on the run's device, the default dtype unchanged
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == LOW[precision]
            assert torch.get_default_dtype() == torch.float32
        else:
            assert not torch.is_autocast_enabled("cpu") and torch.get_default_dtype() == dtype
    assert torch.get_default_dtype() == torch.float32 and not torch.is_autocast_enabled("cpu")


def test_the_trainer_gives_the_plugin_its_device_for_autocast_and_the_default_scaler():
    with mock.patch("torch.cuda.is_available", return_value=True):  # built on a CUDA machine
        plugin = FSDPPrecision("16-mixed")
    assert plugin.device == "cuda" and plugin.scaler._device == "cuda"
    given = ShardedGradScaler("cpu", init_scale=4.0)
    mine = FSDPPrecision("16-mixed", scaler=given)
    mine.device = "cuda"
    for used in (plugin, mine):
        trainer = ember.Trainer(accelerator="cpu", strategy=FSDPStrategy(), devices=2, plugins=[used], logger=False)
        assert trainer.precision_plugin is used and used.device == "cpu"
    assert isinstance(plugin.scaler, ShardedGradScaler) and plugin.scaler._device == "cpu" and plugin.scaler._enabled
    assert mine.scaler is given  # a scaler of one's own is left as it is


def test_the_strategys_mixed_precision_argument_wins_over_the_plugins_config_and_both_map_through_fsdp1s_path():
    strategy = FSDPStrategy()
    strategy.precision_plugin = plugin = FSDPPrecision("bf16-mixed")
    assert strategy.mixed_precision_config == plugin.mixed_precision_config
    assert strategy._precision_plan() == _plan_from_fsdp1(plugin.mixed_precision_config)
    given = MixedPrecision(param_dtype=torch.float16, reduce_dtype=torch.float32)
    strategy = FSDPStrategy(mixed_precision=given, precision_plugin=FSDPPrecision("bf16-mixed"))
    assert strategy.mixed_precision_config is given  # as Lightning: `mixed_precision or plugin.mixed_precision_config`
    assert strategy._precision_plan() == _plan_from_fsdp1(given)
    # `Trainer(precision=...)` keeps Ember's plugin, which reduces in float32 (docs/compat.md)
    trainer = ember.Trainer(accelerator="cpu", strategy=FSDPStrategy(), devices=2, precision="bf16-mixed", logger=False)
    assert type(trainer.precision_plugin) is AmpPrecision
    assert trainer.strategy.mixed_precision_config.reduce_dtype == torch.float32


# ---- training with it ------------------------------------------------------------------------------
class RecordsPrecision(NormedLayers):
    """Records what a training step sees: the batch, autocast, the default dtype, the buffer, and the first
    layer's and the batch norm's input and weight (and running mean) inside FSDP's casts."""

    def on_train_start(self) -> None:
        self.first.register_forward_pre_hook(
            lambda module, args: self.seen.update({"first": f"{args[0].dtype} {module.weight.dtype}"})
        )
        self.norm.register_forward_pre_hook(
            lambda module, args: self.seen.update(
                {"norm": f"{args[0].dtype} {module.weight.dtype} {module.running_mean.dtype}"}
            )
        )

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.seen["batch"] = str(batch[0].dtype)  # as the plugin's `convert_input` gave it

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.update(
            autocast=torch.is_autocast_enabled("cpu"),
            default=str(torch.get_default_dtype()),
            scale=str(self.scale.dtype),
        )
        out = self.second(torch.relu(self.norm(self.first(x))) * self.scale)
        return nn.functional.mse_loss(out.float(), y.float())


@pytest.mark.parametrize(("given", "precision"), [("plugins", "bf16-mixed"), ("precision_plugin", "bf16-true")])
def test_the_plugin_given_to_the_trainer_or_the_strategy_trains_with_its_config_mapped_onto_fsdp2(
    tmp_path, given, precision
):
    plugin = FSDPPrecision(precision)
    strategy_options = {"precision_plugin": plugin} if given == "precision_plugin" else {}
    trainer_options = {"plugins": [plugin]} if given == "plugins" else {}
    strategy = FSDPStrategy(auto_wrap_policy={nn.Linear}, start_method="fork", **strategy_options)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    trainer = sharding_trainer(tmp_path, strategy, max_epochs=1, callbacks=[checkpoint], **trainer_options)
    trainer.fit(RecordsPrecision(), loader(16, 2))
    assert trainer.precision_plugin is plugin
    assert strategy.mixed_precision_config == plugin.mixed_precision_config
    low = str(LOW[precision])
    mixed = precision == "bf16-mixed"
    expected = {
        "batch": "torch.float32" if mixed else low,  # `convert_input`
        "autocast": mixed,
        "default": "torch.float32" if mixed else low,
        "scale": low,  # the config's `buffer_dtype`
        "first": f"{low} {low}",  # `param_dtype`; the root cast the batch (`cast_root_forward_inputs`)
        # FSDP1's `_module_classes_to_ignore`: in float32 (for a "-true" precision, its running stats too)
        "norm": "torch.float32 torch.float32 torch.float32",
    }
    assert read_records(tmp_path) == [expected] * 2
    saved = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    # a mixed run keeps the float32 weights and the buffers' own dtype; a true one was converted
    floats = {value.dtype for value in saved.values() if value.is_floating_point()}
    assert floats == {torch.float32 if mixed else LOW[precision]}


def test_the_plugins_config_trains_exactly_as_that_config_given_as_the_strategys_mixed_precision(tmp_path):
    torch.manual_seed(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_plugin, with_argument = RecordsPrecision(), RecordsPrecision()
    with_argument.load_state_dict(with_plugin.state_dict())
    initial = {key: value.clone() for key, value in with_plugin.state_dict().items()}
    strategy = FSDPStrategy(auto_wrap_policy={nn.Linear}, start_method="fork")
    sharding_trainer(
        tmp_path / "a", strategy, max_epochs=1, enable_checkpointing=False, plugins=[FSDPPrecision("bf16-mixed")]
    ).fit(with_plugin, loader(16, 2))
    config = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, buffer_dtype=torch.bfloat16)
    strategy = FSDPStrategy(auto_wrap_policy={nn.Linear}, mixed_precision=config, start_method="fork")
    sharding_trainer(tmp_path / "b", strategy, max_epochs=1, enable_checkpointing=False, precision="bf16-mixed").fit(
        with_argument, loader(16, 2)
    )
    trained = with_argument.state_dict()
    for key, value in with_plugin.state_dict().items():
        assert torch.equal(value, trained[key]), key
    for key in ("first.weight", "norm.weight", "norm.running_mean", "second.weight"):  # it trained
        assert not torch.equal(with_plugin.state_dict()[key], initial[key]), key


class OverflowsOnRank1(TwoLayers):
    """At the second batch, rank 1's shard of a gradient overflows; records the loss scale and this rank's
    shard of the first weight after each batch, and the scale the run starts with."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_idx = 0
        self.seen: dict[str, list] = {"scale": [], "shard": []}

    def on_train_start(self) -> None:
        self.seen["start"] = self.trainer.precision_plugin.scaler.get_scale()

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.batch_idx = batch_idx

    def on_after_backward(self) -> None:
        if self.global_rank == 1 and self.batch_idx == 1 and self.current_epoch == 0:
            self.first.weight.grad.to_local().fill_(float("inf"))

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.seen["scale"].append(self.trainer.precision_plugin.scaler.get_scale())
        self.seen["shard"].append(self.first.weight.to_local().sum().item())

    def on_train_end(self) -> None:
        write_record(self, self.seen)


def test_16_mixed_steps_with_the_sharded_scaler_every_rank_agrees_with_and_checkpoints_its_state(tmp_path):
    scaler = ShardedGradScaler("cpu", init_scale=16.0)
    strategy = FSDPStrategy(precision_plugin=FSDPPrecision("16-mixed", scaler=scaler), start_method="fork")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    sharding_trainer(tmp_path, strategy, max_epochs=1, callbacks=[checkpoint]).fit(OverflowsOnRank1(), loader(16, 2))
    records = read_records(tmp_path)
    for record in records:
        # the overflow on rank 1 halves the scale on both ranks, and neither rank steps: rank 0's shard stays too
        assert record["scale"] == [16.0, 8.0, 8.0, 8.0]
        shards = record["shard"]
        assert shards[1] == shards[0] and len({shards[0], shards[2], shards[3]}) == 3
    # the scaler's state in the checkpoint, under the plugin's name (as Lightning), restored on resume
    saved = torch.load(checkpoint.best_model_path, weights_only=True)
    assert saved["FSDPPrecision"]["scale"] == 8.0
    strategy = FSDPStrategy(precision_plugin=FSDPPrecision("16-mixed"), start_method="fork")
    resumed = sharding_trainer(tmp_path, strategy, max_epochs=2, enable_checkpointing=False)
    resumed.fit(OverflowsOnRank1(), loader(16, 2), ckpt_path=checkpoint.best_model_path)
    assert [record["start"] for record in read_records(tmp_path)] == [8.0, 8.0]


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_by_norm_and_value_clips_like_one_process(tmp_path, algorithm):
    # Lightning's plugin refuses clipping by norm: FSDP1's flat shards needed the wrapper's own clip_grad_norm_.
    # FSDP2's gradients are DTensors, whose norm `clip_grad_norm_` computes over all the shards
    torch.manual_seed(0)
    model, reference = TwoLayers(), TwoLayers()
    reference.load_state_dict(model.state_dict())
    strategy = FSDPStrategy(auto_wrap_policy={nn.Linear}, start_method="fork")
    trainer = sharding_trainer(
        tmp_path,
        strategy,
        max_epochs=1,
        enable_checkpointing=False,
        plugins=[FSDPPrecision("32-true")],
        gradient_clip_val=0.05,
        gradient_clip_algorithm=algorithm,
    )
    trainer.fit(model, loader(16, 2))
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    for x, y in loader(16, batch_size=4):  # batch 2 on each of 2 ranks is batch 4 in one
        optimizer.zero_grad()
        nn.functional.mse_loss(reference.second(torch.relu(reference.first(x))), y).backward()
        if algorithm == "norm":
            assert torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05) > 0.05  # it clips
        else:
            torch.nn.utils.clip_grad_value_(reference.parameters(), 0.05)
        optimizer.step()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-6, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fsdp_precision_16_mixed_on_cuda(tmp_path):
    plugin = FSDPPrecision("16-mixed")
    strategy = FSDPStrategy(start_method="spawn")
    trainer = sharding_trainer(
        tmp_path, strategy, devices=1, accelerator="cuda", max_epochs=1, enable_checkpointing=False, plugins=[plugin]
    )
    trainer.fit(TwoLayers(), loader(16, batch_size=2))
    assert trainer.global_step == 8 and plugin.device == "cuda" and plugin.scaler._device == "cuda"


def test_lightning_1x_fsdp_mixed_precision_plugin_takes_its_device_argument_and_warns():
    # its second argument was the device: taken as the scaler, a "16-mixed" plugin held the string "cuda"
    from ember.precision.fsdp import FSDPMixedPrecisionPlugin

    with pytest.deprecated_call(match="The `FSDPMixedPrecisionPlugin` is deprecated. Use `FSDPPrecision`"):
        plugin = FSDPMixedPrecisionPlugin("16-mixed", "cuda")
    assert isinstance(plugin, FSDPPrecision) and isinstance(plugin.scaler, ShardedGradScaler)
    with pytest.deprecated_call():
        plugin = FSDPMixedPrecisionPlugin(precision="bf16-mixed", device="cuda")
    assert plugin.precision == "bf16-mixed" and plugin.scaler is None
