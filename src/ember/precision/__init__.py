"""Numeric precision: the plugin classes (Lightning's ``plugins.precision``) and the one the Trainer's
``precision`` and ``plugins`` arguments choose.

Example::

    trainer = Trainer(precision="bf16-mixed")                        # builds MixedPrecision("bf16-mixed", ...)
    trainer = Trainer(plugins=[MixedPrecision("16-mixed", "cuda", scaler)])   # or pass the plugin
"""

from __future__ import annotations

from typing import Any

from ember.precision.precision import PRECISIONS, Precision, normalize_precision
from ember.precision.precision import PrecisionPlugin as PrecisionPlugin
from ember.utilities.lazy import lazy_attribute

# the plugin classes, imported on first use: a Trainer in full precision (most runs) loads none of them
_LAZY = {
    "MixedPrecision": "ember.precision.amp",
    "MixedPrecisionPlugin": "ember.precision.amp",
    "BitsandbytesPrecision": "ember.precision.bitsandbytes",
    "BitsandbytesPrecisionPlugin": "ember.precision.bitsandbytes",
    "DeepSpeedPrecision": "ember.precision.deepspeed",
    "DeepSpeedPrecisionPlugin": "ember.precision.deepspeed",
    "DoublePrecision": "ember.precision.double",
    "DoublePrecisionPlugin": "ember.precision.double",
    "FSDPPrecision": "ember.precision.fsdp",
    "FSDPPrecisionPlugin": "ember.precision.fsdp",
    "FSDPMixedPrecisionPlugin": "ember.precision.fsdp",
    "HalfPrecision": "ember.precision.half",
    "HalfPrecisionPlugin": "ember.precision.half",
    "TransformerEnginePrecision": "ember.precision.unsupported",
    "TransformerEnginePrecisionPlugin": "ember.precision.unsupported",
    "XLAPrecision": "ember.precision.unsupported",
    "XLAPrecisionPlugin": "ember.precision.unsupported",
    # Lightning 1.x's TPU names and Lightning's removed HPU classes, which Lightning 2.x keeps: by name only
    "HPUPrecisionPlugin": "ember.accelerators.hpu",
    "TPUBf16PrecisionPlugin": "ember.precision.unsupported",
    "TPUPrecisionPlugin": "ember.precision.unsupported",
    "XLABf16PrecisionPlugin": "ember.precision.unsupported",
}

# the `...PrecisionPlugin` names are Lightning 1.x's (deprecated): importable here, and out of `__all__`, as in
# Lightning 2.x
__all__ = [
    "PRECISIONS",
    "BitsandbytesPrecision",
    "DeepSpeedPrecision",
    "DoublePrecision",
    "FSDPPrecision",
    "HalfPrecision",
    "MixedPrecision",
    "Precision",
    "TransformerEnginePrecision",
    "XLAPrecision",
    "choose_precision",
    "create_precision",
    "normalize_precision",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(globals(), _LAZY, name)


def __dir__() -> list[str]:
    return sorted({*__all__, *_LAZY})


def create_precision(precision: str, device_type: str) -> Precision:
    """The plugin for a precision name (as ``normalize_precision`` returns it) on a device type."""
    if precision == "64-true":
        from ember.precision.double import DoublePrecision

        return DoublePrecision()
    if precision in ("16-true", "bf16-true"):
        from ember.precision.half import HalfPrecision

        return HalfPrecision(precision)
    if precision in ("16-mixed", "bf16-mixed"):
        from ember.precision.amp import MixedPrecision

        return MixedPrecision(precision, device_type)
    return Precision()


def choose_precision(precision: Any, plugins: Any, strategy: Any, device_type: str) -> Precision:
    """The precision plugin for ``Trainer(precision=..., plugins=...)`` and a strategy's ``precision_plugin``.

    As Lightning: at most one of the three may be given; ``"16-mixed"`` on CPU becomes ``"bf16-mixed"``
    with a warning; bitsandbytes runs on CUDA and CPU.
    """
    from ember.utilities.exceptions import MisconfigurationException
    from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn

    # one at most: `create_strategy` refused several plugins of a kind already
    given = plugins if isinstance(plugins, (list, tuple)) else [plugins]
    plugin = next((p for p in given if isinstance(p, Precision)), None)
    if plugin is not None and precision is not None:
        raise ValueError(
            f"Received both `precision={normalize_precision(precision)}` and `plugins={plugin}`. Choose one."
        )
    from_strategy = strategy.precision_plugin
    if from_strategy is not None:
        if plugin is not None:
            raise MisconfigurationException("precision set through both strategy class and plugins, choose one")
        plugin = from_strategy
    if plugin is None:
        name = normalize_precision(precision)
        if name == "16-mixed" and device_type == "cpu":
            # as Lightning 2.6: a GPU program still runs on a CPU machine, in the precision CPUs support
            rank_zero_warn(
                "You passed `Trainer(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not supported on"
                " CPU. Using `precision='bf16-mixed'` instead."
            )
            name = "bf16-mixed"
        if name in ("16-mixed", "bf16-mixed") and getattr(strategy, "strategy_name", None) not in ("fsdp", "deepspeed"):
            # Lightning's line (its FSDP and DeepSpeed plugins say nothing)
            rank_zero_info(f"Using {'16bit' if name == '16-mixed' else 'bfloat16'} Automatic Mixed Precision (AMP)")
        return strategy.precision_for(name, device_type)  # DeepSpeed: its own plugin
    from ember.precision.bitsandbytes import BitsandbytesPrecision
    from ember.precision.fsdp import FSDPPrecision

    if isinstance(plugin, BitsandbytesPrecision) and device_type not in ("cuda", "cpu"):
        # Lightning allows CUDA only; bitsandbytes 0.46+ quantizes on CPU as well
        raise RuntimeError(
            f"Bitsandbytes is only supported on CUDA GPUs and CPUs, not on {device_type!r}: use"
            " `Trainer(accelerator='cuda')` (or 'cpu') with `BitsandbytesPrecision`, or drop the plugin."
        )
    if isinstance(plugin, FSDPPrecision):
        plugin._use_device(device_type)  # built without one (Lightning's signature): autocast on the run's device
    return plugin
