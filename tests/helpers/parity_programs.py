"""Small programs that run unchanged on Lightning and on Ember, for number-for-number parity.

Each factory takes the framework's top-level module (``pytorch_lightning`` or ``ember``) and uses
only its public Lightning API, so the reference scripts in ``tests/fixtures`` and Ember's tests run
the identical program.

Example::

    import ember as pl
    result = run_seeded_program(pl)
    # result["losses"]: every training loss; result["param_sums"]: {name: float}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

# Trainer arguments of the seeded program; ``num_sanity_val_steps`` stays at its default (2).
SEEDED_TRAINER_ARGS = {
    "max_epochs": 2,
    "accelerator": "cpu",
    "devices": 1,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "enable_checkpointing": False,
}
SEED = 42


class NoisyDataset(Dataset):
    """Fixed inputs plus augmentation noise drawn from torch's *global* RNG in ``__getitem__``.

    The noise makes the run depend on the exact order of global RNG draws (sampler seed, dropout,
    augmentation), which is what the parity test pins.
    """

    def __init__(self, length: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(length, 8, generator=generator)
        self.y = (self.x.sum(dim=1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index] + 0.1 * torch.randn(8), self.y[index]


def make_seeded_module(pl: Any) -> type:
    """Return the ``SeededMLP`` LightningModule class built on ``pl``."""

    class SeededMLP(pl.LightningModule):
        """MLP with Dropout on a shuffled loader; keeps every training loss (detached)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.25), nn.Linear(16, 2))
            self.losses: list = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.losses.append(loss.detach())
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

        def train_dataloader(self):
            return DataLoader(NoisyDataset(64, seed=1), batch_size=8, shuffle=True, num_workers=0)

        def val_dataloader(self):
            return DataLoader(NoisyDataset(24, seed=2), batch_size=8, num_workers=0)

    return SeededMLP


def run_seeded_program(pl: Any, **trainer_overrides: Any) -> dict:
    """``seed_everything(42)``, build the model, fit 2 epochs; return losses and parameter sums."""
    pl.seed_everything(SEED)
    model = make_seeded_module(pl)()
    trainer = pl.Trainer(**{**SEEDED_TRAINER_ARGS, **trainer_overrides})
    trainer.fit(model)
    return {
        # host sync: once, after training
        "losses": [float(loss) for loss in model.losses],
        "param_sums": {name: float(p.detach().sum()) for name, p in model.named_parameters()},
        "global_step": int(trainer.global_step),
    }


# --- checkpoint interoperability ----------------------------------------------------------------

CHECKPOINT_HPARAMS = {"in_dim": 4, "hidden": 8, "lr": 0.01, "name": "tiny", "sizes": [8, 4]}


def fixed_data(length: int = 6) -> torch.utils.data.TensorDataset:
    """Deterministic regression data (no RNG): 3 batches of 2 by default."""
    x = torch.linspace(-1.0, 1.0, length * 4).reshape(length, 4)
    y = x.sum(dim=1, keepdim=True) * 0.5
    return torch.utils.data.TensorDataset(x, y)


def make_checkpoint_module(pl: Any) -> type:
    """Return ``HparamsRegressor``: ``save_hyperparameters()``, Adam + StepLR, logs ``val_loss``."""

    class HparamsRegressor(pl.LightningModule):
        """Tiny regressor whose checkpoint carries ints, floats, a string and a list as hparams."""

        def __init__(
            self, in_dim: int = 4, hidden: int = 8, lr: float = 0.01, name: str = "tiny", sizes: list | None = None
        ) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            self.losses: list = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.losses.append(loss.detach())
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self(x), y))

        def configure_optimizers(self):
            optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}

        def train_dataloader(self):
            return DataLoader(fixed_data(), batch_size=2)

        def val_dataloader(self):
            return DataLoader(fixed_data(), batch_size=2)

    return HparamsRegressor
