"""Programs around ``CombinedLoader`` that run unchanged on Lightning and on Ember.

``combined_loader_cases(pl)`` iterates ``CombinedLoader`` in each mode over small loaders;
``training_cases(pl)`` fits, validates, tests and predicts on several loaders. Both return plain
JSON data (batches as nested lists with their container types), so that
``tests/fixtures/make_lightning_combined_loader.py`` can record Lightning's answers and
``tests/test_combined_loader.py`` compare Ember's with them. ``pl`` is the framework's top-level
module (``pytorch_lightning`` or ``ember``); this file never imports Lightning.
"""

from __future__ import annotations

import importlib
import pickle
import warnings
from collections import OrderedDict, namedtuple
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

MODES = ["max_size_cycle", "min_size", "max_size", "sequential"]
Pair = namedtuple("Pair", ["x", "y"])


def plain(value: Any) -> Any:
    """A batch as JSON: tensors as lists, containers tagged with their type."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {"namedtuple": type(value).__name__, "items": [plain(v) for v in value]}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [plain(v) for v in value]}
    if isinstance(value, dict):
        return {type(value).__name__: [[k, plain(v)] for k, v in value.items()]}
    if value is None or isinstance(value, (int, float, str)):
        return value
    return type(value).__name__  # a sampler, a DataLoader: its type is what is compared


def _combined_loader(pl: Any) -> Any:
    return importlib.import_module(f"{pl.__name__}.utilities.combined_loader").CombinedLoader


def _error(fn: Any) -> list[str] | None:
    try:
        fn()
    except Exception as error:  # the type and message are what is compared
        return [type(error).__name__, str(error)]
    return None


def _loaders() -> tuple[DataLoader, DataLoader, DataLoader]:
    return (
        DataLoader(range(6), batch_size=4),  # 2 batches
        DataLoader(range(10, 25), batch_size=5),  # 3 batches
        DataLoader(range(100, 103), batch_size=2),  # 2 batches
    )


class _Stream(IterableDataset):
    def __iter__(self):
        yield from range(50, 55)


class _Stateful:
    """An iterable with a state, as torchdata's StatefulDataLoader has one."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        yield from range(self.n)

    def __len__(self) -> int:
        return self.n

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.n = state["n"]


def _run(loader: Any) -> dict[str, Any]:
    iter(loader)
    return {"len": _error(lambda: len(loader)) or len(loader), "items": [plain(list(item)) for item in loader]}


def _structures(a: Any, b: Any, c: Any) -> dict[str, Any]:
    return {
        "dict": {"a": a, "b": b},
        "list": [a, b, c],
        "tuple": (a, b),
        "nested": {"x": [a, {"y": b}], "z": c},
        "single": b,
        "namedtuple": Pair(a, b),
        "ordered_dict": OrderedDict([("b", b), ("a", a)]),
    }


def combined_loader_cases(pl: Any) -> dict[str, Any]:
    """``CombinedLoader`` on its own: every mode, limits, flattening, properties and errors."""
    CombinedLoader = _combined_loader(pl)
    a, b, c = _loaders()
    out: dict[str, Any] = {"modes": {}, "limits": {}}
    for mode in MODES:
        for name, iterables in _structures(a, b, c).items():
            out["modes"][f"{mode}/{name}"] = _run(CombinedLoader(iterables, mode))
        for limits in ([1, 2, 1], 2, [0, 5, 1]):
            loader = CombinedLoader([a, b, c], mode)
            loader.limits = limits
            out["limits"][f"{mode}/{limits}"] = {"limits": loader.limits, **_run(loader)}
        loader = CombinedLoader([a, DataLoader(_Stream(), batch_size=2)], mode)
        out["modes"][f"{mode}/unsized"] = _run(loader)
        out.setdefault("dataset_length", {})[mode] = CombinedLoader({"a": a, "b": b, "c": c}, mode)._dataset_length()
    out["default_mode"] = [plain(list(item)) for item in CombinedLoader([a, b])]
    out["flattened"] = {
        name: [
            plain(x) if isinstance(x, (list, dict, tuple)) else type(x).__name__ for x in CombinedLoader(it).flattened
        ]
        for name, it in {
            "numbers": [1, 2, 3],
            "empty_list": [],
            "empty_dict": {},
            "lists_of_numbers": [[1, 2], [3]],
            "mixed": [range(2), (1, range(3))],
            "nones": [range(2), None],
        }.items()
    }
    out["iterate_numbers"] = [plain(list(item)) for item in CombinedLoader([[1, 2], [3]], "max_size_cycle")]
    out["iterate_empty"] = [plain(list(item)) for item in CombinedLoader([], "max_size_cycle")]
    loader = CombinedLoader({"a": a, "b": [b, c]}, "max_size_cycle")
    out["sampler"] = plain(loader.sampler)
    out["batch_sampler"] = plain(loader.batch_sampler)
    out["flattened_mismatch"] = _error(lambda: setattr(loader, "flattened", [a]))
    loader.flattened = [c, a, b]
    out["iterables_after_set"] = plain(loader.iterables)
    out["iterables_are_the_set_ones"] = loader.iterables["b"][0] is a and loader.flattened[2] is b
    out["limits_mismatch"] = _error(lambda: setattr(loader, "limits", [1]))
    out["bad_mode"] = _error(lambda: CombinedLoader([a], "longest"))
    fresh = CombinedLoader([a, b], "max_size_cycle")
    out["len_before_iter"] = _error(lambda: len(fresh))
    out["iter_returns_self"] = iter(fresh) is fresh
    next(fresh)
    out["iter_again_restarts"] = plain(list(next(iter(fresh))))
    fresh.reset()
    out["len_after_reset"] = _error(lambda: len(fresh))
    exhausted = iter(CombinedLoader([a, b], "min_size"))
    list(exhausted)
    out["next_after_end"] = _error(lambda: next(exhausted)) or "no error"
    out["iterate_twice"] = [len(list(exhausted)), len(list(exhausted))]
    pickled = iter(CombinedLoader([a, b], "max_size_cycle"))
    next(pickled)
    out["pickled_iterators"] = plain(pickle.loads(pickle.dumps(pickled))._iterator.iterators)
    out["all_iterable"] = _error(lambda: CombinedLoader([DataLoader(_Stream())])._dataset_length())
    stateful = CombinedLoader([_Stateful(3), a, _Stateful(4)], "max_size_cycle")
    out["state_dicts"] = stateful._state_dicts()
    stateful._load_state_dicts([{"n": 5}, {"n": 1}])
    out["loaded_lengths"] = [len(x) for x in stateful.flattened]
    out["load_mismatch"] = _error(lambda: stateful._load_state_dicts([{"n": 1}]))
    stateful._load_state_dicts([])
    return out


# =====================================================================================
# training, evaluation and prediction on several loaders
# =====================================================================================
def _model(pl: Any) -> Any:
    class Recorder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.seen: list[Any] = []
            self.val_seen: list[Any] = []
            self.test_seen: list[Any] = []

        def training_step(self, batch, batch_idx):
            self.seen.append([batch_idx, plain(batch)])
            return self.layer(torch.ones(1, 1)).sum()

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.val_seen.append([batch_idx, dataloader_idx, plain(batch)])

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            self.test_seen.append([batch_idx, dataloader_idx, plain(batch)])

        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return plain(batch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Recorder


def _trainer(pl: Any, **kwargs: Any) -> Any:
    options = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        max_epochs=1,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def _fit(pl: Any, loaders: Any, **kwargs: Any) -> dict[str, Any]:
    model = _model(pl)()
    trainer = _trainer(pl, **kwargs)
    error = _error(lambda: trainer.fit(model, train_dataloaders=loaders))
    if error is not None:
        return {"error": error}
    return {
        "seen": model.seen,
        "num_training_batches": trainer.num_training_batches,
        "global_step": trainer.global_step,
        "train_dataloader": plain(trainer.train_dataloader),
    }


def _datamodule_fit(pl: Any) -> dict[str, Any]:
    class Data(pl.LightningDataModule):
        calls = 0

        def train_dataloader(self):
            Data.calls += 1
            a, b, _ = _loaders()
            return {"a": a, "b": b}

    model = _model(pl)()
    trainer = _trainer(pl, max_epochs=3, reload_dataloaders_every_n_epochs=2)
    trainer.fit(model, datamodule=Data())
    return {"seen": model.seen, "calls": Data.calls, "num_training_batches": trainer.num_training_batches}


def _evaluate(pl: Any, loaders: Any, **kwargs: Any) -> dict[str, Any]:
    model = _model(pl)()
    trainer = _trainer(pl, limit_train_batches=1, **kwargs)
    a, _, _ = _loaders()
    trainer.fit(model, train_dataloaders=a, val_dataloaders=loaders)
    return {
        "val_seen": model.val_seen,
        "num_val_batches": trainer.num_val_batches,
        "val_dataloaders": plain(trainer.val_dataloaders),
    }


def training_cases(pl: Any) -> dict[str, Any]:
    """Fit on lists, tuples, dicts and ``CombinedLoader``s; validate, test and predict on ``CombinedLoader``s."""
    warnings.simplefilter("ignore")
    CombinedLoader = _combined_loader(pl)
    a, b, c = _loaders()
    out: dict[str, Any] = {
        "fit_list": _fit(pl, [a, b, c], max_epochs=2),
        "fit_dict": _fit(pl, {"a": a, "b": b}),
        "fit_tuple": _fit(pl, (a, b)),
        "fit_nested": _fit(pl, {"x": [a, c], "y": b}),
        "fit_one_in_a_list": _fit(pl, [b]),
        "fit_limit_int": _fit(pl, [a, b], limit_train_batches=2),
        "fit_limit_fraction": _fit(pl, [a, b], limit_train_batches=0.5),
        "fit_max_steps": _fit(pl, {"a": a, "b": b}, max_steps=4, max_epochs=-1),
        "fit_min_size": _fit(pl, CombinedLoader([a, b], "min_size")),
        "fit_max_size": _fit(pl, CombinedLoader({"a": a, "b": b}, "max_size")),
        "fit_combined_single": _fit(pl, CombinedLoader(b, "max_size_cycle")),
        "fit_sequential": _fit(pl, CombinedLoader([a, b], "sequential")),
        "fit_datamodule_reload": _datamodule_fit(pl),
        "val_sequential": _evaluate(pl, CombinedLoader([a, b], "sequential")),
        "val_sequential_limit": _evaluate(pl, CombinedLoader({"p": a, "q": b}, "sequential"), limit_val_batches=2),
        "val_max_size_cycle": _evaluate(pl, CombinedLoader({"p": a, "q": b}, "max_size_cycle")),
        "val_min_size_limit": _evaluate(pl, CombinedLoader([a, b], "min_size"), limit_val_batches=1),
        "val_list": _evaluate(pl, [a, b]),
    }
    model = _model(pl)()
    trainer = _trainer(pl)
    results = trainer.test(model, CombinedLoader([a, c], "sequential"), verbose=False)
    out["test_sequential"] = {"results": results, "seen": model.test_seen, "num_test_batches": trainer.num_test_batches}
    out["predict_sequential"] = trainer.predict(model, CombinedLoader({"p": a, "q": b}, "sequential"))
    out["predict_min_size"] = _error(lambda: trainer.predict(model, CombinedLoader([a, b], "min_size")))
    return out
