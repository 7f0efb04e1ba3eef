"""The precision plugin's base class: full precision (``"32-true"``), and the optimizer step every
precision runs. The other precisions change a part of it: autocast and loss scaling
(``MixedPrecision``), casts to one dtype (``HalfPrecision``, ``DoublePrecision``), quantized layers
(``BitsandbytesPrecision``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim import optimizer as _torch_optimizer

from ember.utilities.exceptions import MisconfigurationException, not_supported
from ember.utilities.imports import package_available

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
PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
# Lightning's precisions on NVIDIA Transformer Engine, which Ember does not train with
_TRANSFORMER_ENGINE = ("transformer-engine", "transformer-engine-float16")
# Lightning's message when the `transformer_engine` package is not installed
_TRANSFORMER_ENGINE_MISSING = (
    "Requirement 'transformer_engine>=0.11.0' not met. HINT: Try running `pip install -U 'transformer_engine>=0.11.0'`"
)


def transformer_engine_refused(requested: str) -> Exception:
    """The error for ``requested`` (``TransformerEnginePrecision``, or a Trainer's transformer-engine precision):
    Ember does not train with Transformer Engine, and what to use instead. Where the ``transformer_engine``
    package is not installed it is a ``ModuleNotFoundError`` with Lightning's text first, as Lightning raises
    then, so a program that falls back on ``except ImportError`` runs on."""
    error = not_supported(
        requested,
        "Ember does not train with NVIDIA Transformer Engine's FP8 layers.",
        'Use `Trainer(precision="bf16-mixed")` (or `"16-mixed"`), or Lightning itself for FP8.',
    )
    if not package_available("transformer_engine"):
        return ModuleNotFoundError(f"{_TRANSFORMER_ENGINE_MISSING}. {error}")
    return error


def normalize_precision(precision: Any) -> str:
    """The full name of a precision setting: ``16`` -> ``"16-mixed"``, ``None`` -> ``"32-true"``."""
    if precision is None:
        return "32-true"
    if isinstance(precision, str) and precision in _TRANSFORMER_ENGINE:
        raise transformer_engine_refused(f"`Trainer(precision={precision!r})`")
    try:
        name = _ALIASES[precision]
    except (KeyError, TypeError):
        # a ValueError, as in Lightning
        raise ValueError(
            f"Precision {precision!r} is invalid. Allowed precision values: {PRECISIONS}"
            " (or the aliases 64, 32, 16, '64', '32', '16', 'bf16')."
        ) from None
    # every short spelling: `16`, `"16"`, `numpy.int64(16)` and `"bf16"` as in Lightning, and `16.0`, which Ember
    # takes for `16` (Lightning fails on it)
    if name in ("16-mixed", "bf16-mixed") and not (isinstance(precision, str) and precision == name):
        from ember.utilities.rank_zero import rank_zero_warn

        rank_zero_warn(
            f"`precision={precision}` is supported for historical reasons but its usage is discouraged. Please set"
            f" your precision to {name} instead!"
        )
    return name


def check_gradient_clip_val(value: float, call: str = "Trainer") -> None:
    """Refuse a gradient clipping limit below 0 or NaN, naming the ``call`` it was given to (``"Trainer"``,
    ``"clip_gradients"``): a negative norm would flip the sign of every gradient, and NaN would make them all
    NaN."""
    if not value >= 0:  # NaN fails this too
        raise MisconfigurationException(
            f"`{call}(gradient_clip_val={value!r})` must be >= 0: it is the largest gradient norm (or value, with"
            " `gradient_clip_algorithm='value'`) to allow. Pass a positive number, or 0 or None to turn clipping off."
        )


def _own_step(cls: type[Optimizer]) -> Any:
    """``cls``'s own ``step`` function, beneath the profiling wrapper torch puts on it."""
    step: Any = cls.step
    return step.__wrapped__ if getattr(step, "hooked", False) else step


def evaluates_closure_once(optimizer: Optimizer) -> bool:
    """Whether ``optimizer`` is one of torch's optimizers that evaluate a closure exactly once per step."""
    return type(optimizer) in _SINGLE_EVALUATION


# torch's optimizers that evaluate a closure exactly once per step, with their own `step` functions
_SINGLE_EVALUATION = {
    cls: _own_step(cls)
    for cls in (
        getattr(torch.optim, name)
        for name in (
            "SGD",
            "Adam",
            "AdamW",
            "Adamax",
            "Adagrad",
            "Adadelta",
            "RMSprop",
            "Rprop",
            "NAdam",
            "RAdam",
            "ASGD",
        )
        if hasattr(torch.optim, name)
    )
}


class Precision:
    """Full precision (``"32-true"``), and the base class of every precision plugin.

    The Trainer calls, in this order: ``convert_module`` once the model is configured and restored
    from ``ckpt_path`` (before the optimizers are created), ``convert_input`` on each batch,
    ``forward_context`` around every step (training, validation, test, predict), ``clip_gradients``
    before an optimizer step, and ``state_dict`` /
    ``load_state_dict`` (plus ``on_save_checkpoint`` / ``on_load_checkpoint``) with checkpoints.
    ``tensor_init_context`` is what ``trainer.init_module()`` enters, ``module_init_context`` what
    ``configure_model`` runs in, and ``connect`` sees the model and optimizers once they are set up.

    Lightning's ``pre_backward``, ``backward``, ``post_backward`` (around every backward) and ``optimizer_step``
    (every step) are here too: the strategy's ``backward`` and ``optimizer_step`` run through them. The
    training loop runs the same steps itself, faster, unless a plugin of the program's own overrides one of
    them: then every backward (every step) goes through the plugin, as in Lightning.

    Subclass it and override those to change the precision, and pass an instance in
    ``Trainer(plugins=[...])``.

    Example::

        class InputsInBfloat16(Precision):
            def convert_input(self, data):
                return apply_to_tensors(data, lambda t: t.bfloat16() if t.is_floating_point() else t)

        trainer = Trainer(plugins=[InputsInBfloat16()])
    """

    precision: str = "32-true"
    scaler: Any = None  # a GradScaler (MixedPrecision with fp16)
    # runs backward instead of `loss.backward()` where an engine does it (DeepSpeed); decided once per run
    engine_backward: Callable[..., None] | None = None
    # the module's setting, set as each call starts (Lightning's plugins read `model.automatic_optimization`): a
    # step whose closure returned None skips the backward in automatic optimization only
    automatic_optimization: bool = True

    # ---- what the loop asks once, when it is built ----------------------------------------------
    @property
    def is_identity(self) -> bool:
        """The training steps run with no context around them (``forward_context`` and ``train_step_context``
        are the base class's)."""
        cls = type(self)
        return (
            cls.forward_context is Precision.forward_context and cls.train_step_context is Precision.train_step_context
        )

    def step_context(self, kind: str) -> Callable[[], contextlib.AbstractContextManager]:
        """What the loop enters around each step of ``kind`` (``"train"``, ``"val"``, ``"test"``, ``"predict"``):
        the plugin's ``<kind>_step_context`` where it overrides it, as Lightning's strategies enter, else
        ``forward_context`` (which those are by default)."""
        name = f"{kind}_step_context"
        return (
            getattr(self, name) if getattr(type(self), name) is not getattr(Precision, name) else self.forward_context
        )

    @property
    def converts_input(self) -> bool:
        """Batches go through ``convert_input`` (a subclass overrides it)."""
        return type(self).convert_input is not Precision.convert_input

    # ---- the model, the data, the step --------------------------------------------------------
    def convert_module(self, module: nn.Module) -> nn.Module:
        """The module in this precision's dtype (called once the module is configured and its weights restored,
        as in Lightning: a layer ``on_load_checkpoint`` builds is converted too)."""
        return module

    def convert_input(self, data: Any) -> Any:
        """A batch's floating-point tensors in this precision's dtype."""
        return data

    def convert_output(self, data: Any) -> Any:
        """A step's floating-point outputs back in the default dtype."""
        return data

    def forward_context(self) -> contextlib.AbstractContextManager:
        """The context every step (training, validation, test, predict) runs in."""
        return contextlib.nullcontext()

    # Lightning's contexts of each kind of step: each is `forward_context`, as in Lightning. The loop enters a
    # plugin's own where it overrides one (`step_context`); programs enter them too (e.g. an EMA callback's
    # `update_bn` under `trainer.precision_plugin.train_step_context()`).
    def train_step_context(self) -> contextlib.AbstractContextManager:
        """The context of a training step: ``forward_context()``."""
        return self.forward_context()

    def val_step_context(self) -> contextlib.AbstractContextManager:
        """The context of a validation step: ``forward_context()``."""
        return self.forward_context()

    def test_step_context(self) -> contextlib.AbstractContextManager:
        """The context of a test step: ``forward_context()``."""
        return self.forward_context()

    def predict_step_context(self) -> contextlib.AbstractContextManager:
        """The context of a predict step: ``forward_context()``."""
        return self.forward_context()

    def tensor_init_context(self) -> contextlib.AbstractContextManager:
        """The context in which new tensors take this precision's dtype (``trainer.init_module()``)."""
        return contextlib.nullcontext()

    def module_init_context(self) -> contextlib.AbstractContextManager:
        """The context for instantiating a module in this precision."""
        return self.tensor_init_context()

    def connect(
        self, model: nn.Module, optimizers: list[Any], lr_schedulers: list[Any]
    ) -> tuple[nn.Module, list[Any], list[Any]]:
        """Adjust the model, the optimizers and the scheduler configs once they are set up (unchanged here)."""
        return model, optimizers, lr_schedulers

    def main_params(self, optimizer: Optimizer) -> Iterator[nn.Parameter]:
        """The parameters ``optimizer`` updates."""
        for group in optimizer.param_groups:
            yield from group["params"]

    def scale_loss(self, loss: Tensor) -> Tensor:
        """The loss to call backward on (scaled for fp16 by ``MixedPrecision``)."""
        return loss

    def unscale_for_clipping(self, optimizer: Optimizer) -> None:
        """Bring the gradients back to their true scale before clipping (``MixedPrecision`` with fp16)."""

    def unscale_gradients(self, optimizer: Optimizer) -> None:
        """Lightning's public name of ``unscale_for_clipping``, which programs call before clipping by hand (in a
        ``configure_gradient_clipping`` override, or in manual optimization): ``optimizer``'s gradients unscaled
        by the fp16 GradScaler, a no-op without one or where they are unscaled already (in automatic
        optimization, before ``configure_gradient_clipping``). Lightning's is a no-op always (docs/compat.md)."""
        self.unscale_for_clipping(optimizer)

    def clip_gradients(
        self, optimizer: Optimizer, clip_val: float = 0.0, gradient_clip_algorithm: str = "norm"
    ) -> None:
        """Clip the gradients of ``optimizer``'s parameters by ``"norm"`` or ``"value"`` (after unscaling)."""
        if clip_val <= 0:
            return
        self.unscale_for_clipping(optimizer)
        if str(gradient_clip_algorithm).lower().split(".")[-1] == "value":
            self.clip_grad_by_value(optimizer, clip_val)
        else:
            self.clip_grad_by_norm(optimizer, clip_val)

    def clip_grad_by_value(self, optimizer: Optimizer, clip_val: float) -> None:
        params = [p for p in self.main_params(optimizer) if p.grad is not None]
        torch.nn.utils.clip_grad_value_(params, clip_val)

    def clip_grad_by_norm(self, optimizer: Optimizer, clip_val: float) -> None:
        params = [p for p in self.main_params(optimizer) if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, clip_val)

    def run_optimizer_step(
        self,
        optimizer: Optimizer,
        closure: Callable[[], Any],
        before_step: Callable[[], None] | None,
        **kwargs: Any,
    ) -> Any:
        """Run ``closure`` (forward and backward), ``before_step`` (hooks, clipping; None for none), then step.

        This is the one place where an optimizer steps, in automatic and in manual optimization. ``kwargs``
        (given to ``LightningOptimizer.step``) go to the optimizer's ``step``.

        Where ``closure(); optimizer.step()`` does exactly what ``optimizer.step(closure)`` would, the closure
        is called directly, without the closure machinery: for an optimizer that evaluates a closure exactly
        once per step (most torch optimizers) with torch's own ``step`` (a step replaced on the class or the
        instance, a wrapper, a mock, gets the closure), when no torch step hook is registered (torch runs the
        pre-hooks before the closure) and grad mode is on (torch's ``step`` runs the closure under
        ``enable_grad``). Decided at each step, so a hook registered mid-run counts from the next step; the
        checks are attribute reads, made here rather than in a function of their own (a call on every step).
        """
        own = _SINGLE_EVALUATION.get(type(optimizer))
        if (
            own is not None
            and "step" not in optimizer.__dict__
            # a torch step pre- or post-hook: the optimizer's own (`register_step_pre_hook`) or one for every
            # optimizer (`register_optimizer_step_pre_hook`)
            and not optimizer._optimizer_step_pre_hooks
            and not optimizer._optimizer_step_post_hooks
            and not _torch_optimizer._global_optimizer_pre_hooks
            and not _torch_optimizer._global_optimizer_post_hooks
            and torch.is_grad_enabled()
            # (torch wraps the class's `step` in its profiling hook when the first instance is made)
            and (getattr(type(optimizer).step, "__wrapped__", None) is own or type(optimizer).step is own)
        ):
            # the closure runs exactly once before the update, with nothing else around it
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

    # ---- Lightning's backward and step, as the strategy runs them --------------------------------
    def pre_backward(self, tensor: Tensor, module: Any) -> Tensor:
        """Before backward: the loss scaled (fp16 AMP), then the ``on_before_backward`` hooks (the callbacks',
        then the module's) with it. Returns the loss to run backward on."""
        scaled = self.scale_loss(tensor)
        _call_hooks(module, "on_before_backward", scaled)
        return scaled

    def backward(self, tensor: Tensor, model: Any, optimizer: Optimizer | None, *args: Any, **kwargs: Any) -> None:
        """The backward: the engine's where one runs it (DeepSpeed), else the module's ``backward`` hook.
        ``args`` and ``kwargs`` (e.g. ``retain_graph=True``) go to it."""
        if self.engine_backward is not None:
            self.engine_backward(tensor, *args, **kwargs)
        else:
            model.backward(tensor, *args, **kwargs)

    def post_backward(self, tensor: Tensor, module: Any) -> Tensor:
        """After backward: the loss released from its graph, then the ``on_after_backward`` hooks. Returns it."""
        released = tensor.detach()
        _call_hooks(module, "on_after_backward")
        return released

    def optimizer_step(self, optimizer: Optimizer, model: Any, closure: Callable[[], Any], **kwargs: Any) -> Any:
        """``closure`` (forward and backward), then the hooks before a step and gradient clipping, then the step
        (``run_optimizer_step``). ``model`` is the LightningModule (or a wrapper holding it as ``module``, as DDP's
        does); ``kwargs`` go to the optimizer's ``step``."""
        strategy = getattr(_running_trainer(model), "strategy", None)
        return self.run_optimizer_step(optimizer, closure, getattr(strategy, "_before_optimizer_step", None), **kwargs)

    # ---- checkpoints and the end of a run ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What this precision keeps in a checkpoint, under its class name (e.g. the fp16 loss scale)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Called with the whole checkpoint before it is written."""

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Called with the whole checkpoint when a run resumes from it."""

    def teardown(self) -> None:
        """Called when a run ends."""


class CastingPrecision(Precision):
    """Parameters, floating-point inputs and the tensors a step creates all take one dtype (the
    ``"-true"`` precisions: ``HalfPrecision``, ``DoublePrecision``)."""

    _dtype: torch.dtype = torch.float32

    def convert_module(self, module: nn.Module) -> nn.Module:
        return module.to(dtype=self._dtype)

    def convert_input(self, data: Any) -> Any:
        return cast_floating(data, self._dtype)

    def convert_output(self, data: Any) -> Any:
        return cast_floating(data, torch.get_default_dtype())

    def forward_context(self) -> contextlib.AbstractContextManager:
        # as Lightning: inside a step, new float tensors take this precision's dtype
        return default_dtype(self._dtype)

    def tensor_init_context(self) -> contextlib.AbstractContextManager:
        return default_dtype(self._dtype)


def _running_trainer(model: Any) -> Any:
    """The Trainer running ``model``, a LightningModule or a wrapper holding it as ``module`` (DDP's); None
    outside one."""
    module = model if hasattr(model, "_trainer") else getattr(model, "module", model)
    return getattr(module, "_trainer", None)


def _call_hooks(module: Any, name: str, *args: Any) -> None:
    """The callbacks' hook ``name``, then the module's, in the call that runs ``module`` (none outside one)."""
    hooks = getattr(getattr(_running_trainer(module), "_run", None), "hooks", None)
    if hooks is not None:
        hooks.call_callbacks(name, *args)
        hooks.call_module(name, *args)


def cast_floating(data: Any, dtype: torch.dtype) -> Any:
    """``data`` with each floating-point tensor in ``dtype`` (other tensors and values unchanged)."""
    from ember.utilities.apply_func import apply_to_tensors

    return apply_to_tensors(data, lambda t: t.to(dtype) if t.is_floating_point() else t)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """New floating-point tensors take ``dtype`` inside the block."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def renamed_plugin(old_name: str, plugin: type[Precision]) -> type[Precision]:
    """Lightning 1.x's name ``old_name`` of ``plugin`` (``PrecisionPlugin`` of ``Precision``, ...), which Lightning
    2.x keeps: a subclass whose construction warns that the name is deprecated, so that code and libraries
    written for it import, subclass and build it. Each module of a plugin defines its old name with it."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        from ember.utilities.rank_zero import rank_zero_deprecation

        rank_zero_deprecation(
            f"The `{old_name}` is deprecated. Use `{plugin.__name__}` (Lightning's"
            f" `pytorch_lightning.plugins.precision.{plugin.__name__}`, Ember's `ember.precision`) instead."
        )
        plugin.__init__(self, *args, **kwargs)

    doc = f"Lightning 1.x's name of :class:`{plugin.__name__}` (deprecated): use ``{plugin.__name__}``."
    return type(old_name, (plugin,), {"__init__": __init__, "__doc__": doc, "__module__": plugin.__module__})


# Lightning 1.x's name, kept as Lightning 2.x keeps it (also at its old path `plugins.precision.precision_plugin`)
PrecisionPlugin = renamed_plugin("PrecisionPlugin", Precision)
