"""``WeightAveraging`` and ``EMAWeightAveraging``: keep an average of the weights during training.

The average is a ``torch.optim.swa_utils.AveragedModel`` updated after optimizer steps (and/or
epochs, as ``should_update`` decides). Validation runs with the averaged weights swapped in, and
when training ends the module keeps them. A checkpoint's ``state_dict`` holds the averaged
weights (what ``load_from_checkpoint`` gives), with the weights being trained under
``current_model_state`` so that a resumed run goes on from them.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from copy import deepcopy
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn, get_swa_avg_fn, get_swa_multi_avg_fn

from ember.callbacks.callback import Callback
from ember.utilities.argument_checks import check_type
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer


class _AveragedModel(AveragedModel):
    """An ``AveragedModel`` whose update never waits for the device.

    ``AveragedModel.update_parameters`` reads ``n_averaged`` back from the device twice per update
    to decide between copying and averaging; here a host-side count takes that decision, and
    ``n_averaged`` is still kept (and saved) as a buffer on the device.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._updates = 0

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "n_averaged"
        if key in state_dict:
            self._updates = int(state_dict[key])  # host read: once, when a checkpoint is loaded

    @torch.no_grad()
    def update_parameters(self, model: Module) -> None:
        if self.use_buffers:
            averaged = list(itertools.chain(self.module.parameters(), self.module.buffers()))
            current = list(itertools.chain(model.parameters(), model.buffers()))
        else:
            averaged, current = list(self.parameters()), list(model.parameters())
        pairs = [(a.detach(), c.detach().to(a.device)) for a, c in zip(averaged, current)]
        if self._updates == 0:
            for a, c in pairs:
                a.copy_(c)
        elif self.avg_fn is not None and self.multi_avg_fn is None:
            for a, c in pairs:
                a.copy_(self.avg_fn(a, c, self.n_averaged.to(a.device)))
        else:
            self._average_by_device(pairs)
        if not self.use_buffers:
            # buffers are not averaged: they follow the model
            for b_avg, b_model in zip(self.module.buffers(), model.buffers()):
                b_avg.detach().copy_(b_model.detach().to(b_avg.device))
        self.n_averaged += 1
        self._updates += 1

    def _average_by_device(self, pairs: list[tuple[Tensor, Tensor]]) -> None:
        groups: dict[tuple[torch.device, torch.dtype], list[tuple[Tensor, Tensor]]] = defaultdict(list)
        for a, c in pairs:
            groups[(a.device, a.dtype)].append((a, c))
        for (device, _), group in groups.items():
            averaged, current = [a for a, _ in group], [c for _, c in group]
            n_averaged = self.n_averaged.to(device)
            if self.multi_avg_fn is not None:
                self.multi_avg_fn(averaged, current, n_averaged)
            elif device.type == "cuda":  # as AveragedModel: foreach kernels where torch has them
                get_swa_multi_avg_fn()(averaged, current, n_averaged)
            else:
                swa = get_swa_avg_fn()
                for a, c in group:
                    a.copy_(swa(a, c, n_averaged))


class WeightAveraging(Callback):
    r"""Average the weights over training (SWA by default; EMA with ``avg_fn=get_ema_avg_fn()``).

    The arguments go to ``torch.optim.swa_utils.AveragedModel``; unlike there, ``use_buffers``
    defaults to ``True`` so BatchNorm statistics are averaged too. The average is updated after
    every optimizer step by default: override :meth:`should_update` to choose the steps or epochs.

    Args:
        device: where to keep the averaged model (default: the module's device; ``"cpu"`` saves
            accelerator memory).
        use_buffers: average the buffers as well (otherwise they follow the model).
        \**kwargs: ``avg_fn`` or ``multi_avg_fn`` for ``AveragedModel``.

    Example::

        class EMAAfter100Steps(WeightAveraging):
            def __init__(self):
                super().__init__(avg_fn=get_ema_avg_fn(0.999))

            def should_update(self, step_idx=None, epoch_idx=None):
                return step_idx is not None and step_idx >= 100

        trainer = Trainer(callbacks=EMAAfter100Steps(), max_epochs=10)
    """

    def __init__(self, device: torch.device | str | int | None = None, use_buffers: bool = True, **kwargs: Any) -> None:
        if device is False or (not device and not isinstance(device, (int, str, torch.device))):
            device = None  # a false value: the module's device, as in Lightning (0 is `cuda:0` here, listed)
        # (it failed when fit set the average up, in torch's words: "tensor(): argument 'device' must be
        # torch.device, not float", "nn.Module.to only accepts floating point ... dtype=torch.bool")
        check_type(
            type(self).__name__,
            "device",
            device,
            (torch.device, str, int, type(None)),
            "a device ('cpu', 'cuda:1', a `torch.device` or a CUDA index) or None: where to keep the averaged model",
            bool_too=False,
        )
        self._device: torch.device | int | None = torch.device(device) if isinstance(device, str) else device
        self._use_buffers = use_buffers
        self._kwargs = kwargs
        self._average_model: AveragedModel | None = None
        # optimizer steps taken at the last update: 0 makes the first update follow the first step
        self._latest_update_step = 0
        # the epoch after which the average was last updated
        self._latest_update_epoch = -1

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Whether to update the average after optimizer step ``step_idx`` or epoch ``epoch_idx`` (0-based).

        Called with one of the two set. The default updates after every optimizer step.
        """
        return step_idx is not None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Create the averaged model when ``fit`` begins (a copy of the module)."""
        if stage != "fit":
            return
        from ember.core.module import LightningModule

        device = self._device if self._device is not None else pl_module.device
        if type(pl_module).configure_model is not LightningModule.configure_model:
            rank_zero_warn(
                "You're using the WeightAveraging callback with a model that overrides the configure_model "
                "callback. WeightAveraging doesn't support sharding model layers, so you may run out of memory."
            )
            pl_module.configure_model()
        self._average_model = _AveragedModel(
            model=pl_module, device=device, use_buffers=self._use_buffers, **self._kwargs
        )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step  # optimizer steps so far; `step - 1` is the last step's index
        if step > self._latest_update_step and self.should_update(step_idx=step - 1):
            assert self._average_model is not None
            self._average_model.update_parameters(pl_module)
            self._latest_update_step = step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch > self._latest_update_epoch and self.should_update(epoch_idx=epoch):
            assert self._average_model is not None
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The module keeps the averaged weights."""
        assert self._average_model is not None
        self._copy_average_to_current(pl_module)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Validate with the averaged weights."""
        if self._average_model is not None:
            self._swap_models(pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Back to the weights being trained."""
        if self._average_model is not None:
            self._swap_models(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_step = state_dict["latest_update_step"]

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """``state_dict`` becomes the averaged weights; the trained ones move to ``current_model_state``
        and the averaging state (``n_averaged``) to ``averaging_state``."""
        if self._average_model is None:
            rank_zero_info(
                "You're using the WeightAveraging callback, but saving a checkpoint outside the 'fit' stage. The state "
                "of the WeightAveraging callback won't be saved in the checkpoint. If training has finished, the "
                "average model parameters will be saved to the state_dict in the checkpoint."
            )
            return
        average_state = self._average_model.state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k[len("module.") :]: v for k, v in average_state.items() if k.startswith("module.")}
        checkpoint["averaging_state"] = {k: v for k, v in average_state.items() if not k.startswith("module.")}

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Restore the average from ``state_dict`` and the module from ``current_model_state``."""
        if self._average_model is None:
            rank_zero_warn(
                "You're using the WeightAveraging callback, but loading a checkpoint outside the 'fit' stage. The "
                "WeightAveraging state cannot be restored. If you're using the checkpoint for prediction or testing, "
                "you can ignore this warning. To disable the warning, remove the WeightAveraging callback."
            )
        elif "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            rank_zero_info("Found current_model_state in the checkpoint. This will be used to initialize the model.")
            average_state = {"module." + k: v for k, v in checkpoint["state_dict"].items()}
            average_state.update(checkpoint["averaging_state"])
            self._average_model.load_state_dict(average_state)
            # the module was loaded from `state_dict`, the average: give it its own weights back
            pl_module.load_state_dict(checkpoint["current_model_state"])
        else:
            rank_zero_warn(
                "The checkpoint was not created with WeightAveraging. Both the current and the average model will be "
                "initialized with state_dict."
            )
            self._average_model.module.load_state_dict(deepcopy(checkpoint["state_dict"]), strict=False)

    def _pairs(self, pl_module: LightningModule) -> Any:
        assert self._average_model is not None
        average = self._average_model.module
        return zip(
            itertools.chain(average.parameters(), average.buffers()),
            itertools.chain(pl_module.parameters(), pl_module.buffers()),
        )

    def _swap_models(self, pl_module: LightningModule) -> None:
        """Exchange the values of the module's weights and the averaged ones."""
        for average, current in self._pairs(pl_module):
            kept = average.data.clone()
            average.data.copy_(current.data)
            current.data.copy_(kept)

    def _copy_average_to_current(self, pl_module: LightningModule) -> None:
        for average, current in self._pairs(pl_module):
            current.data.copy_(average.data)


class EMAWeightAveraging(WeightAveraging):
    """Exponential moving average of the weights: ``avg = decay * avg + (1 - decay) * weights``.

    Args:
        device: where to keep the average (default: the module's device).
        use_buffers: average the buffers as well.
        decay: the weight of the previous average at each update.
        update_every_n_steps: update after every n-th optimizer step (0: never after steps).
        update_starting_at_step: first optimizer step index (0-based) to update after.
        update_starting_at_epoch: also update at the end of every epoch from this one on.
        \\**kwargs: passed to ``AveragedModel``.

    Example::

        trainer = Trainer(callbacks=[EMAWeightAveraging(decay=0.99, update_starting_at_step=100)])
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(device=device, use_buffers=use_buffers, **kwargs, avg_fn=get_ema_avg_fn(decay=decay))
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """After every ``update_every_n_steps``-th step from ``update_starting_at_step`` on, and
        after every epoch from ``update_starting_at_epoch`` on."""
        if step_idx is not None:
            started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
            on_cadence = self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0
            if started and on_cadence:
                return True
        return (
            epoch_idx is not None
            and self.update_starting_at_epoch is not None
            and epoch_idx >= self.update_starting_at_epoch
        )


lightning_style_annotations(WeightAveraging, EMAWeightAveraging)  # Lightning's `typing` forms in the signature
