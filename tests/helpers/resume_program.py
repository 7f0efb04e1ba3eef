"""A training program whose randomness comes from everywhere a real one draws it.

Shuffled batches, augmentation noise drawn from the global RNG in ``__getitem__`` (in the worker
processes when ``num_workers > 0``), dropout, and a validation loop. Run as a script so that a
resume happens in a fresh process:

    python tests/helpers/resume_program.py OUT --max-steps 14 --workers 0 [--resume CKPT] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

BATCHES_PER_EPOCH = 6


class NoisyDataset(Dataset):
    def __init__(self, n: int = 6 * 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x.sum(1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i] + 0.1 * torch.randn(8), self.y[i]


def build(pl):
    class Net(pl.LightningModule):
        def __init__(self, workers: int = 0) -> None:
            super().__init__()
            self.workers = workers
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)]

        def train_dataloader(self):
            return DataLoader(NoisyDataset(), batch_size=8, shuffle=True, num_workers=self.workers)

        def val_dataloader(self):
            return DataLoader(NoisyDataset(16), batch_size=8, num_workers=self.workers)

    return Net


def main(argv: list[str] | None = None) -> None:
    import ember
    from ember.callbacks import ModelCheckpoint

    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    ember.seed_everything(args.seed, verbose=False)
    model = build(ember)(workers=args.workers)
    checkpoints = [
        ModelCheckpoint(
            dirpath=os.path.join(args.out, "steps"), every_n_train_steps=1, save_top_k=-1, filename="{step}"
        ),
        ModelCheckpoint(dirpath=os.path.join(args.out, "epochs"), every_n_epochs=1, save_top_k=-1, filename="{epoch}"),
    ]
    trainer = ember.Trainer(
        max_steps=args.max_steps,
        max_epochs=-1,
        callbacks=checkpoints,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=args.out,
    )
    trainer.fit(model, ckpt_path=args.resume)
    torch.save(model.state_dict(), os.path.join(args.out, "final.pt"))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    main()
