"""The predict loop's outputs: where they are kept, when, and ``trainer.predict_loop.return_predictions``.

Each expected value was observed on Lightning 2.6.6 with the same program.
"""

from __future__ import annotations

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.callbacks import BasePredictionWriter, Callback


class Movable:
    """A prediction with a ``.to`` (as a PyG ``Data`` or a ``BatchEncoding``): the copy it returns says where it went."""

    def __init__(self, where: str = "as returned") -> None:
        self.where = where

    def to(self, device, *args, **kwargs):
        return Movable(f"moved to {torch.device(device)}")


class PredictsMovables(CoreModel):
    def __init__(self) -> None:
        super().__init__()
        self.at_batch_end: list[str] = []

    def predict_step(self, batch, batch_idx):
        return {"obj": Movable(), "y": self(batch[0])}

    def on_predict_batch_end(self, outputs, batch, batch_idx):
        self.at_batch_end.append(outputs["obj"].where)


def test_the_kept_predictions_are_moved_to_the_cpu_and_the_batch_hooks_get_them_as_returned():
    model, trainer = PredictsMovables(), quiet_trainer()
    returned = trainer.predict(model, loader(n=8))
    assert [p["obj"].where for p in returned] == ["moved to cpu"] * 2
    assert [p["obj"].where for p in trainer.predict_loop.predictions] == ["moved to cpu"] * 2
    assert model.at_batch_end == ["as returned"] * 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_predict_on_a_gpu_returns_cpu_tensors_and_the_batch_hooks_get_cuda_ones():
    class Records(CoreModel):
        def on_predict_batch_end(self, outputs, batch, batch_idx):
            self.hook_device = outputs.device.type

    model = Records()
    returned = quiet_trainer(accelerator="cuda", devices=1).predict(model, loader(n=8))
    assert [p.device.type for p in returned] == ["cpu", "cpu"]
    assert model.hook_device == "cuda"


class SeesPredictions(Callback):
    def on_predict_epoch_end(self, trainer, pl_module):
        self.seen = [p.shape for p in trainer.predict_loop.predictions]


class EpochWriter(BasePredictionWriter):
    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        self.written = len(predictions)


def test_an_epoch_writer_makes_the_loop_keep_the_outputs_even_when_predict_returns_none():
    reader, writer, trainer = SeesPredictions(), EpochWriter("epoch"), quiet_trainer()
    trainer.callbacks.extend([reader, writer])
    assert trainer.predict(CoreModel(), loader(n=8), return_predictions=False) is None
    assert reader.seen == [torch.Size([4, 1])] * 2 and writer.written == 2
    assert trainer.predict_loop.predictions == []  # not returned: gone before `on_predict_end`, as in Lightning

    reader, trainer = SeesPredictions(), quiet_trainer()  # no writer: nothing to keep them for
    trainer.callbacks.append(reader)
    trainer.predict(CoreModel(), loader(n=8), return_predictions=False)
    assert reader.seen == []


class SwitchesOffInSetup(Callback):
    def setup(self, trainer, pl_module, stage):
        trainer.predict_loop.return_predictions = False


class SwitchesOffInStep(CoreModel):
    def predict_step(self, batch, batch_idx):
        self.trainer.predict_loop.return_predictions = False
        return self(batch[0])


def test_return_predictions_set_on_the_loop_in_setup_or_predict_step_keeps_nothing_and_returns_none():
    trainer = quiet_trainer(callbacks=[SwitchesOffInSetup()])
    assert trainer.predict(CoreModel(), loader(n=8)) is None
    assert trainer.predict_loop.return_predictions is False and trainer.predict_loop.predictions == []

    trainer = quiet_trainer()
    assert trainer.predict(SwitchesOffInStep(), loader(n=8)) is None
    assert trainer.predict_loop.return_predictions is False and trainer.predict_loop.predictions == []


def test_return_predictions_reads_the_last_predicts_setting_and_false_before_any():
    trainer = quiet_trainer()
    assert trainer.predict_loop.return_predictions is False  # Lightning's loop starts with False
    trainer.predict(CoreModel(), loader(n=8))
    assert trainer.predict_loop.return_predictions is True  # the default of `predict`
    trainer.validate(CoreModel(), loader(n=8), verbose=False)
    assert trainer.predict_loop.return_predictions is True  # kept through other calls
    trainer.predict(CoreModel(), loader(n=8), return_predictions=False)
    trainer.test(CoreModel(), loader(n=8), verbose=False)
    assert trainer.predict_loop.return_predictions is False
