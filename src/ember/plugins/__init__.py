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

# Lightning 1.x's names of the precision plugins (deprecated), importable here as in Lightning 2.x, which keeps
# them out of `__all__` too
from ember.precision import BitsandbytesPrecisionPlugin as BitsandbytesPrecisionPlugin
from ember.precision import DeepSpeedPrecisionPlugin as DeepSpeedPrecisionPlugin
from ember.precision import DoublePrecisionPlugin as DoublePrecisionPlugin
from ember.precision import FSDPMixedPrecisionPlugin as FSDPMixedPrecisionPlugin
from ember.precision import FSDPPrecisionPlugin as FSDPPrecisionPlugin
from ember.precision import HalfPrecisionPlugin as HalfPrecisionPlugin
from ember.precision import MixedPrecisionPlugin as MixedPrecisionPlugin
from ember.precision import PrecisionPlugin as PrecisionPlugin
from ember.precision import TransformerEnginePrecisionPlugin as TransformerEnginePrecisionPlugin
from ember.precision import XLAPrecisionPlugin as XLAPrecisionPlugin

# isort: split
# Lightning 1.x's TPU names and Lightning's removed HPU classes, which Lightning 2.x keeps: by name only
from ember.plugins.io import HPUCheckpointIO as HPUCheckpointIO
from ember.precision import HPUPrecisionPlugin as HPUPrecisionPlugin
from ember.precision import TPUBf16PrecisionPlugin as TPUBf16PrecisionPlugin
from ember.precision import TPUPrecisionPlugin as TPUPrecisionPlugin
from ember.precision import XLABf16PrecisionPlugin as XLABf16PrecisionPlugin

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
