"""``StochasticWeightAveraging``: average the weights of the last epochs (Izmailov et al., UAI 2018).

From ``swa_epoch_start`` on, the learning rate follows ``torch.optim.swa_utils.SWALR`` and the
weights at the start of each epoch are averaged into a copy of the module. When training ends the
average replaces the module's weights; BatchNorm statistics are then recomputed with one pass
of ``training_step`` over the training data, without backward or optimizer step, because the
running statistics of the last model do not match the averaged weights. (Lightning does this in
an extra epoch whose last batch still applies an optimizer step; here the weights stay the exact
average.)
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from ember.callbacks.callback import Callback
from ember.utilities.argument_checks import check_number, check_type
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

_AVG_FN = Callable[[Tensor, Tensor, Tensor], Tensor]


def _no_log(*args: Any, **kwargs: Any) -> None:
    """Stands in for ``self.log`` during the BatchNorm pass after training."""


class StochasticWeightAveraging(Callback):
    """Average the module's weights over the last epochs of training.

    Args:
        swa_lrs: the SWA learning rate, one float for all parameter groups or a list with one per group.
        swa_epoch_start: an int ``n`` starts averaging at epoch ``n`` (1-based, i.e. epoch index ``n - 1``);
            a float in [0, 1] starts at ``int(swa_epoch_start * max_epochs)``. With ``max_epochs=-1`` (training
            until ``max_steps`` or another limit) it must be an int, averaging goes on until training stops and
            the averaged weights are kept without recomputing the BatchNorm statistics, as in Lightning.
        annealing_epochs: epochs over which the learning rate anneals to ``swa_lrs``.
        annealing_strategy: ``"cos"`` or ``"linear"``.
        avg_fn: ``avg_fn(averaged_param, param, num_averaged)``; default an equal-weight running mean.
        device: where to keep the averaged copy (default the CPU; ``None``: the module's device).

    Example::

        trainer = Trainer(max_epochs=20, callbacks=[StochasticWeightAveraging(swa_lrs=1e-2)])
    """

    def __init__(
        self,
        swa_lrs: float | list[float],
        swa_epoch_start: int | float = 0.8,
        annealing_epochs: int = 10,
        annealing_strategy: Literal["cos", "linear"] = "cos",
        avg_fn: _AVG_FN | None = None,
        device: torch.device | str | None = torch.device("cpu"),
    ) -> None:
        call = "StochasticWeightAveraging"
        check_number(call, "swa_epoch_start", swa_epoch_start, "an epoch (an int >= 1) or a fraction of the epochs")
        check_type(
            call, "annealing_epochs", annealing_epochs, (int,), "an int: the epochs the learning rate anneals over"
        )
        err_msg = "swa_epoch_start should be a >0 integer or a float between 0 and 1."
        if isinstance(swa_epoch_start, int) and swa_epoch_start < 1:
            raise MisconfigurationException(err_msg)
        if isinstance(swa_epoch_start, float) and not (0 <= swa_epoch_start <= 1):
            raise MisconfigurationException(err_msg)
        wrong_type = not isinstance(swa_lrs, (float, list))
        wrong_float = isinstance(swa_lrs, float) and swa_lrs <= 0
        wrong_list = isinstance(swa_lrs, list) and not all(isinstance(lr, float) and lr > 0 for lr in swa_lrs)
        if wrong_type or wrong_float or wrong_list:
            raise MisconfigurationException("The `swa_lrs` should a positive float, or a list of positive floats")
        if avg_fn is not None and not callable(avg_fn):
            raise MisconfigurationException("The `avg_fn` should be callable.")
        if device is not None and not isinstance(device, (torch.device, str)):
            raise MisconfigurationException(f"device is expected to be a torch.device or a str. Found {device}")
        if annealing_strategy not in ("cos", "linear"):
            raise MisconfigurationException(
                f"`annealing_strategy` should be 'cos' or 'linear', got {annealing_strategy!r}."
            )

        self.n_averaged: Tensor | None = None
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn or self.avg_fn
        self._device = device
        self._model_contains_batch_norm: bool | None = None
        self._average_model: nn.Module | None = None
        self._initialized = False
        self._swa_scheduler: Any = None
        self._scheduler_state: dict | None = None
        self._init_n_averaged = 0
        self._latest_update_epoch = -1
        self.momenta: dict[nn.modules.batchnorm._BatchNorm, float | None] = {}
        self._max_epochs = 0

    @property
    def swa_start(self) -> int:
        assert isinstance(self._swa_epoch_start, int)
        return max(self._swa_epoch_start - 1, 0)  # 0-based

    @property
    def swa_end(self) -> float:
        """The last epoch (0-based) that is averaged; infinite with ``max_epochs=-1``."""
        if self._max_epochs == -1:
            return float("inf")
        return self._max_epochs - 1

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: nn.Module) -> bool:
        return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in pl_module.modules())

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        strategy_name = type(getattr(trainer, "strategy", None)).__name__.lower()
        if "fsdp" in strategy_name or "deepspeed" in strategy_name:
            raise MisconfigurationException("SWA does not currently support sharded models.")
        # the copy is made before the module moves to its device, so it lives where the user built it
        trainer_ref = pl_module.__dict__.get("_trainer")
        pl_module.__dict__["_trainer"] = None
        try:
            self._average_model = deepcopy(pl_module)
        finally:
            pl_module.__dict__["_trainer"] = trainer_ref

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise MisconfigurationException("SWA currently works with 1 `optimizer`.")
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationException("SWA currently not supported for more than 1 `lr_scheduler`.")
        max_epochs = -1 if trainer.max_epochs is None or trainer.max_epochs < 0 else trainer.max_epochs
        if isinstance(self._swa_epoch_start, float):
            if max_epochs == -1:
                raise MisconfigurationException(
                    "SWA with `swa_epoch_start` as a float is not supported when `max_epochs=-1`. "
                    "Please provide `swa_epoch_start` as an integer."
                )
            self._swa_epoch_start = int(max_epochs * self._swa_epoch_start)
        self._model_contains_batch_norm = self.pl_module_contains_batch_norm(pl_module)
        self._max_epochs = max_epochs
        if self._scheduler_state is not None and trainer.lr_scheduler_configs:
            # resuming inside the SWA phase: the SWALR state is restored at the next epoch start
            trainer.lr_scheduler_configs.clear()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if not self._initialized and self.swa_start <= epoch <= self.swa_end:
            self._initialized = True
            self._start_swa(trainer, pl_module)
        if self.swa_start <= epoch <= self.swa_end and epoch > self._latest_update_epoch:
            assert self._average_model is not None and self.n_averaged is not None
            self.update_parameters(self._average_model, pl_module, self.n_averaged, self._avg_fn)
            self._latest_update_epoch = epoch

    def _start_swa(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from torch.optim.swa_utils import SWALR

        from ember.trainer.optim import LRSchedulerConfig

        assert self._average_model is not None
        self._average_model = self._average_model.to(self._device or pl_module.device)
        optimizer = trainer.optimizers[0]
        optimizer = getattr(optimizer, "optimizer", optimizer)
        if isinstance(self._swa_lrs, float):
            self._swa_lrs = [self._swa_lrs] * len(optimizer.param_groups)
        for lr, group in zip(self._swa_lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        self._swa_scheduler = SWALR(
            optimizer,
            swa_lr=self._swa_lrs,  # type: ignore[arg-type]  # one learning rate per parameter group
            anneal_epochs=self._annealing_epochs,
            anneal_strategy=self._annealing_strategy,
            last_epoch=self._max_epochs if self._annealing_strategy == "cos" else -1,
        )
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        elif trainer.current_epoch != self.swa_start:
            rank_zero_warn(
                "SWA is initializing after swa_start without any checkpoint data. "
                "This may be caused by loading a checkpoint from an older version of PyTorch Lightning."
            )
        swa_config = LRSchedulerConfig(self._swa_scheduler)
        # the list is replaced in place: the loop steps whatever configs the trainer holds
        if trainer.lr_scheduler_configs:
            old = trainer.lr_scheduler_configs[0]
            if old.interval != "epoch" or old.frequency != 1:
                rank_zero_warn(f"SWA is currently only supported every epoch. Found {old}")
            rank_zero_info(
                f"Swapping scheduler `{old.scheduler.__class__.__name__}`"
                f" for `{self._swa_scheduler.__class__.__name__}`"
            )
            trainer.lr_scheduler_configs[0] = swa_config
        else:
            trainer.lr_scheduler_configs.append(swa_config)
        if self.n_averaged is None:
            self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # only a run that reached the last SWA epoch ends with the averaged weights, as in Lightning; without an
        # epoch limit, any run that averaged does (and the BatchNorm statistics stay those of training)
        if not self._initialized or self._average_model is None:
            return
        infinite = self._max_epochs == -1
        if not infinite and self._latest_update_epoch != self.swa_end:
            return
        self.transfer_weights(self._average_model, pl_module)
        if self._model_contains_batch_norm and not infinite:
            self._update_batch_norm(trainer, pl_module)

    def _update_batch_norm(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """One pass over the training data without backward, like Lightning's extra SWA epoch.

        Lightning runs ``training_step`` for that pass, so any batch format works; logging is
        switched off for it because training is over.
        """
        loader = getattr(trainer, "train_dataloader", None)
        if loader is None:
            rank_zero_warn("SWA could not find the train dataloader; BatchNorm statistics were not recomputed.")
            return
        self.reset_batch_norm_and_save_state(pl_module)
        was_training = pl_module.training
        pl_module.train()
        limit = getattr(trainer, "num_training_batches", float("inf"))
        automatic = getattr(pl_module, "automatic_optimization", True)
        device = pl_module.device
        pl_module.__dict__["log"] = pl_module.__dict__["log_dict"] = _no_log
        try:
            with torch.no_grad():
                for batch_idx, batch in enumerate(loader):
                    if batch_idx >= limit:
                        break
                    batch = pl_module._apply_batch_transfer_handler(pl_module._on_before_batch_transfer(batch), device)
                    if automatic:
                        pl_module.training_step(batch, batch_idx)
                    else:
                        # manual optimization steps inside training_step: feed the forward pass only,
                        # as torch.optim.swa_utils.update_bn does
                        pl_module(batch[0] if isinstance(batch, (list, tuple)) else batch)
        finally:
            pl_module.__dict__.pop("log", None)
            pl_module.__dict__.pop("log_dict", None)
            pl_module.train(was_training)
            self.reset_momenta()

    @staticmethod
    def transfer_weights(src_pl_module: nn.Module, dst_pl_module: nn.Module) -> None:
        for src_param, dst_param in zip(src_pl_module.parameters(), dst_pl_module.parameters()):
            dst_param.detach().copy_(src_param.to(dst_param.device))

    def reset_batch_norm_and_save_state(self, pl_module: nn.Module) -> None:
        """Zero the running statistics and use a cumulative average (momentum None) for the BN pass."""
        self.momenta = {}
        for module in pl_module.modules():
            if not isinstance(module, nn.modules.batchnorm._BatchNorm) or module.running_mean is None:
                continue
            assert module.running_var is not None and module.num_batches_tracked is not None
            module.running_mean = torch.zeros_like(module.running_mean)
            module.running_var = torch.ones_like(module.running_var)
            self.momenta[module] = module.momentum
            module.momentum = None
            module.num_batches_tracked *= 0

    def reset_momenta(self) -> None:
        for bn_module, momentum in self.momenta.items():
            bn_module.momentum = momentum

    @staticmethod
    def update_parameters(average_model: nn.Module, model: nn.Module, n_averaged: Tensor, avg_fn: _AVG_FN) -> None:
        """Fold ``model``'s current weights into ``average_model``."""
        # host sync: `n_averaged == 0` is read once per epoch, not per step
        first = bool(n_averaged == 0)
        for p_swa, p_model in zip(average_model.parameters(), model.parameters()):
            device = p_swa.device
            p_swa_ = p_swa.detach()
            p_model_ = p_model.detach().to(device)
            p_swa_.copy_(p_model_ if first else avg_fn(p_swa_, p_model_, n_averaged.to(device)))
        n_averaged += 1

    @staticmethod
    def avg_fn(averaged_model_parameter: Tensor, model_parameter: Tensor, num_averaged: Tensor) -> Tensor:
        """The equal-weight running mean."""
        return averaged_model_parameter + (model_parameter - averaged_model_parameter) / (num_averaged + 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_averaged": 0 if self.n_averaged is None else int(self.n_averaged.item()),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if self._average_model is None else self._average_model.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._init_n_averaged = state_dict["n_averaged"]
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        if self._average_model is not None and state_dict["average_model_state"] is not None:
            self._average_model.load_state_dict(state_dict["average_model_state"])


lightning_style_annotations(StochasticWeightAveraging)  # Lightning's `typing` forms in the signature
