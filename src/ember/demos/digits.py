"""The digits demo: a small convnet on scikit-learn's bundled 8x8 digits, trained the way users do.

It exercises what a real run needs: checkpoints of the best and the latest state, early stopping,
learning-rate and gradient-norm logging, the CSV logger (plus TensorBoard when installed), a
progress bar, testing of the best checkpoint and a plot of the curves. No download: the 1797
images ship with scikit-learn. On 2 CPU cores the whole run takes well under a minute.

Example::

    python -m ember.demos.digits --epochs 20 --output demo_output
    # or: make demo
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.callbacks.callback import Callback

NUM_CLASSES = 10


class DigitsNet(pl.LightningModule):
    """Two convolutions and a small classifier head for 1x8x8 digit images.

    Logs ``train/loss`` and ``train/acc`` per step and epoch, ``val/loss`` and ``val/acc`` per
    epoch (``val/loss`` is what the checkpoint and early stopping watch) and ``test/acc``.

    Example::

        model = DigitsNet(lr=3e-3)
        pl.Trainer(max_epochs=5).fit(model, train_loader, val_loader)
    """

    def __init__(self, lr: float = 3e-3, channels: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels // 2, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels // 2, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * 16, 64),
            nn.ReLU(),
            nn.Linear(64, NUM_CLASSES),
        )
        self.loss_fn = nn.CrossEntropyLoss()
        self.example_input_array = torch.zeros(1, 1, 8, 8)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _loss_and_accuracy(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        return self.loss_fn(logits, y), (logits.argmax(dim=1) == y).float().mean()

    # sync_dist=True: with --devices 2 the epoch values are means over every rank's samples; on one
    # process it costs nothing
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, acc = self._loss_and_accuracy(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", acc, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, acc = self._loss_and_accuracy(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        self.log("val/acc", acc, prog_bar=True, sync_dist=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, acc = self._loss_and_accuracy(batch)
        self.log("test/loss", loss, sync_dist=True)
        self.log("test/acc", acc, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])
        # cosine decay over the planned run; the LearningRateMonitor shows it on its own panel
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs or 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class LogGradientNorm(Callback):
    """Logs the global L2 norm of the gradients as ``grad_norm``, just before each optimizer step.

    The seed's ``LogModelNorm`` printed the norm with ``.item()``; this one logs a tensor through
    ``pl_module.log``, so the value stays on the device and reaches the loggers (and the plot) only
    every ``log_every_n_steps``.

    Example::

        trainer = pl.Trainer(callbacks=[LogGradientNorm()])
    """

    def __init__(self, norm_type: float = 2.0) -> None:
        self.norm_type = norm_type

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        norms = torch.stack([torch.linalg.vector_norm(g, self.norm_type) for g in grads])
        pl_module.log("grad_norm", torch.linalg.vector_norm(norms, self.norm_type), on_step=True, on_epoch=False)


def digits_loaders(seed: int = 0, batch_size: int = 64) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train, validation and test loaders over scikit-learn's digits (70/15/15, split by ``seed``)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # the demo extra brings it
        raise ImportError(
            "The digits demo needs scikit-learn for its bundled dataset. Install it with"
            " `pip install ember[demo]` (or `pip install scikit-learn`)."
        ) from err
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # 0..16 -> 0..1
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(0.7 * len(order)), int(0.15 * len(order))
    parts = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    train, val, test = (TensorDataset(images[i], labels[i]) for i in parts)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True),
        DataLoader(val, batch_size=256),
        DataLoader(test, batch_size=256),
    )


def _parse_devices(value: str) -> int | str | list[int]:
    if value == "auto":
        return value
    if "," in value:
        return [int(v) for v in value.split(",") if v.strip()]
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--devices takes a count, 'auto' or a list like '0,1'; got {value!r}."
        ) from None


def build_parser(prog: str = "python -m ember.demos.digits") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a small convnet on scikit-learn's 8x8 digits with Ember, test the best checkpoint and plot the run.",
    )
    parser.add_argument("--epochs", type=int, default=20, help="maximum number of epochs (default: 20)")
    parser.add_argument(
        "--output", default="demo_output", help="folder for logs, checkpoints and the plot (default: ./demo_output)"
    )
    parser.add_argument("--accelerator", default="auto", help="'auto', 'cpu', 'cuda', 'gpu' or 'mps' (default: auto)")
    parser.add_argument(
        "--devices", type=_parse_devices, default=1, help="device count, 'auto' or ids like '0,1' (default: 1)"
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed for the split, the weights and the shuffling (default: 42)"
    )
    return parser


def _loggers(output: str) -> list[Any]:
    from ember.loggers import CSVLogger

    csv_logger = CSVLogger(output, name="logs")
    loggers: list[Any] = [csv_logger]
    try:
        import tensorboard  # noqa: F401  (only to know whether it is installed)
    except ImportError:
        return loggers
    from ember.loggers import TensorBoardLogger

    # same version number as the CSV run, so the two folders of one run are easy to pair
    loggers.append(TensorBoardLogger(output, name="tensorboard", version=csv_logger.version))
    return loggers


def main(argv: Sequence[str] | None = None, prog: str = "python -m ember.demos.digits") -> dict[str, Any]:
    """Run the demo; returns the test metrics and the paths it printed.

    Example::

        >>> from ember.demos.digits import main
        >>> result = main(["--epochs", "2", "--output", "/tmp/digits"])  # doctest: +SKIP
        >>> result["test_acc"] > 0.5  # doctest: +SKIP
        True
    """
    parser = build_parser(prog)  # (`prog`: how the program was started, for its usage and errors)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}.")
    from ember.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
    from ember.plot import plot_metrics

    start = time.perf_counter()
    pl.seed_everything(args.seed)
    train_loader, val_loader, test_loader = digits_loaders(args.seed)
    model = DigitsNet()

    checkpoint = ModelCheckpoint(
        monitor="val/loss", save_top_k=1, mode="min", filename="best-checkpoint", save_last=True
    )
    early_stopping = EarlyStopping(monitor="val/loss", patience=5, mode="min")
    loggers = _loggers(args.output)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        default_root_dir=args.output,
        logger=loggers,
        log_every_n_steps=5,  # ~20 batches per epoch: a few points per epoch on the plot
        callbacks=[
            checkpoint,
            early_stopping,
            LearningRateMonitor(logging_interval="epoch"),
            LogGradientNorm(),
            TQDMProgressBar(refresh_rate=5),
        ],
    )
    trainer.fit(model, train_loader, val_loader)

    results = trainer.test(model, test_loader, ckpt_path="best", verbose=False)
    test_acc = float(results[0]["test/acc"]) if results else float("nan")
    metrics_csv = os.path.join(loggers[0].log_dir, "metrics.csv")
    summary: dict[str, Any] = {
        "test_acc": test_acc,
        "epochs": trainer.current_epoch,
        "best_checkpoint": checkpoint.best_model_path,
        "last_checkpoint": checkpoint.last_model_path,
        "checkpoint_dir": checkpoint.dirpath,
        "metrics": metrics_csv,
        "tensorboard": loggers[1].log_dir if len(loggers) > 1 else None,
        "plot": None,
    }
    if trainer.is_global_zero:
        loggers[0].save()  # metrics.csv complete on disk before the plot reads it
        summary["plot"] = plot_metrics(loggers[0].log_dir, best_checkpoint=checkpoint)
        best = checkpoint.best_model_score
        print()
        print(
            f"Test accuracy: {test_acc:.4f} (best checkpoint, val/loss {float(best):.4f})"
            if best is not None
            else f"Test accuracy: {test_acc:.4f}"
        )
        print(f"Epochs trained: {trainer.current_epoch} in {time.perf_counter() - start:.1f} s")
        print(
            f"Checkpoints:   {checkpoint.dirpath}  (best: {os.path.basename(checkpoint.best_model_path)}, last: {os.path.basename(checkpoint.last_model_path)})"
        )
        print(f"Metrics:       {metrics_csv}")
        if summary["tensorboard"]:
            print(f"TensorBoard:   tensorboard --logdir {os.path.dirname(summary['tensorboard'])}")
        print(f"Plot:          {summary['plot']}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
