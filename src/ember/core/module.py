"""``LightningModule``: the user's model, its steps, its optimizers and its hooks.

The trainer attaches itself as ``module.trainer`` while it runs; that attribute is the only way this
file reaches the trainer.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ember.core.device_dtype import DeviceDtypeModuleMixin
from ember.core.hooks import CheckpointHooks, DataHooks, ModelHooks
from ember.core.hparams import HyperparametersMixin
from ember.core.logging import LoggingMixin
from ember.core.saving import restricted_classmethod
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_deprecation, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class LightningModule(
    DeviceDtypeModuleMixin, LoggingMixin, HyperparametersMixin, ModelHooks, DataHooks, CheckpointHooks, nn.Module
):
    """A ``torch.nn.Module`` that also says how to train, validate, test and predict with itself.

    Example::

        class Classifier(LightningModule):
            def __init__(self, lr=1e-3):
                super().__init__()
                self.save_hyperparameters()
                self.net = nn.Linear(32, 10)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = nn.functional.cross_entropy(self.net(x), y)
                self.log("train_loss", loss)
                return loss

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
    """

    __jit_unused_properties__: list[str] = [
        "trainer",
        "device",
        "dtype",
        "current_epoch",
        "global_step",
        "global_rank",
        "local_rank",
        "logger",
        "loggers",
        "automatic_optimization",
        "hparams",
        "hparams_initial",
        "example_input_array",
        "fabric",
        "device_mesh",
        "on_gpu",
        "strict_loading",
    ]

    # where a checkpoint keeps the saved hyperparameters, under Lightning's names
    CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"

    # True while TorchScript inspects the module: it reads every attribute, `trainer` included
    _jit_is_scripting = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Trainer | None = None
        # set by `lightning.fabric.Fabric.setup(module)`: the module then logs, steps and runs backward through it
        self._fabric: Any = None
        self._fabric_optimizers: list[Any] = []
        self._current_fx_name: str | None = None
        self._automatic_optimization = True
        self._strict_loading: bool | None = None
        self._example_input_array: Any = None
        self._device = torch.device("cpu")
        self._dtype: torch.dtype = torch.get_default_dtype()
        # attributes Lightning's module has from its `__init__`: a module pickled here (mlflow's
        # `log_model`) then trains and predicts in Lightning too
        self._compiler_ctx: dict[str, Any] | None = None
        self._device_mesh: Any = None
        self._metric_attributes: dict[int, str] | None = None
        self._param_requires_grad_state: dict[Any, Any] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        # the loop sets the running hook's name several times per step: skip nn.Module's checks
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ---- properties ----------------------------------------------------------------------
    @property
    def trainer(self) -> Trainer:
        if self._fabric is not None:
            return _TrainerFabricShim(self._fabric)  # type: ignore[return-value]  # as Lightning
        if self._trainer is None and not LightningModule._jit_is_scripting:
            raise RuntimeError(f"{self.__class__.__qualname__} is not attached to a `Trainer`.")
        return self._trainer  # type: ignore[return-value]

    @trainer.setter
    def trainer(self, trainer: Trainer | None) -> None:
        # as in Lightning, through the children that are LightningModules: one inside a plain container
        # (torchdyn's `nn.Sequential(..., NeuralODE, ...)`) stays unattached
        for child in self.children():
            if isinstance(child, LightningModule):
                child.trainer = trainer
        self._trainer = trainer

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch if self._trainer is not None else 0

    @property
    def global_step(self) -> int:
        return self._trainer.global_step if self._trainer is not None else 0

    @property
    def global_rank(self) -> int:
        return self._trainer.global_rank if self._trainer is not None else 0

    @property
    def local_rank(self) -> int:
        return self._trainer.local_rank if self._trainer is not None else 0

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def automatic_optimization(self) -> bool:
        """False to call ``optimizer.step()`` and ``self.manual_backward`` yourself."""
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    @property
    def strict_loading(self) -> bool:
        """Whether ``load_state_dict`` from a checkpoint must match every key (default True)."""
        return True if self._strict_loading is None else self._strict_loading

    @strict_loading.setter
    def strict_loading(self, value: bool) -> None:
        self._strict_loading = value

    @property
    def example_input_array(self) -> Any:
        """An input for the summary's sizes and for graph logging."""
        return self._example_input_array

    @example_input_array.setter
    def example_input_array(self, example: Any) -> None:
        self._example_input_array = example

    @property
    def logger(self) -> Any:
        if self._fabric is not None:
            return self._fabric.logger
        return self._trainer.logger if self._trainer is not None else None

    @property
    def loggers(self) -> list[Any]:
        if self._fabric is not None:
            return self._fabric.loggers
        return self._trainer.loggers if self._trainer is not None else []

    def __getstate__(self) -> dict[str, Any]:
        # a copy or pickle of the module never drags the trainer (and its loaders, optimizers) or Fabric along
        state = dict(self.__dict__)
        state["_trainer"] = None
        state["_fabric"], state["_fabric_optimizers"] = None, []
        return state

    def freeze(self) -> LightningModule:
        """Make every parameter non-trainable and switch to eval mode (e.g. for inference).

        Example::

            model.freeze()
            predictions = model(x)
        """
        for param in self.parameters():
            param.requires_grad = False
        return self.eval()

    def unfreeze(self) -> LightningModule:
        """Undo :meth:`freeze`: every parameter trainable again, train mode."""
        for param in self.parameters():
            param.requires_grad = True
        return self.train()

    @property
    def fabric(self) -> Any:
        """The ``lightning.fabric.Fabric`` that set this module up (``fabric.setup(module)``), else None."""
        return self._fabric

    @fabric.setter
    def fabric(self, fabric: Any) -> None:
        if fabric is not None and not isinstance(fabric, weakref.ProxyTypes):
            fabric = weakref.proxy(fabric)  # the module must not keep Fabric alive
        for child in self.children():  # as the trainer's setter
            if isinstance(child, LightningModule):
                child.fabric = fabric
        self._fabric = fabric

    @property
    def device_mesh(self) -> Any:
        """The device mesh of a model-parallel run (None on one device or with DDP)."""
        return getattr(self, "_device_mesh", None)

    # ---- the steps -----------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Same as ``torch.nn.Module.forward``."""
        return super().forward(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """One training step: return the loss (a tensor, or a dict with ``"loss"``), or None to skip.

        This base one warns and skips, as Lightning's does (a step that calls ``super().training_step(...)``); the
        Trainer refuses a module that does not override it before any work.
        """
        rank_zero_warn(
            "`training_step` must be implemented to be used with the Lightning Trainer. Define"
            " `def training_step(self, batch, batch_idx)` returning the loss."
        )

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """One validation step; log metrics with ``self.log``."""

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """One test step; log metrics with ``self.log``."""

    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        """One prediction step; by default ``self(batch)``."""
        batch = kwargs.get("batch", args[0] if args else None)
        return self(batch)

    def configure_optimizers(self) -> Any:
        """Return the optimizer(s) and optionally LR scheduler(s); see the docs for the formats."""
        rank_zero_warn("`configure_optimizers` must be implemented to be used with the Lightning Trainer")
        return None

    def configure_callbacks(self) -> Any:
        """Callbacks the model needs; they replace trainer callbacks of the same type."""
        return []

    # ---- printing ------------------------------------------------------------------------
    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the process with global rank 0 only; through the progress bar while one is shown, so
        the line appears above the bar instead of breaking it (``tqdm.write`` for the TQDM bar)."""
        trainer = self._trainer
        if trainer is not None and not trainer.is_global_zero:
            return
        bar = trainer.progress_bar_callback if trainer is not None else None
        if bar is not None and bar.is_enabled:
            bar.print(*args, **kwargs)
        else:
            print(*args, **kwargs)

    # ---- optimization --------------------------------------------------------------------
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer (or list of optimizers) from ``configure_optimizers``, for manual optimization."""
        if self._fabric is not None:
            opts = self._fabric_optimizers  # what `fabric.setup(module, optimizer)` returned
        else:
            trainer = self.trainer
            opts = trainer._lightning_optimizers if use_pl_optimizer else trainer.optimizers
        if isinstance(opts, list) and len(opts) == 1:
            return opts[0]
        return opts

    def lr_schedulers(self) -> Any:
        """The LR scheduler (or list of them), or None, for manual optimization."""
        configs = self.trainer.lr_scheduler_configs
        if not configs:
            return None
        schedulers = [config.scheduler for config in configs]
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """``loss.backward()`` with precision scaling and the backward hooks, for manual optimization."""
        if self._fabric is not None:
            self._fabric.backward(loss, *args, **kwargs)
            return
        self._verify_is_manual_optimization("manual_backward")
        step = self.trainer._run.step
        try:
            if step is None:  # outside a training step (test-time adaptation, `on_train_end`): as Lightning does
                self.trainer.strategy.backward(loss, None, *args, **kwargs)
                return
            step.manual_backward(loss, *args, **kwargs)
        except AttributeError as error:  # (checked here, not before each call: the step pays nothing for it)
            if isinstance(loss, Tensor):
                raise
            raise TypeError(
                f"`self.manual_backward({loss!r})` takes the loss tensor to backpropagate from, not"
                f" {type(loss).__name__}."
            ) from error

    def _verify_is_manual_optimization(self, fn_name: str) -> None:
        """Refuse ``fn_name`` (a manual-optimization call) under automatic optimization, in Lightning's words."""
        if self.automatic_optimization:
            raise MisconfigurationException(
                f"to use {fn_name}, please disable automatic optimization: set model property"
                " `automatic_optimization` as False (`self.automatic_optimization = False` in `__init__`), or"
                " return the loss from `training_step` and let the trainer call backward."
            )

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Run backward on ``loss`` (through Fabric when it set the module up); override for custom backward."""
        if self._fabric is not None:
            self._fabric.backward(loss, *args, **kwargs)
        else:
            loss.backward(*args, **kwargs)

    def toggle_optimizer(self, optimizer: Optimizer | Any) -> None:
        """Only the parameters of ``optimizer`` keep ``requires_grad``; the others are frozen.

        As Lightning does: every parameter of the Trainer's optimizers is frozen, with its state kept for
        :meth:`untoggle_optimizer`, then ``optimizer``'s get theirs back.
        """
        _check_is_optimizer("toggle_optimizer", optimizer)
        saved: dict[Tensor, bool] = {}
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                for param in group["params"]:
                    if param in saved:
                        continue
                    saved[param] = param.requires_grad
                    param.requires_grad = False
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.requires_grad = saved[param]
        self._param_requires_grad_state = saved

    def untoggle_optimizer(self, optimizer: Optimizer | Any) -> None:
        """Undo :meth:`toggle_optimizer`: the parameters of the Trainer's other optimizers get their state back."""
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # the one `self.optimizers()` wraps
        for opt in self.trainer.optimizers:
            if opt is not optimizer:
                for group in opt.param_groups:
                    for param in group["params"]:
                        if param in self._param_requires_grad_state:
                            param.requires_grad = self._param_requires_grad_state[param]
        self._param_requires_grad_state = {}

    @contextmanager
    def toggled_optimizer(self, optimizer: Optimizer | Any) -> Generator[None, None, None]:
        """``with self.toggled_optimizer(opt):`` toggles on entry and untoggles on exit."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def clip_gradients(
        self,
        optimizer: Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradients of ``optimizer``'s parameters by norm (default) or value.

        Without arguments, the Trainer's ``gradient_clip_val`` and ``gradient_clip_algorithm`` apply.

        Example::

            def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
                if self.current_epoch > 5:
                    self.clip_gradients(optimizer, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
        """
        if self._fabric is not None:  # a module that Fabric set up clips through it, as in Lightning
            by_value = gradient_clip_algorithm == "value"
            self._fabric.clip_gradients(
                self,
                optimizer,
                clip_val=gradient_clip_val if by_value else None,
                max_norm=None if by_value else gradient_clip_val,
            )
            return
        trainer = self.trainer
        _check_is_optimizer("clip_gradients", optimizer)
        given = gradient_clip_algorithm
        if given is not None:
            # any case, as Lightning (a `GradClipAlgorithmType` is text too); what is no text gets the message of an
            # unknown algorithm, as in the Trainer
            given = (given if isinstance(given, str) else str(given)).lower()
        _check_clipping_agrees(trainer, gradient_clip_val, given)
        value = trainer.gradient_clip_val if gradient_clip_val is None else gradient_clip_val
        algorithm = (trainer.gradient_clip_algorithm or "norm") if given is None else given
        # checked in Lightning's order, with no value too (Lightning reads None as 0.0, which clips nothing)
        if value is not None and not isinstance(value, (int, float)):
            raise TypeError(f"`gradient_clip_val` should be an int or a float. Got {value}.")
        if algorithm not in ("norm", "value"):
            raise MisconfigurationException(
                f"`gradient_clip_algorithm` {algorithm} is invalid. Allowed algorithms: ['value', 'norm']."
            )
        if value is None:
            return
        if math.isnan(value):  # Lightning clips at NaN, which makes every gradient NaN
            from ember.precision.precision import check_gradient_clip_val

            check_gradient_clip_val(value, "clip_gradients")  # refused, as `Trainer(gradient_clip_val=nan)` is
        if value > 0:
            trainer.precision_plugin.clip_gradients(optimizer, value, algorithm)

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Called before the optimizer step with the Trainer's clipping settings."""
        # by keyword, as Lightning calls it: an override of `clip_gradients` sees the same call
        self.clip_gradients(
            optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
        )

    def lr_scheduler_step(self, scheduler: Any, metric: Any | None) -> None:
        """Step one scheduler; override for schedulers that are not ``torch.optim.lr_scheduler`` ones."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Optimizer | Any, optimizer_closure: Any = None
    ) -> None:
        """Step the optimizer; ``optimizer_closure`` runs training_step, zero_grad and backward.

        Example (learning-rate warm-up)::

            def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure):
                optimizer.step(closure=optimizer_closure)
        """
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Optimizer) -> None:
        """Zero the gradients (``optimizer.zero_grad()``)."""
        optimizer.zero_grad()

    # ---- distributed ---------------------------------------------------------------------
    def all_gather(self, data: Any, group: Any | None = None, sync_grads: bool = False) -> Any:
        """Gather tensors from every process: each tensor gains a leading world-size dimension. Python numbers
        and numpy arrays are gathered as tensors, as in Lightning (``all_gather(2.5)`` is ``tensor([2.5, ...])``)."""
        from ember.utilities.apply_func import apply_to_tensors, convert_to_tensors

        strategy = self.trainer.strategy
        data = convert_to_tensors(data, self.device)
        return apply_to_tensors(data, lambda t: strategy.all_gather(t, group=group, sync_grads=sync_grads))

    # ---- checkpoints ---------------------------------------------------------------------
    @restricted_classmethod
    def load_from_checkpoint(
        cls: type[LightningModule],
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> LightningModule:
        """Rebuild the module from a checkpoint's hyperparameters and load its weights.

        ``kwargs`` override saved hyperparameters. Loading uses ``torch.load(weights_only=True)``
        unless ``weights_only=False`` is passed for a file you trust.

        Example::

            model = Classifier.load_from_checkpoint("checkpoints/best.ckpt")
        """
        from ember.core.saving import load_from_checkpoint

        return load_from_checkpoint(
            cls, checkpoint_path, map_location, hparams_file, strict, weights_only, False, **kwargs
        )

    # ---- Lightning's batch-transfer helpers: programs call them to move a batch as the loops do ----
    def _call_batch_hook(self, hook_name: str, *args: Any) -> Any:
        """``hook_name`` of the running call's datamodule when it overrides it (it wins, as in Lightning), else the
        module's own."""
        from ember.core.hooks import DataHooks, runs_other_code

        datamodule = getattr(getattr(self._trainer, "_run", None), "datamodule", None)
        owner = datamodule if datamodule is not None and runs_other_code(datamodule, DataHooks, hook_name) else self
        return getattr(owner, hook_name)(*args)

    def _on_before_batch_transfer(self, batch: Any, dataloader_idx: int = 0) -> Any:
        """``batch`` through the ``on_before_batch_transfer`` hook the loops call."""
        return self._call_batch_hook("on_before_batch_transfer", batch, dataloader_idx)

    def _apply_batch_transfer_handler(
        self, batch: Any, device: torch.device | None = None, dataloader_idx: int = 0
    ) -> Any:
        """``batch`` on ``device`` (the module's by default) through ``transfer_batch_to_device`` and
        ``on_after_batch_transfer``, as the loops move one."""
        device = device or self.device
        batch = self._call_batch_hook("transfer_batch_to_device", batch, device, dataloader_idx)
        return self._call_batch_hook("on_after_batch_transfer", batch, dataloader_idx)

    @torch.no_grad()
    def to_onnx(self, file_path: Any = None, input_sample: Any = None, **kwargs: Any) -> Any:
        """Export to ONNX with ``torch.onnx.export`` (needs the ``onnx`` package). ``file_path`` is a path, an
        open binary file (``io.BytesIO``) that receives the model, or None (``dynamo=True``: the program only).

        Example::

            model.to_onnx("model.onnx", torch.randn(1, 64), export_params=True)
        """
        import importlib.util
        import os

        if importlib.util.find_spec("onnx") is None:
            raise ModuleNotFoundError(f"`{type(self).__name__}.to_onnx()` requires `onnx` to be installed.")
        if input_sample is None:
            if self.example_input_array is None:
                raise ValueError(
                    "Could not export to ONNX since neither `input_sample` nor"
                    " `model.example_input_array` attribute is set."
                )
            input_sample = self.example_input_array
        input_sample = self._apply_batch_transfer_handler(self._on_before_batch_transfer(input_sample))
        mode = self.training
        try:
            # a path object as text, as Lightning passes it; an open file as it is (it was written to a file in the
            # working folder named after the object's repr, and the buffer stayed empty)
            target = os.fspath(file_path) if isinstance(file_path, os.PathLike) else file_path
            return torch.onnx.export(self, input_sample, target, **kwargs)
        finally:
            self.train(mode)

    @torch.no_grad()
    def to_torchscript(
        self, file_path: Any = None, method: str = "script", example_inputs: Any = None, **kwargs: Any
    ) -> Any:
        """Export with TorchScript (``method="script"`` or ``"trace"``).

        Deprecated, as in Lightning: TorchScript is deprecated in PyTorch; use ``torch.export.export()``.
        """
        rank_zero_deprecation(
            "`LightningModule.to_torchscript` has been deprecated in v2.7 and will be removed in v2.8. TorchScript is"
            " deprecated in PyTorch. Use `torch.export.export()` for model exporting instead. See"
            " https://pytorch.org/docs/stable/export.html for more information. (Lightning's schedule, which Ember"
            " follows.)"
        )
        mode = self.training
        self.eval()
        LightningModule._jit_is_scripting = True
        try:
            if method == "script":
                exported = torch.jit.script(self, **kwargs)
            elif method == "trace":
                if example_inputs is None:
                    if self.example_input_array is None:
                        raise ValueError(
                            "Choosing method=`trace` requires either `example_inputs` or"
                            " `model.example_input_array` to be defined."
                        )
                    # read again, as Lightning does: a property that draws random inputs draws twice
                    example_inputs = self.example_input_array
                if kwargs.get("check_inputs") is not None:
                    check_inputs = self._on_before_batch_transfer(kwargs["check_inputs"])
                    kwargs["check_inputs"] = self._apply_batch_transfer_handler(check_inputs)
                example_inputs = self._apply_batch_transfer_handler(self._on_before_batch_transfer(example_inputs))
                exported = torch.jit.trace(self, example_inputs=example_inputs, **kwargs)
            else:
                raise ValueError(
                    f"The 'method' parameter only supports 'script' or 'trace', but value given was: {method}"
                )
        finally:
            LightningModule._jit_is_scripting = False
            self.train(mode)
        if file_path is not None:
            _save_torchscript(exported, file_path)
        return exported

    def to_tensorrt(
        self,
        file_path: Any = None,
        input_sample: Any = None,
        ir: str = "default",
        output_format: str = "exported_program",
        retrace: bool = False,
        default_device: str | torch.device = "cuda",
        **compile_kwargs: Any,
    ) -> Any:
        """Compile with TensorRT (``torch_tensorrt.compile``, CUDA only) and save it to ``file_path`` if given.

        ``input_sample`` (default: ``example_input_array``) goes through the batch-transfer hooks first. A module
        not on a CUDA device is moved to ``default_device`` for the compile and back after it.

        Example::

            compiled = model.to_tensorrt("model.ep", input_sample=torch.randn(1, 64))
        """
        import importlib.util

        if importlib.util.find_spec("torch_tensorrt") is None:
            raise ModuleNotFoundError(
                f"`{type(self).__name__}.to_tensorrt` requires `torch_tensorrt` to be installed. "
            )
        mode, device = self.training, self.device
        if device.type != "cuda":
            default_device = torch.device(default_device) if isinstance(default_device, str) else default_device
            if not torch.cuda.is_available() or default_device.type != "cuda":
                raise MisconfigurationException(
                    f"TensorRT only supports CUDA devices. The current device is {device}."
                    " Please set the `default_device` argument to a CUDA device."
                )
            self.to(default_device)
        if input_sample is None:
            if self.example_input_array is None:
                raise ValueError(
                    "Could not export to TensorRT since neither `input_sample` nor"
                    " `model.example_input_array` attribute is set."
                )
            input_sample = self.example_input_array
        import torch_tensorrt

        input_sample = copy.deepcopy((input_sample,) if isinstance(input_sample, Tensor) else input_sample)
        input_sample = self._apply_batch_transfer_handler(self._on_before_batch_transfer(input_sample))
        LightningModule._jit_is_scripting = ir == "ts"
        try:
            compiled = torch_tensorrt.compile(module=self.eval(), ir=ir, inputs=input_sample, **compile_kwargs)
        finally:
            LightningModule._jit_is_scripting = False
            self.train(mode)
            self.to(device)
        if file_path is not None:
            if ir == "ts":
                if output_format != "torchscript":
                    raise ValueError(
                        "TensorRT with IR mode 'ts' only supports output format 'torchscript'."
                        f" The current output format is {output_format}."
                    )
                _save_torchscript(compiled, file_path)
            else:
                torch_tensorrt.save(
                    compiled, file_path, inputs=input_sample, output_format=output_format, retrace=retrace
                )
        return compiled


def _save_torchscript(module: Any, file_path: Any) -> None:
    """``torch.jit.save`` into a file Python opens, as Lightning writes it: any fsspec path (``s3://...``), and
    a folder or a missing parent is Python's ``IsADirectoryError``/``FileNotFoundError`` naming the path, not
    torch's C++ "[enforce fail at inline_container.cc] ... open file failed"."""
    from ember.checkpoint.files import open_file

    with open_file(file_path, "wb") as file:
        torch.jit.save(module, file)


def _check_is_optimizer(method: str, optimizer: Any) -> None:
    """``optimizer`` given to ``self.<method>`` must be an optimizer (or the wrapper ``self.optimizers()`` returns):
    anything else failed on its missing ``param_groups`` ("'NoneType' object has no attribute 'param_groups'")."""
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(
            f"`self.{method}({optimizer!r})` takes an optimizer, one that `self.optimizers()` returns, not"
            f" {type(optimizer).__name__}."
        )


def _check_clipping_agrees(trainer: Any, value: Any, algorithm: str | None) -> None:
    """``clip_gradients`` with a value or algorithm (in lower case) other than the Trainer's: one of them must go
    (as Lightning)."""
    if value is not None and trainer.gradient_clip_val is not None and trainer.gradient_clip_val != value:
        raise MisconfigurationException(
            f"You have set `Trainer(gradient_clip_val={trainer.gradient_clip_val!r})` and have passed"
            f" `clip_gradients(gradient_clip_val={value!r})`. Please use only one of them."
        )
    trainer_algorithm = getattr(trainer.gradient_clip_algorithm, "value", trainer.gradient_clip_algorithm)
    if algorithm is not None and trainer_algorithm is not None and trainer_algorithm != algorithm:
        raise MisconfigurationException(
            f"You have set `Trainer(gradient_clip_algorithm={trainer_algorithm!r})` and have passed"
            f" `clip_gradients(gradient_clip_algorithm={algorithm!r})`. Please use only one of them."
        )


class _TrainerFabricShim:
    """``self.trainer`` of a module that Fabric set up: attributes come from the Fabric object."""

    def __init__(self, fabric: Any) -> None:
        self._fabric = fabric

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(self._fabric, name)
        except AttributeError:
            raise AttributeError(
                f"Your LightningModule code tried to access `self.trainer.{name}` but this attribute is not available"
                " when using Fabric with a LightningModule: Fabric has no such attribute."
            ) from None


lightning_style_annotations(LightningModule)  # Lightning's `typing` forms in the signature
