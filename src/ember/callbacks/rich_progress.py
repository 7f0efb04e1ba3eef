"""``RichProgressBar``: progress bars drawn with rich (imported when the bar starts, not at import).

As in Lightning, ``refresh_rate`` is a rate in redraws a second. The display and the metrics (a host
sync) are refreshed on a loop's first and last batch and in between at that rate, and at most ten
times a second (``min_refresh_interval``), as with the TQDM bar.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Union

from ember.callbacks.callback import ignores_outputs
from ember.callbacks.progress_bar import ProgressBar
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    import rich.style as _rich_style

    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer
else:

    class _LazyRichStyle(types.ModuleType):
        """``rich.style``, imported on first attribute access: the theme's hints resolve, ``import ember`` stays light."""

        def __getattr__(self, name: str) -> Any:
            import rich.style

            return getattr(rich.style, name)

    _rich_style = _LazyRichStyle("rich.style")


@dataclass
class RichProgressBarTheme:
    """Styles of the parts of a :class:`RichProgressBar` (see https://rich.readthedocs.io/en/stable/style.html).

    Example::

        RichProgressBar(theme=RichProgressBarTheme(description="green_yellow", metrics="grey82"))
    """

    # Lightning's annotation, which config parsers read: a style is a name or colour, or rich's `Style`
    description: Union[str, _rich_style.Style] = ""
    progress_bar: Union[str, _rich_style.Style] = "#6206E0"
    progress_bar_finished: Union[str, _rich_style.Style] = "#6206E0"
    progress_bar_pulse: Union[str, _rich_style.Style] = "#6206E0"
    batch_progress: Union[str, _rich_style.Style] = ""
    time: Union[str, _rich_style.Style] = "dim"
    processing_speed: Union[str, _rich_style.Style] = "dim underline"
    metrics: Union[str, _rich_style.Style] = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


_RICH_CLASSES = (
    "CustomProgress",
    "CustomBarColumn",
    "CustomTimeColumn",
    "BatchesProcessedColumn",
    "ProcessingSpeedColumn",
    "MetricsTextColumn",
)


def __getattr__(name: str) -> Any:
    # Lightning's names for rich's `Progress` and the bar's own classes: rich is imported on first use,
    # and each class is made once, so that it can be subclassed, replaced or patched
    if name == "Progress":
        from rich.progress import Progress

        return Progress
    if name in _RICH_CLASSES:
        globals().update(_define_rich_classes())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _metric_texts(metrics: dict[Any, Any], metrics_format: str) -> Iterator[str]:
    """``"name: value"`` for each metric, numbers in ``metrics_format``."""
    for name, value in metrics.items():
        if not isinstance(value, str):
            try:
                value = f"{value:{metrics_format}}"
            except (TypeError, ValueError):
                value = str(value)
        yield f"{name}: {value}"


def _define_rich_classes() -> dict[str, type]:
    from rich.progress import BarColumn, Progress, ProgressColumn
    from rich.progress_bar import ProgressBar as RichBar
    from rich.text import Text

    class CustomProgress(Progress):
        """The rich ``Progress`` the bar draws with."""

    class CustomBarColumn(BarColumn):
        """The bar; it pulses for a loader without a length."""

        def render(self, task: Any) -> Any:
            if task.total is None:
                return super().render(task)
            return RichBar(
                total=max(0, task.total),
                completed=max(0, task.completed),
                width=None if self.bar_width is None else max(1, self.bar_width),
                pulse=not task.started or not math.isfinite(task.remaining),
                animation_time=task.get_time(),
                style=self.style,
                complete_style=self.complete_style,
                finished_style=self.finished_style,
                pulse_style=self.pulse_style,
            )

    class CustomTimeColumn(ProgressColumn):
        """Time spent and time left, ``0:00:12 • 0:01:03``."""

        max_refresh = 0.5  # redraw the clock at most twice a second, to avoid jitter

        def __init__(self, style: Any) -> None:
            self.style = style
            super().__init__()

        def render(self, task: Any) -> Text:
            elapsed = task.finished_time if task.finished else task.elapsed
            remaining = task.time_remaining
            elapsed_s = "-:--:--" if elapsed is None else str(timedelta(seconds=int(elapsed)))
            remaining_s = "-:--:--" if remaining is None else str(timedelta(seconds=int(remaining)))
            return Text(f"{elapsed_s} • {remaining_s}", style=self.style)

    class BatchesProcessedColumn(ProgressColumn):
        """Batches done of the total, ``12/50`` (``12/--`` for a loader without a length)."""

        def __init__(self, style: Any) -> None:
            self.style = style
            super().__init__()

        def render(self, task: Any) -> Text:
            total = "--" if task.total is None or not math.isfinite(task.total) else int(task.total)
            return Text(f"{int(task.completed)}/{total}", style=self.style)

    class ProcessingSpeedColumn(ProgressColumn):
        """Batches a second, ``8.31it/s``."""

        def __init__(self, style: Any) -> None:
            self.style = style
            super().__init__()

        def render(self, task: Any) -> Text:
            speed = f"{task.speed:>.2f}" if task.speed is not None else "0.00"
            return Text(f"{speed}it/s", style=self.style)

    class MetricsTextColumn(ProgressColumn):
        """The last metrics handed to :meth:`update`, shown on the training bar of ``fit`` only."""

        def __init__(self, trainer: Any, style: Any, text_delimiter: str, metrics_format: str) -> None:
            self._trainer = trainer
            self._metrics: dict[Any, Any] = {}
            self._style = style
            self._text_delimiter = text_delimiter
            self._metrics_format = metrics_format
            super().__init__()

        def update(self, metrics: dict[Any, Any]) -> None:
            self._metrics = metrics  # rendered later, from rich's thread: never read the trainer's metrics there

        def render(self, task: Any) -> Text:
            trainer = self._trainer
            bar = trainer.progress_bar_callback
            if trainer.state.fn != "fit" or trainer.sanity_checking or bar.train_progress_bar_id != task.id:
                return Text()
            text = self._text_delimiter.join(self._generate_metrics_texts())
            return Text(text, justify="left", style=self._style)

        def _generate_metrics_texts(self) -> Iterator[str]:
            return _metric_texts(self._metrics, self._metrics_format)

    return {
        cls.__name__: cls
        for cls in (
            CustomProgress,
            CustomBarColumn,
            CustomTimeColumn,
            BatchesProcessedColumn,
            ProcessingSpeedColumn,
            MetricsTextColumn,
        )
    }


class RichProgressBar(ProgressBar):
    """Progress bars with rich formatting (``pip install 'ember[rich]'``).

    Args:
        refresh_rate: the most redraws a second (default 100, as in Lightning; Ember draws no more than ten,
            see ``min_refresh_interval``); ``0`` disables the bar.
        leave: keep each finished epoch's bar on screen.
        theme: the styles of the bar's parts.
        console_kwargs: arguments for the rich ``Console``.

    Raises:
        ModuleNotFoundError: if rich is not installed.

    Example::

        trainer = Trainer(callbacks=[RichProgressBar(refresh_rate=5)])  # five redraws a second
    """

    #: Seconds between two redraws at the least (a loop's first and last batch always redraw): a
    #: terminal shows no more, and each redraw reads the metrics from the device.
    min_refresh_interval: float = 0.1

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
        self._last_redraw = float("-inf")
        self._held: dict[Any, int] = {}  # a bar's count that the clock kept from being drawn
        self._reset_progress_bar_ids()

    def configure_columns(self, trainer: Trainer) -> list:
        """The bar's columns before the metrics: override it to change them, as in Lightning.

        Example::

            class WithSpinner(RichProgressBar):
                def configure_columns(self, trainer):
                    from rich.progress import SpinnerColumn

                    return [SpinnerColumn(), *super().configure_columns(trainer)]
        """
        from rich.progress import TextColumn

        module, theme = sys.modules[__name__], self.theme
        return [
            TextColumn("[progress.description]{task.description}"),
            module.CustomBarColumn(
                complete_style=theme.progress_bar,
                finished_style=theme.progress_bar_finished,
                pulse_style=theme.progress_bar_pulse,
            ),
            module.BatchesProcessedColumn(style=theme.batch_progress),
            module.CustomTimeColumn(style=theme.time),
            module.ProcessingSpeedColumn(style=theme.processing_speed),
        ]

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    # the bars' rich tasks, as Lightning names them (subclasses read their `completed`, `total`, ...)
    @property
    def train_progress_bar(self) -> Any:
        return self._task(self.train_progress_bar_id)

    @property
    def val_sanity_check_bar(self) -> Any:
        return self._task(self.val_sanity_progress_bar_id)

    @property
    def val_progress_bar(self) -> Any:
        return self._task(self.val_progress_bar_id)

    @property
    def test_progress_bar(self) -> Any:
        return self._task(self.test_progress_bar_id)

    def _task(self, task_id: Any) -> Any:
        assert self.progress is not None and task_id is not None, "the bar has not been shown yet"
        return self.progress.tasks[task_id]

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

    def _init_progress(self, trainer: Trainer) -> None:
        if self.is_disabled or (self.progress is not None and not self._progress_stopped):
            return
        from rich import get_console, reconfigure

        self._reset_progress_bar_ids()
        # the global console, as in Lightning, so RichModelSummary and user prints share the live display
        reconfigure(**self._console_kwargs)
        self._console = get_console()
        if getattr(self._console, "_live_stack", None) or getattr(self._console, "_live", None):
            self._console.clear_live()  # a display left over from an interrupted run
        module = sys.modules[__name__]  # the classes are looked up now: they may be replaced
        theme = self.theme
        self._metric_component = module.MetricsTextColumn(
            trainer, theme.metrics, theme.metrics_text_delimiter, theme.metrics_format
        )
        columns = self.configure_columns(trainer)
        self.progress = module.CustomProgress(
            *columns, self._metric_component, auto_refresh=False, console=self._console
        )
        self.progress.start()
        self._progress_stopped = False
        self._held.clear()  # the new progress numbers its tasks from 0 again

    def _stop_progress(self) -> None:
        if self.progress is not None and not self._progress_stopped:
            self.progress.stop()
            self._progress_stopped = True

    @property
    def _live(self) -> bool:
        """Whether a started progress display is drawing."""
        return self.progress is not None and not self._progress_stopped

    def refresh(self, hard: bool = False) -> None:
        """Redraw the display now. Lightning's ``hard=False`` may skip a redraw that comes too soon after the
        last; this one always redraws (the display's own rate limits the rest), so ``hard`` changes nothing."""
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
        # the first and last batch of a loop always redraw, so the bar appears at once, ends complete and
        # has the two samples its speed needs; in between, the clock decides (one comparison a batch)
        now = time.perf_counter()
        if current != 1 and current != total:
            since = now - self._last_redraw
            if since < self.min_refresh_interval or since * self.refresh_rate < 1.0:
                return False
        self._last_redraw = now
        return True

    def _update(self, task_id: Any, current: int) -> bool:
        """Advance a bar on refresh batches only; True when it was redrawn."""
        if not self._live or self.is_disabled or task_id is None:
            return False
        if not self._should_update(current, self.progress.tasks[task_id].total):
            self._held[task_id] = current
            return False
        self._held.pop(task_id, None)
        # eval bars are created hidden and appear with their first redraw
        self.progress.update(task_id, completed=current, visible=True)
        return True

    def _draw_last_count(self, task_id: Any) -> None:
        """Show the count ``task_id``'s loop reached where the clock held its last redraws back: a loop without a
        length has no batch that is the last by count (Lightning's bar takes every count)."""
        count = self._held.pop(task_id, None)
        if self._live and count is not None:
            self.progress.update(task_id, completed=count)

    def _update_metrics(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._metric_component is not None and self.is_enabled:
            self._metric_component.update(self.get_metrics(trainer, pl_module))

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch}"
        if self.trainer.max_epochs is not None:
            description += f"/{self.trainer.max_epochs - 1}"
        # pad to the validation label's width so the bars do not shift
        return f"{description:{len(self.validation_description)}}"

    # ---- hooks -----------------------------------------------------------------------------
    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._hide(self.val_sanity_progress_bar_id)
        self.refresh()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_disabled:
            return
        if self._leave and self.train_progress_bar_id is not None:
            self._stop_progress()
        self._init_progress(trainer)
        total = self.total_train_batches
        description = self._get_train_description(trainer.current_epoch)
        if self.train_progress_bar_id is None:
            self.train_progress_bar_id = self._add_task(total, description)
        else:
            shown = None if not math.isfinite(total) else total
            self.progress.reset(self.train_progress_bar_id, total=shown, description=description, visible=True)
        self.refresh()

    @ignores_outputs
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._update(self.train_progress_bar_id, batch_idx + 1):
            self._update_metrics(trainer, pl_module)
            self.refresh()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._draw_last_count(self.train_progress_bar_id)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

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
        if trainer.state.fn != "fit":  # `validate`'s bar stays
            self._draw_last_count(self.val_progress_bar_id)
        if self.is_enabled and trainer.state.fn == "fit":
            self._hide(self.val_progress_bar_id)
            self.refresh()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":  # the sanity check's end too, as in Lightning
            self._update_metrics(trainer, pl_module)
        self.reset_dataloader_idx_tracker()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

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
        self._draw_last_count(self.test_progress_bar_id)
        self.reset_dataloader_idx_tracker()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

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
        self._draw_last_count(self.predict_progress_bar_id)
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


lightning_style_annotations(RichProgressBar)  # Lightning's `typing` forms in the signature
