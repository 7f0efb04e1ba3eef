"""Lightning's import path for plugins: checkpoint IO, precision and layer synchronization here, the
cluster environments in ``environments``.

Example::

    from ember.plugins import AsyncCheckpointIO, MixedPrecision

    trainer = Trainer(plugins=[AsyncCheckpointIO()])
"""

from ember.plugins.environments import ClusterEnvironment
from ember.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO, XLACheckpointIO
from ember.plugins.layer_sync import LayerSync, TorchSyncBatchNorm
from ember.precision import (
    BitsandbytesPrecision,
    DeepSpeedPrecision,
    DoublePrecision,
    FSDPPrecision,
    HalfPrecision,
    MixedPrecision,
    Precision,
    TransformerEnginePrecision,
    XLAPrecision,
)

__all__ = [
    "AsyncCheckpointIO",
    "BitsandbytesPrecision",
    "CheckpointIO",
    "ClusterEnvironment",
    "DeepSpeedPrecision",
    "DoublePrecision",
    "FSDPPrecision",
    "HalfPrecision",
    "LayerSync",
    "MixedPrecision",
    "Precision",
    "TorchCheckpointIO",
    "TorchSyncBatchNorm",
    "TransformerEnginePrecision",
    "XLACheckpointIO",
    "XLAPrecision",
]
