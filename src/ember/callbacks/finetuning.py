"""``BaseFinetuning`` and ``BackboneFinetuning``: freeze parts of a model, then unfreeze them during training.

``freeze_before_training`` runs in ``setup``, before ``configure_optimizers``, so the optimizer can
be built from the trainable parameters only; ``finetune_function`` runs at every epoch start and
adds what it unfreezes to the optimizer as a new parameter group. The groups added are recorded
(by parameter name) in the callback's state, so a run resumed from a checkpoint rebuilds them
before the optimizer's state is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Union

import torch
from torch.nn import Module, ModuleDict
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from ember.callbacks.callback import Callback
from ember.utilities.argument_checks import check_count
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

log = logging.getLogger(__name__)

_Modules = Union[Module, Iterable[Union[Module, Iterable]]]


def multiplicative(epoch: int) -> float:
    """``BackboneFinetuning``'s default schedule: the backbone's learning rate doubles every epoch."""
    return 2.0


class BaseFinetuning(Callback):
    """Base class of finetuning callbacks: override ``freeze_before_training`` and ``finetune_function``.

    Build the optimizer from the parameters that still require gradients, so frozen ones are not
    in it twice when they are unfrozen and added as a new group.

    Example::

        class UnfreezeAt(BaseFinetuning):
            def __init__(self, epoch=10):
                super().__init__()
                self.epoch = epoch

            def freeze_before_training(self, pl_module):
                self.freeze(pl_module.feature_extractor)

            def finetune_function(self, pl_module, current_epoch, optimizer):
                if current_epoch == self.epoch:
                    self.unfreeze_and_add_param_group(pl_module.feature_extractor, optimizer, train_bn=True)

        # in the module: torch.optim.Adam(filter(lambda p: p.requires_grad, self.parameters()))
    """

    def __init__(self) -> None:
        # optimizer index -> its parameter groups, with parameter names in place of the tensors
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}
        self._restarting = False

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = True
        # checkpoints written before the key existed hold the groups as the state itself
        self._internal_optimizer_metadata = state_dict.get("internal_optimizer_metadata", state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # resuming: rebuild the parameter groups added before the checkpoint, so the optimizer
        # state loaded next (after on_fit_start) finds as many groups as it was saved with
        if not self._restarting:
            return
        if self._internal_optimizer_metadata:
            named_parameters = dict(pl_module.named_parameters())
            for index, optimizer in enumerate(trainer.optimizers):
                if index in self._internal_optimizer_metadata:
                    optimizer.param_groups = self._apply_mapping_to_param_groups(
                        self._internal_optimizer_metadata[index], named_parameters
                    )
                    self._make_optimized_trainable(pl_module, optimizer)
        self._restarting = False

    @staticmethod
    def _make_optimized_trainable(pl_module: Module, optimizer: Optimizer) -> None:
        """What the optimizer trains was unfrozen when the checkpoint was written: unfreeze it again.

        ``freeze_before_training`` has just frozen it anew; Lightning 2.6 leaves it frozen, so a
        resumed run stops training what ``finetune_function`` had unfrozen.
        """
        optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for module in pl_module.modules():
            trained = [p for p in module.parameters(recurse=False) if id(p) in optimized]
            for param in trained:
                param.requires_grad = True
            if trained and isinstance(module, _BatchNorm):
                module.track_running_stats = True

    @staticmethod
    def flatten_modules(modules: _Modules) -> list[Module]:
        """The leaf modules of ``modules`` (a module or nested iterables of them), plus any parent that
        holds parameters of its own."""
        if isinstance(modules, ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable):
            found: list[Module] = []
            for module in modules:
                found.extend(BaseFinetuning.flatten_modules(module))
            candidates: Iterable[Module] = found
        else:
            candidates = modules.modules()
        return [m for m in candidates if not list(m.children()) or m._parameters]

    @staticmethod
    def filter_params(modules: _Modules, train_bn: bool = True, requires_grad: bool = True) -> Generator:
        """Yield the parameters of ``modules`` whose ``requires_grad`` equals ``requires_grad``
        (skipping BatchNorm layers when ``train_bn`` is False)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            # recurse=False: a parent with parameters of its own is listed next to its children
            for param in module.parameters(recurse=False):
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: _Modules) -> None:
        """Make every parameter of ``modules`` trainable, and BatchNorm layers track statistics again."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: Module) -> None:
        """Freeze ``module``'s own parameters (a BatchNorm layer also stops tracking statistics)."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: _Modules, train_bn: bool = True) -> None:
        """Freeze ``modules``; with ``train_bn`` their BatchNorm layers stay trainable."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: Optimizer, params: Iterable) -> list:
        """``params`` without those already in one of ``optimizer``'s groups (warns when any were)."""
        kept: list = []
        skipped: list = []
        for param in params:
            in_optimizer = any(torch.equal(p, param) for group in optimizer.param_groups for p in group["params"])
            (skipped if in_optimizer else kept).append(param)
        if skipped:
            rank_zero_warn(
                "The provided params to be frozen already exist within another group of this optimizer."
                " Those parameters will be skipped.\n"
                "HINT: Did you init your optimizer in `configure_optimizer` as such:\n"
                f" {type(optimizer)}(filter(lambda p: p.requires_grad, self.parameters()), ...) ",
            )
        return kept

    @staticmethod
    def unfreeze_and_add_param_group(
        modules: _Modules,
        optimizer: Optimizer,
        lr: float | None = None,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
    ) -> None:
        """Unfreeze ``modules`` and add their parameters to ``optimizer`` as a new group.

        Args:
            modules: the module(s) to unfreeze.
            optimizer: receives the new group (``add_param_group``).
            lr: the new group's learning rate; default the first group's divided by ``initial_denom_lr``.
            initial_denom_lr: the divisor used when ``lr`` is not given.
            train_bn: also train the BatchNorm layers.
        """
        BaseFinetuning.make_trainable(modules)
        params_lr = optimizer.param_groups[0]["lr"] if lr is None else float(lr)
        denominator = initial_denom_lr if lr is None else 1.0
        trainable = BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True)
        params = BaseFinetuning.filter_on_optimizer(optimizer, trainable)
        if params:
            optimizer.add_param_group({"params": params, "lr": params_lr / denominator})

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.freeze_before_training(pl_module)

    @staticmethod
    def _apply_mapping_to_param_groups(param_groups: list[dict[str, Any]], mapping: dict) -> list[dict[str, Any]]:
        """The groups with each parameter replaced through ``mapping`` (tensor <-> name)."""
        return [
            {**{k: v for k, v in group.items() if k != "params"}, "params": [mapping[p] for p in group["params"]]}
            for group in param_groups
        ]

    def _store(
        self, pl_module: LightningModule, opt_idx: int, num_param_groups: int, current_param_groups: list[dict]
    ) -> None:
        names = {p: n for n, p in pl_module.named_parameters()}
        if opt_idx not in self._internal_optimizer_metadata:
            self._internal_optimizer_metadata[opt_idx] = self._apply_mapping_to_param_groups(
                current_param_groups, names
            )
        elif num_param_groups != len(current_param_groups):
            # the groups finetune_function just added
            self._internal_optimizer_metadata[opt_idx].extend(
                self._apply_mapping_to_param_groups(current_param_groups[num_param_groups:], names)
            )

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Call ``finetune_function`` for every optimizer and record the groups it added."""
        for opt_idx, optimizer in enumerate(trainer.optimizers):
            num_param_groups = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._store(pl_module, opt_idx, num_param_groups, optimizer.param_groups)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Override to unfreeze parameters at the start of ``epoch`` (and add them to ``optimizer``)."""
        raise NotImplementedError

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        """Override to freeze parameters before the optimizers are built."""
        raise NotImplementedError


class BackboneFinetuning(BaseFinetuning):
    """Train a module's ``backbone`` only from ``unfreeze_backbone_at_epoch`` on, at a rising learning rate.

    Until that epoch the backbone is frozen. Then it joins the first optimizer as a new group with
    ``backbone_initial_lr`` (default: the current learning rate times ``backbone_initial_ratio_lr``);
    each later epoch multiplies it by ``lambda_func(epoch + 1)``, up to the current learning rate
    when ``should_align``.

    Args:
        unfreeze_backbone_at_epoch: the epoch at which the backbone starts training.
        lambda_func: the factor applied to the backbone's learning rate each epoch after that.
        backbone_initial_ratio_lr: the backbone's first learning rate relative to the current one.
        backbone_initial_lr: the backbone's first learning rate (overrides the ratio).
        should_align: cap the backbone's learning rate at the current one.
        initial_denom_lr: divisor for the new group's learning rate when none is given.
        train_bn: train the backbone's BatchNorm layers too.
        verbose: log both learning rates every epoch.
        rounding: digits shown in those logs.

    Raises:
        MisconfigurationException: the module has no ``backbone`` attribute that is an ``nn.Module``.

    Example::

        trainer = Trainer(callbacks=[BackboneFinetuning(unfreeze_backbone_at_epoch=5, lambda_func=lambda e: 1.5)])
    """

    def __init__(
        self,
        unfreeze_backbone_at_epoch: int = 10,
        lambda_func: Callable = multiplicative,
        backbone_initial_ratio_lr: float = 10e-2,
        backbone_initial_lr: float | None = None,
        should_align: bool = True,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
        verbose: bool = False,
        rounding: int = 12,
    ) -> None:
        super().__init__()
        # (a fraction or a negative epoch never matched: the first epoch after it found no backbone learning
        # rate to grow, with "unsupported operand type(s) for *: 'float' and 'NoneType'")
        check_count(
            "BackboneFinetuning",
            "unfreeze_backbone_at_epoch",
            unfreeze_backbone_at_epoch,
            "an epoch: a whole number of at least 0",
            minimum=0,
        )
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "internal_optimizer_metadata": self._internal_optimizer_metadata,
            "previous_backbone_lr": self.previous_backbone_lr,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if isinstance(getattr(pl_module, "backbone", None), Module):
            return super().on_fit_start(trainer, pl_module)
        raise MisconfigurationException("The LightningModule should have a nn.Module `backbone` attribute")

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Add the backbone at ``unfreeze_backbone_at_epoch``; raise its learning rate each epoch after."""
        current_lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = (
                self.backbone_initial_lr
                if self.backbone_initial_lr is not None
                else current_lr * self.backbone_initial_ratio_lr
            )
            self.previous_backbone_lr = backbone_lr
            self.unfreeze_and_add_param_group(
                pl_module.backbone,
                optimizer,
                backbone_lr,
                train_bn=self.train_bn,
                initial_denom_lr=self.initial_denom_lr,
            )
        elif epoch > self.unfreeze_backbone_at_epoch:
            assert self.previous_backbone_lr is not None
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current_lr:
                backbone_lr = current_lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
            self.previous_backbone_lr = backbone_lr
        else:
            return
        if self.verbose:
            log.info(
                f"Current lr: {round(current_lr, self.rounding)}, Backbone lr: {round(backbone_lr, self.rounding)}"
            )


lightning_style_annotations(BackboneFinetuning)  # Lightning's `typing` forms in the signature
