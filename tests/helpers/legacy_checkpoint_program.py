"""A program that runs on Lightning 1.8 (to write a checkpoint in that release's layout) and on Lightning 2.6.6
or Ember (to resume from it). Each function takes the framework's top-level module; nothing here imports one.

``train`` writes the checkpoint (``tests/fixtures/make_lightning_1_8_checkpoint.py`` runs it on Lightning
1.8.6); ``resume`` continues it for one more epoch and returns what the run restored and computed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset


def data() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    dataset = TensorDataset(x, x.sum(1, keepdim=True))
    return DataLoader(dataset, batch_size=8), DataLoader(dataset, batch_size=16)


def regressor(pl: Any) -> type:
    class Regressor(pl.LightningModule):
        def __init__(self, lr: float = 0.1, hidden: int = 8) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
            self.losses: list[float] = []
            self.loaded: dict[str, Any] = {}

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            self.losses.append(float(loss.detach()))
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.9)}

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            self.loaded = {
                "version": checkpoint["pytorch-lightning_version"],
                "legacy_version": checkpoint.get("legacy_pytorch-lightning_version"),
                "callback_keys": sorted(str(key) for key in checkpoint.get("callbacks", {})),
                "fit_loop_keys": sorted(checkpoint.get("loops", {}).get("fit_loop", {})),
            }

    return Regressor


def _callbacks(pl: Any) -> list[Any]:
    from importlib import import_module

    callbacks = import_module(f"{pl.__name__}.callbacks")
    return [
        callbacks.ModelCheckpoint(monitor="val_loss", save_last=True),
        callbacks.EarlyStopping("val_loss", patience=3),
    ]


def _trainer(pl: Any, root: str, epochs: int, extra: list[Any]) -> Any:
    return pl.Trainer(
        max_epochs=epochs,
        default_root_dir=root,
        callbacks=[*_callbacks(pl), *extra],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )


def train(pl: Any, root: str) -> str:
    """Two epochs; the path of ``last.ckpt``."""
    pl.seed_everything(0)
    trainer = _trainer(pl, root, 2, [])
    trainer.fit(regressor(pl)(), *data())
    return trainer.checkpoint_callback.last_model_path


def resume(pl: Any, ckpt_path: str, root: str) -> dict[str, Any]:
    """One more epoch from ``ckpt_path``: the states the callbacks restored, the losses, the end."""
    restored: dict[str, Any] = {}

    class Restored(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            checkpoint, stopping = trainer.checkpoint_callback, trainer.early_stopping_callback
            restored.update(
                epoch=trainer.current_epoch,
                global_step=trainer.global_step,
                best_model_path=checkpoint.best_model_path.rsplit("/", 1)[-1],
                wait_count=stopping.wait_count,
                best_score=float(stopping.best_score),
                scheduler_epoch=trainer.lr_scheduler_configs[0].scheduler.last_epoch,
                lr=trainer.optimizers[0].param_groups[0]["lr"],
            )

    pl.seed_everything(0)
    model = regressor(pl)()
    trainer = _trainer(pl, root, 3, [Restored()])
    trainer.fit(model, *data(), ckpt_path=ckpt_path)
    val_loss = float(trainer.callback_metrics["val_loss"])
    return {
        "restored": restored,
        "loaded": model.loaded,
        "losses": model.losses,
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "val_loss": val_loss if math.isfinite(val_loss) else None,
        "best_model_path": trainer.checkpoint_callback.best_model_path.rsplit("/", 1)[-1],
    }
