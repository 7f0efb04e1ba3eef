"""``save_hyperparameters``: what ends up in ``hparams``, ``hparams_initial`` and the loggers."""

from __future__ import annotations

import collections
import enum
import json
import pathlib
import sys
import warnings
from argparse import Namespace
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer
from torch import nn

import ember
from ember.core.saving import save_hparams_to_yaml
from ember.utilities import AttributeDict


class RecordingLogger(ember.loggers.Logger):
    """Keeps every ``log_hyperparams`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.hparams_calls: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        self.hparams_calls.append(dict(params))


class AllArgs(CoreModel):
    def __init__(self, lr: float = 0.1, hidden: int = 8, name: str = "m"):
        super().__init__(lr=lr)
        self.save_hyperparameters()


def test_all_init_args_are_saved():
    model = AllArgs(lr=0.5, name="x")
    assert model.hparams == {"lr": 0.5, "hidden": 8, "name": "x"}
    assert isinstance(model.hparams, AttributeDict)
    assert model.hparams.lr == 0.5
    assert model._hparams_name == "kwargs"


def test_named_args_only_and_a_second_call_adds():
    class Named(CoreModel):
        def __init__(self, a=1, b=2, c=3):
            super().__init__()
            self.save_hyperparameters("a")
            self.save_hyperparameters("c")

    assert Named().hparams == {"a": 1, "c": 3}


def test_unknown_name_is_refused_with_the_known_names():
    class Unknown(CoreModel):
        def __init__(self, a=1):
            super().__init__()
            self.save_hyperparameters("zzz")

    with pytest.raises(KeyError, match=r"zzz.*\['a'\]"):
        Unknown()


def test_ignore_a_name_or_a_list():
    class Ignoring(CoreModel):
        def __init__(self, a=1, b=2, c=3, ignore: Any = "b"):
            super().__init__()
            self.save_hyperparameters(ignore=ignore)

    assert Ignoring().hparams == {"a": 1, "c": 3, "ignore": "b"}
    assert Ignoring(ignore=["a", "c", "ignore"]).hparams == {"b": 2}
    assert Ignoring(ignore=("a", "b")).hparams == {"c": 3, "ignore": ("a", "b")}
    # (a number failed with "'int' object is not iterable")
    with pytest.raises(
        TypeError, match=r"^`save_hyperparameters\(ignore=5\)` must be the name of an `__init__` argument"
    ):
        Ignoring(ignore=5)


def test_a_subclass_ignore_drops_what_the_base_class_saved():
    class Base(ember.LightningModule):
        def __init__(self, a, b, c):
            super().__init__()
            self.save_hyperparameters(ignore="a")

    class Child(Base):
        def __init__(self, a, b, c):
            super().__init__(a, b, c)
            self.save_hyperparameters(ignore=["b"])

    child = Child(1, 2, 3)
    assert child.hparams == {"a": 1, "c": 3}  # Lightning 2.6.6 gives the same
    assert child.hparams_initial == {"a": 1, "c": 3}


def test_varargs_are_dropped_and_var_kwargs_are_flattened():
    class Kw(CoreModel):
        def __init__(self, a, *args, b=3, **kwargs):
            super().__init__()
            self.save_hyperparameters()

    assert Kw(1, 7, 8, c=4).hparams == {"a": 1, "b": 3, "c": 4}


def test_parent_and_child_init_args_merge_child_wins():
    class Parent(CoreModel):
        def __init__(self, a=1, shared="parent"):
            super().__init__()
            self.save_hyperparameters()

    class Child(Parent):
        def __init__(self, b=2, shared="child"):
            super().__init__(a=10, shared=shared)

    assert Child().hparams == {"a": 10, "b": 2, "shared": "child"}


@pytest.mark.parametrize("config", [{"x": 1, "y": [1, 2]}, Namespace(x=1, y=[1, 2])])
def test_a_dict_or_namespace_argument_becomes_the_hparams(config):
    class FromConfig(CoreModel):
        def __init__(self, cfg, other=5):
            super().__init__()
            self.save_hyperparameters(cfg)

    model = FromConfig(config)
    assert model.hparams == {"x": 1, "y": [1, 2]}
    assert model._hparams_name == "cfg"


@pytest.mark.parametrize("config", [None, {}, 0])
def test_an_empty_or_none_config_saves_nothing_as_in_lightning(config):
    class OptionalConfig(CoreModel):
        def __init__(self, config=None):
            super().__init__()
            self.save_hyperparameters(config)

    model = OptionalConfig(config)
    assert model.hparams == {} and model.hparams_initial == {}
    assert getattr(model, "_hparams_name", None) is None


def test_a_dataclass_module_saves_its_fields():
    @dataclass(eq=False)
    class DataModel(ember.LightningModule):
        mandatory: int
        optional: str = "optional"
        ignore_me: bool = False

        def __post_init__(self):
            super().__init__()
            self.save_hyperparameters(ignore=("ignore_me",))

    assert DataModel(33, optional="fruit").hparams == {"mandatory": 33, "optional": "fruit"}


def test_a_dataclass_argument_becomes_the_hparams():
    @dataclass
    class Config:
        lr: float = 0.1
        depth: int = 2

    class FromDataclass(CoreModel):
        def __init__(self, config: Config):
            super().__init__()
            self.save_hyperparameters(config)

    assert FromDataclass(Config(lr=0.3)).hparams == {"lr": 0.3, "depth": 2}


def test_primitive_single_argument_is_refused():
    class Primitive(CoreModel):
        def __init__(self, a=1):
            super().__init__()
            self.save_hyperparameters(a)

    with pytest.raises(ValueError, match="Primitives .* are not allowed"):
        Primitive()


def test_a_list_argument_is_refused_with_lightnings_message_first():
    class Listed(CoreModel):
        def __init__(self, a=1, c=2):
            super().__init__()
            self.save_hyperparameters(["a", "c"])

    with pytest.raises(ValueError, match=r"^Unsupported config type of <class 'list'>\. Pass a dict, Namespace or"):
        Listed()


def test_hparams_initial_is_a_frozen_copy():
    model = AllArgs()
    model.hparams.lr = 99.0
    model.hparams["extra"] = 1
    assert model.hparams_initial == {"lr": 0.1, "hidden": 8, "name": "m"}
    model.hparams_initial["lr"] = 5.0  # a fresh copy each time
    assert model.hparams_initial.lr == 0.1


def test_module_values_warn_and_can_be_ignored():
    class WithNet(CoreModel):
        def __init__(self, net: nn.Module, ignore=()):
            super().__init__()
            self.save_hyperparameters(ignore=list(ignore))

    with pytest.warns(UserWarning, match=r"Attribute 'net' is an instance of `nn.Module`.*ignore=\['net'\]"):
        WithNet(nn.Linear(1, 1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert WithNet(nn.Linear(1, 1), ignore=["net", "ignore"]).hparams == {}


class Custom:
    """Not plain data: ``torch.load(weights_only=True)`` refuses it."""

    def __init__(self, value: int = 1) -> None:
        self.value = value


def test_values_that_would_not_load_safely_warn_at_save_time():
    class WithCustom(CoreModel):
        def __init__(self, cfg=None, fine=(1, "a", None, 2.0, {"k": [True]})):
            super().__init__()
            self.save_hyperparameters()

    with pytest.warns(UserWarning, match=r"weights_only=True.*cfg"):
        WithCustom(Custom())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain data and tensors: no warning
        WithCustom(cfg=torch.tensor([1.0]))


def test_hparams_go_to_the_logger_unless_logger_false():
    class Quiet(CoreModel):
        def __init__(self, lr=0.2, send=True):
            super().__init__(lr=lr)
            self.save_hyperparameters(logger=send)

    for send, expected in ((True, [{"lr": 0.2, "send": True}]), (False, [])):
        logger = RecordingLogger()
        trainer = quiet_trainer(max_steps=1, logger=logger)
        trainer.fit(Quiet(send=send), loader(n=4))
        assert logger.hparams_calls == expected


def test_module_and_datamodule_hparams_are_merged_for_the_logger():
    class DM(ember.LightningDataModule):
        def __init__(self, batch_size=4, lr=0.2):
            super().__init__()
            self.save_hyperparameters()

        def train_dataloader(self):
            return loader(n=4, batch_size=self.hparams.batch_size)

    class M(CoreModel):
        def __init__(self, lr=0.2):
            super().__init__(lr=lr)
            self.save_hyperparameters()

    logger = RecordingLogger()
    quiet_trainer(max_steps=1, logger=logger).fit(M(), datamodule=DM())
    assert logger.hparams_calls == [{"lr": 0.2, "batch_size": 4}]

    with pytest.raises(RuntimeError, match=r"\['lr'\].*different values"):
        quiet_trainer(max_steps=1, logger=RecordingLogger()).fit(M(lr=0.3), datamodule=DM())


def test_no_save_hyperparameters_means_empty_hparams_and_no_logger_call():
    logger = RecordingLogger()
    quiet_trainer(max_steps=1, logger=logger).fit(CoreModel(), loader(n=4))
    assert logger.hparams_calls == []


def test_hyperparameters_all_ignored_are_still_logged_as_an_empty_dict(tmp_path):
    class OnlyModules(CoreModel):
        def __init__(self, net=None):
            super().__init__()
            self.save_hyperparameters(ignore=["net"])

    logger = RecordingLogger()
    quiet_trainer(max_steps=1, logger=logger).fit(OnlyModules(nn.Linear(1, 1)), loader(n=4))
    assert logger.hparams_calls == [{}]  # as in Lightning: the module asked for its hyperparameters to be logged
    csv = ember.loggers.CSVLogger(tmp_path)
    quiet_trainer(max_steps=1, logger=csv).fit(OnlyModules(nn.Linear(1, 1)), loader(n=4))
    assert (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text() == "{}\n"


def test_checkpoint_stores_current_hparams_and_the_logger_the_initial_ones(tmp_path):
    class Changing(CoreModel):
        def __init__(self, lr=0.1):
            super().__init__(lr=lr)
            self.save_hyperparameters()

        def on_train_start(self):
            self.hparams.lr = 0.5

    logger = RecordingLogger()
    trainer = quiet_trainer(max_steps=1, logger=logger)
    trainer.fit(Changing(), loader(n=4))
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    assert torch.load(tmp_path / "c.ckpt", weights_only=True)["hyper_parameters"] == {"lr": 0.5}
    assert logger.hparams_calls == [{"lr": 0.1}]


def test_values_that_cannot_be_pickled_are_dropped_when_a_run_starts(tmp_path):
    class Unpicklable(CoreModel):
        def __init__(self, fn=lambda x: x, lr=0.1):
            super().__init__()
            self.save_hyperparameters()

    model = Unpicklable()
    trainer = ember.Trainer(
        max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    with pytest.warns(UserWarning, match="Attribute 'fn' removed from hparams because it cannot be pickled"):
        trainer.fit(model, loader())
    assert dict(model.hparams) == {"lr": 0.1}


def test_a_dictconfig_stays_a_dictconfig_through_a_checkpoint_that_loads_safely(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")

    class Configured(CoreModel):
        def __init__(self, cfg):
            super().__init__()
            self.save_hyperparameters(cfg)

    class ConfiguredData(ember.LightningDataModule):
        def __init__(self, cfg):
            super().__init__()
            self.save_hyperparameters(cfg)

        def train_dataloader(self):
            return loader(n=4)

    cfg = omegaconf.OmegaConf.create({"width": 8, "layers": [4, {"act": "relu"}], "double": "${width}"})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stored as plain data: nothing to warn about
        model, data = Configured(cfg), ConfiguredData(cfg)
    assert isinstance(model.hparams, omegaconf.DictConfig)
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(tmp_path / "c.ckpt")

    raw = torch.load(tmp_path / "c.ckpt", weights_only=True)
    assert raw["hyper_parameters"]["layers"] == [4, {"act": "relu"}]
    for loaded in (
        Configured.load_from_checkpoint(tmp_path / "c.ckpt"),
        ConfiguredData.load_from_checkpoint(tmp_path / "c.ckpt"),
    ):
        assert isinstance(loaded.hparams, omegaconf.DictConfig)
        assert loaded.hparams.layers[1].act == "relu"
        assert loaded.hparams.double == 8  # the interpolation is kept, not resolved at save time


def test_a_run_that_does_not_use_omegaconf_does_not_import_it_to_write_hparams_yaml(tmp_path):
    # omegaconf is installed here (a dev extra), as in many environments: writing hparams.yaml must not
    # cost its import; the file is still Lightning's, which OmegaConf writes with the keys in their order
    program = (
        "import sys, torch, ember\n"
        "from tests.helpers.core_models import CoreModel, loader\n"
        "class Model(CoreModel):\n"
        "    def __init__(self, zeta=1, alpha=0.5):\n"
        "        super().__init__()\n"
        "        self.save_hyperparameters()\n"
        "logger = ember.loggers.CSVLogger(sys.argv[1], name='run')\n"
        "ember.Trainer(max_epochs=1, logger=logger, enable_progress_bar=False, enable_model_summary=False,\n"
        "              enable_checkpointing=False).fit(Model(), loader())\n"
        "print('omegaconf' in sys.modules)\n"
        "print(open(logger.log_dir + '/hparams.yaml').read(), end='')\n"
    )
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["False", "zeta: 1", "alpha: 0.5"]


_TRICKY_TEXT = {
    "no": "n", "yes": "Y", "on": "off", "true": "TRUE", "exp": "1e3", "int": "-12", "float": "0.5", "inf": "inf",
    "nan": "nan", "plain": "x", "spaced": "a b", "date": "2024-01-01", "nested": {"k": ["y", "1", "z"]}, "1": "one",
}  # fmt: skip


def test_text_that_reads_as_a_bool_or_a_number_is_quoted_as_omegaconf_writes_it(tmp_path):
    # written without importing omegaconf (installed here), the file is OmegaConf's text: `'n'` and `'1e3'` quoted,
    # so OmegaConf reads back strings (unquoted, it took '1e3' for 1000.0)
    omegaconf = pytest.importorskip("omegaconf")
    import subprocess
    import sys

    program = (
        "import sys, json\n"
        "from ember.core.saving import save_hparams_to_yaml\n"
        "save_hparams_to_yaml(sys.argv[1], json.loads(sys.argv[2]))\n"
        "print('omegaconf' in sys.modules)\n"
    )
    path = tmp_path / "hparams.yaml"
    proc = subprocess.run(
        [sys.executable, "-c", program, str(path), json.dumps(_TRICKY_TEXT)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert path.read_text() == omegaconf.OmegaConf.to_yaml(omegaconf.OmegaConf.create(_TRICKY_TEXT))
    assert omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.load(path)) == _TRICKY_TEXT


def test_hparams_that_omegaconf_cannot_write_are_sorted_by_key_as_lightning_writes_them(tmp_path):
    # Lightning falls back to `yaml.dump`, which sorts, for values OmegaConf refuses (a tensor here)
    save_hparams_to_yaml(tmp_path / "plain.yaml", {"zeta": 1, "alpha": [0.5, "x"]}, use_omegaconf=True)
    assert (tmp_path / "plain.yaml").read_text() == "zeta: 1\nalpha:\n- 0.5\n- x\n"
    save_hparams_to_yaml(tmp_path / "tensor.yaml", {"zeta": 1, "alpha": torch.tensor(0.5)}, use_omegaconf=True)
    assert (tmp_path / "tensor.yaml").read_text() == "alpha: 0.5\nzeta: 1\n"
    save_hparams_to_yaml(tmp_path / "asked.yaml", {"zeta": 1, "alpha": 0.5}, use_omegaconf=False)
    assert (tmp_path / "asked.yaml").read_text() == "alpha: 0.5\nzeta: 1\n"


class _SavesAll(CoreModel):
    def __init__(self, lr: float = 0.1, depth: int = 2) -> None:
        super().__init__(lr)
        self.save_hyperparameters()


class _SavesItsConfig(CoreModel):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.save_hyperparameters(config)


class _SavesAnUnnamedDict(CoreModel):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__(lr)
        self.save_hyperparameters({"other": 3})


class _SavesOneName(CoreModel):
    def __init__(self, lr: float = 0.1, depth: int = 2) -> None:
        super().__init__(lr)
        self.save_hyperparameters("lr")


class _AssignsHparams(CoreModel):
    def __init__(self) -> None:
        super().__init__()
        self.hparams.width = 5


@pytest.mark.parametrize(
    ("make", "name", "saved"),
    [  # observed on Lightning 2.6.6 with the same modules
        (lambda: _SavesAll(), "kwargs", {"lr": 0.1, "depth": 2}),
        (lambda: _SavesItsConfig({"lr": 0.2}), "config", {"lr": 0.2}),
        (lambda: _SavesAnUnnamedDict(), None, {"other": 3}),
        (lambda: _SavesOneName(), "kwargs", {"lr": 0.1}),
        (lambda: _AssignsHparams(), "<absent>", {"width": 5}),  # no save_hyperparameters: no name
    ],
)
def test_the_checkpoint_records_the_hparams_name_lightning_records(make, name, saved, tmp_path):
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(make(), loader())
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=True)
    assert checkpoint.get("hparams_name", "<absent>") == name
    assert dict(checkpoint["hyper_parameters"]) == saved


def test_a_listconfig_of_objects_in_hparams_writes_a_yaml_that_loads_safely(tmp_path):
    # what `hydra.utils.instantiate` gives for a list of `_target_` entries (schnetpack's `task.outputs`);
    # Lightning fails in `fit` here with omegaconf's UnsupportedValueType
    omegaconf = pytest.importorskip("omegaconf")
    from ember.loggers import CSVLogger

    class WithOutputs(CoreModel):
        def __init__(self, outputs=None):
            super().__init__()
            self.save_hyperparameters()

    outputs = omegaconf.OmegaConf.create([], flags={"allow_objects": True})
    outputs.append(torch.nn.MSELoss())
    with pytest.warns(UserWarning):
        model = WithOutputs(outputs)
    logger = CSVLogger(tmp_path)
    with pytest.warns(UserWarning, match="Skipping 'outputs' parameter because it is not possible to safely dump"):
        quiet_trainer(max_steps=1, logger=logger).fit(model, loader(n=4))
    import yaml

    with open(f"{logger.log_dir}/hparams.yaml") as file:
        written = yaml.safe_load(file)
    assert written == {"outputs": ["MSELoss()"]}


def test_subclasses_of_plain_types_are_written_as_their_plain_values(tmp_path):
    """A learning rate from ``np.logspace`` is a ``np.float64``, a float subclass that ``yaml.safe_dump`` refuses:
    the file (and the ``fit`` that writes it) must not fail on it, nor on enums built on ``str`` or ``int``."""
    import enum

    import numpy as np
    import yaml

    class Mode(str, enum.Enum):
        TRAIN = "train"

    class Level(enum.IntEnum):
        ONE = 1

    class Ratio(float):
        pass

    hparams = {
        "lr": np.logspace(-3, -1, 3)[1],
        "mode": Mode.TRAIN,
        "level": Level.ONE,
        "name": np.str_("s"),
        "ratio": Ratio(1.5),
        "by_mode": {Mode.TRAIN: np.int64(3)},
    }
    for use_omegaconf in (True, False):
        path = tmp_path / f"hparams_{use_omegaconf}.yaml"
        save_hparams_to_yaml(path, hparams, use_omegaconf=use_omegaconf)
        assert yaml.safe_load(path.read_text()) == {
            "lr": 0.01,
            "mode": "TRAIN",
            "level": "ONE",
            "name": "s",
            "ratio": 1.5,
            "by_mode": {"TRAIN": 3},
        }


def test_a_dataclass_hyperparameter_is_written_as_a_mapping_of_its_fields(tmp_path, monkeypatch):
    import sys

    import yaml

    pytest.importorskip("omegaconf")
    monkeypatch.delitem(sys.modules, "omegaconf", raising=False)  # a program that does not use it: Ember's writer

    @dataclass
    class Cfg:
        hidden: int = 8
        act: str = "relu"

    path = tmp_path / "hparams.yaml"
    save_hparams_to_yaml(path, {"lr": 0.1, "cfg": Cfg()})
    assert yaml.safe_load(path.read_text()) == {"lr": 0.1, "cfg": {"hidden": 8, "act": "relu"}}
    # in the order given, as OmegaConf writes it for Lightning (where it is installed, as here)
    assert path.read_text() == "lr: 0.1\ncfg:\n  hidden: 8\n  act: relu\n"


class _Ratio(float):
    pass


class _Color(enum.Enum):
    RED = 1


@dataclass
class _Counts:
    n: int = 1


# observed on Lightning 2.6.6 with omegaconf 2.3 installed: True where the keys stay in their order (OmegaConf
# writes every value), False where they are sorted (OmegaConf refuses one, and `yaml.dump` writes the file)
_KEYS_IN_ORDER = {
    "Path": (pathlib.Path("data"), True),
    "bytes": (b"ab", True),
    "tuple": ((1, "x"), True),
    "an Enum": (_Color.RED, True),
    "an Enum key": ({_Color.RED: 1}, True),
    "a bytes key": ({b"k": 1}, True),
    "the int class": (int, True),
    "PurePath": (pathlib.PurePosixPath("data"), False),
    "AttributeDict": (AttributeDict(b=1), False),
    "OrderedDict": (collections.OrderedDict(b=1), False),
    "defaultdict": (collections.defaultdict(int, b=1), False),
    "an OrderedDict in a list": ([collections.OrderedDict(b=1)], False),
    "a float subclass": (_Ratio(1.5), False),
    "a dataclass field of the wrong type": (_Counts(n="a"), False),
    "a class": (nn.Linear, False),
    "a set": ({1}, False),
}


def _top_level_keys(path):
    return [line.split(":")[0] for line in path.read_text().splitlines() if line[:1] not in ("", " ", "-")]


@pytest.mark.parametrize("omegaconf_imported", [False, True], ids=["installed", "imported"])
@pytest.mark.parametrize("name", list(_KEYS_IN_ORDER))
def test_hparams_yaml_keeps_the_keys_in_order_where_omegaconf_writes_every_value(
    tmp_path, monkeypatch, name, omegaconf_imported
):
    pytest.importorskip("omegaconf")
    if not omegaconf_imported:
        monkeypatch.delitem(sys.modules, "omegaconf")  # a program that does not use it
    value, in_order = _KEYS_IN_ORDER[name]
    path = tmp_path / "hparams.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values written as their text warn
        save_hparams_to_yaml(path, {"zeta": 1, "alpha": value, "mid": 2})
    assert _top_level_keys(path) == (["zeta", "alpha", "mid"] if in_order else ["alpha", "mid", "zeta"])


def test_hparams_yaml_keys_are_sorted_without_omegaconf(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "omegaconf", None)  # not installed: Lightning's `yaml.dump` sorts them
    for name, (value, _) in _KEYS_IN_ORDER.items():
        path = tmp_path / "hparams.yaml"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            save_hparams_to_yaml(path, {"zeta": 1, "alpha": value, "mid": 2})
        assert _top_level_keys(path) == ["alpha", "mid", "zeta"], name
