"""``Trainer(profiler=...)``: the actions recorded under Lightning's names, and the reports."""

from __future__ import annotations

import logging
import os
import re
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.callbacks import ModelCheckpoint
from ember.profilers import AdvancedProfiler, PassThroughProfiler, Profiler, PyTorchProfiler, SimpleProfiler
from ember.strategies import SingleDeviceStrategy
from ember.utilities.exceptions import MisconfigurationException


class M(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self.layer(batch[0]).pow(2).mean())

    def predict_step(self, batch, batch_idx):
        return self.layer(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader():
    return DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)


def trainer(tmp_path, profiler, **kwargs):
    kwargs = {"max_epochs": 2, **kwargs}
    return pl.Trainer(
        profiler=profiler,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


# Observed with pytorch-lightning 2.6.6 on the same program (2 epochs of 2 batches, 2 validation
# batches, the sanity check's 2, a ModelCheckpoint saving once per epoch): the number of times each
# action was recorded.
CKPT = (
    "[Callback]ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0,"
    " 'every_n_epochs': 1, 'train_time_interval': None}"
)
LIGHTNING_COUNTS = {
    "run_training_epoch": 2,
    "run_training_batch": 4,
    "[_TrainingEpochLoop].train_dataloader_next": 4,
    "[Strategy]SingleDeviceStrategy.training_step": 4,
    "[Strategy]SingleDeviceStrategy.backward": 4,
    "[LightningModule]M.optimizer_step": 4,
    "[LightningModule]M.optimizer_zero_grad": 4,
    "[_EvaluationLoop].val_next": 6,
    "[Strategy]SingleDeviceStrategy.validation_step": 6,
    "[LightningModule]M.on_validation_model_zero_grad": 2,
    "[LightningModule]M.configure_optimizers": 1,
    "[LightningModule]M.on_train_epoch_end": 2,
    "save_checkpoint": 2,
    CKPT + ".on_train_epoch_end": 2,
    CKPT + ".on_validation_end": 3,
    CKPT + ".setup": 1,
}


def test_simple_profiler_records_lightnings_actions_and_logs_the_report(tmp_path, caplog):
    profiler = SimpleProfiler()
    t = trainer(tmp_path, profiler, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpts")])
    with caplog.at_level(logging.INFO, logger="ember"):
        t.fit(M(), loader(), loader())
    counts = {action: len(durations) for action, durations in profiler.recorded_durations.items()}
    assert {action: counts.get(action) for action in LIGHTNING_COUNTS} == LIGHTNING_COUNTS
    assert all(d >= 0 for durations in profiler.recorded_durations.values() for d in durations)
    report = caplog.text
    assert "FIT Profiler Report" in report
    assert "Mean duration (s)" in report and "run_training_epoch" in report and "Total" in report


def test_manual_optimization_records_each_optimizer_step_and_no_backward_as_in_lightning(tmp_path):
    class Manual(M):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward(self.layer(batch[0]).sum())
            optimizer.step()
            optimizer.step()  # two steps a batch: each is an `optimizer_step` span

    profiler = SimpleProfiler()
    trainer(tmp_path, profiler, max_epochs=1).fit(Manual(), loader())
    counts = {action: len(durations) for action, durations in profiler.recorded_durations.items()}
    assert counts["optimizer_step"] == 4 and counts["[Strategy]SingleDeviceStrategy.training_step"] == 2
    assert not any(action.endswith(".backward") for action in counts)


class HookedStrategy(SingleDeviceStrategy):
    """A strategy of the program's own that overrides every hook Lightning calls on the strategy."""

    def on_train_start(self):
        super().on_train_start()

    def on_train_end(self):
        super().on_train_end()

    def on_train_batch_start(self, batch, batch_idx):
        return super().on_train_batch_start(batch, batch_idx)

    def on_validation_start(self):
        super().on_validation_start()

    def on_validation_end(self):
        super().on_validation_end()

    def on_test_start(self):
        super().on_test_start()

    def on_test_end(self):
        super().on_test_end()

    def on_predict_start(self):
        super().on_predict_start()

    def on_predict_end(self):
        super().on_predict_end()


def test_a_strategys_own_hooks_are_recorded_as_in_lightning(tmp_path):
    # Lightning 2.6.6, the same fit (1 epoch, 2 batches, sanity check and one validation), test and predict
    expected = {
        "[Strategy]HookedStrategy.on_train_start": 1,
        "[Strategy]HookedStrategy.on_train_end": 1,
        "[Strategy]HookedStrategy.on_train_batch_start": 2,
        "[Strategy]HookedStrategy.on_validation_start": 2,
        "[Strategy]HookedStrategy.on_validation_end": 2,
        "[Strategy]HookedStrategy.on_test_start": 1,
        "[Strategy]HookedStrategy.on_test_end": 1,
        "[Strategy]HookedStrategy.on_predict_start": 1,
        "[Strategy]HookedStrategy.on_predict_end": 1,
    }
    profiler = SimpleProfiler()
    strategy = HookedStrategy(device=torch.device("cpu"))
    t = trainer(tmp_path, profiler, max_epochs=1, enable_checkpointing=False, strategy=strategy)
    t.fit(M(), loader(), loader())
    t.test(M(), loader(), verbose=False)
    t.predict(M(), loader())
    counts = {action: len(durations) for action, durations in profiler.recorded_durations.items()}
    assert {action: counts.get(action) for action in expected} == expected


def test_nothing_is_recorded_without_a_profiler(tmp_path):
    t = trainer(tmp_path, None)
    assert isinstance(t.profiler, PassThroughProfiler)
    t.fit(M(), loader())
    assert t._run.profiler is None  # the loop was built without spans


@pytest.mark.parametrize("no_profiler", [None, False, 0])
def test_a_false_profiler_means_none_as_in_lightning(tmp_path, no_profiler):
    # Lightning keeps `profiler or PassThroughProfiler()`: `False` turns profiling off, as `None` does
    t = trainer(tmp_path, no_profiler, max_epochs=1)
    assert isinstance(t.profiler, PassThroughProfiler)
    t.fit(M(), loader())
    assert t.state.finished


def test_profiler_by_name_and_clear_errors(tmp_path):
    assert isinstance(pl.Trainer(profiler="simple").profiler, SimpleProfiler)
    assert isinstance(pl.Trainer(profiler="Advanced").profiler, AdvancedProfiler)
    assert isinstance(pl.Trainer(profiler="pytorch").profiler, PyTorchProfiler)
    # Lightning's message (its list names "xla"), then what was passed
    with pytest.raises(
        MisconfigurationException,
        match=r"When passing string value for the `profiler` parameter of `Trainer`, it can only be one of"
        r" \['simple', 'advanced', 'pytorch', 'xla'\], got 'fast'",
    ):
        pl.Trainer(profiler="fast")
    with pytest.raises(MisconfigurationException, match="ember.profilers.Profiler"):
        pl.Trainer(profiler=object())


def test_the_xla_profiler_by_name_fails_as_lightnings_does_without_torch_xla():
    # Lightning 2.6.6 without torch_xla: `XLAProfiler()` raises this ModuleNotFoundError
    lightnings = "Requirement 'torch_xla>=1.13' not met. HINT: Try running `pip install -U 'torch_xla>=1.13'`"
    with pytest.raises(ModuleNotFoundError, match=re.escape(lightnings) + r".*TPUs\) are not supported"):
        pl.Trainer(profiler="XLA")


def test_report_file_per_stage_in_the_log_dir(tmp_path):
    t = trainer(tmp_path, SimpleProfiler(filename="perf"))
    t.fit(M(), loader())
    t.test(M(), loader(), verbose=False)
    fit_report = (tmp_path / "fit-perf.txt").read_text()
    assert fit_report.startswith("FIT Profiler Report")
    assert "run_training_batch" in fit_report
    test_report = (tmp_path / "test-perf.txt").read_text()
    assert "[Strategy]SingleDeviceStrategy.test_step" in test_report
    assert "[_EvaluationLoop].test_next" in test_report


def test_predict_is_profiled(tmp_path):
    profiler = SimpleProfiler()
    trainer(tmp_path, profiler).predict(M(), loader())
    assert len(profiler.recorded_durations["[Strategy]SingleDeviceStrategy.predict_step"]) == 2
    assert len(profiler.recorded_durations["[_PredictionLoop].predict_next"]) == 2


@pytest.mark.parametrize("extended", [True, False])
def test_an_empty_simple_profiler_report_is_lightnings(extended):
    # Lightning 2.6.6: 'Profiler Report\n\n' for the default extended report (its short one fails on `max()`)
    assert SimpleProfiler(extended=extended).summary() == f"Profiler Report{os.linesep}{os.linesep}"


@pytest.mark.parametrize("profiler_class", [SimpleProfiler, AdvancedProfiler, PyTorchProfiler])
def test_a_report_file_name_that_is_no_text_is_refused_when_the_profiler_is_made(tmp_path, profiler_class):
    # it failed when the first report was written, after the run: "sequence item 1: expected str instance"
    with pytest.raises(TypeError, match=re.escape(f"`{profiler_class.__name__}(filename=2)` must be a file name")):
        profiler_class(dirpath=tmp_path, filename=2)
    # a false name writes no file, as in Lightning
    assert profiler_class(filename="").filename == ""


def test_simple_profiler_refuses_unbalanced_actions():
    profiler = SimpleProfiler()
    profiler.start("a")
    with pytest.raises(ValueError, match="already started"):
        profiler.start("a")
    with pytest.raises(ValueError, match="never started"):
        profiler.stop("b")


def _busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def outer_work():
    _busy(0.01)


def inner_work():
    _busy(0.01)


def test_advanced_profiler_gives_the_outer_action_back_its_time():
    profiler = AdvancedProfiler(line_count_restriction=50)
    profiler.start("outer")
    profiler.start("inner")
    inner_work()
    profiler.stop("inner")
    outer_work()  # after the inner action: still the outer one's (Lightning loses it)
    profiler.stop("outer")
    report = profiler.summary()
    outer, inner = report.split("Profile stats for: inner")
    assert "outer_work" in outer.split("Profile stats for: outer")[1] and "inner_work" not in outer
    assert "inner_work" in inner and "outer_work" not in inner


def test_advanced_profiler_report_and_raw_stats(tmp_path):
    import pstats

    profiler = AdvancedProfiler(dirpath=tmp_path, filename="deep", dump_stats=True)
    trainer(tmp_path, profiler).fit(M(), loader())
    report = (tmp_path / "fit-deep.txt").read_text()
    assert "Profile stats for: run_training_epoch" in report and "function calls" in report
    dumped = tmp_path / "fit-deep-run_training_epoch.prof"
    assert pstats.Stats(str(dumped)).total_calls > 0


def test_pytorch_profiler_table_and_chrome_trace(tmp_path):
    import json

    profiler = PyTorchProfiler(dirpath=tmp_path, filename="ops", row_limit=200)
    trainer(tmp_path, profiler, max_epochs=1).fit(M(), loader())
    report = (tmp_path / "fit-ops.txt").read_text()
    assert "aten::linear" in report or "aten::addmm" in report
    trace = json.loads((tmp_path / "fit-ops.pt.trace.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert {
        "[pl][profile]run_training_batch",
        "[pl][profile][Strategy]SingleDeviceStrategy.training_step",
        "[pl][module]torch.nn.modules.linear.Linear: layer",
    } <= names


def test_pytorch_profiler_keeps_the_events_and_the_report_can_be_asked_again(tmp_path):
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="ops", table_kwargs={"max_name_column_width": 12})
    trainer(tmp_path, profiler, max_epochs=1).fit(M(), loader())
    names = {event.name for event in profiler.function_events}
    assert "[pl][profile][Strategy]SingleDeviceStrategy.training_step" in names
    assert "Self CPU time total" in profiler.summary()  # after the run's own report: the table again


def test_pytorch_profiler_works_where_lightnings_raises(tmp_path):
    # Lightning 2.6.6 raises `AssertionError: Profiler must be initialized before accessing events` here
    profiler = PyTorchProfiler()
    profiler.start("by_hand")
    torch.randn(4, 4) @ torch.randn(4, 4)
    profiler.stop("by_hand")
    assert "Self CPU time total" in profiler.summary()
    # ... and `ReferenceError: weakly-referenced object no longer exists` when one Trainer meets a new model
    t = trainer(tmp_path, PyTorchProfiler(dirpath=tmp_path, filename="ops"), max_epochs=1)
    t.fit(M(), loader())
    t.validate(M(), loader(), verbose=False)
    assert (tmp_path / "validate-ops.txt").exists()


def test_a_schedule_moves_on_each_kind_of_steps_own_count_as_lightnings(tmp_path):
    counts = []
    cycle = torch.profiler.schedule(wait=1, warmup=1, active=2)

    def schedule(step):
        counts.append(step)
        return cycle(step)

    profiler = PyTorchProfiler(dirpath=tmp_path, filename="ops", schedule=schedule)
    counts.clear()  # the profiler checks the schedule once when it is made
    t = trainer(tmp_path, profiler, limit_train_batches=3, limit_val_batches=2, enable_checkpointing=False)
    t.fit(M(), DataLoader(TensorDataset(torch.randn(12, 4)), batch_size=4), loader())
    # Lightning 2.6.6's sequence on this program: the sanity check's 2 validation steps, then 3 training steps
    # (the third ends training's cycle), then the first validation step after them ends validation's
    assert counts == [1, 2, 1, 2, 3, 3]
    assert sorted(PyTorchProfiler.STEP_FUNCTIONS) == ["predict_step", "test_step", "training_step", "validation_step"]
    for call in ("test", "predict"):  # each records by its own steps (the profiler used to step on training only)
        counts.clear()
        profiler = PyTorchProfiler(dirpath=tmp_path, filename="ops", schedule=schedule)
        counts.clear()
        getattr(trainer(tmp_path, profiler, limit_test_batches=4, limit_predict_batches=4), call)(
            M(), DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=4)
        )
        assert counts == [1, 2, 3], call
        names = {event.name for event in profiler.function_events}  # the recorded steps' ranges and operators
        assert {f"[pl][profile][Strategy]SingleDeviceStrategy.{call}_step", "aten::addmm"} <= names, call
        assert (tmp_path / f"{call}-ops.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "recorded"),
    [
        ({"group_by_input_shapes": True}, True),  # grouping by shapes records them (Lightning needs both flags)
        ({"record_shapes": True}, True),
        ({"group_by_input_shapes": True, "record_shapes": False}, False),  # said explicitly: as said
        ({}, False),
    ],
)
def test_pytorch_profiler_records_input_shapes_when_asked_or_grouping_by_them(tmp_path, kwargs, recorded):
    profiler = PyTorchProfiler(dirpath=tmp_path, filename="ops", export_to_chrome=False, **kwargs)
    trainer(tmp_path, profiler, max_epochs=1).fit(M(), loader())
    shapes = [event.input_shapes for event in profiler.function_events if event.name in ("aten::linear", "aten::addmm")]
    assert shapes and any(shapes) == recorded


def test_pytorch_profiler_refuses_table_kwargs_it_sets_or_torch_lacks():
    with pytest.raises(KeyError, match="Found invalid table_kwargs key: row_limit. This is already a positional"):
        PyTorchProfiler(table_kwargs={"row_limit": 3})
    with pytest.raises(KeyError, match="Found invalid table_kwargs key: colour"):
        PyTorchProfiler(table_kwargs={"colour": True})


def test_register_record_function_names_each_submodule_forward(tmp_path):
    from ember.profilers.pytorch import RegisterRecordFunction

    profiler = PyTorchProfiler(dirpath=tmp_path, filename="ops", export_to_chrome=False)
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.ReLU())
    with profiler.profile("a"), RegisterRecordFunction(model):
        model(torch.rand(1, 1))
    profiler.describe()
    names = {event.name for event in profiler.function_events}
    assert {"[pl][module]torch.nn.modules.linear.Linear: 0", "[pl][module]torch.nn.modules.activation.ReLU: 1"} <= names
    model(torch.rand(1, 1))  # the hooks are gone once the block ends
    assert not model[0]._forward_pre_hooks


def test_the_datamodule_hooks_are_recorded(tmp_path):
    class Data(pl.LightningDataModule):
        def prepare_data(self):
            pass

        def train_dataloader(self):
            return loader()

        def state_dict(self):
            return {"seen": 1}

    names = ["prepare_data", "setup", "train_dataloader", "state_dict", "teardown"]
    t = trainer(tmp_path, "simple", max_epochs=1, limit_val_batches=0)
    t.fit(M(), datamodule=Data())
    for name in names:  # once each, as Lightning 2.6.6 records them
        assert len(t.profiler.recorded_durations[f"[LightningDataModule]Data.{name}"]) == 1, name
    # a `prepare_data` left as it is is not called, so not recorded, as in Lightning
    assert not [name for name in t.profiler.recorded_durations if name.endswith("M.prepare_data")]
    resumed = trainer(tmp_path, "simple", max_epochs=2, limit_val_batches=0)
    resumed.fit(M(), datamodule=Data(), ckpt_path=t.checkpoint_callback.best_model_path)
    assert len(resumed.profiler.recorded_durations["[LightningDataModule]Data.load_state_dict"]) == 1


def test_a_profiler_of_your_own(tmp_path):
    class Counting(Profiler):
        def __init__(self):
            super().__init__(dirpath=tmp_path, filename="counts")
            self.starts, self.stops = [], []

        def start(self, action_name):
            self.starts.append(action_name)

        def stop(self, action_name):
            self.stops.append(action_name)

        def summary(self):
            return f"{len(self.starts)} actions"

    profiler = Counting()
    trainer(tmp_path, profiler).fit(M(), loader())
    assert sorted(profiler.starts) == sorted(profiler.stops) and "run_training_epoch" in profiler.starts
    assert (tmp_path / "fit-counts.txt").read_text() == f"{len(profiler.starts)} actions"


def test_a_failed_run_stops_the_torch_profiler(tmp_path):
    class Failing(M):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        trainer(tmp_path, PyTorchProfiler(dirpath=tmp_path, filename="ops")).fit(Failing(), loader())
    assert not torch.autograd._profiler_enabled()  # not left recording every later op of the process


@pytest.mark.parametrize(
    "make",
    [
        SimpleProfiler,
        lambda: AdvancedProfiler(line_count_restriction=5),
        lambda: PyTorchProfiler(record_module_names=False),
    ],
)
def test_profilers_copy_for_spawned_processes(make):
    import pickle

    profiler = make()
    profiler.start("step")
    profiler.stop("step")
    clone = pickle.loads(pickle.dumps(profiler))  # what `strategy="ddp_spawn"` does with the trainer
    clone.start("step")
    clone.stop("step")
    assert "Profiler Report" in clone.summary()
    profiler.teardown(stage=None)
    clone.teardown(stage=None)


def test_profilers_stop_and_arguments_as_lightnings():
    import torch

    from ember.profilers import AdvancedProfiler, PyTorchProfiler
    from ember.utilities.exceptions import MisconfigurationException

    advanced = AdvancedProfiler()
    advanced.start("a")
    advanced.stop("a")
    advanced.stop("a")  # a second stop does nothing, as in Lightning
    with pytest.raises(ValueError, match="never started"):
        advanced.stop("b")
    PyTorchProfiler().stop("never")  # nothing to close
    with pytest.raises(MisconfigurationException, match="Found sort_by_key: foo"):
        PyTorchProfiler(sort_by_key="foo")
    with pytest.raises(MisconfigurationException, match="Schedule should be a callable"):
        PyTorchProfiler(schedule=3)
    with pytest.raises(MisconfigurationException, match="Schedule should return a `torch.profiler.ProfilerAction`"):
        PyTorchProfiler(schedule=lambda step: 1)
    assert PyTorchProfiler(schedule=torch.profiler.schedule(wait=1, warmup=0, active=1)) is not None


@pytest.mark.parametrize("options", [{"metric": "self_cpu_time_total"}, {"enabled": False}])
def test_pytorch_profiler_takes_lightnings_own_options(tmp_path, options):
    from ember.profilers import PyTorchProfiler

    profiler = PyTorchProfiler(dirpath=tmp_path, filename="p", **options)
    trainer(tmp_path, profiler).fit(M(), loader())  # torch.profiler.profile does not take them: not passed on
    assert (tmp_path / "fit-p.txt").is_file()
