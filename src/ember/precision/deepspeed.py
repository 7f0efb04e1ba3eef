"""``DeepSpeedPrecision``: the precision of a ``DeepSpeedStrategy`` run. The engine casts the module
(its ``fp16`` / ``bf16`` config sections, which the strategy writes from this precision), runs
backward with its loss scaling and accumulation, and steps; batches are cast to its dtype."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ember.precision.precision import Precision, cast_floating, default_dtype, renamed_plugin
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.signature_utils import lightning_style_annotations

_DTYPES = {
    "32-true": torch.float32,
    "16-true": torch.float16,
    "bf16-true": torch.bfloat16,
    "16-mixed": torch.float16,
    "bf16-mixed": torch.bfloat16,
}


class DeepSpeedPrecision(Precision):
    """What precision means under DeepSpeed: the engine does the casting, scaling and stepping.

    Args:
        precision: ``"32-true"``, ``"16-mixed"``, ``"bf16-mixed"``, ``"16-true"`` or ``"bf16-true"``.

    ``Trainer(strategy="deepspeed", precision=...)`` builds one; the strategy hands it its engine.
    """

    def __init__(self, precision: str) -> None:
        if precision not in _DTYPES:
            raise ValueError(
                f"`Trainer(strategy='deepspeed', precision={precision!r})` is not supported."
                f" `precision` must be one of: {tuple(_DTYPES)}."
            )
        self.precision = precision
        self._dtype = _DTYPES[precision]
        self.engine: Any = None  # the DeepSpeed engine, set by the strategy once it exists
        self.engine_backward = self._backward

    def convert_input(self, data: Any) -> Any:
        return cast_floating(data, self._dtype)

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module.to(dtype=self._dtype) if self.precision.endswith("-true") else module

    def tensor_init_context(self) -> contextlib.AbstractContextManager:
        return default_dtype(self._dtype) if self.precision.endswith("-true") else contextlib.nullcontext()

    def _backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        self.engine.backward(loss, *args, **kwargs)

    def clip_gradients(
        self, optimizer: Optimizer, clip_val: float = 0.0, gradient_clip_algorithm: str = "norm"
    ) -> None:
        """Nothing: the engine clips by its config's ``gradient_clipping``."""

    def run_optimizer_step(
        self,
        optimizer: Optimizer,
        closure: Callable[[], Any],
        before_step: Callable[[], None] | None,
        **kwargs: Any,
    ) -> Any:
        """The closure (forward and ``engine.backward``), the hooks, then ``engine.step()``: the engine updates the
        weights at the end of each accumulation window."""
        if isinstance(optimizer, torch.optim.LBFGS):
            raise MisconfigurationException("DeepSpeed and the LBFGS optimizer are not compatible.")
        result = closure()
        if before_step is not None:
            before_step()
        if result is None and self.automatic_optimization:
            raise MisconfigurationException(
                "Skipping backward by returning `None` from your `training_step` is not supported by `DeepSpeed`:"
                " return a loss on every batch."
            )
        return self.engine.step(**kwargs)


lightning_style_annotations(DeepSpeedPrecision)  # Lightning's `typing` forms in the signature

# Lightning 1.x's names, kept as Lightning 2.x keeps them
DeepSpeedPrecisionPlugin = renamed_plugin("DeepSpeedPrecisionPlugin", DeepSpeedPrecision)
