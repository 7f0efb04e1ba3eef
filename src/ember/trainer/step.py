"""``TrainingStep``: what training on one batch does, in automatic and in manual optimization.

Automatic optimization, the order Lightning uses::

    run_optimizer_step(closure)                 # precision plugin: AMP scaling, or closure then step
        closure:  training_step -> [window start] on_before_zero_grad, optimizer_zero_grad
                  -> on_before_backward -> backward -> on_after_backward
        before the step: on_before_optimizer_step -> configure_gradient_clipping
    while accumulating: closure only, without DDP's gradient sync

Manual optimization: ``training_step`` alone; inside it the user calls ``self.manual_backward``
and ``opt.step()``, which land in :meth:`TrainingStep.manual_backward` and
:meth:`TrainingStep.optimizer_step_from_wrapper`.

Every decision (which hooks are overridden, precision, clipping, profiling) is taken once, in
``__init__``, when the epoch starts; the per-batch path only calls what is needed.
"""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import torch
from torch import Tensor

from ember.core.hooks import program_overrides
from ember.core.optimizer import _do_nothing, before_step_hooks
from ember.profilers.profiler import profiled, strategy_action
from ember.trainer.data import takes_dataloader_iter
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import WarningCache
from ember.utilities.signature_utils import step_without_batch_idx

if TYPE_CHECKING:
    from ember.core.optimizer import LightningOptimizer
    from ember.trainer.run import Run
    from ember.trainer.trainer import Trainer

_NOT_RUN = object()


class NonScalarLossError(MisconfigurationException, RuntimeError):
    """The loss ``training_step`` returned is not a scalar. Lightning lets torch's ``backward`` fail with a
    ``RuntimeError`` ("grad can be implicitly created only for scalar outputs"): this error says more, and
    ``except RuntimeError`` still catches it."""


_warning_cache = WarningCache()  # once a process, as Lightning's automatic optimization warns


class TrainingStep:
    """Trains on one batch. ``train_on(batch, batch_idx, accumulating)`` returns the batch outputs.

    Example::

        step = TrainingStep(trainer, run)
        outputs = step.train_on(batch, batch_idx, accumulating=False)
    """

    def __init__(self, trainer: Trainer, run: Run) -> None:
        hooks, module, precision, strategy = (
            run.hooks,
            trainer.lightning_module,
            trainer.precision_plugin,
            trainer.strategy,
        )
        assert hooks is not None
        profiler = run.profiler
        self.trainer, self.module, self.precision, self.strategy, self.hooks = (
            trainer,
            module,
            precision,
            strategy,
            hooks,
        )
        self.progress = run.progress
        # bound once, installed on the optimizers for every manual batch: around each `opt.step()`, Lightning's
        # `optimizer_step` span (with a profiler) and the step count
        self._before_manual_step: Callable[[], Any] = _do_nothing
        self._count_step_fn: Callable[[], None] = self._count_step
        if run.profiler is not None:
            start, stop = run.profiler.start, run.profiler.stop
            self._before_manual_step = functools.partial(start, "optimizer_step")

            def _after_manual_step() -> None:
                stop("optimizer_step")
                self._count_step()

            self._count_step_fn = _after_manual_step
        self.automatic = module.automatic_optimization
        # the outputs are built only for someone who reads them
        self.need_outputs = hooks.reads_batch_outputs()
        # `training_step(self, dataloader_iter)` draws its own batches (read here, once: `self.log` asks it)
        self.takes_iterator = takes_dataloader_iter(module, "training_step")
        step = step_fn(strategy, module, "training_step")
        if program_overrides(strategy, "post_training_step"):
            step = _then_post_training_step(step, strategy)
        step = profiled(profiler, strategy_action(strategy, "training_step"), step)
        self._training_step = hooks.as_hook("training_step", step_without_batch_idx(module, "training_step", step))
        self._forward_context = None if precision.is_identity else precision.step_context("train")
        # the training step, in the plugin's context where it has one (without, no layer around it)
        self._forward: Callable[[Any, int], Any] = (
            self._training_step if self._forward_context is None else self._forward_in_context
        )
        # manual optimization's backward: not recorded, as in Lightning (automatic's is: `_decide_automatic`)
        self._strategy_backward = strategy.backward
        # the one place an optimizer steps (`precision.run_optimizer_step`), or the strategy's way to it (and from
        # there the plugin's `optimizer_step`), where the program's strategy or plugin overrides it
        self._run_optimizer_step = (
            self._strategy_optimizer_step
            if program_overrides(strategy, "optimizer_step")
            or program_overrides(precision, "optimizer_step")
            or strategy.steps_through_optimizer_step()
            else self.precision.run_optimizer_step
        )
        self.train_on = self._automatic_step if self.automatic else self._manual_step
        if self.automatic:
            self._decide_automatic(trainer, run)

    def _decide_automatic(self, trainer: Trainer, run: Run) -> None:
        from ember.precision.precision import Precision, evaluates_closure_once  # loaded at fit, not at `import ember`

        hooks, profiler = self.hooks, run.profiler
        module_action = f"[LightningModule]{type(self.module).__name__}."
        self.optimizer = trainer.optimizers[0]
        self.accumulate = trainer.accumulate_grad_batches
        self._on_before_zero_grad = hooks.caller("on_before_zero_grad")
        self._optimizer_zero_grad = hooks.module_caller("optimizer_zero_grad")
        self._zero_grad = profiled(profiler, module_action + "optimizer_zero_grad", self.optimizer.zero_grad)
        self._on_before_backward = hooks.caller("on_before_backward")
        self._on_after_backward = hooks.caller("on_after_backward")
        backward = hooks.module_caller("backward")  # None: `loss.backward()` itself
        if self.precision.engine_backward is not None:
            backward = self.precision.engine_backward  # DeepSpeed: its engine runs backward
        if profiler is not None:
            backward = profiled(profiler, strategy_action(self.strategy, "backward"), backward or Tensor.backward)
        self._backward_fn = backward
        self._scaler = self.precision.scaler
        backward_steps = ("backward", "pre_backward", "post_backward")
        through_strategy = program_overrides(self.strategy, *backward_steps) or program_overrides(
            self.precision, *backward_steps
        )
        if through_strategy:
            self._backward = self._backward_through_strategy  # type: ignore[method-assign]
        # nothing around the backward (no hook, scaler or strategy of the program's): `loss.backward()` itself
        self._plain_backward = (
            not through_strategy
            and backward is None
            and self._scaler is None
            and self._on_before_backward is None
            and self._on_after_backward is None
        )
        # zero_grad at a window's start: the optimizer's own, unless a hook goes with it
        self._zero_grad_hooked = self._on_before_zero_grad is not None or self._optimizer_zero_grad is not None
        self._on_before_optimizer_step = hooks.caller("on_before_optimizer_step")
        self._clip = self._clipping(trainer)
        # DeepSpeed accumulates in its engine: its step runs on every batch and updates at the window's end
        self._steps_every_batch = self.strategy.handles_gradient_accumulation
        needs_before_step = self._on_before_optimizer_step is not None or self._clip is not None
        self._before_step = self._before_optimizer_step if needs_before_step else None
        self._optimizer_step = profiled(profiler, module_action + "optimizer_step", self._run_optimizer_step)
        self._module_optimizer_step = hooks.module_caller("optimizer_step")
        # the closure's loss is returned detached where something of the program's may read it: an `optimizer_step`
        # override, an optimizer class of its own, a precision plugin's or strategy's own step. Otherwise only
        # torch's optimizer step gets it, which keeps nothing: the step makes no view that nobody reads (a
        # `detach` costs 2-3 µs in a training step), and the raw loop does not make one either
        self._detach_closure_loss = (
            self._module_optimizer_step is not None
            or not evaluates_closure_once(self.optimizer)
            or type(self.precision).run_optimizer_step is not Precision.run_optimizer_step
            or self._run_optimizer_step != self.precision.run_optimizer_step
        )
        self._batch: Any = None
        self._batch_idx = 0
        self._loss: Any = None  # what the closure computed for the current batch
        self._extra: Any = None  # the other entries of training_step's output
        # automatic optimization, and the program stepped an optimizer itself (not through `optimizer_step`):
        # the mark of a loop written for manual optimization without `self.automatic_optimization = False`
        self.program_stepped = False

    def _clipping(self, trainer: Trainer) -> Callable[[Any], None] | None:
        """Gradient clipping before each optimizer step: the module's hook, the Trainer's setting, or none."""
        value, algorithm = trainer.gradient_clip_val, trainer.gradient_clip_algorithm
        if self.hooks.module_overrides("configure_gradient_clipping") or self.hooks.module_overrides("clip_gradients"):
            configure = self.hooks.module_caller("configure_gradient_clipping", always=True)
            assert configure is not None
            return lambda optimizer: configure(optimizer, gradient_clip_val=value, gradient_clip_algorithm=algorithm)
        if not value:
            return None
        module = self.module
        return lambda optimizer: module.clip_gradients(
            optimizer, gradient_clip_val=value, gradient_clip_algorithm=algorithm
        )

    # ---- automatic optimization ----------------------------------------------------------------
    def _automatic_step(self, batch: Any, batch_idx: int, accumulating: bool) -> Any:
        self._batch, self._batch_idx = batch, batch_idx
        if accumulating and not self._steps_every_batch:
            with self.strategy.block_backward_sync():  # gradients sync once, at the window's last batch
                self._closure()
        elif self._module_optimizer_step is not None:
            self._step_through_module_hook(batch_idx)
        else:
            self._extra = _NOT_RUN
            self._optimizer_step(self.optimizer, self._closure, self._before_step)
            if self._extra is _NOT_RUN:  # an optimizer whose `step` ignored the closure: nothing trained
                _closure_not_run()
        if not accumulating:  # a window ended (DeepSpeed's engine steps on every batch, updating at the end)
            self.progress.global_step += 1
        outputs = self._outputs() if self.need_outputs else None
        # nothing of the batch is kept past its step: its data, and the loss with its graph (whose ops may hold
        # tensors that backward does not free)
        self._batch = self._loss = self._extra = None
        return outputs

    def _closure(self) -> Tensor | None:
        """training_step, zero_grad at the start of an accumulation window, then backward. Returns the loss
        (divided by the accumulation factor) detached from its graph, as Lightning's ``Closure`` does."""
        batch_idx = self._batch_idx
        output = self._forward(self._batch, batch_idx)
        loss: Tensor | None
        if type(output) is Tensor and output.ndim == 0:
            loss, extra = output, None
        else:
            if output is None and self.strategy.world_size > 1:
                # the other ranks would wait in their gradient all-reduce for this one forever
                raise RuntimeError(
                    "Skipping the `training_step` by returning None in distributed training is not supported."
                    " It is recommended that you rewrite your training logic to avoid having to skip the step in the"
                    " first place. (Every rank must compute a loss, or the others wait for it in their gradient"
                    " sync: return one on this rank instead, e.g. `0 * loss`.)"
                )
            loss, extra = _split_training_output(output)
        if batch_idx % self.accumulate == 0:
            if self._zero_grad_hooked:
                self._zero_grad_with_hooks(batch_idx)
            else:
                self._zero_grad()
        self._extra = extra
        if loss is None:
            if self.program_stepped:
                _warning_cache.warn(_STEPPED_AND_RETURNED_NONE)
            else:
                _warning_cache.warn("`training_step` returned `None`. If this was on purpose, ignore this warning...")
            self._loss = None
            return None
        if self.accumulate != 1:
            loss = loss / self.accumulate
        try:
            if self._plain_backward:
                loss.backward()
            else:
                self._backward(loss)
        except RuntimeError as error:
            raise _backward_error(error, loss, self, "the loss `training_step` returned") from error
        self._loss = loss
        if self._detach_closure_loss:
            return loss.detach()  # without the graph, as Lightning's closure returns it (a view: no copy)
        return loss

    def _forward_in_context(self, batch: Any, batch_idx: int) -> Any:
        assert self._forward_context is not None
        with self._forward_context():
            return self._training_step(batch, batch_idx)

    def _zero_grad_with_hooks(self, batch_idx: int) -> None:
        if self._on_before_zero_grad is not None:
            self._on_before_zero_grad(self.optimizer)
        if self._optimizer_zero_grad is not None:
            self._optimizer_zero_grad(self.progress.epoch, batch_idx, self.optimizer)
        else:
            self._zero_grad()

    def _backward(self, loss: Tensor) -> None:
        """Automatic optimization's backward: hooks around ``loss.backward()``, with the loss scaled under fp16 AMP
        (the hooks get it scaled, as Lightning's documentation of ``on_before_backward`` says)."""
        scaled = loss if self._scaler is None else self._scaler.scale(loss)
        if self._on_before_backward is not None:
            self._on_before_backward(scaled)
        if self._backward_fn is None:
            scaled.backward()
        else:
            self._backward_fn(scaled)
        if self._on_after_backward is not None:
            self._on_after_backward()

    def _backward_through_strategy(self, loss: Tensor) -> None:
        """Automatic optimization's backward for a strategy or a precision plugin whose class overrides
        ``backward``, ``pre_backward`` or ``post_backward``: as in Lightning, every backward goes through the
        strategy's ``backward`` (and from there the plugin's, with the hooks)."""
        self._strategy_backward(loss, self.optimizer)

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Manual optimization's backward (``self.manual_backward(loss)``): the strategy's, with the same hooks."""
        try:
            self._strategy_backward(loss, None, *args, **kwargs)
        except RuntimeError as error:
            raise _backward_error(error, loss, self, "the loss given to `manual_backward`") from error

    def _before_optimizer_step(self) -> None:
        if self._on_before_optimizer_step is not None:
            self._on_before_optimizer_step(self.optimizer)
        if self._clip is not None:
            self._clip(self.optimizer)

    def _step_through_module_hook(self, batch_idx: int) -> None:
        """The module overrides ``optimizer_step``: it gets the closure and must run it (via ``optimizer.step``)."""
        wrapped = self.trainer._lightning_optimizers[0]
        wrapped._closure_hook = self._before_optimizer_step
        self._loss = self._extra = _NOT_RUN
        assert self._module_optimizer_step is not None
        self._module_optimizer_step(self.progress.epoch, batch_idx, wrapped, self._closure)
        if self._extra is _NOT_RUN:
            _closure_not_run()

    def _outputs(self) -> dict[str, Any]:
        loss, extra = self._loss, self._extra
        if loss is None:
            return {}  # a skipped batch: the batch-end hooks get an empty dict, as in Lightning
        outputs = {"loss": loss.detach()}  # without the graph, as in Lightning (a view: no copy)
        if extra:
            outputs.update(extra)
        return outputs

    # ---- manual optimization -------------------------------------------------------------------
    def _manual_step(self, batch: Any, batch_idx: int, accumulating: bool) -> Any:
        # as Lightning's manual loop: `opt.step()` counts the global step through the wrapper's `_on_after_step`,
        # installed for the batch, so a library that swaps it for a no-op steps without counting
        wrappers, before, count = self.trainer._lightning_optimizers, self._before_manual_step, self._count_step_fn
        for wrapper in wrappers:
            wrapper._on_before_step, wrapper._on_after_step = before, count
        try:
            return _manual_outputs(self._forward(batch, batch_idx))
        finally:
            for wrapper in wrappers:
                wrapper._on_before_step = wrapper._on_after_step = _do_nothing

    def _count_step(self) -> None:
        self.progress.global_step += 1

    def optimizer_step_from_wrapper(
        self, wrapper: LightningOptimizer, closure: Callable[[], Any] | None, **kwargs: Any
    ) -> Any:
        """``opt.step(closure)`` on the optimizer ``self.optimizers()`` returned."""
        optimizer = wrapper._optimizer
        before = getattr(wrapper, "_closure_hook", None)
        if self.automatic:
            if before is not None:
                # automatic optimization through the module's `optimizer_step`: the closure trains. A hook that
                # ran `optimizer_closure()` itself steps with none: nothing to run again, and (as a skipped
                # backward) no GradScaler step, as in Lightning
                return self._run_optimizer_step(optimizer, closure or _do_nothing, before, **kwargs)
            self.program_stepped = True  # (said if the step then fails or skips: see `_backward_error`)
        closure = closure or _do_nothing  # the step runs on the gradients there are
        return self._run_optimizer_step(optimizer, closure, before_step_hooks(self.hooks, optimizer), **kwargs)

    def _strategy_optimizer_step(
        self, optimizer: Any, closure: Callable[[], Any], before_step: Callable[[], None] | None, **kwargs: Any
    ) -> Any:
        """An optimizer step through the strategy's ``optimizer_step``, which a strategy of the program's own
        overrides Lightning's way; its ``super()`` runs the step with ``before_step`` (hooks, clipping)."""
        strategy = self.strategy
        strategy._before_optimizer_step = before_step
        try:
            return strategy.optimizer_step(optimizer, closure, self.module, **kwargs)
        finally:
            strategy._before_optimizer_step = None


def step_fn(strategy: Any, module: Any, name: str) -> Callable[..., Any]:
    """What the loop calls for the step ``name`` (``training_step``, ``validation_step``, ...): the strategy's
    method when the program's strategy overrides it, as Lightning calls it for every batch; else the direct
    call into the module (through the wrapper), which costs nothing more than a hand-written loop."""
    if program_overrides(strategy, name):
        return getattr(strategy, name)
    if name == "training_step":
        return strategy.training_step_fn(module)
    return strategy.eval_step_fn(module, name)


def _then_post_training_step(step: Callable[..., Any], strategy: Any) -> Callable[..., Any]:
    """``step``, then the strategy's ``post_training_step`` (Lightning's hook, for a strategy that overrides it)."""

    def training_step(*args: Any, **kwargs: Any) -> Any:
        output = step(*args, **kwargs)
        strategy.post_training_step()
        return output

    return training_step


def _split_training_output(output: Any) -> tuple[Tensor | None, dict[str, Any]]:
    if isinstance(output, Tensor):
        if output.ndim != 0 and output.numel() != 1:
            raise NonScalarLossError(
                f"`training_step` returned a tensor of shape {tuple(output.shape)}: the loss must be a scalar."
                " Reduce it first, e.g. `return loss.mean()`."
            )
        return output, {}
    if isinstance(output, Mapping):
        loss = output.get("loss")
        if not isinstance(loss, Tensor):
            _refuse_dict_loss(loss)
        extra = {k: v for k, v in output.items() if k != "loss"}
        if loss.ndim != 0 and loss.numel() != 1:
            raise NonScalarLossError(
                f"`training_step` returned a 'loss' of shape {tuple(loss.shape)}: the loss must be a scalar."
            )
        return loss, extra
    if output is None:
        return None, {}
    raise MisconfigurationException(
        "In automatic optimization, `training_step` must return a Tensor, a dict, or None (where the step will be"
        f" skipped). It returned {_shown(output)}: return the loss as a scalar Tensor,"
        " a dict with the loss under 'loss', or None to skip the batch."
    )


def _shown(value: Any) -> str:
    """``value`` as an error names it: its type and a short repr, with tensors by shape (a tensor's repr cut
    short, as ``reprlib`` cuts it, reads "tensor(2.59...ossBackward0>)")."""
    if isinstance(value, (list, tuple)) and any(isinstance(item, Tensor) for item in value):
        items = [f"tensor of shape {tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__ for v in value[:4]]
        return f"{type(value).__name__} ({', '.join(items)}{', ...' if len(value) > 4 else ''})"
    return f"{type(value).__name__} {reprlib.repr(value)}"


def _refuse_dict_loss(loss: Any) -> NoReturn:
    """The error for a dict from ``training_step`` whose ``"loss"`` is not a tensor.

    A missing or None loss is Lightning's ``MisconfigurationException`` (only a bare None skips the batch);
    anything else is a ``TypeError``, the type Lightning fails with when it divides the value.
    """
    if loss is None:
        raise MisconfigurationException(
            "In automatic_optimization, when `training_step` returns a dict, the 'loss' key needs to be present"
        )
    raise TypeError(
        "In automatic optimization, the 'loss' in the dict `training_step` returns must be a Tensor."
        f" It is {_shown(loss)}: return the loss as a scalar Tensor under 'loss'."
    )


def _manual_outputs(output: Any) -> Any:
    if isinstance(output, Mapping):
        extra = dict(output)
    elif isinstance(output, Tensor):
        extra = {"loss": output}
    elif output is None:
        return {}
    else:
        raise MisconfigurationException(
            "In manual optimization, `training_step` must either return a Tensor or have no return."
            f" It returned {_shown(output)}. Your code steps the optimizers, so"
            " nothing needs returning; return the loss (or a dict of values) only to see it in"
            " `on_train_batch_end`'s `outputs`."
        )
    if isinstance(extra.get("loss"), Tensor):
        extra["loss"] = extra["loss"].detach()
    return extra


_STEPPED_AND_RETURNED_NONE = (
    "`training_step` returned `None` after stepping the optimizer itself, while automatic optimization is on:"
    " the trainer skips its own backward and step only because nothing was returned. To write the loop"
    " yourself, set `self.automatic_optimization = False` in `__init__` and call `self.manual_backward(loss)`"
    " (which keeps precision scaling, gradient sync and the backward hooks); to let the trainer run it, remove"
    " the backward and `step` calls from `training_step` and return the loss."
)


def _backward_error(error: RuntimeError, loss: Any, step: TrainingStep, what: str) -> RuntimeError:
    """``error`` from a backward, said in the program's terms where the loss has no graph to go back through
    (torch's "element 0 of tensors does not require grad and does not have a grad_fn") or goes back through
    one a backward freed (torch's "Trying to backward through the graph a second time"); else ``error``."""
    if "backward through the graph a second time" in str(error):
        return _through_a_freed_graph(error, step, what)
    if not isinstance(loss, Tensor) or loss.requires_grad or "does not require grad" not in str(error):
        return error
    parameters = list(step.module.parameters())
    trainable = sum(p.requires_grad for p in parameters)
    if parameters and not trainable:
        cause = (
            f"None of the module's {len(parameters)} parameters requires grad: unfreeze the ones to train"
            " (`requires_grad_(True)`; `BaseFinetuning.freeze` or a `freeze()` call may have frozen them)."
        )
    elif not torch.is_grad_enabled():
        cause = (
            "Gradients were off when the step ended: something in the program called"
            " `torch.set_grad_enabled(False)` (or entered `torch.no_grad()`) and left it so; turn it back on."
        )
    else:
        cause = (
            "It was computed outside the graph: from `.detach()`ed or `.item()` values, a new tensor"
            " (`torch.tensor(...)`) or under `torch.no_grad()`. Compute it from the module's output."
        )
    skip = " To skip a batch, return None from `training_step`." if step.automatic else ""
    return RuntimeError(
        f"{what[0].upper()}{what[1:]} does not require grad, so backward has nothing to go back through"
        f" (torch: {error}). {cause}{skip}"
    )


def _through_a_freed_graph(error: RuntimeError, step: TrainingStep, what: str) -> RuntimeError:
    """The freed-graph error, with its two usual causes: a backward of the program's own, and a tensor kept
    from an earlier batch."""
    if step.automatic:
        calls = "it stepped the optimizer too" if step.program_stepped else "`loss.backward()`"
        own = (
            f"`training_step` ran backward itself ({calls}): with automatic optimization the trainer runs"
            " backward and the optimizer step on the loss `training_step` returns, so remove those calls, or"
            " write the loop yourself with `self.automatic_optimization = False` in `__init__` and"
            " `self.manual_backward(loss)`"
        )
    else:
        own = (
            "this step already ran backward through part of it: call `self.manual_backward` once on the sum of"
            " the losses, or pass `retain_graph=True` to every backward but the last"
        )
    return RuntimeError(
        f"{what[0].upper()}{what[1:]} goes back through a graph that an earlier backward freed (torch: {error})."
        f" Either {own}; or the loss is computed from a tensor kept from an earlier batch that still holds that"
        " batch's graph (a recurrent hidden state, a running sum, a cached output): `.detach()` it when you"
        " keep it."
    )


def _closure_not_run() -> NoReturn:
    raise MisconfigurationException(
        "The closure hasn't been executed. HINT: did you call `optimizer_closure()` in your"
        " `optimizer_step` hook? It could also happen because the `optimizer.step(optimizer_closure)`"
        " call did not execute it internally."
    )
