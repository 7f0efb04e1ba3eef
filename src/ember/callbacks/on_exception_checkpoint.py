"""``OnExceptionCheckpoint``: save a checkpoint when a run is interrupted by an exception."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.callbacks.checkpoint import Checkpoint
from ember.utilities.argument_checks import check_type
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class OnExceptionCheckpoint(Checkpoint):
    """Save ``<dirpath>/<filename>.ckpt`` when training stops with an exception (including Ctrl-C).

    The file is written atomically through ``trainer.save_checkpoint`` and overwritten by the
    next exception. ``Trainer.fit(ckpt_path="last")`` considers it, so a crashed run resumes
    from it. After a fit that ends normally, a file left by an earlier crash is removed.

    Args:
        dirpath: folder to save the checkpoint in.
        filename: file name without the extension.

    Raises:
        ValueError: if ``filename`` is empty.

    Example::

        trainer = Trainer(callbacks=[OnExceptionCheckpoint("checkpoints")])
        trainer.fit(model)  # a KeyboardInterrupt leaves checkpoints/on_exception.ckpt
        trainer.fit(model, ckpt_path="last")  # resumes from it
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str | Path, filename: str = "on_exception") -> None:
        super().__init__()
        if not filename:  # (None too, as in Lightning)
            raise ValueError("The filename cannot be empty: pass a name such as `filename='on_exception'`.")
        check_type(
            "OnExceptionCheckpoint", "dirpath", dirpath, (str, os.PathLike), "a folder path (a str or a `pathlib.Path`)"
        )
        check_type("OnExceptionCheckpoint", "filename", filename, (str,), "a file name without the `.ckpt`")
        self.dirpath = dirpath
        self.filename = filename
        self._saved_this_run = False

    @property
    def ckpt_path(self) -> str:
        """Where the checkpoint is (or will be) saved."""
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def setup(self, trainer: Trainer, pl_module: Any = None, stage: str = "fit", *_: Any, **__: Any) -> None:
        # a failed call ends without `teardown`: what it saved is not this call's file
        self._saved_this_run = False

    def on_exception(self, trainer: Trainer, *_: Any, **__: Any) -> None:
        # all ranks: save_checkpoint gathers state on every rank; rank 0 writes.
        trainer.save_checkpoint(self.ckpt_path)
        self._saved_this_run = True

    def teardown(self, trainer: Trainer, pl_module: Any = None, stage: str = "fit", *_: Any, **__: Any) -> None:
        # A fit that finished normally makes an older crash checkpoint stale; never delete the
        # one this run just wrote, and let validate/test/predict leave it alone.
        if self._saved_this_run:
            self._saved_this_run = False
            return
        if stage == "fit":
            trainer.strategy.remove_checkpoint(self.ckpt_path)  # rank 0, through the CheckpointIO plugin


lightning_style_annotations(OnExceptionCheckpoint)  # Lightning's `typing` forms in the signature
