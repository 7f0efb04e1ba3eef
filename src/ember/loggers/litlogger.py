"""Lightning's ``LitLogger``, by name only: it logs to the Lightning AI service through the ``litlogger``
client, which Ember does not support. Building one is an error, of the kind Lightning raises when
``litlogger`` is not installed, so a program that falls back to another logger on that error still
runs.

Example::

    from lightning.pytorch.loggers import LitLogger   # imports; cannot be built
"""

from __future__ import annotations

import importlib.util
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ember.loggers.logger import Logger
from ember.utilities.exceptions import not_supported
from ember.utilities.signature_utils import lightning_style_annotations

_INSTEAD = (
    "Log with `CSVLogger`, `TensorBoardLogger`, `MLFlowLogger`, `WandbLogger` or `CometLogger` from `ember.loggers`"
    " (or `pytorch_lightning.loggers`)."
)


class LitLogger(Logger):
    """Lightning AI's hosted experiment logger: not supported on Ember."""

    def __init__(  # Lightning's arguments, so that a config naming them parses and then fails here
        self,
        root_dir: str | Path | None = None,
        name: str | None = None,
        teamspace: str | None = None,
        metadata: dict[str, str] | None = None,
        store_step: bool = True,
        log_model: bool = False,
        save_logs: bool = True,
        checkpoint_name: str | None = None,
    ) -> None:
        if importlib.util.find_spec("litlogger") is None:
            # Lightning's error without the package, so `except ModuleNotFoundError` fallbacks work the same
            raise ModuleNotFoundError(
                f"No module named 'litlogger'. LitLogger logs to the Lightning AI service, which Ember does not"
                f" support: {_INSTEAD}",
                name="litlogger",
            )
        raise not_supported("LitLogger", "It logs to the Lightning AI service, which Ember does not support.", _INSTEAD)

    # never reached: the class cannot be built
    @property
    def name(self) -> str | None:
        raise NotImplementedError

    @property
    def version(self) -> int | str | None:
        raise NotImplementedError

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError


lightning_style_annotations(LitLogger)  # Lightning's `typing` forms in the signature
