"""``NeptuneLogger``: kept by name only, because the Neptune service has shut down.

Lightning 2.6 keeps the class so that an import of it still works, and building one raises. Ember
does the same, so a program or config that names it fails at the same place, with the same first
line, and says which loggers to use instead.
"""

from __future__ import annotations

from typing import Any


class NeptuneLogger:
    """Raises when built: Neptune has been sunset and its client has no service to log to.

    Use :class:`~ember.loggers.CSVLogger`, :class:`~ember.loggers.TensorBoardLogger`,
    :class:`~ember.loggers.MLFlowLogger`, :class:`~ember.loggers.WandbLogger` or
    :class:`~ember.loggers.CometLogger` instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "NeptuneLogger is no longer supported. Neptune has been sunset.\n"
            "\n"
            "Log with another logger instead: `Trainer(logger=CSVLogger(...))`, `TensorBoardLogger`,"
            " `MLFlowLogger`, `WandbLogger` or `CometLogger` from `ember.loggers` (or"
            " `pytorch_lightning.loggers`)."
        )
