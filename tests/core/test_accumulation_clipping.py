"""Gradient accumulation, clipping and the step order inside the optimizer closure."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, manual_sgd_run, quiet_trainer
from torch import nn

import ember
from ember.utilities import MisconfigurationException


def _fit_and_compare(clip: Any = None, epochs: int = 1, n: int = 40, **trainer_kwargs: Any) -> ember.Trainer:
    torch.manual_seed(0)
    model = CoreModel(lr=0.05)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = quiet_trainer(max_epochs=epochs, **trainer_kwargs)
    trainer.fit(model, loader(n=n, batch_size=4))
    expected = manual_sgd_run(
        list(loader(n=n, batch_size=4)),
        init,
        lr=0.05,
        accumulate=trainer_kwargs.get("accumulate_grad_batches", 1),
        clip=clip,
        epochs=epochs,
    )
    for key, value in model.state_dict().items():
        assert torch.allclose(value, expected[key], rtol=0, atol=1e-6), key
    return trainer


def test_plain_training_equals_the_hand_written_loop_exactly():
    torch.manual_seed(0)
    model = CoreModel(lr=0.05)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    quiet_trainer(max_epochs=2).fit(model, loader(n=16))
    expected = manual_sgd_run(list(loader(n=16)), init, lr=0.05, epochs=2)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("accumulate", [2, 3])
def test_accumulation_matches_the_hand_written_loop(accumulate):
    # 10 batches: with 3, the last window has one batch and still steps at the end of the epoch
    trainer = _fit_and_compare(accumulate_grad_batches=accumulate, epochs=2)
    assert trainer.global_step == 2 * -(-10 // accumulate)


def test_clip_by_norm_matches():
    _fit_and_compare(clip=lambda ps: nn.utils.clip_grad_norm_(ps, 0.1), gradient_clip_val=0.1)
    _fit_and_compare(
        clip=lambda ps: nn.utils.clip_grad_norm_(ps, 0.1), gradient_clip_val=0.1, gradient_clip_algorithm="norm"
    )


def test_clip_by_value_matches():
    _fit_and_compare(
        clip=lambda ps: nn.utils.clip_grad_value_(ps, 0.05), gradient_clip_val=0.05, gradient_clip_algorithm="value"
    )


def test_the_algorithm_name_is_read_in_any_case_as_in_lightning():
    from ember.utilities import GradClipAlgorithmType

    trainer = _fit_and_compare(
        clip=lambda ps: nn.utils.clip_grad_value_(ps, 0.05), gradient_clip_val=0.05, gradient_clip_algorithm="VALUE"
    )
    assert trainer.gradient_clip_algorithm is GradClipAlgorithmType.VALUE  # Lightning's enum, equal to "value"

    class ClipsItself(CoreModel):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            self.clip_gradients(optimizer, gradient_clip_val=1e-3, gradient_clip_algorithm="Value")
            assert all(p.grad.abs().max() <= 1e-3 for p in self.parameters())

    quiet_trainer(max_epochs=1).fit(ClipsItself(), loader(n=8))


def test_clipping_applies_to_the_accumulated_gradient():
    _fit_and_compare(
        clip=lambda ps: nn.utils.clip_grad_norm_(ps, 0.2), gradient_clip_val=0.2, accumulate_grad_batches=3
    )


def test_clip_val_zero_does_not_clip():
    _fit_and_compare(gradient_clip_val=0)


def test_clipping_actually_changes_the_result():
    torch.manual_seed(0)
    free, clipped = CoreModel(lr=0.05), CoreModel(lr=0.05)
    clipped.load_state_dict(free.state_dict())
    quiet_trainer(max_epochs=1).fit(free, loader(n=16))
    quiet_trainer(max_epochs=1, gradient_clip_val=1e-3, gradient_clip_algorithm="value").fit(clipped, loader(n=16))
    assert not torch.allclose(free.layer.weight, clipped.layer.weight)


def test_configure_gradient_clipping_override():
    seen = []

    class Custom(CoreModel):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            seen.append((type(optimizer).__name__, gradient_clip_val, gradient_clip_algorithm))
            if gradient_clip_val is None:  # not set on the Trainer: the module decides
                self.clip_gradients(optimizer, gradient_clip_val=0.01, gradient_clip_algorithm="value")
                assert all(p.grad.abs().max() <= 0.01 for p in self.parameters())
            else:
                self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    quiet_trainer(max_epochs=1, gradient_clip_val=5.0, gradient_clip_algorithm="norm").fit(Custom(), loader(n=8))
    assert seen == [("SGD", 5.0, "norm")] * 2
    seen.clear()
    quiet_trainer(max_epochs=1).fit(Custom(), loader(n=4))
    assert seen == [("SGD", None, None)]


@pytest.mark.parametrize("trainer_clip", [None, 0.5])
def test_an_overridden_clip_gradients_is_called_with_keywords_as_in_lightning(trainer_clip):
    calls = []

    class Recording(CoreModel):
        def clip_gradients(self, optimizer, *args, **kwargs):
            calls.append((args, kwargs))
            super().clip_gradients(optimizer, *args, **kwargs)

    quiet_trainer(max_steps=1, gradient_clip_val=trainer_clip).fit(Recording(), loader())
    # the Trainer's settings as given: an unset algorithm stays None (clipping then uses the norm)
    assert calls == [((), {"gradient_clip_val": trainer_clip, "gradient_clip_algorithm": None})]


@pytest.mark.parametrize(
    ("trainer_kwargs", "clip_kwargs", "message"),
    [
        ({"gradient_clip_val": 1e-4}, {"gradient_clip_val": 0.01}, r"gradient_clip_val=0.0001\)` and have passed"),
        ({"gradient_clip_algorithm": "norm"}, {"gradient_clip_algorithm": "value"}, "gradient_clip_algorithm='norm'"),
    ],
)
def test_clip_gradients_other_than_the_trainers_settings_is_an_error(trainer_kwargs, clip_kwargs, message):
    class Conflicting(CoreModel):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            self.clip_gradients(optimizer, **clip_kwargs)

    with pytest.raises(MisconfigurationException, match=message):
        quiet_trainer(max_steps=1, **trainer_kwargs).fit(Conflicting(), loader())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"gradient_clip_val": "1"}, TypeError, "`gradient_clip_val` should be an int or a float"),
        ({"gradient_clip_algorithm": "max"}, MisconfigurationException, r"`gradient_clip_algorithm` max is invalid"),
        ({"accumulate_grad_batches": 0}, MisconfigurationException, "accumulate_grad_batches=0"),
        ({"accumulate_grad_batches": 1.5}, MisconfigurationException, "must be an int >= 1"),
    ],
)
def test_invalid_clipping_and_accumulation_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        ember.Trainer(**kwargs)


def test_clip_gradients_rejects_a_bad_algorithm():
    class Bad(CoreModel):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            self.clip_gradients(optimizer, 1.0, "max")

    with pytest.raises(MisconfigurationException, match="Allowed algorithms"):
        quiet_trainer(max_steps=1).fit(Bad(), loader())


# ---- the step order inside the closure ----------------------------------------------------------
class Recorder(ember.Callback):
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.events.append(f"Callback.on_train_batch_start:{batch_idx}")

    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        self.events.append("Callback.on_before_zero_grad")

    def on_before_backward(self, trainer, pl_module, loss):
        self.events.append("Callback.on_before_backward")

    def on_after_backward(self, trainer, pl_module):
        self.events.append("Callback.on_after_backward")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.events.append("Callback.on_before_optimizer_step")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.events.append("Callback.on_train_batch_end")


def _recording_module(events: list[str], override_optimizer_step: bool) -> ember.LightningModule:
    class Recording(CoreModel):
        def training_step(self, batch, batch_idx):
            events.append("training_step")
            return super().training_step(batch, batch_idx)

        def on_before_zero_grad(self, optimizer):
            events.append("on_before_zero_grad")

        def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
            events.append("optimizer_zero_grad")
            optimizer.zero_grad()

        def on_before_backward(self, loss):
            events.append("on_before_backward")

        def backward(self, loss, *args, **kwargs):
            events.append("backward")
            loss.backward(*args, **kwargs)

        def on_after_backward(self):
            events.append("on_after_backward")

        def on_before_optimizer_step(self, optimizer):
            events.append("on_before_optimizer_step")

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            events.append("configure_gradient_clipping")

    if override_optimizer_step:

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            events.append("optimizer_step")
            optimizer.step(closure=optimizer_closure)
            events.append("optimizer_step:done")

        Recording.optimizer_step = optimizer_step
    return Recording()


STEP = [
    "training_step",
    "Callback.on_before_zero_grad",
    "on_before_zero_grad",
    "optimizer_zero_grad",
    "Callback.on_before_backward",
    "on_before_backward",
    "backward",
    "Callback.on_after_backward",
    "on_after_backward",
    "Callback.on_before_optimizer_step",
    "on_before_optimizer_step",
    "configure_gradient_clipping",
]


@pytest.mark.parametrize("override_optimizer_step", [False, True])
def test_step_order_inside_the_closure(override_optimizer_step):
    events: list[str] = []
    trainer = quiet_trainer(max_steps=1, callbacks=[Recorder(events)])
    trainer.fit(_recording_module(events, override_optimizer_step), loader(n=4))
    inner = ["optimizer_step", *STEP, "optimizer_step:done"] if override_optimizer_step else STEP
    assert events == ["Callback.on_train_batch_start:0", *inner, "Callback.on_train_batch_end"]


def test_step_order_while_accumulating():
    events: list[str] = []
    trainer = quiet_trainer(max_steps=1, accumulate_grad_batches=2, callbacks=[Recorder(events)])
    trainer.fit(_recording_module(events, override_optimizer_step=True), loader(n=8))
    backward = STEP[4:9]
    assert events == [
        # first batch of the window: zero_grad, backward, no optimizer step
        "Callback.on_train_batch_start:0",
        "training_step",
        *STEP[1:4],
        *backward,
        "Callback.on_train_batch_end",
        # last batch of the window: the step, without another zero_grad
        "Callback.on_train_batch_start:1",
        "optimizer_step",
        "training_step",
        *backward,
        *STEP[9:],
        "optimizer_step:done",
        "Callback.on_train_batch_end",
    ]


def test_backward_sees_the_divided_loss():
    losses = []

    class Divided(CoreModel):
        def training_step(self, batch, batch_idx):
            return torch.tensor(6.0, requires_grad=True)

        def on_before_backward(self, loss):
            losses.append(loss.item())

    quiet_trainer(max_steps=1, accumulate_grad_batches=3).fit(Divided(), loader(n=12))
    assert losses == [2.0, 2.0, 2.0]


def test_training_step_returning_none_skips_backward_and_step():
    class Skip(CoreModel):
        def training_step(self, batch, batch_idx):
            return None if batch_idx % 2 else super().training_step(batch, batch_idx)

    torch.manual_seed(0)
    model = Skip(lr=0.05)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    quiet_trainer(max_epochs=1).fit(model, loader(n=16))
    expected = manual_sgd_run(list(loader(n=16))[::2], init, lr=0.05)
    assert all(torch.allclose(v, expected[k]) for k, v in model.state_dict().items())


def test_training_step_returning_none_warns():
    class Skip(CoreModel):
        def training_step(self, batch, batch_idx):
            return None

    from ember.trainer.step import _warning_cache

    _warning_cache.clear()  # it warns once a process, as Lightning's
    with pytest.warns(UserWarning, match="`training_step` returned `None`. If this was on purpose"):
        trainer = quiet_trainer(max_epochs=1)
        trainer.fit(Skip(), loader(n=8))
    assert trainer.global_step == 2  # the optimizer still steps, as in Lightning


def test_clip_gradients_beside_the_trainers_algorithm_compares_it_in_lower_case_and_names_a_non_text_one():
    class Clipping(CoreModel):
        def __init__(self, algorithm):
            super().__init__()
            self.algorithm = algorithm

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            self.clip_gradients(optimizer, gradient_clip_algorithm=self.algorithm)

    # the same algorithm in another case agrees with the Trainer's, as in Lightning
    quiet_trainer(max_epochs=1, gradient_clip_val=0.5, gradient_clip_algorithm="value").fit(
        Clipping("VALUE"), loader(n=4)
    )
    # (a number failed on `.lower()`: "'int' object has no attribute 'lower'")
    with pytest.raises(MisconfigurationException, match=r"passed `clip_gradients\(gradient_clip_algorithm='2'\)`"):
        quiet_trainer(max_epochs=1, gradient_clip_val=0.5, gradient_clip_algorithm="value").fit(
            Clipping(2), loader(n=4)
        )
