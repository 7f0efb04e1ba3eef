"""Manual optimization with two optimizers, checked against a hand-written loop."""

from __future__ import annotations

import re

import pytest
import torch
from tests.helpers.core_models import CoreModel, ManualCoreModel, loader, quiet_trainer
from torch import nn

import ember
from ember.utilities import MisconfigurationException


class TwoNets(ember.LightningModule):
    """A GAN-shaped module: ``gen`` and ``disc`` with their own optimizers and schedulers."""

    def __init__(self, clip: tuple[float, str] | None = None, use_context: bool = False):
        super().__init__()
        self.automatic_optimization = False
        torch.manual_seed(0)
        self.gen = nn.Linear(4, 4)
        self.disc = nn.Linear(4, 1)
        self.clip = clip
        self.use_context = use_context
        self.events: list[str] = []
        self.requires_grad_seen: list[tuple[bool, bool]] = []

    def training_step(self, batch, batch_idx):
        x, _ = batch
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()

        # generator step, discriminator frozen
        self.toggle_optimizer(opt_g)
        self.requires_grad_seen.append((self.gen.weight.requires_grad, self.disc.weight.requires_grad))
        loss_g = self.disc(self.gen(x)).mean()
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        # discriminator step
        if self.use_context:
            context = self.toggled_optimizer(opt_d)
        else:
            self.toggle_optimizer(opt_d)
            context = None
        if context is not None:
            context.__enter__()
        self.requires_grad_seen.append((self.gen.weight.requires_grad, self.disc.weight.requires_grad))
        loss_d = (self.disc(x) - self.disc(self.gen(x).detach())).pow(2).mean()
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        if self.clip is not None:
            self.clip_gradients(opt_d, gradient_clip_val=self.clip[0], gradient_clip_algorithm=self.clip[1])
        opt_d.step()
        if context is not None:
            context.__exit__(None, None, None)
        else:
            self.untoggle_optimizer(opt_d)

        sched_g.step()
        sched_d.step()
        self.log("loss_d", loss_d)
        return {"loss": loss_d, "extra": 1}

    def on_before_backward(self, loss):
        self.events.append("on_before_backward")

    def on_after_backward(self):
        self.events.append("on_after_backward")

    def on_before_optimizer_step(self, optimizer):
        self.events.append("on_before_optimizer_step")

    def on_before_zero_grad(self, optimizer):
        self.events.append("on_before_zero_grad")

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.events.append(f"outputs:{sorted(outputs)}")

    def configure_optimizers(self):
        opt_g = torch.optim.SGD(self.gen.parameters(), lr=0.1)
        opt_d = torch.optim.SGD(self.disc.parameters(), lr=0.2)
        return [opt_g, opt_d], [
            torch.optim.lr_scheduler.StepLR(opt_g, 1, 0.5),
            torch.optim.lr_scheduler.StepLR(opt_d, 1, 0.9),
        ]


def _hand_written(batches, clip=None):
    torch.manual_seed(0)
    gen, disc = nn.Linear(4, 4), nn.Linear(4, 1)
    opt_g = torch.optim.SGD(gen.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.2)
    sched_g = torch.optim.lr_scheduler.StepLR(opt_g, 1, 0.5)
    sched_d = torch.optim.lr_scheduler.StepLR(opt_d, 1, 0.9)
    for x, _ in batches:
        for p in disc.parameters():
            p.requires_grad_(False)
        loss_g = disc(gen(x)).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for p in disc.parameters():
            p.requires_grad_(True)
        for p in gen.parameters():
            p.requires_grad_(False)
        loss_d = (disc(x) - disc(gen(x).detach())).pow(2).mean()
        opt_d.zero_grad()
        loss_d.backward()
        if clip is not None:
            if clip[1] == "value":
                nn.utils.clip_grad_value_(disc.parameters(), clip[0])
            else:
                nn.utils.clip_grad_norm_(disc.parameters(), clip[0])
        opt_d.step()
        for p in gen.parameters():
            p.requires_grad_(True)
        sched_g.step()
        sched_d.step()
    return {
        **{f"gen.{k}": v for k, v in gen.state_dict().items()},
        **{f"disc.{k}": v for k, v in disc.state_dict().items()},
    }


def _fit(model: TwoNets, n: int = 12) -> ember.Trainer:
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=n))
    return trainer


@pytest.mark.parametrize("use_context", [False, True])
def test_two_optimizers_match_a_hand_written_loop(use_context):
    model = TwoNets(use_context=use_context)
    trainer = _fit(model)
    expected = _hand_written(list(loader(n=12)))
    for key, value in model.state_dict().items():
        assert torch.allclose(value, expected[key], atol=1e-7), key
    assert trainer.global_step == 6  # every optimizer step counts: 2 per batch
    assert model.requires_grad_seen[:2] == [(True, False), (False, True)]
    assert model.gen.weight.requires_grad and model.disc.weight.requires_grad  # untoggled


def test_hooks_in_manual_optimization():
    model = TwoNets()
    _fit(model, n=4)
    assert model.events == [
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
        "outputs:['extra', 'loss']",
    ]  # no on_before_zero_grad: the user zeroes the gradients


def test_optimizers_and_schedulers_accessors():
    seen = {}

    class Peek(TwoNets):
        def training_step(self, batch, batch_idx):
            seen["opts"] = self.optimizers()
            seen["raw"] = self.optimizers(use_pl_optimizer=False)
            seen["scheds"] = self.lr_schedulers()
            return super().training_step(batch, batch_idx)

    trainer = _fit(Peek(), n=4)
    opt_g, opt_d = seen["opts"]
    assert isinstance(opt_g, torch.optim.SGD)  # still an SGD, with a counting step()
    assert opt_g.optimizer is trainer.optimizers[0]
    assert opt_g.param_groups is trainer.optimizers[0].param_groups
    assert seen["raw"] == trainer.optimizers
    assert [s.optimizer for s in seen["scheds"]] == trainer.optimizers


@pytest.mark.parametrize("clip", [(0.01, "value"), (0.05, "norm")])
def test_clip_gradients_in_manual_optimization(clip):
    model = TwoNets(clip=clip)
    _fit(model)
    expected = _hand_written(list(loader(n=12)), clip=clip)
    for key, value in model.state_dict().items():
        assert torch.allclose(value, expected[key], atol=1e-7), key


def test_toggle_keeps_shared_and_frozen_parameters():
    class Shared(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.shared = nn.Linear(1, 1), nn.Linear(1, 1), nn.Linear(1, 1)
            self.b.bias.requires_grad_(False)  # frozen by the user

    model = Shared()
    opt_a = torch.optim.SGD([*model.a.parameters(), *model.shared.parameters()], lr=0.1)
    opt_b = torch.optim.SGD([*model.b.parameters(), *model.shared.parameters()], lr=0.1)
    trainer = quiet_trainer()
    trainer.optimizers = [opt_a, opt_b]
    model.trainer = trainer
    model.toggle_optimizer(opt_a)
    assert model.a.weight.requires_grad and model.shared.weight.requires_grad
    assert not model.b.weight.requires_grad
    model.untoggle_optimizer(opt_a)
    assert model.b.weight.requires_grad and not model.b.bias.requires_grad
    with model.toggled_optimizer(opt_b):
        assert not model.a.weight.requires_grad and model.shared.weight.requires_grad
    assert model.a.weight.requires_grad


class ManualLinear(ember.LightningModule):
    """A 4 -> 1 linear layer in manual optimization, with plain SGD; ``closure_calls`` for the tests' closures."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.layer = nn.Linear(4, 1)
        self.closure_calls = 0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_step_with_a_closure_runs_it():
    class WithClosure(ManualLinear):
        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            x, y = batch

            def closure():
                self.closure_calls += 1
                opt.zero_grad()
                loss = nn.functional.mse_loss(self.layer(x), y)
                self.manual_backward(loss)
                return loss

            opt.step(closure=closure)

        def configure_optimizers(self):
            return torch.optim.LBFGS(self.parameters(), max_iter=3)

    model = WithClosure()
    trainer = _fit_plain(model)
    assert model.closure_calls >= 2  # LBFGS evaluates the closure several times
    assert trainer.global_step == 2


def _fit_plain(model, n=8):
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=n))
    return trainer


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        # each failed in Python's words: "'NoneType' object has no attribute 'param_groups'", "'float' object has
        # no attribute 'backward'", "'int' object has no attribute 'lower'"
        (lambda m, loss: m.toggle_optimizer(None), TypeError, "`self.toggle_optimizer(None)` takes an optimizer"),
        (lambda m, loss: m.toggle_optimizer(0), TypeError, "one that `self.optimizers()` returns, not int."),
        (lambda m, loss: m.clip_gradients(None, 1.0), TypeError, "`self.clip_gradients(None)` takes an optimizer"),
        (lambda m, loss: m.manual_backward(loss.item()), TypeError, "takes the loss tensor to backpropagate from"),
        (lambda m, loss: m.manual_backward(None), TypeError, "`self.manual_backward(None)` takes the loss tensor"),
        (
            lambda m, loss: (m.manual_backward(loss), m.clip_gradients(m.optimizers(), 1.0, 2)),
            MisconfigurationException,
            "`gradient_clip_algorithm` 2 is invalid. Allowed algorithms: ['value', 'norm'].",
        ),
    ],
)
def test_an_argument_of_the_wrong_kind_to_a_manual_optimization_call_is_named(call, error, says):
    class Calls(ManualLinear):
        def training_step(self, batch, batch_idx):
            x, y = batch
            call(self, nn.functional.mse_loss(self.layer(x), y))

    with pytest.raises(error, match=re.escape(says)):
        _fit_plain(Calls())


def test_manual_backward_in_automatic_optimization_raises():
    class Wrong(TwoNets):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = True

        def training_step(self, batch, batch_idx):
            self.manual_backward(self.disc(batch[0]).sum())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(
        MisconfigurationException, match="to use manual_backward, please disable automatic optimization"
    ):
        _fit(Wrong(), n=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gradient_clip_val": 1.0}, "Automatic gradient clipping is not supported for manual optimization"),
        ({"accumulate_grad_batches": 2}, "Automatic gradient accumulation is not supported for manual optimization"),
    ],
)
def test_clipping_or_accumulation_with_manual_optimization_raise(kwargs, message):
    with pytest.raises(MisconfigurationException, match=message):
        quiet_trainer(max_epochs=1, **kwargs).fit(TwoNets(), loader(n=4))


def test_wrong_return_type_in_manual_optimization():
    class ReturnsString(TwoNets):
        def training_step(self, batch, batch_idx):
            return "loss"

    with pytest.raises(MisconfigurationException) as raised:
        _fit(ReturnsString(), n=4)
    message = str(raised.value)
    # Lightning's sentence, whole, so a test or log filter written against Lightning's text still matches
    assert message.startswith("In manual optimization, `training_step` must either return a Tensor or have no return.")
    assert "It returned str 'loss'" in message  # what came back, by type and value
    # and what to do instead: nothing needs returning, and a dict is as good as a tensor
    assert "nothing needs returning; return the loss (or a dict of values)" in message


def test_a_sequence_of_losses_returned_in_manual_optimization_is_named_by_its_tensors_shapes():
    class ReturnsTwoLosses(TwoNets):
        def training_step(self, batch, batch_idx):
            super().training_step(batch, batch_idx)
            return torch.tensor(1.0), torch.zeros(3)

    with pytest.raises(MisconfigurationException) as raised:
        _fit(ReturnsTwoLosses(), n=4)
    assert "It returned tuple (tensor of shape (), tensor of shape (3,))." in str(raised.value)


def test_returning_none_or_a_tensor_is_fine():
    class ReturnsNone(TwoNets):
        def training_step(self, batch, batch_idx):
            super().training_step(batch, batch_idx)
            return None if batch_idx == 0 else torch.tensor(1.0)

    trainer = _fit(ReturnsNone(), n=8)
    assert trainer.global_step == 4


def test_plateau_scheduler_in_manual_optimization_needs_no_monitor():
    class ManualPlateau(ManualLinear):
        def training_step(self, batch, batch_idx):
            opt, sched = self.optimizers(), self.lr_schedulers()
            loss = nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            sched.step(1.0)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            return [opt], [torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)]

    trainer = _fit_plain(ManualPlateau(), n=12)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.25  # 1.0 best, then two bad steps
    (config,) = trainer.lr_scheduler_configs
    assert config.monitor is None and not config.reduce_on_plateau


def test_trainer_only_scheduler_keys_are_dropped_with_a_warning_in_manual_optimization():
    class Keys(TwoNets):
        def configure_optimizers(self):
            (opt_g, opt_d), (s_g, s_d) = super().configure_optimizers()
            return [opt_g, opt_d], [{"scheduler": s_g, "monitor": "x", "strict": False, "interval": "step"}, s_d]

    with pytest.warns(
        RuntimeWarning, match=r"contains the key\(s\) \['monitor', 'strict'\], but the keys will be ignored"
    ):
        trainer = _fit(Keys(), n=4)
    assert trainer.lr_scheduler_configs[0].interval == "step"  # kept for LearningRateMonitor


class _TopLevelMonitor(ManualLinear):
    """Steps its optimizer by hand and returns ``{"optimizer", "lr_scheduler": made(opt), "monitor"}`` (no
    scheduler for ``made=None``); a plateau scheduler is stepped with the loss."""

    def __init__(self, made):
        super().__init__()
        self.made = made

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = nn.functional.mse_loss(self.layer(batch[0]), batch[1])
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        scheduler = self.lr_schedulers()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(loss.detach())

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=1.0)
        config = {"optimizer": opt, "monitor": "train_loss"}
        return config if self.made is None else {**config, "lr_scheduler": self.made(opt)}


def test_a_top_level_monitor_beside_a_plateau_scheduler_is_ignored_with_a_warning_in_manual_optimization(recwarn):
    trainer = _fit_plain(_TopLevelMonitor(torch.optim.lr_scheduler.ReduceLROnPlateau), n=4)
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    (message,) = [m for m in messages if "'monitor'" in m]
    assert "returned 'monitor': 'train_loss' beside a `ReduceLROnPlateau`" in message
    assert "manual optimization the trainer steps no scheduler" in message
    # the advice names the logged key and a call that works for a plateau scheduler
    assert "`self.lr_schedulers().step(value)` with the value you log as 'train_loss'" in message
    # the key sat beside the scheduler, not in a scheduler dict: no warning says otherwise
    assert not any("lr scheduler dict" in m for m in messages)
    (config,) = trainer.lr_scheduler_configs
    assert config.monitor is None and not config.reduce_on_plateau


@pytest.mark.parametrize("scheduler", ["step", "none"])
def test_a_top_level_monitor_without_a_plateau_scheduler_is_ignored_silently_in_manual_optimization(recwarn, scheduler):
    # Lightning ignores it without a word, as automatic optimization does for such a scheduler: no scheduler
    # here could take the value, so there is nothing to advise
    made = (lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1)) if scheduler == "step" else None
    trainer = _fit_plain(_TopLevelMonitor(made), n=4)
    assert not [w for w in recwarn if "monitor" in str(w.message)]
    assert len(trainer.lr_scheduler_configs) == (scheduler == "step")


def test_toggle_model_and_step_hooks_of_the_lightning_optimizer():
    seen = []

    class ToggleModel(TwoNets):
        def training_step(self, batch, batch_idx):
            opt_g, opt_d = self.optimizers()
            opt_g._on_before_step = lambda: seen.append("before")
            opt_g._on_after_step = lambda: seen.append("after")
            with opt_g.toggle_model(sync_grad=False):
                seen.append((self.gen.weight.requires_grad, self.disc.weight.requires_grad))
                loss = self.disc(self.gen(batch[0])).mean()
                opt_g.zero_grad()
                self.manual_backward(loss)
                opt_g.step()
            seen.append(self.disc.weight.requires_grad)

    _fit(ToggleModel(), n=4)
    assert seen == [(True, False), "before", "after", True]


def test_a_closure_that_is_not_callable():
    class BadClosure(TwoNets):
        def training_step(self, batch, batch_idx):
            self.optimizers()[0].step(closure=3)

    with pytest.raises(MisconfigurationException, match="the closure should be callable"):
        _fit(BadClosure(), n=4)


class RetainGraph(TwoNets):
    """Two backward passes through one graph per batch: the first keeps it (``retain_graph=True``)."""

    def training_step(self, batch, batch_idx):
        opt_g, _ = self.optimizers()
        loss = self.disc(self.gen(batch[0])).mean()
        opt_g.zero_grad()
        self.manual_backward(loss, retain_graph=True)
        self.manual_backward(loss)  # the graph is still there
        opt_g.step()


def test_manual_backward_passes_arguments_and_hooks_can_log():
    class Retain(RetainGraph):
        def on_after_backward(self):
            self.log("after_backward", 1.0, reduce_fx="sum", on_epoch=True)

    trainer = _fit(Retain(), n=8)
    assert trainer.callback_metrics["after_backward_epoch"].item() == 4.0  # two backward calls per batch


def test_the_lightning_optimizer_stands_for_the_optimizer_and_can_be_copied():
    import copy
    import pickle

    from ember.core.optimizer import LightningOptimizer

    layer = torch.nn.Linear(3, 4)
    adam = torch.optim.Adam(layer.parameters(), lr=0.1)
    wrapped = LightningOptimizer(adam)  # no trainer needed, as in Lightning
    assert isinstance(wrapped, torch.optim.Adam) and type(wrapped).__name__ == "LightningAdam"
    assert repr(wrapped) == "Lightning" + repr(adam)

    class Named(torch.optim.SGD):
        def __repr__(self):
            return "Named(custom)"

    assert repr(LightningOptimizer(Named(layer.parameters(), lr=0.1))) == "Named(custom)"  # its own, as in Lightning
    wrapped.param_groups[0]["lr"] = 1.0
    assert adam.param_groups[0]["lr"] == 1.0
    wrapped.state = adam.state  # settable, as in Lightning
    assert wrapped.state_dict() == adam.state_dict()
    for copied in (copy.deepcopy(wrapped), pickle.loads(pickle.dumps(wrapped))):
        assert type(copied).__name__ == "LightningAdam" and copied.param_groups[0]["lr"] == 1.0
        assert copied.optimizer is not adam


def test_step_passes_extra_arguments_to_the_optimizer():
    seen = []

    class WithOptions(torch.optim.SGD):
        def step(self, closure=None, scale=1.0):
            seen.append(scale)
            return super().step(closure)

    class Manual(ManualLinear):
        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(self.layer(batch[0]).sum())
            opt.step(scale=0.5)

        def configure_optimizers(self):
            return WithOptions(self.parameters(), lr=0.1)

    quiet_trainer(max_steps=2).fit(Manual(), loader())
    assert seen == [0.5, 0.5]


def test_opt_step_returns_what_the_optimizers_step_returns(monkeypatch):
    original = torch.optim.SGD.step

    def step_with_a_report(self, closure=None):
        original(self, closure)
        return "stepped"

    monkeypatch.setattr(torch.optim.SGD, "step", step_with_a_report)  # a wrapped step, e.g. by a profiling tool

    class Manual(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.layer = nn.Linear(4, 1)
            self.outputs = []

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(nn.functional.mse_loss(self.layer(batch[0]), batch[1]))
            self.outputs.append(opt.step())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Manual()
    quiet_trainer(max_steps=2).fit(model, loader(n=8))
    assert model.outputs == ["stepped", "stepped"]


def test_manual_backward_goes_through_the_strategys_backward():
    """As in Lightning, `self.manual_backward` calls `trainer.strategy.backward(loss, None, ...)`: a strategy
    that overrides it (or a tool that wraps it) sees every call with its arguments."""
    from ember.strategies import SingleDeviceStrategy

    calls = []

    class Recording(SingleDeviceStrategy):
        def backward(self, closure_loss, optimizer, *args, **kwargs):
            calls.append((closure_loss.detach().clone(), optimizer, kwargs))
            return super().backward(closure_loss, optimizer, *args, **kwargs)

    model = RetainGraph()
    trainer = quiet_trainer(max_epochs=1, strategy=Recording(device="cpu"))
    trainer.fit(model, loader(n=8))
    batches = trainer.num_training_batches
    assert batches >= 2
    assert [c[1:] for c in calls] == [(None, {"retain_graph": True}), (None, {})] * batches
    assert all(torch.equal(calls[i][0], calls[i + 1][0]) for i in range(0, 2 * batches, 2))  # the loss itself
    assert model.gen.weight.grad is not None


def test_a_replaced_optimizer_step_gets_the_closure():
    """A `step` replaced on the optimizer class (a mock, a wrapper) is called as Lightning calls it,
    `step(closure=..., **kwargs)`, so it decides whether the closure runs."""
    from unittest import mock

    class Manual(ManualLinear):
        def training_step(self, batch, batch_idx):
            def closure():
                self.closure_calls += 1
                self.manual_backward(self.layer(batch[0]).sum())

            self.optimizers().step(closure=closure, optim="sgd")

    model = Manual()
    with mock.patch("torch.optim.SGD.step") as step:
        model.on_train_start = step.reset_mock  # creating the optimizer asked the mock whether it is hooked
        quiet_trainer(max_steps=3).fit(model, loader(n=16))
    assert step.mock_calls == [mock.call(closure=mock.ANY, optim="sgd")] * 3
    assert model.closure_calls == 0  # the mock never ran it, as in Lightning

    seen = []
    original = torch.optim.SGD.step

    def recording_step(self, closure=None):
        seen.append(closure is not None)
        return original(self, closure)

    with mock.patch.object(torch.optim.SGD, "step", recording_step):
        trainer = quiet_trainer(max_steps=2)
        trainer.fit(CoreModel(), loader(n=16))  # automatic optimization
    assert seen == [True, True] and trainer.global_step == 2


class _SilentSecondStep(ember.LightningModule):
    """Steps two optimizers a batch; the second with the wrapper's step hooks swapped for no-ops, as
    stable-pretraining steps its probes' optimizers."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = nn.Linear(2, 1), nn.Linear(2, 1)
        self.batches = 0

    def training_step(self, batch, batch_idx):
        self.batches += 1
        first, second = self.optimizers()
        self.manual_backward(self.a(batch).sum() + self.b(batch).sum())
        first.step()
        kept = second._on_before_step, second._on_after_step
        second._on_before_step = second._on_after_step = lambda: None
        try:
            second.step()
        finally:
            second._on_before_step, second._on_after_step = kept
        first.zero_grad()
        second.zero_grad()

    def configure_optimizers(self):
        return [torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.1)]


def test_the_global_step_counts_through_the_wrappers_after_step_hook_as_in_lightning():
    data = torch.utils.data.DataLoader(torch.randn(8, 2), batch_size=2)
    model = _SilentSecondStep()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, data)
    assert (model.batches, trainer.global_step) == (4, 4)
    model = _SilentSecondStep()
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(model, data)
    assert (model.batches, trainer.global_step) == (2, 2)
    first, _ = model.optimizers()
    assert first._on_after_step() is None and trainer.global_step == 2  # outside a batch, nothing counts


class TestTimeAdaptation(CoreModel):
    """Manual optimization that also steps in ``test_step`` (test-time adaptation) and in ``on_train_end``."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.hooks: list[str] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self._adapt(nn.functional.mse_loss(self(x), y))

    def on_train_end(self):
        x, y = next(iter(loader(n=4)))
        with torch.enable_grad():
            self._adapt(nn.functional.mse_loss(self(x), y))

    def test_step(self, batch, batch_idx):
        x, _ = batch
        with torch.enable_grad():
            self._adapt(self(x).pow(2).mean())  # an unsupervised loss

    def _adapt(self, loss):
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()

    def on_before_backward(self, loss):
        self.hooks.append(f"{self.trainer.state.stage.value}:before_backward")

    def on_before_optimizer_step(self, optimizer):
        self.hooks.append(f"{self.trainer.state.stage.value}:before_optimizer_step")


def test_manual_steps_outside_the_training_step_run_as_in_lightning():
    """Lightning lets ``manual_backward`` and ``opt.step()`` run outside a training step, with the backward and
    before-step hooks and without counting a step: test-time adaptation and a last step in ``on_train_end``."""
    torch.manual_seed(0)
    model = TestTimeAdaptation()
    expected = nn.Linear(4, 1)
    expected.load_state_dict(model.layer.state_dict())
    sgd = torch.optim.SGD(expected.parameters(), lr=0.1)

    def by_hand(loss):
        sgd.zero_grad()
        loss.backward()
        sgd.step()

    trainer = quiet_trainer(max_steps=2, inference_mode=False)
    trainer.fit(model, loader(n=8))
    for x, y in [*list(loader(n=8)), next(iter(loader(n=4)))]:
        by_hand(nn.functional.mse_loss(expected(x), y))
    assert trainer.global_step == 2  # the step in `on_train_end` is not counted
    torch.testing.assert_close(model.layer.weight, expected.weight)

    model.hooks.clear()
    trainer.test(model, loader(n=8), verbose=False)
    for x, _ in loader(n=8):
        by_hand(expected(x).pow(2).mean())
    torch.testing.assert_close(model.layer.weight, expected.weight)
    assert model.hooks == ["test:before_backward", "test:before_optimizer_step"] * 2
    assert trainer.global_step == 2


def test_untoggling_another_optimizer_restores_only_the_rest_as_lightning_does():
    seen = {}

    class Two(TwoNets):
        def training_step(self, batch, batch_idx):
            opt_g, opt_d = self.optimizers()
            self.toggle_optimizer(opt_g)
            self.untoggle_optimizer(opt_d)  # not the one toggled: its own parameters stay as they were
            seen["after"] = (self.gen.weight.requires_grad, self.disc.weight.requires_grad)
            with pytest.raises(KeyError):  # an optimizer the Trainer does not hold, as in Lightning
                self.toggle_optimizer(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1))

    _fit(Two(), n=4)
    assert seen["after"] == (True, False)


def test_the_strategy_holds_the_lightning_optimizers_as_in_lightning():
    # programs step through `trainer.strategy._lightning_optimizers`, where Lightning's loops find them
    seen = []

    class Reads(CoreModel):
        def on_train_start(self):
            seen.append(self.trainer.strategy._lightning_optimizers == [self.optimizers()])

    quiet_trainer(max_steps=1).fit(Reads(), loader(n=8))
    assert seen == [True]
    assert ember.Trainer(logger=False).strategy._lightning_optimizers == []


@pytest.mark.parametrize("loss", [1.5, None, 3])
def test_a_manual_step_may_return_a_dict_whose_loss_is_no_tensor(loss):
    # Lightning calls `.detach()` on it and fails; Ember hands it to `on_train_batch_end` as it is (docs/compat.md)
    seen = []

    class ReturnsNumbers(ManualCoreModel):
        def training_step(self, batch, batch_idx):
            super().training_step(batch, batch_idx)
            return {"loss": loss}

        def on_train_batch_end(self, outputs, batch, batch_idx):
            seen.append(outputs)

    quiet_trainer(max_steps=1).fit(ReturnsNumbers(), loader(n=8))
    assert seen == [{"loss": loss}]


class _StepsByHand(ManualLinear):
    """Steps its optimizer by hand; ``configure_optimizers`` returns ``made(optimizer)``."""

    def __init__(self, made):
        super().__init__()
        self.made = made

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(nn.functional.mse_loss(self.layer(batch[0]), batch[1]))
        opt.step()

    def configure_optimizers(self):
        return self.made(torch.optim.SGD(self.parameters(), lr=0.1))


def test_an_unsupported_scheduler_key_warns_and_trains_in_manual_optimization():
    # Lightning fails building its config (TypeError: unexpected keyword argument 'foo')
    def made(opt):
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1), "foo": 1}}

    with pytest.warns(RuntimeWarning, match=r"^Found unsupported keys in the lr scheduler dict: \{'foo'\}"):
        trainer = _fit_plain(_StepsByHand(made))
    assert trainer.global_step == 2 and len(trainer.lr_scheduler_configs) == 1


def test_a_broken_scheduler_in_manual_optimization_gets_the_message_of_automatic_optimization():
    # Lightning: TypeError "missing 1 required positional argument: 'scheduler'" and
    # AttributeError "'object' object has no attribute 'optimizer'"
    with pytest.raises(MisconfigurationException, match='^The lr scheduler dict must have the key "scheduler"'):
        _fit_plain(_StepsByHand(lambda opt: {"optimizer": opt, "lr_scheduler": {"interval": "step"}}))
    with pytest.raises(TypeError, match="^The provided lr scheduler `object` is invalid. It should have `state_dict`"):
        _fit_plain(_StepsByHand(lambda opt: ([opt], [object()])))


@pytest.mark.parametrize("automatic", [True, False])
def test_a_lightning_optimizer_returned_by_configure_optimizers_is_kept(automatic):
    # as Lightning's `_to_lightning_optimizer`: the wrapper given is the one `self.optimizers()` returns (wrapping
    # it again failed to build a class)
    from ember.core.optimizer import LightningOptimizer

    given = []

    class Wraps(CoreModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = automatic

        def configure_optimizers(self):
            given.append(LightningOptimizer(torch.optim.SGD(self.parameters(), lr=0.1)))
            return given[-1]

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            if automatic:
                return loss
            optimizer = self.optimizers()
            assert optimizer is given[0]
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()

    model = Wraps()
    before = model.layer.weight.detach().clone()
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(model, loader(n=8))
    assert trainer.global_step == 2 and not torch.equal(model.layer.weight, before)
    assert model.optimizers() is given[0] and trainer.optimizers == [given[0].optimizer]


class _StopAtEpoch(ember.Callback):
    """Stops the fit at the end of ``epoch``: the runs below would otherwise never end."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch >= self.epoch:
            trainer.should_stop = True


class _StepsUncounted(ManualCoreModel):
    """Steps an optimizer the trainer does not count: the one in ``trainer.optimizers``, not ``self.optimizers()``."""

    def training_step(self, batch, batch_idx):
        optimizer = self.trainer.optimizers[0]
        optimizer.zero_grad()
        self.manual_backward(CoreModel.training_step(self, batch, batch_idx))
        optimizer.step()


class _SkipsEveryBatch(CoreModel):
    def training_step(self, batch, batch_idx):
        return None


def test_a_manual_fit_whose_only_limit_max_steps_is_never_reached_says_why_once():
    trainer = quiet_trainer(max_steps=3, callbacks=[_StopAtEpoch(2)])
    with pytest.warns(UserWarning, match="max_steps=3`, the fit's only limit") as record:
        trainer.fit(_StepsUncounted(), loader(n=8))
    assert trainer.current_epoch == 3 and trainer.global_step == 0  # ran until the callback stopped it
    said = [str(w.message) for w in record if "the fit's only limit" in str(w.message)]
    assert len(said) == 1
    assert said[0].startswith("Epoch 0 trained 2 batches and counted no optimizer step, so `global_step` is still 0")
    assert "In manual optimization a step counts when an optimizer `self.optimizers()` returns steps" in said[0]


@pytest.mark.parametrize(
    ("module", "limits"),
    [
        (_StepsUncounted, {"max_steps": 3, "max_epochs": 2}),  # the epochs end it
        (ManualCoreModel, {"max_steps": 30, "max_epochs": -1}),  # it steps
        (_SkipsEveryBatch, {"max_steps": 3, "max_epochs": -1}),  # a skipped batch counts its step, as in Lightning
    ],
)
def test_no_such_warning_where_a_limit_ends_the_fit(module, limits, recwarn):
    trainer = quiet_trainer(callbacks=[_StopAtEpoch(4)], **limits)
    trainer.fit(module(), loader(n=8))
    assert not [w for w in recwarn if "the fit's only limit" in str(w.message)]
