"""A "-true" precision converts the module after ``ckpt_path`` is restored, as Lightning does (in
``strategy.setup``): the ``on_load_checkpoint`` hooks see the module as it was built, a layer they build takes
the precision's dtype with the others, and the optimizers hold the converted parameters."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.helpers.core_models import loader, quiet_trainer
from torch import nn

import ember


class HeadFromCheckpoint(ember.LightningModule):
    """A body and a head; without ``head_size`` the head is built in ``on_load_checkpoint``, sized from the
    checkpoint (a common pattern)."""

    def __init__(self, head_size: int | None = None) -> None:
        super().__init__()
        self.body = nn.Linear(4, 3)
        if head_size is not None:
            self.head = nn.Linear(3, head_size)
        self.dtype_seen_by_on_load_checkpoint: torch.dtype | None = None
        self.losses: list[float] = []

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.dtype_seen_by_on_load_checkpoint = self.dtype
        if not hasattr(self, "head"):
            self.head = nn.Linear(3, checkpoint["state_dict"]["head.weight"].shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self(batch[0]).float().pow(2).mean()
        self.losses.append(loss.item())
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self(batch[0]).float().pow(2).mean())

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.log("test_loss", self(batch[0]).float().pow(2).mean())

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class SeesModuleDtype(ember.Callback):
    def __init__(self) -> None:
        self.on_load_checkpoint_dtype: torch.dtype | None = None

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self.on_load_checkpoint_dtype = pl_module.dtype


@pytest.fixture(scope="module")
def float32_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a 32-true run of a module with a 2-output head, at the end of its first epoch."""
    torch.manual_seed(0)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(HeadFromCheckpoint(head_size=2), loader(n=8))
    path = tmp_path_factory.mktemp("ckpt") / "float32.ckpt"
    trainer.save_checkpoint(path)
    return path


def _trainer(precision: str, **kwargs: Any) -> ember.Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quiet_trainer(accelerator="cpu", precision=precision, **kwargs)


_DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16, "64-true": torch.float64}


@pytest.mark.parametrize("precision", sorted(_DTYPES))
def test_a_layer_built_in_on_load_checkpoint_trains_in_the_precision(float32_checkpoint, precision):
    model = HeadFromCheckpoint()
    callback = SeesModuleDtype()
    restored = torch.load(float32_checkpoint, weights_only=False)["state_dict"]["head.weight"]

    _trainer(precision, max_epochs=2, callbacks=[callback]).fit(model, loader(n=8), ckpt_path=float32_checkpoint)

    # the hooks saw the module as built, as in Lightning; then everything took the precision's dtype and trained
    assert model.dtype_seen_by_on_load_checkpoint == torch.float32
    assert callback.on_load_checkpoint_dtype == torch.float32
    assert {p.dtype for p in model.parameters()} == {_DTYPES[precision]}
    assert len(model.losses) == 2
    assert not torch.equal(model.head.weight.float(), restored.to(_DTYPES[precision]).float())


class RecordsWhatTheOptimizerHolds(HeadFromCheckpoint):
    def configure_optimizers(self) -> Any:
        self.dtypes_seen_by_configure_optimizers = {p.dtype for p in self.parameters()}
        return super().configure_optimizers()

    def on_train_start(self) -> None:
        optimizer = self.trainer.optimizers[0]
        self.stepped = [p for group in optimizer.param_groups for p in group["params"]]
        self.own = list(self.parameters())


def test_the_optimizer_is_created_with_the_converted_parameters_of_a_restored_module(float32_checkpoint):
    """An optimizer created before the conversion would hold the head's float32 parameters, or none of it."""
    model = RecordsWhatTheOptimizerHolds()
    _trainer("64-true", max_epochs=2).fit(model, loader(n=8), ckpt_path=float32_checkpoint)

    assert model.dtypes_seen_by_configure_optimizers == {torch.float64}
    assert [id(p) for p in model.stepped] == [id(p) for p in model.own]
    assert {p.dtype for p in model.stepped} == {torch.float64}


@pytest.mark.parametrize("call", ["validate", "test", "predict"])
def test_evaluation_from_a_checkpoint_converts_a_layer_built_in_on_load_checkpoint(float32_checkpoint, call):
    model = HeadFromCheckpoint()
    result = getattr(_trainer("64-true"), call)(model, loader(n=8), ckpt_path=float32_checkpoint)

    assert model.dtype_seen_by_on_load_checkpoint == torch.float32
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    if call == "predict":
        assert {prediction.dtype for prediction in result} == {torch.float64}
    else:
        assert set(result[0]) == {f"{'val' if call == 'validate' else 'test'}_loss"}
