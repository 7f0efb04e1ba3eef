"""``DoublePrecision``: parameters, inputs and new tensors in float64 (``"64-true"``)."""

from __future__ import annotations

import torch
from torch import nn

from ember.precision.precision import CastingPrecision, renamed_plugin


class DoublePrecision(CastingPrecision):
    """Training in double precision: the module, the batches and the tensors a step creates.

    Example::

        trainer = Trainer(plugins=[DoublePrecision()])  # the same as Trainer(precision="64-true")
    """

    precision: str = "64-true"
    _dtype = torch.float64

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module.double()  # floating-point tensors only: complex buffers keep their dtype


# Lightning 1.x's names, kept as Lightning 2.x keeps them
DoublePrecisionPlugin = renamed_plugin("DoublePrecisionPlugin", DoublePrecision)
