"""FSDP2 (``fully_shard``) on 2 forked CPU ranks over gloo, and the CUDA paths for GPU machines."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch
from tests.helpers.core_models import quiet_trainer
from tests.helpers.distributed_models import SigtermAt, TwoLayers, loader, sharding_trainer, train_in_one_process
from torch import nn
from torch.distributed.checkpoint import FileSystemReader

import ember
from ember.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from ember.checkpoint import load_checkpoint
from ember.checkpoint.contents import EMBER_KEY
from ember.distributed import FSDPStrategy
from ember.utilities.exceptions import PreemptionExit

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux"),
    pytest.mark.timeout(120),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)


def fsdp_trainer(tmp_path, accelerator="cpu", devices=2, **kwargs) -> ember.Trainer:
    strategy = kwargs.pop("strategy", None) or FSDPStrategy(
        auto_wrap_policy={nn.Linear}, start_method="fork" if accelerator == "cpu" else "popen"
    )
    return sharding_trainer(tmp_path, strategy, devices=devices, accelerator=accelerator, **kwargs)


def test_fsdp_trains_like_one_process_and_writes_a_full_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = TwoLayers()
    reference = TwoLayers()
    reference.load_state_dict(model.state_dict())
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    trainer = fsdp_trainer(tmp_path, max_epochs=1, callbacks=[checkpoint])
    trainer.fit(model, loader(16, batch_size=2), loader(16, batch_size=2))

    train_in_one_process(reference)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-6, rtol=1e-5)

    saved = torch.load(checkpoint.best_model_path, weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["state_dict"].items()} == {
        "first.weight": (8, 4),
        "first.bias": (8,),
        "second.weight": (1, 8),
        "second.bias": (1,),
    }
    resumed = TwoLayers()
    again = fsdp_trainer(tmp_path / "again", max_epochs=2, enable_checkpointing=False)
    again.fit(resumed, loader(16, batch_size=2), ckpt_path=checkpoint.best_model_path)
    assert again.global_step == 8


class RecordsWrapping(TwoLayers):
    def on_train_start(self) -> None:
        import os

        with open(os.path.join(self.trainer.default_root_dir, f"rank{self.global_rank}.txt"), "w") as f:
            f.write(type(self.first).__name__)


def test_fsdp_activation_checkpointing_recomputes_and_trains_the_same(tmp_path):
    torch.manual_seed(0)
    plain, checkpointed = TwoLayers(), RecordsWrapping()
    checkpointed.load_state_dict(plain.state_dict())
    fsdp_trainer(tmp_path / "plain", max_epochs=1, enable_checkpointing=False).fit(plain, loader(16, batch_size=2))
    strategy = FSDPStrategy(
        auto_wrap_policy={nn.Linear},
        activation_checkpointing_policy={nn.Linear},
        sharding_strategy="SHARD_GRAD_OP",
        start_method="fork",
    )
    trainer = fsdp_trainer(tmp_path, max_epochs=1, enable_checkpointing=False, strategy=strategy)
    trainer.fit(checkpointed, loader(16, batch_size=2))
    assert (tmp_path / "rank0.txt").read_text() == (tmp_path / "rank1.txt").read_text() == "CheckpointWrapper"
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(checkpointed.state_dict()[key], value)


class RecordsLayout(TwoLayers):
    """Writes how ``first.weight`` is laid out on this rank: the mesh's shape, names and placements."""

    def on_train_start(self) -> None:
        weight = self.first.weight
        layout = {
            "mesh": list(weight.device_mesh.shape),
            "names": list(weight.device_mesh.mesh_dim_names or ()),
            "placements": [str(p) for p in weight.placements],
            "local_rows": weight.to_local().shape[0],
        }
        Path(self.trainer.default_root_dir, f"layout{self.global_rank}.json").write_text(json.dumps(layout))


@pytest.mark.parametrize(
    ("sharding", "device_mesh", "layout"),
    [
        # one node of 2: hybrid shards within it, so it is FULL_SHARD on a (1, 2) mesh
        ("HYBRID_SHARD", None, {"mesh": [1, 2], "placements": ["R", "S(0)"], "local_rows": 4}),
        (
            "_HYBRID_SHARD_ZERO2",
            (2, 1),
            {"mesh": [2, 1], "placements": ["R", "S(0)"], "local_rows": 8},
        ),
        ("NO_SHARD", None, {"mesh": [2, 1], "placements": ["R", "S(0)"], "local_rows": 8}),
        ("FULL_SHARD", [2, 1], {"mesh": [2, 1], "placements": ["R", "S(0)"], "local_rows": 8}),
    ],
    ids=["hybrid", "hybrid-zero2-mesh", "no-shard", "full-shard-mesh-from-a-config-list"],
)
def test_fsdp_hybrid_and_replicated_layouts_train_like_one_process(tmp_path, sharding, device_mesh, layout):
    torch.manual_seed(0)
    model, reference = RecordsLayout(), TwoLayers()
    reference.load_state_dict(model.state_dict())
    strategy = FSDPStrategy(sharding_strategy=sharding, device_mesh=device_mesh, start_method="fork")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    fsdp_trainer(tmp_path, max_epochs=1, strategy=strategy, callbacks=[checkpoint]).fit(model, loader(16, batch_size=2))
    for rank in (0, 1):
        assert json.loads((tmp_path / f"layout{rank}.json").read_text()) == {**layout, "names": ["replicate", "shard"]}

    train_in_one_process(reference)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-6, rtol=1e-5)
    saved = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    for key, value in reference.state_dict().items():  # the full weights, gathered over both dimensions
        torch.testing.assert_close(saved[key], value, atol=1e-6, rtol=1e-5)


def test_fsdp_device_mesh_that_does_not_fit_the_processes_is_refused_at_construction(tmp_path):
    strategy = FSDPStrategy(device_mesh=(2, 2), start_method="fork")
    with pytest.raises(ValueError, match=r"device_mesh=\(2, 2\)\)` holds 4 devices, but the run has 2 processes"):
        fsdp_trainer(tmp_path, max_epochs=1, strategy=strategy)
    # on 2 nodes of 2, hybrid sharding shards within a node and replicates across the two; NO_SHARD replicates
    for sharding, shape in (("HYBRID_SHARD", (2, 2)), ("NO_SHARD", (4, 1)), ("FULL_SHARD", None)):
        trainer = fsdp_trainer(tmp_path, num_nodes=2, strategy=FSDPStrategy(sharding_strategy=sharding))
        assert trainer.world_size == 4 and trainer.strategy._mesh_shape() == shape


def test_fsdp_device_mesh_and_the_deprecated_checkpointing_argument_are_checked_at_construction():
    for bad in ((2,), (0, 2), (1.0, 2), "2x1"):
        with pytest.raises(ValueError, match=r"pass `\(replicas, shards\)`"):
            FSDPStrategy(device_mesh=bad)
    with pytest.warns(DeprecationWarning, match=r"activation_checkpointing_policy=\{<class 'torch.nn.modules.linear"):
        strategy = FSDPStrategy(activation_checkpointing=nn.Linear)
    assert strategy._checkpoint_policy == (nn.Linear,)
    with pytest.raises(ValueError, match="You cannot set both `activation_checkpointing` and"):
        FSDPStrategy(activation_checkpointing=[nn.Linear], activation_checkpointing_policy={nn.Linear})


def test_fsdp_rejects_unknown_state_dict_types_and_sharding():
    assert FSDPStrategy(state_dict_type="sharded").state_dict_type == "sharded"
    with pytest.raises(ValueError, match="state_dict_type='local'.*'full'.*'sharded'"):
        FSDPStrategy(state_dict_type="local")
    with pytest.raises(ValueError, match="FULL_SHARD"):
        FSDPStrategy(sharding_strategy="HYBRID")


# ---- sharded checkpoints: a folder of every rank's shards plus meta.pt ------------------------------
LIGHTNING_INFO = Path(__file__).parents[1] / "fixtures" / "lightning_checkpoint_info.json"


class ShardedModel(TwoLayers):
    """Adam and a per-epoch scheduler: state that an inexact resume would visibly lose."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def sharded_trainer(tmp_path, preemption_check_interval: int = 10, **kwargs) -> ember.Trainer:
    strategy = FSDPStrategy(
        auto_wrap_policy={nn.Linear},
        state_dict_type="sharded",
        start_method="fork",
        preemption_check_interval=preemption_check_interval,
    )
    return fsdp_trainer(tmp_path, strategy=strategy, **kwargs)


def test_sharded_checkpoint_layout_eviction_and_loading_anywhere(tmp_path):
    torch.manual_seed(0)
    model = ShardedModel()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)  # no monitor: keeps the newest
    trainer = sharded_trainer(tmp_path, max_epochs=2, callbacks=[checkpoint])
    trainer.fit(model, loader(16, batch_size=2), loader(16, batch_size=2))

    # epoch=0-step=4.ckpt/ was evicted, folder and all; no temporary folder is left behind
    folder = tmp_path / "ckpts"
    assert sorted(os.listdir(folder)) == ["epoch=1-step=8.ckpt", "last.ckpt"]
    assert os.path.basename(checkpoint.best_model_path) == "epoch=1-step=8.ckpt"
    for name in ("epoch=1-step=8.ckpt", "last.ckpt"):
        assert sorted(os.listdir(folder / name)) == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]
    # each rank wrote its own half of every parameter and of Adam's moments
    index = FileSystemReader(str(folder / "last.ckpt")).read_metadata()
    assert {info.relative_path for info in index.storage_data.values()} == {"__0_0.distcp", "__1_0.distcp"}
    assert len(index.state_dict_metadata["model.first.weight"].chunks) == 2
    assert len(index.state_dict_metadata["optimizer_0.state.first.weight.exp_avg"].chunks) == 2

    # meta.pt: Lightning's top-level keys but the model and optimizer shards, plus Ember's resume state
    meta = torch.load(folder / "last.ckpt" / "meta.pt", weights_only=True)
    lightning_keys = set(json.loads(LIGHTNING_INFO.read_text())["top_level_keys"])
    assert set(meta) == lightning_keys - {"state_dict", "optimizer_states"} | {EMBER_KEY, "ember_version"}
    assert (meta["epoch"], meta["global_step"], meta["hyper_parameters"]) == (1, 8, {"lr": 0.05})
    assert meta["lr_schedulers"][0]["last_epoch"] == 2

    # one process without a process group rebuilds the trained model from the shards; what
    # `on_load_checkpoint` sees: meta.pt, the full weights, and each optimizer's state still on disk
    checkpoint_dict = load_checkpoint(folder / "last.ckpt")
    assert set(checkpoint_dict) == set(meta) | {"state_dict", "optimizer_states"}
    assert [type(state).__name__ for state in checkpoint_dict["optimizer_states"]] == ["ShardedOptimizerState"]
    loaded = ShardedModel.load_from_checkpoint(folder / "last.ckpt")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    # and resumes training from them, optimizer and scheduler included, on a single device
    single = _single_device_resume(tmp_path, folder / "last.ckpt")
    assert single.global_step == 12
    adam = single.optimizers[0]
    assert [state["step"].item() for state in adam.state.values()] == [12.0] * 4  # 8 saved + 4 new steps
    assert adam.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**3)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _single_device_resume(tmp_path, ckpt_path) -> ember.Trainer:
    """One more epoch of ``ShardedModel`` from ``ckpt_path``, in this process on one device."""
    trainer = quiet_trainer(accelerator="cpu", devices=1, max_epochs=3, default_root_dir=tmp_path)
    torch.manual_seed(1)
    trainer.fit(ShardedModel(), loader(16, batch_size=4), ckpt_path=ckpt_path)
    return trainer


def test_consolidate_checkpoint_writes_a_sharded_folder_as_one_file_that_loads_and_resumes(tmp_path):
    import subprocess

    torch.manual_seed(0)
    model = ShardedModel()
    trainer = sharded_trainer(tmp_path, max_epochs=2, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpts")])
    trainer.fit(model, loader(16, batch_size=2))
    folder = tmp_path / "ckpts" / "epoch=1-step=8.ckpt"

    def consolidate(*args):
        command = [sys.executable, "-m", "ember.utilities.consolidate_checkpoint", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    done = consolidate(folder)
    assert done.returncode == 0, done.stderr
    output = tmp_path / "ckpts" / "epoch=1-step=8.ckpt.consolidated"
    whole = torch.load(output, weights_only=True)  # one file, plain data: what torch.load reads anywhere
    meta = torch.load(folder / "meta.pt", weights_only=True)
    assert _same({key: whole[key] for key in meta}, meta)
    assert set(whole) == set(meta) | {"state_dict", "optimizer_states"}
    assert all(torch.equal(whole["state_dict"][k], v) for k, v in model.state_dict().items())
    adam = whole["optimizer_states"][0]  # keyed by parameter name, each state whole (both ranks' halves)
    assert sorted(adam["state"]) == ["first.bias", "first.weight", "second.bias", "second.weight"]
    assert adam["state"]["first.weight"]["exp_avg"].shape == (8, 4)
    assert adam["param_groups"][0]["lr"] == pytest.approx(0.05 * 0.5**2)

    loaded = ShardedModel.load_from_checkpoint(output)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    # resuming from the file is resuming from the folder: weights, Adam's state, the schedule
    from_file, from_folder = _single_device_resume(tmp_path, output), _single_device_resume(tmp_path, folder)
    assert from_file.global_step == from_folder.global_step == 12
    for a, b in zip(from_file.lightning_module.parameters(), from_folder.lightning_module.parameters()):
        assert torch.equal(a, b)
    assert [s["step"].item() for s in from_file.optimizers[0].state.values()] == [12.0] * 4

    # what it refuses, and why
    assert "already exists" in consolidate(folder).stderr
    assert "does not exist" in consolidate(tmp_path / "nowhere").stderr
    assert "must be a folder" in consolidate(output, "--output_file", tmp_path / "x").stderr
    (tmp_path / "plain").mkdir()
    refused = consolidate(tmp_path / "plain")
    assert refused.returncode == 1 and "not in that format" in refused.stderr


def test_resume_from_a_sharded_checkpoint_equals_an_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    uninterrupted, interrupted = ShardedModel(), ShardedModel()
    interrupted.load_state_dict(uninterrupted.state_dict())
    sharded_trainer(tmp_path / "straight", max_epochs=3, enable_checkpointing=False).fit(
        uninterrupted, loader(16, batch_size=2)
    )

    # stop mid-epoch (step 6, with 4 steps an epoch), then resume from `last` with a new trainer
    def mid_epoch_saves():
        return ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=3, save_last=True)

    sharded_trainer(tmp_path, max_steps=6, callbacks=[mid_epoch_saves()]).fit(interrupted, loader(16, batch_size=2))
    assert torch.load(tmp_path / "ckpts" / "last.ckpt" / "meta.pt", weights_only=True)["global_step"] == 6
    assert not torch.equal(interrupted.first.weight, uninterrupted.first.weight)
    resumed = ShardedModel()
    again = sharded_trainer(tmp_path, max_epochs=3, callbacks=[mid_epoch_saves()])
    again.fit(resumed, loader(16, batch_size=2), ckpt_path="last")

    assert again.global_step == 12
    for key, value in uninterrupted.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key

    # a preemption signal saves `last` as a sharded folder on every rank, and the resume is exact too
    preempted = tmp_path / "preempted"
    with pytest.raises(PreemptionExit, match="Received SIGTERM: training stopped at epoch 1, step 6"):
        torch.manual_seed(0)
        stopping = [ModelCheckpoint(dirpath=preempted, save_top_k=0), SigtermAt(6)]
        sharded_trainer(preempted, preemption_check_interval=1, max_epochs=3, callbacks=stopping).fit(
            ShardedModel(), loader(16, batch_size=2)
        )
    assert sorted(os.listdir(preempted / "last.ckpt")) == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]
    resumed = ShardedModel()
    sharded_trainer(preempted, max_epochs=3, callbacks=[ModelCheckpoint(dirpath=preempted, save_top_k=0)]).fit(
        resumed, loader(16, batch_size=2), ckpt_path="last"
    )
    for key, value in uninterrupted.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


class FailsOnRank1(ShardedModel):
    def training_step(self, batch, batch_idx):
        if self.global_rank == 1 and self.current_epoch == 1 and batch_idx == 2:
            raise ValueError("boom on rank 1")
        return super().training_step(batch, batch_idx)


def test_a_sharded_save_after_a_rank_failed_is_skipped_and_keeps_the_previous_folders(tmp_path):
    # a sharded save needs every rank; once one failed, the save on exception must not wait for it
    callbacks = [OnExceptionCheckpoint(dirpath=tmp_path), ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)]
    start = time.monotonic()
    with pytest.raises(Exception, match="boom on rank 1"):
        sharded_trainer(tmp_path, max_epochs=2, callbacks=callbacks).fit(FailsOnRank1(), loader())
    assert time.monotonic() - start < 60
    assert sorted(os.listdir(tmp_path)) == ["ckpts"]  # no on_exception.ckpt, no temporary folder
    assert load_checkpoint(tmp_path / "ckpts" / "last.ckpt")["global_step"] == 4  # the epoch-0 save


def test_a_rank_that_failed_does_not_start_a_sharded_save(tmp_path, monkeypatch):
    strategy = FSDPStrategy(state_dict_type="sharded")
    monkeypatch.setattr(FSDPStrategy, "world_size", property(lambda self: 2))
    strategy._failed = True  # what `on_exception` sets: the other ranks are stopping
    with pytest.warns(UserWarning, match=r"last\.ckpt was not saved: a rank failed"):
        strategy.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "epoch": 0}, tmp_path / "last.ckpt")
    assert os.listdir(tmp_path) == []


def test_sharded_checkpoint_paths_that_are_not_checkpoints_raise_clear_errors(tmp_path):
    plain = tmp_path / "plain.ckpt"
    plain.mkdir()
    with pytest.raises(IsADirectoryError, match=r"plain\.ckpt is a folder but not a sharded checkpoint.*meta\.pt"):
        ShardedModel.load_from_checkpoint(plain)
    trainer = ember.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(IsADirectoryError, match=r"plain\.ckpt is a folder but not a sharded checkpoint"):
        trainer.validate(ShardedModel(), loader(), ckpt_path=plain)
    with pytest.raises(ValueError, match=r"does not point to a valid checkpoint: .*plain\.ckpt is a folder but not"):
        trainer.validate(ShardedModel(), loader(), ckpt_path=plain)  # the error Lightning's sharded strategies raise
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        trainer.validate(ShardedModel(), loader(), ckpt_path=tmp_path / "missing.ckpt")


class Evaluated(ShardedModel):
    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self.second(torch.relu(self.first(x))), y), sync_dist=True)


@pytest.mark.parametrize("state_dict_type", ["full", "sharded"])
def test_validate_and_test_best_and_last_after_fit_in_the_same_process(tmp_path, in_test_process, state_dict_type):
    # no launcher (1 rank): the module stays sharded after fit, so loading must go through the strategy
    torch.manual_seed(0)
    model = Evaluated()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_last=True)
    strategy = FSDPStrategy(auto_wrap_policy={nn.Linear}, state_dict_type=state_dict_type)
    trainer = fsdp_trainer(tmp_path, devices=1, strategy=strategy, max_epochs=2, callbacks=[checkpoint])
    trainer.fit(model, loader(16, batch_size=2), loader(16, batch_size=2))
    assert type(model.first.weight).__name__ == "DTensor"
    assert os.path.isdir(checkpoint.best_model_path) == (state_dict_type == "sharded")
    trained = {key: value.full_tensor() for key, value in model.state_dict().items()}

    with torch.no_grad():
        model.first.weight.mul_(0)  # the checkpoints must bring the weights back
    validated = trainer.validate(model, loader(16, batch_size=2), ckpt_path="best")
    tested = trainer.test(model, loader(16, batch_size=2), ckpt_path="last")
    assert validated[0]["val_loss"] == pytest.approx(checkpoint.best_model_score.item())
    assert tested[0]["test_loss"] == pytest.approx(trainer.callback_metrics["test_loss"].item())
    for key, value in model.state_dict().items():
        assert torch.equal(value.full_tensor(), trained[key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fsdp_bf16_on_cuda(tmp_path):
    trainer = fsdp_trainer(
        tmp_path,
        accelerator="cuda",
        devices=1,
        precision="bf16-mixed",
        max_epochs=1,
        enable_checkpointing=False,
        strategy=FSDPStrategy(start_method="spawn"),
    )
    trainer.fit(TwoLayers(), loader(16, batch_size=2))
    assert trainer.global_step == 8 and trainer.strategy.process_group_backend == "nccl"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ddp_on_cuda_uses_nccl(tmp_path):
    trainer = ember.Trainer(
        accelerator="cuda",
        devices=1,
        strategy="ddp_spawn",
        logger=False,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    model = TwoLayers()
    trainer.fit(model, loader(16, batch_size=2))
    assert trainer.global_step == 8 and trainer.strategy.process_group_backend == "nccl"


class ClipsThroughTheWrapper(TwoLayers):
    """Lightning's FSDP recipe: clip by the norm of all the shards, through ``trainer.model``."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        norm = self.trainer.model.clip_grad_norm_(0.05)
        self.norms = [*getattr(self, "norms", []), float(norm)]

    def on_fit_end(self) -> None:
        torch.save(self.norms, os.path.join(self.trainer.default_root_dir, f"norms{self.global_rank}.pt"))


def test_the_sharded_model_clips_the_gradients_of_all_ranks_as_fsdp1s_wrapper_does(tmp_path):
    torch.manual_seed(0)
    model, reference = ClipsThroughTheWrapper(), TwoLayers()
    reference.load_state_dict(model.state_dict())
    fsdp_trainer(tmp_path, max_epochs=1, enable_checkpointing=False).fit(model, loader(16, batch_size=2))
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    norms = []
    for x, y in loader(16, batch_size=4):  # batch 2 on each of 2 ranks is batch 4 in one
        optimizer.zero_grad()
        nn.functional.mse_loss(reference.second(torch.relu(reference.first(x))), y).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.05)))
        optimizer.step()
    assert min(norms) > 0.05  # it clipped every step
    for rank in range(2):  # each rank's norm is the whole model's
        assert torch.load(tmp_path / f"norms{rank}.pt") == pytest.approx(norms, rel=1e-5)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-6, rtol=1e-5)
