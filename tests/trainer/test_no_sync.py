"""The training step reads no tensor value on the host except at a log step or a bar refresh."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import Callback, TQDMProgressBar

REFRESH, LOG_EVERY, BATCHES = 4, 5, 23


class Model(ember.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log("loss", loss, prog_bar=True)
        self.log("acc", (logits.argmax(1) == y).float().mean(), on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def configure_optimizers(self):
        # SGD: torch's Adam reads its (CPU) step counter with .item(), which would blur the count
        return torch.optim.SGD(self.parameters(), lr=1e-2, momentum=0.9)


class HostReadCounter(Callback):
    """Counts Tensor.item/.cpu/.tolist calls between consecutive train batch starts."""

    def __init__(self, counter):
        self.counter = counter
        self.per_batch = {}
        self.current = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._close()
        self.current = (trainer.current_epoch, batch_idx, self.counter["n"])

    def on_train_epoch_end(self, trainer, pl_module):
        self._close()

    def _close(self):
        if self.current is not None:
            epoch, batch_idx, start = self.current
            self.per_batch[(epoch, batch_idx)] = self.counter["n"] - start
            self.current = None


@pytest.fixture
def counter(monkeypatch):
    counts = {"n": 0}
    for name in ("item", "cpu", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            counts["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def test_no_host_reads_between_log_steps_and_refreshes(tmp_path, counter):
    data = TensorDataset(torch.randn(BATCHES * 4, 8), torch.randint(0, 2, (BATCHES * 4,)))
    recorder = HostReadCounter(counter)
    trainer = ember.Trainer(
        max_epochs=2,
        default_root_dir=tmp_path,
        log_every_n_steps=LOG_EVERY,
        callbacks=[TQDMProgressBar(refresh_rate=REFRESH), recorder],
    )
    trainer.fit(Model(), DataLoader(data, batch_size=4))
    quiet = []
    for (epoch, batch_idx), reads in recorder.per_batch.items():
        stepped = epoch * BATCHES + batch_idx  # batches that stepped before this one
        is_log_step = (stepped + 1) % LOG_EVERY == 0
        is_refresh = (batch_idx + 1) % REFRESH == 0 or batch_idx + 1 == BATCHES
        if not (is_log_step or is_refresh):
            quiet.append((epoch, batch_idx, reads))
    assert len(quiet) > 20, "the test needs steps that are neither a log step nor a refresh"
    assert all(reads == 0 for *_, reads in quiet), [q for q in quiet if q[2]]
    # and the reads do happen where values are shown or written
    assert sum(recorder.per_batch.values()) > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_has_no_sync_between_log_points(tmp_path):
    """With the default progress bar and logger, a CUDA step never waits for the device."""

    class SyncGuard(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            log_step = (trainer._run.progress.batches_that_stepped + 1) % trainer.log_every_n_steps == 0
            torch.cuda.set_sync_debug_mode("default" if log_step else "error")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            torch.cuda.set_sync_debug_mode("default")

    data = TensorDataset(torch.randn(BATCHES * 4, 8), torch.randint(0, 2, (BATCHES * 4,)))
    trainer = ember.Trainer(
        max_epochs=1,
        accelerator="cuda",
        devices=1,
        default_root_dir=tmp_path,
        log_every_n_steps=LOG_EVERY,
        callbacks=[SyncGuard()],
    )
    try:
        trainer.fit(Model(), DataLoader(data, batch_size=4, pin_memory=True))
    finally:
        torch.cuda.set_sync_debug_mode("default")
