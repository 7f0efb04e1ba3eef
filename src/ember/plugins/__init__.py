"""Lightning's import path for plugins: checkpoint IO here, the cluster environments in ``environments``.

Example::

    from ember.plugins import AsyncCheckpointIO

    trainer = Trainer(plugins=[AsyncCheckpointIO()])
"""

from ember.plugins.environments import ClusterEnvironment
from ember.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO

__all__ = ["AsyncCheckpointIO", "CheckpointIO", "ClusterEnvironment", "TorchCheckpointIO"]
