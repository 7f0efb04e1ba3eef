"""Lightning's precision plugins that Ember keeps by name only: ``TransformerEnginePrecision`` and
``XLAPrecision``. Libraries import them for ``isinstance`` checks; building one is an error that says
what to pass instead.

Example::

    from lightning.pytorch.plugins import XLAPrecision   # imports; cannot be built

    trainer = Trainer(precision="bf16-mixed")   # what to write instead
"""

from __future__ import annotations

from typing import Any

from ember.precision.precision import Precision, renamed_plugin, transformer_engine_refused
from ember.utilities.exceptions import xla_not_supported
from ember.utilities.signature_utils import lightning_style_annotations


class TransformerEnginePrecision(Precision):
    """Lightning's FP8 plugin on NVIDIA Transformer Engine: not supported on Ember (``ModuleNotFoundError`` where
    the package is missing, as Lightning's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise transformer_engine_refused("TransformerEnginePrecision")


class XLAPrecision(Precision):
    """Lightning's TPU precision plugin: not supported on Ember."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported("XLAPrecision", "Use `Trainer(precision=...)` on CPUs, CUDA or MPS.")


lightning_style_annotations(TransformerEnginePrecision, XLAPrecision)  # Lightning's `typing` forms in the signature

# Lightning 1.x's names, kept as Lightning 2.x keeps them
TransformerEnginePrecisionPlugin = renamed_plugin("TransformerEnginePrecisionPlugin", TransformerEnginePrecision)
XLAPrecisionPlugin = renamed_plugin("XLAPrecisionPlugin", XLAPrecision)


def _old_xla_name(name: str) -> type[XLAPrecision]:
    """Lightning 1.x's name ``name`` of ``XLAPrecision``, which Lightning 2.x keeps (deprecated): by name only."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported(name, "Use `Trainer(precision=...)` on CPUs, CUDA or MPS.")

    doc = "Lightning 1.x's name of ``XLAPrecision`` (TPUs): not supported on Ember."
    return type(name, (XLAPrecision,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


TPUPrecisionPlugin = _old_xla_name("TPUPrecisionPlugin")
TPUBf16PrecisionPlugin = _old_xla_name("TPUBf16PrecisionPlugin")
XLABf16PrecisionPlugin = _old_xla_name("XLABf16PrecisionPlugin")
