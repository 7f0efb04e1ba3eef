"""What users read of logged values: ``callback_metrics``, ``logged_metrics``, ``progress_bar_metrics``.

The running loop's ``LoggedResults`` stay live: their step values are merged into the stored
dicts only when somebody reads them, never per step. Loggers receive Python numbers, which are
read from the device only at a log interval or an epoch end.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

import torch

from ember.trainer.logging import LoggedResults
from ember.trainer.states import RunningStage

if TYPE_CHECKING:
    from ember.trainer.run import Progress
    from ember.trainer.trainer import Trainer


class MetricStore:
    """The three metric dicts of a trainer and the writes to its loggers."""

    def __init__(self, trainer: Trainer, progress: Progress) -> None:
        self.trainer = trainer  # for its loggers
        self.progress = progress  # the step and epoch values are written at
        self.callback: dict[str, Any] = {}
        self.logged: dict[str, Any] = {}
        self.progress_bar: dict[str, Any] = {}
        self.live: LoggedResults | None = None  # the running loop's results (step values)
        self.epoch_end: LoggedResults | None = None  # results whose epoch values are being read
        # a loop's results before its first batch: what its start hooks log (epoch values) is readable at once
        self.epoch_start: LoggedResults | None = None
        self._copies: dict[str, list[Any]] = {}  # asynchronous host copies for the progress bar

    def reset(self) -> None:
        self.callback, self.logged, self.progress_bar = {}, {}, {}
        self.live = None
        self.epoch_end = None
        self.epoch_start = None

    def carry_over(self, previous: MetricStore) -> None:
        """Start with ``previous``'s values (the last call's), as Lightning keeps them until a call's set-up
        is done: ``setup`` hooks, and a call that fails before then, still read them."""
        self.merge(previous.current(0), previous.current(1), previous.current(2))

    def merge(self, callback: dict, log: dict, pbar: dict) -> None:
        self.callback.update(callback)
        self.logged.update(log)
        self.progress_bar.update(pbar)

    def flush_step(self, results: LoggedResults) -> None:
        self.merge(*results.step_metrics())

    def apply_epoch(self, results: LoggedResults) -> None:
        self.merge(*results.epoch_metrics())

    def current(self, which: int) -> dict[str, Any]:
        """One stored dict (0 callback, 1 logged, 2 progress bar) with the running loop's values merged in.

        Called by the readers, never by the loop. As with Lightning's properties, reading one dict leaves
        the other two as they were (a callback reading ``callback_metrics`` at epoch end does not put the
        epoch's values in ``logged_metrics`` before they are sent to the loggers)."""
        store = (self.callback, self.logged, self.progress_bar)[which]
        if self.epoch_start is not None:
            # before the loop's first batch Lightning reads its epoch values; once read, they stay in the dict
            store.update(self.epoch_start.epoch_metrics()[which])
        if self.live is not None:
            store.update(self.live.step_metrics()[which])
        if self.epoch_end is not None:
            store.update(self.epoch_end.epoch_metrics()[which])
        return store

    def callback_metrics(self) -> dict[str, Any]:
        """``trainer.callback_metrics``: the stored values with the running loop's merged in."""
        return self.current(0)

    def logged_metrics(self) -> dict[str, Any]:
        """``trainer.logged_metrics``."""
        return self.current(1)

    def to_cpu(self) -> None:
        for store in (self.callback, self.logged, self.progress_bar):
            for key, value in store.items():
                if isinstance(value, torch.Tensor) and value.device.type != "cpu":
                    store[key] = value.cpu()

    # ---- reading ------------------------------------------------------------------------
    def progress_bar_values(self) -> dict[str, float]:
        # host sync: turns the device values into numbers, only when somebody reads them
        return {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in self.current(2).items()}

    def progress_bar_values_nowait(self) -> dict[str, float]:
        """The progress-bar values for display, without waiting for the GPU.

        CUDA values are copied to pinned host memory asynchronously; a refresh shows the newest copy
        that has completed (at most one refresh behind). CPU values are read directly: reading a
        CPU tensor never waits for a device.
        """
        shown: dict[str, float] = {}
        for key, value in self.current(2).items():
            if not isinstance(value, torch.Tensor):
                shown[key] = value
                continue
            if value.device.type != "cuda":
                shown[key] = value.item()
                continue
            entry = self._copies.get(key)
            if entry is None:
                entry = self._copies[key] = [torch.empty((), dtype=value.dtype, pin_memory=True), None, None, None]
            buffer, event, source, last = entry
            if event is not None and event.query():
                entry[3] = last = buffer.item()  # the copy finished: a host read, no device wait
                entry[1] = event = None
            if event is None and source is not value:
                buffer.copy_(value.detach(), non_blocking=True)
                entry[1] = torch.cuda.Event()
                entry[1].record()
                entry[2] = value
            if last is not None:
                shown[key] = last
        return shown

    # ---- writing to the loggers ---------------------------------------------------------------
    def write(self, metrics: dict[str, Any], step: int | None) -> None:
        """Send ``metrics`` to every logger (an ``epoch`` key is added when no step is given)."""
        trainer = self.trainer
        if not trainer.loggers or not metrics:
            return
        self.logged.update(metrics)
        # host sync: loggers write numbers; this runs only at a log interval or an epoch end
        scalars = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
        if step is None:
            step_value = scalars.pop("step", None)
            if step_value is not None:
                step = int(step_value)
            else:
                scalars.setdefault("epoch", self.progress.epoch)
                step = self.progress.batches_that_stepped
        for logger in trainer.loggers:
            logger.log_metrics(metrics=scalars, step=step)
            logger.save()

    # The three writes below have the names of Lightning's logger connector methods: a logger may look for
    # them on the call stack to tell the trainer's writes from a callback's (dvclive syncs its files then).
    def update_train_step_metrics(self, results: LoggedResults) -> None:
        self.write(results.step_metrics()[1], None)

    def update_train_epoch_metrics(self, results: LoggedResults) -> None:
        self.write(results.epoch_metrics()[1], None)

    def log_eval_end_metrics(self, metrics: dict[str, Any]) -> None:
        self.write(metrics, None)

    def log_eval_step(self, results: LoggedResults, step: int) -> None:
        self.write(results.step_metrics()[1], step)

    def eval_epoch_outputs(self, results: LoggedResults, stage: RunningStage) -> dict[str, Any]:
        """One evaluation dataloader's epoch values, stored for readers and returned for the loggers.

        The sanity check's values go to no logger; in its hooks they are readable, as in Lightning
        (``run_sanity_check`` clears them afterwards), except those of each of several dataloaders,
        which Lightning's sanity check stores nowhere."""
        callback, log, pbar = results.epoch_metrics()
        if stage != RunningStage.SANITY_CHECKING:
            self.merge(callback, log, pbar)
            return dict(log)
        if results.dataloader_idx is None:
            self.merge(callback, log, pbar)
        return {}


def print_results(outputs: list[dict[str, Any]], stage: str) -> None:
    """The table ``validate``/``test`` print: one column per dataloader, laid out as Lightning's plain table.

    Columns are as wide as the longest metric name or header, at least 25 characters and at most half
    the terminal (120 columns when it cannot be asked); the bars span the terminal; dataloaders that do
    not fit beside the names go to further tables; a name longer than half the terminal is wrapped.
    """
    outputs = [{k.split("/dataloader_idx_")[0]: _printable(v) for k, v in d.items()} for d in outputs]
    keys = sorted({k for d in outputs for k in d})
    if not keys:
        return
    headers = [f"DataLoader {i}" for i in range(len(outputs))]
    columns = shutil.get_terminal_size(fallback=(120, 30)).columns or 120
    width = int(min(max(len(max(keys, key=len)), len(max(headers, key=len)), 25), columns / 2))
    per_table = int((columns - width) / width)
    try:
        bar = "─" * columns
        if sys.stdout.encoding is not None:
            bar.encode(sys.stdout.encoding)
    except UnicodeEncodeError:  # a terminal without box-drawing characters
        bar = "-" * columns
    half = int(columns / 2)
    for first in range(0, len(headers), per_table):
        shown = range(first, min(first + per_table, len(headers)))
        row_format = f"{{:^{width}}}" * (len(shown) + 1)
        lines = [bar, row_format.format(f"{stage} Metric".capitalize(), *(headers[i] for i in shown)).rstrip(), bar]
        for key in keys:
            cells = [str(outputs[i][key]) if key in outputs[i] else " " for i in shown]
            name = key
            while len(name) > half:  # a long name wraps over several lines, each with the values, as Lightning's
                lines.append(row_format.format(name[:half], *cells).rstrip())
                name = name[half:]
            if name is key:
                lines.append(row_format.format(name, *cells).rstrip())
            else:
                lines.append(f"{{:^{width}}}{{:^{width}}}".format(name, " ").rstrip())
        lines.append(bar)
        print(os.linesep.join(lines))


def _printable(value: Any) -> Any:
    # host sync: the table is printed once, at the end of `validate`/`test`
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value
