"""``BitsandbytesPrecision``: the model's ``nn.Linear`` layers replaced by bitsandbytes' quantized
layers (4-bit NF4/FP4, or 8-bit), computing in a half-precision dtype."""

from __future__ import annotations

import contextlib
import os
import warnings
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ember.precision.precision import CastingPrecision, renamed_plugin
from ember.utilities.signature_utils import lightning_style_annotations

_MODES = ("nf4", "nf4-dq", "fp4", "fp4-dq", "int8", "int8-training")


class BitsandbytesPrecision(CastingPrecision):
    """Quantize the weights of every ``nn.Linear`` with `bitsandbytes`_, as Lightning's plugin does.

    Args:
        mode: ``"nf4"`` / ``"fp4"`` (4-bit weights), ``"nf4-dq"`` / ``"fp4-dq"`` (4-bit with their
            quantization constants quantized too), ``"int8"`` (8-bit weights, frozen) or
            ``"int8-training"`` (8-bit matmuls with float16 weights that train).
        dtype: the dtype the layers compute in and the batches are cast to. Default: float16 for the
            int8 modes (the only one they support), else bfloat16 where the GPU supports it (and on
            CPU), else float16.
        ignore_modules: names of submodules whose ``Linear`` layers stay as they are, matched as
            prefixes (``{"lm_head"}``, ``{"transformer.blocks"}``).

    The layers are replaced when the run starts and quantized when the model moves to its device.
    The optimizer is not replaced by an 8-bit one; 4-bit and ``"int8"`` weights are frozen, so train
    what stays in full precision (adapters, heads in ``ignore_modules``).

    Example::

        trainer = Trainer(accelerator="cuda", plugins=[BitsandbytesPrecision("nf4-dq", ignore_modules={"head"})])

    .. _bitsandbytes: https://github.com/bitsandbytes-foundation/bitsandbytes
    """

    def __init__(self, mode: str, dtype: torch.dtype | None = None, ignore_modules: set[str] | None = None) -> None:
        import_bitsandbytes()
        if mode not in _MODES:
            raise ValueError(
                f"`BitsandbytesPrecision(mode={mode!r})` is not supported: use one of {', '.join(map(repr, _MODES))}."
            )
        if dtype is None:
            dtype = torch.float16 if mode.startswith("int8") else _default_4bit_dtype()
        if mode.startswith("int8") and dtype is not torch.float16:
            raise ValueError(f"{mode!r} only works with `dtype=torch.float16`, but you chose `{dtype}`")
        self.mode = mode
        self._dtype = dtype
        self.ignore_modules = set(ignore_modules or ())

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the layers compute in and the batches are cast to."""
        return self._dtype

    def convert_module(self, module: nn.Module) -> nn.Module:
        """Replace the ``Linear`` layers (once; their weights are quantized when the module moves to a device)."""
        if not any(isinstance(m, nn.Linear) for m in module.modules()):
            raise TypeError(
                "You are using the bitsandbytes precision plugin, but your model has no Linear layers. This plugin"
                " won't work for your model: drop the plugin, or choose a `precision` instead."
            )
        bnb = import_bitsandbytes()
        quantized = (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)
        if not any(isinstance(m, quantized) for m in module.modules()):
            self._replace_linears(module, bnb, prefix="")
        for layer in module.modules():
            if isinstance(layer, bnb.nn.Linear4bit):
                layer.compute_dtype = self.dtype
        return module

    def _replace_linears(self, module: nn.Module, bnb: ModuleType, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Linear) and not any(path.startswith(kept) for kept in self.ignore_modules):
                setattr(module, name, self._quantized_like(child, bnb))
            else:
                self._replace_linears(child, bnb, path)

    def _quantized_like(self, linear: nn.Linear, bnb: ModuleType) -> nn.Module:
        """A bitsandbytes layer holding ``linear``'s weights, on the same device (quantized there unless on meta)."""
        weight = linear.weight.detach().to("cpu", copy=True)
        bias = linear.bias
        if self.mode.startswith("int8"):
            trains = self.mode == "int8-training"
            layer = bnb.nn.Linear8bitLt(
                linear.in_features, linear.out_features, bias=bias is not None, has_fp16_weights=trains, threshold=6.0
            )
            layer.weight = bnb.nn.Int8Params(weight.half(), requires_grad=trains, has_fp16_weights=trains)
        else:
            kind, double_quant = self.mode[:3], self.mode.endswith("-dq")
            layer = bnb.nn.Linear4bit(
                linear.in_features,
                linear.out_features,
                bias=bias is not None,
                compute_dtype=self.dtype,
                compress_statistics=double_quant,
                quant_type=kind,
            )
            layer.weight = bnb.nn.Params4bit(
                weight, requires_grad=False, compress_statistics=double_quant, quant_type=kind
            )
        if bias is not None:
            layer.bias = nn.Parameter(bias.detach().to("cpu", copy=True), requires_grad=bias.requires_grad)
        device = linear.weight.device
        return layer if device.type in ("cpu", "meta") else layer.to(device)


def _default_4bit_dtype() -> torch.dtype:
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def import_bitsandbytes() -> ModuleType:
    """The ``bitsandbytes`` module, imported quietly; a clear error naming the package when it is missing."""
    try:
        with _quiet_bitsandbytes():
            import bitsandbytes
    except ImportError as error:
        raise ModuleNotFoundError(
            "`BitsandbytesPrecision` needs the `bitsandbytes` package, which is not installed: run"
            " `pip install bitsandbytes`, or choose a precision without quantization."
        ) from error
    return bitsandbytes


@contextlib.contextmanager
def _quiet_bitsandbytes() -> Any:
    # bitsandbytes prints a banner on import unless told not to; keep the caller's setting
    set_before = "BITSANDBYTES_NOWELCOME" in os.environ
    os.environ.setdefault("BITSANDBYTES_NOWELCOME", "1")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*bitsandbytes was compiled without GPU support.*")
            yield
    finally:
        if not set_before:
            del os.environ["BITSANDBYTES_NOWELCOME"]


lightning_style_annotations(BitsandbytesPrecision)  # Lightning's `typing` forms in the signature

# Lightning 1.x's names, kept as Lightning 2.x keeps them
BitsandbytesPrecisionPlugin = renamed_plugin("BitsandbytesPrecisionPlugin", BitsandbytesPrecision)
