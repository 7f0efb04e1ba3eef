"""A Lightning 2.x training script, as users write it: it imports Lightning, never Ember.

    ember run lightning_program.py OUTDIR [--strategy ddp|ddp_spawn] [--epochs N]

The alias tests run it on Ember. Every process writes what it saw (its Trainer's class, the Lightning
version it was told, its rank) to ``OUTDIR/rank<r>.json``.
"""

import argparse
import json
import os
import sys

import lightning as L
import pytorch_lightning as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from pytorch_lightning.utilities.types import STEP_OUTPUT
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# the version check Lightning-based libraries make
if tuple(int(part) for part in pl.__version__.split(".")[:2]) < (2, 0):
    raise RuntimeError(f"this script needs Lightning >= 2.0, found {pl.__version__}")


class Regressor(L.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx) -> STEP_OUTPUT:
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.layer(x), y), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    L.seed_everything(0)
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1 if args.strategy == "auto" else 2,
        strategy=args.strategy,
        max_epochs=args.epochs,
        logger=CSVLogger(args.out),
        callbacks=[ModelCheckpoint(monitor="val_loss"), EarlyStopping("val_loss")],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regressor(), data, data)
    seen = {
        "trainer": f"{type(trainer).__module__}.{type(trainer).__qualname__}",
        "trainer_is_embers": "ember" in sys.modules and type(trainer) is sys.modules["ember"].Trainer,
        "lightning_version": pl.__version__,
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "epochs": trainer.current_epoch,
        "accelerator": type(trainer.accelerator).__name__,
        "argv": sys.argv[1:],
        "name": __name__,
        "best_model_path": trainer.checkpoint_callback.best_model_path,
    }
    with open(os.path.join(args.out, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    main()
