"""Lightning's import path for checkpoint plugins: ``from ember.plugins.io import AsyncCheckpointIO``.

The classes live in ``ember.checkpoint.io`` and ``ember.checkpoint.async_io``. A package, so that
Lightning's module paths below it (``plugins.io.async_plugin``, ...) resolve under the alias.
"""

from ember.accelerators.hpu import HPUCheckpointIO as HPUCheckpointIO  # Lightning's removed HPU class: by name only
from ember.checkpoint.async_io import AsyncCheckpointIO
from ember.checkpoint.io import CheckpointIO, TorchCheckpointIO
from ember.plugins.io.xla import XLACheckpointIO  # by name only

__all__ = ["AsyncCheckpointIO", "CheckpointIO", "TorchCheckpointIO", "XLACheckpointIO"]
