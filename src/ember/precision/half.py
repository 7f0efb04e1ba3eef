"""``HalfPrecision``: parameters, inputs and new tensors in float16 or bfloat16 (``"16-true"``, ``"bf16-true"``)."""

from __future__ import annotations

import torch

from ember.precision.precision import CastingPrecision, renamed_plugin
from ember.utilities.signature_utils import lightning_style_annotations

_DTYPES = {"16-true": torch.float16, "bf16-true": torch.bfloat16}


class HalfPrecision(CastingPrecision):
    """Training entirely in half precision: the module, the batches and the tensors a step creates.

    Args:
        precision: ``"16-true"`` (float16) or ``"bf16-true"`` (bfloat16).

    Example::

        trainer = Trainer(plugins=[HalfPrecision("bf16-true")])  # the same as Trainer(precision="bf16-true")
    """

    precision: str = "16-true"

    def __init__(self, precision: str = "16-true") -> None:
        if precision not in _DTYPES:
            raise ValueError(
                f"`HalfPrecision(precision={precision!r})` is not supported: use '16-true' or 'bf16-true'."
            )
        self.precision = precision
        self._dtype = _DTYPES[precision]

    @property
    def _desired_input_dtype(self) -> torch.dtype:
        return self._dtype  # Lightning's name for it, which some code reads


lightning_style_annotations(HalfPrecision)  # Lightning's `typing` forms in the signature

# Lightning 1.x's names, kept as Lightning 2.x keeps them
HalfPrecisionPlugin = renamed_plugin("HalfPrecisionPlugin", HalfPrecision)
