"""Checkpoints in the layout of an older Lightning release: upgraded as they load, as Lightning upgrades them,
and rewritten on request by ``python -m ember.utilities.upgrade_checkpoint``.

The fixture is Lightning 1.8.6's ``last.ckpt`` (``tests/fixtures/make_lightning_1_8_checkpoint.py``), whose
``ModelCheckpoint`` state key still holds ``save_on_train_epoch_end``; the reference is what Lightning 2.6.6
restores and computes when it resumes from it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from tests.helpers import legacy_checkpoint_program as program
from tests.helpers.recorded_floats import tolerance

import ember
from ember.utilities.migration import migrate_checkpoint
from ember.utilities.warnings import PossibleUserWarning

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CKPT = FIXTURES / "lightning_1.8.6.ckpt"
REFERENCE = json.loads((FIXTURES / "lightning_1.8.6_resume.json").read_text())


def test_resuming_a_lightning_1_8_checkpoint_restores_what_lightning_restores(tmp_path, caplog):
    # before the upgrade, ModelCheckpoint's state (the best model so far) was not found under its key
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        resumed = program.resume(ember, str(CKPT), str(tmp_path))
    expected = REFERENCE["resume"]
    assert resumed["restored"] == expected["restored"]
    assert resumed["loaded"] == expected["loaded"]  # on_load_checkpoint sees the upgraded dict, as on Lightning
    rel, abs_ = tolerance(REFERENCE["versions"].get("cpu_kind"))  # the kind of CPU it was recorded on
    assert resumed["losses"] == pytest.approx(expected["losses"], rel=rel, abs=abs_)
    assert (resumed["epoch"], resumed["global_step"]) == (expected["epoch"], expected["global_step"])
    assert resumed["val_loss"] == pytest.approx(expected["val_loss"], rel=rel, abs=abs_)
    assert resumed["best_model_path"] == expected["best_model_path"]
    assert not [w for w in caught if "callbacks used to create the checkpoint" in str(w.message)]
    assert "upgraded the loaded checkpoint from Lightning v1.8.6's layout to v2.6.6's" in caplog.text
    assert "python -m ember.utilities.upgrade_checkpoint" in caplog.text
    assert torch.load(CKPT, weights_only=True)["pytorch-lightning_version"] == "1.8.6"  # the file is left as it is


def test_load_from_checkpoint_upgrades_an_old_checkpoint_too():
    model = program.regressor(ember).load_from_checkpoint(CKPT)
    assert dict(model.hparams) == {"lr": 0.1, "hidden": 8}
    assert model.loaded["version"] == "2.6.6" and model.loaded["legacy_version"] == "1.8.6"
    saved = torch.load(CKPT, weights_only=True)["state_dict"]
    assert all(torch.equal(model.state_dict()[key], value) for key, value in saved.items())


def test_lightnings_private_migration_helper_upgrades_a_loaded_checkpoint_and_gives_the_command(caplog):
    # `utilities.migration.utils._pl_migrate_checkpoint(checkpoint, checkpoint_path)`, which programs that read
    # checkpoints themselves call after `torch.load`, as Lightning's trainer does
    from ember.utilities.migration.utils import _get_version, _pl_migrate_checkpoint, _should_upgrade

    checkpoint = torch.load(CKPT, weights_only=True)
    assert _get_version(checkpoint) == "1.8.6" and _should_upgrade(checkpoint, "2.0.0")
    assert not _should_upgrade(checkpoint, "2.0.0", max_version="1.9.0")
    with caplog.at_level(logging.INFO):
        upgraded = _pl_migrate_checkpoint(checkpoint, checkpoint_path=CKPT)
    assert _get_version(upgraded) == "2.6.6" and upgraded["legacy_pytorch-lightning_version"] == "1.8.6"
    assert not _should_upgrade(upgraded, "2.0.0")
    assert "python -m ember.utilities.upgrade_checkpoint" in caplog.text
    assert _pl_migrate_checkpoint({"state_dict": {}}) == {"state_dict": {}}  # a hand-made dict stays as it is


def test_migrate_checkpoint_gives_lightnings_layout():
    migrated, applied = migrate_checkpoint(torch.load(CKPT, weights_only=True))
    expected = REFERENCE["migrate_checkpoint"]
    assert applied == expected["applied"]
    assert sorted(migrated) == expected["top_level_keys"]
    assert sorted(migrated["callbacks"]) == expected["callback_keys"]
    assert json.loads(json.dumps(migrated["loops"])) == expected["loops"]
    assert (migrated["pytorch-lightning_version"], migrated["legacy_pytorch-lightning_version"]) == ("2.6.6", "1.8.6")


def test_the_oldest_layouts_move_their_entries_where_lightning_moves_them():
    from ember.callbacks import EarlyStopping, ModelCheckpoint

    # before 0.10: the callbacks' counters at the top level; before 1.6: no loop progress at all
    checkpoint = {
        "epoch": 3,
        "global_step": 40,
        "pytorch-lightning_version": "0.9.0",
        "checkpoint_callback_best_model_score": 0.5,
        "checkpoint_callback_best_model_path": "best.ckpt",
        "early_stop_callback_wait": 2,
        "early_stop_callback_patience": 3,
        "amp_scaling_state": {"scale": 1.0},
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        migrated, applied = migrate_checkpoint(checkpoint)
    assert list(applied) == ["0.10.0", "1.6.0", "1.6.5", "1.9.0", "2.0.0"]
    # as Lightning: the keys of that time are classes, which 1.9.0's renaming leaves (and warns about)
    assert [str(w.message)[:40] for w in caught] == [
        "You have multiple `ModelCheckpoint` call",
        "This checkpoint contains apex AMP data, ",
    ]
    assert migrated["callbacks"] == {
        ModelCheckpoint: {"best_model_score": 0.5, "best_model_path": "best.ckpt"},
        EarlyStopping: {"wait_count": 2, "patience": 3},
    }
    assert "amp_scaling_state" not in migrated and "early_stop_callback_wait" not in migrated
    fit_loop = migrated["loops"]["fit_loop"]
    assert fit_loop["epoch_progress"]["current"]["completed"] == 3
    assert fit_loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"] == 40
    assert "optimizer_position" not in fit_loop["epoch_loop.automatic_optimization.optim_progress"]
    assert fit_loop["epoch_loop.manual_optimization.optim_step_progress"]["total"]["completed"] == 40
    assert fit_loop["epoch_loop.state_dict"] == {"_batches_that_stepped": 0}  # 1.6.0's default, kept by 1.6.5
    assert not any("batch_loop" in key for key in fit_loop)

    # only up to a release, when asked
    _, applied = migrate_checkpoint({"epoch": 1, "global_step": 2, "pytorch-lightning_version": "1.5.0"}, "1.6.0")
    assert list(applied) == ["1.6.0"]


def test_a_checkpoint_of_the_current_or_a_newer_release_is_left_as_it_is():
    current = {"epoch": 1, "global_step": 2, "pytorch-lightning_version": "2.6.6"}
    assert migrate_checkpoint(dict(current)) == (current, {})
    newer = {"epoch": 1, "global_step": 2, "pytorch-lightning_version": "2.9.0"}
    with pytest.warns(PossibleUserWarning, match="produced with Lightning v2.9.0, which is newer"):
        assert migrate_checkpoint(dict(newer)) == (newer, {})


def _upgrade(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ember.utilities.upgrade_checkpoint", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_upgrade_checkpoint_rewrites_the_files_and_keeps_the_originals(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "nested").mkdir(parents=True)
    shutil.copyfile(CKPT, folder / "last.ckpt")
    shutil.copyfile(CKPT, folder / "nested" / "epoch=1-step=16.ckpt")
    done = _upgrade(str(folder))
    assert done.returncode == 0, done.stderr
    assert "Upgraded 2 of 2 checkpoint file(s)" in done.stdout
    for name in ("last", "nested/epoch=1-step=16"):
        assert (folder / f"{name}.bak").read_bytes() == CKPT.read_bytes()
        upgraded = torch.load(folder / f"{name}.ckpt", weights_only=True)
        assert upgraded["pytorch-lightning_version"] == "2.6.6"
        assert upgraded["legacy_pytorch-lightning_version"] == "1.8.6"
        assert sorted(upgraded["callbacks"]) == REFERENCE["migrate_checkpoint"]["callback_keys"]
    # a second run keeps the backups, which are the untouched originals
    assert _upgrade(str(folder / "last.ckpt")).returncode == 0
    assert (folder / "last.bak").read_bytes() == CKPT.read_bytes()
    # and a file upgraded in place resumes as the original does
    resumed = program.resume(ember, str(folder / "last.ckpt"), str(tmp_path / "run"))
    assert resumed["restored"] == REFERENCE["resume"]["restored"]


def test_upgrade_checkpoint_says_what_it_could_not_upgrade(tmp_path):
    missing = _upgrade(str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    empty = _upgrade(str(tmp_path), "--extension", "pt")
    assert empty.returncode == 1 and "No checkpoint files with extension .pt were found" in empty.stderr
    torch.save({"weights": torch.ones(2)}, tmp_path / "plain.ckpt")
    plain = _upgrade(str(tmp_path))
    assert plain.returncode == 1
    assert "plain.ckpt: not upgraded: it is not a Lightning checkpoint" in plain.stderr


def test_upgrade_checkpoints_main_logs_a_bad_path_and_exits_as_lightnings(tmp_path, caplog):
    # called from Python (a script or a test that imports `main`), it exits with status 1 and logs the error
    from ember.utilities.upgrade_checkpoint import main

    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exited:
        main([str(tmp_path / "nowhere.ckpt")])
    assert exited.value.code == 1
    assert f"The path {tmp_path / 'nowhere.ckpt'} does not exist" in caplog.text


# A checkpoint whose hyperparameters pickled names that old Lightning releases had and Lightning 2.x no longer has:
# the `--gpus` parser of Lightning < 1.2.8's command-line arguments, and 1.x's `_FaultTolerantMode`. Written with
# stand-in modules of those names, then read in a process where they are gone (Lightning not installed).
_LEGACY_PICKLE_PROGRAM = """
import enum, sys, types
import tests.helpers.without_lightning
import torch
mode, folder = sys.argv[1], sys.argv[2]
if mode == "alias":
    import ember
    ember.install_as_lightning()
    import pytorch_lightning as pl
    from pytorch_lightning.utilities.migration import pl_legacy_patch
else:
    import ember as pl
    from ember.utilities.migration import pl_legacy_patch
from ember.demos.boring_classes import BoringModel

class Model(BoringModel):
    def __init__(self, gpus_type=None, mode=None, lr=0.1):
        super().__init__()
        self.save_hyperparameters()

def trainer(**kwargs):
    return pl.Trainer(default_root_dir=folder, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, limit_val_batches=0, **kwargs)

template = f"{folder}/template.ckpt"
first = trainer(max_steps=2)
first.fit(Model())
first.save_checkpoint(template)
argparse_utils = types.ModuleType("pytorch_lightning.utilities.argparse_utils")
enums = types.ModuleType("pytorch_lightning.utilities.enums")
def _gpus_arg_default(value):
    return value
class _FaultTolerantMode(str, enum.Enum):
    AUTOMATIC = "automatic"
_gpus_arg_default.__module__ = argparse_utils.__name__
_FaultTolerantMode.__module__ = enums.__name__
argparse_utils._gpus_arg_default, enums._FaultTolerantMode = _gpus_arg_default, _FaultTolerantMode
stand_ins = {module.__name__: module for module in (argparse_utils, enums)}
if mode == "plain":  # (pickling imports a module's packages too)
    stand_ins.update({name: types.ModuleType(name) for name in ("pytorch_lightning", "pytorch_lightning.utilities")})
before = {name: sys.modules.get(name) for name in stand_ins}
sys.modules.update(stand_ins)
checkpoint = torch.load(template, weights_only=False)
checkpoint["hyper_parameters"].update(gpus_type=_gpus_arg_default, mode=_FaultTolerantMode.AUTOMATIC)
torch.save(checkpoint, f"{folder}/legacy.ckpt")
for name, module in before.items():
    sys.modules.pop(name) if module is None else sys.modules.__setitem__(name, module)
del argparse_utils, enums, _gpus_arg_default, _FaultTolerantMode, stand_ins, checkpoint

model = Model.load_from_checkpoint(f"{folder}/legacy.ckpt", weights_only=False)
print("hparams", model.hparams.gpus_type("0,1"), model.hparams.mode.value, model.hparams.mode == "automatic")
resumed = trainer(max_steps=4)
resumed.fit(Model(), ckpt_path=f"{folder}/legacy.ckpt", weights_only=False)  # a trusted file
print("resumed", resumed.global_step)
with pl_legacy_patch():
    loaded = torch.load(f"{folder}/legacy.ckpt", weights_only=False)
print("patch", loaded["hyper_parameters"]["gpus_type"](3))
# gone after the block: nothing stays registered under Lightning's names
print("left", sorted(name for name in sys.modules if "argparse" in name and "lightning" in name),
      hasattr(sys.modules.get("pytorch_lightning.utilities.enums"), "_FaultTolerantMode"))
"""


@pytest.mark.parametrize("mode", ["plain", "alias"])
def test_a_checkpoint_that_pickled_names_lightning_has_removed_loads_fully_as_on_lightning(tmp_path, mode):
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "src"), str(repo)]), "PYTHONWARNINGS": "ignore"}
    env.pop("EMBER_AS_LIGHTNING", None)
    command = [sys.executable, "-c", _LEGACY_PICKLE_PROGRAM, mode, str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-4:] == ["hparams 0,1 automatic True", "resumed 4", "patch 3", "left [] False"]


def test_a_legacy_patch_that_fails_to_start_leaves_nothing_locked(monkeypatch):
    from ember.utilities.migration import utils as migration

    def broken() -> type:
        raise RuntimeError("no enum today")

    monkeypatch.setattr(migration, "_fault_tolerant_mode", broken)
    with pytest.raises(RuntimeError, match="no enum today"), migration.pl_legacy_patch():
        pass
    monkeypatch.undo()
    assert migration.pl_legacy_patch._lock.acquire(timeout=5)  # the next load is not locked out
    migration.pl_legacy_patch._lock.release()
    with migration.pl_legacy_patch():
        pass
