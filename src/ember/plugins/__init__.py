"""Lightning's import path for plugins: checkpoint IO and layer synchronization here, the cluster
environments in ``environments``.

Example::

    from ember.plugins import AsyncCheckpointIO

    trainer = Trainer(plugins=[AsyncCheckpointIO()])
"""

from ember.plugins.environments import ClusterEnvironment
from ember.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from ember.plugins.layer_sync import LayerSync, TorchSyncBatchNorm

__all__ = [
    "AsyncCheckpointIO",
    "CheckpointIO",
    "ClusterEnvironment",
    "LayerSync",
    "TorchCheckpointIO",
    "TorchSyncBatchNorm",
]
