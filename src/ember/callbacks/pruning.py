"""``ModelPruning``: prune parameters during training with ``torch.nn.utils.prune``.

At the end of every training epoch (or validation epoch) the chosen parameters are pruned by
``amount``; optionally the surviving weights are reset to their initial values (the lottery ticket
hypothesis). Checkpoints hold the pruned weights as plain tensors, and when training ends the
pruning is made permanent (masks and hooks removed).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from copy import deepcopy
from functools import partial
from typing import TYPE_CHECKING, Any, TypedDict, cast

import torch.nn.utils.prune as pytorch_prune
from torch import Tensor, nn

from ember.callbacks.callback import Callback
from ember.core.module import LightningModule
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_debug, rank_zero_only
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

log = logging.getLogger(__name__)

_PYTORCH_PRUNING_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ln_structured": pytorch_prune.ln_structured,
    "l1_unstructured": pytorch_prune.l1_unstructured,
    "random_structured": pytorch_prune.random_structured,
    "random_unstructured": pytorch_prune.random_unstructured,
}

_PYTORCH_PRUNING_METHOD: dict[str, type[pytorch_prune.BasePruningMethod]] = {
    "ln_structured": pytorch_prune.LnStructured,
    "l1_unstructured": pytorch_prune.L1Unstructured,
    "random_structured": pytorch_prune.RandomStructured,
    "random_unstructured": pytorch_prune.RandomUnstructured,
}

_PARAM_TUPLE = tuple[nn.Module, str]
_PARAM_LIST = Sequence[_PARAM_TUPLE]
_MODULE_CONTAINERS = (LightningModule, nn.Sequential, nn.ModuleList, nn.ModuleDict)


class _LayerRef(TypedDict):
    data: nn.Module
    names: list[tuple[int, str]]


class ModelPruning(Callback):
    """Prune the model's parameters as training goes, with PyTorch's pruning utilities.

    Args:
        pruning_fn: ``"l1_unstructured"``, ``"random_unstructured"``, ``"ln_structured"``,
            ``"random_structured"``, or a ``torch.nn.utils.prune.BasePruningMethod`` subclass.
        parameters_to_prune: ``(module, "weight")`` pairs; empty means every ``weight`` and
            ``bias`` (or ``parameter_names``) of every layer.
        parameter_names: ``"weight"`` and/or ``"bias"``: what to prune when no pairs are given.
        use_global_unstructured: prune across all the parameters together (unstructured methods only).
        amount: the fraction (float) or number (int) of parameters to prune, or ``amount(epoch)``.
        apply_pruning: whether to prune, or ``apply_pruning(epoch)``.
        make_pruning_permanent: remove the masks when training ends, and save pruned weights in checkpoints.
        use_lottery_ticket_hypothesis: after pruning, reset the remaining weights to their initial
            values (or ``use_lottery_ticket_hypothesis(epoch)``).
        resample_parameters: with the lottery ticket, draw new initial values instead.
        pruning_dim: the dimension for structured pruning (required for it).
        pruning_norm: the norm for ``"ln_structured"`` (required for it).
        verbose: 1 logs the overall sparsity after each pruning, 2 also per layer.
        prune_on_train_epoch_end: prune at the end of the training epoch; ``False``: of the validation epoch.

    Raises:
        MisconfigurationException: an unknown parameter name or pruning function, a structured
            method without ``pruning_dim`` (or ``pruning_norm``), a global prune with a
            structured method, an ``amount`` that is not a number or callable, or ``verbose`` not in 0, 1, 2.

    Example::

        trainer = Trainer(callbacks=[ModelPruning("l1_unstructured", amount=0.2)])
    """

    PARAMETER_NAMES = ("weight", "bias")

    def __init__(
        self,
        pruning_fn: Callable | str,
        parameters_to_prune: _PARAM_LIST = (),
        parameter_names: list[str] | None = None,
        use_global_unstructured: bool = True,
        amount: int | float | Callable[[int], int | float] = 0.5,
        apply_pruning: bool | Callable[[int], bool] = True,
        make_pruning_permanent: bool = True,
        use_lottery_ticket_hypothesis: bool | Callable[[int], bool] = True,
        resample_parameters: bool = False,
        pruning_dim: int | None = None,
        pruning_norm: int | None = None,
        verbose: int = 0,
        prune_on_train_epoch_end: bool = True,
    ) -> None:
        self._use_global_unstructured = use_global_unstructured
        self._parameters_to_prune = parameters_to_prune
        self._use_lottery_ticket_hypothesis = use_lottery_ticket_hypothesis
        self._resample_parameters = resample_parameters
        self._prune_on_train_epoch_end = prune_on_train_epoch_end
        if parameter_names and (isinstance(parameter_names, str) or not isinstance(parameter_names, Iterable)):
            # (text was read a letter at a time, "name: w isn't in ...", and a number was "not iterable")
            raise TypeError(
                f"`ModelPruning(parameter_names={parameter_names!r})` must be a list of parameter names, e.g."
                f" ['weight'] or ['weight', 'bias'], not {type(parameter_names).__name__}."
            )
        self._parameter_names = parameter_names or self.PARAMETER_NAMES
        self._global_kwargs: dict[str, Any] = {}
        self._original_layers: dict[int, _LayerRef] | None = None
        self._pruning_method_name: str | None = None

        for name in self._parameter_names:
            if name not in self.PARAMETER_NAMES:
                raise MisconfigurationException(
                    f"The provided `parameter_names` name: {name} isn't in {self.PARAMETER_NAMES}"
                )
        if isinstance(pruning_fn, str):
            pruning_fn = self._resolve_name(pruning_fn.lower(), pruning_dim, pruning_norm)
        elif self._is_pruning_method(pruning_fn):
            if not use_global_unstructured:
                raise MisconfigurationException(
                    "PyTorch `BasePruningMethod` is currently only supported with `use_global_unstructured=True`."
                )
        else:
            raise MisconfigurationException(
                f"`pruning_fn` is expected to be a str in {list(_PYTORCH_PRUNING_FUNCTIONS)}"
                f" or a PyTorch `BasePruningMethod`. Found: {pruning_fn}."
                " HINT: if passing a `BasePruningMethod`, pass the class, not an instance"
            )
        if use_global_unstructured and getattr(pruning_fn, "PRUNING_TYPE", None) != "unstructured":
            raise MisconfigurationException(
                'Only the "unstructured" PRUNING_TYPE is supported with `use_global_unstructured=True`.'
                f" Found method {pruning_fn} of type {getattr(pruning_fn, 'PRUNING_TYPE', None)}. "
            )
        self.pruning_fn = pruning_fn
        self._apply_pruning = apply_pruning
        self._make_pruning_permanent = make_pruning_permanent
        if not (isinstance(amount, (int, float)) or callable(amount)):
            raise MisconfigurationException(
                "`amount` should be provided and be either an int, a float or Callable function."
            )
        if not callable(amount):
            _check_amount(amount)
        self.amount = amount
        if verbose not in (0, 1, 2):
            raise MisconfigurationException("`verbose` must be any of (0, 1, 2)")
        self._verbose = verbose

    def _resolve_name(self, name: str, pruning_dim: int | None, pruning_norm: int | None) -> Callable:
        if name not in _PYTORCH_PRUNING_FUNCTIONS:
            raise MisconfigurationException(
                f"The provided `pruning_fn` {name} isn't available in PyTorch's"
                f" built-in functions: {list(_PYTORCH_PRUNING_FUNCTIONS)} "
            )
        kwargs: dict[str, Any] = {}
        if name.endswith("_structured"):
            if pruning_dim is None:
                raise MisconfigurationException(
                    "When requesting `structured` pruning, the `pruning_dim` should be provided."
                )
            if name == "ln_structured":
                if pruning_norm is None:
                    raise MisconfigurationException(
                        "When requesting `ln_structured` pruning, the `pruning_norm` should be provided."
                    )
                kwargs["n"] = pruning_norm
            kwargs["dim"] = pruning_dim
        return self._create_pruning_fn(name, **kwargs)

    def filter_parameters_to_prune(self, parameters_to_prune: _PARAM_LIST = ()) -> _PARAM_LIST:
        """Override to choose which of the ``(module, name)`` pairs to prune."""
        return parameters_to_prune

    def _create_pruning_fn(self, pruning_fn: str, **kwargs: Any) -> Callable:
        """The ``BasePruningMethod`` class (global pruning) or the pruning function with ``kwargs`` bound."""
        if self._use_global_unstructured:
            method = _PYTORCH_PRUNING_METHOD[pruning_fn]
            self._global_kwargs = kwargs
            self._pruning_method_name = method.__name__
            return method
        function = _PYTORCH_PRUNING_FUNCTIONS[pruning_fn]
        self._pruning_method_name = function.__name__
        return ModelPruning._wrap_pruning_fn(function, **kwargs)

    @staticmethod
    def _wrap_pruning_fn(pruning_fn: Callable, **kwargs: Any) -> Callable:
        return partial(pruning_fn, **kwargs)

    def make_pruning_permanent(self, module: nn.Module) -> None:
        """Remove the pruning masks and hooks of ``module`` and its submodules, keeping the pruned weights."""
        for _, submodule in module.named_modules():
            for key in list(submodule._forward_pre_hooks):
                hook = submodule._forward_pre_hooks[key]
                if isinstance(hook, pytorch_prune.BasePruningMethod):
                    hook.remove(submodule)
                    del submodule._forward_pre_hooks[key]

    @staticmethod
    def _copy_param(new: nn.Module, old: nn.Module, name: str) -> None:
        # a pruned parameter lives on as `<name>_orig`
        dst = getattr(new, name + "_orig") if hasattr(new, name + "_orig") else getattr(new, name)
        src = getattr(old, name)
        if not isinstance(dst, Tensor) or not isinstance(src, Tensor):
            return
        dst.data = src.data.to(dst.device)

    def apply_lottery_ticket_hypothesis(self) -> None:
        """Reset the weights that survived pruning to their values before training (step 4 of
        Frankle & Carbin's lottery ticket algorithm), or to freshly drawn ones with ``resample_parameters``."""
        assert self._original_layers is not None
        for layer in self._original_layers.values():
            copy = layer["data"]
            if self._resample_parameters and callable(getattr(copy, "reset_parameters", None)):
                copy = deepcopy(copy)  # the original values stay for the next time
                cast(Any, copy).reset_parameters()
            for index, name in layer["names"]:
                module, _ = self._parameters_to_prune[index]
                self._copy_param(module, copy, name)

    def _apply_local_pruning(self, amount: float) -> None:
        for module, name in self._parameters_to_prune:
            self.pruning_fn(module, name=name, amount=amount)

    def _resolve_global_kwargs(self, amount: float) -> dict[str, Any]:
        self._global_kwargs["amount"] = amount
        accepted = set(inspect.signature(self.pruning_fn).parameters) - {"self"}
        return {k: v for k, v in self._global_kwargs.items() if k in accepted}

    def _apply_global_pruning(self, amount: float) -> None:
        pytorch_prune.global_unstructured(
            self._parameters_to_prune, pruning_method=self.pruning_fn, **self._resolve_global_kwargs(amount)
        )

    @staticmethod
    def _get_pruned_stats(module: nn.Module, name: str) -> tuple[int, int]:
        mask = getattr(module, f"{name}_mask", None)
        if mask is None:
            return 0, 1
        # host sync: only with `verbose`, once per pruning
        return int((mask == 0).sum().item()), mask.numel()

    def apply_pruning(self, amount: int | float) -> None:
        """Prune ``parameters_to_prune`` by ``amount``."""
        previous = [self._get_pruned_stats(m, n) for m, n in self._parameters_to_prune] if self._verbose else []
        if self._use_global_unstructured:
            self._apply_global_pruning(amount)
        else:
            self._apply_local_pruning(amount)
        if self._verbose:
            current = [self._get_pruned_stats(m, n) for m, n in self._parameters_to_prune]
            self._log_sparsity_stats(previous, current, amount=amount)

    @rank_zero_only
    def _log_sparsity_stats(
        self, prev: list[tuple[int, int]], curr: list[tuple[int, int]], amount: int | float = 0
    ) -> None:
        total = sum(size for _, size in curr)
        before = sum(zeros for zeros, _ in prev)
        after = sum(zeros for zeros, _ in curr)
        log.info(
            f"Applied `{self._pruning_method_name}`. Pruned:"
            f" {before}/{total} ({before / total:.2%}) -> {after}/{total} ({after / total:.2%})"
        )
        if self._verbose == 2:
            for i, (module, name) in enumerate(self._parameters_to_prune):
                (zeros_before, size_before), (zeros_after, size_after) = prev[i], curr[i]
                log.info(
                    f"Applied `{self._pruning_method_name}` to `{module!r}.{name}` with amount={amount}. Pruned:"
                    f" {zeros_before} ({zeros_before / size_before:.2%}) -> {zeros_after}"
                    f" ({zeros_after / size_after:.2%})"
                )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        parameters_to_prune = self.sanitize_parameters_to_prune(
            pl_module, self._parameters_to_prune, parameter_names=self._parameter_names
        )
        self._parameters_to_prune = self.filter_parameters_to_prune(parameters_to_prune)
        if self._use_lottery_ticket_hypothesis:
            # one copy of each layer's initial values, with the parameter names pruned in it
            self._original_layers = {}
            for i, (module, name) in enumerate(self._parameters_to_prune):
                layer = self._original_layers.setdefault(id(module), _LayerRef(data=deepcopy(module), names=[]))
                layer["names"].append((i, name))

    def _run_pruning(self, current_epoch: int) -> None:
        prune = self._apply_pruning(current_epoch) if callable(self._apply_pruning) else self._apply_pruning
        amount = self.amount(current_epoch) if callable(self.amount) else self.amount
        if not prune or not amount:
            return
        self.apply_pruning(amount)
        lottery = self._use_lottery_ticket_hypothesis
        if lottery(current_epoch) if callable(lottery) else lottery:
            self.apply_lottery_ticket_hypothesis()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._prune_on_train_epoch_end:
            rank_zero_debug("`ModelPruning.on_train_epoch_end`. Applying pruning")
            self._run_pruning(pl_module.current_epoch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and not self._prune_on_train_epoch_end:
            rank_zero_debug("`ModelPruning.on_validation_epoch_end`. Applying pruning")
            self._run_pruning(pl_module.current_epoch)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._make_pruning_permanent:
            rank_zero_debug("`ModelPruning.on_train_end`. Pruning is made permanent for this checkpoint")
            self.make_pruning_permanent(pl_module)

    def _make_pruning_permanent_on_state_dict(self, pl_module: LightningModule) -> dict[str, Any]:
        state_dict = pl_module.state_dict()
        for name in {k[: -len("_mask")] for k in state_dict if k.endswith("_mask")}:
            original = state_dict.pop(name + "_orig")
            mask = state_dict.pop(name + "_mask")
            state_dict[name] = mask.to(dtype=original.dtype) * original
        return {k: v.cpu() if isinstance(v, Tensor) else v for k, v in state_dict.items()}

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._make_pruning_permanent:
            rank_zero_debug("`ModelPruning.on_save_checkpoint`. Pruning is made permanent for this checkpoint")
            # the pruned weights as plain tensors; the module keeps its masks and goes on training
            checkpoint["state_dict"] = self._make_pruning_permanent_on_state_dict(pl_module)

    @staticmethod
    def sanitize_parameters_to_prune(
        pl_module: LightningModule, parameters_to_prune: _PARAM_LIST = (), parameter_names: Sequence[str] = ()
    ) -> _PARAM_LIST:
        """The ``(module, name)`` pairs to prune: all layers' ``parameter_names`` when none are given.

        Raises:
            MisconfigurationException: a given module or parameter is not in the model, or the
                pairs are not a list or tuple of ``(nn.Module, str)``.
        """
        names = parameter_names or ModelPruning.PARAMETER_NAMES
        layers = [m for m in pl_module.modules() if not isinstance(m, _MODULE_CONTAINERS)]
        if not parameters_to_prune:
            return [(m, p) for p in names for m in layers if isinstance(getattr(m, p, None), nn.Parameter)]
        well_formed = isinstance(parameters_to_prune, (list, tuple)) and all(
            len(pair) == 2 and isinstance(pair[0], nn.Module) and isinstance(pair[1], str)
            for pair in parameters_to_prune
        )
        if not well_formed:
            raise MisconfigurationException(
                "The provided `parameters_to_prune` should either be list of tuple"
                " with 2 elements: (nn.Module, parameter_name_to_prune) or None"
            )
        missing_modules = [module for module, _ in parameters_to_prune if module not in layers]
        missing_parameters = [
            name for module, name in parameters_to_prune if module in layers and not hasattr(module, name)
        ]
        if missing_modules or missing_parameters:
            raise MisconfigurationException(
                "Some provided `parameters_to_prune` don't exist in the model."
                f" Found missing modules: {missing_modules} and missing parameters: {missing_parameters}"
            )
        return parameters_to_prune

    @staticmethod
    def _is_pruning_method(method: Any) -> bool:
        return inspect.isclass(method) and issubclass(method, pytorch_prune.BasePruningMethod)


def _check_amount(amount: int | float) -> None:
    """A fixed ``amount`` that torch's pruning would refuse at the first pruning (a negative count, a fraction
    above 1) or fail on with Python's words (``True``: "topk(): argument 'k' must be int, not bool"; NaN:
    "cannot convert float NaN to integer") is refused when the callback is made, in torch's words."""
    if isinstance(amount, bool) or not (amount >= 0 if isinstance(amount, int) else 0.0 <= amount <= 1.0):
        raise ValueError(
            f"`ModelPruning(amount={amount!r})`: amount should either be a float in the range [0, 1] or a"
            " non-negative integer (the fraction or the number of parameters to prune), or a function of the"
            " epoch that returns one."
        )


lightning_style_annotations(ModelPruning)  # Lightning's `typing` forms in the signature
