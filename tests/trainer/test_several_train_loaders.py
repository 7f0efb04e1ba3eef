"""Training on several dataloaders: an interrupted run resumes bit for bit, like one on a single loader.

(What ``training_step`` receives, the step counts and the limits are compared with Lightning in
``tests/test_combined_loader.py``.)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

import ember
from ember.callbacks import ModelCheckpoint

MAX_STEPS = 12  # 2 epochs of 5 batches, and 2 batches into the third


class NoisyDataset(Dataset):
    """Augmentation noise from the global RNG in ``__getitem__``, as real pipelines draw it."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x.sum(1) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i] + 0.1 * torch.randn(8), self.y[i]


class TwoLoaderNet(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))

    def training_step(self, batch, batch_idx):
        (xa, ya), (xb, yb) = batch["long"], batch["short"]
        return nn.functional.cross_entropy(self.net(xa), ya) + nn.functional.cross_entropy(self.net(xb), yb)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)]

    def train_dataloader(self):
        # 5 batches an epoch; the short loader (2 batches) starts again, with a new order, at batches 2 and 4
        return {
            "long": DataLoader(NoisyDataset(40, seed=0), batch_size=8, shuffle=True),
            "short": DataLoader(NoisyDataset(16, seed=1), batch_size=8, shuffle=True),
        }


def _fit(folder, seed, ckpt_path=None):
    ember.seed_everything(seed, verbose=False)
    model = TwoLoaderNet()
    trainer = ember.Trainer(
        max_steps=MAX_STEPS,
        max_epochs=-1,
        callbacks=[ModelCheckpoint(dirpath=folder, every_n_train_steps=1, save_top_k=-1, filename="{step}")],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=folder,
    )
    trainer.fit(model, ckpt_path=ckpt_path)
    return model.state_dict()


def test_resume_mid_epoch_with_two_loaders_gives_identical_weights(tmp_path):
    reference = _fit(tmp_path / "full", seed=7)
    # step 8: 3 batches into epoch 1; the short loader started again at batch 2, and batch 3 continues that
    # order (replayed from the checkpoint). step 7: 2 batches in, before it starts again (after the resume).
    # step 6: 1 batch in; the short loader drew its first order after the long one read its samples
    for step in (8, 7, 6):
        # another seed: everything random must come from the checkpoint, not from seeding again
        weights = _fit(tmp_path / f"resumed{step}", seed=123, ckpt_path=tmp_path / "full" / f"step={step}.ckpt")
        for key, value in reference.items():
            assert torch.equal(value, weights[key]), f"step={step}: {key} differs after resuming"


def test_resume_without_the_recorded_restart_is_not_exact(tmp_path):
    """Guards the test above: the RNG states kept when the short loader started again are what makes it exact."""
    reference = _fit(tmp_path / "full", seed=7)
    checkpoint = torch.load(tmp_path / "full" / "step=8.ckpt", weights_only=True)
    restarts = checkpoint["ember"]["epoch_rng"].pop("restarts")
    assert list(restarts) == [1] and restarts[1][0] == 2  # loader #1 ("short") started again at batch 2
    stripped = tmp_path / "stripped.ckpt"
    torch.save(checkpoint, stripped)
    weights = _fit(tmp_path / "resumed", seed=123, ckpt_path=stripped)
    assert any(not torch.equal(value, weights[key]) for key, value in reference.items())


class _Counting(IterableDataset):
    def __iter__(self):
        yield from (torch.tensor([float(i)]) for i in range(10))


class _StreamModel(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: list[list[float]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.view(-1).tolist())
        return self.layer(batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(_Counting(), batch_size=2)


def test_a_mid_epoch_resume_on_an_iterable_dataset_continues_after_the_batches_trained_on(tmp_path):
    def fit(ckpt_path=None):
        model = _StreamModel()
        callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1, filename="{step}")
        trainer = ember.Trainer(
            max_epochs=1,
            callbacks=[callback],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        )
        trainer.fit(model, ckpt_path=ckpt_path)
        return model.seen

    assert fit() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]]
    # the stream is read past the 3 batches trained on (a sampler-only skip would start it over)
    assert fit(tmp_path / "step=3.ckpt") == [[6.0, 7.0], [8.0, 9.0]]


def test_the_loaders_worker_processes_end_with_the_epoch(tmp_path):
    import multiprocessing

    class Model(_StreamModel):
        def __init__(self) -> None:
            super().__init__()
            self.workers: list[int] = []

        def training_step(self, batch, batch_idx):
            if batch_idx == 0:
                self.workers.append(len(multiprocessing.active_children()))
            return self.layer(batch[0]).sum()

        def train_dataloader(self):
            data = torch.arange(8.0).view(-1, 1)
            return [DataLoader(data, batch_size=2, num_workers=1), DataLoader(data, batch_size=4, num_workers=1)]

    model = Model()
    trainer = ember.Trainer(
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model)
    # one worker per loader while training: the last epoch's stopped after its end (as in Lightning), none after fit
    assert model.workers == [2, 2]
    assert multiprocessing.active_children() == []
