"""fit/validate/test/predict(ckpt_path=...): paths, "last", "best", and the errors."""

import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import ModelCheckpoint
from ember.utilities.exceptions import MisconfigurationException

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)


def _loader(n=16):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 4, generator=g), torch.randn(n, 1, generator=g)), batch_size=4)


class Regressor(ember.LightningModule):
    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.layer(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self.layer(x), y))

    def predict_step(self, batch, batch_idx):
        return self.layer(batch[0])

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]


def _fit(tmp_path, epochs=2, **kwargs):
    model = Regressor()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_last=True)
    trainer = ember.Trainer(max_epochs=epochs, default_root_dir=tmp_path, callbacks=[checkpoint], **QUIET, **kwargs)
    trainer.fit(model, _loader(), _loader())
    return trainer, model, checkpoint


def test_resume_restores_weights_optimizer_scheduler_and_counters(tmp_path):
    trainer, model, checkpoint = _fit(tmp_path)
    resumed = Regressor()
    trainer2 = ember.Trainer(
        max_epochs=3,
        default_root_dir=tmp_path,
        **QUIET,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_last=True)],
    )
    seen = {}

    class Probe(ember.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["epoch"], seen["step"] = trainer.current_epoch, trainer.global_step
            seen["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
            seen["momentum"] = len(trainer.optimizers[0].state)

    trainer2.callbacks.append(Probe())
    trainer2.fit(resumed, _loader(), _loader(), ckpt_path="last")
    assert seen == {"epoch": 2, "step": 8, "lr": 0.1 * 0.5**2, "momentum": 2}
    assert trainer2.current_epoch == 3 and trainer2.global_step == 12


@pytest.mark.parametrize("fn", ["validate", "test", "predict"])
def test_evaluation_loads_the_checkpoint_weights(tmp_path, fn):
    trainer, model, checkpoint = _fit(tmp_path)
    fresh = Regressor()
    assert not torch.equal(fresh.layer.weight, model.layer.weight)
    evaluator = ember.Trainer(default_root_dir=tmp_path, **QUIET)
    getattr(evaluator, fn)(fresh, _loader(), ckpt_path=checkpoint.best_model_path)
    best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    assert torch.equal(fresh.layer.weight, best["layer.weight"])


def test_best_and_the_default_after_fit(tmp_path):
    trainer, model, checkpoint = _fit(tmp_path)
    results = trainer.test(ckpt_path="best", dataloaders=_loader())
    assert set(results[0]) == {"test_loss"}
    with pytest.warns(UserWarning, match="best model of the previous `fit`"):
        trainer.validate(dataloaders=_loader())


def test_a_missing_checkpoint_file_fails_before_the_setup_hooks(tmp_path):
    # Lightning runs `setup` and `configure_model` first (a download, a sharded build) and fails when it loads;
    # Ember fails as the call starts (docs/compat.md)
    called = []

    class Records(Regressor):
        def setup(self, stage):
            called.append(stage)

        def configure_model(self):
            called.append("configure_model")

    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, enable_checkpointing=False, **QUIET)
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found: .*missing.ckpt"):
        trainer.fit(Records(), _loader(), ckpt_path=tmp_path / "missing.ckpt")
    assert called == []


@pytest.mark.parametrize("fn", ["fit", "validate", "test", "predict"])
def test_an_empty_ckpt_path_is_refused_before_any_hook_as_in_lightning(tmp_path, fn):
    # e.g. an empty `--resume ""` passed on: Lightning's ValueError, not a search for a file named ""
    called = []

    class Records(Regressor):
        def setup(self, stage):
            called.append(stage)

    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, enable_checkpointing=False, **QUIET)
    message = f"`.{fn}()` found no path for the best weights: ''. Please specify a path for a checkpoint `.{fn}(ckpt_path=PATH)`"
    with pytest.raises(ValueError) as raised:
        getattr(trainer, fn)(Records(), _loader(), ckpt_path="")
    assert str(raised.value) == message
    assert called == []


def test_last_takes_any_checkpoint_whose_name_starts_with_last_as_lightning_does(tmp_path):
    # Lightning's rule: a `.ckpt` file in the callback's folder whose name starts with "last"
    def trainer(epochs):
        saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="last_{epoch}", save_top_k=-1)
        return ember.Trainer(default_root_dir=tmp_path, max_epochs=epochs, callbacks=[saves], **QUIET)

    trainer(2).fit(Regressor(), _loader())
    os.utime(tmp_path / "ckpts" / "last_epoch=0.ckpt", (0, 0))  # the older one
    (tmp_path / "ckpts" / "not_last.ckpt").write_bytes(b"")
    (tmp_path / "ckpts" / "last.txt").write_bytes(b"")
    resumed = trainer(3)
    resumed.fit(Regressor(), _loader(), ckpt_path="last")
    assert os.path.basename(resumed.ckpt_path) == "last_epoch=1.ckpt"
    assert resumed.global_step == 12


@pytest.mark.parametrize("last_name", ["{epoch}-last", "last-{epoch}-{step}"])
def test_last_with_a_templated_last_name_takes_the_files_the_template_names(tmp_path, last_name):
    # any text may stand for a field, nothing else: a newer export in the folder is not a last checkpoint
    class TemplatedLast(ModelCheckpoint):
        CHECKPOINT_NAME_LAST = last_name

    def trainer(epochs):
        saves = TemplatedLast(dirpath=tmp_path / "ckpts", monitor="val_loss", save_last=True)
        return ember.Trainer(default_root_dir=tmp_path, max_epochs=epochs, callbacks=[saves], **QUIET)

    first = trainer(2)
    first.fit(Regressor(), _loader(), _loader())
    last = first.checkpoint_callback.last_model_path
    assert os.path.basename(last) == last_name.format(epoch="epoch=1", step="step=8") + ".ckpt"
    first.save_checkpoint(tmp_path / "ckpts" / "manual-export.ckpt")
    os.utime(last, (0, 0))  # the export is the newest file in the folder
    resumed = trainer(3)
    resumed.fit(Regressor(), _loader(), _loader(), ckpt_path="last")
    assert resumed.ckpt_path == last


def test_last_with_a_last_name_of_fields_alone_finds_no_last_checkpoint(tmp_path):
    class FieldsOnly(ModelCheckpoint):
        CHECKPOINT_NAME_LAST = "{epoch}"

    saves = FieldsOnly(dirpath=tmp_path / "ckpts", save_last=True)
    ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[saves], **QUIET).fit(Regressor(), _loader())
    resumed = ember.Trainer(
        default_root_dir=tmp_path, max_epochs=2, callbacks=[FieldsOnly(tmp_path / "ckpts")], **QUIET
    )
    with pytest.warns(UserWarning, match="there is no last checkpoint available"):
        resumed.fit(Regressor(), _loader(), ckpt_path="last")
    assert resumed.ckpt_path is None


def test_setup_hooks_see_the_checkpoint_the_call_resumes_from(tmp_path):
    # Lightning sets `trainer.ckpt_path` only as it restores, after these hooks, which still see the previous
    # call's value (None on a new Trainer): a program telling a resume from a fresh start in `setup` could not
    trainer, model, checkpoint = _fit(tmp_path)
    seen = {}

    class Reads(Regressor):
        def prepare_data(self):
            seen["prepare_data"] = self.trainer.ckpt_path

        def setup(self, stage):
            seen["setup"] = self.trainer.ckpt_path

        def configure_model(self):
            seen["configure_model"] = self.trainer.ckpt_path

    resumed = ember.Trainer(default_root_dir=tmp_path, max_epochs=3, **QUIET)
    resumed.fit(Reads(), _loader(), ckpt_path=checkpoint.last_model_path)
    assert seen == dict.fromkeys(["prepare_data", "setup", "configure_model"], checkpoint.last_model_path)


def test_best_with_several_checkpoint_callbacks_warns_and_takes_the_first(tmp_path):
    trainer, model, checkpoint = _fit(tmp_path)
    other = ModelCheckpoint(dirpath=tmp_path / "other", monitor="val_loss", mode="max")
    trainer = ember.Trainer(default_root_dir=tmp_path, callbacks=[checkpoint, other], **QUIET)
    with pytest.warns(UserWarning, match=r"with multiple `ModelCheckpoint` callbacks. It will use the best checkpoint"):
        trainer.test(Regressor(), _loader(), ckpt_path="best", verbose=False)
    assert trainer.ckpt_path == checkpoint.best_model_path


def test_ckpt_path_errors_name_the_fix(tmp_path):
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, enable_checkpointing=False, **QUIET)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        trainer.fit(Regressor(), _loader(), ckpt_path=tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="ModelCheckpoint"):
        trainer.test(Regressor(), _loader(), ckpt_path="best")
    with pytest.warns(UserWarning, match=r"no last checkpoint .* HINT: Set `ModelCheckpoint\(..., save_last=True\)`."):
        ember.Trainer(default_root_dir=tmp_path, max_epochs=1, **QUIET).fit(Regressor(), _loader(), ckpt_path="last")


@pytest.mark.parametrize(
    ("save_top_k", "fit", "why"),
    [
        (1, False, "It has not saved a best checkpoint yet: run `fit` first"),
        (0, False, "It keeps no best checkpoint \\(`save_top_k=0`\\): set `save_top_k` to 1 or more"),
        (0, True, "It keeps no best checkpoint \\(`save_top_k=0`\\): set `save_top_k` to 1 or more"),
        (
            1,
            True,
            "It saved no checkpoint in the fit \\(its `every_n_\\*` settings or `monitor` decide when it saves\\)",
        ),
    ],
)
def test_best_without_a_best_checkpoint_says_modelcheckpoint_is_not_configured_for_it(tmp_path, save_top_k, fit, why):
    # (a fit that saved nothing: `every_n_epochs` beyond its epochs)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="missing", save_top_k=save_top_k, every_n_epochs=5)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[checkpoint], **QUIET)
    if fit:
        trainer.fit(Regressor(), _loader())
    with pytest.raises(
        ValueError,
        match=r'^`.validate\(ckpt_path="best"\)` is set but `ModelCheckpoint` is not configured to save the best'
        rf" model. {why}, or pass `.validate\(ckpt_path=<path>\)`.$",
    ):  # (Lightning's first sentence; the second, Ember's, says why and what to do: docs/compat.md)
        trainer.validate(Regressor(), _loader(), ckpt_path="best")


@pytest.mark.parametrize("fn", ["validate", "test", "predict"])
def test_evaluating_without_a_model_needs_a_best_checkpoint_as_in_lightning(tmp_path, fn):
    # without a model, `ckpt_path=None` means the previous fit's best checkpoint, even when none was saved
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, enable_checkpointing=False, **QUIET)
    trainer.fit(Regressor(), _loader())
    with pytest.warns(UserWarning, match="best model of the previous `fit` call will be used"):
        with pytest.raises(
            ValueError,
            match=rf'`.{fn}\(ckpt_path="best"\)` is set but `ModelCheckpoint` is not configured.*Or pass the model',
        ):
            getattr(trainer, fn)(dataloaders=_loader())
    unsaved = ModelCheckpoint(dirpath=tmp_path / "none", save_top_k=0)
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[unsaved], **QUIET)
    trainer.fit(Regressor(), _loader())
    with pytest.warns(UserWarning, match="best model of the previous"):
        with pytest.raises(ValueError, match=r"not configured to save the best model.*Or pass the model"):
            getattr(trainer, fn)(dataloaders=_loader())
    model = trainer.lightning_module
    getattr(trainer, fn)(model, dataloaders=_loader())  # the model given: its weights, no checkpoint needed


def test_evaluating_without_a_model_mentions_an_on_exception_checkpoint(tmp_path):
    from ember.callbacks import OnExceptionCheckpoint

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss")
    callbacks = [checkpoint, OnExceptionCheckpoint(tmp_path / "crash")]
    trainer = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=callbacks, **QUIET)
    trainer.fit(Regressor(), _loader(), _loader())
    with pytest.warns(UserWarning, match="There is also an on-exception checkpoint available, however it is used"):
        trainer.validate(dataloaders=_loader(), verbose=False)
    assert trainer.ckpt_path == checkpoint.best_model_path


def test_the_path_is_chosen_before_any_hook_runs(tmp_path):
    # as Lightning: a missing best checkpoint fails, and a missing last one is warned about, before the
    # setup hooks (and the data they prepare) run
    calls = []
    warned: dict = {"record": []}  # the warnings given so far, as each hook sees them

    class Recording(Regressor):
        def prepare_data(self):
            calls.append(("prepare_data", len(warned["record"])))

        def setup(self, stage):
            calls.append(("setup", len(warned["record"])))

    trainer = ember.Trainer(default_root_dir=tmp_path, enable_checkpointing=False, **QUIET)
    with pytest.raises(ValueError, match="ModelCheckpoint"):
        trainer.test(Recording(), _loader(), ckpt_path="best")
    assert calls == []

    with pytest.warns(UserWarning, match="no last checkpoint available") as warned["record"]:
        ember.Trainer(default_root_dir=tmp_path, **QUIET).predict(Recording(), _loader(), ckpt_path="last")
    assert calls == [("prepare_data", 1), ("setup", 1)]  # the warning had come


def test_checkpoint_beyond_max_epochs_is_refused(tmp_path):
    trainer, model, checkpoint = _fit(tmp_path, epochs=3)
    short = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, enable_checkpointing=False, **QUIET)
    with pytest.raises(MisconfigurationException, match="max_epochs"):
        short.fit(Regressor(), _loader(), ckpt_path=checkpoint.last_model_path)


def test_weights_only_checkpoint_cannot_resume_training(tmp_path):
    trainer, model, checkpoint = _fit(tmp_path)
    path = tmp_path / "weights.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    with pytest.raises(KeyError, match="save_weights_only"):
        ember.Trainer(max_epochs=3, default_root_dir=tmp_path, enable_checkpointing=False, **QUIET).fit(
            Regressor(), _loader(), ckpt_path=path
        )
    assert Regressor.load_from_checkpoint(path).hparams.lr == 0.1


def test_corrupt_checkpoint_names_the_file(tmp_path):
    trainer, model, checkpoint = _fit(tmp_path)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(open(checkpoint.last_model_path, "rb").read()[:100])
    with pytest.raises(Exception, match="broken.ckpt"):
        ember.Trainer(max_epochs=3, default_root_dir=tmp_path, enable_checkpointing=False, **QUIET).fit(
            Regressor(), _loader(), ckpt_path=broken
        )


@pytest.mark.parametrize("content", [b"a", b"epoch: 3\nlr: 0.1\n"])
def test_a_file_that_is_not_a_checkpoint_fails_clearly_everywhere_it_is_loaded(tmp_path, content):
    from ember.checkpoint import CheckpointLoadError

    path = tmp_path / "notes.ckpt"
    path.write_bytes(content)
    message = r"notes\.ckpt is not a readable checkpoint \(not a checkpoint file"
    trainer = ember.Trainer(max_epochs=1, default_root_dir=tmp_path, enable_checkpointing=False, **QUIET)
    with pytest.raises(CheckpointLoadError, match=message):
        trainer.fit(Regressor(), _loader(), ckpt_path=path)
    assert trainer.global_step == 0  # nothing trained from a wrong start
    with pytest.raises(CheckpointLoadError, match=message):
        trainer.validate(Regressor(), _loader(), ckpt_path=path)
    with pytest.raises(CheckpointLoadError, match=message):
        Regressor.load_from_checkpoint(path)


def test_checkpoint_keeps_lightnings_top_level_keys(tmp_path):
    trainer, model, checkpoint = _fit(tmp_path)
    saved = torch.load(checkpoint.last_model_path, weights_only=True)
    for key in (
        "epoch",
        "global_step",
        "pytorch-lightning_version",
        "state_dict",
        "loops",
        "callbacks",
        "optimizer_states",
        "lr_schedulers",
        "hparams_name",
        "hyper_parameters",
    ):
        assert key in saved, key
    assert saved["hyper_parameters"] == {"lr": 0.1} and saved["hparams_name"] == "kwargs"
    assert saved["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] == saved["global_step"]


def test_a_ckpt_path_set_on_the_trainer_is_loaded_by_every_call_until_reset(tmp_path):
    trainer, model, checkpoint = _fit(tmp_path, epochs=1)
    first = tmp_path / "first.ckpt"
    trainer.save_checkpoint(first)
    saved = model.layer.weight.detach().clone()
    trainer.fit(model, _loader(), _loader(), ckpt_path="last")  # nothing left to train at max_epochs=1
    with torch.no_grad():
        model.layer.weight.add_(1.0)
    trainer.ckpt_path = str(first)
    trainer.test(model, _loader(), verbose=False)  # loads it: no ckpt_path passed
    assert torch.equal(model.layer.weight, saved) and trainer.ckpt_path == str(first)
    with pytest.warns(UserWarning, match=r"`trainer.ckpt_path = .*first.ckpt'` was called but then you passed"):
        trainer.test(model, _loader(), ckpt_path=checkpoint.best_model_path, verbose=False)
    assert trainer.ckpt_path == checkpoint.best_model_path  # the one passed, and the set one forgotten
    with torch.no_grad():
        model.layer.weight.add_(1.0)
    trainer.ckpt_path = None
    changed = model.layer.weight.detach().clone()
    trainer.test(model, _loader(), verbose=False)  # the model as it is
    assert torch.equal(model.layer.weight, changed) and trainer.ckpt_path is None


def test_best_after_a_fast_dev_run_names_the_missing_checkpoint_callback_first(tmp_path):
    # as Lightning: without a ModelCheckpoint that is the error; with one (which fast_dev_run keeps from
    # saving), the fast_dev_run message
    trainer = ember.Trainer(default_root_dir=tmp_path, fast_dev_run=True, enable_checkpointing=False, **QUIET)
    trainer.fit(Regressor(), _loader())
    with pytest.raises(
        ValueError, match=r'`.validate\(ckpt_path="best"\)` is set but `ModelCheckpoint` is not configured'
    ):
        trainer.validate(Regressor(), _loader(), ckpt_path="best")
    trainer = ember.Trainer(default_root_dir=tmp_path, fast_dev_run=True, **QUIET)
    trainer.fit(Regressor(), _loader())
    with pytest.raises(ValueError, match=r'You cannot execute `.test\(ckpt_path="best"\)` with `fast_dev_run=True`'):
        trainer.test(Regressor(), _loader(), ckpt_path="best")
