"""Small real models: Ember's digits demo, and Lightning's demo models and datasets.

``ember.demos.digits`` is what ``make demo`` runs. The other modules are Lightning's
``lightning.pytorch.demos`` (served under that name by ``ember.install_as_lightning()``), with
Lightning's layers, data and numbers: ``boring_classes`` (``BoringModel`` and the random datasets
Lightning's tests use), ``transformer`` and ``lstm`` (language models on WikiText2) and
``mnist_datamodule``. The names below are imported on first use, so ``import ember`` stays fast.

Example::

    python -m ember.demos.digits --epochs 20

    from ember.demos import BoringModel   # or, under the alias, from lightning.pytorch.demos

    pl.Trainer(max_epochs=1).fit(BoringModel())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember.demos.boring_classes import BoringDataModule, BoringModel, DemoModel
    from ember.demos.lstm import LightningLSTM, SequenceSampler, SimpleLSTM
    from ember.demos.transformer import LightningTransformer, Transformer, WikiText2

# Lightning's `lightning.pytorch.demos.__all__`, each with the submodule that defines it
_HOMES = {
    "LightningLSTM": "lstm",
    "SequenceSampler": "lstm",
    "SimpleLSTM": "lstm",
    "LightningTransformer": "transformer",
    "Transformer": "transformer",
    "WikiText2": "transformer",
    "BoringModel": "boring_classes",
    "BoringDataModule": "boring_classes",
    "DemoModel": "boring_classes",
}
_SUBMODULES = ("boring_classes", "lstm", "mnist_datamodule", "transformer", "digits")

__all__ = [
    "BoringDataModule",
    "BoringModel",
    "DemoModel",
    "LightningLSTM",
    "LightningTransformer",
    "SequenceSampler",
    "SimpleLSTM",
    "Transformer",
    "WikiText2",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES, *_SUBMODULES})
