"""``DeviceStatsMonitor``: log the device's memory statistics (CUDA) or the CPU's load (psutil).

Stats are read only at the trainer's log points (every ``log_every_n_steps`` batches), where the
trainer writes its own values; reading them waits for nothing on the device:
``torch.cuda.memory_stats`` reads the caching allocator's counters on the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks import _cadence
from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.imports import RequirementCache, flag_or_importable
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

_CPU_VM_PERCENT = "cpu_vm_percent"
_CPU_PERCENT = "cpu_percent"
_CPU_SWAP_PERCENT = "cpu_swap_percent"


_PSUTIL_AVAILABLE = RequirementCache("psutil")  # Lightning's flag, decided on first use


def _psutil_available() -> bool:
    return flag_or_importable(_PSUTIL_AVAILABLE, "psutil")


def get_cpu_stats() -> dict[str, float]:
    """System-wide CPU, memory and swap use in percent, from ``psutil``.

    Raises:
        ModuleNotFoundError: ``psutil`` is not installed.
    """
    if not _psutil_available():
        raise ModuleNotFoundError(
            "Fetching CPU device stats requires `psutil` to be installed. Requirement 'psutil' not met."
            " HINT: Try running `pip install -U 'psutil'`"
        )
    import psutil

    return {
        _CPU_VM_PERCENT: psutil.virtual_memory().percent,
        _CPU_PERCENT: psutil.cpu_percent(),
        _CPU_SWAP_PERCENT: psutil.swap_memory().percent,
    }


def get_device_stats(device: torch.device) -> dict[str, Any]:
    """The stats of ``device``: CUDA caching-allocator counters, or CPU use for the CPU and MPS."""
    if device.type == "cuda":
        return torch.cuda.memory_stats(device)
    return get_cpu_stats()


class DeviceStatsMonitor(Callback):
    r"""Log device statistics during training, validation and test batches.

    Keys are ``DeviceStatsMonitor.{hook}/{stat}`` (the separator is the logger's
    ``group_separator``), for the hooks ``on_train_batch_start``, ``on_train_batch_end``, and the
    same for validation and test, logged at the trainer's logger step:

    - CUDA: every counter of ``torch.cuda.memory_stats`` (``allocated_bytes.all.current``,
      ``reserved_bytes.all.peak``, ``num_ooms``, ...).
    - CPU (and MPS): ``cpu_percent``, ``cpu_vm_percent`` and ``cpu_swap_percent``, from ``psutil``.

    Args:
        cpu_stats: ``None`` logs CPU stats only when training on the CPU; ``True`` also on a GPU;
            ``False`` never.

    Raises:
        MisconfigurationException: at ``fit``, when the trainer has no logger.
        ModuleNotFoundError: at ``fit``, when CPU stats are due and ``psutil`` is not installed.

    Example::

        trainer = Trainer(callbacks=[DeviceStatsMonitor()], log_every_n_steps=50)
    """

    def __init__(self, cpu_stats: bool | None = None) -> None:
        self._cpu_stats = cpu_stats
        self._batches = 0  # batches started in the current evaluation loop

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise MisconfigurationException("Cannot use `DeviceStatsMonitor` callback with `Trainer(logger=False)`.")
        device = trainer.strategy.root_device
        if self._cpu_stats is None and device.type == "cpu" and not _psutil_available():
            raise ModuleNotFoundError(
                "`DeviceStatsMonitor` cannot log CPU stats as `psutil` is not installed. Requirement 'psutil' not"
                " met. HINT: Try running `pip install -U 'psutil'` (or pass `DeviceStatsMonitor(cpu_stats=False)`)"
            )

    def _log(self, trainer: Trainer, key: str, due: bool) -> None:
        if not due:
            return
        device = trainer.strategy.root_device
        if self._cpu_stats is False and device.type == "cpu":
            return
        stats = get_device_stats(device)
        if self._cpu_stats and device.type != "cpu":
            stats.update(get_cpu_stats())
        prefix = f"{type(self).__qualname__}.{key}"
        step = _cadence.logger_step(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(_prefix_metric_keys(stats, prefix, logger.group_separator), step=step)

    def _eval_batch(self, trainer: Trainer, key: str, started: bool) -> None:
        if started:
            self._batches += 1
        self._log(trainer, key, _cadence.loop_log_due(trainer, self._batches))

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._log(trainer, "on_train_batch_start", _cadence.training_log_due(trainer))

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._log(trainer, "on_train_batch_end", _cadence.training_log_due(trainer))

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._batches = 0

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batch(trainer, "on_validation_batch_start", started=True)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_batch(trainer, "on_validation_batch_end", started=False)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._batches = 0

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batch(trainer, "on_test_batch_start", started=True)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_batch(trainer, "on_test_batch_end", started=False)


def _prefix_metric_keys(metrics_dict: dict[str, float], prefix: str, separator: str) -> dict[str, float]:
    return {prefix + separator + k: v for k, v in metrics_dict.items()}


lightning_style_annotations(DeviceStatsMonitor)  # Lightning's `typing` forms in the signature
