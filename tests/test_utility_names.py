"""Utilities under Lightning's names: data checks, warnings, enums, init arguments, hparams files, FLOPs."""

from __future__ import annotations

import functools
import warnings
from argparse import Namespace
from enum import Enum
from unittest import mock

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import ember as pl
from ember.core.mixins import HyperparametersMixin
from ember.core.saving import load_hparams_from_yaml, save_hparams_to_yaml
from ember.utilities import LightningEnum, disable_possible_user_warnings, grad_norm
from ember.utilities.data import _update_dataloader, has_len_all_ranks
from ember.utilities.parsing import collect_init_args, save_hyperparameters
from ember.utilities.throughput import get_available_flops
from ember.utilities.warnings import PossibleUserWarning


def test_has_len_all_ranks():
    strategy = pl.Trainer(logger=False, enable_progress_bar=False).strategy
    assert has_len_all_ranks(DataLoader(TensorDataset(torch.zeros(4, 1)), batch_size=2), strategy)

    class Stream(IterableDataset):
        def __iter__(self):
            yield from range(3)

    assert not has_len_all_ranks(DataLoader(Stream()), strategy)
    with pytest.warns(UserWarning, match="Total length of `DataLoader` across ranks is zero"):
        assert has_len_all_ranks(DataLoader(TensorDataset(torch.zeros(0, 1))), strategy)


def test_update_dataloader_puts_a_sampler_into_a_copy_of_the_loader():
    # Lightning's private `utilities.data._update_dataloader`, which programs call to give a loader a sampler
    from torch.utils.data import BatchSampler, SequentialSampler
    from torch.utils.data.distributed import DistributedSampler

    from ember.trainer.states import RunningStage

    data = TensorDataset(torch.arange(10.0))
    sampler = DistributedSampler(data, num_replicas=2, rank=0, shuffle=False)  # samples 0, 2, 4, 6, 8

    def batches(loader):
        return [batch[0].tolist() for batch in loader]

    loader = DataLoader(data, batch_size=3, shuffle=True, drop_last=True)
    copy = _update_dataloader(loader, sampler)
    assert copy is not loader and copy.sampler is sampler and batches(copy) == [[0.0, 2.0, 4.0]]
    assert batches(_update_dataloader(loader, sampler, RunningStage.PREDICTING)) == [[0.0, 2.0, 4.0], [6.0, 8.0]]

    class Sized(DataLoader):  # made again through its own `__init__`, keeping what it was made with
        def __init__(self, dataset, extra=7, **kwargs):
            self.extra = extra
            super().__init__(dataset, **kwargs)

    copy = _update_dataloader(Sized(data, extra=3, batch_size=4), sampler)
    assert type(copy) is Sized and copy.extra == 3 and batches(copy) == [[0.0, 2.0, 4.0, 6.0], [8.0]]
    # a loader built with a batch sampler keeps its batch size (Lightning's gives single samples)
    by_batches = DataLoader(data, batch_sampler=BatchSampler(SequentialSampler(data), 3, drop_last=False))
    assert batches(_update_dataloader(by_batches, sampler)) == [[0.0, 2.0, 4.0], [6.0, 8.0]]


def test_disable_possible_user_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        disable_possible_user_warnings()
        warnings.warn("maybe", PossibleUserWarning, stacklevel=1)
        warnings.warn("surely", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["surely"]


def test_lightning_enum_compares_in_any_case_and_parses():
    class Mode(LightningEnum):
        FAST = "fast"
        SLOW_ONE = "slow-one"

    assert Mode.FAST == "FAST" and {Mode.FAST: 1}["fast"] == 1
    assert Mode.from_str("slow_one") is Mode.SLOW_ONE and Mode.from_str("slow-one", source="value") is Mode.SLOW_ONE
    with pytest.raises(ValueError, match=r"expected one of \['FAST', 'SLOW_ONE'\], but got nope"):
        Mode.from_str("nope")
    with pytest.warns(UserWarning, match="Invalid string"):
        assert Mode.try_from_str("nope") is None


def test_save_hyperparameters_collects_the_arguments_of_a_mixin_init():
    class Sized:  # not a LightningModule: its self is one, and that is what counts (as in Lightning)
        def __init__(self, size: int = 3, **kwargs):
            super().__init__(**kwargs)
            self.save_hyperparameters()

    class Model(Sized, pl.LightningModule):
        def __init__(self, lr: float = 0.1):
            super().__init__(size=5)

    assert dict(Model().hparams) == {"size": 5, "lr": 0.1}


def test_save_hyperparameters_as_a_function_records_what_the_method_records(tmp_path):
    # Lightning's `utilities.parsing.save_hyperparameters(obj, ...)`, which programs call on the object itself
    class Model(pl.demos.boring_classes.BoringModel):
        def __init__(self, lr=0.1, hidden=3, net=None):
            super().__init__()
            save_hyperparameters(self, ignore="net")

    model = Model(lr=0.5, net=torch.nn.Linear(1, 1))
    assert dict(model.hparams) == {"lr": 0.5, "hidden": 3} and model._hparams_name == "kwargs"
    assert dict(model.hparams_initial) == {"lr": 0.5, "hidden": 3}
    trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=1, logger=False, enable_progress_bar=False)
    trainer.fit(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert dict(Model.load_from_checkpoint(tmp_path / "model.ckpt").hparams) == {"lr": 0.5, "hidden": 3}

    class Mixin(HyperparametersMixin):  # any HyperparametersMixin, with named arguments
        def __init__(self, q=9, r=1):
            super().__init__()
            save_hyperparameters(self, "q")

    assert dict(Mixin(q=4).hparams) == {"q": 4}


def test_save_hyperparameters_given_hparams_saves_for_an_init_assigned_from_outside_its_class():
    class Data(pl.LightningDataModule):
        def __init__(self, config=None):
            super().__init__()

    # an `__init__` patched onto the class has no `__class__` cell, so its frame is not read: what it passes is saved
    def patched_init(self, config, workers=4):
        super(Data, self).__init__()
        save_hyperparameters(self, given_hparams={"config": config})

    def patched_without_given(self, config, workers=4):
        super(Data, self).__init__()
        save_hyperparameters(self)

    with mock.patch.object(Data, "__init__", patched_init):
        data = Data({"root": "x"})
    assert dict(data.hparams) == {"config": {"root": "x"}} and data._hparams_name == "kwargs"
    with mock.patch.object(Data, "__init__", patched_without_given):
        data = Data({"root": "x"})
    assert dict(data.hparams) == {} and data._hparams_name is None  # as in Lightning


def test_save_hyperparameters_refuses_an_object_that_holds_no_hyperparameters():
    class Plain:
        def __init__(self, z=1):
            save_hyperparameters(self)

    # Lightning's AttributeError (there: "'Plain' object has no attribute '_set_hparams'"), saying what is needed
    with pytest.raises(AttributeError, match=r"'Plain' is none of them\. Derive its class from `HyperparametersMixin`"):
        Plain()
    with pytest.raises(AttributeError, match="There is no `frame` available while being required"):
        save_hyperparameters(pl.LightningDataModule(), frame=5)


def test_collect_init_args_walks_the_init_chain_innermost_first():
    import inspect

    class Base:
        def __init__(self, a=1):
            super().__init__()  # a frame is an __init__ of a class when it has `__class__`
            self.found = collect_init_args(inspect.currentframe(), [])

    class Child(Base):
        def __init__(self, b=2):
            super().__init__(a=10)

    assert Child().found == [{"a": 10}, {"b": 2}]


def test_hparams_yaml_round_trip_sorted_and_safe(tmp_path):
    class Color(Enum):
        RED = 1

    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, Namespace(b=1, a=[1, (2, 3)], color=Color.RED, fn=torch.nn.Linear), use_omegaconf=False)
    text = path.read_text()
    assert text.splitlines()[0] == "a:" and "!!python" not in text
    assert load_hparams_from_yaml(path, use_omegaconf=False) == {
        "a": [1, [2, 3]],
        "b": 1,
        "color": "RED",
        "fn": "torch.nn.modules.linear.Linear",
    }
    with pytest.raises(RuntimeError, match="Missing folder"):
        save_hparams_to_yaml(tmp_path / "nowhere" / "h.yaml", {})
    with pytest.warns(RuntimeWarning, match="Missing Tags"):
        assert load_hparams_from_yaml(tmp_path / "absent.yaml") == {}


def test_a_value_only_its_text_stands_for_in_hparams_yaml_warns_naming_it(tmp_path):
    path = tmp_path / "hparams.yaml"
    with pytest.warns(
        UserWarning, match=r"Skipping 'dtype' parameter .* safely dump to YAML.*'torch.float32'"
    ) as record:
        save_hparams_to_yaml(path, {"dtype": torch.float32, "lr": 0.1, "act": torch.nn.ReLU})
    assert len(record) == 1  # plain values and classes (written as their import path) are not lossy
    assert load_hparams_from_yaml(path, use_omegaconf=False) == {
        "act": "torch.nn.modules.activation.ReLU",
        "dtype": "torch.float32",
        "lr": 0.1,
    }


class _OptimizerFactory:  # a library's settings object, with Python's default text (`<... object at 0x...>`)
    def __init__(self) -> None:
        self.learning_rate, self.betas, self.name, self._cache = 0.001, (0.9, 0.98), "adam", {}
        self.schedule = _Schedule()


class _Schedule:
    def __init__(self) -> None:
        self.step_size = 10


def test_an_object_without_a_text_of_its_own_is_written_by_its_fields_the_same_in_every_run(tmp_path):
    # RePlay's optimizer and scheduler factories: Lightning's `!!python/object` tag records their fields;
    # their default text would put a memory address in the file, different in every run, and no setting
    for name in ("a", "b"):
        with pytest.warns(UserWarning) as record:
            save_hparams_to_yaml(
                tmp_path / f"{name}.yaml", {"optimizer_factory": _OptimizerFactory(), "marker": object()}
            )
        assert [str(w.message).split(" parameter")[0] for w in record] == [
            "Skipping 'optimizer_factory'",
            "Skipping 'marker'",
        ]
    assert (tmp_path / "a.yaml").read_text() == (tmp_path / "b.yaml").read_text()
    assert load_hparams_from_yaml(tmp_path / "a.yaml", use_omegaconf=False) == {
        "marker": "<object object>",
        "optimizer_factory": f"{__name__}._OptimizerFactory(learning_rate=0.001, betas=(0.9, 0.98), name='adam',"
        f" schedule={__name__}._Schedule(step_size=10))",
    }


def test_grad_norm_reads_nothing_back(monkeypatch):
    layer = torch.nn.Linear(3, 2)
    layer(torch.ones(1, 3)).sum().backward()
    reads = []
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1))
    norms = grad_norm(layer, "inf")
    assert not reads and set(norms) == {"grad_inf_norm/weight", "grad_inf_norm/bias", "grad_inf_norm_total"}
    with pytest.raises(ValueError, match="`norm_type` must be a positive number"):
        grad_norm(layer, 0)


def test_available_flops(monkeypatch):
    assert get_available_flops(torch.device("cpu"), torch.float32) is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    cuda = torch.device("cuda", 0)
    assert get_available_flops(cuda, torch.bfloat16) == int(989.4e12)  # dense, like the H100 SXM
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert get_available_flops(cuda, torch.float32) == int(494.7e12)  # TF32 tensor cores
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some Future GPU")
    with pytest.warns(UserWarning, match="FLOPs not found for 'Some Future GPU'"):
        assert get_available_flops(cuda, torch.bfloat16) is None


def test_hyperparameters_are_found_on_the_model_its_hparams_or_the_datamodule():
    from ember.utilities.parsing import lightning_getattr, lightning_hasattr, lightning_setattr

    class WithLr(pl.LightningModule):
        def __init__(self, lr=0.1):
            super().__init__()
            self.save_hyperparameters()

    model = WithLr()
    assert lightning_hasattr(model, "lr") and lightning_getattr(model, "lr") == 0.1
    lightning_setattr(model, "lr", 0.5)
    assert model.hparams.lr == 0.5
    trainer = pl.Trainer(logger=False)
    trainer.datamodule = pl.LightningDataModule()
    trainer.datamodule.batch_size = 8
    model.trainer = trainer
    assert lightning_getattr(model, "batch_size") == 8
    with pytest.raises(AttributeError, match="is neither stored in the model namespace nor the `hparams`"):
        lightning_getattr(model, "missing")


def test_clean_namespace_drops_what_cannot_be_pickled():
    from ember.utilities.parsing import clean_namespace

    hparams = {"a": 1, "f": lambda: 1}
    with pytest.warns(UserWarning, match="Attribute 'f' removed from hparams because it cannot be pickled"):
        clean_namespace(hparams)
    assert hparams == {"a": 1}


def test_shared_parameters_are_found_and_tied_again():
    from ember.utilities import find_shared_parameters, set_shared_parameters

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    model[2].weight = model[0].weight
    assert find_shared_parameters(model) == [["0.weight", "2.weight"]]
    model[2].weight = torch.nn.Parameter(model[0].weight.detach().clone())  # e.g. after loading: untied
    assert find_shared_parameters(model) == []
    set_shared_parameters(model, [["0.weight", "2.weight"]])
    assert model[2].weight is model[0].weight


def test_extract_batch_size_warns_once_on_an_ambiguous_batch():
    from ember.utilities.data import extract_batch_size, warning_cache
    from ember.utilities.exceptions import MisconfigurationException

    assert extract_batch_size({"x": [torch.zeros(5, 2)], "y": torch.zeros(5)}) == 5
    warning_cache.clear()
    with pytest.warns(UserWarning, match="ambiguous collection. The batch size we found is 5"):
        assert extract_batch_size((torch.zeros(5, 2), torch.zeros(3))) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extract_batch_size((torch.zeros(5, 2), torch.zeros(3)))  # once only
    with pytest.raises(MisconfigurationException, match="We could not infer the batch_size"):
        extract_batch_size({"text": "no tensor"})


def test_extract_batch_size_reads_every_kind_of_batch_lightning_reads():
    import collections
    import dataclasses
    import types
    from collections.abc import Mapping

    from ember.utilities.data import extract_batch_size, warning_cache
    from ember.utilities.exceptions import MisconfigurationException

    class Frozen(Mapping):
        """A mapping that is not a dict."""

        def __init__(self, **items):
            self._items = items

        def __getitem__(self, key):
            return self._items[key]

        def __iter__(self):
            return iter(self._items)

        def __len__(self):
            return len(self._items)

    @dataclasses.dataclass
    class Batch:
        images: torch.Tensor
        name: str

    Pair = collections.namedtuple("Pair", ["x", "y"])
    six, scalar = torch.zeros(6, 2), torch.tensor(1.0)
    warning_cache.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these is ambiguous
        assert extract_batch_size(six) == 6
        assert extract_batch_size(scalar) == 1
        assert extract_batch_size([six, [six]]) == 6
        assert extract_batch_size(Pair(six, six)) == 6
        assert extract_batch_size(collections.OrderedDict(a=six)) == 6
        assert extract_batch_size(Frozen(a=[six])) == 6
        assert extract_batch_size(types.MappingProxyType({"a": six})) == 6
        assert extract_batch_size(iter([six])) == 6  # any iterable
        assert extract_batch_size(["no tensor first is skipped", six]) == 6  # a leading non-tensor leaf
    with pytest.warns(UserWarning, match="ambiguous collection. The batch size we found is 6"):
        # a string is a leaf, not a sequence of characters: after a tensor, it makes the batch ambiguous
        assert extract_batch_size(Batch(six, "a name")) == 6
    with pytest.raises(MisconfigurationException, match="We could not infer the batch_size"):
        extract_batch_size(("text", 3, None))
    recursive: list = []
    recursive.append(recursive)
    with pytest.raises(RecursionError, match="We could not infer the batch_size"):
        extract_batch_size(recursive)


def test_recursive_detach():
    from ember.utilities.memory import recursive_detach

    x = torch.ones(2, requires_grad=True) * 2
    out = recursive_detach({"a": x, "b": [x], "c": 1}, to_cpu=True)
    assert not out["a"].requires_grad and not out["b"][0].requires_grad and out["c"] == 1


def test_tags_csv_round_trip(tmp_path):
    from ember.core.saving import load_hparams_from_tags_csv, save_hparams_to_tags_csv

    path = tmp_path / "meta_tags.csv"
    save_hparams_to_tags_csv(path, Namespace(lr=0.1, name="x", steps=3))
    assert path.read_text().splitlines()[0] == "key,value"
    assert load_hparams_from_tags_csv(path) == {"lr": 0.1, "name": "x", "steps": 3}
    with pytest.raises(RuntimeError, match="Missing folder"):
        save_hparams_to_tags_csv(tmp_path / "nowhere" / "tags.csv", {})


class _NotPlainData:
    pass


def test_core_saving_loads_checkpoints_safely_and_names_the_filesystem(tmp_path):
    import pickle

    from ember.core.saving import get_filesystem, pl_load

    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    loaded = pl_load(str(path), map_location="cpu")
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.ones(2))
    with open(path, "rb") as file:  # an open file, as Lightning's accepts
        assert pl_load(file)["epoch"] == 3

    torch.save({"thing": _NotPlainData()}, tmp_path / "object.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="_NotPlainData"):
        pl_load(tmp_path / "object.ckpt")  # safe loading by default: no class is imported
    assert isinstance(pl_load(tmp_path / "object.ckpt", weights_only=False)["thing"], _NotPlainData)

    assert get_filesystem(str(tmp_path)).protocol[0] == "file"
    assert "memory" in get_filesystem("memory://ckpts/a.ckpt").protocol


def test_possible_user_warnings_off_from_the_environment():
    import subprocess
    import sys

    code = (
        "import warnings; warnings.simplefilter('error'); import ember;"
        " from ember.utilities.warnings import PossibleUserWarning;"
        " warnings.warn('x', PossibleUserWarning); print('silent')"
    )
    import os

    env = {**os.environ, "POSSIBLE_USER_WARNINGS": "off"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "silent", result.stderr


def test_embers_warnings_print_on_one_line_as_lightnings_and_others_keep_pythons_format():
    import os
    import subprocess
    import sys

    code = """if True:
        import warnings
        import ember
        warnings.warn_explicit("from Ember's files", UserWarning, ember.__file__, 7)
        warnings.warn("from the program")
    """
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    import ember

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert f"{ember.__file__}:7: from Ember's files" in lines
    assert "<string>:5: UserWarning: from the program" in lines


def test_lightnings_import_flags_say_what_is_installed():
    # libraries branch on them (`if _TORCHVISION_AVAILABLE: ...`)
    import importlib.util

    from ember.utilities import imports

    assert imports._TORCH_GREATER_EQUAL_2_6 is True and imports._PYTHON_GREATER_EQUAL_3_11_0 is True
    assert bool(imports._TORCHVISION_AVAILABLE) == (importlib.util.find_spec("torchvision") is not None)
    assert bool(imports._OMEGACONF_AVAILABLE) == (importlib.util.find_spec("omegaconf") is not None)
    torch_release = tuple(int(n) for n in torch.__version__.split("+")[0].split(".")[:2])
    assert bool(imports._TORCH_EQUAL_2_8) == (torch_release == (2, 8))
    assert imports.RequirementCache("torch>=2.3,<99") and not imports.RequirementCache("torch<2.0")
    missing = imports.RequirementCache("no-such-package>=1.0")
    assert not missing
    assert str(missing) == (
        "Requirement 'no-such-package>=1.0' not met. HINT: Try running `pip install -U 'no-such-package>=1.0'`"
    )
    assert imports.compare_version("torch", ">=", "2.3.0") and not imports.compare_version("no-such-package", ">=", "0")
    assert not hasattr(imports, "_NO_SUCH_FLAG") and "_TORCH_GREATER_EQUAL_2_8" in dir(imports)
    # Lightning's own arguments: an operator function, a module to import, `package_available`
    import operator

    assert imports.compare_version("torch", operator.ge, "2.3.0") and not imports.compare_version(
        "torch", operator.lt, "2"
    )
    assert imports.RequirementCache(module="json") and not imports.RequirementCache(module="no_such_module")
    assert imports.RequirementCache("torch>=2.0", "torch") and imports.package_available("json")
    # as Lightning's: a requirement not met by an installed distribution of that name (mlflow comes as
    # `mlflow-skinny`) is met by its module where a module is named or the requirement names no version
    by_module = imports.RequirementCache("no-such-distribution>=1.0", "json")
    assert by_module and str(by_module) == "Module 'json' available"
    assert imports.RequirementCache("json") and not imports.RequirementCache("no_such_module")
    assert not imports.RequirementCache("no-such-distribution>=1.0")  # a version asked for, no module named
    assert not imports.package_available("no_such_package.sub")
    assert imports._version_key("2.9.0.dev20250101") < imports._version_key("2.9.0")  # a nightly is older
    assert imports._Release((2, 9, 0), pre=True) < imports._Release((2, 9), pre=False)  # without `packaging`
    assert imports._try_import_module("json") is True
    with pytest.warns(UserWarning, match="Import of no_such_module package failed"):
        assert imports._try_import_module("no_such_module") is False


def test_get_torchvision_model_names_the_missing_package():
    import importlib.util

    from ember.utilities.model_helpers import get_torchvision_model

    if importlib.util.find_spec("torchvision") is not None:
        assert type(get_torchvision_model("resnet18", weights=None)).__name__ == "ResNet"
    else:
        with pytest.raises(ModuleNotFoundError, match="Requirement 'torchvision' not met. HINT: Try running `pip"):
            get_torchvision_model("resnet18")


def test_the_banner_of_lightnings_example_scripts_is_embers(capsys):
    from ember.cli.logo import cli_lightning_logo

    cli_lightning_logo()
    printed = capsys.readouterr().out
    assert "E  M  B  E  R" in printed and printed.startswith("\n\033[0;33m") and printed.endswith("\033[0m\n\n")


def test_is_overridden():
    from ember.callbacks import Callback, EarlyStopping
    from ember.utilities.model_helpers import is_overridden

    class Module(pl.LightningModule):
        def training_step(self, batch, batch_idx):
            return None

    class Data(pl.LightningDataModule):
        def train_dataloader(self):
            return []

    assert not is_overridden("whatever", None)
    with pytest.raises(ValueError, match="Expected a parent"):
        is_overridden("training_step", object())
    assert is_overridden("training_step", Module()) and not is_overridden("validation_step", Module())
    assert not is_overridden("whatever", Module(), parent=pl.LightningDataModule)
    assert is_overridden("train_dataloader", Data())
    assert is_overridden("on_validation_end", EarlyStopping("x")) and not is_overridden("on_fit_start", Callback())
    # an attribute that only wraps the inherited method is not an override (observed on Lightning 2.6.6)
    wrapped = Module()
    wrapped.on_fit_start = mock.Mock(wraps=wrapped.on_fit_start)
    wrapped.on_fit_end = functools.update_wrapper(
        functools.partial(pl.LightningModule.on_fit_end, None), pl.LightningModule.on_fit_end
    )
    wrapped.training_step = mock.Mock(wraps=wrapped.training_step)
    wrapped.on_train_start = lambda: None
    assert not is_overridden("on_fit_start", wrapped) and not is_overridden("on_fit_end", wrapped)
    assert is_overridden("training_step", wrapped) and is_overridden("on_train_start", wrapped)


def test_the_out_of_memory_helpers_answer_as_lightnings():
    # pyannote.audio imports `lightning.pytorch.utilities.memory.is_oom_error`
    from ember.utilities.memory import (
        garbage_collection_cuda,
        is_cuda_out_of_memory,
        is_cudnn_snafu,
        is_oom_error,
        is_out_of_cpu_memory,
    )

    assert is_cuda_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_cudnn_snafu(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if ..."))
    assert is_out_of_cpu_memory(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried"))
    assert is_oom_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB"))
    assert not is_oom_error(RuntimeError("CUDA out of memory", "two arguments"))  # as Lightning: one message only
    assert not is_oom_error(ValueError("CUDA out of memory")) and not is_oom_error(RuntimeError("shape mismatch"))
    garbage_collection_cuda()  # no CUDA here: collects and returns


def test_the_stand_in_optimizer_of_a_module_without_optimizers_is_at_lightnings_path():
    # stable-pretraining tests `isinstance(opt, lightning.pytorch.core.optimizer._MockOptimizer)` every step
    import ember.core.optimizer

    seen = []

    class NoOptimizer(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            seen.append(isinstance(self.optimizers(), ember.core.optimizer._MockOptimizer))

        def configure_optimizers(self):
            return None

    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.warns(UserWarning, match="no optimizer"):
        trainer.fit(NoOptimizer(), DataLoader(TensorDataset(torch.zeros(4, 2)), batch_size=2))
    assert seen == [True, True]
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        ember.core.optimizer.missing  # noqa: B018


def test_is_shared_filesystem_in_one_process_and_for_a_missing_path(tmp_path):
    from ember.utilities import is_shared_filesystem

    trainer = pl.Trainer(logger=False, enable_checkpointing=False)
    assert is_shared_filesystem(trainer.strategy) is True  # one process: nothing to share with
    assert is_shared_filesystem(trainer.strategy, tmp_path / "not-there") is True
    assert not any(tmp_path.iterdir())


def test_find_usable_cuda_devices_takes_the_gpus_that_accept_a_tensor(monkeypatch):
    from ember.accelerators import find_usable_cuda_devices

    assert find_usable_cuda_devices(0) == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="find 1 devices but there are no visible CUDA devices"):
        find_usable_cuda_devices(1)

    # three GPUs, the second held by another process in exclusive mode
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    tried = []
    real_tensor = torch.tensor

    def tensor(data, device=None, **kwargs):
        if device is not None and device.type == "cuda":
            tried.append(device.index)
            if device.index == 1:
                raise RuntimeError("CUDA error: all CUDA-capable devices are busy or unavailable")
            return real_tensor(data)
        return real_tensor(data, device=device, **kwargs)

    monkeypatch.setattr(torch, "tensor", tensor)
    assert find_usable_cuda_devices() == [0, 2]
    tried.clear()
    assert find_usable_cuda_devices(1) == [0] and tried == [0]  # stops once it has enough
    with pytest.raises(ValueError, match="find 4 devices but this machine only has 3 GPUs"):
        find_usable_cuda_devices(4)
    with pytest.raises(RuntimeError, match=r"only 2 are currently available. The devices \[1\] are occupied"):
        find_usable_cuda_devices(3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_find_usable_cuda_devices_on_this_machines_gpus():
    from ember.accelerators import find_usable_cuda_devices

    found = find_usable_cuda_devices()
    assert found == list(range(torch.cuda.device_count()))
    assert find_usable_cuda_devices(1) == found[:1]


def test_the_metric_type_alias_names_what_self_log_accepts():
    import typing

    from torchmetrics import Metric

    from ember.utilities.types import _METRIC

    assert set(typing.get_args(_METRIC)) == {Metric, torch.Tensor, int, float}


def test_move_data_to_device_moves_any_object_with_a_to_method_at_any_depth():
    """As Lightning's: a PyG `Data` or a `BatchEncoding` inside a dict is moved by its own `.to`, and a `.to` that
    moves in place and returns nothing keeps the object."""
    import collections.abc

    from ember.utilities import move_data_to_device

    class Graph:
        def __init__(self, where="nowhere"):
            self.where = where

        def to(self, device, **kwargs):
            return Graph(str(device))

    class InPlace:
        where = "nowhere"

        def to(self, device, **kwargs):
            self.where = str(device)  # returns None

    class Pair(collections.abc.Sequence):
        def __init__(self, items):
            self.items = list(items)

        def __getitem__(self, index):
            return self.items[index]

        def __len__(self):
            return len(self.items)

    batch = {"graph": Graph(), "x": torch.zeros(1), "many": [Graph(), (Graph(),)], "pair": Pair([Graph()])}
    moved = move_data_to_device(batch, "cpu")
    assert moved["graph"].where == moved["many"][0].where == moved["many"][1][0].where == "cpu"
    assert type(moved["pair"]) is Pair and moved["pair"][0].where == "cpu"
    in_place = InPlace()
    assert move_data_to_device(in_place, "cpu") is in_place and in_place.where == "cpu"
    assert move_data_to_device([in_place], "cpu")[0] is in_place


def test_the_epsilon_constants_lightning_defines_in_utilities():
    from ember.utilities import FLOAT16_EPSILON, FLOAT32_EPSILON, FLOAT64_EPSILON

    assert tuple(torch.finfo(dtype).eps for dtype in (torch.float16, torch.float32, torch.float64)) == (
        FLOAT16_EPSILON,
        FLOAT32_EPSILON,
        FLOAT64_EPSILON,
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_grad_norms_total_is_in_the_gradients_dtype_as_in_lightning(dtype):
    layer = torch.nn.Linear(30, 20).to(dtype)
    layer(torch.randn(4, 30, dtype=dtype)).sum().mul(100).backward()
    norms = grad_norm(layer, 2)
    total = norms["grad_2.0_norm_total"]
    assert total.dtype == dtype
    parts = [norms["grad_2.0_norm/weight"], norms["grad_2.0_norm/bias"]]
    assert torch.equal(total, torch.tensor(parts).norm(2))  # Lightning's computation


def test_a_dataclass_batch_is_copied_without_running_its_init_again():
    import dataclasses

    from ember.utilities import move_data_to_device

    made = []

    @dataclasses.dataclass
    class Batch:
        x: torch.Tensor
        size: int = dataclasses.field(init=False)

        def __post_init__(self):
            made.append(1)
            self.size = len(self.x)

    batch = Batch(torch.zeros(3))
    moved = move_data_to_device(batch, "cpu")
    assert made == [1] and moved is not batch and moved.size == 3  # as Lightning: no second `__post_init__`
    frozen = dataclasses.make_dataclass("Frozen", [("x", torch.Tensor)], frozen=True)(torch.ones(2))
    assert torch.equal(move_data_to_device(frozen, "cpu").x, torch.ones(2))
