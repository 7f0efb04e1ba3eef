"""When a callback that writes to the loggers itself should write: the trainer's own log cadence.

Training writes every ``log_every_n_steps`` optimizer-step batches (and when training stops), at
the step the loggers see; an evaluation or predict loop every ``log_every_n_steps`` of its own
batches. These are the points where the trainer reads its logged values back from the device, so
a callback that measures something there adds no wait of its own.
"""

from __future__ import annotations

from typing import Any


def logger_step(trainer: Any) -> int:
    """The step the loggers see: batches that closed an optimizer step (``_batches_that_stepped``)."""
    run = getattr(trainer, "_run", None)
    progress = getattr(run, "progress", None)
    return progress.batches_that_stepped if progress is not None else trainer.global_step


def training_log_due(trainer: Any) -> bool:
    """Whether the trainer writes its step values after this training batch (checked during the batch)."""
    every = trainer.log_every_n_steps
    if not every:
        return False
    # `+ 1`: the batch being trained on is counted once it is done
    return (logger_step(trainer) + 1) % every == 0 or bool(trainer.should_stop)


def loop_log_due(trainer: Any, batches: int) -> bool:
    """Whether an evaluation or predict loop that has started ``batches`` batches is at a log point."""
    every = trainer.log_every_n_steps
    if not every:
        return False
    return batches % every == 0 or bool(trainer.should_stop)


def write_metrics(trainer: Any, metrics: dict[str, Any], step: int | None) -> None:
    """Send ``metrics`` to the loggers as the trainer's own values go (also into ``trainer.logged_metrics``).

    Without a ``step`` the loggers get the current epoch with them and the trainer's logger step.
    """
    run = getattr(trainer, "_run", None)
    store = getattr(run, "metrics", None)
    if store is not None:
        store.write(metrics, step)
        return
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=logger_step(trainer) if step is None else step)
        logger.save()
