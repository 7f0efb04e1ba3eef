"""``CheckpointIO`` plugins: how the strategy writes, reads and removes checkpoint files.

Lightning's plugin interface (``lightning.fabric.plugins.io``): subclass ``CheckpointIO`` and
pass it as ``Trainer(plugins=[MyCheckpointIO()])`` or ``DDPStrategy(checkpoint_io=...)``; every
``Trainer.save_checkpoint``, every file ``ModelCheckpoint`` evicts and every
``fit/validate/test/predict(ckpt_path=...)`` goes through it. ``TorchCheckpointIO``, the default,
is Ember's crash-safe write (temp file, fsync, rename) and safe load (``weights_only=True``).

Example::

    from ember.plugins.io import TorchCheckpointIO

    class LoggingCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            print("saving", path)
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)

    trainer = Trainer(plugins=[LoggingCheckpointIO()])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ember.checkpoint.files import PathLike, atomic_save, remove_checkpoint
from ember.checkpoint.loading import load_checkpoint
from ember.utilities.fabric import is_fabrics_own


def _keep_on_cpu(storage: Any, location: str) -> Any:
    """``map_location`` that leaves every storage on the CPU, where ``torch.load`` reads it."""
    return storage


class CheckpointIO(ABC):
    """How checkpoints are saved, loaded and removed; the strategy calls it on global rank 0 (loads on every rank).

    Override the three abstract methods; ``teardown`` runs when a ``fit``/``validate``/``test``/
    ``predict`` call ends, also after a failure. A class with the three methods and ``teardown`` counts
    as a ``CheckpointIO`` (``isinstance``/``issubclass``), as one written against Lightning Fabric's
    base class does.

    Example::

        class InMemoryCheckpointIO(CheckpointIO):
            def __init__(self):
                self.files = {}

            def save_checkpoint(self, checkpoint, path, storage_options=None):
                self.files[str(path)] = checkpoint

            def load_checkpoint(self, path, map_location=None, weights_only=None):
                return self.files[str(path)]

            def remove_checkpoint(self, path):
                self.files.pop(str(path), None)
    """

    @abstractmethod
    def save_checkpoint(self, checkpoint: dict[str, Any], path: PathLike, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` (the trainer's state dict) to ``path``."""

    @abstractmethod
    def load_checkpoint(
        self, path: PathLike, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read the checkpoint at ``path``; ``weights_only=None`` means safe loading (``True``)."""

    @abstractmethod
    def remove_checkpoint(self, path: PathLike) -> None:
        """Delete the checkpoint at ``path`` (a file, or a sharded checkpoint folder)."""

    def teardown(self) -> None:
        """Release what the plugin holds; called at the end of every trainer call."""

    @classmethod
    def __subclasshook__(cls, other: type) -> Any:
        methods = ("save_checkpoint", "load_checkpoint", "remove_checkpoint", "teardown")
        if cls is CheckpointIO and all(any(name in k.__dict__ for k in other.__mro__) for name in methods):
            return True
        return NotImplemented


def own_checkpoint_io(io: Any) -> Any:
    """Ember's ``TorchCheckpointIO`` in place of Lightning Fabric's (the default plugin of a Lightning
    program, which a config Lightning printed names): the same plugin, with crash-safe writes and safe
    loads. Any other plugin, a subclass of Fabric's included, stays as it is."""
    return TorchCheckpointIO() if is_fabrics_own(type(io), "TorchCheckpointIO") else io


class TorchCheckpointIO(CheckpointIO):
    """The default: ``torch.save`` written crash-safely, ``torch.load(weights_only=True)``, fsspec paths.

    A save goes to a temp file next to the target, is flushed and fsynced, and is renamed over it,
    so ``path`` never holds a partial file (``ember.checkpoint.atomic_save``). ``storage_options``
    are fsspec options for a remote ``path`` (Lightning's raises ``TypeError`` for any).

    Example::

        io = TorchCheckpointIO()
        io.save_checkpoint({"state_dict": model.state_dict()}, "ckpts/model.ckpt")
        checkpoint = io.load_checkpoint("ckpts/model.ckpt")
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: PathLike, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (parent folders are created)."""
        atomic_save(checkpoint, path, storage_options=storage_options)

    def load_checkpoint(
        self, path: PathLike, map_location: Any | None = _keep_on_cpu, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read ``path`` (a file, a sharded folder or an fsspec URL); tensors stay on the CPU by default.

        Raises:
            FileNotFoundError: there is nothing at ``path``.
        """
        return load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def remove_checkpoint(self, path: PathLike) -> None:
        """Delete ``path``; a checkpoint that is already gone is not an error."""
        remove_checkpoint(path)


class _WrappingCheckpointIO(CheckpointIO):
    """A plugin that hands the work to another one (``checkpoint_io``); the strategy fills in the default.

    ``checkpoint_io=None`` means ``TorchCheckpointIO``, set when the strategy first uses the plugin.
    """

    def __init__(self, checkpoint_io: CheckpointIO | None = None) -> None:
        super().__init__()
        checkpoint_io = own_checkpoint_io(checkpoint_io)
        if checkpoint_io is not None and (
            isinstance(checkpoint_io, type) or not isinstance(checkpoint_io, CheckpointIO)
        ):
            # (it failed when the first call ended: "'int' object has no attribute 'teardown'")
            made = (
                f" a class: pass an instance, `{checkpoint_io.__name__}()`" if isinstance(checkpoint_io, type) else ""
            )
            raise TypeError(
                f"`{type(self).__name__}(checkpoint_io={checkpoint_io!r})` takes the `CheckpointIO` plugin that writes"
                f" and reads the files (None: the default, `TorchCheckpointIO`); this is{made or ' no CheckpointIO'}."
            )
        self._checkpoint_io = checkpoint_io
        self._base_checkpoint_io_configured: bool = checkpoint_io is not None and (
            not isinstance(checkpoint_io, _WrappingCheckpointIO) or checkpoint_io._base_checkpoint_io_configured
        )

    @property
    def checkpoint_io(self) -> CheckpointIO | None:
        """The plugin that does the work."""
        return self._checkpoint_io

    @checkpoint_io.setter
    def checkpoint_io(self, checkpoint_io: CheckpointIO) -> None:
        # the strategy's default, set once: a plugin the user chose is never replaced
        if self._checkpoint_io is None:
            self._checkpoint_io = checkpoint_io
            self._base_checkpoint_io_configured = True
        elif isinstance(self._checkpoint_io, _WrappingCheckpointIO) and not self._base_checkpoint_io_configured:
            self._base_checkpoint_io_configured = True
            self._checkpoint_io.checkpoint_io = checkpoint_io

    def _base(self) -> CheckpointIO:
        if self._checkpoint_io is None:
            self.checkpoint_io = TorchCheckpointIO()
        assert self._checkpoint_io is not None
        return self._checkpoint_io

    def save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        """Saves through the wrapped plugin."""
        self._base().save_checkpoint(*args, **kwargs)

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Loads through the wrapped plugin."""
        return self._base().load_checkpoint(*args, **kwargs)

    def remove_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        """Removes through the wrapped plugin."""
        self._base().remove_checkpoint(*args, **kwargs)

    def teardown(self) -> None:
        """Tears the wrapped plugin down too."""
        if self._checkpoint_io is not None:
            self._checkpoint_io.teardown()
