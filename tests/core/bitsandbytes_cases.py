"""``BitsandbytesPrecision``: a model's Linear layers quantized by bitsandbytes (which runs on CPU
from 0.46), the layers named in ``ignore_modules`` kept, and clear errors for bad settings.

Run by ``test_bitsandbytes.py`` in a process of its own: importing bitsandbytes registers its
optimizers (``bitsandbytes.optim.Adam``, ...) as torch optimizers for the rest of the process, which
makes LightningCLI's short name ``--optimizer=Adam`` ambiguous in the tests after it."""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from tests.helpers.core_models import loader, quiet_trainer
from torch import nn

import ember
from ember.plugins import BitsandbytesPrecision


class Backbone(ember.LightningModule):
    """A frozen-by-quantization body and a head that trains."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 16))
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x).float(), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.05)


def _float_copy(model: Backbone) -> Backbone:
    copy = Backbone().to(model.dtype)
    copy.load_state_dict(model.state_dict())
    return copy


@pytest.mark.parametrize("mode", ["nf4", "nf4-dq", "fp4"])
def test_4bit_modes_quantize_the_body_and_train_the_head(mode):
    torch.manual_seed(0)
    trainer = quiet_trainer(max_epochs=3, plugins=[BitsandbytesPrecision(mode, ignore_modules={"head"})])
    with trainer.init_module():  # the layers that stay (the head) are created in the compute dtype
        model = Backbone()
    reference = _float_copy(model)
    head_before = model.head.weight.detach().clone()
    trainer.fit(model, loader(n=32, batch_size=8))

    assert all(isinstance(layer, bnb.nn.Linear4bit) for layer in (model.body[0], model.body[2]))
    assert model.body[0].weight.dtype == torch.uint8 and model.body[0].weight.quant_type == mode[:3]
    assert model.body[0].compute_dtype == torch.bfloat16
    assert type(model.head) is nn.Linear and not torch.equal(model.head.weight, head_before)
    # the quantized body computes what the float one does, within 4-bit error
    x = torch.randn(8, 4)
    with torch.no_grad():
        quantized = model.body(x.bfloat16()).float()
        exact = reference.body(x.bfloat16()).float()
    assert (quantized - exact).abs().max() < 0.2 * exact.abs().max()
    assert trainer.callback_metrics["loss"].isfinite()


def test_int8_keeps_weights_in_int8_and_int8_training_trains_them():
    torch.manual_seed(0)
    frozen = quiet_trainer(max_steps=2, plugins=[BitsandbytesPrecision("int8", ignore_modules={"head"})])
    with frozen.init_module():
        model = Backbone()
    frozen.fit(model, loader(n=16, batch_size=8))
    assert isinstance(model.body[0], bnb.nn.Linear8bitLt) and model.body[0].weight.dtype == torch.int8

    trains = quiet_trainer(max_steps=2, plugins=[BitsandbytesPrecision("int8-training", ignore_modules={"head"})])
    with trains.init_module():
        model = Backbone()
    before = model.body[0].weight.detach().clone()
    trains.fit(model, loader(n=16, batch_size=8))
    assert model.body[0].weight.dtype == torch.float16 and model.body[0].weight.requires_grad
    assert not torch.equal(model.body[0].weight.detach(), before.half())


def test_inputs_and_new_tensors_take_the_compute_dtype():
    plugin = BitsandbytesPrecision("nf4", dtype=torch.float16)
    assert plugin.convert_input({"x": torch.ones(2), "i": torch.arange(2)})["x"].dtype == torch.float16
    assert plugin.convert_input({"i": torch.arange(2)})["i"].dtype == torch.int64
    with plugin.forward_context():
        assert torch.ones(1).dtype == torch.float16
    assert torch.get_default_dtype() == torch.float32


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"mode='int4'\)` is not supported: use one of 'nf4'"):
        BitsandbytesPrecision("int4")
    with pytest.raises(ValueError, match="'int8' only works with `dtype=torch.float16`"):
        BitsandbytesPrecision("int8", dtype=torch.bfloat16)

    class NoLinear(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 1, 1)

    with pytest.raises(TypeError, match="your model has no Linear layers"):
        BitsandbytesPrecision("nf4").convert_module(NoLinear())
