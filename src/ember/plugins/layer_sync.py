"""Lightning's import path for layer synchronization: ``from ember.plugins.layer_sync import LayerSync``.

The classes live in ``ember.distributed.layer_sync``.
"""

from ember.distributed.layer_sync import LayerSync, TorchSyncBatchNorm

__all__ = ["LayerSync", "TorchSyncBatchNorm"]
