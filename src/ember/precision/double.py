"""``DoublePrecision``: parameters, inputs and new tensors in float64 (``"64-true"``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ember.core.device_dtype import DeviceDtypeModuleMixin
from ember.precision.precision import CastingPrecision, cast_floating, renamed_plugin
from ember.utilities.rank_zero import rank_zero_deprecation


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


class LightningDoublePrecisionModule(DeviceDtypeModuleMixin, nn.Module):
    """Wraps a module so that the floating-point inputs of its ``*_step`` methods and ``forward`` reach it in
    float64.

    Deprecated, as in Lightning: ``DoublePrecision`` already converts the batches
    (``trainer.precision_plugin.convert_input``).
    """

    def __init__(self, pl_module: nn.Module) -> None:
        super().__init__()
        rank_zero_deprecation(
            f"The `{type(self).__name__}` is deprecated and no longer needed. Convert the inputs to the `*_step`"
            " methods directly using `trainer.precision_plugin.convert_input(...)`."
        )
        self.module = pl_module
        # DDP skips what the module asks it to skip, under the wrapper's names
        ignored = getattr(pl_module, "_ddp_params_and_buffers_to_ignore", [])
        self._ddp_params_and_buffers_to_ignore = [f"module.{name}" for name in ignored]

    @staticmethod
    def _move_float_tensors_to_double(collection: Any) -> Any:
        return cast_floating(collection, torch.double)

    def _call(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        return fn(*self._move_float_tensors_to_double(args), **self._move_float_tensors_to_double(kwargs))

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.module.training_step, args, kwargs)

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.module.validation_step, args, kwargs)

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.module.test_step, args, kwargs)

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.module.predict_step, args, kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.module, args, kwargs)
