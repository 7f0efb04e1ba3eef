"""On the CPU with no transfer hook, a batch stays as the loader made it: no walk over it at each step, as in a
plain PyTorch loop. Lightning calls ``.to("cpu")`` on every object in it that has a ``.to`` (docs/compat.md).
With a transfer hook, or on another device, each such object is moved."""

from __future__ import annotations

import torch
from tests.helpers.core_models import quiet_trainer

import ember


class Box:
    """An object with a ``.to`` inside a batch (a PyG ``Data``, a ``BatchEncoding``): records each move."""

    def __init__(self) -> None:
        self.moved_to: list[str] = []

    def to(self, device, *args, **kwargs):
        self.moved_to.append(torch.device(device).type)
        return self


class Predicts(ember.LightningModule):
    """No parameters: the module goes to any device, a fake one too."""

    def predict_step(self, batch, batch_idx):
        return batch_idx


def _loader_of(box: Box) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(range(2), batch_size=1, collate_fn=lambda samples: {"box": box})


def test_on_the_cpu_an_object_with_a_to_in_a_batch_is_not_moved_without_a_transfer_hook():
    box = Box()
    assert quiet_trainer().predict(Predicts(), _loader_of(box)) == [0, 1]
    assert box.moved_to == []  # Lightning: ["cpu", "cpu"]


def test_on_the_cpu_a_transfer_hook_moves_the_batch_as_lightning_does():
    class Hooked(Predicts):
        def on_before_batch_transfer(self, batch, dataloader_idx):
            return batch

    box = Box()
    quiet_trainer().predict(Hooked(), _loader_of(box))
    assert box.moved_to == ["cpu", "cpu"]


def test_on_another_device_an_object_with_a_to_in_a_batch_is_moved(monkeypatch):
    from ember.accelerators.cpu import CPUAccelerator

    monkeypatch.setattr(CPUAccelerator, "setup_device", lambda self, device: None)
    trainer = quiet_trainer()
    monkeypatch.setattr(trainer.strategy, "_root_device", torch.device("meta"))  # a device other than the CPU
    box = Box()
    trainer.predict(Predicts(), _loader_of(box))
    assert box.moved_to == ["meta", "meta"]
