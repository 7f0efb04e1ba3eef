"""A script that trains with ``ddp_spawn`` at import time, with no ``if __name__ == "__main__":`` guard, and
catches the error of ``fit``. Each spawned process imports it again: there the script's own ``fit``
cannot start processes (Python refuses while the main module is still importing), its error is caught,
and the process goes on to run its rank of the job, as it does on Lightning.

    python unguarded_spawn_program.py
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl


class Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
trainer = pl.Trainer(
    accelerator="cpu",
    devices=2,
    strategy="ddp_spawn",
    max_epochs=1,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
try:
    trainer.fit(Model(), DataLoader(data, batch_size=4))
    print(f"fit returned at step {trainer.global_step}", flush=True)
except Exception as error:
    print(f"fit raised {type(error).__name__}: {error}", flush=True)
