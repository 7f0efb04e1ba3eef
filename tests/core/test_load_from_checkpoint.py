"""``LightningModule.load_from_checkpoint``: rebuild from hparams, load weights, safely."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from tests.helpers.core_models import CoreModel, loader, quiet_trainer
from torch import nn

import ember
from ember.checkpoint import CheckpointLoadError


class Saved(CoreModel):
    def __init__(self, lr: float = 0.1, width: int = 1, tag: str = "a"):
        super().__init__(lr=lr)
        self.save_hyperparameters()
        self.layer = nn.Linear(4, width)
        self.loaded_hooks: list[str] = []

    def configure_model(self):
        self.loaded_hooks.append("configure_model")

    def on_load_checkpoint(self, checkpoint):
        self.loaded_hooks.append(f"on_load_checkpoint:{checkpoint['epoch']}")


def _trained_checkpoint(
    tmp_path: Path, model: ember.LightningModule | None = None
) -> tuple[Path, ember.LightningModule]:
    model = model or Saved(lr=0.05, tag="b")
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer.fit(model, loader(n=8))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, model


def test_round_trip_rebuilds_from_hparams_and_loads_weights(tmp_path):
    path, trained = _trained_checkpoint(tmp_path)
    loaded = Saved.load_from_checkpoint(path)
    assert loaded.hparams == {"lr": 0.05, "width": 1, "tag": "b"}
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in trained.state_dict().items())
    assert loaded.training  # not switched to eval mode, like Lightning
    assert loaded.loaded_hooks == ["configure_model", "on_load_checkpoint:1"]


def test_a_module_that_sets_configure_model_to_none_loads(tmp_path):
    """`configure_model = None` (how Lightning's own tests say a hook is not there) is not overridden: loading
    calls it only where it is, as Lightning does; Ember called it always and failed with "'NoneType' object is
    not callable"."""

    class NoConfigure(CoreModel):
        configure_model = None

    path, trained = _trained_checkpoint(tmp_path, NoConfigure())
    loaded = NoConfigure.load_from_checkpoint(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in trained.state_dict().items())


def test_kwargs_override_saved_hparams(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    loaded = Saved.load_from_checkpoint(path, lr=0.5, tag="c")
    assert loaded.hparams == {"lr": 0.5, "width": 1, "tag": "c"}
    assert loaded.lr == 0.5


class SeesItsHparamsWhenLoaded(Saved):
    def on_load_checkpoint(self, checkpoint):
        self.loaded_hooks.append(dict(checkpoint["hyper_parameters"]))


class SavesNoHparams(CoreModel):
    def on_load_checkpoint(self, checkpoint):
        self.seen = dict(checkpoint["hyper_parameters"])


def test_on_load_checkpoint_sees_the_hparams_the_module_is_built_with(tmp_path):
    # as Lightning: the overrides (and an hparams file's values) are merged into the checkpoint the hook gets,
    # and a checkpoint of a module that saved none holds an empty dict there
    path, _ = _trained_checkpoint(tmp_path, SeesItsHparamsWhenLoaded(lr=0.05, tag="b"))
    loaded = SeesItsHparamsWhenLoaded.load_from_checkpoint(path, lr=0.5)
    assert loaded.loaded_hooks[-1] == {"lr": 0.5, "width": 1, "tag": "b"}
    hparams_file = tmp_path / "hparams.yaml"
    hparams_file.write_text(yaml.safe_dump({"lr": 0.7, "tag": "yaml"}))
    from_file = SeesItsHparamsWhenLoaded.load_from_checkpoint(path, hparams_file=hparams_file, width=1)
    assert from_file.loaded_hooks[-1] == {"lr": 0.7, "tag": "yaml", "width": 1}
    plain_path, _ = _trained_checkpoint(tmp_path / "plain", SavesNoHparams())
    assert SavesNoHparams.load_from_checkpoint(plain_path).seen == {}
    assert SavesNoHparams.load_from_checkpoint(plain_path, lr=0.3).seen == {"lr": 0.3}


def test_kwargs_not_in_init_are_dropped(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    assert "unknown" not in Saved.load_from_checkpoint(path, unknown=3).hparams


class _Unsaved(CoreModel):
    """Keeps no hyperparameters, or (``ignore``) all but the backbone, which a checkpoint then lacks."""

    def __init__(self, backbone: nn.Module, width: int, ignore: bool = False):
        super().__init__()
        if ignore:
            self.save_hyperparameters(ignore=["backbone"])
        self.layer = nn.Linear(4, width)


@pytest.mark.parametrize(
    ("ignore", "held"), [(False, "holds no hyperparameters"), (True, "holds only `width`, `ignore`")]
)
def test_init_arguments_the_checkpoint_lacks_are_named_with_the_two_ways_to_give_them(tmp_path, ignore, held):
    path, _ = _trained_checkpoint(tmp_path, _Unsaved(nn.Identity(), width=1, ignore=ignore))
    missing = "`backbone`" if ignore else "`backbone`, `width`"
    example = "backbone=..." if ignore else "backbone=..., width=..."
    message = (
        f"`_Unsaved.load_from_checkpoint` cannot build the object: `__init__` needs {missing}, and the checkpoint {held}."
        f" Pass them: `_Unsaved.load_from_checkpoint(path, {example})`; or call `self.save_hyperparameters()`"
    )
    with pytest.raises(TypeError, match=re.escape(message)) as caught:
        _Unsaved.load_from_checkpoint(path)
    assert "missing" in str(caught.value.__cause__)
    if ignore:
        assert _Unsaved.load_from_checkpoint(path, backbone=nn.Identity()).layer.out_features == 1


def test_dict_hparams_are_passed_as_their_argument(tmp_path):
    class FromConfig(CoreModel):
        def __init__(self, cfg):
            super().__init__(lr=cfg["lr"])
            self.save_hyperparameters(cfg)

    path, _ = _trained_checkpoint(tmp_path, FromConfig({"lr": 0.2, "name": "n"}))
    assert torch.load(path, weights_only=True)["hparams_name"] == "cfg"
    loaded = FromConfig.load_from_checkpoint(path)
    assert loaded.hparams == {"lr": 0.2, "name": "n"} and loaded.lr == 0.2


def test_hparams_file_replaces_saved_hparams(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    hparams_file = tmp_path / "hparams.yaml"
    hparams_file.write_text(yaml.safe_dump({"lr": 0.7, "tag": "yaml"}))
    loaded = Saved.load_from_checkpoint(path, hparams_file=hparams_file)
    assert loaded.hparams == {"lr": 0.7, "width": 1, "tag": "yaml"}
    # a missing file: Lightning's warning, and no saved hyperparameters (the defaults build the model)
    with pytest.warns(RuntimeWarning, match="Missing Tags: .*missing.yaml"):  # as in Lightning
        defaults = Saved.load_from_checkpoint(path, hparams_file=tmp_path / "missing.yaml")
    assert defaults.hparams == {"lr": 0.1, "width": 1, "tag": "a"}


def test_map_location_is_applied(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    locations = []

    def to_cpu(storage, location):
        locations.append(location)
        return storage

    loaded = Saved.load_from_checkpoint(path, map_location=to_cpu)
    assert locations and set(locations) == {"cpu"}
    assert loaded.device == torch.device("cpu")
    assert Saved.load_from_checkpoint(path, map_location="cpu").device.type == "cpu"
    assert Saved.load_from_checkpoint(path, map_location={"cpu": "cpu"}).device.type == "cpu"


def test_an_empty_state_dict_warns(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = {}
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match="contains no parameters"):
        Saved.load_from_checkpoint(path, strict=False)


def test_state_dict_that_does_not_fit_lists_the_keys(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["extra.weight"] = torch.zeros(1)
    del checkpoint["state_dict"]["layer.bias"]
    torch.save(checkpoint, path)
    with pytest.raises(RuntimeError) as error:
        Saved.load_from_checkpoint(path)
    # torch's wording, then the fix
    assert str(error.value).startswith("Error(s) in loading state_dict for Saved:")
    assert 'Missing key(s) in state_dict: "layer.bias".' in str(error.value)
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in str(error.value)
    assert "strict=False" in str(error.value)
    checkpoint["state_dict"]["extra.bias"] = torch.zeros(1)
    torch.save(checkpoint, path)
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "extra.weight", "extra.bias"'):
        Saved.load_from_checkpoint(path)  # in the checkpoint's order, as torch lists them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = Saved.load_from_checkpoint(path, strict=False)
    assert torch.equal(loaded.layer.weight, checkpoint["state_dict"]["layer.weight"])
    # Lightning's two warnings, word for word
    assert [str(w.message) for w in caught if "Found keys" in str(w.message)] == [
        "Found keys that are in the model state dict but not in the checkpoint: ['layer.bias']",
        "Found keys that are not in the model state dict but in the checkpoint: ['extra.weight', 'extra.bias']",
    ]
    del checkpoint["state_dict"]["extra.weight"], checkpoint["state_dict"]["extra.bias"]
    torch.save(checkpoint, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Saved.load_from_checkpoint(path, strict=False)
    assert [str(w.message) for w in caught if "Found keys" in str(w.message)] == [
        "Found keys that are in the model state dict but not in the checkpoint: ['layer.bias']"
    ]  # only the kind of key there is


def test_strict_loading_property_is_the_default(tmp_path):
    class Lenient(Saved):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.strict_loading = False
            self.more = nn.Linear(1, 1)

    path, _ = _trained_checkpoint(tmp_path)
    with pytest.warns(UserWarning, match="more.weight"):
        Lenient.load_from_checkpoint(path)


def test_different_shape_names_the_problem(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match="size mismatch"):
        Saved.load_from_checkpoint(path, width=3)


class Exploit:
    """Unpickling this would create a file: proof that code in the checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_whose_pickle_runs_code_does_not_run_it(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    marker = tmp_path / "pwned"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["evil"] = Exploit(marker)
    torch.save(checkpoint, path)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"weights_only=False") as info:
        Saved.load_from_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_a_checkpoint_never_selects_a_class_to_import(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "os.system"
    checkpoint["hyper_parameters"]["_instantiator"] = "os.system"
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match="never selects a class"):
        loaded = Saved.load_from_checkpoint(path)
    assert type(loaded) is Saved


def test_truncated_file_names_the_file(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointLoadError, match=r"model\.ckpt is not a readable checkpoint \(truncated or corrupt\)"
    ) as info:
        Saved.load_from_checkpoint(path)
    assert "weights_only=False" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        Saved.load_from_checkpoint(tmp_path / "nothing.ckpt")


def test_hyperparameters_are_saved_as_plain_data(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)  # would fail on an AttributeDict
    assert type(checkpoint["hyper_parameters"]) is dict
    assert checkpoint["hparams_name"] == "kwargs"


class Config:
    """A custom hyperparameter class: safe loading refuses it."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


class WithCustom(CoreModel):
    def __init__(self, cfg=None):
        super().__init__()
        self.save_hyperparameters()


def _checkpoint_holding_a_config(tmp_path: Path) -> Path:
    """A checkpoint whose hyperparameters hold a ``Config``, which safe loading refuses."""
    with pytest.warns(UserWarning, match=r"cfg \(Config\)"):
        model = WithCustom(cfg=Config(3))
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(model, loader(n=4))
    path = tmp_path / "custom.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_unsafe_hparams_load_with_weights_only_false(tmp_path):
    path = _checkpoint_holding_a_config(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match=r"Config.*weights_only=False"):
        WithCustom.load_from_checkpoint(path)
    assert WithCustom.load_from_checkpoint(path, weights_only=False).hparams.cfg.depth == 3


def test_torchs_switch_for_trusted_files_loads_them_fully(tmp_path, monkeypatch):
    # `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`, torch's own opt-out (schnetpack's checkpoints pickle the model in
    # their hyperparameters): a load that does not choose `weights_only` unpickles fully, with torch's warning
    path = _checkpoint_holding_a_config(tmp_path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected"):
        assert WithCustom.load_from_checkpoint(path).hparams.cfg.depth == 3
    with pytest.raises(pickle.UnpicklingError):  # an explicit choice still holds
        WithCustom.load_from_checkpoint(path, weights_only=True)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0")
    with pytest.raises(pickle.UnpicklingError):
        WithCustom.load_from_checkpoint(path)


def test_load_from_checkpoint_of_an_untrained_save(tmp_path):
    model = Saved(width=2)
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(model, loader(n=4))
    path = tmp_path / "w.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    loaded = Saved.load_from_checkpoint(path)
    assert loaded.layer.out_features == 2
    assert torch.equal(loaded.layer.weight, model.layer.weight)


def test_hparams_yaml_written_by_the_logger_loads(tmp_path):
    class Tupled(Saved):
        def __init__(self, lr: float = 0.1, sizes: tuple = (1, 2), tag: str = "a"):
            super().__init__(lr=lr, tag=tag)

    logger = ember.loggers.CSVLogger(tmp_path)
    trainer = ember.Trainer(
        max_steps=1, logger=logger, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(Tupled(lr=0.3, sizes=(3, 4)), loader(n=4))
    path = tmp_path / "t.ckpt"
    trainer.save_checkpoint(path)
    hparams_file = Path(logger.log_dir) / "hparams.yaml"
    assert hparams_file.exists()
    loaded = Tupled.load_from_checkpoint(path, hparams_file=hparams_file)
    assert loaded.hparams.lr == 0.3 and tuple(loaded.hparams.sizes) == (3, 4)


def test_hparams_yaml_text_that_stands_for_the_checkpoints_value_loads_as_that_value(tmp_path):
    # the logger's hparams.yaml holds a dtype and a class as their text (docs/compat.md): where that text is what
    # the writer makes of the checkpoint's value under the key, `__init__` gets the value, not the text
    class Typed(CoreModel):
        def __init__(self, dtype=torch.float32, act=nn.ReLU, tag="a"):
            super().__init__()
            self.save_hyperparameters()
            self.register_buffer("zero", torch.zeros(1, dtype=dtype))
            self.act = act()

    logger = ember.loggers.CSVLogger(tmp_path)
    trainer = quiet_trainer(max_steps=1, logger=logger)
    with pytest.warns(UserWarning, match="Skipping 'dtype' parameter"):
        trainer.fit(Typed(dtype=torch.float64, act=nn.Tanh, tag="b"), loader(n=4))
    path = tmp_path / "t.ckpt"
    trainer.save_checkpoint(path)
    hparams_file = Path(logger.log_dir) / "hparams.yaml"
    written = yaml.safe_load(hparams_file.read_text())
    assert written == {"dtype": "torch.float64", "act": "torch.nn.modules.activation.Tanh", "tag": "b"}
    hparams_file.write_text(yaml.safe_dump({**written, "tag": "edited"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the class hyperparameter's note on safe loading
        loaded = Typed.load_from_checkpoint(path, hparams_file=hparams_file, weights_only=False)
    assert dict(loaded.hparams) == {"dtype": torch.float64, "act": nn.Tanh, "tag": "edited"}
    assert loaded.zero.dtype == torch.float64 and isinstance(loaded.act, nn.Tanh)


def test_hparams_csv_file(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    csv_file = tmp_path / "tags.csv"
    csv_file.write_text("key,value\nlr,0.25\ntag,csv\n")
    assert Saved.load_from_checkpoint(path, hparams_file=csv_file).hparams == {"lr": 0.25, "width": 1, "tag": "csv"}


def test_hparams_file_with_an_unknown_extension(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)
    (tmp_path / "h.json").write_text("{}")
    with pytest.raises(ValueError, match=r"^.csv, .yml or .yaml is required for `hparams_file`"):
        Saved.load_from_checkpoint(path, hparams_file=tmp_path / "h.json")


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("5\n", "int")])
def test_an_hparams_file_that_holds_no_mapping_says_so(tmp_path, text, kind):
    # a list failed with "cannot convert dictionary update sequence element #0 to a sequence", a number with
    # "'int' object is not iterable"
    path, _ = _trained_checkpoint(tmp_path)
    (tmp_path / "h.yaml").write_text(text)
    with pytest.raises(ValueError, match=rf"h\.yaml holds a {kind}, not names and values: write one `name: value`"):
        Saved.load_from_checkpoint(path, hparams_file=tmp_path / "h.yaml")


def test_overrides_reach_init_when_hparams_are_one_dict(tmp_path):
    class FromConfig(CoreModel):
        def __init__(self, cfg, scale: int = 1):
            super().__init__(lr=cfg["lr"])
            self.scale = scale
            self.save_hyperparameters(cfg)

    path, _ = _trained_checkpoint(tmp_path, FromConfig({"lr": 0.2}))
    loaded = FromConfig.load_from_checkpoint(path, scale=3)
    assert loaded.scale == 3


def test_strict_argument_conflicting_with_strict_loading(tmp_path):
    class Lenient(Saved):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.strict_loading = False

    path, _ = _trained_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"strict=True\)` which is in conflict with `Lenient.strict_loading=False`"):
        Lenient.load_from_checkpoint(path, strict=True)


def test_load_from_checkpoint_on_an_instance_is_refused(tmp_path):
    path, trained = _trained_checkpoint(tmp_path)
    with pytest.raises(TypeError, match="cannot be called on an instance. Please call it on the class type"):
        trained.load_from_checkpoint(path)


def test_strict_loading_when_resuming_a_fit(tmp_path):
    path, _ = _trained_checkpoint(tmp_path)

    class Grown(Saved):
        def __init__(self, strict: bool = True, **kwargs):
            super().__init__(**kwargs)
            self.extra = nn.Linear(1, 1)
            self.strict_loading = strict

        def configure_optimizers(self):  # the saved optimizer state covers `layer` only
            return torch.optim.SGD(self.layer.parameters(), lr=self.lr)

    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "extra.weight", "extra.bias"'):
        quiet_trainer(max_steps=3).fit(Grown(), loader(n=8), ckpt_path=path)
    model = Grown(strict=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = quiet_trainer(max_steps=3)
        trainer.fit(model, loader(n=8), ckpt_path=path)
    assert trainer.global_step == 3
    assert not [w for w in caught if "Found keys" in str(w.message)]  # as in Lightning, a resume says nothing


def test_lightnings_private_loaders_build_a_module_or_a_datamodule_as_load_from_checkpoint_does(tmp_path):
    # libraries that override `load_from_checkpoint` call Lightning's helpers by these names (rl4co's
    # REINFORCE imports `_load_from_checkpoint` from `core.saving` when it loads)
    from ember.core.saving import _load_from_checkpoint, _load_state

    class Data(ember.LightningDataModule):
        def __init__(self, size: int = 3):
            super().__init__()
            self.save_hyperparameters()
            self.restored = None

        def state_dict(self):
            return {"seen": self.hparams.size * 10}

        def load_state_dict(self, state):
            self.restored = state["seen"]

    model = Saved(lr=0.05, tag="b")
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    data = Data(size=9)
    data.train_dataloader = lambda: loader(n=8)
    trainer.fit(model, datamodule=data)
    path = tmp_path / "both.ckpt"
    trainer.save_checkpoint(path)

    # positionally, as rl4co calls it: (cls, path, map_location, hparams_file, strict), and with keyword overrides
    loaded = _load_from_checkpoint(Saved, path, None, None, True, weights_only=True)
    assert isinstance(loaded, Saved) and loaded.hparams == {"lr": 0.05, "width": 1, "tag": "b"}
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert _load_from_checkpoint(Saved, path, tag="c").hparams["tag"] == "c"
    restored = _load_from_checkpoint(Data, path)
    assert isinstance(restored, Data) and restored.hparams.size == 9 and restored.restored == 90

    # `_load_state` takes a checkpoint already loaded
    checkpoint = torch.load(path, weights_only=True)
    again = _load_state(Saved, checkpoint, strict=True, width=1)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    assert _load_state(Data, checkpoint).restored == 90


def test_lightnings_hparams_helpers_in_core_saving():
    from ember.core.saving import convert, update_hparams

    assert [convert(v) for v in ("3", "0.5", "True", "[1, 2]", "text", "None")] == [3, 0.5, True, [1, 2], "text", None]
    hparams = {"lr": 0.1, "net": {"width": 4, "depth": 2}}
    update_hparams(hparams, {"net": {"width": 8}, "tag": "b"})
    assert hparams == {"lr": 0.1, "net": {"width": 8, "depth": 2}, "tag": "b"}


class _RenamesOldKeys(CoreModel):
    """Reads checkpoints whose layer was called ``old`` through its own ``load_state_dict``."""

    def load_state_dict(self, state_dict, strict=True, **kwargs):
        renamed = {key.replace("old.", "layer.", 1): value for key, value in state_dict.items()}
        return super().load_state_dict(renamed, strict=strict, **kwargs)


class _RenamesInAHook(CoreModel):
    def __init__(self):
        super().__init__()

        def rename(state_dict, prefix, *args):
            for key in [k for k in state_dict if k.startswith(prefix + "old.")]:
                state_dict[prefix + "layer." + key[len(prefix) + 4 :]] = state_dict.pop(key)

        self._register_load_state_dict_pre_hook(rename)


@pytest.mark.parametrize("model_class", [_RenamesOldKeys, _RenamesInAHook])
def test_a_modules_own_loading_decides_which_keys_it_takes_as_in_lightning(tmp_path, model_class):
    # Ember compared the keys before loading and refused; Lightning calls the module's `load_state_dict`
    trainer = quiet_trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(CoreModel(), loader(n=8))
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    checkpoint = torch.load(tmp_path / "new.ckpt", weights_only=False)
    weights = {key.replace("layer.", "old.", 1): value for key, value in checkpoint["state_dict"].items()}
    torch.save({**checkpoint, "state_dict": weights}, tmp_path / "old.ckpt")
    loaded = model_class.load_from_checkpoint(tmp_path / "old.ckpt")
    assert torch.equal(loaded.layer.weight, checkpoint["state_dict"]["layer.weight"])
    resumed = quiet_trainer(max_epochs=2, default_root_dir=tmp_path)
    resumed.fit(model_class(), loader(n=8), ckpt_path=tmp_path / "old.ckpt")
    assert resumed.current_epoch == 2
