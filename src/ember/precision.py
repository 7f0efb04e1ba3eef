"""Numeric precision: autocast for the mixed modes, GradScaler for fp16 on CUDA, casts for the true modes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from ember.utilities.exceptions import MisconfigurationException

_ALIASES = {
    "64": "64-true",
    64: "64-true",
    "64-true": "64-true",
    "double": "64-true",
    "32": "32-true",
    32: "32-true",
    "32-true": "32-true",
    "16": "16-mixed",
    16: "16-mixed",
    "16-mixed": "16-mixed",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
    "16-true": "16-true",
    "bf16-true": "bf16-true",
}
# the "-true" precisions other than 32: the module's parameters and new tensors take this dtype
_TRUE_DTYPES = {"64-true": torch.float64, "16-true": torch.float16, "bf16-true": torch.bfloat16}
PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def normalize_precision(precision: Any) -> str:
    """The full name of a precision setting: ``16`` -> ``"16-mixed"``, ``None`` -> ``"32-true"``."""
    if precision is None:
        return "32-true"
    try:
        return _ALIASES[precision]
    except (KeyError, TypeError):
        # a ValueError, as in Lightning
        raise ValueError(
            f"Precision {precision!r} is invalid. Allowed precision values: {PRECISIONS}"
            " (or the aliases 64, 32, 16, '64', '32', '16', 'bf16')."
        ) from None


_SINGLE_EVALUATION = frozenset(
    getattr(torch.optim, name)
    for name in ("SGD", "Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "RMSprop", "Rprop", "NAdam", "RAdam", "ASGD")
    if hasattr(torch.optim, name)
)


class Precision:
    """Everything precision changes in a step, decided once when the run starts."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = precision
        self.device = device.type  # "cpu", "cuda", "mps": the device type, as Lightning's precision plugins keep it
        self.scaler: Any = None
        self._autocast_dtype: torch.dtype | None = None
        if precision == "16-mixed":
            if device.type == "cpu":
                # fp16 autocast on CPU is slow and unsupported for many ops: bf16 is what CPUs run well
                raise MisconfigurationException(
                    "You passed `Trainer(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not supported"
                    " on CPU. Consider using `precision='bf16-mixed'` instead."
                )
            self._autocast_dtype = torch.float16
            if device.type == "cuda":
                self.scaler = torch.amp.GradScaler("cuda")
        elif precision == "bf16-mixed":
            self._autocast_dtype = torch.bfloat16
        self._module_dtype = _TRUE_DTYPES.get(precision)
        # set where an engine runs backward itself (DeepSpeed): the step calls it instead of `loss.backward()`
        self.engine_backward: Callable[..., None] | None = None

    @property
    def converts_input(self) -> bool:
        """Whether batches are cast to the module's dtype (the ``"-true"`` precisions below 32 bits, and 64)."""
        return self._module_dtype is not None

    @property
    def is_identity(self) -> bool:
        """Full precision: the step runs with no context and no scaling."""
        return self._autocast_dtype is None and self.scaler is None and self._module_dtype is None

    def convert_module(self, module: nn.Module) -> nn.Module:
        if self._module_dtype is not None:
            return module.to(dtype=self._module_dtype)
        return module

    def convert_input(self, batch: Any) -> Any:
        if self._module_dtype is None:
            return batch
        from ember.utilities.apply_func import apply_to_tensors

        dtype = self._module_dtype
        return apply_to_tensors(batch, lambda t: t.to(dtype) if t.is_floating_point() else t)

    def forward_context(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is not None:
            return torch.autocast(self.device, dtype=self._autocast_dtype)
        if self._module_dtype is not None:
            return _default_dtype(self._module_dtype)
        return contextlib.nullcontext()

    @staticmethod
    def steps_directly(optimizer: Optimizer) -> bool:
        """Whether ``optimizer`` evaluates a closure exactly once per step (most torch optimizers)."""
        return type(optimizer) in _SINGLE_EVALUATION

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def unscale_for_clipping(self, optimizer: Optimizer) -> None:
        if self.scaler is not None:
            state = self.scaler._per_optimizer_states[id(optimizer)]
            if state["stage"].name == "READY":
                self.scaler.unscale_(optimizer)

    def clip_gradients(self, optimizer: Optimizer, value: float, algorithm: str) -> None:
        """Clip the gradients of ``optimizer``'s parameters by ``"norm"`` or ``"value"`` (after AMP unscaling)."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.unscale_for_clipping(optimizer)
        if algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, value)
        else:
            torch.nn.utils.clip_grad_norm_(params, value)

    def optimizer_step(
        self,
        optimizer: Optimizer,
        closure: Callable[[], Any],
        before_step: Callable[[], None] | None,
        **kwargs: Any,
    ) -> Any:
        """Run ``closure`` (forward and backward), ``before_step`` (hooks, clipping; None for none), then step.

        This is the one place where an optimizer steps, in automatic and in manual optimization. ``kwargs``
        (given to ``LightningOptimizer.step``) go to the optimizer's ``step``.
        """
        if self.scaler is None:
            if self.steps_directly(optimizer):
                # these evaluate the closure exactly once before updating: call it directly and
                # skip the closure machinery (same arithmetic as `optimizer.step(closure)`)
                result = closure()
                if before_step is not None:
                    before_step()
                output = optimizer.step(**kwargs)
                # what `step(closure)` returns: the closure's loss, unless the step itself returns something (a
                # wrapped or patched `step`), which `LightningOptimizer.step` passes on as Lightning's does
                return result if output is None else output

            def wrapped() -> Any:
                # with grad, as Lightning's closure: some optimizers (e.g. transformers' AdamW) step in no_grad
                with torch.enable_grad():
                    result = closure()
                if before_step is not None:
                    before_step()
                return result

            return optimizer.step(closure=wrapped, **kwargs)
        # GradScaler cannot step with a closure: run it first, unscale, then step if grads are finite
        result = closure()
        self.scaler.unscale_(optimizer)
        if before_step is not None:
            before_step()
        if result is None:
            return None  # training_step returned None: no backward ran, nothing to step
        # host sync: GradScaler reads whether the gradients are finite
        out = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def tensor_init_context(precision: str) -> contextlib.AbstractContextManager:
    """New floating-point tensors take the dtype of a ``"-true"`` precision (``trainer.init_module``)."""
    dtype = _TRUE_DTYPES.get(precision)
    return _default_dtype(dtype) if dtype is not None else contextlib.nullcontext()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    # as Lightning: inside a step of a "-true" precision, new float tensors take that precision
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
