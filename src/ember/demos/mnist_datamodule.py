"""Lightning's ``demos.mnist_datamodule``: MNIST as a dataset and a datamodule.

``MNIST(...)`` is torchvision's dataset when torchvision is installed (it first downloads the
files to ``./data``), else ``_MNIST``, Lightning's own copy, which reads the processed tensors
``training.pt`` and ``test.pt`` from ``<root>/MNIST/complete`` (downloaded from
``https://pl-public-data.s3.amazonaws.com/MNIST/processed/`` when missing). Setting
``PL_USE_MOCKED_MNIST`` to any non-empty value picks ``_MNIST`` without trying torchvision.
``MNISTDataModule`` splits the training images into train and validation sets with a fixed seed.

Example::

    from ember.demos.mnist_datamodule import MNISTDataModule

    data = MNISTDataModule(data_dir="./data", num_workers=0)
    pl.Trainer(max_epochs=1).fit(model, datamodule=data)
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from warnings import warn

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, random_split

from ember.core.datamodule import LightningDataModule
from ember.demos._download import fetch
from ember.utilities.imports import _TORCHVISION_AVAILABLE

_DATASETS_PATH = "./data"


class _MNIST(Dataset):
    """MNIST from Lightning's processed files: ``(image, label)`` with a ``1x28x28`` float image.

    ``root/MNIST/complete`` must hold ``training.pt`` and ``test.pt``, each a ``(images, labels)``
    pair of tensors (``uint8`` images ``N x 28 x 28``, ``int64`` labels); ``download=True`` fetches
    both when either is missing. Images are normalized by ``normalize = (mean, std)`` unless it is
    ``None``. Other keyword arguments (torchvision's ``transform``, ...) are accepted and ignored.

    Example::

        train = _MNIST("./data", train=True, download=False)
        image, label = train[0]   # torch.Size([1, 28, 28]), an int
    """

    RESOURCES = (
        "https://pl-public-data.s3.amazonaws.com/MNIST/processed/training.pt",
        "https://pl-public-data.s3.amazonaws.com/MNIST/processed/test.pt",
    )
    TRAIN_FILE_NAME = "training.pt"
    TEST_FILE_NAME = "test.pt"
    cache_folder_name = "complete"

    def __init__(
        self, root: str, train: bool = True, normalize: tuple = (0.1307, 0.3081), download: bool = True, **kwargs: Any
    ) -> None:
        super().__init__()
        self.root = root
        self.train = train
        self.normalize = normalize
        self.prepare_data(download)
        name = self.TRAIN_FILE_NAME if train else self.TEST_FILE_NAME
        self.data, self.targets = self._try_load(os.path.join(self.cached_folder_path, name))

    def __getitem__(self, idx: int) -> tuple[Tensor, int]:
        image = self.data[idx].float().unsqueeze(0)
        if self.normalize is not None and len(self.normalize) == 2:
            image = self.normalize_tensor(image, *self.normalize)
        return image, int(self.targets[idx])

    def __len__(self) -> int:
        return len(self.data)

    @property
    def cached_folder_path(self) -> str:
        return os.path.join(self.root, "MNIST", self.cache_folder_name)

    def _check_exists(self, data_folder: str) -> bool:
        names = (self.TRAIN_FILE_NAME, self.TEST_FILE_NAME)
        return all(os.path.isfile(os.path.join(data_folder, name)) for name in names)

    def prepare_data(self, download: bool = True) -> None:
        """Download the two files when ``download`` and either is missing.

        Raises:
            OSError: the download failed (the message names the URL and the folder).
            RuntimeError: ``Dataset not found.``: the files are not there and were not downloaded.
        """
        folder = self.cached_folder_path
        if download and not self._check_exists(folder):
            self._download(folder)
        if not self._check_exists(folder):
            raise RuntimeError(
                f"Dataset not found. {self.TRAIN_FILE_NAME!r} and {self.TEST_FILE_NAME!r} are expected in {folder!r}."
            )

    def _download(self, data_folder: str) -> None:
        os.makedirs(data_folder, exist_ok=True)
        for url in self.RESOURCES:
            fetch(
                url,
                Path(data_folder) / os.path.basename(url),
                how=f"download {' and '.join(self.RESOURCES)} on a machine that has network access and put both"
                f" files in {data_folder!r}",
            )

    @staticmethod
    def _try_load(path_data: str, trials: int = 30, delta: float = 1.0) -> tuple[Tensor, Tensor]:
        """``torch.load`` the file, retried up to ``trials`` times after a random pause of up to
        ``delta`` seconds, for processes that write and read it at the same time."""
        assert trials, "at least some trial has to be set"
        if not os.path.isfile(path_data):
            raise FileNotFoundError(f"missing file: {path_data}")
        for attempt in range(trials):
            try:
                images, labels = torch.load(path_data, weights_only=True)
                return images, labels
            except Exception:
                if attempt == trials - 1:
                    raise
                time.sleep(delta * random.random())
        raise AssertionError("unreachable")

    @staticmethod
    def normalize_tensor(tensor: Tensor, mean: int | float = 0.0, std: int | float = 1.0) -> Tensor:
        """``(tensor - mean) / std``, with ``mean`` and ``std`` in the tensor's dtype and device."""
        mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
        std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
        return tensor.sub(mean_t).div(std_t)


def MNIST(*args: Any, **kwargs: Any) -> Dataset:
    """The MNIST dataset: torchvision's ``MNIST(*args, **kwargs)``, or ``_MNIST(*args, **kwargs)``.

    torchvision's is used when it imports and ``PL_USE_MOCKED_MNIST`` is unset or empty; it first
    downloads MNIST to ``./data`` (as Lightning does), and an HTTP error there falls back to
    ``_MNIST``, with a printed note. Without torchvision, ``_MNIST`` is used.

    Example::

        train = MNIST("./data", train=True, download=True)
    """
    dataset_class: Callable[..., Dataset] = _MNIST
    if not os.getenv("PL_USE_MOCKED_MNIST"):
        try:
            from torchvision.datasets import MNIST as torchvision_mnist
        except ImportError:
            torchvision_mnist = None
        if torchvision_mnist is not None:
            try:
                torchvision_mnist(_DATASETS_PATH, download=True)
                dataset_class = torchvision_mnist
            except HTTPError as error:
                print(f"Error {error} downloading `torchvision.datasets.MNIST`")
            except RuntimeError as error:  # torchvision's "Error downloading ..." once every mirror failed
                raise RuntimeError(_torchvision_download_failed(torchvision_mnist, error)) from error
    if dataset_class is _MNIST:
        print("`torchvision.datasets.MNIST` not available. Using our hosted version")
    return dataset_class(*args, **kwargs)


def _torchvision_download_failed(dataset_class: Any, error: Exception) -> str:
    folder = os.path.join(_DATASETS_PATH, "MNIST", "raw")
    mirrors = " or ".join(getattr(dataset_class, "mirrors", ())) or "torchvision's MNIST mirrors"
    return (
        f"{error}: torchvision could not download MNIST from {mirrors} into the folder {folder!r}."
        f" Without network access, put the four MNIST files ({_torchvision_files(dataset_class)}) there by hand,"
        f" or set PL_USE_MOCKED_MNIST=1 and put Lightning's {_MNIST.RESOURCES[0]} and {_MNIST.RESOURCES[1]}"
        " in <root>/MNIST/complete."
    )


def _torchvision_files(dataset_class: Any) -> str:
    return ", ".join(name for name, _ in getattr(dataset_class, "resources", ())) or "the .gz files"


class MNISTDataModule(LightningDataModule):
    """MNIST in batches: ``val_split`` training images for validation (split with seed 42), the test set for testing.

    Training batches are shuffled; every loader drops its last incomplete batch and pins memory.
    With torchvision installed, images go through ``ToTensor`` (and ``Normalize(0.5, 0.5)`` with
    ``normalize=True``).

    Args:
        data_dir: where the files are saved and read.
        val_split: how many training images to hold out for validation.
        num_workers: the loaders' worker processes (0 on Windows, with a warning).
        normalize: normalize images to [-1, 1] (with torchvision).
        seed: kept as ``self.seed``; the split itself always uses 42, as in Lightning.
        batch_size: the loaders' batch size.

    Example::

        data = MNISTDataModule(num_workers=0, batch_size=64)
        pl.Trainer(max_epochs=1).fit(model, datamodule=data)
    """

    name = "mnist"

    def __init__(
        self,
        data_dir: str = _DATASETS_PATH,
        val_split: int = 5000,
        num_workers: int = 16,
        normalize: bool = False,
        seed: int = 42,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        if num_workers and sys.platform == "win32":
            warn(
                f"You have requested num_workers={num_workers} on Windows,"
                " but currently recommended is 0, so we set it for you",
                stacklevel=2,
            )
            num_workers = 0
        self.data_dir = data_dir
        self.val_split = val_split
        self.num_workers = num_workers
        self.normalize = normalize
        self.seed = seed
        self.batch_size = batch_size

    @property
    def num_classes(self) -> int:
        return 10

    def prepare_data(self) -> None:
        """Download the training and test files to ``data_dir``."""
        MNIST(self.data_dir, train=True, download=True)
        MNIST(self.data_dir, train=False, download=True)

    def setup(self, stage: str) -> None:
        """Split the training images into ``dataset_train`` and ``dataset_val`` (generator seeded with 42)."""
        dataset = MNIST(self.data_dir, train=True, download=False, **self._transform())
        assert isinstance(dataset, Sized)
        train_length = len(dataset)
        self.dataset_train, self.dataset_val = random_split(
            dataset, [train_length - self.val_split, self.val_split], generator=torch.Generator().manual_seed(42)
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_val)

    def test_dataloader(self) -> DataLoader:
        return self._loader(MNIST(self.data_dir, train=False, download=False, **self._transform()))

    @property
    def default_transforms(self) -> Callable | None:
        """torchvision's ``ToTensor`` (then ``Normalize((0.5,), (0.5,))`` with ``normalize``); None without torchvision."""
        if not _TORCHVISION_AVAILABLE:
            return None
        from torchvision import transforms

        if self.normalize:
            return transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=(0.5,), std=(0.5,))])
        return transforms.ToTensor()

    def _transform(self) -> dict[str, Any]:
        transform = self.default_transforms
        return {"transform": transform} if transform else {}

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=True,
        )
