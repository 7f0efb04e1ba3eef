"""ModelParallelStrategy: tensor parallelism and FSDP2 applied in ``configure_model`` over a 2-D device mesh,
on 2 forked CPU ranks over gloo; the errors in the test process, without launching anything."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from tests.helpers.distributed_models import loader, sharding_trainer
from torch import nn
from torch.distributed.checkpoint import FileSystemReader

import ember
from ember.callbacks import ModelCheckpoint
from ember.strategies import ModelParallelStrategy

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux"),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("no_rank_variables"),
]


class MLP(ember.LightningModule):
    """``net`` split over the ranks in ``configure_model``: "tensor" (column- then row-wise) or "data"
    (FSDP2 over the data-parallel mesh). Each rank writes the losses and batches it saw."""

    def __init__(self, parallelism: str = "tensor", lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.seen: dict[str, list] = {"losses": [], "inputs": []}

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        mesh = self.device_mesh
        if self.hparams.parallelism == "tensor":
            parallelize_module(self.net, mesh["tensor_parallel"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
        else:
            fully_shard(self.net[0], mesh=mesh["data_parallel"])
            fully_shard(self.net, mesh=mesh["data_parallel"])

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.seen["losses"].append(loss.item())
        self.seen["inputs"].append(x.clone())
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def on_fit_end(self) -> None:
        mesh = self.device_mesh
        self.seen["mesh"] = (mesh.mesh_dim_names, tuple(mesh.shape))
        self.seen["sampler"] = dict(self.trainer.strategy.distributed_sampler_kwargs)
        torch.save(self.seen, os.path.join(self.trainer.default_root_dir, f"rank{self.global_rank}.pt"))


class Plain(MLP):
    def configure_model(self) -> None:
        pass  # the same layers, unsplit: what `load_from_checkpoint` gives in one process


def read_ranks(folder) -> list[dict]:
    return [torch.load(os.path.join(folder, f"rank{rank}.pt"), weights_only=False) for rank in range(2)]


def one_process_run(model: nn.Module, epochs: int, batch_size: int) -> list[float]:
    """The same training in a plain loop: the losses of every step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(epochs):
        for x, y in loader(16, batch_size=batch_size):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model.net(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def trainer_for(folder, strategy: ModelParallelStrategy, devices: int = 2, **kwargs) -> ember.Trainer:
    return sharding_trainer(folder, strategy, devices=devices, **kwargs)


def test_tensor_parallel_trains_like_one_process_and_its_full_checkpoint_loads_anywhere(tmp_path):
    torch.manual_seed(0)
    model = MLP("tensor")
    reference = Plain()
    reference.load_state_dict(model.state_dict())
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
    strategy = ModelParallelStrategy(tensor_parallel_size=2, save_distributed_checkpoint=False, start_method="fork")
    trainer_for(tmp_path, strategy, max_epochs=1, callbacks=[checkpoint]).fit(model, loader(16, batch_size=4))

    # "auto" data-parallel size with tp=2 on 2 processes: one replica, so both ranks read every batch
    rank0, rank1 = read_ranks(tmp_path)
    assert rank0["mesh"] == rank1["mesh"] == (("data_parallel", "tensor_parallel"), (1, 2))
    assert rank0["sampler"] == rank1["sampler"] == {"num_replicas": 1, "rank": 0}
    assert len(rank0["inputs"]) == 4
    for x0, x1 in zip(rank0["inputs"], rank1["inputs"]):
        assert torch.equal(x0, x1)
    expected = one_process_run(reference, epochs=2, batch_size=4)
    assert rank0["losses"] == pytest.approx(expected[:4], rel=1e-5)
    assert rank1["losses"] == pytest.approx(expected[:4], rel=1e-5)

    # one full file, gathered on rank 0, that a plain module reads
    saved = torch.load(checkpoint.last_model_path, weights_only=True)
    assert os.path.isfile(checkpoint.last_model_path)
    assert {k: tuple(v.shape) for k, v in saved["state_dict"].items()} == {
        "net.0.weight": (8, 4),
        "net.0.bias": (8,),
        "net.2.weight": (1, 8),
        "net.2.bias": (1,),
    }
    loaded = Plain.load_from_checkpoint(checkpoint.last_model_path)
    for key, value in model.state_dict().items():  # the weights the ranks handed back
        assert torch.equal(loaded.state_dict()[key], value), key
        assert not torch.equal(value, initial[key]), key

    # resuming from the file continues exactly: the optimizer's state comes back too
    resumed = MLP("tensor")
    again = tmp_path / "again"
    again.mkdir()
    strategy = ModelParallelStrategy(tensor_parallel_size=2, save_distributed_checkpoint=False, start_method="fork")
    trainer = trainer_for(again, strategy, max_epochs=2, enable_checkpointing=False)
    trainer.fit(resumed, loader(16, batch_size=4), ckpt_path=checkpoint.last_model_path)
    assert trainer.global_step == 8
    assert read_ranks(again)[0]["losses"] == pytest.approx(expected[4:], rel=1e-5)


def test_fully_sharded_data_parallel_splits_the_data_and_resumes_from_a_sharded_folder(tmp_path):
    torch.manual_seed(0)
    uninterrupted, interrupted = MLP("data"), MLP("data")
    interrupted.load_state_dict(uninterrupted.state_dict())
    reference = Plain()
    reference.load_state_dict(uninterrupted.state_dict())
    expected = one_process_run(reference, epochs=2, batch_size=4)

    # dp=2, tp=1: each rank gets half of every batch of 4; checkpoints are sharded folders by default
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1, start_method="fork")
    trainer_for(tmp_path, strategy, max_epochs=1, callbacks=[checkpoint]).fit(interrupted, loader(16, batch_size=2))
    rank0, rank1 = read_ranks(tmp_path)
    assert rank0["mesh"] == (("data_parallel", "tensor_parallel"), (2, 1))
    assert (rank0["sampler"], rank1["sampler"]) == ({"num_replicas": 2, "rank": 0}, {"num_replicas": 2, "rank": 1})
    assert len(rank0["inputs"]) == len(rank1["inputs"]) == 4
    seen = torch.cat([torch.cat(rank0["inputs"]), torch.cat(rank1["inputs"])])
    assert len(torch.unique(seen, dim=0)) == 16  # the ranks read different samples, every one once
    # the mean of the two halves' losses is the loss of the whole batch in one process
    halves = [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"])]
    assert halves == pytest.approx(expected[:4], rel=1e-5)

    folder = tmp_path / "ckpts" / "last.ckpt"
    assert sorted(os.listdir(folder)) == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]
    index = FileSystemReader(str(folder)).read_metadata()
    assert len(index.state_dict_metadata["state_dict.net.0.weight"].chunks) == 2  # Lightning's key, one half each
    assert len(index.state_dict_metadata["optimizer_0.state.net.0.weight.exp_avg"].chunks) == 2
    loaded = Plain.load_from_checkpoint(folder)
    for key, value in interrupted.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    # the second epoch from the folder ends where the one-process run ends after two
    resumed = MLP("data")
    again = tmp_path / "again"
    again.mkdir()
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1, start_method="fork")
    trainer = trainer_for(again, strategy, max_epochs=2, enable_checkpointing=False)
    trainer.fit(resumed, loader(16, batch_size=2), ckpt_path=folder)
    assert trainer.global_step == 8
    one_process_final = reference.state_dict()
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, one_process_final[key], atol=1e-5, rtol=1e-4)


class NoReset(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale


class BuiltOnMeta(MLP):
    """``net[2]`` and ``extra`` are built on the meta device (as a model too large for one rank would be); ``net[0]``
    on the CPU, with its values. Each rank records, as training starts, what it holds."""

    def __init__(self) -> None:
        super().__init__("data")
        self.net[2] = nn.Linear(8, 1, device="meta")
        self.extra = NoReset().to("meta")
        self.register_buffer("offset", torch.empty(1, device="meta"))

    def reset_parameters(self) -> None:  # the module's own tensors (the buffer)
        self.offset.fill_(0.5)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.extra(self.net(x)) + self.offset, y)

    def on_train_start(self) -> None:
        full = {name: getattr(t, "full_tensor", lambda t=t: t)() for name, t in self.state_dict().items()}
        torch.save(full, os.path.join(self.trainer.default_root_dir, f"start{self.global_rank}.pt"))


def test_a_model_built_on_the_meta_device_is_made_real_by_reset_parameters(tmp_path):
    torch.manual_seed(0)
    model = BuiltOnMeta()
    first_layer = model.net[0].weight.detach().clone()
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1, start_method="fork")
    trainer_for(tmp_path, strategy, max_epochs=1, enable_checkpointing=False).fit(model, loader(16, batch_size=2))
    assert not any(t.is_meta for t in model.state_dict().values())  # this process's model holds what rank 0 trained
    start = torch.load(tmp_path / "start0.pt", weights_only=True)
    assert torch.equal(start["net.0.weight"], first_layer)  # built on a real device: kept, not re-initialised
    assert torch.equal(start["offset"], torch.tensor([0.5]))  # the module's own `reset_parameters`
    weight = start["net.2.weight"]  # `nn.Linear.reset_parameters`: uniform within 1/sqrt(fan_in)
    assert weight.abs().max() <= 8**-0.5 and weight.abs().sum() > 0
    other = torch.load(tmp_path / "start1.pt", weights_only=True)
    assert all(torch.equal(value, other[key]) for key, value in start.items() if key != "extra.scale")


def test_a_layer_built_on_the_meta_device_without_reset_parameters_is_named(tmp_path, in_test_process):
    strategy = ModelParallelStrategy(data_parallel_size=1, tensor_parallel_size=1)
    trainer = trainer_for(tmp_path, strategy, devices=1, max_steps=1, enable_checkpointing=False)
    with pytest.warns(UserWarning, match=r"`reset_parameters\(\)` method for re-initialization: NoReset\."):
        trainer.fit(BuiltOnMeta(), loader(16, batch_size=2))


# ---- errors, in the test process (one rank, nothing launched) ---------------------------------------
class NotParallelized(MLP):
    configure_model = ember.LightningModule.configure_model


def test_sizes_that_do_not_multiply_to_the_world_size_are_refused(tmp_path, in_test_process):
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=2)
    with pytest.raises(RuntimeError, match=r"`data_parallel_size=2` and `tensor_parallel_size=2` multiplied should"):
        trainer_for(tmp_path, strategy, devices=1, max_epochs=1).fit(MLP(), loader())
    assert not torch.distributed.is_initialized()


def test_a_module_without_configure_model_is_refused(tmp_path, in_test_process):
    with pytest.raises(TypeError, match=r"required to override the `configure_model\(\)` hook"):
        trainer_for(tmp_path, ModelParallelStrategy(), devices=1, max_epochs=1).fit(NotParallelized(), loader())


def test_unsupported_precision_and_arguments_are_refused(tmp_path, in_test_process):
    trainer = trainer_for(tmp_path, ModelParallelStrategy(), devices=1, max_epochs=1, precision="64-true")
    with pytest.raises(ValueError, match=r"does not support `Trainer\(..., precision='64-true'\)`"):
        trainer.fit(MLP(), loader())
    with pytest.raises(ValueError, match=r"tensor_parallel_size=0"):
        ModelParallelStrategy(tensor_parallel_size=0)
    with pytest.raises(RuntimeError, match="device mesh"):
        ModelParallelStrategy().device_mesh  # noqa: B018  # the property raises


def test_defaults_and_names_follow_lightning():
    strategy = ModelParallelStrategy()
    assert (strategy._data_parallel_size, strategy._tensor_parallel_size) == ("auto", "auto")
    assert strategy._save_distributed_checkpoint is True
    assert isinstance(strategy, ember.strategies.ParallelStrategy)
    assert ember.distributed.ModelParallelStrategy is ModelParallelStrategy
    assert ember.LightningModule().device_mesh is None
    # as in Lightning, the strategy is passed as an object: "model_parallel" is no strategy name
    with pytest.raises(Exception, match="invalid strategy name"):
        ember.Trainer(accelerator="cpu", devices=2, strategy="model_parallel")
