"""A LightningModule driven by ``lightning.fabric.Fabric`` instead of a Trainer, as Lightning supports:
``fabric.setup(module, optimizer)`` attaches Fabric, and ``self.log``, ``self.optimizers()``,
``self.manual_backward`` and ``self.trainer`` go through it."""

from __future__ import annotations

import copy
import csv

import pytest
import torch
from tests.helpers.core_models import loader
from torch import nn

import ember

lf = pytest.importorskip("lightning_fabric", reason="Lightning's Fabric comes with the Lightning-based libraries")


class ManualModule(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt = self.optimizers()
        loss = nn.functional.mse_loss(self.layer(x), y)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.log("loss", loss)
        self.log_dict({"count": float(batch_idx), "size": torch.tensor(float(len(x)))})
        self.log("not_logged", loss, logger=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_module_set_up_by_fabric_trains_and_logs_through_it(tmp_path):
    torch.manual_seed(0)
    module = ManualModule()
    reference = copy.deepcopy(module.layer)
    fabric = lf.Fabric(accelerator="cpu", devices=1, loggers=[lf.loggers.CSVLogger(tmp_path, name="run")])
    model, optimizer = fabric.setup(module, module.configure_optimizers())
    assert module.fabric is fabric and module.optimizers() is optimizer
    assert module.trainer.world_size == 1 and module.trainer.global_rank == 0  # read from Fabric
    assert module.logger is fabric.logger

    losses = [model.training_step(batch, i).item() for i, batch in enumerate(loader(n=12))]
    fabric.logger.finalize("success")

    # the same arithmetic as a plain loop
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    for x, y in loader(n=12):
        plain.zero_grad()
        nn.functional.mse_loss(reference(x), y).backward()
        plain.step()
    assert torch.equal(module.layer.weight, reference.weight)

    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    assert "not_logged" not in rows[0]
    logged = [float(row["loss"]) for row in rows if row.get("loss")]
    assert logged == pytest.approx(losses)
    assert [float(row["count"]) for row in rows if row.get("count")] == [0.0, 1.0, 2.0]
    with pytest.raises(AttributeError, match=r"`self.trainer.current_epoch` but this attribute is not available"):
        _ = module.trainer.current_epoch


def test_logging_through_fabric_refuses_what_it_cannot_log():
    module = ManualModule()
    fabric = lf.Fabric(accelerator="cpu", devices=1)
    fabric.setup(module)
    with pytest.raises(ValueError, match="nested dictionaries cannot be logged"):
        module.log_dict({"a": {"b": 1.0}})
    with pytest.raises(ValueError, match=r"`str` values cannot be logged"):
        module.log("name", "text")


def test_the_fabric_property_reaches_nested_modules_and_can_be_cleared():
    outer, inner = ManualModule(), ManualModule()
    outer.inner = inner
    fabric = lf.Fabric(accelerator="cpu", devices=1)
    outer.fabric = fabric
    assert inner.fabric == fabric and outer.trainer.world_size == 1  # a weak proxy of it
    outer.fabric = None
    assert outer.fabric is None and inner.fabric is None


def test_a_copy_of_a_fabric_module_does_not_carry_fabric():
    module = ManualModule()
    lf.Fabric(accelerator="cpu", devices=1).setup(module)
    copied = copy.deepcopy(module)
    assert copied.fabric is None and copied.optimizers  # a plain module again


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_clip_gradients_of_a_fabric_module_clips_through_fabric(algorithm):
    torch.manual_seed(0)
    module = ManualModule()
    fabric = lf.Fabric(accelerator="cpu", devices=1)
    model, optimizer = fabric.setup(module, module.configure_optimizers())
    x, y = next(iter(loader(n=4)))
    fabric.backward(nn.functional.mse_loss(module.layer(x) * 100, y))
    module.clip_gradients(optimizer, gradient_clip_val=0.01, gradient_clip_algorithm=algorithm)
    grads = torch.cat([p.grad.flatten() for p in module.parameters()])
    if algorithm == "value":
        assert grads.abs().max().item() == pytest.approx(0.01)
    else:
        assert grads.norm().item() == pytest.approx(0.01, rel=1e-4)
