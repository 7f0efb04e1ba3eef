"""Which arguments the loops pass to the steps and batch hooks: read from their signatures, as Lightning does."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from tests.helpers.core_models import CoreModel, loader, quiet_trainer

from ember.utilities.signature_utils import is_param_in_hook_signature


class NoBatchIdx(CoreModel):
    """Steps written without ``batch_idx``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def training_step(self, batch: Any) -> Any:
        self.calls.append("train")
        return super().training_step(batch, 0)

    def validation_step(self, batch: Any) -> None:
        self.calls.append("val")

    def test_step(self, batch: Any) -> None:
        self.calls.append("test")

    def predict_step(self, batch: Any) -> Any:
        self.calls.append("predict")
        return self(batch[0])


def test_steps_without_batch_idx_are_called_with_the_batch_alone():
    model = NoBatchIdx()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, loader(), loader())
    trainer.test(model, loader(n=4))
    predictions = trainer.predict(model, loader(n=8))
    assert model.calls == ["train", "train", "val", "test", "predict", "predict"]
    assert len(predictions) == 2
    assert trainer.predict_loop.predictions == predictions  # one dataloader: a flat list, as in Lightning


def test_dataloader_idx_must_match_the_number_of_loaders():
    class Required(CoreModel):
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
            pass

    with pytest.raises(
        RuntimeError, match=r"You provided only a single `val_dataloader`, but have included `dataloader_idx`"
    ):
        quiet_trainer().validate(Required(), loader())

    class Missing(CoreModel):
        def predict_step(self, batch: Any, batch_idx: int) -> Any:
            return None

    with pytest.raises(
        RuntimeError, match=r"You provided multiple `predict_dataloader`, but no `dataloader_idx` argument"
    ):
        quiet_trainer().predict(Missing(), [loader(), loader()])


def test_an_evaluation_reads_the_hooks_signatures_once_not_at_every_pass(monkeypatch):
    # the dataloader_idx check runs at every validation; `inspect.signature` costs tens of microseconds a hook
    # (and the module's own batch hooks take `dataloader_idx=0`), so it reads the signatures kept from the first
    class Defaulted(CoreModel):
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("val", 1.0)

    trainer = quiet_trainer()
    plain, defaulted = CoreModel(), Defaulted()
    trainer.validate(plain, loader())
    trainer.validate(defaulted, loader())
    read: list[Any] = []
    signature = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda fn, *a, **k: read.append(fn) or signature(fn, *a, **k))
    trainer.validate(plain, loader())
    assert trainer.validate(defaulted, loader()) == [{"val": 1.0}]  # one dataloader, `dataloader_idx=0`: accepted
    assert read == []


def test_is_param_in_hook_signature():
    def f(self, batch, batch_idx): ...
    def g(self, batch, *args): ...
    def h(self, batch): ...

    assert is_param_in_hook_signature(f, "batch_idx") and is_param_in_hook_signature(g, "batch_idx")
    assert not is_param_in_hook_signature(g, "batch_idx", explicit=True)
    assert not is_param_in_hook_signature(h, "batch_idx") and is_param_in_hook_signature(h, "x", min_args=1)


def test_each_hook_is_read_by_its_own_signature_when_asked_again():
    # the answer is kept per function: a subclass's override, a method set on one instance, a patched
    # class each answer by their own parameters, however often the same name was asked before
    class Base:
        def validation_step(self, batch, batch_idx): ...

    class Override(Base):
        def validation_step(self, batch): ...

    base, override = Base(), Override()
    for _ in range(2):
        assert is_param_in_hook_signature(base.validation_step, "batch_idx")
        assert not is_param_in_hook_signature(override.validation_step, "batch_idx")
    Base.validation_step = lambda self, batch, *args: None  # type: ignore[method-assign]
    assert is_param_in_hook_signature(base.validation_step, "batch_idx")
    assert not is_param_in_hook_signature(base.validation_step, "batch_idx", explicit=True)
    assert not is_param_in_hook_signature(len, "batch_idx", min_args=1)  # a builtin: read without the cache


def test_a_step_that_draws_its_own_batches_gets_lightnings_experimental_warning():
    class Draws(CoreModel):
        def training_step(self, dataloader_iter):
            batch, batch_idx, _ = next(dataloader_iter)
            return CoreModel.training_step(self, batch, batch_idx)

        def validation_step(self, dataloader_iter):
            next(dataloader_iter)

    with pytest.warns(UserWarning) as record:
        quiet_trainer(max_epochs=1).fit(Draws(), loader(n=8), loader(n=4))
    messages = [str(w.message) for w in record if "dataloader_iter" in str(w.message)]
    for step in ("training_step", "validation_step"):
        assert (
            f"Found `dataloader_iter` argument in the `{step}`. Note that the support for this signature is"
            " experimental and the behavior is subject to change."
        ) in messages
