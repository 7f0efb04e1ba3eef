"""``self.log`` / ``self.log_dict``: keys, per-hook defaults, epoch reductions and the errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from tests.helpers.callback_models import make_recording_logger
from tests.helpers.core_models import CoreModel, loader, quiet_trainer
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.utilities import MisconfigurationException


def _fit_logging(
    log: Callable[[ember.LightningModule, str, Any, int], None],
    hook: str = "training_step",
    trainer_kwargs: dict | None = None,
    train: DataLoader | None = None,
    val: DataLoader | None = None,
) -> ember.Trainer:
    """Fit a CoreModel whose ``hook`` calls ``log(module, hook, batch, batch_idx)``."""

    class Logging(CoreModel):
        pass

    base = getattr(CoreModel, hook)
    per_batch = hook.endswith("_step") or hook.endswith("batch_start")

    def hook_fn(self, *args, **kwargs):
        # batch hooks pass (batch, batch_idx, ...); the others get (None, -1)
        log(self, hook, *(args[:2] if per_batch else (None, -1)))
        return base(self, *args, **kwargs)

    setattr(Logging, hook, hook_fn)
    trainer = quiet_trainer(**{"max_epochs": 1, **(trainer_kwargs or {})})
    trainer.fit(Logging(), train or loader(n=10), val)
    return trainer


class _Batches:
    """An iterable of ready-made batches (a plain list would mean several dataloaders)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


# ---- keys and where values go ------------------------------------------------------------------
def test_training_step_default_is_step_only():
    trainer = _fit_logging(lambda m, fx, b, i: m.log("a", torch.tensor(float(i))))
    assert set(trainer.callback_metrics) == {"a"}
    assert trainer.callback_metrics["a"].item() == 2.0  # the last batch's value


def test_forked_keys_on_step_and_on_epoch():
    values = {}

    def log(m, fx, b, i):
        m.log("loss", torch.tensor(float(i + 1)), on_step=True, on_epoch=True, prog_bar=True)
        if i == 1:  # during the epoch, the plain name holds the step value
            values["during"] = {k: v.item() for k, v in m.trainer.callback_metrics.items()}

    trainer = _fit_logging(log)
    assert values["during"]["loss"] == 2.0 and values["during"]["loss_step"] == 2.0
    cm = trainer.callback_metrics
    assert set(cm) == {"loss", "loss_step", "loss_epoch"}
    # batches 4, 4, 2 -> weighted mean of 1, 2, 3
    expected = (1 * 4 + 2 * 4 + 3 * 2) / 10
    assert cm["loss"].item() == pytest.approx(expected)
    assert cm["loss_epoch"].item() == pytest.approx(expected)
    assert cm["loss_step"].item() == 3.0
    assert set(trainer.progress_bar_metrics) == {"loss_step", "loss_epoch"}
    assert isinstance(trainer.progress_bar_metrics["loss_epoch"], float)


def test_logged_metrics_and_logger_false(tmp_path):
    def log(m, fx, b, i):
        m.log("sent", 1.0, on_epoch=True)
        m.log("hidden", 2.0, logger=False)

    trainer = _fit_logging(log, trainer_kwargs={"logger": ember.loggers.CSVLogger(tmp_path), "log_every_n_steps": 1})
    assert set(trainer.logged_metrics) >= {"sent_step", "sent_epoch"}
    assert "hidden" not in trainer.logged_metrics
    assert trainer.callback_metrics["hidden"].item() == 2.0


def test_prog_bar_values_are_python_numbers():
    trainer = _fit_logging(lambda m, fx, b, i: m.log("p", torch.tensor(3.0), prog_bar=True))
    assert trainer.progress_bar_metrics == {"p": 3.0}
    assert "p" not in _fit_logging(lambda m, fx, b, i: m.log("p", 3.0)).progress_bar_metrics


def test_validation_defaults_to_epoch_and_eval_step_values_stay_out_of_callback_metrics():
    class Val(CoreModel):
        def validation_step(self, batch, batch_idx):
            self.log("a", float(batch_idx))
            self.log("b", 1.0, logger=False)
            self.log("c", float(batch_idx), on_step=True, on_epoch=True)

    trainer = quiet_trainer()
    out = trainer.validate(Val(), loader(n=8), verbose=False)
    assert set(out[0]) == {"a", "c_epoch"}
    assert out[0]["a"] == pytest.approx(0.5)
    assert set(trainer.callback_metrics) == {"a", "b", "c", "c_epoch"}


def test_log_dict_passes_every_argument():
    def log(m, fx, b, i):
        m.log_dict(
            {"x": float(i), "y": torch.tensor(2.0)},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            reduce_fx="max",
            logger=False,
            sync_dist=True,
            batch_size=1,
            add_dataloader_idx=True,
            enable_graph=False,
            rank_zero_only=False,
        )

    trainer = _fit_logging(log)
    assert trainer.callback_metrics["x"].item() == 2.0
    assert trainer.progress_bar_metrics == {"x": 2.0, "y": 2.0}


def test_sync_dist_is_a_no_op_on_one_process():
    trainer = _fit_logging(lambda m, fx, b, i: m.log("s", float(i), sync_dist=True, on_epoch=True))
    assert trainer.callback_metrics["s_epoch"].item() == pytest.approx((0 * 4 + 1 * 4 + 2 * 2) / 10)


def test_logged_values_are_detached_copies():
    seen = {}

    class Grad(CoreModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            self.log("graph", loss, enable_graph=True)  # accepted; Lightning detaches it all the same
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            metrics = self.trainer.callback_metrics
            seen["requires_grad"] = (metrics["loss"].requires_grad, metrics["graph"].requires_grad)

    quiet_trainer(max_steps=1).fit(Grad(), loader())
    assert seen["requires_grad"] == (False, False)


class _Ops(TorchDispatchMode):
    """The aten operations run inside it, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _validate_logging(
    log: Callable[[ember.LightningModule, torch.Tensor], None], **trainer_kwargs: Any
) -> ember.Trainer:
    """``trainer.validate`` of a CoreModel whose ``validation_step`` calls ``log(module, value)`` with its batch's
    first target (``loader(n=10)``: batches of 4, 4 and 2 samples)."""

    class Validating(CoreModel):
        def validation_step(self, batch, batch_idx):
            log(self, batch[1][0, 0].clone())

    trainer = quiet_trainer(**trainer_kwargs)
    trainer.validate(Validating(), loader(n=10), verbose=False)
    return trainer


def test_a_value_changed_in_place_after_it_was_logged_keeps_its_logged_value():
    batches = [y[:, 0] for _, y in loader(n=10)]
    firsts = [float(y[0]) for y in batches]
    epoch_mean = sum(first * len(y) for first, y in zip(firsts, batches)) / 10

    def log_then_change(module, value):
        module.log("both", value, on_step=True, on_epoch=True)
        module.log("epoch", value)  # validation's default: for the epoch alone
        value.add_(100.0)  # the program reuses its tensor

    logger = make_recording_logger(ember)()
    trainer = _validate_logging(log_then_change, logger=logger)
    steps = [metrics["both_step"] for metrics, _ in logger.calls if "both_step" in metrics]
    assert steps == pytest.approx(firsts)
    assert trainer.callback_metrics["both_epoch"].item() == pytest.approx(epoch_mean)
    assert trainer.callback_metrics["epoch"].item() == pytest.approx(epoch_mean)


def test_a_value_logged_for_the_epoch_alone_is_not_copied():
    # added to the epoch's total at once, it needs no copy: each copy would be an allocation (and on a GPU a
    # kernel launch) for every value every validation step logs. A value kept for its step is copied.
    ops: dict[str, list[list[str]]] = {"epoch": [], "step": []}

    def log(module, value):
        for name, on_step in (("epoch", False), ("step", True)):
            with _Ops() as mode:
                module.log(name, value, on_step=on_step, on_epoch=not on_step)
            ops[name].append(mode.names)

    _validate_logging(log)
    assert len(ops["epoch"]) == 3
    assert all("clone" not in names for names in ops["epoch"]), ops["epoch"]
    assert all(names.count("clone") == 1 for names in ops["step"]), ops["step"]


def test_python_numbers_and_one_element_tensors_are_accepted():
    trainer = _fit_logging(lambda m, fx, b, i: (m.log("int", 3), m.log("t", torch.tensor([[5.0]]))))
    assert trainer.callback_metrics["int"].item() == 3.0
    assert trainer.callback_metrics["t"].shape == ()


# ---- batch-size weighted means -----------------------------------------------------------------
def test_epoch_mean_weights_by_inferred_batch_size():
    trainer = _fit_logging(lambda m, fx, b, i: m.log("v", float(i), on_step=False, on_epoch=True))
    assert trainer.callback_metrics["v"].item() == pytest.approx((0 * 4 + 1 * 4 + 2 * 2) / 10)


@pytest.mark.parametrize("hook", ["on_validation_epoch_end", "on_train_epoch_end"])
def test_a_value_logged_at_epoch_end_weighs_one_not_the_last_batch_size(hook):
    # float32(16/19) * 3 / 3 rounds to a neighbour: weighted by the last batch's size (3), it would
    # come back one ulp off; Lightning weighs a value logged between batches by 1
    value = torch.tensor(16 / 19)

    class EpochEnd(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("per_batch", float(batch_idx), on_epoch=True)  # caches each batch's size
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            self.log("val_per_batch", float(batch_idx))

    setattr(EpochEnd, hook, lambda self: self.log("end", value))
    trainer = quiet_trainer(max_epochs=1)
    data = DataLoader(TensorDataset(torch.randn(7, 4), torch.randn(7, 1)), batch_size=4)  # batches of 4 and 3
    trainer.fit(EpochEnd(), data, data)
    assert trainer.callback_metrics["end"].item() == value.item()


def test_explicit_batch_size_overrides_inference():
    sizes = [1, 3, 6]
    trainer = _fit_logging(lambda m, fx, b, i: m.log("v", float(i), on_step=False, on_epoch=True, batch_size=sizes[i]))
    assert trainer.callback_metrics["v"].item() == pytest.approx((0 * 1 + 1 * 3 + 2 * 6) / 10)


def test_batch_size_is_inferred_from_a_nested_batch():
    class DictBatch(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("v", float(batch_idx), on_step=False, on_epoch=True)
            return super().training_step((batch["data"]["x"], batch["y"]), batch_idx)

    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(DictBatch(), _Batches([{"data": {"x": torch.randn(n, 4)}, "y": torch.randn(n, 1)} for n in (5, 1)]))
    assert trainer.callback_metrics["v"].item() == pytest.approx(1 / 6)


def test_batch_size_that_cannot_be_inferred_raises():
    class NoTensor(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("v", 1.0, on_epoch=True)
            return self.layer(torch.ones(1, 4)).sum()

    with pytest.raises(MisconfigurationException, match=r"We could not infer the batch_size from the batch"):
        quiet_trainer(max_epochs=1).fit(NoTensor(), _Batches([[1, 2]]))


def test_an_ambiguous_batch_warns_and_its_first_tensor_sets_the_batch_size():
    # Lightning's inference: stable-pretraining's batches carry a plain `batch_idx` beside the tensors
    class DictBatch(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("v", float(batch_idx), on_step=False, on_epoch=True)
            return super().training_step((batch["x"], batch["y"]), batch_idx)

    from ember.utilities.data import warning_cache

    warning_cache.clear()  # it warns once per process, as Lightning's
    trainer = quiet_trainer(max_epochs=1)
    batches = [{"x": torch.randn(n, 4), "y": torch.randn(n, 1), "batch_idx": i} for i, n in enumerate((5, 1))]
    with pytest.warns(UserWarning, match="Trying to infer the `batch_size` from an ambiguous collection. The batch"):
        trainer.fit(DictBatch(), _Batches(batches))
    assert trainer.callback_metrics["v"].item() == pytest.approx(1 / 6)


def test_sum_max_min_are_not_weighted():
    def log(m, fx, b, i):
        v = torch.tensor([3.0, 7.0, 5.0][i])
        m.log("sum", v, reduce_fx="sum", on_epoch=True, on_step=False)
        m.log("max", v, reduce_fx=torch.max, on_epoch=True, on_step=False)
        m.log("min", v, reduce_fx=min, on_epoch=True, on_step=False)
        m.log("mean", v, reduce_fx=torch.mean, on_epoch=True, on_step=False)

    cm = _fit_logging(log).callback_metrics
    assert (cm["sum"].item(), cm["max"].item(), cm["min"].item()) == (15.0, 7.0, 3.0)
    assert cm["mean"].item() == pytest.approx((3 * 4 + 7 * 4 + 5 * 2) / 10)


def test_float32_values_logged_in_a_step_under_64_true_add_up_in_float64_as_in_lightning():
    # Lightning keeps a name's epoch total in the default dtype of the moment the name is first logged: inside a
    # step under "64-true" that is float64, float32 values included; a name first logged at an epoch end (outside
    # the step) adds up in float32. Numbers recorded with Lightning 2.6.6 on this program.
    values = [0.1, 0.7, 0.3, 0.9, 0.45, 0.123]

    class Logs(CoreModel):
        def training_step(self, batch, batch_idx):
            value = torch.tensor(values[batch_idx], dtype=torch.float32)
            self.log("mean", value, on_step=False, on_epoch=True)
            self.log("sum", value, on_step=False, on_epoch=True, reduce_fx="sum")
            self.log("max", value, on_step=False, on_epoch=True, reduce_fx="max")
            self.log("both", value, on_step=True, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def on_train_epoch_end(self):
            self.log("end", torch.tensor(0.1, dtype=torch.float32))

    trainer = quiet_trainer(max_epochs=2, precision="64-true")
    trainer.fit(Logs(), loader(n=18, batch_size=3))
    metrics = trainer.callback_metrics
    single = [torch.tensor(v, dtype=torch.float32) for v in values]
    assert metrics["mean"].dtype == metrics["sum"].dtype == metrics["max"].dtype == torch.float64
    assert float(metrics["mean"]) == 0.42883331576983136 == float(sum((s * 3).double() for s in single) / 18)
    assert float(metrics["sum"]) == 2.572999969124794 == float(sum(s.double() for s in single))
    assert float(metrics["max"]) == float(single[3])
    assert float(metrics["both_epoch"]) == float(metrics["mean"])
    assert metrics["both_step"].dtype == metrics["end"].dtype == torch.float32
    # added up in float32, the mean would be another number
    assert float(sum(s * 3 for s in single) / 18) == 0.42883333563804626

    trainer = quiet_trainer(max_epochs=1, precision="32-true")
    trainer.fit(Logs(), loader(n=18, batch_size=3))
    assert trainer.callback_metrics["mean"].dtype == torch.float32
    assert float(trainer.callback_metrics["mean"]) == 0.42883333563804626


def test_epoch_values_reset_each_epoch():
    def log(m, fx, b, i):
        m.log("e", float(m.current_epoch), on_step=False, on_epoch=True, reduce_fx="sum")

    trainer = _fit_logging(log, trainer_kwargs={"max_epochs": 2})
    assert trainer.callback_metrics["e"].item() == 3.0  # three batches of epoch 1


def test_a_calls_values_stay_readable_until_the_next_calls_set_up_is_done():
    seen: dict[str, list[str]] = {}

    class Reader(ember.Callback):
        def setup(self, trainer, pl_module, stage):
            seen[f"setup {stage.value}"] = sorted(trainer.callback_metrics)

        def on_test_start(self, trainer, pl_module):
            seen["on_test_start"] = sorted(trainer.callback_metrics)

    def log(m, fx, b, i):
        m.log("loss", 1.0, prog_bar=True)

    trainer = _fit_logging(log, trainer_kwargs={"callbacks": [Reader()]})
    assert seen["setup fit"] == []
    # as in Lightning: a call that fails before its set-up is done (here, choosing its checkpoint) leaves the
    # last call's values in place, and the `setup` hooks of the next call still read them
    with pytest.raises(ValueError, match='ckpt_path="best"'):
        trainer.test(ckpt_path="best")
    assert list(trainer.callback_metrics) == list(trainer.logged_metrics) == ["loss"]
    assert trainer.progress_bar_metrics == {"loss": 1.0}
    trainer.test(trainer.lightning_module, dataloaders=loader(n=4))
    assert seen["setup test"] == ["loss"]
    assert seen["on_test_start"] == []  # cleared once the set-up is done
    assert "loss" not in trainer.callback_metrics


def test_reading_callback_metrics_at_epoch_end_leaves_logged_metrics_until_the_loggers_get_the_values(tmp_path):
    class FailsAtEpochEnd(ember.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            assert trainer.callback_metrics["e"].item() == 2.0  # the epoch's value, at once
            raise RuntimeError("stop at epoch end")

    class Logging(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("e", 2.0, on_step=False, on_epoch=True, prog_bar=True)
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(max_epochs=1, callbacks=[FailsAtEpochEnd()], logger=ember.loggers.CSVLogger(tmp_path))
    with pytest.raises(RuntimeError, match="stop at epoch end"):
        trainer.fit(Logging(), loader(n=10))
    # as in Lightning: each of the three dicts takes the loop's values only when it is read itself, and a
    # failed run's values are no longer merged in, so the loggers' dict never held a value they were not sent
    assert trainer.callback_metrics["e"].item() == 2.0
    assert "e" not in trainer.logged_metrics
    assert "e" not in trainer.progress_bar_metrics


# ---- logging from other hooks ------------------------------------------------------------------
def test_epoch_end_hook_defaults_to_epoch_and_forbids_on_step():
    trainer = _fit_logging(lambda m, fx, b, i: m.log("end", 4.0), hook="on_train_epoch_end")
    assert trainer.callback_metrics["end"].item() == 4.0
    with pytest.raises(MisconfigurationException, match="on_train_epoch_end"):
        _fit_logging(lambda m, fx, b, i: m.log("end", 4.0, on_step=True), hook="on_train_epoch_end")


def test_logging_from_a_callback_hook():
    class LogCallback(ember.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            pl_module.log("from_cb", float(batch_idx), on_epoch=True, on_step=False, reduce_fx="max")

        def on_validation_epoch_end(self, trainer, pl_module):
            pl_module.log("val_cb", 9.0)

    trainer = quiet_trainer(max_epochs=1, callbacks=[LogCallback()])
    trainer.fit(CoreModel(), loader(n=8), loader(n=4))
    assert trainer.callback_metrics["from_cb"].item() == 1.0
    assert trainer.callback_metrics["val_cb"].item() == 9.0


@pytest.mark.parametrize("hook", ["on_fit_start", "on_train_end", "on_train_batch_start", "configure_optimizers"])
def test_forbidden_and_allowed_hooks(hook):
    if hook == "on_train_batch_start":
        trainer = _fit_logging(lambda m, fx, b, i: m.log("ok", 1.0), hook=hook)
        assert trainer.callback_metrics["ok"].item() == 1.0
        return
    with pytest.raises(MisconfigurationException, match=rf"You can't `self.log\(\)` inside `{hook}`"):
        _fit_logging(lambda m, fx, b, i: m.log("bad", 1.0), hook=hook)


def test_logging_in_predict_is_refused():
    class Predict(CoreModel):
        def predict_step(self, batch, batch_idx):
            self.log("p", 1.0)
            return batch

    with pytest.raises(MisconfigurationException, match="predict"):
        quiet_trainer().predict(Predict(), loader(n=4))

    class OnPredictStart(CoreModel):
        def configure_callbacks(self):
            self.log("x", 1.0)  # any hook of a predict call: the predict message comes first, as in Lightning
            return []

    with pytest.raises(MisconfigurationException, match="result collection is not registered yet"):
        quiet_trainer().predict(OnPredictStart(), loader(n=4))


def test_log_without_a_trainer_only_warns():
    with pytest.warns(UserWarning, match="not registered on the model yet"):
        CoreModel().log("x", 1.0)


def test_log_with_barebones_only_warns():
    class Logs(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("x", 1.0)
            return super().training_step(batch, batch_idx)

    trainer = ember.Trainer(barebones=True, max_steps=1)
    with pytest.warns(UserWarning, match="barebones=True"):
        trainer.fit(Logs(), loader(n=4))
    assert "x" not in trainer.callback_metrics


# ---- torchmetrics --------------------------------------------------------------------------------
def test_torchmetrics_metric_is_computed_at_epoch_end_and_reset():
    torchmetrics = pytest.importorskip("torchmetrics")
    seen = []

    class WithMetric(CoreModel):
        def __init__(self):
            super().__init__()
            self.total = torchmetrics.SumMetric()

        def training_step(self, batch, batch_idx):
            self.total(torch.tensor(float(batch_idx + 1)))
            self.log("total", self.total, on_step=True, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            seen.append(self.trainer.callback_metrics["total_step"].item())

    model = WithMetric()
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(model, loader(n=10))
    assert seen == [1.0, 2.0, 3.0] * 2  # the step value is the batch's own value
    assert trainer.callback_metrics["total_epoch"].item() == 6.0  # reset between epochs


@pytest.mark.parametrize(
    "values",
    [
        ("first", "second"),  # two Metrics under one key, in different steps
        ("first", "tensor"),  # a Metric, then a tensor in a later step
        ("tensor", "first"),  # a tensor, then a Metric in a later step
        ("tensor+first", "tensor+first"),  # both in one step
        ("first+tensor", "first+tensor"),
    ],
)
def test_one_key_logged_with_a_metric_and_with_a_tensor_or_another_metric_is_refused(values):
    # the Metric's attribute (None for a tensor) is one of the options Lightning compares: the calls differ
    torchmetrics = pytest.importorskip("torchmetrics")

    class TwoMetrics(CoreModel):
        def __init__(self):
            super().__init__()
            self.first = torchmetrics.SumMetric()
            self.second = torchmetrics.SumMetric()

        def training_step(self, batch, batch_idx):
            self.first(torch.tensor(1.0))
            self.second(torch.tensor(2.0))
            for value in values[min(batch_idx, 1)].split("+"):
                self.log("v", torch.tensor(5.0) if value == "tensor" else getattr(self, value), on_epoch=True)
            return super().training_step(batch, batch_idx)

    with pytest.raises(
        MisconfigurationException, match=r"You called `self.log\(v, ...\)` twice in `training_step` with different"
    ):
        quiet_trainer(max_epochs=1).fit(TwoMetrics(), loader(n=10))


def test_a_metric_logged_in_an_evaluation_hook_trains_on_in_a_later_fit():
    # Lightning resets the logged metrics inside the evaluation's inference mode, so their states become
    # inference tensors and the next fit fails ("Inplace update to inference tensor outside InferenceMode");
    # Ember resets them after it (docs/compat.md)
    torchmetrics = pytest.importorskip("torchmetrics")

    class EvaluationMetric(CoreModel):
        def __init__(self):
            super().__init__()
            self.mean = torchmetrics.MeanMetric()

        def on_validation_epoch_start(self):
            self.mean.update(torch.tensor([1.0, 2.0]))
            self.log("mean", self.mean)

    model = EvaluationMetric()
    trainer = quiet_trainer(max_epochs=1)
    trainer.validate(model, loader(n=8), verbose=False)
    assert not model.mean.mean_value.is_inference()
    trainer.fit(model, loader(n=8), loader(n=8))
    assert float(trainer.callback_metrics["mean"]) == 1.5


def test_a_metric_that_computes_the_loss_logs_its_step_value_without_the_graph(tmp_path):
    # a loss kept by a torchmetrics metric (chemprop logs its criterion so): the batch value the metric's
    # forward returns carries the graph; a checkpoint callback copies the callback metrics, which a
    # tensor with a graph refuses ("Only Tensors created explicitly by the user ... support deepcopy")
    torchmetrics = pytest.importorskip("torchmetrics")

    class LossMetric(CoreModel):
        def __init__(self):
            super().__init__()
            self.loss_metric = torchmetrics.MeanMetric()

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.loss_metric(loss)
            self.log("train_loss", self.loss_metric, on_step=True, on_epoch=True)
            return loss

    checkpoint = ember.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="train_loss_epoch")
    trainer = quiet_trainer(max_epochs=2, enable_checkpointing=True, callbacks=[checkpoint])
    trainer.fit(LossMetric(), loader(n=10))
    step = trainer.callback_metrics["train_loss_step"]
    assert not step.requires_grad and step.grad_fn is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=1-step=6.ckpt"]  # the lower epoch loss


def test_metric_collection_with_log_dict():
    torchmetrics = pytest.importorskip("torchmetrics")

    class WithCollection(CoreModel):
        def __init__(self):
            super().__init__()
            self.metrics = torchmetrics.MetricCollection(
                {"mx": torchmetrics.MaxMetric(), "mn": torchmetrics.MinMetric()}, prefix="val_"
            )

        def validation_step(self, batch, batch_idx):
            self.metrics(torch.tensor(float(batch_idx)))
            self.log_dict(self.metrics)

    trainer = quiet_trainer()
    out = trainer.validate(WithCollection(), loader(n=12), verbose=False)
    assert out == [{"val_mx": 2.0, "val_mn": 0.0}]


def test_a_metric_collection_with_compute_groups_keeps_one_state_per_group_when_logged():
    # as Lightning asks it: `items(copy_state=False)`, so the metrics of a group go on sharing one state
    # (torchmetrics' default deep-copies the group's state into every member at each call)
    torchmetrics = pytest.importorskip("torchmetrics")
    from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

    asked: set[bool] = set()

    class Recording(torchmetrics.MetricCollection):
        def items(self, keep_base=False, copy_state=True):
            asked.add(copy_state)
            return super().items(keep_base=keep_base, copy_state=copy_state)

    class WithGroups(CoreModel):
        def __init__(self):
            super().__init__()
            self.metrics = Recording([BinaryAUROC(), BinaryAveragePrecision()], compute_groups=True)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.metrics.update(torch.sigmoid(self(x)).squeeze(1), (y.squeeze(1) > 0).long())
            asked.clear()
            self.log_dict(self.metrics)

    out = quiet_trainer().validate(WithGroups(), loader(n=12), verbose=False)
    assert asked == {False}
    assert set(out[0]) == {"BinaryAUROC", "BinaryAveragePrecision"}


def test_metric_that_is_not_an_attribute_is_refused():
    torchmetrics = pytest.importorskip("torchmetrics")

    def log(m, fx, b, i):
        metric = torchmetrics.SumMetric()
        metric(torch.tensor(1.0))
        m.log("orphan", metric)

    with pytest.raises(MisconfigurationException, match="fix this by setting an attribute for the metric in your"):
        _fit_logging(log)  # the module has no metric attribute at all

    def log_with_another_attribute(m, fx, b, i):
        m.kept = torchmetrics.SumMetric()
        log(m, fx, b, i)

    with pytest.raises(MisconfigurationException, match=r"metric_attribute=name\)` where `name` is one of \['kept'\]"):
        _fit_logging(log_with_another_attribute)


# ---- several dataloaders -------------------------------------------------------------------------
def test_add_dataloader_idx():
    class TwoLoaders(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("v", float(dataloader_idx))
            self.log(f"own_{dataloader_idx}", 1.0, add_dataloader_idx=False)

    trainer = quiet_trainer()
    out = trainer.validate(TwoLoaders(), [loader(n=4), loader(n=4)], verbose=False)
    assert out[0]["v/dataloader_idx_0"] == 0.0 and out[1]["v/dataloader_idx_1"] == 1.0
    assert "own_0" in out[0] and "own_1" in out[1]
    assert set(trainer.callback_metrics) == {"v/dataloader_idx_0", "v/dataloader_idx_1", "own_0", "own_1"}


def test_same_key_without_dataloader_idx_from_two_loaders_raises():
    class Shared(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("shared", 1.0, add_dataloader_idx=False)

    with pytest.raises(MisconfigurationException, match="twice in `validation_step` with different arguments"):
        quiet_trainer().validate(Shared(), [loader(n=4), loader(n=4)], verbose=False)


def test_dataloader_idx_in_the_name_is_refused():
    with pytest.raises(
        MisconfigurationException,
        match=r"should not contain information about `dataloader_idx` when `add_dataloader_idx=True`",
    ):
        _fit_logging(lambda m, fx, b, i: m.log("x/dataloader_idx_0", 1.0))


def test_a_name_with_the_dataloader_suffix_is_kept_as_given_without_add_dataloader_idx():
    class OwnSuffix(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log(f"v/dataloader_idx_{dataloader_idx}", float(dataloader_idx + 1), add_dataloader_idx=False)

    trainer = quiet_trainer()
    trainer.validate(OwnSuffix(), [loader(n=4), loader(n=4)], verbose=False)
    assert {k: v.item() for k, v in trainer.callback_metrics.items()} == {
        "v/dataloader_idx_0": 1.0,
        "v/dataloader_idx_1": 2.0,
    }


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("text", r"`self.log\(bad, text\)` was called, but `str` values cannot be logged"),
        ({"a": {"b": 1.0}}, "nested dictionaries cannot be logged"),
        ({"a": 1.0}, r"^`self.log\(bad, \{'a': 1.0\}\)` was called, but `dict` values cannot be logged"),
        (torch.tensor([1.0, 2.0]), r"the tensor must have a single element. You can try doing `self.log\(bad, "),
    ],
)
def test_bad_values(value, message):
    with pytest.raises(ValueError, match=message):
        _fit_logging(lambda m, fx, b, i: m.log("bad", value))


@pytest.mark.parametrize(
    ("log", "message"),
    [
        # each failed in Python's or torch's words: "argument of type 'int' is not iterable", "'list' object has
        # no attribute 'items'", "only integer tensors of a single element can be converted to an index"
        (lambda m: m.log(1, 1.0), r"^`self.log\(1, ...\)` was called, but the name must be a str, not int\.$"),
        (lambda m: m.log_dict({1: 1.0}), r"^`self.log\(1, ...\)` was called, but the name must be a str"),
        (lambda m: m.log_dict([1.0]), r"^`self.log_dict\(\[1.0\]\)` was called, but it takes a dict of names"),
        (lambda m: m.log_dict(None), r"torchmetrics `MetricCollection`\), not NoneType\.$"),
        (
            lambda m: m.log("v", 1.0, on_epoch=True, batch_size="4"),
            r"^`self.log\(v, ..., batch_size='4'\)` was called, but `batch_size` must be a number",
        ),
    ],
)
def test_a_name_a_dict_or_a_batch_size_of_the_wrong_type_is_named(log, message):
    with pytest.raises(TypeError, match=message):
        _fit_logging(lambda m, fx, b, i: log(m))


def test_a_batch_size_that_weighs_nothing_is_not_checked_as_in_lightning():
    # an epoch value reduced by max, and a step-only one, never read the batch size
    def log(m, fx, b, i):
        m.log("most", 1.0, on_epoch=True, reduce_fx="max", batch_size="4")
        m.log("step", 2.0, on_step=True, on_epoch=False, batch_size="4")

    metrics = _fit_logging(log).callback_metrics
    assert (metrics["most_epoch"].item(), metrics["step"].item()) == (1.0, 2.0)


def test_same_key_twice_with_different_arguments():
    def log(m, fx, b, i):
        m.log("twice", 1.0)
        m.log("twice", 1.0, prog_bar=True)

    with pytest.raises(
        MisconfigurationException, match=r"You called `self.log\(twice, ...\)` twice in `training_step`"
    ):
        _fit_logging(log)


def test_same_key_twice_with_the_same_arguments_keeps_the_last_step_value():
    def log(m, fx, b, i):
        m.log("again", 1.0)
        m.log("again", 2.0)

    assert _fit_logging(log).callback_metrics["again"].item() == 2.0


@pytest.mark.parametrize(
    "again",
    [
        {"on_step": True},  # training_step's default
        {"on_epoch": False},  # training_step's default
        {"logger": True},  # what `logger=None` means
        {"sync_dist": True},  # one process: nothing to synchronise
        {"reduce_fx": torch.mean},
        {"reduce_fx": "avg"},
    ],
)
def test_same_key_twice_with_arguments_that_mean_the_same_is_allowed_as_in_lightning(again):
    def log(m, fx, b, i):
        m.log("again", 1.0)
        m.log("again", 2.0, **again)

    assert _fit_logging(log).callback_metrics["again"].item() == 2.0


def test_logging_a_number_in_every_step_reads_no_signature(monkeypatch):
    # a Python number goes through `self.log`'s full checks at every call; none of them may read a
    # signature per call (the step's own is read once, when fit sets it up)
    import ember.utilities.signature_utils as signature_utils

    calls = []
    real = signature_utils.inspect.getfullargspec
    monkeypatch.setattr(signature_utils.inspect, "getfullargspec", lambda fn: calls.append(fn) or real(fn))

    def reads(batches):
        calls.clear()
        _fit_logging(lambda m, fx, b, i: m.log("lr", 0.1), train=loader(n=4 * batches))
        return len(calls)

    reads(2)  # the first fit reads what is then cached
    assert reads(2) == reads(6)


def test_on_step_false_and_on_epoch_false_is_refused():
    with pytest.raises(MisconfigurationException) as info:
        _fit_logging(lambda m, fx, b, i: m.log("x", 1.0, on_step=False, on_epoch=False))
    # Lightning's sentence first, then the key and what to do
    assert str(info.value).startswith("`self.log(on_step=False, on_epoch=False)` is not useful. The value of 'x'")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"on_step": True}, "You can't `self.log(on_step=True)` inside `on_train_epoch_end`, must be one of (False,)."),
        (
            {"on_epoch": False},
            "You can't `self.log(on_epoch=False)` inside `on_train_epoch_end`, must be one of (True,).",
        ),
    ],
)
def test_a_level_the_hook_does_not_allow_is_refused_in_lightnings_words_then_ours(options, says):
    with pytest.raises(MisconfigurationException) as info:
        _fit_logging(lambda m, fx, b, i: m.log("x", 1.0, **options), hook="on_train_epoch_end")
    assert str(info.value).startswith(says + " Log 'x' there with ")


@pytest.mark.parametrize("reduce_fx", ["median", torch.std, lambda x: x])
def test_bad_reduce_fx(reduce_fx):
    with pytest.raises(MisconfigurationException, match="reduce_fx"):
        _fit_logging(lambda m, fx, b, i: m.log("x", 1.0, on_epoch=True, reduce_fx=reduce_fx))


def test_log_dict_with_a_nested_value_is_refused():
    with pytest.raises(ValueError, match="nested dictionaries|dict"):
        _fit_logging(lambda m, fx, b, i: m.log_dict({"outer": {"inner": 1.0}}))


def test_unique_values_per_dataloader_batch_sizes_in_validation():
    class Sizes(CoreModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", float(batch_idx))

    data = DataLoader(TensorDataset(torch.randn(10, 4), torch.randn(10, 1)), batch_size=4)
    out = quiet_trainer().validate(Sizes(), data, verbose=False)
    assert out[0]["v"] == pytest.approx((0 * 4 + 1 * 4 + 2 * 2) / 10)


def test_every_on_step_on_epoch_combination_in_the_three_dicts(tmp_path):
    """Keys and values as PyTorch Lightning 2.6.6 produces them for the same program."""

    class Combos(CoreModel):
        def training_step(self, batch, batch_idx):
            v = torch.tensor(float(batch_idx + 1))
            self.log("ts", v, on_step=True, on_epoch=False, prog_bar=True)
            self.log("te", v, on_step=False, on_epoch=True, prog_bar=True)
            self.log("tb", v, on_step=True, on_epoch=True, prog_bar=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            v = torch.tensor(float(batch_idx + 1))
            self.log("vs", v, on_step=True, on_epoch=False, prog_bar=True)
            self.log("ve", v, on_step=False, on_epoch=True, prog_bar=True)
            self.log("vb", v, on_step=True, on_epoch=True, prog_bar=True)

    def table(metrics):
        return {k: round(float(v), 3) for k, v in metrics.items()}

    trainer = quiet_trainer(max_epochs=1, logger=ember.loggers.CSVLogger(tmp_path), log_every_n_steps=1)
    model = Combos()
    trainer.fit(model, loader(n=12), loader(n=12))
    assert table(trainer.callback_metrics) == {
        "tb": 2.0,
        "tb_epoch": 2.0,
        "tb_step": 3.0,
        "te": 2.0,
        "ts": 3.0,
        "vb": 2.0,
        "vb_epoch": 2.0,
        "ve": 2.0,
    }
    both = {
        "tb_epoch": 2.0,
        "tb_step": 3.0,
        "te": 2.0,
        "ts": 3.0,
        "vb_epoch": 2.0,
        "vb_step": 3.0,
        "ve": 2.0,
        "vs": 3.0,
    }
    assert table(trainer.logged_metrics) == both
    assert table(trainer.progress_bar_metrics) == both

    assert trainer.validate(model, loader(n=12), verbose=False) == [{"ve": 2.0, "vb_epoch": 2.0}]
    assert table(trainer.callback_metrics) == {"vb": 2.0, "vb_epoch": 2.0, "ve": 2.0}
    assert table(trainer.logged_metrics) == {"vb_epoch": 2.0, "vb_step": 3.0, "ve": 2.0, "vs": 3.0}


def test_a_callback_logs_with_self_log():
    class LoggingCallback(ember.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.log("epoch_start", 2.0)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.log("batch_end", 3.0)
            self.log_dict({"also": 4.0})

    trainer = quiet_trainer(max_epochs=1, callbacks=[LoggingCallback()])
    trainer.fit(CoreModel(), loader(n=4))
    assert {k: float(v) for k, v in trainer.callback_metrics.items()} == {
        "epoch_start": 2.0,
        "batch_end": 3.0,
        "also": 4.0,
    }


def test_an_epoch_mean_is_lightnings_to_the_last_bit():
    # Lightning adds `value * batch_size` rounded first; a fused multiply-add differs in the last bit. The
    # logged values are constants, so the float32 arithmetic is the same on every CPU (a model's output is
    # not: its kernels round differently from one instruction set to another). Each case is one where the
    # fused result differs; the means were recorded on Lightning 2.6.6.
    sizes = [20, 20, 7]
    cases = [
        [9.494542121887207, 4.654447078704834, 7.601515769958496],
        [1.5727636814117432, 9.729024887084961, 8.910362243652344],
        [0.6886950731277466, 3.8696279525756836, 4.354763031005859],
        [6.733612537384033, 7.1747236251831055, 1.75382399559021],
    ]

    class Logs(ember.LightningModule):
        def __init__(self, values):
            super().__init__()
            self.values = values
            self.layer = torch.nn.Linear(1, 1)

        def test_step(self, batch, batch_idx):
            self.log("test_loss", torch.tensor(self.values[batch_idx]), batch_size=sizes[batch_idx])

    data = DataLoader(TensorDataset(torch.zeros(3, 1)), batch_size=1)
    seen = [quiet_trainer().test(Logs(values), data, verbose=False)[0]["test_loss"] for values in cases]
    assert seen == [7.152987003326416, 6.13634729385376, 2.5882937908172607, 6.179649353027344]


def test_logging_to_a_logger_without_one_warns_in_lightnings_words():
    class LogsToTheLogger(CoreModel):
        def test_step(self, batch, batch_idx):
            x, y = batch
            self.log("test_loss", torch.nn.functional.mse_loss(self(x), y), logger=True)

    with pytest.warns(UserWarning) as caught:
        quiet_trainer().test(LogsToTheLogger(), loader(), verbose=False)
    said = [str(w.message) for w in caught if "no logger configured" in str(w.message)]
    assert said == [
        "You called `self.log('test_loss', ..., logger=True)` but have no logger configured. You can enable one"
        " by doing `Trainer(logger=ALogger(...))`"
    ]


@pytest.mark.parametrize("stage", ["validation", "test"])
def test_a_value_logged_at_an_evaluation_epoch_end_is_in_callback_metrics_in_that_hook(stage):
    # as in Lightning: a callback or the module reading it right after logging it finds it
    seen: list[list[str]] = []

    class EpochEnd(CoreModel):
        def validation_step(self, batch, batch_idx):
            self.log("step_value", float(batch_idx))

        test_step = validation_step

        def on_validation_epoch_end(self):
            self.log("epoch_value", 0.5)
            seen.append(sorted(self.trainer.callback_metrics))

        on_test_epoch_end = on_validation_epoch_end

    trainer = quiet_trainer()
    getattr(trainer, "validate" if stage == "validation" else "test")(EpochEnd(), loader(n=8), verbose=False)
    assert seen == [["epoch_value", "step_value"]]
    assert float(trainer.callback_metrics["epoch_value"]) == 0.5


def test_an_integer_value_is_logged_as_a_float_with_lightnings_warning_once():
    import warnings

    class LogsSteps(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("seen", torch.tensor(batch_idx + 1), on_epoch=True, reduce_fx="sum")
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(max_epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(LogsSteps(), loader(n=12, batch_size=4))
    messages = [str(w.message) for w in caught if "floating to be reduced" in str(w.message)]
    assert messages == [
        "You called `self.log('seen', ...)` in your `training_step` but the value needs to be floating to be"
        " reduced. Converting it to torch.float32. You can silence this warning by converting the value to"
        " floating point yourself. If you don't intend to reduce the value (for instance when logging the global"
        " step or epoch) then you can use `self.logger.log_metrics({'seen': ...})` instead."
    ]  # once, as Lightning's warning cache says it, though the filter asks for every one
    assert trainer.callback_metrics["seen_epoch"].dtype == torch.float32
    assert float(trainer.callback_metrics["seen_epoch"]) == 6.0


def test_the_integer_value_warning_names_the_dataloader_and_comes_only_for_a_valid_call():
    # as Lightning: the hook is named with its dataloader (`validation_step.1`), once per dataloader, and a call
    # that fails its checks raises without the warning
    import warnings

    class Logs(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("n", torch.tensor(3))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(max_epochs=1).validate(Logs(), [loader(n=8), loader(n=8)], verbose=False)
    hooks = [str(w.message).split("your `")[1].split("`")[0] for w in caught if "floating" in str(w.message)]
    assert hooks == ["validation_step.0", "validation_step.1"]

    class LogsWhereItMayNot(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("n", torch.tensor(3), on_step=False, on_epoch=False)
            return super().training_step(batch, batch_idx)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(MisconfigurationException):
            quiet_trainer(max_epochs=1).fit(LogsWhereItMayNot(), loader(n=8))
    assert not [w for w in caught if "floating" in str(w.message)]


class _LogsAroundManualBackward(CoreModel):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.seen: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        self.log("a", float(batch_idx + 1), on_step=False, on_epoch=True)
        self.log("s", float(batch_idx + 1), on_step=True, on_epoch=False)
        self.manual_backward(torch.nn.functional.mse_loss(self(batch[0]), batch[1]))  # on_after_backward logs "b"
        optimizer.step()
        optimizer.zero_grad()
        self.log("c", 1.0)  # back in training_step

    def on_after_backward(self):
        self.log("b", 0.5)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.seen.append(sorted(self.trainer.logged_metrics))


def test_values_logged_around_a_hook_that_logs_inside_a_manual_step_are_all_kept():
    # Lightning throws away the first batch's `a` and `s` here (its epoch-start reset fires inside the step)
    model = _LogsAroundManualBackward()
    trainer = quiet_trainer(max_epochs=1, log_every_n_steps=1)
    trainer.fit(model, loader(n=8, batch_size=2))
    assert model.seen[0] == ["b", "c", "s"]
    assert float(trainer.callback_metrics["a"]) == 2.5  # the mean of batches 1 to 4


def test_logging_in_predict_step_gives_lightnings_message_word_for_word():
    class Logs(CoreModel):
        def predict_step(self, batch, batch_idx):
            self.log("p", 1.0)

    with pytest.raises(MisconfigurationException) as info:
        quiet_trainer().predict(Logs(), loader(n=4))
    assert str(info.value) == (
        "You are trying to `self.log()` but the loop's result collection is not registered yet. This is most likely"
        " because you are trying to log in a `predict` hook, but it doesn't support logging"
    )


def test_what_a_start_hook_logs_is_readable_before_the_first_batch_as_in_lightning():
    # Lightning reads a loop's epoch values until its first batch starts: a value logged in `on_train_start`,
    # `on_train_epoch_start` or an evaluation's start hooks is in the metric dicts at once (this epoch's, not the
    # last one's), and stays there. A validation inside a training epoch reads step values only, as Lightning's.
    seen: list[tuple] = []

    class StartHooks(CoreModel):
        def validation_step(self, batch, batch_idx):
            pass

        def on_train_start(self):
            self.log("s", 7.0)
            seen.append(("train_start", sorted(self.trainer.callback_metrics)))

        def on_train_epoch_start(self):
            self.log("e", float(self.current_epoch))
            seen.append(("train_epoch_start", {k: float(v) for k, v in self.trainer.callback_metrics.items()}))

        def on_train_batch_start(self, batch, batch_idx):
            seen.append(("batch", {k: float(v) for k, v in self.trainer.callback_metrics.items()}))

        def on_validation_epoch_start(self):
            self.log("v", 3.0)
            seen.append(("val_start", self.trainer.sanity_checking, sorted(self.trainer.logged_metrics)))

    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=1)
    trainer.fit(StartHooks(), loader(n=8, batch_size=4), loader(n=4))
    trainer.validate(StartHooks(), loader(n=4), verbose=False)
    assert seen == [  # Lightning 2.6.6's, recorded with the same program
        ("val_start", True, ["v"]),
        ("train_start", ["s"]),
        ("train_epoch_start", {"s": 7.0, "e": 0.0}),
        ("batch", {"s": 7.0, "e": 0.0}),
        ("batch", {"s": 7.0, "e": 0.0}),
        ("val_start", False, []),
        ("train_epoch_start", {"s": 7.0, "e": 1.0, "v": 3.0}),
        ("batch", {"s": 7.0, "e": 1.0, "v": 3.0}),
        ("batch", {"s": 7.0, "e": 1.0, "v": 3.0}),
        ("val_start", False, ["e", "s", "v"]),
        ("val_start", False, ["v"]),
    ]


def test_the_sanity_checks_step_values_of_each_dataloader_are_in_logged_metrics_as_in_lightning():
    seen = []

    class TwoLoaders(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("v_step", 1.0 + batch_idx + 10 * dataloader_idx, on_step=True, on_epoch=False)

        def on_validation_end(self):
            seen.append((self.trainer.sanity_checking, {k: float(v) for k, v in self.trainer.logged_metrics.items()}))

    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=2)
    trainer.fit(TwoLoaders(), loader(), [loader(n=8, batch_size=4)] * 2)
    expected = {"v_step/dataloader_idx_0": 2.0, "v_step/dataloader_idx_1": 12.0}
    assert seen == [(True, expected), (False, expected)]
