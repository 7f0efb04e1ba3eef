"""``FSDPPrecision``: Lightning's precision plugin of its ``FSDPStrategy``, which also says, as FSDP1's
``MixedPrecision``, in which dtypes the strategy gathers the parameters, reduces the gradients and keeps the
buffers (``mixed_precision_config``). Ember's ``FSDPStrategy`` maps that config onto FSDP2's policies as it maps
its own ``mixed_precision=`` argument.

Example::

    trainer = Trainer(strategy=FSDPStrategy(), plugins=[FSDPPrecision("bf16-mixed")])
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from torch import nn

from ember.precision.amp import MixedPrecision
from ember.precision.precision import CastingPrecision, renamed_plugin
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

# the precisions FSDPPrecision takes, in Lightning's order (its error lists them so), and the one dtype Lightning's
# config gives FSDP's parameters, gradient reductions and buffers for each
_CONFIG_DTYPES = {
    "32-true": torch.float32,
    "16-true": torch.float16,
    "bf16-true": torch.bfloat16,
    "16-mixed": torch.float16,
    "bf16-mixed": torch.bfloat16,
}


class FSDPPrecision(MixedPrecision, CastingPrecision):
    """The precision of a run under ``FSDPStrategy``, as Lightning's plugin of that name.

    Args:
        precision: ``"32-true"``, ``"16-true"``, ``"bf16-true"`` (the module converted to that dtype, as
            ``HalfPrecision``), or ``"16-mixed"``, ``"bf16-mixed"`` (float32 weights, the steps under
            ``torch.autocast``, as ``MixedPrecision``).
        scaler: the ``ShardedGradScaler`` of ``"16-mixed"`` (one with default settings when None). It agrees
            with the other ranks on whether a gradient overflowed, so that every rank skips the same steps.

    ``mixed_precision_config`` is FSDP1's ``MixedPrecision`` with Lightning's dtypes: the precision's low
    dtype (float32 for ``"32-true"``) for the parameters FSDP gathers, the gradients it reduces and the
    buffers. ``FSDPStrategy`` applies it with FSDP2's policies; ``Trainer(strategy="fsdp",
    precision="bf16-mixed")`` without this plugin reduces the gradients in float32 instead (docs/compat.md).

    The two kinds reuse Ember's plugins: the mixed ones step, scale, unscale, clip and checkpoint the scaler as
    ``MixedPrecision`` does; the batches, the outputs and the tensors created inside
    ``trainer.init_module()`` take the plugin's input dtype as ``HalfPrecision`` does (float32 for the mixed
    ones, as in Lightning).

    Example::

        trainer = Trainer(accelerator="cuda", devices=8, strategy=FSDPStrategy(), plugins=[FSDPPrecision("16-mixed")])
    """

    precision: str = "32-true"

    def __init__(
        self,
        precision: Literal["32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"],
        scaler: Any = None,
    ) -> None:
        # MixedPrecision's own __init__ takes only the mixed precisions and a device: set its fields here
        if precision not in _CONFIG_DTYPES:
            raise ValueError(
                f"`precision={precision!r})` is not supported in FSDP. `precision` must be one of:"
                f" {tuple(_CONFIG_DTYPES)}."
            )
        if scaler is not None and precision != "16-mixed":
            raise ValueError(f"`precision={precision!r}` does not use a scaler, found {scaler}.")
        self.precision = precision
        self._mixed = precision.endswith("-mixed")
        # the device type autocast and the default scaler run on; the Trainer gives the run's (`_use_device`)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._own_scaler = scaler is None and precision == "16-mixed"
        self.scaler = _sharded_grad_scaler(self.device) if self._own_scaler else scaler
        self._autocast_dtype = _CONFIG_DTYPES[precision]
        # the dtype of the module, the batches and new tensors (CastingPrecision's): float32 under the mixed ones
        self._dtype = torch.float32 if self._mixed else _CONFIG_DTYPES[precision]

    @property
    def _desired_input_dtype(self) -> torch.dtype:
        return self._dtype  # Lightning's name for it, which some code reads

    def _use_device(self, device_type: str) -> None:
        """Run on ``device_type`` (``"cuda"``, ``"cpu"``, ...): autocast there, and the default scaler made for
        it. The Trainer calls it with its accelerator's type; Lightning's plugin autocasts on CUDA always, so on
        CPU it computed the mixed precisions without autocast and its default scaler was disabled."""
        if device_type == self.device:
            return
        self.device = device_type
        if self._own_scaler:
            self.scaler = _sharded_grad_scaler(device_type)

    @property
    def mixed_precision_config(self) -> Any:
        """FSDP1's ``MixedPrecision`` with the precision's dtype for ``param_dtype``, ``reduce_dtype`` and
        ``buffer_dtype``, as Lightning's plugin gives it; ``FSDPStrategy.mixed_precision_config`` is this unless
        the strategy was given ``mixed_precision=``."""
        from torch.distributed.fsdp import MixedPrecision as FSDP1MixedPrecision

        if self.precision in ("16-true", "bf16-true"):
            # Lightning's warning starts the same; its rest ("FSDP will always retain a full-precision copy of the
            # model parameters") is FSDP1's: FSDP2 shards the converted parameters
            rank_zero_warn(
                f"FSDP with `{self.precision}` enables computation in lower precision. The module is converted to"
                f" {self._dtype} before it is sharded, so its weights, gradients and optimizer states are kept in"
                " it, with no full-precision copy."
            )
        dtype = _CONFIG_DTYPES[self.precision]
        return FSDP1MixedPrecision(param_dtype=dtype, reduce_dtype=dtype, buffer_dtype=dtype)

    # ---- each method of the kind the precision is: MixedPrecision's or HalfPrecision's (CastingPrecision) ----
    def convert_module(self, module: nn.Module) -> nn.Module:
        """The module in the precision's dtype for ``"*-true"``; unchanged (float32) for the mixed ones."""
        return CastingPrecision.convert_module(self, module) if not self._mixed else module

    def forward_context(self) -> contextlib.AbstractContextManager:
        """Autocast for the mixed precisions; for the others, new float tensors take the precision's dtype."""
        return MixedPrecision.forward_context(self) if self._mixed else CastingPrecision.forward_context(self)


def _sharded_grad_scaler(device_type: str) -> Any:
    """FSDP's ``ShardedGradScaler`` for ``device_type``: it all-reduces whether any rank's gradient overflowed."""
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    return ShardedGradScaler(device_type)


lightning_style_annotations(FSDPPrecision)  # Lightning's `typing` forms in the signature

# Lightning 1.x's names, kept as Lightning 2.x keeps them
FSDPPrecisionPlugin = renamed_plugin("FSDPPrecisionPlugin", FSDPPrecision)


class FSDPMixedPrecisionPlugin(FSDPPrecision):
    """Lightning 1.x's mixed-precision plugin of FSDP (deprecated): use ``FSDPPrecision``. It took the device
    as its second argument, which the Trainer now gives the plugin itself: it is accepted and not used."""

    def __init__(self, precision: Literal["16-mixed", "bf16-mixed"], device: str, scaler: Any = None) -> None:
        from ember.utilities.rank_zero import rank_zero_deprecation

        rank_zero_deprecation(
            "The `FSDPMixedPrecisionPlugin` is deprecated. Use `FSDPPrecision` (Lightning's"
            " `pytorch_lightning.plugins.precision.FSDPPrecision`, Ember's `ember.precision`) instead."
        )
        super().__init__(precision, scaler=scaler)


lightning_style_annotations(FSDPMixedPrecisionPlugin)
