"""``Trainer(precision=...)`` on CPU: 64-true, bf16-mixed, bf16-true, 16-true and the aliases."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer
from torch import nn

import ember


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "32-true"),
        (32, "32-true"),
        ("32", "32-true"),
        ("32-true", "32-true"),
        (64, "64-true"),
        ("64", "64-true"),
        ("64-true", "64-true"),
        ("bf16", "bf16-mixed"),
        ("bf16-mixed", "bf16-mixed"),
        ("bf16-true", "bf16-true"),
        ("16-true", "16-true"),
    ],
)
def test_precision_names_and_aliases(given, expected):
    assert ember.Trainer(precision=given, logger=False).precision == expected


@pytest.mark.parametrize("bad", ["fp8", "16-bad", 8, 1.5])
def test_unknown_precision(bad):
    with pytest.raises(ValueError, match=rf"Precision {bad!r} is invalid. Allowed precision values: .*'bf16-mixed'"):
        ember.Trainer(precision=bad)


@pytest.mark.parametrize("given", ["16-mixed", 16, "16"])
def test_fp16_mixed_on_cpu_falls_back_to_bf16_mixed_with_a_warning(given):
    with pytest.warns(UserWarning, match=r"AMP with fp16 is not supported on CPU. Using `precision='bf16-mixed'`"):
        trainer = ember.Trainer(accelerator="cpu", precision=given, logger=False)
    assert trainer.precision == "bf16-mixed"


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("bf16-mixed", "Using bfloat16 Automatic Mixed Precision (AMP)"),
        ("16-mixed", "Using bfloat16 Automatic Mixed Precision (AMP)"),  # what CPUs run, after the warning
        ("32-true", None),
        ("bf16-true", None),
    ],
)
def test_mixed_precision_says_which_as_lightning_does(given, said, caplog):
    with caplog.at_level("INFO", logger="ember"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ember.Trainer(accelerator="cpu", precision=given, logger=False)
    lines = [r.getMessage() for r in caplog.records if "Automatic Mixed Precision" in r.getMessage()]
    assert lines == ([said] if said else [])


class DtypeRecorder(CoreModel):
    """Records the dtypes a step sees: input, parameters, output, a new float tensor, the logged value."""

    def __init__(self) -> None:
        super().__init__(lr=0.05)
        self.seen: dict[str, Any] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.seen.setdefault(
            "train",
            {
                "input": x.dtype,
                "param": self.layer.weight.dtype,
                "output": out.dtype,
                "new": torch.tensor(1.0).dtype,
                "module": self.dtype,
            },
        )
        loss = nn.functional.mse_loss(
            out.float() if out.dtype == torch.bfloat16 else out, y.to(out.dtype) if out.dtype != torch.bfloat16 else y
        )
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.seen.setdefault("val", {"input": x.dtype, "output": self(x).dtype})

    def on_after_backward(self):
        self.seen.setdefault("grad", self.layer.weight.grad.dtype)


def _fit(precision: str) -> tuple[DtypeRecorder, ember.Trainer]:
    model = DtypeRecorder()
    trainer = quiet_trainer(max_epochs=1, precision=precision)
    trainer.fit(model, loader(n=8), loader(n=4))
    return model, trainer


def test_64_true_trains_in_double_and_matches_a_double_loop():
    torch.manual_seed(0)
    model, trainer = _fit("64-true")
    f64 = torch.float64
    assert model.seen["train"] == {"input": f64, "param": f64, "output": f64, "new": f64, "module": f64}
    assert model.seen["val"] == {"input": f64, "output": f64}
    assert model.seen["grad"] == f64
    assert model.dtype == f64 and model.layer.weight.dtype == f64
    assert torch.get_default_dtype() == torch.float32  # restored after each step
    assert trainer.callback_metrics["loss"].dtype == f64

    torch.manual_seed(0)
    layer = nn.Linear(4, 1).double()
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    for x, y in loader(n=8):
        opt.zero_grad()
        nn.functional.mse_loss(layer(x.double()), y.double()).backward()
        opt.step()
    assert torch.equal(model.layer.weight, layer.weight) and torch.equal(model.layer.bias, layer.bias)


def test_bf16_mixed_autocasts_with_float32_parameters():
    model, trainer = _fit("bf16-mixed")
    seen = model.seen["train"]
    assert seen["input"] == torch.float32 and seen["param"] == torch.float32
    assert seen["output"] == torch.bfloat16  # autocast
    assert model.seen["val"]["output"] == torch.bfloat16  # evaluation runs under autocast too
    assert model.seen["grad"] == torch.float32
    assert model.layer.weight.dtype == torch.float32
    assert trainer.precision_plugin.device == "cpu"  # the device type as a string, as in Lightning


def test_bf16_mixed_trains():
    torch.manual_seed(0)
    model = CoreModel(lr=0.1)
    before = model.layer.weight.detach().clone()
    trainer = quiet_trainer(max_epochs=3, precision="bf16-mixed")
    trainer.fit(model, loader(n=32))
    assert not torch.equal(before, model.layer.weight)
    assert torch.isfinite(model.layer.weight).all()


def test_a_weight_used_twice_in_a_step_is_cast_afresh_each_time_as_in_lightning():
    # Lightning's autocast has no cast cache: with one, both uses share a bfloat16 copy of the weight and
    # the two gradients are summed in bfloat16 (SimCLR's and BYOL's two branches, DINO's views)
    class TwoViews(ember.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = nn.Linear(64, 64)

        def training_step(self, batch, batch_idx):
            x = batch[0]
            self.grad = None
            return (self.layer(x) * self.layer(x.flip(0))).float().sum() / 100

        def on_after_backward(self) -> None:
            self.grad = self.layer.weight.grad.clone()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    model = TwoViews()
    reference = TwoViews()

    def grad_by_hand(cache_enabled: bool) -> torch.Tensor:
        reference.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache_enabled):
            loss = (reference.layer(x) * reference.layer(x.flip(0))).float().sum() / 100
        loss.backward()
        return reference.layer.weight.grad.clone()

    assert not torch.equal(grad_by_hand(True), grad_by_hand(False))  # the data tells the two apart
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=32)
    quiet_trainer(max_steps=1, precision="bf16-mixed").fit(model, data)
    assert torch.equal(model.grad, grad_by_hand(False))


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-true", torch.bfloat16), ("16-true", torch.float16)])
def test_true_half_precisions_convert_the_module_and_the_inputs(precision, dtype):
    model, _ = _fit(precision)
    seen = model.seen["train"]
    assert seen["input"] == dtype and seen["param"] == dtype and seen["output"] == dtype
    assert seen["module"] == dtype and seen["new"] == dtype
    assert model.layer.weight.dtype == dtype
    assert model.seen["grad"] == dtype


def test_predict_in_64_true_returns_double():
    model = CoreModel()
    out = quiet_trainer(precision="64-true").predict(model, loader(n=4))
    assert out[0].dtype == torch.float64


def test_integer_inputs_are_not_converted():
    seen = []

    class Ints(CoreModel):
        def training_step(self, batch, batch_idx):
            x, labels = batch
            seen.append(labels.dtype)
            return self(x).sum()

    data = torch.utils.data.TensorDataset(torch.randn(4, 4), torch.arange(4))
    quiet_trainer(max_steps=1, precision="64-true").fit(Ints(), torch.utils.data.DataLoader(data, batch_size=4))
    assert seen == [torch.int64]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_mixed_on_cuda_uses_a_grad_scaler(tmp_path):
    model, trainer = None, None
    model = DtypeRecorder()
    trainer = quiet_trainer(max_epochs=1, precision="16-mixed", accelerator="cuda", devices=1)
    trainer.fit(model, loader(n=8), loader(n=4))
    assert model.seen["train"]["output"] == torch.float16
    assert model.seen["train"]["param"] == torch.float32
    path = tmp_path / "amp.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["MixedPrecision"]["scale"] > 0
