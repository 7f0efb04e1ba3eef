"""``ThroughputMonitor``: log batches, samples (and items, FLOPs, MFU) per second.

Training throughput leaves out the time spent in validation. On a GPU the clock needs the device
to have finished its work: the device is synchronized only at the batches where the rates are
logged (every ``log_every_n_steps``), not after every batch. The rates are taken between two
updates a window apart; the one at the log point has waited for the device, so the rate is exact
up to how far the host ran ahead at the window's first batch, a small fraction of the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks import _cadence
from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations
from ember.utilities.throughput import Throughput, get_available_flops, precision_to_dtype

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

_TRAIN, _VALIDATE, _TEST, _PREDICT = "train", "validate", "test", "predict"


class ThroughputMonitor(Callback):
    r"""Compute and log throughput with :class:`~ember.utilities.throughput.Throughput`.

    Logged keys are prefixed with the stage: ``train/device/samples_per_sec``,
    ``validate/device/batches_per_sec``, ``train/time``, ``train/samples``, ... (the metrics of
    ``Throughput.compute``). Training logs when an optimizer step closes a batch at the trainer's
    log cadence; validation, test and predict every ``log_every_n_steps`` of their batches. Only
    rank 0 measures and logs.

    Args:
        batch_size_fn: the number of samples in a batch (assumed the same on every device).
        length_fn: the number of items (e.g. tokens) in a batch, for ``items_per_sec``.
        \**kwargs: passed to ``Throughput`` (``window_size``, ``separator``).

    The module may define ``flops_per_batch`` (see :func:`~ember.utilities.measure_flops`) to get
    ``flops_per_sec`` and, on a GPU Ember knows, ``device/mfu``.

    Example::

        trainer = Trainer(callbacks=[ThroughputMonitor(batch_size_fn=lambda batch: batch[0].size(0))])
    """

    def __init__(
        self, batch_size_fn: Callable[[Any], int], length_fn: Callable[[Any], int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.batch_size_fn = batch_size_fn
        self.length_fn = length_fn
        self.available_flops: int | None = None
        self._throughputs: dict[str, Throughput] = {}
        self._t0s: dict[str, float] = {}
        self._lengths: dict[str, int] = {}
        self._samples: dict[str, int] = {}
        self._batches: dict[str, int] = {}
        # batches of an evaluation or predict loop so far (its log step), per loop: fit's validation is its own
        self._loop_batches: dict[tuple[str, str], int] = {}
        self._run_batches: dict[str, int] = {}  # batches of the stage's current run: they decide when to log
        self._module_has_flops: bool | None = None
        self._cuda = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        device = trainer.strategy.root_device
        self._cuda = device.type == "cuda"
        self.available_flops = get_available_flops(device, precision_to_dtype(str(trainer.precision)))
        if stage == "fit":
            # fit's validation gets its own when it first runs: only a fit that validates has one, as in Lightning
            self._throughputs.pop(_VALIDATE, None)
        self._throughputs[_TRAIN if stage == "fit" else getattr(stage, "value", stage)] = self._new_throughput(trainer)

    def _new_throughput(self, trainer: Trainer) -> Throughput:
        return Throughput(available_flops=self.available_flops, world_size=trainer.world_size, **self.kwargs)

    def _start(self, trainer: Trainer, stage: str) -> None:
        if stage not in self._throughputs:
            self._throughputs[stage] = self._new_throughput(trainer)
        if trainer.state.fn == "fit" or stage not in self._samples:
            self._throughputs[stage].reset()
            self._lengths[stage] = self._samples[stage] = self._batches[stage] = 0
        # an evaluation's log step counts on across calls (Lightning's loops keep their totals); in fit,
        # the validation's restarts with every training epoch
        self._loop_batches.setdefault(_loop_key(trainer, stage), 0)
        self._run_batches[stage] = 0
        self._t0s[stage] = time.perf_counter()

    @torch.inference_mode()  # `batch_size_fn` or `length_fn` may compute on tensors
    def _update(self, pl_module: LightningModule, batch: Any, stage: str, synchronize: bool) -> None:
        if synchronize and self._cuda:
            # host sync: the rates are about to be logged, so the clock must see the work done
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - self._t0s[stage]
        if self.length_fn is not None:
            self._lengths[stage] += self.length_fn(batch)
        if self._module_has_flops is None:
            self._module_has_flops = hasattr(pl_module, "flops_per_batch")
            if not self._module_has_flops:
                rank_zero_warn(
                    "When using the `ThroughputMonitor`, you need to define a `flops_per_batch` attribute or property"
                    f" in {type(pl_module).__name__} to compute the FLOPs."
                )
        self._samples[stage] += self.batch_size_fn(batch)
        self._batches[stage] += 1
        self._throughputs[stage].update(
            time=elapsed,
            batches=self._batches[stage],
            samples=self._samples[stage],  # assumes the same batch size on every device
            lengths=None if self.length_fn is None else self._lengths[stage],
            flops=getattr(pl_module, "flops_per_batch", None) if self._module_has_flops else None,
        )

    def _log(self, trainer: Trainer, stage: str, step: int | None) -> None:
        throughput = self._throughputs[stage]
        metrics = {f"{stage}{throughput.separator}{k}": v for k, v in throughput.compute().items()}
        _cadence.write_metrics(trainer, metrics, step)

    def _loop_batch_end(self, trainer: Trainer, pl_module: LightningModule, batch: Any, stage: str) -> None:
        # as Lightning: the run's batches decide when to log, the loop's so far are the logged step
        key = _loop_key(trainer, stage)
        self._loop_batches[key] = batches = self._loop_batches.get(key, 0) + 1
        self._run_batches[stage] = self._run_batches.get(stage, 0) + 1
        due = _cadence.loop_log_due(trainer, self._run_batches[stage])
        self._update(pl_module, batch, stage, synchronize=due)
        if due:
            self._log(trainer, stage, batches)

    @rank_zero_only
    def on_train_start(self, trainer: Trainer, *_: Any) -> None:
        self._start(trainer, _TRAIN)

    @rank_zero_only
    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        self._loop_batches[_loop_key(trainer, _VALIDATE)] = 0

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # only when an optimizer step closed the batch, so the step's time is counted in full
        accumulate = trainer.accumulate_grad_batches
        last = batch_idx + 1 >= trainer.num_training_batches
        stepped = not pl_module.automatic_optimization or (batch_idx + 1) % accumulate == 0 or last
        due = stepped and _cadence.training_log_due(trainer)
        self._update(pl_module, batch, _TRAIN, synchronize=due)
        if due:
            self._log(trainer, _TRAIN, None)

    @rank_zero_only
    def on_validation_start(self, trainer: Trainer, *_: Any) -> None:
        if not trainer.sanity_checking:
            self._start(trainer, _VALIDATE)

    @rank_zero_only
    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any, **__: Any
    ) -> None:
        if not trainer.sanity_checking:
            self._loop_batch_end(trainer, pl_module, batch, _VALIDATE)

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, *_: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or _TRAIN not in self._t0s:
            return
        # training time goes on after validation as if validation had taken no time
        train_times = self._throughputs[_TRAIN]._time
        val_times = self._throughputs[_VALIDATE]._time
        training_finished = self._t0s[_TRAIN] + (train_times[-1] if train_times else 0.0)
        gap = self._t0s[_VALIDATE] - training_finished
        self._t0s[_TRAIN] += gap + (val_times[-1] if val_times else 0.0)

    @rank_zero_only
    def on_test_start(self, trainer: Trainer, *_: Any) -> None:
        self._start(trainer, _TEST)

    @rank_zero_only
    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any, **__: Any
    ) -> None:
        self._loop_batch_end(trainer, pl_module, batch, _TEST)

    @rank_zero_only
    def on_predict_start(self, trainer: Trainer, *_: Any) -> None:
        self._start(trainer, _PREDICT)

    @rank_zero_only
    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any, **__: Any
    ) -> None:
        self._loop_batch_end(trainer, pl_module, batch, _PREDICT)


def _loop_key(trainer: Trainer, stage: str) -> tuple[str, str]:
    """Which loop counts the batches: the validation inside ``fit`` is not ``validate``'s, as in Lightning."""
    return (str(getattr(trainer.state.fn, "value", trainer.state.fn)), stage)


lightning_style_annotations(ThroughputMonitor)  # Lightning's `typing` forms in the signature
