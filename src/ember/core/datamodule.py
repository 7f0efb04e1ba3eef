"""``LightningDataModule``: the data of an experiment, its preparation and its dataloaders."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset, IterableDataset

from ember.core.hooks import DataHooks
from ember.core.hparams import HyperparametersMixin
from ember.core.saving import restricted_classmethod
from ember.utilities.apply_func import apply_to_type
from ember.utilities.signature_utils import lightning_style_annotations


class LightningDataModule(DataHooks, HyperparametersMixin):
    """Groups ``prepare_data``, ``setup`` and the ``*_dataloader`` methods of one dataset.

    Example::

        class Digits(LightningDataModule):
            def setup(self, stage):
                self.train_set, self.val_set = ...

            def train_dataloader(self):
                return DataLoader(self.train_set, batch_size=64, shuffle=True)

        trainer.fit(model, datamodule=Digits())
    """

    name: str | None = None
    CHECKPOINT_HYPER_PARAMS_KEY = "datamodule_hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "datamodule_hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "datamodule_hparams_type"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # the arguments are ignored, as in Lightning: a subclass may pass its own on with `super().__init__(**kwargs)`
        super().__init__()
        self.trainer: Any = None

    def on_exception(self, exception: BaseException) -> None:
        """Called when a run is interrupted by an exception."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (empty by default)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __str__(self) -> str:
        """The size of each dataset the dataloader methods serve, one line per method.

        Example::

            >>> print(LightningDataModule.from_datasets(train_set))   # doctest: +SKIP
            {Train dataloader: size=8}
            {Validation dataloader: None}
            ...
        """
        lines = []
        for label, method in (
            ("Train dataloader", "train_dataloader"),
            ("Validation dataloader", "val_dataloader"),
            ("Test dataloader", "test_dataloader"),
            ("Predict dataloader", "predict_dataloader"),
        ):
            try:
                loaders = getattr(self, method)()
            except Exception:  # not implemented, or not set up yet
                lines.append(f"{{{label}: None}}")
                continue
            if isinstance(loaders, DataLoader):
                lines.append(f"{{{label}: {_dataset_size(loaders)}}}")
                continue
            items = loaders.values() if isinstance(loaders, Mapping) else loaders
            described = " ; ".join(f"{i}. {_dataset_size(loader)}" for i, loader in enumerate(items, start=1))
            lines.append(f"{{{label}: {described}}}")
        return os.linesep.join(lines)

    @classmethod
    def from_datasets(
        cls,
        train_dataset: Dataset | Iterable[Dataset] | None = None,
        val_dataset: Dataset | Iterable[Dataset] | None = None,
        test_dataset: Dataset | Iterable[Dataset] | None = None,
        predict_dataset: Dataset | Iterable[Dataset] | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        **datamodule_kwargs: Any,
    ) -> LightningDataModule:
        """A datamodule serving the given datasets (training ones shuffled).

        Example::

            dm = LightningDataModule.from_datasets(train_set, val_set, batch_size=32)
        """

        def loader(ds: Dataset, shuffle: bool) -> DataLoader:
            shuffle &= not isinstance(ds, IterableDataset)
            return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, pin_memory=True)

        def loaders(datasets: Any, shuffle: bool) -> Any:
            """A loader for every torch ``Dataset`` in ``datasets``, in a collection of the same shape (any other
            object as it is, as Lightning's)."""
            return apply_to_type(datasets, Dataset, lambda dataset: loader(dataset, shuffle))

        # a subclass whose __init__ takes batch_size / num_workers receives them too, as in Lightning
        params = inspect.signature(cls.__init__).parameters
        accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        special = {
            k: v for k, v in (("batch_size", batch_size), ("num_workers", num_workers)) if accepts_kwargs or k in params
        }
        datamodule = cls(**datamodule_kwargs, **special)
        if train_dataset is not None:
            datamodule.train_dataloader = lambda: loaders(train_dataset, True)  # type: ignore[method-assign]
        if val_dataset is not None:
            datamodule.val_dataloader = lambda: loaders(val_dataset, False)  # type: ignore[method-assign]
        if test_dataset is not None:
            datamodule.test_dataloader = lambda: loaders(test_dataset, False)  # type: ignore[method-assign]
        if predict_dataset is not None:
            datamodule.predict_dataloader = lambda: loaders(predict_dataset, False)  # type: ignore[method-assign]
        return datamodule

    @restricted_classmethod
    def load_from_checkpoint(
        cls: type[LightningDataModule],
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> LightningDataModule:
        """Rebuild the datamodule from the hyperparameters saved in a checkpoint."""
        from ember.core.saving import load_from_checkpoint

        if "strict" in kwargs:  # a TypeError, as in Lightning, which passes its own `strict` beside this one
            raise TypeError(
                f"{cls.__name__}.load_from_checkpoint() got an unexpected keyword argument 'strict': a datamodule has"
                " no weights to load strictly or not. Remove the argument."
            )
        return load_from_checkpoint(
            cls, checkpoint_path, map_location, hparams_file, None, weights_only, True, **kwargs
        )


def _dataset_size(loader: Any) -> str:
    dataset = getattr(loader, "dataset", None)
    return f"size={len(dataset)}" if dataset is not None and hasattr(dataset, "__len__") else "size=NA"


lightning_style_annotations(LightningDataModule)  # Lightning's `typing` forms in the signature
