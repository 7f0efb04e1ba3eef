"""Progress bars: what the TQDM bar prints, and that it reads metrics (a host sync) only when it redraws."""

from __future__ import annotations

import io
import pickle
import re
import threading
from types import SimpleNamespace

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_recording_logger, make_regressor, train_loader, val_loader

import ember as pl
from ember.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from ember.callbacks.progress_bar import get_standard_metrics
from ember.callbacks.tqdm_progress import Tqdm

Regressor = make_regressor(pl)
RecordingLogger = make_recording_logger(pl)


def _trainer(bar, **kwargs):
    args = {**QUIET, "enable_progress_bar": True, "logger": RecordingLogger(), "callbacks": [bar], **kwargs}
    return pl.Trainer(**args)


@pytest.fixture(autouse=True)
def redraw_on_every_refresh(monkeypatch):
    """These tests pin `refresh_rate`; the time-based redraw limit is tested on its own below."""
    monkeypatch.setattr(TQDMProgressBar, "min_refresh_interval", 0.0)


@pytest.fixture
def metric_reads(monkeypatch):
    """Record (global_step, stage) at every read of the progress-bar metrics (either accessor)."""
    from ember.trainer.metrics import MetricStore

    reads: list[tuple[int, str]] = []

    def record(store):
        trainer = store.trainer
        stage = "sanity" if trainer.sanity_checking else "train" if trainer.training else "eval"
        reads.append((trainer.global_step, stage))

    for name in ("progress_bar_values", "progress_bar_values_nowait"):
        original = getattr(MetricStore, name)

        def counting(self, original=original):
            record(self)
            return original(self)

        monkeypatch.setattr(MetricStore, name, counting)
    return reads


def test_output_shows_epochs_metrics_and_version(capsys):
    trainer = _trainer(TQDMProgressBar(), max_epochs=2)
    trainer.fit(Regressor(), train_loader(), val_loader())
    err = capsys.readouterr().err
    for text in (
        "Sanity Checking DataLoader 0",
        "Epoch 0:",
        "Epoch 1:",
        "Validation DataLoader 0",
        "4/4",
        "v_num=7",
        "train_loss=",
        "val_loss=",
    ):
        assert text in err
    # the postfix lists the version first, then the prog_bar metrics, padded to 3 decimals
    line = [ln for ln in err.replace("\r", "\n").splitlines() if "Epoch 1: 100%" in ln][-1]
    postfix = line[line.index("v_num") :]
    assert postfix.startswith("v_num=7, train_loss=") and ", val_loss=" in postfix
    value = postfix.split("train_loss=")[1].split(",")[0]
    assert len(value.split(".")[1]) == 3


def test_training_runs_without_a_tqdm_monitor_thread():
    # tqdm starts a monitor thread with its first bar (it wakes every ten seconds to redraw a bar whose updates
    # grew sparse); the bar sets its count and redraws by its own clock, so training runs on one Python thread
    monitors = []

    class Threads(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            monitors.append([t for t in threading.enumerate() if getattr(t, "tqdm_cls", None) is Tqdm])

    bar = TQDMProgressBar()
    _trainer(bar, max_epochs=1, callbacks=[bar, Threads()]).fit(Regressor(), train_loader(), val_loader())
    assert monitors and all(found == [] for found in monitors)
    assert Tqdm.monitor is None


def test_test_validate_and_predict_bars(capsys):
    trainer = _trainer(TQDMProgressBar())
    model = Regressor()
    trainer.validate(model, val_loader())
    trainer.test(model, val_loader())
    trainer.predict(model, val_loader())
    err = capsys.readouterr().err
    for text in ("Validation DataLoader 0", "Testing DataLoader 0", "Predicting DataLoader 0", "2/2"):
        assert text in err


def test_metrics_are_read_only_on_refresh_batches(metric_reads):
    bar = TQDMProgressBar(refresh_rate=4)
    trainer = _trainer(bar, max_epochs=2, num_sanity_val_steps=0)
    trainer.fit(Regressor(), train_loader(n=40), val_loader())  # 10 batches per epoch
    # redraws on batches 4, 8 and the last (10), once after validation and once at epoch end (as Lightning)
    assert metric_reads == [
        (4, "train"),
        (8, "train"),
        (10, "train"),
        (10, "eval"),
        (10, "train"),
        (14, "train"),
        (18, "train"),
        (20, "train"),
        (20, "eval"),
        (20, "train"),
    ]


def test_refresh_rate_one_reads_every_batch(metric_reads):
    trainer = _trainer(TQDMProgressBar(refresh_rate=1), max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(Regressor(), train_loader())
    assert [step for step, _ in metric_reads] == [1, 2, 3, 4, 4]


def test_each_training_redraw_is_one_frame_with_its_batchs_count_and_metrics(capsys):
    # Lightning draws the new count, then again with the new metrics; one frame shows both
    trainer = _trainer(TQDMProgressBar(refresh_rate=1), max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(Regressor(), train_loader())
    frames = [frame for frame in capsys.readouterr().err.split("\r") if frame.startswith("Epoch 0:")]
    for count in ("1/4", "2/4", "3/4"):
        drawn = [frame for frame in frames if count in frame]
        assert len(drawn) == 1 and "train_loss=" in drawn[0], frames


def test_refresh_rate_zero_disables_output(capsys, metric_reads):
    # Lightning still reads the metrics after each validation here; a disabled bar reads nothing
    trainer = _trainer(TQDMProgressBar(refresh_rate=0), max_epochs=1)
    trainer.fit(Regressor(), train_loader(), val_loader())
    assert "Epoch" not in capsys.readouterr().err
    assert metric_reads == []


def test_no_bar_means_no_metric_reads(metric_reads):
    trainer = pl.Trainer(**QUIET, max_epochs=1)
    trainer.fit(Regressor(), train_loader(), val_loader())
    assert metric_reads == []


def test_leave_keeps_one_line_per_epoch(capsys):
    trainer = _trainer(TQDMProgressBar(leave=True), max_epochs=2, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(Regressor(), train_loader())
    lines = capsys.readouterr().err.split("\n")
    assert any("Epoch 0: 100%" in ln for ln in lines) and any("Epoch 1: 100%" in ln for ln in lines)


def test_tqdm_miniters_env_raises_refresh_rate(monkeypatch):
    monkeypatch.setenv("TQDM_MINITERS", "5")
    assert TQDMProgressBar(refresh_rate=2).refresh_rate == 5
    assert TQDMProgressBar(refresh_rate=9).refresh_rate == 9


def test_disabled_on_non_zero_ranks():
    bar = TQDMProgressBar()
    bar.setup(SimpleNamespace(is_global_zero=False), None, "fit")
    assert bar.is_disabled
    bar.enable()
    assert bar.is_enabled


def test_format_num_pads_floats():
    assert Tqdm.format_num(1.5) == "1.500"
    assert Tqdm.format_num(10) == "10"
    assert Tqdm.format_num("abc") == "abc"
    assert Tqdm.format_num(1e-8) == "1e-8"


def test_version_in_standard_metrics():
    def trainer_with(*versions):
        return SimpleNamespace(loggers=[SimpleNamespace(version=v) for v in versions])

    assert get_standard_metrics(trainer_with(3)) == {"v_num": 3}
    assert get_standard_metrics(trainer_with("version_12345")) == {"v_num": "2345"}
    assert get_standard_metrics(trainer_with(1, 2)) == {"v_num": "1_2"}
    assert get_standard_metrics(trainer_with(None)) == {}
    assert get_standard_metrics(SimpleNamespace(loggers=[])) == {}


def test_get_metrics_override_and_duplicate_warning():
    bar = TQDMProgressBar()
    trainer = SimpleNamespace(loggers=[SimpleNamespace(version=1)], progress_bar_metrics={"v_num": 5, "loss": 0.5})
    with pytest.warns(UserWarning, match="already tracks a metric with the name\\(s\\) 'v_num'"):
        assert bar.get_metrics(trainer, None) == {"v_num": 5, "loss": 0.5}


def test_base_class_requires_enable_disable():
    with pytest.raises(NotImplementedError):
        ProgressBar().disable()


def test_bar_can_be_pickled_mid_run():
    bar = TQDMProgressBar()
    bar.train_progress_bar = Tqdm(disable=True)
    restored = pickle.loads(pickle.dumps(bar))
    assert restored._train_progress_bar is None


def test_bar_can_be_pickled_and_copied_after_each_call():
    import copy

    from tests.helpers.core_models import CoreModel, loader

    bar = TQDMProgressBar()
    trainer = pl.Trainer(
        **{**QUIET, "enable_progress_bar": True},
        callbacks=[bar],
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
    )
    model = CoreModel()
    trainer.fit(model, loader(), loader())
    pickle.dumps(bar)
    copy.deepcopy(bar)
    trainer.validate(model, loader())
    restored = pickle.loads(pickle.dumps(bar))
    assert restored.trainer.current_epoch == 1  # the trainer comes along; its per-call hook callers do not


@pytest.fixture
def fresh_rich_console():
    """The rich bar reconfigures rich's global console; give later tests a default one back."""
    import rich

    yield
    rich.reconfigure()


def test_rich_progress_bar_draws_epochs_and_metrics(fresh_rich_console):
    out = io.StringIO()
    bar = RichProgressBar(console_kwargs={"file": out, "force_terminal": True, "width": 200})
    trainer = _trainer(bar, max_epochs=2)
    trainer.fit(Regressor(), train_loader(), val_loader())
    text = out.getvalue()
    assert "Epoch 1/1" in text and "4/4" in text and "v_num: 7" in text and "train_loss:" in text


def test_a_rich_bar_subclass_names_the_epoch_and_reads_its_tasks_as_in_lightning(fresh_rich_console):
    # kraken's progress bar overrides `_get_train_description` to show "stage 3/14"; Lightning's bar calls it at
    # every epoch start, and subclasses read the tasks through `train_progress_bar` and its siblings
    seen = []

    class Stages(RichProgressBar):
        def _get_train_description(self, current_epoch):
            return f"stage {current_epoch}/{self.trainer.max_epochs - 1}"

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                seen.append(("sanity", self.val_sanity_check_bar.total))
            else:
                seen.append((self.train_progress_bar.description, self.val_progress_bar.total))
            super().on_validation_end(trainer, pl_module)

    out = io.StringIO()
    bar = Stages(console_kwargs={"file": out, "force_terminal": True, "width": 200})
    trainer = _trainer(bar, max_epochs=2, num_sanity_val_steps=2)
    trainer.fit(Regressor(), train_loader(), val_loader())
    assert "stage 1/1" in out.getvalue() and "Epoch 1" not in out.getvalue()
    assert seen == [("sanity", 2), ("stage 0/1", trainer.num_val_batches[0]), ("stage 1/1", trainer.num_val_batches[0])]


def test_a_rich_bar_reads_the_metrics_at_the_end_of_the_sanity_check_as_in_lightning(fresh_rich_console):
    seen = []

    class Reads(RichProgressBar):
        def get_metrics(self, trainer, pl_module):
            seen.append("sanity" if trainer.sanity_checking else "fit")
            return super().get_metrics(trainer, pl_module)

    trainer = _trainer(Reads(console_kwargs={"file": io.StringIO()}), max_epochs=1, num_sanity_val_steps=2)
    trainer.fit(Regressor(), train_loader(), val_loader())
    assert seen[0] == "sanity" and seen.count("sanity") == 1


def test_rich_progress_bar_keeps_its_tasks_after_the_call_and_draws_with_lightnings_class(fresh_rich_console):
    from unittest import mock

    from ember.callbacks import rich_progress

    assert issubclass(rich_progress.CustomProgress, rich_progress.Progress)  # Lightning's module names
    bar = RichProgressBar(console_kwargs={"file": io.StringIO()})
    trainer = _trainer(bar, max_epochs=1, limit_train_batches=3, num_sanity_val_steps=0)
    with mock.patch.object(rich_progress.Progress, "update", autospec=True) as update:
        trainer.fit(Regressor(), train_loader(), val_loader())
    assert update.call_count > 0  # the bar's progress is a rich Progress
    bar = RichProgressBar(console_kwargs={"file": io.StringIO()})
    trainer = _trainer(bar, max_epochs=1, limit_train_batches=3, num_sanity_val_steps=0)
    trainer.fit(Regressor(), train_loader(), val_loader())
    train_task = bar.progress.tasks[bar.train_progress_bar_id]  # still readable once fit has ended
    assert train_task.completed == 3 and train_task.total == 3


def test_rich_progress_bar_can_start_its_display_before_fit_as_lightnings(fresh_rich_console):
    # Lightning's own tests call `on_train_start(trainer, model)` on a new Trainer, before `fit` connects the bar
    bar = RichProgressBar(console_kwargs={"file": io.StringIO()})
    trainer = _trainer(bar, max_epochs=1, limit_train_batches=2, num_sanity_val_steps=0)
    bar.on_train_start(trainer, Regressor())
    assert bar.progress is not None
    bar.refresh(hard=True)  # Lightning's signature
    trainer.fit(Regressor(), train_loader())
    assert bar.progress.tasks[bar.train_progress_bar_id].completed == 2


def test_rich_progress_bar_columns_are_lightnings_classes_and_configure_columns_changes_them(fresh_rich_console):
    from rich.progress import SpinnerColumn, TextColumn

    from ember.callbacks import rich_progress

    class WithSpinner(RichProgressBar):
        def configure_columns(self, trainer):
            return [SpinnerColumn(), *super().configure_columns(trainer), TextColumn("EXTRA")]

    out = io.StringIO()
    bar = WithSpinner(console_kwargs={"file": out, "force_terminal": True, "width": 200})
    trainer = _trainer(bar, max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(Regressor(), train_loader(), val_loader())
    kinds = [type(column) for column in bar.progress.columns]
    assert kinds == [
        SpinnerColumn,
        TextColumn,
        rich_progress.CustomBarColumn,
        rich_progress.BatchesProcessedColumn,
        rich_progress.CustomTimeColumn,
        rich_progress.ProcessingSpeedColumn,
        TextColumn,
        rich_progress.MetricsTextColumn,  # always last, after the configured columns
    ]
    text = out.getvalue()
    assert "EXTRA" in text and "4/4" in text and "train_loss:" in text
    time_column = bar.progress.columns[4]
    assert time_column.style == bar.theme.time and time_column.max_refresh == 0.5


def test_rich_progress_bar_reads_metrics_only_on_refresh(metric_reads, fresh_rich_console, monkeypatch):
    # refresh_rate is in redraws a second, as in Lightning: steps faster than that redraw on a loop's
    # first and last batch only (the clock is held still here), never on every batch
    monkeypatch.setattr(RichProgressBar, "min_refresh_interval", 3600.0)
    bar = RichProgressBar(refresh_rate=4, console_kwargs={"file": io.StringIO()})
    trainer = _trainer(bar, max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(Regressor(), train_loader(n=40), val_loader())
    assert metric_reads == [(1, "train"), (10, "train"), (10, "eval"), (10, "train")]


def test_rich_progress_bar_redraws_at_its_rate_and_shows_the_speed(fresh_rich_console, monkeypatch):
    import time

    clock = iter(range(1000))  # a second between two reads: every batch is due for a redraw
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    out = io.StringIO()
    bar = RichProgressBar(console_kwargs={"file": out, "force_terminal": True, "width": 200})  # 100 a second
    trainer = _trainer(bar, max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(Regressor(), train_loader(n=40))
    task = bar.progress.tasks[bar.train_progress_bar_id]
    # it was drawn every 100 batches, so a shorter loop drew once and its speed read 0.00it/s
    assert task.completed == 10 and task.speed is not None


def test_rich_progress_bar_without_rich(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rich" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'ember\[rich\]'"):
        RichProgressBar()


def _rich_bar_from_the_command_line(*args):
    import yaml
    from tests.helpers.cli_models import RegressionData, Regressor

    from ember.cli import LightningCLI

    cli_args = ["--trainer.callbacks+=RichProgressBar", *args]
    cli = LightningCLI(Regressor, RegressionData, run=False, save_config_callback=None, args=cli_args)
    config = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    bar = next(c for c in cli.trainer.callbacks if isinstance(c, RichProgressBar))
    return config["trainer"]["callbacks"][0]["init_args"]["theme"], bar.theme


def test_rich_theme_from_the_command_line_keeps_its_colours(monkeypatch):
    pytest.importorskip("rich")
    pytest.importorskip("jsonargparse")
    monkeypatch.setattr("sys.argv", ["ember"])
    config, theme = _rich_bar_from_the_command_line()
    # a style is `str` or rich's `Style`: '#6206E0' stays a colour, not a YAML comment read as None
    assert config["progress_bar"] == config["progress_bar_pulse"] == "#6206E0"
    assert theme.progress_bar == theme.progress_bar_finished == "#6206E0" and theme.time == "dim"
    config, theme = _rich_bar_from_the_command_line("--trainer.callbacks.theme.metrics=bold")
    assert theme.metrics == "bold" and theme.progress_bar == "#6206E0"


def test_rich_theme_styles_have_lightnings_type():
    import typing

    from rich.style import Style

    from ember.callbacks.progress import RichProgressBarTheme

    assert typing.get_type_hints(RichProgressBarTheme)["progress_bar"] == typing.Union[str, Style]


def test_print_goes_around_the_bar(capsys):
    from ember.callbacks import LambdaCallback

    say = LambdaCallback(on_train_epoch_end=lambda trainer, pl_module: trainer.progress_bar_callback.print("hello", 1))
    trainer = pl.Trainer(
        **{**QUIET, "enable_progress_bar": True, "logger": False},
        max_epochs=1,
        limit_val_batches=0,
        callbacks=[TQDMProgressBar(), say],
    )
    trainer.fit(Regressor(), train_loader())
    captured = capsys.readouterr()
    # like tqdm.write (and Lightning): the message goes to stdout, the bars are cleared and redrawn around it
    assert captured.out == "hello 1\n"


def test_the_modules_print_goes_through_the_bar_while_it_is_shown(monkeypatch, capsys):
    from unittest import mock

    import tqdm

    class Printing(Regressor):
        def training_step(self, batch, batch_idx):
            self.print("in training_step", end="")
            return super().training_step(batch, batch_idx)

    with mock.patch.object(tqdm.tqdm, "write") as write:
        trainer = pl.Trainer(**{**QUIET, "enable_progress_bar": True}, max_steps=1, limit_val_batches=0)
        trainer.fit(Printing(), train_loader())
    assert write.call_args_list == [mock.call("in training_step", end="")]
    Printing().print("no trainer")  # outside a trainer: a plain print
    assert capsys.readouterr().out.endswith("no trainer\n")


def test_validate_bar_is_left_on_screen(capsys):
    bar = TQDMProgressBar()
    trainer = _trainer(bar)
    trainer.validate(Regressor(), val_loader())
    assert "Validation DataLoader 0: 100%" in capsys.readouterr().err
    assert bar.val_progress_bar.leave is True


def test_one_bar_reset_per_eval_dataloader(capsys):
    class TwoLoaders(Regressor):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    bar = TQDMProgressBar()
    trainer = _trainer(bar)
    trainer.validate(TwoLoaders(), [val_loader(n=8), val_loader(n=12)])
    err = capsys.readouterr().err
    assert "Validation DataLoader 0: 100%|██████████| 2/2" in err
    assert "Validation DataLoader 1: 100%|██████████| 3/3" in err
    assert bar._current_eval_dataloader_idx is None  # reset after the loop


# Every distinct state the bars went through, observed on Lightning 2.6.6 for the same program
# (7 train batches, refresh_rate=3, 2 val batches, then a test run; times replaced by "T").
LIGHTNING_BAR_STATES = [
    "Sanity Checking: |          | 0/? [T]",
    "Sanity Checking DataLoader 0:   0%|          | 0/2 [T]",
    "Sanity Checking DataLoader 0: 100%|##########| 2/2 [T]",
    "Training: |          | 0/? [T]",
    "Epoch 0:   0%|          | 0/7 [T]",
    "Epoch 0:  43%|####2     | 3/7 [T]",
    "Epoch 0:  43%|####2     | 3/7 [T, v_num=7, train_loss=0.960]",
    "Epoch 0:  86%|########5 | 6/7 [T, v_num=7, train_loss=0.960]",
    "Epoch 0:  86%|########5 | 6/7 [T, v_num=7, train_loss=1.140]",
    "Epoch 0: 100%|##########| 7/7 [T, v_num=7, train_loss=1.140]",
    "Epoch 0: 100%|##########| 7/7 [T, v_num=7, train_loss=4.000]",
    "Validation: |          | 0/? [T]",
    "Validation DataLoader 0:   0%|          | 0/2 [T]",
    "Validation DataLoader 0: 100%|##########| 2/2 [T]",
    "Epoch 0: 100%|##########| 7/7 [T, v_num=7, train_loss=4.000, val_loss=4.750]",
    "Testing: |          | 0/? [T]",
    "Testing DataLoader 0:   0%|          | 0/2 [T]",
    "Testing DataLoader 0: 100%|##########| 2/2 [T]",
]


def _bar_states(text: str) -> list[str]:
    states: list[str] = []
    for part in re.split(r"[\r\n]", text):
        part = part.replace("\x1b[A", "").strip()
        part = re.sub(r"\[\d\d:\d\d<[^,\]]*,\s*[^,\]]*(it/s|s/it)", "[T", part)
        part = re.sub(r"\|[^|]*\|", "|bar|", part, count=1)  # the drawing depends on the terminal's charset
        if "|" in part and (not states or states[-1] != part):
            states.append(part)
    return states


def test_bar_states_match_lightning(capsys):
    trainer = _trainer(TQDMProgressBar(refresh_rate=3), max_epochs=1)
    torch.manual_seed(0)
    trainer.fit(Regressor(), train_loader(n=28), val_loader())
    torch.manual_seed(0)
    trainer.test(Regressor(), val_loader())
    lightning = _bar_states("\n".join(LIGHTNING_BAR_STATES))
    # Lightning's training bar draws each update twice, the count with the previous metrics, then with the new
    # ones; Ember's draws the second frame only (`test_each_training_redraw_is_one_frame_...`)
    lightning = [
        state
        for state, following in zip(lightning, [*lightning[1:], ""])
        if not (state.startswith("Epoch") and following.split("[")[0] == state.split("[")[0])
    ]
    assert _bar_states(capsys.readouterr().err) == lightning


def test_rich_validation_bar_becomes_visible(fresh_rich_console):
    out = io.StringIO()
    trainer = _trainer(RichProgressBar(console_kwargs={"file": out, "width": 150}))
    trainer.validate(Regressor(), val_loader())
    assert "Validation" in out.getvalue() and "2/2" in out.getvalue()


def test_fast_steps_redraw_at_most_ten_times_a_second(monkeypatch, metric_reads):
    monkeypatch.setattr(TQDMProgressBar, "min_refresh_interval", 3600.0)
    trainer = _trainer(TQDMProgressBar(refresh_rate=1), max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(Regressor(), train_loader())
    train_reads = [step for step, stage in metric_reads if stage == "train"]
    # the first refresh draws, the interval holds back the rest until the epoch's last batch
    assert len(train_reads) <= 3 and train_reads[-1] == trainer.global_step


class _Unsized(torch.utils.data.IterableDataset):
    """The samples of a loader, drawn without a length: the bar's total is unknown (``?``)."""

    def __init__(self, loader):
        self.samples = list(loader.dataset)

    def __iter__(self):
        return iter(self.samples)


def _last_frame(err, description):
    frames = [frame for frame in re.split(r"[\r\n]", err) if frame.startswith(description)]
    return re.search(r"(\d+)/\?", frames[-1]).group(1)


def test_a_bar_without_a_total_ends_on_the_count_its_loop_reached_though_the_clock_held_it_back(monkeypatch, capsys):
    """No batch of a loop without a length is the last by count: the redraws the interval held back leave
    its last count undrawn, where Lightning's bar ends on it; the bar's last frame shows it."""
    monkeypatch.setattr(TQDMProgressBar, "min_refresh_interval", 3600.0)
    counts = []

    class CountingBar(TQDMProgressBar):
        def on_train_epoch_end(self, trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)
            counts.append(self.train_progress_bar.n)

    def unsized(loader):
        return torch.utils.data.DataLoader(_Unsized(loader), batch_size=4)

    trainer = _trainer(CountingBar(), max_epochs=1, num_sanity_val_steps=0)
    model = Regressor()
    trainer.fit(model, unsized(train_loader()), unsized(val_loader()))  # 4 and 2 batches
    trainer.test(model, unsized(val_loader(n=12)), verbose=False)
    trainer.predict(model, unsized(val_loader(n=20)))
    err = capsys.readouterr().err
    assert counts == [4]  # the bar's count, as Lightning's, though only the first batch was drawn
    assert _last_frame(err, "Epoch 0") == "4"
    assert _last_frame(err, "Validation DataLoader 0") == "2"
    assert _last_frame(err, "Testing DataLoader 0") == "3"
    assert _last_frame(err, "Predicting DataLoader 0") == "5"


def test_a_rich_bar_without_a_total_ends_on_the_count_its_loop_reached(monkeypatch, fresh_rich_console):
    monkeypatch.setattr(RichProgressBar, "min_refresh_interval", 3600.0)
    bar = RichProgressBar(console_kwargs={"file": io.StringIO(), "width": 120})
    completed = []

    class Read(pl.Callback):  # after the bar's own epoch-end and end hooks
        def on_train_epoch_end(self, trainer, pl_module):
            completed.append(bar.progress.tasks[bar.train_progress_bar_id].completed)

        def on_test_end(self, trainer, pl_module):
            completed.append(bar.progress.tasks[bar.test_progress_bar_id].completed)

        def on_predict_end(self, trainer, pl_module):
            completed.append(bar.progress.tasks[bar.predict_progress_bar_id].completed)

    def unsized(loader):
        return torch.utils.data.DataLoader(_Unsized(loader), batch_size=4)

    trainer = _trainer(bar, max_epochs=1, num_sanity_val_steps=0, callbacks=[bar, Read()])
    model = Regressor()
    trainer.fit(model, unsized(train_loader()), unsized(val_loader()))  # 4 training batches
    trainer.test(model, unsized(val_loader(n=12)), verbose=False)
    trainer.predict(model, unsized(val_loader(n=20)))
    assert completed == [4, 3, 5]  # Lightning's bar counts every batch; only the first was drawn here


def test_a_rich_bar_that_drew_its_last_count_sends_no_more_updates(fresh_rich_console):
    # programs (Lightning's own tests) replace Progress.update with a mock, so the task never moves: the bar
    # must not take its count back from rich, and an epoch whose last batch was drawn gets no extra update
    from unittest import mock

    from rich.progress import Progress

    bar = RichProgressBar(console_kwargs={"file": io.StringIO()})
    trainer = _trainer(bar, max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    with mock.patch.object(Progress, "update", autospec=True) as update:
        trainer.fit(Regressor(), train_loader())  # 4 batches: the first and the last are drawn
    counts = [call.kwargs["completed"] for call in update.call_args_list if "completed" in call.kwargs]
    assert counts == [1, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"refresh_rate": None}, "`TQDMProgressBar(refresh_rate=None)` must be a number: redraw every"),
        ({"process_position": 0.5}, "`TQDMProgressBar(process_position=0.5)` must be an int: the bar's line offset"),
    ],
)
def test_a_tqdm_setting_of_the_wrong_type_is_refused_where_it_is_given(kwargs, message):
    # (Lightning fails at the first redraw: "'>' not supported between instances of 'NoneType' and 'int'")
    with pytest.raises(TypeError) as raised:
        TQDMProgressBar(**kwargs)
    assert str(raised.value).startswith(message)


def test_a_bar_subclass_may_log_from_its_batch_end():
    # Ember's own bar's batch end is called without the dispatcher's frame (it never logs: `logs_nothing`); a
    # subclass runs code of its own there, so it gets the full call: `self.log` inside it knows its hook
    class LoggingBar(TQDMProgressBar):
        def get_metrics(self, trainer, pl_module):
            pl_module.log("seen_by_bar", float(trainer.global_step))
            return super().get_metrics(trainer, pl_module)

    trainer = _trainer(LoggingBar(refresh_rate=1), max_epochs=1)
    trainer.fit(Regressor(), train_loader(n=8))
    assert trainer.callback_metrics["seen_by_bar"].item() == 2.0  # the last batch end's step, 2 of 2 batches
