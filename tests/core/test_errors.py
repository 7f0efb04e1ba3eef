"""Bad input gets a clear error naming what is wrong and the fix, before training where possible."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer
from torch import nn

import ember
from ember.utilities import MisconfigurationException


# ---- Trainer arguments -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_epochs": -5}, r"`max_epochs` must be a non-negative integer or -1.*You passed in -5"),
        ({"max_epochs": 1.5}, r"`max_epochs` must be an int"),
        ({"max_steps": -2}, r"`max_steps` must be a non-negative integer or -1.*You passed in -2"),
        ({"min_epochs": -1}, r"`min_epochs` must be >= 0"),
        ({"min_steps": -1}, r"`min_steps` must be >= 0"),
        ({"accumulate_grad_batches": 0}, r"accumulate_grad_batches=0\)` must be an int >= 1"),
        ({"num_sanity_val_steps": -2}, r"`num_sanity_val_steps` must be an int >= -1"),
        ({"log_every_n_steps": -1}, r"`log_every_n_steps` must be an int >= 0"),
        # Lightning takes these and fails later (a ZeroDivisionError in fit, a TypeError) or trains with them
        ({"log_every_n_steps": 2.0}, r"`log_every_n_steps` must be an int >= 0"),
        ({"accumulate_grad_batches": -1}, r"accumulate_grad_batches=-1\)` must be an int >= 1"),
        ({"accumulate_grad_batches": 1.5}, r"accumulate_grad_batches=1.5\)` must be an int >= 1"),
        ({"check_val_every_n_epoch": -1}, r"`check_val_every_n_epoch` should be an integer greater than 0 or None"),
        ({"val_check_interval": 0}, r"`val_check_interval` should be a positive int. Found 0"),
        ({"limit_test_batches": "x"}, r"`limit_test_batches='x'` must be an int \(a count of batches\) or a float"),
        ({"overfit_batches": "a"}, r"`overfit_batches='a'` must be an int"),
        # (empty text or an empty list, though false, are no count of batches either)
        ({"overfit_batches": ""}, r"`overfit_batches=''` must be an int"),
        ({"overfit_batches": []}, r"`overfit_batches=\[\]` must be an int"),
        ({"profiler": 1}, r"`Trainer\(profiler=...\)` got 1 \(int\): pass one of"),
        ({"check_val_every_n_epoch": 0}, r"`check_val_every_n_epoch` should be an integer greater than 0 or None"),
        (
            {"val_check_interval": 1.5},
            r"invalid value 1.5 for val_check_interval, it has to be in \[0.0, 1.0\] or an int",
        ),
        ({"val_check_interval": -0.1}, r"invalid value -0.1 for val_check_interval, it has to be in \[0.0, 1.0\]"),
        (
            {"val_check_interval": -3},
            r"^You have passed invalid value -3 for val_check_interval, it has to be in \[0.0, 1.0\] or an int: a"
            r" positive int",
        ),
        (
            {"val_check_interval": 1.0, "check_val_every_n_epoch": None},
            r"should be an integer or a time-based duration .* when `check_val_every_n_epoch=None`",
        ),
        (
            {"limit_train_batches": 1.5},
            r"invalid value 1.5 for limit_train_batches, it has to be in \[0.0, 1.0\] or an int",
        ),
        ({"limit_val_batches": -1}, r"limit_val_batches"),
        ({"fast_dev_run": -1}, r"fast_dev_run=-1 is not a valid configuration"),
        ({"reload_dataloaders_every_n_epochs": -1}, r"`reload_dataloaders_every_n_epochs` should be an int >= 0"),
        ({"gradient_clip_algorithm": "x"}, r"`gradient_clip_algorithm` x is invalid. Allowed algorithms"),
        ({"devices": 0}, r"`Trainer\(devices=0\)` value is not a valid input using (cpu|cuda|mps) accelerator"),
        ({"devices": "0", "accelerator": "cuda"}, r"`Trainer\(devices='0'\)` value is not a valid input using cuda"),
        ({"devices": [], "accelerator": "cpu"}, r"`Trainer\(devices=\[\]\)` value is not a valid input using cpu"),
        ({"devices": False, "accelerator": "cpu"}, r"`Trainer\(devices=False\)` value is not a valid input using cpu"),
    ],
)
def test_invalid_trainer_arguments(kwargs, message):
    with pytest.raises(MisconfigurationException, match=message):
        ember.Trainer(**kwargs)


def test_unknown_accelerator_name_is_a_value_error():
    with pytest.raises(
        ValueError, match=r"invalid accelerator name: `accelerator='tpu2'`. Available names are: auto, cpu"
    ):
        ember.Trainer(accelerator="tpu2")


def test_an_accelerator_that_is_not_a_name_is_lightnings_value_error():
    with pytest.raises(
        ValueError,
        match=r"^You selected an invalid accelerator name: `accelerator=3`. Available names are: auto, cpu, cuda, mps,"
        r" tpu.$",
    ):
        ember.Trainer(accelerator=3)


@pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None, reason="needs torch_xla not installed")
def test_a_tpu_accelerator_without_torch_xla_is_lightnings_import_error_so_fallbacks_work():
    try:
        ember.Trainer(accelerator="tpu", logger=False)
    except ImportError as error:  # a program's fallback on Lightning
        assert type(error) is ModuleNotFoundError
        assert str(error).startswith("Requirement 'torch_xla>=1.13' not met. HINT: Try running `pip install")
        assert "XLA devices (TPUs) are not supported" in str(error)
        trainer = ember.Trainer(accelerator="cpu", logger=False)
    assert trainer.accelerator.name() == "cpu"


@pytest.mark.parametrize(("value", "error"), [("x", ValueError), ([1], TypeError)])
def test_a_fast_dev_run_that_is_not_a_number_is_lightnings_error_type(value, error):
    with pytest.raises(error, match=re.escape(f"fast_dev_run={value!r} is not a valid configuration")) as caught:
        ember.Trainer(fast_dev_run=value)
    if value == "x":  # Lightning's text (its `int()`) first
        assert str(caught.value).startswith("invalid literal for int() with base 10: 'x'. ")


def test_fast_dev_run_none_is_off_as_in_lightning():
    assert ember.Trainer(fast_dev_run=None, logger=False).fast_dev_run is None


@pytest.mark.parametrize("value", ["x", 1])
def test_a_benchmark_that_is_not_a_bool_is_lightnings_runtime_error(value):
    with pytest.raises(RuntimeError, match=rf"^set_benchmark_cudnn expects a bool, but got {type(value).__name__}$"):
        ember.Trainer(benchmark=value)


def test_benchmark_sets_cudnns_flag_as_lightning_does_even_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    ember.Trainer(benchmark=True, logger=False)
    assert torch.backends.cudnn.benchmark is True
    ember.Trainer(benchmark=None, logger=False)  # None leaves it as the program set it
    assert torch.backends.cudnn.benchmark is True
    ember.Trainer(benchmark=False, logger=False)
    assert torch.backends.cudnn.benchmark is False


def test_unknown_precision_is_a_value_error():
    with pytest.raises(ValueError, match="Precision 'fp4' is invalid"):
        ember.Trainer(precision="fp4")


def test_gradient_clip_val_must_be_a_number():
    with pytest.raises(TypeError, match="^`gradient_clip_val` should be an int or a float. Got 1.$"):
        ember.Trainer(gradient_clip_val="1")


def test_val_check_interval_longer_than_the_epoch():
    with pytest.raises(
        ValueError,
        match=r"`val_check_interval` \(20\) must be less than or equal to the number of the"
        r" training batches \(4\).*check_val_every_n_epoch=None",
    ):
        quiet_trainer(max_epochs=1, val_check_interval=20).fit(CoreModel(), loader(), loader(n=4))


def test_val_check_interval_longer_than_the_epoch_is_fine_across_epochs():
    trainer = quiet_trainer(max_steps=6, val_check_interval=5, check_val_every_n_epoch=None)
    trainer.fit(CoreModel(), loader(), loader(n=4))
    assert trainer.global_step == 6


# ---- the model and its data ---------------------------------------------------------------------
def test_no_training_step():
    class NoStep(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 1)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(MisconfigurationException, match=r"No `training_step\(\)` method defined"):
        quiet_trainer(max_epochs=1).fit(NoStep(), loader())


def test_fit_without_training_data():
    with pytest.raises(
        MisconfigurationException,
        match=r"`train_dataloader` must be implemented to be used with the Lightning Trainer. Define `train_dataloader\(\)`"
        r" in the module or a datamodule, or pass the data to `trainer.fit\(model, train_dataloaders=...\)`.",
    ):
        quiet_trainer(max_epochs=1).fit(CoreModel())


def test_a_validation_step_without_validation_data_warns():
    # a PossibleUserWarning, as in Lightning: a filter on that category silences it
    from ember.utilities.warnings import PossibleUserWarning

    with pytest.warns(PossibleUserWarning, match="You defined a `validation_step` but have no `val_dataloader`"):
        quiet_trainer(max_epochs=1).fit(CoreModel(), loader())


def test_predict_needs_a_predict_step_or_a_forward():
    model = CoreModel()
    model.predict_step = None
    with pytest.raises(MisconfigurationException, match="`predict_step` cannot be None to run `Trainer.predict`"):
        quiet_trainer().predict(model, loader())

    class NoForward(ember.LightningModule):
        pass

    with pytest.raises(MisconfigurationException, match="`Trainer.predict` requires `forward` method to run."):
        quiet_trainer().predict(NoForward(), loader())


def test_validate_without_validation_step():
    class NoValidation(CoreModel):
        validation_step = ember.LightningModule.validation_step

    with pytest.raises(
        MisconfigurationException, match=r"No `validation_step\(\)` method defined to run `Trainer.validate`"
    ):
        quiet_trainer().validate(NoValidation(), loader())


def test_fit_a_plain_module():
    with pytest.raises(TypeError, match=r"`model` must be a `LightningModule`.*got `Linear`.*Subclass"):
        quiet_trainer().fit(nn.Linear(1, 1), loader())


@pytest.mark.parametrize("imported", ["lightning.pytorch", "pytorch_lightning"])
def test_fit_a_plain_module_names_the_lightning_module_of_the_package_the_program_imported(monkeypatch, imported):
    import sys
    import types

    for package in ("pytorch_lightning", "lightning.pytorch"):
        monkeypatch.delitem(sys.modules, package, raising=False)
    monkeypatch.setitem(sys.modules, imported, types.ModuleType(imported))
    with pytest.raises(TypeError) as caught:
        quiet_trainer().fit(nn.Linear(1, 1), loader())
    assert str(caught.value) == (
        "`model` must be a `LightningModule` or `torch._dynamo.OptimizedModule`, got `Linear`."
        f" Subclass `{imported}.LightningModule`."
    )


def test_second_run_without_a_model():
    with pytest.raises(TypeError, match=r"`Trainer.validate\(\)` requires a `LightningModule` when it hasn't been"):
        quiet_trainer().validate()


class Returns(CoreModel):
    def __init__(self, value: Any):
        super().__init__()
        self.value = value

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return self.value(loss, self(batch[0]))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            lambda loss, out: "loss",
            r"`training_step` must return a Tensor, a dict, or None .* It returned str 'loss': return the loss",
        ),
        (lambda loss, out: 3, r"It returned int 3:"),
        # tensors in a sequence by shape: a tensor's repr cut short says nothing
        (lambda loss, out: [loss], r"It returned list \(tensor of shape \(\)\): return the loss"),
        (lambda loss, out: (loss, out), r"It returned tuple \(tensor of shape \(\), tensor of shape \(4, 1\)\):"),
        (lambda loss, out: out, r"returned a tensor of shape \(4, 1\): the loss must be a scalar"),
        (lambda loss, out: {"loss": out}, r"returned a 'loss' of shape \(4, 1\): the loss must be a scalar"),
        (lambda loss, out: {"other": loss}, r"the 'loss' key needs to be present"),
    ],
)
def test_wrong_training_step_returns(value, message):
    with pytest.raises(MisconfigurationException, match=message):
        quiet_trainer(max_steps=1).fit(Returns(value), loader())


def test_a_dict_whose_loss_is_none_is_refused_with_lightnings_message():
    message = "In automatic_optimization, when `training_step` returns a dict, the 'loss' key needs to be present"
    with pytest.raises(MisconfigurationException) as caught:
        quiet_trainer(max_steps=1).fit(Returns(lambda loss, out: {"loss": None}), loader())
    assert str(caught.value) == message


@pytest.mark.parametrize("value", [lambda loss, out: out, lambda loss, out: {"loss": out}])
def test_a_non_scalar_loss_is_also_a_runtime_error_as_torchs_is_in_lightning(value):
    with pytest.raises(RuntimeError, match="the loss must be a scalar") as caught:
        quiet_trainer(max_steps=1).fit(Returns(value), loader())
    assert isinstance(caught.value, MisconfigurationException)


def test_a_dict_with_loss_and_extras_is_fine():
    outputs = []

    class Extras(Returns):
        def on_train_batch_end(self, out, batch, batch_idx):
            outputs.append(sorted(out))

    quiet_trainer(max_steps=1).fit(Extras(lambda loss, out: {"loss": loss, "pred": out.detach()}), loader())
    assert outputs == [["loss", "pred"]]


def test_a_one_element_loss_is_accepted():
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(Returns(lambda loss, out: loss.reshape(1, 1)), loader())
    assert trainer.global_step == 1


class _Frozen(CoreModel):
    def on_train_start(self):
        self.requires_grad_(False)


class _LeavesGradOff(CoreModel):
    def training_step(self, batch, batch_idx):
        torch.set_grad_enabled(False)  # as a program that turns gradients off for its evaluation and forgets them
        return super().training_step(batch, batch_idx)


class _ManualDetached(CoreModel):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        self.manual_backward(super().training_step(batch, batch_idx).detach())


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            lambda: Returns(lambda loss, out: loss.detach()),
            r"The loss `training_step` returned does not require grad, so backward has nothing to go back through"
            r" \(torch: element 0 of tensors does not require grad.*\)\. It was computed outside the graph: from"
            r" `.detach\(\)`ed or `.item\(\)` values.* To skip a batch, return None from `training_step`\.",
        ),
        (_Frozen, r"None of the module's 2 parameters requires grad: unfreeze the ones to train"),
        (_LeavesGradOff, r"Gradients were off when the step ended: something in the program called"),
        (_ManualDetached, r"The loss given to `manual_backward` does not require grad.*module's output\.$"),
    ],
    ids=["detached", "every_parameter_frozen", "grad_left_off", "manual_backward"],
)
def test_a_loss_without_a_graph_says_why_there_is_nothing_to_go_back_through(model, message):
    try:
        with pytest.raises(RuntimeError, match=message) as caught:
            quiet_trainer(max_steps=1).fit(model(), loader())
    finally:
        torch.set_grad_enabled(True)
    assert "does not require grad and does not have a grad_fn" in str(caught.value.__cause__)


class _OwnLoopLeftAutomatic(CoreModel):
    """A loop written for manual optimization, without `self.automatic_optimization = False`."""

    def __init__(self, returns: bool = True, steps: bool = True):
        super().__init__()
        self.returns, self.steps = returns, steps

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = super().training_step(batch, batch_idx)
        loss.backward()
        if self.steps:
            optimizer.step()
        return loss if self.returns else None


class _CarriesState(CoreModel):
    """Keeps a running value from batch to batch without detaching it (a recurrent state done wrong)."""

    def __init__(self):
        super().__init__()
        self.state = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.state = out.mean() if self.state is None else self.state + out.mean()
        return nn.functional.mse_loss(out, y) + self.state


class _ManualTwice(CoreModel):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.manual_backward(loss)
        self.manual_backward(loss)


_FREED = (
    r"goes back through a graph that an earlier backward freed \(torch: Trying to backward through the graph a"
    r" second time.*\)\. Either "
)
_KEPT = r"; or the loss is computed from a tensor kept from an earlier batch .*`\.detach\(\)` it when you keep it\.$"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            _OwnLoopLeftAutomatic,
            r"The loss `training_step` returned " + _FREED + r"`training_step` ran backward itself \(it stepped the"
            r" optimizer too\): with automatic optimization the trainer runs backward and the optimizer step on"
            r" the loss `training_step` returns, so remove those calls, or write the loop yourself with"
            r" `self.automatic_optimization = False` in `__init__` and `self.manual_backward\(loss\)`" + _KEPT,
        ),
        (
            lambda: _OwnLoopLeftAutomatic(steps=False),
            r"Either `training_step` ran backward itself \(`loss.backward\(\)`\): with automatic optimization",
        ),
        (_CarriesState, r"The loss `training_step` returned " + _FREED + ".*" + _KEPT),
        (
            _ManualTwice,
            r"The loss given to `manual_backward` " + _FREED + r"this step already ran backward through part of"
            r" it: call `self.manual_backward` once on the sum of the losses, or pass `retain_graph=True` to every"
            r" backward but the last" + _KEPT,
        ),
    ],
    ids=["own_loop_left_automatic", "own_backward", "state_kept_across_batches", "manual_backward_twice"],
)
def test_a_loss_through_a_freed_graph_names_the_two_usual_causes(model, message):
    with pytest.raises(RuntimeError, match=message) as caught:
        quiet_trainer(max_steps=2).fit(model(), loader())
    assert "Trying to backward through the graph a second time" in str(caught.value.__cause__)


def test_a_loop_of_its_own_that_returns_none_under_automatic_optimization_is_told_how_to_fix_it():
    trainer = quiet_trainer(max_steps=2)
    with pytest.warns(UserWarning) as record:
        trainer.fit(_OwnLoopLeftAutomatic(returns=False), loader())
    messages = [str(w.message) for w in record]
    assert any(
        m.startswith("`training_step` returned `None` after stepping the optimizer itself, while automatic")
        and "set `self.automatic_optimization = False` in `__init__`" in m
        for m in messages
    ), messages
    assert trainer.global_step == 2  # the program's own steps, counted as Lightning counts them


def test_an_error_calls_on_exception_not_the_teardown_hooks_and_reraises():
    events = []

    class Watch(ember.Callback):
        def on_exception(self, trainer, pl_module, exception):
            events.append(("on_exception", type(exception).__name__))

        def teardown(self, trainer, pl_module, stage):
            events.append(("teardown", stage))

    with pytest.raises(MisconfigurationException):
        quiet_trainer(max_steps=1, callbacks=[Watch()]).fit(Returns(lambda loss, out: "x"), loader())
    assert events == [("on_exception", "MisconfigurationException")]


def test_several_optimizers_in_automatic_mode():
    with pytest.raises(
        RuntimeError,
        match=r"multiple optimizers is only supported with manual optimization.*"
        r"self.automatic_optimization = False",
    ):
        quiet_trainer(max_steps=1).fit(
            CoreModel(optimizers=lambda m: [torch.optim.SGD(m.parameters(), 0.1), torch.optim.Adam(m.parameters())]),
            loader(),
        )


def test_datamodule_twice():
    dm = ember.LightningDataModule.from_datasets(loader().dataset)
    with pytest.raises(MisconfigurationException, match="datamodule"):
        quiet_trainer(max_steps=1).fit(CoreModel(), dm, datamodule=dm)
    with pytest.raises(MisconfigurationException, match="datamodule"):
        quiet_trainer(max_steps=1).fit(CoreModel(), loader(), datamodule=dm)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("limit_train_batches", 1, "1 batch per epoch will be used."),
        ("limit_val_batches", 1.0, "100% of the batches will be used."),
        ("overfit_batches", 1, "1 batch will be used."),
        ("val_check_interval", 1, "validation will run after every batch."),
        ("val_check_interval", 1.0, "validation will run at the end of the training epoch."),
    ],
)
def test_a_limit_of_exactly_one_is_spelled_out(caplog, name, value, says):
    import logging

    with caplog.at_level(logging.INFO, logger="ember"):
        ember.Trainer(**{name: value})
    assert f"`Trainer({name}={value})` was configured so {says}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ember"):
        ember.Trainer()
    assert "was configured so" not in caplog.text


def test_no_note_on_limits_that_fast_dev_run_or_overfit_batches_replace(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="ember"):
        ember.Trainer(fast_dev_run=True, limit_val_batches=1, limit_test_batches=1.0, val_check_interval=1)
    assert "was configured so" not in caplog.text  # Lightning reads none of them under fast_dev_run
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ember"):
        ember.Trainer(overfit_batches=2, limit_train_batches=1, limit_val_batches=1.0, limit_test_batches=1)
    assert "limit_train_batches" not in caplog.text and "limit_val_batches" not in caplog.text
    assert "`Trainer(limit_test_batches=1)` was configured so 1 batch will be used." in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enable_checkpointing": True},
        {"logger": True},
        {"log_every_n_steps": 1},
        {"num_sanity_val_steps": 2},
        {"detect_anomaly": True},
        {"profiler": "simple"},
        {"enable_progress_bar": True},
        {"enable_model_summary": True},
        {"fast_dev_run": 1},
        {"fast_dev_run": True},
    ],
)
def test_barebones_refuses_what_it_turns_off_naming_it(kwargs):
    (name, value) = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=rf"`Trainer\(barebones=True, {name}={value!r}\)` was passed"):
        ember.Trainer(barebones=True, **kwargs)


def test_barebones_takes_a_fast_dev_run_that_is_off():
    assert ember.Trainer(barebones=True, fast_dev_run=0).fast_dev_run == 0
    assert ember.Trainer(barebones=True, fast_dev_run=False).fast_dev_run is False


def test_barebones_says_what_it_turns_off_as_lightning(caplog):
    with caplog.at_level("INFO"):
        ember.Trainer(barebones=True)
        ember.Trainer(logger=False)
    said = [r.getMessage() for r in caplog.records if "barebones" in r.getMessage()]
    assert len(said) == 1
    lines = said[0].splitlines()
    assert lines[0].startswith("You are running in `Trainer(barebones=True)` mode.")
    assert lines[1:] == [
        " - Checkpointing: `Trainer(enable_checkpointing=True)`",
        " - Progress bar: `Trainer(enable_progress_bar=True)`",
        " - Model summary: `Trainer(enable_model_summary=True)`",
        " - Logging: `Trainer(logger=True)`, `Trainer(log_every_n_steps>0)`, `LightningModule.log(...)`,"
        " `LightningModule.log_dict(...)`",
        " - Sanity checking: `Trainer(num_sanity_val_steps>0)`",
        " - Development run: `Trainer(fast_dev_run=True)`",
        " - Anomaly detection: `Trainer(detect_anomaly=True)`",
        " - Profiling: `Trainer(profiler=...)`",
    ]


@pytest.mark.parametrize(
    ("hook", "call", "instead"),
    [
        ("training_epoch_end", "fit", "on_train_epoch_end"),
        ("validation_epoch_end", "fit", "on_validation_epoch_end"),
        ("validation_epoch_end", "validate", "on_validation_epoch_end"),
        ("test_epoch_end", "test", "on_test_epoch_end"),
    ],
)
def test_an_epoch_end_hook_removed_in_lightning_2_is_refused_not_skipped(hook, call, instead):
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    model = CoreModel()
    setattr(model, hook, lambda outputs: None)
    data = {"fit": (loader(), loader()), "validate": (loader(),), "test": (loader(),)}[call]
    with pytest.raises(NotImplementedError, match=rf"Support for `{hook}` has been removed in v2.0.0.*`{instead}`"):
        getattr(quiet_trainer(max_epochs=1), call)(model, *data)


def test_a_validation_interval_longer_than_the_epoch_is_accepted_when_validation_is_off():
    trainer = quiet_trainer(max_epochs=1, val_check_interval=10, limit_val_batches=0)
    trainer.fit(CoreModel(), loader(n=8), loader(n=8))  # 2 batches: the interval never comes, and need not
    assert trainer.global_step == 2
    with pytest.raises(ValueError, match=r"`val_check_interval` \(10\) must be less than or equal to the number"):
        quiet_trainer(max_epochs=1, val_check_interval=10).fit(CoreModel(), loader(n=8), loader(n=8))


def test_fit_needs_the_model_passed_even_after_an_earlier_fit():
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(CoreModel(), loader(n=4))
    with pytest.raises(TypeError, match="^`model` must be a `LightningModule` or `torch._dynamo.OptimizedModule`, got"):
        trainer.fit(None, loader(n=4))  # as in Lightning (validate, test and predict take the last one)


@pytest.mark.parametrize("value", [lambda loss, out: {"loss": "x"}, lambda loss, out: {"loss": 1.0}])
def test_a_dict_whose_loss_is_not_a_tensor_is_a_type_error_naming_it(value):
    # Lightning fails with a TypeError dividing the str (an AttributeError on a float's `.detach`)
    with pytest.raises(TypeError, match=r"the 'loss' in the dict `training_step` returns must be a Tensor. It is"):
        quiet_trainer(max_steps=1).fit(Returns(value), loader())


class BadOptimizerDict(CoreModel):
    def __init__(self, optimizer: Any) -> None:
        super().__init__()
        self.bad = optimizer

    def configure_optimizers(self):
        return {"optimizer": self.bad}


class CountBatches(ember.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args: Any) -> None:
        self.batches += 1


@pytest.mark.parametrize("optimizer", [None, "adam", [torch.zeros(1)]])
def test_a_dict_whose_optimizer_is_not_an_optimizer_is_named_before_training(optimizer):
    counter = CountBatches()
    with pytest.raises(
        MisconfigurationException,
        match=r"The 'optimizer' of the dict returned by `configure_optimizers` is \w+ .*, not an optimizer: put",
    ):
        quiet_trainer(max_steps=1, callbacks=[counter]).fit(BadOptimizerDict(optimizer), loader())
    assert counter.batches == 0


@pytest.mark.parametrize("interval", ["epoch", "step"])
@pytest.mark.parametrize("frequency", [0, -1, 1.5, "2", False, None])
def test_a_scheduler_frequency_that_cannot_step_is_refused_before_the_first_batch(frequency, interval):
    # Lightning fails when it first steps the scheduler (after batches were trained) or steps at every interval
    def optimizers(module: nn.Module) -> dict:
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "frequency": frequency},
        }

    counter = CountBatches()
    with pytest.raises(
        MisconfigurationException,
        match=rf'The "frequency" key in lr scheduler dict must be an int of 1 or more but is \w+ {frequency!r}',
    ):
        quiet_trainer(max_epochs=2, callbacks=[counter]).fit(CoreModel(optimizers=optimizers), loader())
    assert counter.batches == 0


def test_a_plateau_monitor_that_is_not_a_name_is_refused_before_the_first_batch():
    def optimizers(module: nn.Module) -> dict:
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": 3}}

    with pytest.raises(MisconfigurationException, match=r'The "monitor" key in lr scheduler dict must be the name'):
        quiet_trainer(max_epochs=2).fit(CoreModel(optimizers=optimizers), loader())


def test_load_from_checkpoint_of_a_file_that_holds_no_dict_is_lightnings_type_error(tmp_path):
    path = tmp_path / "list.ckpt"
    torch.save([1, 2], path)
    with pytest.raises(TypeError, match=r"holds a list, not a checkpoint dict: it is not a file saved by"):
        CoreModel.load_from_checkpoint(path)


def test_a_checkpoint_without_lightnings_version_key_loads(tmp_path):
    # Lightning raises a bare KeyError('pytorch-lightning_version'); a hand-made {"state_dict": ...} loads on Ember
    source = CoreModel()
    path = tmp_path / "weights_only.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = CoreModel.load_from_checkpoint(path)
    assert torch.equal(loaded.layer.weight, source.layer.weight)
    trainer = quiet_trainer()
    trainer.test(CoreModel(), loader(), ckpt_path=str(path), verbose=False)
    assert torch.equal(trainer.lightning_module.layer.weight, source.layer.weight)
