"""``TQDMProgressBar``: the default progress bar, drawn with tqdm on stderr.

The bar redraws every ``refresh_rate`` batches and on the last batch, at most ten times a second.
Only a redraw reads ``trainer.progress_bar_metrics`` (which copies logged tensors to the host); the
batches in between cost a clock read and a comparison or two. A count the clock held back is kept in
the bar (``bar.n``) and drawn as the bar's last frame, where a loop without a length has no batch that
is the last by count.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from tqdm import tqdm as _tqdm

from ember.callbacks.callback import ignores_outputs, logs_nothing
from ember.callbacks.progress_bar import ProgressBar
from ember.utilities.argument_checks import check_number, check_type
from ember.utilities.rank_zero import rank_zero_debug
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

_PAD_SIZE = 5


class Tqdm(_tqdm):
    """A tqdm bar that pads numbers in the postfix so the line does not flicker as digits change.

    It starts no monitor thread (tqdm's, which wakes every ten seconds to redraw a bar whose ``update`` calls
    grew sparse): the progress bar sets ``n`` and redraws by its own clock, so the monitor would never act,
    and training runs without a second Python thread.
    """

    monitor_interval = 0

    @staticmethod
    def format_num(n: int | float | str) -> str:
        """Format ``n`` like tqdm, then pad floats and numeric strings with zeros to five characters."""
        should_be_padded = isinstance(n, (float, str))
        text = n if isinstance(n, str) else _tqdm.format_num(n)
        if should_be_padded and "e" not in text:
            if "." not in text and len(text) < _PAD_SIZE:
                try:
                    float(text)
                except ValueError:
                    return text
                text += "."
            text += "0" * (_PAD_SIZE - len(text))
        return text


def _bar_property(stage: str) -> property:
    """``<stage>_progress_bar``: the bar once it exists (a TypeError before, as in Lightning)."""
    attribute = f"_{stage}_progress_bar"

    def get(self: TQDMProgressBar) -> _tqdm:
        bar = getattr(self, attribute)
        if bar is None:
            raise self._unset(stage)
        return bar

    def set_(self: TQDMProgressBar, bar: _tqdm) -> None:
        setattr(self, attribute, bar)

    return property(get, set_, doc=f"The {stage} progress bar.")


class TQDMProgressBar(ProgressBar):
    """The default progress bar: training, validation, sanity-check, test and predict bars drawn with tqdm.

    Args:
        refresh_rate: redraw every this many batches; ``0`` disables the bar.
        process_position: offset the bars by this many lines (to stack with other bars).
        leave: keep each finished epoch's bar on screen instead of reusing one line.

    Example::

        trainer = Trainer(callbacks=[TQDMProgressBar(refresh_rate=10)])
    """

    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"

    #: Seconds between two redraws at the least (a loop's last count is always drawn); set it to 0
    #: to redraw on every ``refresh_rate``-th batch whatever the speed.
    min_refresh_interval: float = 0.1

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__()
        check_number("TQDMProgressBar", "refresh_rate", refresh_rate, "a number: redraw every `refresh_rate` batches")
        check_type("TQDMProgressBar", "process_position", process_position, (int,), "an int: the bar's line offset")
        self._refresh_rate = self._resolve_refresh_rate(refresh_rate)
        self._last_redraw = float("-inf")
        self._process_position = process_position
        self._leave = leave
        self._enabled = True
        self._train_progress_bar: _tqdm | None = None
        self._val_progress_bar: _tqdm | None = None
        self._test_progress_bar: _tqdm | None = None
        self._predict_progress_bar: _tqdm | None = None

    def __getstate__(self) -> dict:
        # tqdm objects hold the output stream and cannot be pickled
        return {k: (None if isinstance(v, _tqdm) else v) for k, v in vars(self).items()}

    # ---- the four bars ---------------------------------------------------------------------
    def _unset(self, name: str) -> TypeError:
        return TypeError(f"The `{self.__class__.__name__}._{name}_progress_bar` reference has not been set yet.")

    train_progress_bar = _bar_property("train")
    val_progress_bar = _bar_property("val")
    test_progress_bar = _bar_property("test")
    predict_progress_bar = _bar_property("predict")

    # ---- settings ----------------------------------------------------------------------------
    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def process_position(self) -> int:
        return self._process_position

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

    # ---- bar factories (override to customise) -----------------------------------------------
    def _new_bar(self, desc: str, position: int, leave: bool, **kwargs: Any) -> Tqdm:
        return Tqdm(
            desc=desc,
            position=position,
            disable=self.is_disabled,
            leave=leave,
            dynamic_ncols=True,
            # looked up now, not at import, so redirected or captured stderr is honoured
            file=sys.stderr,
            bar_format=self.BAR_FORMAT,
            **kwargs,
        )

    def init_sanity_tqdm(self) -> Tqdm:
        """The bar for the validation sanity check."""
        return self._new_bar(self.sanity_check_description, 2 * self.process_position, leave=False)

    def init_train_tqdm(self) -> Tqdm:
        """The bar for training."""
        return self._new_bar(self.train_description, 2 * self.process_position, leave=True, smoothing=0)

    def init_predict_tqdm(self) -> Tqdm:
        """The bar for prediction."""
        return self._new_bar(self.predict_description, 2 * self.process_position, leave=True, smoothing=0)

    def init_validation_tqdm(self) -> Tqdm:
        """The bar for validation: below the training bar during fit, alone under ``trainer.validate``."""
        has_main_bar = self.trainer.state.fn != "validate"
        return self._new_bar(
            self.validation_description, 2 * self.process_position + has_main_bar, leave=not has_main_bar
        )

    def init_test_tqdm(self) -> Tqdm:
        """The bar for testing."""
        return self._new_bar(self.test_description, 2 * self.process_position, leave=True)

    # ---- sanity check --------------------------------------------------------------------------
    def on_sanity_check_start(self, *_: Any) -> None:
        self.val_progress_bar = self.init_sanity_tqdm()
        self.train_progress_bar = Tqdm(disable=True)  # placeholder until training starts

    def on_sanity_check_end(self, *_: Any) -> None:
        self.val_progress_bar.close()
        self.train_progress_bar.close()

    # ---- training ------------------------------------------------------------------------------
    def on_train_start(self, *_: Any) -> None:
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        total = convert_inf(self.total_train_batches)
        # reset first, then the total: the bar is not redrawn with the old description and new total
        self.train_progress_bar.reset()
        self.train_progress_bar.total = total
        self.train_progress_bar.initial = 0
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch}")

    @ignores_outputs
    @logs_nothing
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n, bar = batch_idx + 1, self._train_progress_bar
        if (
            bar is not None  # (else the property below raises Lightning's TypeError)
            and n != bar.total
            and time.perf_counter() - self._last_redraw < self.min_refresh_interval
        ):
            # `_advance`'s most frequent case, without its call: between two redraws (so the bar is enabled
            # and `refresh_rate` is not 0), the count only
            if n % self._refresh_rate == 0:
                bar.n = n
            return
        bar = self.train_progress_bar
        if self._advance(bar, n, draw=False):
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # draws the new count with its metrics, once

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.train_progress_bar.disable:  # redraws: the epoch's last count, if the clock held it back
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
        if self._leave:
            self.train_progress_bar.close()

    def on_train_end(self, *_: Any) -> None:
        self.train_progress_bar.close()

    # ---- validation ----------------------------------------------------------------------------
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_progress_bar = self.init_validation_tqdm()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.val_progress_bar
        _draw_last_count(bar)  # the previous dataloader's
        total = convert_inf(self.total_val_batches_current_dataloader)
        bar.reset()
        bar.total = total
        bar.initial = 0
        desc = self.sanity_check_description if trainer.sanity_checking else self.validation_description
        bar.set_description(f"{desc} DataLoader {dataloader_idx}")

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._advance(self.val_progress_bar, batch_idx + 1)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _draw_last_count(self.val_progress_bar)
        self.val_progress_bar.close()
        self.reset_dataloader_idx_tracker()
        # a disabled bar (the sanity check's placeholder, refresh_rate=0, other ranks) shows nothing:
        # skip the metrics read, which copies every logged value to the host
        bar = self._train_progress_bar
        if bar is not None and not bar.disable and trainer.state.fn == "fit":
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    # ---- test ----------------------------------------------------------------------------------
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_progress_bar = self.init_test_tqdm()

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        self._restart_bar(
            self.test_progress_bar,
            self.total_test_batches_current_dataloader,
            f"{self.test_description} DataLoader {dataloader_idx}",
        )

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._advance(self.test_progress_bar, batch_idx + 1)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _draw_last_count(self.test_progress_bar)
        self.test_progress_bar.close()
        self.reset_dataloader_idx_tracker()

    # ---- predict -------------------------------------------------------------------------------
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.predict_progress_bar = self.init_predict_tqdm()

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        self._restart_bar(
            self.predict_progress_bar,
            self.total_predict_batches_current_dataloader,
            f"{self.predict_description} DataLoader {dataloader_idx}",
        )

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._advance(self.predict_progress_bar, batch_idx + 1)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _draw_last_count(self.predict_progress_bar)
        self.predict_progress_bar.close()
        self.reset_dataloader_idx_tracker()

    # ---- helpers -------------------------------------------------------------------------------
    def _advance(self, bar: _tqdm, n: int, draw: bool = True) -> bool:
        """Move ``bar`` to batch ``n`` and redraw it (True) where Lightning would (:meth:`_should_update`),
        but not more often than every ``min_refresh_interval`` seconds, the last batch excepted. With
        ``draw=False`` the caller redraws (the training bar, with its metrics: one frame, where Lightning
        draws the new count, then again with the metrics).

        A count the clock alone holds back goes into ``bar.n`` undrawn (as Lightning's bar counts it), and
        the bar's last frame shows it (:func:`_draw_last_count`): a loop without a length has no batch that
        is the last by count. The clock is read first, so a batch between two redraws costs a comparison
        (and a modulo). It is `perf_counter`, not `time.monotonic`, which the loop reads for a time-based
        `val_check_interval` (as Lightning does): a program that fakes that clock sees only Lightning's reads.
        """
        if n != bar.total:
            # a terminal shows no more than ~10 redraws a second: skipping the others saves the
            # formatting and the metric reads they would cost on fast steps
            now = time.perf_counter()
            if now - self._last_redraw < self.min_refresh_interval:
                # only after a redraw, so the bar is enabled and `refresh_rate` is not 0
                if n % self._refresh_rate == 0:
                    bar.n = n
                return False
            if not self._should_update(n, bar.total):
                return False
            self._last_redraw = now
        elif not self.is_enabled:
            return False
        _update_n(bar, n, draw)
        return True

    @staticmethod
    def _restart_bar(bar: _tqdm, total: int | float | None, description: str) -> None:
        """Show a new dataloader on ``bar``: the previous one's last count, then reset, then the total (no
        redraw with the old total)."""
        _draw_last_count(bar)
        bar.reset()
        bar.total = convert_inf(total)
        bar.initial = 0
        bar.set_description(description)

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """Print through the active bar so the message appears above it rather than inside it."""
        for bar in (
            self._train_progress_bar,
            self._val_progress_bar,
            self._test_progress_bar,
            self._predict_progress_bar,
        ):
            if bar is not None and not bar.disable:
                bar.write(sep.join(map(str, args)), **kwargs)
                return
        print(*args, sep=sep, **kwargs)  # no bar on screen: a plain print

    def _should_update(self, current: int, total: int | None) -> bool:
        """Lightning's rule: batch ``current`` redraws every ``refresh_rate`` batches and on the last one."""
        return self.is_enabled and (current % self.refresh_rate == 0 or current == total)

    @staticmethod
    def _resolve_refresh_rate(refresh_rate: int) -> int:
        if os.getenv("COLAB_GPU") and refresh_rate == 1:
            # redrawing every batch crashes Colab's output cell
            rank_zero_debug("Using a higher refresh rate on Colab. Setting it to `20`")
            return 20
        if "TQDM_MINITERS" in os.environ:
            return max(int(os.environ["TQDM_MINITERS"]), refresh_rate)
        return refresh_rate


def convert_inf(x: int | float | None) -> int | float | None:
    """tqdm cannot show an infinite or NaN total: turn those into ``None`` (an open-ended bar)."""
    if x is None or math.isinf(x) or math.isnan(x):
        return None
    return x


def _update_n(bar: _tqdm, value: int, draw: bool = True) -> None:
    if not bar.disable:
        bar.n = bar.last_print_n = value  # tqdm's record of the count it drew last
        if draw:
            bar.refresh()


def _draw_last_count(bar: _tqdm) -> None:
    """Redraw ``bar`` where its count went on past its last frame (held back by the clock), so that a loop
    ends showing the count it reached, as Lightning's bar, which redraws every ``refresh_rate`` batches."""
    if not bar.disable and bar.n != bar.last_print_n:
        bar.last_print_n = bar.n
        bar.refresh()


lightning_style_annotations(TQDMProgressBar)  # Lightning's `typing` forms in the signature
