"""``SpikeDetection``: stop training when the loss jumps far above its running mean.

After each training batch the loss is compared with the mean of the last ``window`` losses; a
spike writes the indices of this batch and the one before to a JSON file (so a resumed run can
skip them) and raises ``TrainingSpikeException``. The running mean stays on the device; deciding
whether to stop reads one value back per batch, the price of stopping at the batch that spiked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch

from ember.callbacks.callback import Callback
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer


class TrainingSpikeException(RuntimeError):
    """Raised by ``SpikeDetection`` when the loss spikes."""

    def __init__(self, batch_idx: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(f"Training spike detected in batch {batch_idx}", *args, **kwargs)


class SpikeDetection(Callback):
    """Raise ``TrainingSpikeException`` when the training loss spikes, recording the batches to skip.

    A loss is a spike when it is not an improvement on the previous loss and differs from the
    running mean of the last ``window`` losses by at least ``atol`` and at least ``rtol`` times that
    mean (a tolerance set to ``None`` is not checked); with ``finite_only`` a NaN or infinite loss
    is always one. Only losses that are no spike enter the running mean. In a multi-process run a
    spike on any rank stops every rank. The batches to skip, this one and the one before, are
    written (by rank 0) to ``exclude_batches_path``.

    Args:
        mode: ``"min"`` when a lower loss is better, ``"max"`` when higher is.
        window: how many recent losses the running mean covers.
        warmup: the first batch index that is checked.
        atol: the absolute difference from the running mean a spike needs.
        rtol: the difference relative to the running mean a spike needs.
        exclude_batches_path: the JSON file (or its folder) for the batches to skip; default
            ``<default_root_dir>/skip_batches.json``.
        finite_only: a non-finite loss is a spike; ``False`` ignores such losses instead.

    Example::

        trainer = Trainer(callbacks=[SpikeDetection(window=20, rtol=2.0)])
    """

    def __init__(
        self,
        mode: Literal["min", "max"] = "min",
        window: int = 10,
        warmup: int = 1,
        atol: float | None = None,
        rtol: float | None = 2.0,
        exclude_batches_path: str | os.PathLike | None = None,
        finite_only: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"Invalid mode. Has to be min or max, found {mode}")
        if not (isinstance(window, int) and window > 0):  # Lightning's check and words (torchmetrics' `Running`)
            raise ValueError(
                f"Expected argument `window` to be a positive integer but got {window}"
                " (`SpikeDetection(window=...)`: how many recent losses the running mean covers)."
            )
        self.mode = mode
        self.window = int(window)  # (`True` is 1, as in Lightning)
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.bad_batches: list[int] = []
        self.exclude_batches_path = exclude_batches_path
        self.finite_only = finite_only
        self.last_val: torch.Tensor | float = 0.0
        self._values: torch.Tensor | None = None  # the last `window` losses, a ring on the loss's device
        self._count = 0  # losses in the running mean so far

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Check the batch's loss; on a spike, write the batches to skip and raise."""
        if isinstance(outputs, torch.Tensor):
            loss = outputs.detach()
        elif isinstance(outputs, Mapping):
            loss = outputs["loss"].detach()
        else:
            raise TypeError(f"outputs have to be of type torch.Tensor or Mapping, got {type(outputs).__qualname__}")
        if self.exclude_batches_path is None:
            self.exclude_batches_path = os.path.join(trainer.default_root_dir, "skip_batches.json")
        elif not str(self.exclude_batches_path).endswith(".json"):
            self.exclude_batches_path = os.path.join(self.exclude_batches_path, "skip_batches.json")

        loss = loss.to(torch.float32)
        if loss.numel() == 1:
            loss = loss.reshape(())  # a one-element loss of any shape (e.g. [1, 1]) is one number
        if self._values is not None and self._values.device != loss.device:
            self._values = self._values.to(loss.device)  # restored from a checkpoint on the CPU
        spike, finite = self._decide(loss, check=batch_idx >= self.warmup)
        strategy = trainer.strategy
        # all ranks: a spike anywhere stops everyone
        if strategy.reduce_boolean_decision(spike, all=False):
            self._handle_spike(trainer, batch_idx)
        if self.finite_only or strategy.reduce_boolean_decision(finite, all=True):
            self._update_stats(loss)

    def _decide(self, loss: torch.Tensor, check: bool) -> tuple[bool, bool]:
        """``(is a spike, is finite)``, computed on the device and read back together."""
        finite = torch.isfinite(loss).all()
        if not check:
            if self.finite_only:
                return False, True  # `finite` is not needed: nothing is read back
            return False, bool(finite)  # host sync: only with finite_only=False
        spike = self._is_spike(loss, finite)
        # host sync: one read per batch decides whether training goes on
        spike_value, finite_value = torch.stack([spike, finite]).tolist()
        return bool(spike_value), bool(finite_value)

    def _is_spike(self, loss: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
        if self._values is None or self._count == 0:
            running = torch.full_like(loss, float("nan"))  # no mean yet: nothing is far from it
        else:
            running = self._values[: min(self._count, self.window)].mean()
        diff = loss - self.last_val
        better = (diff <= 0).all() if self.mode == "min" else (diff >= 0).all()
        distance = (loss - running).abs()
        far = torch.ones((), dtype=torch.bool, device=loss.device)
        if self.atol is not None:
            far = far & (distance >= abs(self.atol))
        if self.rtol is not None:
            far = far & (distance >= (self.rtol * running).abs())
        spike = ~better & far
        if self.finite_only:
            spike = spike | ~finite
        return spike

    def _handle_spike(self, trainer: Trainer, batch_idx: int) -> None:
        # this batch may be corrupt, and the one before may have corrupted the weights
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        if trainer.global_rank == 0:
            path = os.fspath(self.exclude_batches_path or "skip_batches.json")
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as file:
                json.dump(self.bad_batches, file, indent=4)
        raise TrainingSpikeException(batch_idx=batch_idx)

    def _update_stats(self, value: torch.Tensor) -> None:
        if self._values is None:
            self._values = torch.zeros(self.window, dtype=torch.float32, device=value.device)
        self._values[self._count % self.window] = value.reshape(())
        self._count += 1
        self.last_val = value

    def state_dict(self) -> dict[str, Any]:
        if self._values is None:
            window: list[float] = []
        else:
            # oldest first; host sync: only when a checkpoint is written
            size = min(self._count, self.window)
            start = self._count % self.window if self._count >= self.window else 0
            window = torch.roll(self._values, -start)[:size].tolist()
        return {
            "last_val": self.last_val.item() if isinstance(self.last_val, torch.Tensor) else self.last_val,
            "mode": self.mode,
            "warmup": self.warmup,
            "atol": self.atol,
            "rtol": self.rtol,
            "bad_batches": self.bad_batches,
            "bad_batches_path": None if self.exclude_batches_path is None else os.fspath(self.exclude_batches_path),
            "window": window,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_val = state_dict["last_val"]
        self.mode = state_dict["mode"]
        self.warmup = state_dict["warmup"]
        self.atol = state_dict["atol"]
        self.rtol = state_dict["rtol"]
        self.bad_batches = list(state_dict["bad_batches"])
        self.exclude_batches_path = state_dict["bad_batches_path"]
        values = state_dict.get("window", [])
        self._values, self._count = None, 0
        for value in values:
            self._update_stats(torch.tensor(value, dtype=torch.float32))
        self.last_val = state_dict["last_val"]


lightning_style_annotations(SpikeDetection)  # Lightning's `typing` forms in the signature
