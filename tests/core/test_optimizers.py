"""Every return format of ``configure_optimizers`` and its errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.utilities import MisconfigurationException


def _sgd(m, lr=0.1):
    return torch.optim.SGD(m.parameters(), lr=lr)


def _step(opt, **kwargs):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=1, **kwargs)


def _fit(configure: Any, **trainer_kwargs: Any):
    model = CoreModel(optimizers=configure)
    trainer = quiet_trainer(**{"max_steps": 1, **trainer_kwargs})
    trainer.fit(model, loader(n=8))
    return trainer, model


def test_single_optimizer():
    trainer, model = _fit(_sgd)
    assert len(trainer.optimizers) == 1 and isinstance(trainer.optimizers[0], torch.optim.SGD)
    assert trainer.lr_scheduler_configs == []
    assert model.optimizers() is not trainer.optimizers[0]  # the step-counting wrapper
    assert model.optimizers(use_pl_optimizer=False) is trainer.optimizers[0]
    assert model.lr_schedulers() is None


@pytest.mark.parametrize("wrap", [list, tuple])
def test_list_or_tuple_of_one_optimizer(wrap):
    trainer, _ = _fit(lambda m: wrap([_sgd(m)]))
    assert len(trainer.optimizers) == 1


@pytest.mark.parametrize("second", ["list", "single"])
def test_two_lists(second):
    def configure(m):
        opt = _sgd(m)
        sched = _step(opt)
        return [opt], ([sched] if second == "list" else sched)

    trainer, model = _fit(configure)
    (config,) = trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.StepLR)
    assert (
        config.name,
        config.interval,
        config.frequency,
        config.reduce_on_plateau,
        config.monitor,
        config.strict,
    ) == (
        None,
        "epoch",
        1,
        False,
        None,
        True,
    )
    assert model.lr_schedulers() is config.scheduler


def test_dict_with_scheduler_config():
    def configure(m):
        opt = _sgd(m)
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": _step(opt), "interval": "step", "frequency": 2, "name": "my_lr"},
        }

    trainer, _ = _fit(configure)
    (config,) = trainer.lr_scheduler_configs
    assert (config.name, config.interval, config.frequency) == ("my_lr", "step", 2)


def test_dict_with_plateau_and_monitor():
    def configure(m):
        opt = _sgd(m)
        return {
            "optimizer": opt,
            "lr_scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt),
            "monitor": "val_loss",
        }

    trainer, _ = _fit(configure, limit_val_batches=0)
    (config,) = trainer.lr_scheduler_configs
    assert config.reduce_on_plateau and config.monitor == "val_loss"


def test_dict_without_scheduler():
    trainer, _ = _fit(lambda m: {"optimizer": _sgd(m)})
    assert len(trainer.optimizers) == 1 and trainer.lr_scheduler_configs == []


def test_list_of_dicts_in_manual_optimization():
    class TwoDicts(CoreModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.other = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            a, b = _sgd(self.layer), _sgd(self.other)
            return [{"optimizer": a, "lr_scheduler": _step(a)}, {"optimizer": b}]

    trainer = quiet_trainer(max_epochs=1)
    model = TwoDicts()
    trainer.fit(model, loader(n=4))
    assert len(trainer.optimizers) == 2
    assert len(trainer.lr_scheduler_configs) == 1
    assert len(model.optimizers()) == 2
    assert isinstance(model.lr_schedulers(), torch.optim.lr_scheduler.StepLR)


def test_none_warns_and_trains_without_an_optimizer():
    with pytest.warns(UserWarning, match="returned `None`, this fit will run with no optimizer"):
        trainer, model = _fit(lambda m: None)
    assert repr(trainer.optimizers[0]) == "No Optimizer"
    assert trainer.global_step == 1
    # its checkpoint entry is empty, as Lightning's (cellarium-ml compares it)
    assert trainer._checkpoint_connector.dump_checkpoint(False)["optimizer_states"] == [{}]


@pytest.mark.parametrize("bad", ["adam", 3, [1, 2], {"lr": 0.1}, ([], None, None)])
def test_unknown_formats_are_refused_with_the_formats(bad):
    with pytest.raises(MisconfigurationException, match="configure_optimizers` must return one of"):
        _fit(lambda m: bad)


def test_unsupported_dict_keys_warn():
    with pytest.warns(RuntimeWarning, match=r"unsupported keys in the optimizer configuration: \{'foo'\}"):
        _fit(lambda m: {"optimizer": _sgd(m), "foo": 1})


def test_several_optimizers_need_manual_optimization():
    with pytest.raises(RuntimeError, match="multiple optimizers is only supported with manual optimization"):
        _fit(lambda m: [_sgd(m), _sgd(m)])


def test_optimizer_idx_argument_needs_manual_optimization():
    class OldStyle(CoreModel):
        def training_step(self, batch, batch_idx, optimizer_idx):
            return super().training_step(batch, batch_idx)

    with pytest.raises(RuntimeError, match="Remove the `optimizer_idx` argument") as raised:
        quiet_trainer(max_steps=1).fit(OldStyle(), loader())
    assert "set `self.automatic_optimization = False`" in str(raised.value)


def test_optimizer_idx_argument_in_manual_optimization_is_not_told_to_switch_to_it():
    class OldManual(CoreModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx, optimizer_idx):
            raise AssertionError("never called")

    with pytest.raises(RuntimeError, match="remove the `optimizer_idx` argument") as raised:
        quiet_trainer(max_steps=1).fit(OldManual(), loader())
    message = str(raised.value)
    assert message.startswith("`OldManual.training_step` takes an `optimizer_idx` argument")
    assert "automatic_optimization" not in message and "only supported with manual optimization" not in message


def test_optimizer_step_counts_global_step():
    trainer, _ = _fit(_sgd, max_steps=-1, max_epochs=2)
    assert trainer.global_step == 4


def test_optimizer_step_override_must_call_the_closure():
    calls = []

    class Warmup(CoreModel):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            calls.append((epoch, batch_idx, type(optimizer).__name__))
            for group in optimizer.param_groups:
                group["lr"] = 0.01 * (self.trainer.global_step + 1)
            optimizer.step(closure=optimizer_closure)

    model = Warmup()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=8))
    assert calls == [(0, 0, "LightningSGD"), (0, 1, "LightningSGD")]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.02)
    assert trainer.global_step == 2


def test_optimizer_zero_grad_override_is_called_at_window_start():
    calls = []

    class ZeroGrad(CoreModel):
        def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
            calls.append(batch_idx)
            optimizer.zero_grad(set_to_none=True)

    quiet_trainer(max_epochs=1, accumulate_grad_batches=2).fit(ZeroGrad(), loader(n=16))
    assert calls == [0, 2]


# ---- scheduler config errors -------------------------------------------------------------------
def test_scheduler_dict_without_scheduler_key():
    with pytest.raises(MisconfigurationException, match='must have the key "scheduler"'):
        _fit(lambda m: {"optimizer": _sgd(m), "lr_scheduler": {"interval": "step"}})


def test_bad_interval():
    def configure(m):
        opt = _sgd(m)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": _step(opt), "interval": "batch"}}

    with pytest.raises(MisconfigurationException, match='"interval" key .* must be "step" or "epoch" but is "batch"'):
        _fit(configure)


@pytest.mark.parametrize("form", ["lists", "config"])
def test_plateau_without_monitor(form):
    def configure(m):
        opt = _sgd(m)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
        if form == "lists":
            return [opt], [plateau]
        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau}}

    with pytest.raises(MisconfigurationException, match="must include a monitor"):
        _fit(configure)


def test_unknown_scheduler_keys_warn():
    def configure(m):
        opt = _sgd(m)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": _step(opt), "when": "now"}}

    with pytest.warns(RuntimeWarning, match=r"unsupported keys in the lr scheduler dict: \{'when'\}"):
        _fit(configure)


def test_one_cycle_with_epoch_interval_warns():
    def configure(m):
        opt = _sgd(m)
        return {
            "optimizer": opt,
            "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.OneCycleLR(opt, 1.0, total_steps=10)},
        }

    with pytest.warns(RuntimeWarning, match="OneCycleLR.*'interval': 'step'"):
        _fit(configure)


def test_scheduler_of_another_optimizer():
    def configure(m):
        other = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
        return [_sgd(m)], [_step(other)]

    with pytest.raises(MisconfigurationException, match="optimizer that wasn't returned"):
        _fit(configure)


class NoStateScheduler:
    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self, *args):
        pass


def test_scheduler_without_state_dict():
    with pytest.raises(TypeError, match="NoStateScheduler.*state_dict"):
        _fit(lambda m: ([o := _sgd(m)], [NoStateScheduler(o)]))


class CustomScheduler(NoStateScheduler):
    """Not a torch scheduler: Lightning requires ``lr_scheduler_step`` to be overridden."""

    def __init__(self, optimizer):
        super().__init__(optimizer)
        self.steps = 0

    def step(self, *args):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_non_torch_scheduler_needs_lr_scheduler_step():
    with pytest.raises(MisconfigurationException, match="override the `LightningModule.lr_scheduler_step` hook"):
        _fit(lambda m: ([o := _sgd(m)], [CustomScheduler(o)]))


def test_optimizer_step_override_that_drops_the_closure():
    class NoClosure(CoreModel):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            optimizer.step()

    with pytest.raises(MisconfigurationException, match="The closure hasn't been executed"):
        quiet_trainer(max_epochs=1).fit(NoClosure(), loader(n=8))


def test_optimizer_step_hook_that_runs_the_closure_itself_steps_only_when_it_asks():
    # a way to skip steps that Lightning allows: run the closure (forward, backward), then step or not
    class EveryOther(CoreModel):
        def __init__(self):
            super().__init__()
            self.stepped, self.before_step = [], 0

        def on_before_optimizer_step(self, optimizer):
            self.before_step += 1

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            optimizer_closure()
            weights = self.layer.weight.detach().clone()
            if batch_idx % 2 == 0:
                optimizer.step()
            self.stepped.append(not torch.equal(weights, self.layer.weight))

    model = EveryOther()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=8, batch_size=1))
    assert model.stepped == [True, False] * 4
    assert model.before_step == 4  # the hooks before a step run with the step, not with the closure
    assert trainer.global_step == 8  # as Lightning counts it


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize(
    ("through_step", "optimizer"),
    [(True, torch.optim.SGD), (True, torch.optim.LBFGS), (False, torch.optim.SGD)],
)
def test_the_closure_returns_the_loss_without_its_graph(through_step, optimizer, accumulate):
    # as Lightning's `Closure`: `optimizer_closure()` and `optimizer.step(closure=...)` give the loss detached,
    # so a program that keeps it keeps no graph (and `float(...)` gives no "requires_grad" warning)
    class KeepsTheLoss(CoreModel):
        def __init__(self):
            super().__init__(optimizers=lambda m: optimizer(m.parameters(), lr=0.1))
            self.losses, self.returned = [], []

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.losses.append(loss.detach().clone())
            return loss

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
            if through_step:
                self.returned.append(optimizer.step(closure=optimizer_closure))
            else:
                self.returned.append(optimizer_closure())
                optimizer.step()

    model = KeepsTheLoss()
    quiet_trainer(max_steps=2, accumulate_grad_batches=accumulate).fit(model, loader(n=8, batch_size=2))
    assert len(model.returned) == 2
    for returned in model.returned:
        assert not returned.requires_grad and returned.grad_fn is None
    # the value of the window's last batch, divided by the accumulation factor (LBFGS evaluates the closure
    # more than once: its first evaluation is what its step returns)
    last_of_first_window = model.losses[accumulate - 1] / accumulate
    assert torch.equal(model.returned[0], last_of_first_window)


class _KeepsWhatTheClosureReturns(torch.optim.SGD):
    """An optimizer class of the program's own: its `step` gets the closure, and keeps what it returns."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.returned = []

    def step(self, closure=None):
        loss = closure()
        self.returned.append(loss)
        super().step()
        return loss


def test_an_optimizer_of_the_programs_own_gets_the_loss_without_its_graph():
    # with no `optimizer_step` override, the closure's loss still goes to the optimizer's own `step`, which the
    # program wrote and may keep: detached there, as Lightning's closure returns it
    model = CoreModel(optimizers=lambda m: _KeepsWhatTheClosureReturns(m.parameters(), lr=0.1))
    quiet_trainer(max_steps=3).fit(model, loader(n=8, batch_size=2))
    returned = model.trainer.optimizers[0].returned
    assert len(returned) == 3 and all(not loss.requires_grad and loss.grad_fn is None for loss in returned)


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_the_batch_outputs_carry_the_loss_without_its_graph(optimizer):
    # torch's own optimizers step without anyone reading the closure's loss, so the step does not detach it; the
    # batch-end hooks still get it detached, as in Lightning
    class ReadsTheOutputs(CoreModel):
        def __init__(self):
            super().__init__(optimizers=lambda m: optimizer(m.parameters(), lr=0.1))
            self.outputs = []

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.outputs.append(outputs["loss"])

    model = ReadsTheOutputs()
    quiet_trainer(max_steps=2).fit(model, loader(n=8, batch_size=2))
    assert len(model.outputs) == 2
    assert all(not loss.requires_grad and loss.grad_fn is None and loss.ndim == 0 for loss in model.outputs)


def test_two_lists_with_a_scheduler_config_dict():
    def configure(m):
        opt = _sgd(m)
        return [opt], [{"scheduler": _step(opt), "interval": "step", "name": "warm"}]

    trainer, _ = _fit(configure)
    (config,) = trainer.lr_scheduler_configs
    assert (config.interval, config.name) == ("step", "warm")


def test_top_level_monitor_goes_to_the_plateau_scheduler_only():
    def configure(m):
        opt = _sgd(m)
        return {"optimizer": opt, "lr_scheduler": _step(opt), "monitor": "val_loss"}

    trainer, _ = _fit(configure)
    assert trainer.lr_scheduler_configs[0].monitor is None


def test_the_scheduler_config_has_lightnings_fields_and_opt_idx_is_an_unsupported_key():
    import dataclasses

    class WithOptIdx(CoreModel):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "opt_idx": 0}}

    trainer = quiet_trainer(max_steps=1)
    with pytest.warns(RuntimeWarning, match=r"Found unsupported keys in the lr scheduler dict: \{'opt_idx'\}"):
        trainer.fit(WithOptIdx(), loader())
    # Lightning 2.0 dropped `opt_idx`, with the one-optimizer-per-step automatic optimization
    assert [field.name for field in dataclasses.fields(trainer.lr_scheduler_configs[0])] == [
        "scheduler",
        "name",
        "interval",
        "frequency",
        "reduce_on_plateau",
        "monitor",
        "strict",
    ]


@pytest.mark.parametrize("returned", ["sgd", [[None]], (None, None)])
def test_an_unknown_optimizer_configuration_gets_lightnings_message_then_what_was_returned(returned):
    class Returns(CoreModel):
        def configure_optimizers(self):
            return returned

    with pytest.raises(MisconfigurationException) as error:
        quiet_trainer(max_steps=1).fit(Returns(), loader(n=4))
    message = str(error.value)
    assert message.startswith(
        "Unknown configuration for model optimizers. Output from `model.configure_optimizers()` should be one of:\n"
        " * `Optimizer`\n * [`Optimizer`]\n * ([`Optimizer`], [`LRScheduler`])\n"
    )
    assert f"It returned {returned!r}." in message


def test_a_scheduler_dict_without_an_optimizer_or_with_a_list_is_named_where_lightning_crashes():
    # Lightning fails with KeyError('optimizer') and an AttributeError from inside its scheduler set-up
    def no_optimizer(model):
        return {"lr_scheduler": torch.optim.lr_scheduler.StepLR(torch.optim.SGD(model.parameters(), lr=0.1), 1)}

    def listed_scheduler(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return {"optimizer": optimizer, "lr_scheduler": [torch.optim.lr_scheduler.StepLR(optimizer, 1)]}

    with pytest.raises(
        MisconfigurationException, match="The dict returned by `configure_optimizers` has no 'optimizer'"
    ):
        quiet_trainer(max_steps=1).fit(CoreModel(optimizers=no_optimizer), loader(n=4))
    with pytest.raises(TypeError, match="^The provided lr scheduler `list` is invalid. It should have `state_dict`"):
        quiet_trainer(max_steps=1).fit(CoreModel(optimizers=listed_scheduler), loader(n=4))


class ShapedLikeAnOptimizer:
    """An optimizer that does not subclass ``torch.optim.Optimizer`` but has its members (as a wrapper may)."""

    def __init__(self, params):
        self._sgd = torch.optim.SGD(params, lr=0.5)
        self.param_groups, self.defaults, self.state = self._sgd.param_groups, self._sgd.defaults, self._sgd.state

    def step(self, closure=None):
        return self._sgd.step(closure)

    def zero_grad(self, set_to_none=True):
        self._sgd.zero_grad(set_to_none)

    def state_dict(self):
        return self._sgd.state_dict()

    def load_state_dict(self, state):
        self._sgd.load_state_dict(state)


@pytest.mark.parametrize(
    "form",
    [
        lambda opt: opt,
        lambda opt: [opt],
        lambda opt: (opt,),
        lambda opt: ([opt], []),
        lambda opt: {"optimizer": opt},
        lambda opt: [{"optimizer": opt}],
    ],
    ids=["alone", "list", "tuple", "two-lists", "dict", "list-of-dicts"],
)
def test_an_object_shaped_like_an_optimizer_trains_in_every_form(form):
    trainer, model = _fit(lambda m: form(ShapedLikeAnOptimizer(m.parameters())), max_steps=2)
    (optimizer,) = trainer.optimizers
    assert isinstance(optimizer, ShapedLikeAnOptimizer)
    assert trainer.global_step == 2
    assert optimizer.state_dict()["param_groups"][0]["lr"] == 0.5


class NoDefaults(ShapedLikeAnOptimizer):
    def __init__(self, params):
        super().__init__(params)
        del self.defaults


@pytest.mark.parametrize("form", [lambda opt: opt, lambda opt: [opt]], ids=["alone", "list"])
def test_an_object_missing_an_optimizers_member_gets_the_unknown_configuration_error(form):
    with pytest.raises(MisconfigurationException, match="^Unknown configuration for model optimizers"):
        _fit(lambda m: form(NoDefaults(m.parameters())))


def test_a_scheduler_in_a_list_of_dicts_is_checked_as_a_scheduler_dict():
    def one_cycle(m):
        opt = _sgd(m)
        return [{"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.OneCycleLR(opt, 1.0, total_steps=10)}]

    def plateau(m):
        opt = _sgd(m)
        return [{"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt)}]

    with pytest.warns(RuntimeWarning, match="A `OneCycleLR` scheduler is using 'interval': 'epoch'"):
        trainer, _ = _fit(one_cycle)
    assert trainer.lr_scheduler_configs[0].interval == "epoch"
    with pytest.raises(MisconfigurationException, match='^The lr scheduler dict must include a monitor .* "your_loss"'):
        _fit(plateau)


def test_unsupported_scheduler_keys_warn_before_a_missing_scheduler_is_refused():
    with (
        pytest.warns(RuntimeWarning, match=r"unsupported keys in the lr scheduler dict: \{'bar'\}"),
        pytest.raises(MisconfigurationException, match='must have the key "scheduler"'),
    ):
        _fit(lambda m: {"optimizer": _sgd(m), "lr_scheduler": {"bar": 2}})


def test_a_training_step_that_returns_none_warns_once_a_process(recwarn):
    from ember.trainer.step import _warning_cache

    _warning_cache.clear()  # as in a fresh process

    class SkipsOddBatches(CoreModel):
        def training_step(self, batch, batch_idx):
            return None if batch_idx % 2 else super().training_step(batch, batch_idx)

    for _ in range(2):  # recwarn records every warning, repeats included
        quiet_trainer(max_epochs=2).fit(SkipsOddBatches(), loader(n=16))
    skipped = [w for w in recwarn if "`training_step` returned `None`" in str(w.message)]
    assert len(skipped) == 1


def test_schedulers_are_checked_for_their_optimizer_before_their_state_methods_as_in_lightning():
    def configure(m):
        opt = _sgd(m)
        other = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
        return [opt], [NoStateScheduler(opt), _step(other)]

    with pytest.raises(MisconfigurationException, match="optimizer that wasn't returned"):
        _fit(configure)


@pytest.mark.parametrize("listed", [False, True], ids=["dict", "list-of-dicts"])
def test_a_none_lr_scheduler_in_a_dict_is_refused_as_in_lightning(listed):
    # a scheduler factory that forgot its `return` must not train without the scheduler
    def configure(m):
        config = {"optimizer": _sgd(m), "lr_scheduler": None}
        return [config] if listed else config

    with pytest.raises(TypeError, match="^The provided lr scheduler `NoneType` is invalid"):
        _fit(configure)


@pytest.mark.parametrize(
    "form",
    [lambda opt, sched: ((opt,), (sched,)), lambda opt, sched: ([opt], (sched,))],
    ids=["two-tuples", "tuple-of-schedulers"],
)
def test_tuples_stand_for_the_lists_of_optimizers_and_schedulers(form):
    # Lightning takes only a list in these places (an "Unknown configuration" error, an AttributeError)
    trainer, model = _fit(lambda m: form(o := _sgd(m), _step(o, gamma=0.5)), max_steps=-1, max_epochs=1)
    (config,) = trainer.lr_scheduler_configs
    assert model.lr_schedulers() is config.scheduler
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.05


def test_a_top_level_monitor_in_a_list_of_dicts_goes_to_its_plateau_scheduler():
    # Lightning reads no "monitor" from a list of dicts and raises that the plateau scheduler needs one
    def configure(m):
        opt = _sgd(m)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
        return [{"optimizer": opt, "lr_scheduler": plateau, "monitor": "train_loss"}]

    trainer, _ = _fit(configure)
    (config,) = trainer.lr_scheduler_configs
    assert (config.monitor, config.reduce_on_plateau) == ("train_loss", True)


class _KeepsInContext(torch.autograd.Function):
    """An op that keeps its input on ``ctx`` (not ``save_for_backward``): backward does not free it, only the
    graph's end does, as in many custom ops."""

    kept: list[Any] = []

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.input = x.detach().clone()
        _KeepsInContext.kept.append(__import__("weakref").ref(ctx.input))
        return x * 2

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2


@pytest.mark.parametrize("reads_outputs", [False, True])
def test_a_steps_graph_is_gone_when_the_next_batch_starts(reads_outputs):
    """Nothing of a batch's graph is kept past its step (as in Lightning): an op's tensors that backward does not
    free live until the graph goes, so a graph kept over to the next batch would hold them through its forward."""
    alive_at_start: list[int] = []
    _KeepsInContext.kept.clear()

    class Model(CoreModel):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(_KeepsInContext.apply(self(x)), y)

        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            alive_at_start.append(sum(ref() is not None for ref in _KeepsInContext.kept))

        if reads_outputs:  # the batch outputs are built: they hold the loss without its graph

            def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
                assert outputs["loss"].grad_fn is None

    quiet_trainer(max_epochs=1).fit(Model(), loader(n=16, batch_size=4))
    assert alive_at_start == [0, 0, 0, 0]


@pytest.mark.parametrize("empty", [[], (), ([], [])], ids=["list", "tuple", "two_lists"])
def test_no_optimizer_in_a_list_is_named_under_automatic_optimization(empty):
    # it failed where the training step took the first optimizer, with "list index out of range"
    with pytest.raises(MisconfigurationException, match=r"which holds no optimizer\. Automatic optimization steps"):
        _fit(lambda m: empty)


def test_manual_optimization_may_return_no_optimizer():
    import ember as pl

    class Manual(CoreModel):
        def __init__(self):
            super().__init__(optimizers=lambda m: [])
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            assert self.optimizers() == []
            self.manual_backward(self.layer(batch[0]).sum())

    trainer = quiet_trainer(max_steps=1, max_epochs=1, limit_train_batches=2)
    trainer.fit(Manual(), loader(n=8))
    assert trainer.optimizers == [] and isinstance(trainer, pl.Trainer)
