"""Lightning's ``XLACheckpointIO`` (TPUs), by name only: Ember has no XLA support, so building one is an error.

Example::

    from lightning.pytorch.plugins.io import XLACheckpointIO   # imports; cannot be built
"""

from __future__ import annotations

from typing import Any

from ember.checkpoint.io import TorchCheckpointIO
from ember.utilities.exceptions import xla_not_supported
from ember.utilities.signature_utils import lightning_style_annotations


class XLACheckpointIO(TorchCheckpointIO):
    """Lightning's TPU checkpoint plugin: not supported on Ember."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported("XLACheckpointIO", "Use the default `TorchCheckpointIO` (or `AsyncCheckpointIO`).")


lightning_style_annotations(XLACheckpointIO)  # Lightning's `typing` forms in the signature
