"""``RichProgressBar``: progress bars drawn with rich (imported when the bar starts, not at import).

As with the TQDM bar, the display and the metrics (a host sync) are refreshed only every
``refresh_rate`` batches and at the end of each loop.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import ignores_outputs
from ember.callbacks.progress_bar import ProgressBar

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer


@dataclass
class RichProgressBarTheme:
    """Styles of the parts of a :class:`RichProgressBar` (see https://rich.readthedocs.io/en/stable/style.html).

    Example::

        RichProgressBar(theme=RichProgressBarTheme(description="green_yellow", metrics="grey82"))
    """

    description: Any = ""
    progress_bar: Any = "#6206E0"
    progress_bar_finished: Any = "#6206E0"
    progress_bar_pulse: Any = "#6206E0"
    batch_progress: Any = ""
    time: Any = "dim"
    processing_speed: Any = "dim underline"
    metrics: Any = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


def __getattr__(name: str) -> Any:
    # Lightning's module names for rich's `Progress` and the bar's own progress class; rich is imported on first use
    if name == "Progress":
        from rich.progress import Progress

        return Progress
    if name == "CustomProgress":
        from rich.progress import Progress

        class CustomProgress(Progress):
            """The rich ``Progress`` the bar draws with (Lightning's name, so it can be replaced or patched)."""

        globals()["CustomProgress"] = CustomProgress  # one class for the process
        return CustomProgress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _columns(theme: RichProgressBarTheme) -> tuple[list[Any], Any]:
    """The bar's columns (built here so rich is imported only when a bar starts) and the metrics column."""
    from rich.progress import BarColumn, ProgressColumn, TextColumn
    from rich.text import Text

    class TimeColumn(ProgressColumn):
        max_refresh = 0.5  # redraw the clock at most twice a second, to avoid jitter

        def render(self, task: Any) -> Text:
            elapsed = task.finished_time if task.finished else task.elapsed
            remaining = task.time_remaining
            elapsed_s = "-:--:--" if elapsed is None else str(timedelta(seconds=int(elapsed)))
            remaining_s = "-:--:--" if remaining is None else str(timedelta(seconds=int(remaining)))
            return Text(f"{elapsed_s} • {remaining_s}", style=theme.time)

    class BatchesColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            total = "--" if task.total is None else int(task.total)
            return Text(f"{int(task.completed)}/{total}", style=theme.batch_progress)

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = f"{task.speed:>.2f}" if task.speed is not None else "0.00"
            return Text(f"{speed}it/s", style=theme.processing_speed)

    class MetricsColumn(ProgressColumn):
        """Shows the last metrics handed to :meth:`update`, on the training bar only."""

        def __init__(self) -> None:
            super().__init__()
            self.metrics: dict[str, Any] = {}
            self.task_id: Any = None

        def update(self, metrics: dict[str, Any]) -> None:
            self.metrics = metrics

        def render(self, task: Any) -> Text:
            if task.id != self.task_id:
                return Text()
            texts = []
            for name, value in self.metrics.items():
                if not isinstance(value, str):
                    try:
                        value = f"{value:{theme.metrics_format}}"
                    except (TypeError, ValueError):
                        value = str(value)
                texts.append(f"{name}: {value}")
            return Text(theme.metrics_text_delimiter.join(texts), justify="left", style=theme.metrics)

    columns = [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(
            complete_style=theme.progress_bar,
            finished_style=theme.progress_bar_finished,
            pulse_style=theme.progress_bar_pulse,
        ),
        BatchesColumn(),
        TimeColumn(),
        SpeedColumn(),
    ]
    return columns, MetricsColumn()


class RichProgressBar(ProgressBar):
    """Progress bars with rich formatting (``pip install 'ember[rich]'``).

    Args:
        refresh_rate: redraw every this many batches (default 100, as in Lightning); ``0`` disables the bar.
        leave: keep each finished epoch's bar on screen.
        theme: the styles of the bar's parts.
        console_kwargs: arguments for the rich ``Console``.

    Raises:
        ModuleNotFoundError: if rich is not installed.

    Example::

        trainer = Trainer(callbacks=[RichProgressBar(refresh_rate=5)])
    """

    def __init__(
        self,
        refresh_rate: int = 100,
        leave: bool = False,
        theme: RichProgressBarTheme = RichProgressBarTheme(),
        console_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if importlib.util.find_spec("rich") is None:
            raise ModuleNotFoundError(
                "`RichProgressBar` requires `rich` to be installed. Install it by running `pip install 'ember[rich]'`."
            )
        super().__init__()
        self._refresh_rate = refresh_rate
        self._leave = leave
        self.theme = theme
        self._console_kwargs = console_kwargs or {}
        self._console: Any = None
        self._enabled = True
        self.progress: Any = None  # kept after a call ends (stopped), so its tasks can be read, as in Lightning
        self._progress_stopped = False
        self._metric_component: Any = None
        self._reset_progress_bar_ids()

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.refresh_rate > 0

    @property
    def is_disabled(self) -> bool:
        return not self.is_enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _reset_progress_bar_ids(self) -> None:
        self.train_progress_bar_id: Any = None
        self.val_sanity_progress_bar_id: Any = None
        self.val_progress_bar_id: Any = None
        self.test_progress_bar_id: Any = None
        self.predict_progress_bar_id: Any = None

    def _init_progress(self) -> None:
        if self.is_disabled or (self.progress is not None and not self._progress_stopped):
            return
        from rich import get_console, reconfigure

        self._reset_progress_bar_ids()
        # the global console, as in Lightning, so RichModelSummary and user prints share the live display
        reconfigure(**self._console_kwargs)
        self._console = get_console()
        if getattr(self._console, "_live_stack", None) or getattr(self._console, "_live", None):
            self._console.clear_live()  # a display left over from an interrupted run
        columns, self._metric_component = _columns(self.theme)
        progress_class = sys.modules[__name__].CustomProgress  # looked up now: it may be replaced
        self.progress = progress_class(*columns, self._metric_component, auto_refresh=False, console=self._console)
        self.progress.start()
        self._progress_stopped = False

    def _stop_progress(self) -> None:
        if self.progress is not None and not self._progress_stopped:
            self.progress.stop()
            self._progress_stopped = True

    @property
    def _live(self) -> bool:
        """Whether a started progress display is drawing."""
        return self.progress is not None and not self._progress_stopped

    def refresh(self) -> None:
        if self._live:
            self.progress.refresh()

    def _add_task(self, total: float | None, description: str, visible: bool = True) -> Any:
        if total is not None and not math.isfinite(total):
            total = None  # an endless dataloader: rich draws a pulsing bar
        if self.theme.description:
            description = f"[{self.theme.description}]{description}"
        return self.progress.add_task(description, total=total, visible=visible)

    def _hide(self, task_id: Any) -> None:
        if self._live and task_id is not None:
            self.progress.update(task_id, advance=0, visible=False)

    def _should_update(self, current: int, total: float | None) -> bool:
        return current % self.refresh_rate == 0 or current == total

    def _update(self, task_id: Any, current: int) -> bool:
        """Advance a bar on refresh batches only; True when it was redrawn."""
        if not self._live or self.is_disabled or task_id is None:
            return False
        if not self._should_update(current, self.progress.tasks[task_id].total):
            return False
        # eval bars are created hidden and appear with their first redraw
        self.progress.update(task_id, completed=current, visible=True)
        return True

    def _update_metrics(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._metric_component is not None and self.is_enabled:
            self._metric_component.update(self.get_metrics(trainer, pl_module))

    def _train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch}"
        if self.trainer.max_epochs is not None:
            description += f"/{self.trainer.max_epochs - 1}"
        # pad to the validation label's width so the bars do not shift
        return f"{description:{len(self.validation_description)}}"

    # ---- hooks -----------------------------------------------------------------------------
    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress()

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._hide(self.val_sanity_progress_bar_id)
        self.refresh()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_disabled:
            return
        if self._leave and self.train_progress_bar_id is not None:
            self._stop_progress()
        self._init_progress()
        total = self.total_train_batches
        description = self._train_description(trainer.current_epoch)
        if self.train_progress_bar_id is None:
            self.train_progress_bar_id = self._add_task(total, description)
        else:
            shown = None if not math.isfinite(total) else total
            self.progress.reset(self.train_progress_bar_id, total=shown, description=description, visible=True)
        self._metric_component.task_id = self.train_progress_bar_id
        self.refresh()

    @ignores_outputs
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._update(self.train_progress_bar_id, batch_idx + 1):
            self._update_metrics(trainer, pl_module)
            self.refresh()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.is_disabled or not self._live or not self.has_dataloader_changed(dataloader_idx):
            return
        total = self.total_val_batches_current_dataloader
        if trainer.sanity_checking:
            self._hide(self.val_sanity_progress_bar_id)
            self.val_sanity_progress_bar_id = self._add_task(total, self.sanity_check_description, visible=False)
        else:
            self._hide(self.val_progress_bar_id)
            self.val_progress_bar_id = self._add_task(total, self.validation_description, visible=False)
        self.refresh()

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        task_id = self.val_sanity_progress_bar_id if trainer.sanity_checking else self.val_progress_bar_id
        if self._update(task_id, batch_idx + 1):
            self.refresh()

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_enabled and trainer.state.fn == "fit":
            self._hide(self.val_progress_bar_id)
            self.refresh()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._update_metrics(trainer, pl_module)
        self.reset_dataloader_idx_tracker()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress()

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.is_disabled or not self._live or not self.has_dataloader_changed(dataloader_idx):
            return
        self._hide(self.test_progress_bar_id)
        self.test_progress_bar_id = self._add_task(self.total_test_batches_current_dataloader, self.test_description)
        self.refresh()

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._update(self.test_progress_bar_id, batch_idx + 1):
            self.refresh()

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress()

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.is_disabled or not self._live or not self.has_dataloader_changed(dataloader_idx):
            return
        self._hide(self.predict_progress_bar_id)
        self.predict_progress_bar_id = self._add_task(
            self.total_predict_batches_current_dataloader, self.predict_description
        )
        self.refresh()

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._update(self.predict_progress_bar_id, batch_idx + 1):
            self.refresh()

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._stop_progress()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop_progress()

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print above the live bars."""
        if self._console is not None:
            self._console.print(*args, **kwargs)
        else:
            print(*args, **kwargs)

    def __getstate__(self) -> dict:
        # the console and the live display hold locks that cannot be pickled
        state = self.__dict__.copy()
        state["progress"] = None
        state["_console"] = None
        state["_metric_component"] = None
        return state
