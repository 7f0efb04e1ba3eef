"""``MixedPrecision``: steps under ``torch.autocast`` in fp16 or bf16, with loss scaling for fp16."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ember.precision.precision import Precision, renamed_plugin
from ember.utilities.argument_checks import check_type
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.signature_utils import lightning_style_annotations

_AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


class MixedPrecision(Precision):
    """Automatic mixed precision: parameters stay in float32, the steps run under ``torch.autocast``.

    Args:
        precision: ``"16-mixed"`` (float16, with a ``GradScaler``) or ``"bf16-mixed"`` (bfloat16, no scaling).
        device: the device type autocast runs on: ``"cuda"``, ``"cpu"`` or ``"mps"``.
        scaler: the ``torch.amp.GradScaler`` for ``"16-mixed"`` (one with default settings when None).

    ``Trainer(precision="16-mixed")`` builds one; pass one in ``plugins`` to choose the scaler's settings.

    Example::

        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**12, growth_interval=500)
        trainer = Trainer(accelerator="cuda", plugins=[MixedPrecision("16-mixed", "cuda", scaler)])
    """

    def __init__(self, precision: str, device: str, scaler: Any = None) -> None:
        if not isinstance(precision, str) or precision not in _AUTOCAST_DTYPES:  # (a list was "unhashable")
            raise ValueError(
                f"Passed `{type(self).__name__}(precision={precision!r})`. Precision must be '16-mixed' or"
                " 'bf16-mixed'."
            )
        if scaler is not None and precision == "bf16-mixed":
            raise MisconfigurationException(
                f"`precision='bf16-mixed'` does not use a scaler, found {scaler}. Drop the scaler, or use '16-mixed'."
            )
        # (it failed at the first step, in torch's words: "Expected one of cpu, cuda, ... device type at start of
        # device string: None")
        check_type(
            type(self).__name__,
            "device",
            device,
            (str, torch.device),
            "the device type autocast runs on, 'cuda' or 'cpu'",
        )
        self.precision = precision
        self.device = device if isinstance(device, str) else device.type
        self.scaler = torch.amp.GradScaler(self.device) if scaler is None and precision == "16-mixed" else scaler
        self._autocast_dtype = _AUTOCAST_DTYPES[precision]

    def forward_context(self) -> contextlib.AbstractContextManager:
        return self.autocast_context_manager()

    def autocast_context_manager(self) -> torch.autocast:
        # no cast cache, as in Lightning: a weight used twice in a step is cast afresh each time, so its
        # gradients sum in float32 instead of in the low precision of one shared cast
        return torch.autocast(self.device, dtype=self._autocast_dtype, cache_enabled=False)

    def scale_loss(self, loss: Tensor) -> Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def unscale_for_clipping(self, optimizer: Optimizer) -> None:
        # clipping compares the true gradients with the limit (Lightning clips manual optimization's still-scaled
        # ones): unscale, unless done since the last step. The scaler keys its record by the optimizer itself,
        # not the `LightningOptimizer` around it
        optimizer = getattr(optimizer, "_optimizer", optimizer)
        if self.scaler is not None and self._not_unscaled(optimizer):  # bf16 has no scaler: nothing to unscale
            self.scaler.unscale_(optimizer)

    def _not_unscaled(self, optimizer: Optimizer) -> bool:
        """Whether the GradScaler has not unscaled ``optimizer``'s gradients since its last step (a stand-in scaler
        keeps no record: unscale as usual)."""
        states = getattr(self.scaler, "_per_optimizer_states", None)
        return not isinstance(states, dict) or states[id(optimizer)]["stage"].name == "READY"

    def clip_gradients(
        self, optimizer: Optimizer, clip_val: float = 0.0, gradient_clip_algorithm: str = "norm"
    ) -> None:
        if clip_val > 0 and self.scaler is not None and _unscales_itself(optimizer):
            raise RuntimeError(
                f"The current optimizer, {type(optimizer).__qualname__}, does not allow for gradient clipping because it"
                " performs unscaling of gradients internally. HINT: Are you using a 'fused' optimizer? Turn off"
                " gradient clipping, or use an optimizer without `fused=True`."
            )
        super().clip_gradients(optimizer, clip_val, gradient_clip_algorithm)

    def run_optimizer_step(
        self,
        optimizer: Optimizer,
        closure: Callable[[], Any],
        before_step: Callable[[], None] | None,
        **kwargs: Any,
    ) -> Any:
        if self.scaler is None:
            return super().run_optimizer_step(optimizer, closure, before_step, **kwargs)
        if isinstance(optimizer, torch.optim.LBFGS):
            raise MisconfigurationException(
                "AMP and the LBFGS optimizer are not compatible. LBFGS re-evaluates the loss, which a GradScaler cannot"
                " follow. Use `precision='bf16-mixed'` or '32-true' with LBFGS."
            )
        # GradScaler cannot step with a closure: run it first, unscale, then step if grads are finite
        result = closure()
        # `training_step` returned None in automatic optimization: no backward ran, nothing to unscale or step (a
        # manual closure returns nothing as a rule: it steps)
        skip = result is None and self.automatic_optimization
        if not skip and not _unscales_itself(optimizer) and self._not_unscaled(optimizer):  # (manual clipping may have)
            self.scaler.unscale_(optimizer)
        if before_step is not None:
            before_step()
        if skip:
            return None
        # host sync: GradScaler reads whether the gradients are finite
        out = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None and state_dict:
            self.scaler.load_state_dict(state_dict)


def _unscales_itself(optimizer: Optimizer) -> bool:
    # fused torch optimizers unscale inside `step`: GradScaler must not unscale them first
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


lightning_style_annotations(MixedPrecision)  # Lightning's `typing` forms in the signature

# Lightning 1.x's names, kept as Lightning 2.x keeps them
MixedPrecisionPlugin = renamed_plugin("MixedPrecisionPlugin", MixedPrecision)
