"""Everything about checkpoint files.

- ``files``: where checkpoints live (fsspec paths), crash-safe writes, links and removal.
- ``safe_load``: reading one file with ``torch.load(weights_only=True)`` and clear errors.
- ``loading``: ``load_checkpoint`` for a file, a sharded folder, a remote URL or an open file.
- ``sharded``: the folder layout of ``FSDPStrategy(state_dict_type="sharded")``.
- ``contents``: what a checkpoint holds (Lightning's layout plus Ember's resume state), and
  restoring a run from it.
- ``ckpt_path``: what ``fit(ckpt_path=...)`` names: a file, ``"last"``, ``"best"`` or ``"hpc"``.
- ``io``: the ``CheckpointIO`` plugins the strategy writes, reads and removes through
  (``TorchCheckpointIO`` by default); ``async_io``: ``AsyncCheckpointIO``, writing on a background
  thread; ``snapshot``: the host copy of the state it writes.

Example::

    from ember.checkpoint import atomic_save, load_checkpoint

    atomic_save({"state_dict": model.state_dict()}, "runs/model.ckpt")
    checkpoint = load_checkpoint("runs/model.ckpt", map_location="cpu")
"""

from ember.checkpoint.files import (
    METADATA_FILENAME,
    atomic_link,
    atomic_save,
    get_filesystem,
    is_local,
    is_sharded_checkpoint,
    remove_checkpoint,
)
from ember.checkpoint.loading import load_checkpoint
from ember.checkpoint.safe_load import CheckpointLoadError, MapLocationError, unsafe_hparam_values

__all__ = [
    "METADATA_FILENAME",
    "CheckpointLoadError",
    "MapLocationError",
    "atomic_link",
    "atomic_save",
    "get_filesystem",
    "is_local",
    "is_sharded_checkpoint",
    "load_checkpoint",
    "remove_checkpoint",
    "unsafe_hparam_values",
]
