"""Training on CUDA: mixed precision (bf16, fp16 with the GradScaler), placement, checkpoints, two GPUs.

Every test here needs a GPU: marked ``gpu`` and skipped without one. ``make gpu-check`` runs them.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


class Classifier(ember.LightningModule):
    """A small MLP that records the dtypes and devices its step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))
        self.seen: dict[str, object] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.seen.update(batch_device=x.device.type, logits_dtype=logits.dtype, param_dtype=self.net[0].weight.dtype)
        loss = nn.functional.cross_entropy(logits, y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0]).argmax(1)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def _data(n: int = 256) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, generator=generator)
    return TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


def _loader(n: int = 256, shuffle: bool = False) -> DataLoader:
    return DataLoader(_data(n), batch_size=32, shuffle=shuffle, pin_memory=True)


def _trainer(tmp_path, **kwargs) -> ember.Trainer:
    defaults = dict(
        accelerator="cuda", devices=1, max_epochs=3, default_root_dir=tmp_path, enable_progress_bar=False,
        enable_model_summary=False, logger=False,
    )  # fmt: skip
    defaults.update(kwargs)
    return ember.Trainer(**defaults)


@pytest.mark.parametrize(
    ("precision", "logits_dtype"),
    [("32-true", torch.float32), ("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)],
)
def test_mixed_precision_trains_on_cuda(tmp_path, precision, logits_dtype):
    ember.seed_everything(0)
    model = Classifier()
    trainer = _trainer(tmp_path, precision=precision)
    trainer.fit(model, _loader(shuffle=True), _loader(64))
    assert model.seen == {"batch_device": "cuda", "logits_dtype": logits_dtype, "param_dtype": torch.float32}
    assert model.device.type == "cpu"  # the end of fit moves the module back to the CPU, as Lightning's teardown
    final = trainer.callback_metrics["val_loss"].item()
    assert math.isfinite(final) and final < 0.5  # the separable problem is learned in three epochs
    scaler = trainer.precision_plugin.scaler
    assert (scaler is not None) == (precision == "16-mixed")


def test_fp16_scaler_state_is_checkpointed_and_restored(tmp_path):
    ember.seed_everything(0)
    trainer = _trainer(tmp_path, precision="16-mixed", max_epochs=1)
    trainer.fit(Classifier(), _loader())
    path = tmp_path / "amp.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert saved["MixedPrecision"]["scale"] > 0
    resumed = _trainer(tmp_path, precision="16-mixed", max_epochs=2)
    resumed.fit(Classifier(), _loader(), ckpt_path=path)
    assert resumed.current_epoch == 2
    assert resumed.precision_plugin.scaler.get_scale() > 0


def test_gradient_clipping_unscales_fp16_gradients_first(tmp_path):
    class Clipped(Classifier):
        def on_before_optimizer_step(self, optimizer):
            norms = [p.grad.norm() for p in self.parameters() if p.grad is not None]
            self.seen["grad_norm"] = torch.stack(norms).norm().item()

    model = Clipped()
    trainer = _trainer(tmp_path, precision="16-mixed", max_steps=5, gradient_clip_val=0.5)
    trainer.fit(model, _loader())
    # on_before_optimizer_step runs after unscaling and before clipping: an fp16-scaled norm would be ~65536x
    assert model.seen["grad_norm"] < 100


def test_cuda_checkpoint_loads_on_cpu_and_predicts_the_same(tmp_path):
    ember.seed_everything(0)
    model = Classifier()
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, _loader())
    path = tmp_path / "cuda.ckpt"
    trainer.save_checkpoint(path)
    on_cuda = torch.cat(trainer.predict(model, _loader(64)))
    assert on_cuda.device.type == "cuda"
    restored = Classifier.load_from_checkpoint(path, map_location="cpu")
    assert next(restored.parameters()).device.type == "cpu"
    on_cpu = torch.cat(ember.Trainer(accelerator="cpu", logger=False).predict(restored, _loader(64)))
    assert torch.equal(on_cuda.cpu(), on_cpu)


def test_fit_leaves_the_model_and_the_optimizer_states_on_the_cpu_freeing_the_gpu(tmp_path):
    # as Lightning's teardown: the Adam moments go back with the weights, so the GPU memory is free after fit
    model = Classifier()
    trainer = _trainer(tmp_path, max_steps=3)
    trainer.fit(model, _loader())
    assert next(model.parameters()).device.type == "cpu"
    states = trainer.optimizers[0].state.values()
    assert {state["exp_avg"].device.type for state in states} == {"cpu"}
    assert {state["exp_avg_sq"].device.type for state in states} == {"cpu"}


class KeepsItsOptimizer(Classifier):
    def configure_optimizers(self):
        if not hasattr(self, "kept"):
            self.kept = torch.optim.AdamW(self.parameters(), lr=1e-2)
        return self.kept


def test_an_optimizer_kept_across_fits_gets_its_states_back_on_the_gpu(tmp_path):
    # the first fit's teardown left its states on the CPU; the second fit steps it on the GPU again
    model = KeepsItsOptimizer()
    _trainer(tmp_path, max_steps=2).fit(model, _loader())
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(model, _loader())
    assert trainer.optimizers[0] is model.kept and model.kept.state


def test_bf16_true_keeps_weights_and_batches_in_bf16(tmp_path):
    model = Classifier()
    trainer = _trainer(tmp_path, precision="bf16-true", max_steps=3)
    trainer.fit(model, _loader())
    assert model.seen["param_dtype"] == torch.bfloat16
    assert model.seen["logits_dtype"] == torch.bfloat16


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
@pytest.mark.parametrize("strategy", ["ddp_spawn", "fsdp"])
def test_two_gpu_job_trains_and_brings_weights_back(tmp_path, strategy):
    ember.seed_everything(0)
    model = Classifier()
    before = [p.detach().clone() for p in model.parameters()]
    # spawned workers: a strategy that re-ran the script would re-run pytest
    strategy_arg = ember.strategies.FSDPStrategy(start_method="spawn") if strategy == "fsdp" else strategy
    trainer = _trainer(tmp_path, devices=2, strategy=strategy_arg, max_epochs=2)
    trainer.fit(model, _loader(shuffle=True), _loader(64))
    assert trainer.world_size == 2
    assert math.isfinite(trainer.callback_metrics["val_loss"].item())
    after = list(model.parameters())
    assert any(not torch.equal(a.detach().cpu(), b.cpu()) for a, b in zip(after, before))
