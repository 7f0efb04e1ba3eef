"""Layer synchronization plugins (Lightning's ``plugins.layer_sync``): what ``Trainer(sync_batchnorm=True)`` does, and the place for your own.

A ``LayerSync`` changes the module's layers when a multi-process ``fit`` wraps it (``apply``) and
undoes that when the call ends (``revert``). ``sync_batchnorm=True`` uses :class:`TorchSyncBatchNorm`.

Example::

    class SyncOnlyTheEncoder(LayerSync):
        def apply(self, model):
            model.encoder = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.encoder)
            return model

        def revert(self, model):
            model.encoder = TorchSyncBatchNorm().revert(model.encoder)
            return model

    trainer = Trainer(accelerator="cuda", devices=2, plugins=[SyncOnlyTheEncoder()])
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

__all__ = ["LayerSync", "TorchSyncBatchNorm"]


class LayerSync(ABC):
    """Changes layers of the module so they synchronize across processes, and changes them back."""

    @abstractmethod
    def apply(self, model: nn.Module) -> nn.Module:
        """Return ``model`` with its layers synchronized (the same object, changed, or a new one)."""

    @abstractmethod
    def revert(self, model: nn.Module) -> nn.Module:
        """Undo :meth:`apply`."""


class TorchSyncBatchNorm(LayerSync):
    """Every BatchNorm layer becomes ``torch.nn.SyncBatchNorm``: statistics over all processes' batches.

    It has no effect on one device. ``SyncBatchNorm`` runs on CUDA devices only.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        """Every ``SyncBatchNorm`` back to a plain BatchNorm layer sharing its parameters and statistics.

        The original class (1d, 2d or 3d) is not recorded, so the layer accepts any input dimension.
        """
        converted = model
        if isinstance(model, nn.SyncBatchNorm):
            converted = _BatchNormAnyD(
                model.num_features, model.eps, model.momentum, model.affine, model.track_running_stats
            )
            if model.affine:
                converted.weight = model.weight
                converted.bias = model.bias
            converted.running_mean = model.running_mean
            converted.running_var = model.running_var
            converted.num_batches_tracked = model.num_batches_tracked
            converted.train(model.training)
        for name, child in model.named_children():
            converted.add_module(name, self.revert(child))
        return converted


class _BatchNormAnyD(nn.modules.batchnorm._BatchNorm):
    """BatchNorm that takes 2d to 5d input alike (as Lightning's reverted layers do)."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")
