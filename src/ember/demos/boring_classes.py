"""Lightning's ``demos.boring_classes``: the tiny models and random datasets tests and bug reports use.

Everything here has Lightning's shapes, defaults and random draws: ``BoringModel`` is one
``Linear(32, 2)`` trained by SGD (lr 0.1, a ``StepLR``) to push its outputs towards 1, and each of
its dataloaders is 64 fresh ``torch.randn(32)`` samples, drawn when the dataloader is built. So a
seeded run gives the same numbers on Ember as on Lightning.

Example::

    from ember.demos.boring_classes import BoringModel   # lightning.pytorch.demos.boring_classes

    class MyModel(BoringModel):
        def on_train_epoch_end(self):
            print(self.layer.weight.sum())

    pl.Trainer(max_epochs=2, limit_train_batches=4).fit(MyModel())
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from ember.core.datamodule import LightningDataModule
from ember.core.module import LightningModule
from ember.core.optimizer import LightningOptimizer
from ember.utilities.types import STEP_OUTPUT


class RandomDictDataset(Dataset):
    """``length`` samples ``{"a": x, "b": x + 2}`` with ``x`` of ``size`` random normal values.

    Example::

        RandomDictDataset(32, 64)[0]["b"].shape   # torch.Size([32])
    """

    def __init__(self, size: int, length: int) -> None:
        self.len = length
        self.data = torch.randn(length, size)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        a = self.data[index]
        return {"a": a, "b": a + 2}

    def __len__(self) -> int:
        return self.len


class RandomDataset(Dataset):
    """``length`` vectors of ``size`` random normal values, drawn once when the dataset is made.

    Example::

        DataLoader(RandomDataset(32, 64), batch_size=8)
    """

    def __init__(self, size: int, length: int) -> None:
        self.len = length
        self.data = torch.randn(length, size)

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]

    def __len__(self) -> int:
        return self.len


class RandomIterableDataset(IterableDataset):
    """``count`` vectors of ``size`` random normal values, drawn anew on every pass; no length.

    Example::

        DataLoader(RandomIterableDataset(32, 64))
    """

    def __init__(self, size: int, count: int) -> None:
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[Tensor]:
        for _ in range(self.count):
            yield torch.randn(self.size)


class RandomIterableDatasetWithLen(IterableDataset):
    """``RandomIterableDataset`` that has a length (``count``).

    Example::

        len(RandomIterableDatasetWithLen(32, 64))   # 64
    """

    def __init__(self, size: int, count: int) -> None:
        self.count = count
        self.size = size

    def __iter__(self) -> Iterator[Tensor]:
        for _ in range(len(self)):
            yield torch.randn(self.size)

    def __len__(self) -> int:
        return self.count


class BoringModel(LightningModule):
    """A ``Linear(32, 2)`` with every hook a run needs; subclass it and change the piece under test.

    The loss is the mean squared distance of the outputs from 1 (or from ``labels``): arbitrary,
    but it moves the weights. ``training_step`` returns ``{"loss": ...}``, ``validation_step``
    ``{"x": ...}`` and ``test_step`` ``{"y": ...}``.

    Example::

        class TestModel(BoringModel):
            def training_step(self, batch, batch_idx):
                loss = self.step(batch)
                self.log("loss", loss)
                return loss
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(32, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)

    def loss(self, preds: Tensor, labels: Tensor | None = None) -> Tensor:
        target = torch.ones_like(preds) if labels is None else labels
        return F.mse_loss(preds, target)

    def step(self, batch: Any) -> Tensor:
        return self.loss(self(batch))

    def training_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        return {"loss": self.step(batch)}

    def validation_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        return {"x": self.step(batch)}

    def test_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        return {"y": self.step(batch)}

    def configure_optimizers(self) -> tuple[list[Optimizer], list[LRScheduler]]:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64))

    def test_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64))

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64))


class _OneLoaderPerStage(LightningDataModule):
    """Each stage's dataloader, batch size 1, over the dataset ``setup`` made for it (``random_<stage>``)."""

    random_train: Dataset
    random_val: Dataset
    random_test: Dataset
    random_predict: Dataset

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.random_train)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.random_val)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.random_test)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.random_predict)


class BoringDataModule(_OneLoaderPerStage):
    """256 random vectors of 32 values, drawn when made: 64 each for train, val, test and predict.

    Example::

        pl.Trainer(max_epochs=1).fit(BoringModel(), datamodule=BoringDataModule())
    """

    def __init__(self) -> None:
        super().__init__()
        self.random_full = RandomDataset(32, 64 * 4)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.random_train = Subset(self.random_full, indices=range(0, 64))
        if stage in ("fit", "validate"):
            self.random_val = Subset(self.random_full, indices=range(64, 128))
        if stage == "test":
            self.random_test = Subset(self.random_full, indices=range(128, 192))
        if stage == "predict":
            self.random_predict = Subset(self.random_full, indices=range(192, 256))


class BoringDataModuleNoLen(_OneLoaderPerStage):
    """Random vectors of 32 values from iterable datasets without a length (512 train, 128 val,
    256 test, 64 predict), drawn as they are read.

    Example::

        pl.Trainer(max_steps=10).fit(BoringModel(), datamodule=BoringDataModuleNoLen())
    """

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.random_train = RandomIterableDataset(32, 512)
        if stage in ("fit", "validate"):
            self.random_val = RandomIterableDataset(32, 128)
        if stage == "test":
            self.random_test = RandomIterableDataset(32, 256)
        if stage == "predict":
            self.random_predict = RandomIterableDataset(32, 64)


class IterableBoringDataModule(LightningDataModule):
    """Two dataloaders per stage, a sized and an iterable one, of vectors of 4 random values
    (16 each for train, 32 val, 64 test, 128 predict).

    Example::

        loaders = IterableBoringDataModule()
        loaders.setup("fit")
        train, val = loaders.train_dataloader(), loaders.val_dataloader()   # lists of two
    """

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_datasets = [RandomDataset(4, 16), RandomIterableDataset(4, 16)]
        if stage in ("fit", "validate"):
            self.val_datasets = [RandomDataset(4, 32), RandomIterableDataset(4, 32)]
        if stage == "test":
            self.test_datasets = [RandomDataset(4, 64), RandomIterableDataset(4, 64)]
        if stage == "predict":
            self.predict_datasets = [RandomDataset(4, 128), RandomIterableDataset(4, 128)]

    def train_dataloader(self) -> list[DataLoader]:
        return [DataLoader(dataset) for dataset in self.train_datasets]

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(dataset) for dataset in self.val_datasets]

    def test_dataloader(self) -> list[DataLoader]:
        return [DataLoader(dataset) for dataset in self.test_datasets]

    def predict_dataloader(self) -> list[DataLoader]:
        return [DataLoader(dataset) for dataset in self.predict_datasets]


class ManualOptimBoringModel(BoringModel):
    """``BoringModel`` with manual optimization: ``training_step`` zeroes, backpropagates and steps.

    Example::

        pl.Trainer(max_epochs=1, limit_train_batches=4).fit(ManualOptimBoringModel())
    """

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        optimizer = self.optimizers()
        assert isinstance(optimizer, (Optimizer, LightningOptimizer))
        loss = self.step(batch)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return loss


class DemoModel(LightningModule):
    """A ``Linear(32, out_dim)`` and a ReLU, trained by Adam to shrink the sum of its outputs.

    Example::

        pl.Trainer(max_epochs=1).fit(DemoModel(out_dim=4), DataLoader(RandomDataset(32, 64)))
    """

    def __init__(self, out_dim: int = 10, learning_rate: float = 0.02) -> None:
        super().__init__()
        self.l1 = nn.Linear(32, out_dim)
        self.learning_rate = learning_rate

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.l1(x.view(x.size(0), -1)))

    def training_step(self, batch: Any, batch_nb: int) -> STEP_OUTPUT:
        return self(batch).sum()

    def configure_optimizers(self) -> Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


class Net(nn.Module):
    """A small MNIST convnet (two convolutions, dropout, two linear layers); returns log-probabilities.

    Example::

        Net()(torch.randn(8, 1, 28, 28)).shape   # torch.Size([8, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)
