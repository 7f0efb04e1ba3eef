"""Lightning's public precision-plugin methods that programs call themselves: ``train_step_context``,
``val_step_context``, ``test_step_context``, ``predict_step_context`` (each is ``forward_context``) and
``unscale_gradients`` (the fp16 GradScaler's unscale before clipping by hand)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer
from torch import nn

import ember
from ember.plugins import DoublePrecision, HalfPrecision, MixedPrecision, Precision

STEP_CONTEXTS = ("train_step_context", "val_step_context", "test_step_context", "predict_step_context")

PLUGINS = {
    "32-true": Precision,
    "bf16-mixed": lambda: MixedPrecision("bf16-mixed", "cpu"),
    "16-mixed": lambda: MixedPrecision("16-mixed", "cpu"),
    "bf16-true": lambda: HalfPrecision("bf16-true"),
    "16-true": lambda: HalfPrecision("16-true"),
    "64-true": DoublePrecision,
}


def _inside(context: Any) -> tuple[bool, torch.dtype, torch.dtype]:
    """Whether CPU autocast is on, its dtype, and the default dtype inside ``context``."""
    with context:
        return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), torch.get_default_dtype()


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_each_step_context_is_the_forward_context(name):
    plugin = PLUGINS[name]()
    expected = _inside(plugin.forward_context())

    for context in STEP_CONTEXTS:
        assert _inside(getattr(plugin, context)()) == expected, context
    assert torch.get_default_dtype() == torch.float32 and not torch.is_autocast_enabled("cpu")


def test_a_callback_computes_in_the_precision_inside_train_step_context():
    """What an EMA/SWA callback does to recompute batch-norm statistics with the trainer's precision."""

    class RecomputesUnderThePrecision(ember.Callback):
        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            with trainer.precision_plugin.train_step_context():
                self.created = torch.zeros(1).dtype
                self.output = pl_module(torch.ones(2, 4)).dtype

    callback = RecomputesUnderThePrecision()
    quiet_trainer(accelerator="cpu", precision="bf16-mixed", max_epochs=1, callbacks=[callback]).fit(
        CoreModel(), loader(n=8)
    )

    assert (callback.created, callback.output) == (torch.float32, torch.bfloat16)


def _scaled_gradients(plugin: MixedPrecision) -> tuple[nn.Linear, torch.optim.Optimizer, torch.Tensor]:
    """A layer whose gradients came from the plugin's scaled loss, its optimizer, and the true gradient."""
    torch.manual_seed(0)
    layer = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    loss = layer(torch.ones(3, 2)).sum()
    (true_gradient,) = torch.autograd.grad(loss, layer.weight, retain_graph=True)
    plugin.scale_loss(loss).backward()
    return layer, optimizer, true_gradient


def test_unscale_gradients_divides_by_the_fp16_scale_once():
    plugin = MixedPrecision("16-mixed", "cpu")
    layer, optimizer, true_gradient = _scaled_gradients(plugin)
    assert torch.equal(layer.weight.grad, true_gradient * plugin.scaler.get_scale())

    plugin.unscale_gradients(optimizer)
    assert torch.equal(layer.weight.grad, true_gradient)
    plugin.unscale_gradients(optimizer)  # again before the step: left as they are
    assert torch.equal(layer.weight.grad, true_gradient)


@pytest.mark.parametrize("name", ["32-true", "bf16-mixed", "bf16-true", "64-true"])
def test_unscale_gradients_without_a_scaler_leaves_the_gradients(name):
    layer = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.ones(3, 2)).sum().backward()
    before = layer.weight.grad.clone()

    assert PLUGINS[name]().unscale_gradients(optimizer) is None
    assert torch.equal(layer.weight.grad, before)


def test_a_configure_gradient_clipping_override_that_unscales_first_trains_under_fp16():
    class UnscalesThenClips(CoreModel):
        def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: Any = None, **kwargs: Any) -> None:
            self.trainer.precision_plugin.unscale_gradients(optimizer)
            self.norms.append(float(torch.nn.utils.clip_grad_norm_(self.parameters(), 1.0)))

    model = UnscalesThenClips()
    model.norms = []
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=1024.0))
    quiet_trainer(accelerator="cpu", plugins=[plugin], max_epochs=1).fit(model, loader(n=8))

    # the norms of the true gradients: the scale is divided out (once) before the override runs
    assert len(model.norms) == 2 and all(0 < norm < 100 for norm in model.norms)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (
            {"precision": [], "device": "cpu"},
            "Passed `MixedPrecision(precision=[])`. Precision must be '16-mixed' or 'bf16-mixed'.",
        ),
        (
            {"precision": "bf16-mixed", "device": None},
            "`MixedPrecision(device=None)` must be the device type autocast runs on",
        ),
    ],
)
def test_mixed_precision_arguments_that_cannot_work_are_named_when_the_plugin_is_made(arguments, says):
    # a list precision was "unhashable type: 'list'"; a device that is no text failed at the first step in torch's words
    with pytest.raises((ValueError, TypeError), match=re.escape(says)):
        MixedPrecision(**arguments)
    assert MixedPrecision("bf16-mixed", torch.device("cpu")).device == "cpu"
