"""Trainer attributes and behaviours that Lightning programs and libraries rely on, checked against Lightning 2.6.6.

Each expected value below was observed on pytorch_lightning 2.6.6 with the same program.
"""

from __future__ import annotations

import os
import signal
import warnings
from unittest import mock

import pytest
import torch
from tests.helpers.core_models import CoreModel, loader, quiet_trainer
from torch import nn

import ember
from ember.callbacks import Callback, ModelCheckpoint
from ember.utilities.exceptions import PreemptionExit


class Recorder(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        loop = trainer.fit_loop
        self.seen.append(
            (
                batch_idx,
                trainer.is_last_batch,
                loop.epoch_loop.batch_idx,
                loop.total_batch_idx,
                loop.epoch_progress.current.completed,
            )
        )


def test_is_last_batch_and_the_fit_loop_counters_while_training():
    recorder = Recorder()
    trainer = quiet_trainer(max_epochs=2, callbacks=[recorder])
    trainer.fit(CoreModel(), loader(n=12, batch_size=4))  # 3 batches per epoch
    assert recorder.seen == [
        (0, False, 0, 0, 0), (1, False, 1, 1, 0), (2, True, 2, 2, 0),
        (0, False, 0, 3, 1), (1, False, 1, 4, 1), (2, True, 2, 5, 1),
    ]  # fmt: skip
    loop = trainer.fit_loop
    assert loop.epoch_progress.current.completed == 2
    assert loop.epoch_loop.batch_progress.total.completed == 6
    assert loop.epoch_loop._batches_that_stepped == 6 and loop.epoch_loop.global_step == 6


def test_the_evaluation_loops_count_their_batches():
    class Seen(Callback):
        def __init__(self) -> None:
            self.at_val_end: list[tuple[bool, int, int]] = []

        def on_validation_end(self, trainer, pl_module):
            progress = trainer.fit_loop.epoch_loop.val_loop.batch_progress
            self.at_val_end.append((trainer.sanity_checking, progress.current.completed, progress.total.completed))

    seen = Seen()
    trainer = quiet_trainer(max_epochs=2, val_check_interval=0.5, num_sanity_val_steps=1, callbacks=[seen])
    trainer.fit(CoreModel(), loader(n=12, batch_size=2), loader(n=12, batch_size=6))
    # the sanity batches are forgotten after the check; the total restarts with each training epoch (Lightning 2.6.6)
    assert seen.at_val_end == [(True, 1, 1), (False, 2, 2), (False, 2, 4), (False, 2, 2), (False, 2, 4)]
    assert trainer.validate_loop.batch_progress.total.completed == 0  # not this loop's call
    trainer.test(CoreModel(), loader(n=12, batch_size=5))
    assert trainer.test_loop.batch_progress.current.completed == 3
    trainer.predict(CoreModel(), loader(n=12, batch_size=12))
    assert trainer.predict_loop.batch_progress.total.completed == 1


def test_the_validation_loops_data_source_says_whether_validation_data_exists():
    # gluonts picks the metric its scheduler monitors with `val_loop._data_source.is_defined()`
    class Asks(CoreModel):
        def configure_optimizers(self):
            source = self.trainer.fit_loop.epoch_loop.val_loop._data_source
            self.asked = (source.is_defined(), source.is_module(), source.name)
            return super().configure_optimizers()

    class WithValHook(Asks):
        def val_dataloader(self):
            return loader(n=4)

    passed, none, hook = Asks(), Asks(), WithValHook()
    quiet_trainer(max_epochs=1).fit(passed, loader(n=4), loader(n=4))
    quiet_trainer(max_epochs=1).fit(none, loader(n=4))
    quiet_trainer(max_epochs=1).fit(hook, loader(n=4))
    assert passed.asked == (True, False, "val_dataloader")  # the loaders given to fit
    assert none.asked == (False, True, "val_dataloader")  # the module, which has no val_dataloader
    assert hook.asked == (True, True, "val_dataloader")  # the module's own hook


def test_fit_loop_limits_are_the_trainers_and_settable():
    trainer = quiet_trainer(max_epochs=3)
    assert trainer.fit_loop.max_epochs == 3
    trainer.fit_loop.max_epochs = 1
    trainer.fit(CoreModel(), loader(n=8))
    assert trainer.current_epoch == 1 and trainer.max_epochs == 1
    trainer.fit_loop.epoch_progress.current.completed = 4  # as some programs set it before evaluating
    assert trainer.current_epoch == 4


def test_a_second_fit_continues_the_counters():
    epochs = []

    class Recorder(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            epochs.append((trainer.current_epoch, trainer.global_step))

    trainer = quiet_trainer(max_epochs=2, callbacks=[Recorder()])
    trainer.fit(CoreModel(), loader(n=8))  # 2 batches per epoch
    trainer.fit_loop.max_epochs = 4
    trainer.fit(CoreModel(), loader(n=8))
    assert epochs == [(0, 2), (1, 4), (2, 6), (3, 8)]  # as Lightning 2.6.6
    trainer.fit(CoreModel(), loader(n=8))  # max_epochs reached: nothing more to train
    assert trainer.current_epoch == 4 and trainer.global_step == 8 and len(epochs) == 4


def test_minus_one_from_on_train_batch_start_ends_the_epoch_as_its_last_batch():
    class Skipping(CoreModel):
        def on_train_batch_start(self, batch, batch_idx):
            return -1 if batch_idx == 2 else None

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)]

    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(Skipping(), loader(n=20))  # 5 batches per epoch, cut after 2
    assert trainer.global_step == 2 * 3
    assert trainer.fit_loop.batch_idx == 2 and trainer.is_last_batch
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**3)  # stepped every epoch


class _CutsEpochZero(CoreModel):
    """Ends epoch 0 at its batch 2 (``on_train_batch_start`` returns -1) and records each validation."""

    def __init__(self) -> None:
        super().__init__()
        self.validations: list[tuple[int, int]] = []

    def on_train_batch_start(self, batch, batch_idx):
        return -1 if self.current_epoch == 0 and batch_idx == 2 else None

    def on_validation_epoch_start(self):
        if not self.trainer.sanity_checking:
            self.validations.append((self.current_epoch, self.global_step))


@pytest.mark.parametrize(
    ("interval", "expected"),
    [(2, [(0, 2), (1, 3), (1, 5), (2, 7)]), (3, [(1, 5), (2, 8)]), (5, [(1, 4)])],  # as Lightning 2.6.6
)
def test_validation_counted_across_epochs_counts_the_batch_an_epoch_was_cut_at(interval, expected):
    # Lightning counts the batch `on_train_batch_start` refused among the batches `val_check_interval` counts
    model = _CutsEpochZero()
    trainer = quiet_trainer(max_epochs=3, check_val_every_n_epoch=None, val_check_interval=interval)
    trainer.fit(model, loader(n=12), loader(n=12))  # 3 batches per epoch; epoch 0 trains 2
    assert model.validations == expected
    assert trainer.fit_loop.total_batch_idx == 8  # the counter ModelCheckpoint predicts validation from


def test_validation_counted_across_epochs_resumes_after_an_epoch_cut_short(tmp_path):
    first = _CutsEpochZero()
    trainer = quiet_trainer(max_epochs=1, check_val_every_n_epoch=None, val_check_interval=2)
    trainer.fit(first, loader(n=12), loader(n=12))
    trainer.save_checkpoint(tmp_path / "cut.ckpt")
    resumed = _CutsEpochZero()
    trainer = quiet_trainer(max_epochs=3, check_val_every_n_epoch=None, val_check_interval=2)
    trainer.fit(resumed, loader(n=12), loader(n=12), ckpt_path=tmp_path / "cut.ckpt")
    assert first.validations + resumed.validations == [(0, 2), (1, 3), (1, 5), (2, 7)]


def test_modules_in_eval_mode_when_training_starts_warn():
    from ember.utilities.warnings import PossibleUserWarning

    model = CoreModel()
    model.frozen = nn.Linear(1, 1).eval()
    with pytest.warns(PossibleUserWarning, match=r"Found 1 module\(s\) in eval mode at the start of training"):
        quiet_trainer(max_steps=1).fit(model, loader())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*eval mode.*")
        quiet_trainer(max_steps=1).fit(CoreModel(), loader())


@pytest.mark.parametrize("call", ["validate", "test", "predict"])
def test_every_module_is_back_in_its_own_mode_after_an_evaluation_call(call):
    # Lightning records each module's mode before `on_<stage>_model_eval` and puts it back at the end: a
    # `fit` after `predict` (deepforest, pykeen) trains with dropout and batch statistics on again
    model = CoreModel()
    model.frozen = nn.Linear(1, 1).eval()
    seen_inside = []
    model.on_predict_start = model.on_validation_start = model.on_test_start = lambda: seen_inside.append(
        model.training
    )
    getattr(quiet_trainer(), call)(model, loader())
    assert seen_inside == [False]  # evaluated in eval mode
    assert model.training and not model.frozen.training
    assert all(module.training for name, module in model.named_modules() if not name.startswith("frozen"))


def test_the_metrics_a_callback_reads_during_the_sanity_check_and_validation():
    class Logs(CoreModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self(x), y), prog_bar=True)
            self.log("val_step_only", 1.0, on_step=True, on_epoch=False)

        def on_validation_epoch_end(self):
            self.log("at_epoch_end", 2.0)

    class Reads(Callback):
        def __init__(self) -> None:
            self.seen: list[tuple] = []

        def read(self, hook, trainer):
            metrics = (trainer.callback_metrics, trainer.logged_metrics, trainer.progress_bar_metrics)
            self.seen.append((hook, trainer.sanity_checking, *(sorted(m) for m in metrics)))

        def on_validation_batch_end(self, trainer, *args):
            self.read("batch_end", trainer)

        def on_validation_epoch_end(self, trainer, pl_module):
            self.read("epoch_end", trainer)

        def on_validation_end(self, trainer, pl_module):
            self.read("end", trainer)

        def on_sanity_check_end(self, trainer, pl_module):
            self.read("sanity_check_end", trainer)

        def on_train_start(self, trainer, pl_module):
            self.read("train_start", trainer)

    reads = Reads()
    trainer = quiet_trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=2, callbacks=[reads]
    )
    trainer.fit(Logs(), loader(), loader())
    everything = ["at_epoch_end", "val_loss", "val_step_only"]
    assert reads.seen == [  # observed on Lightning 2.6.6 with the same program
        ("batch_end", True, [], ["val_step_only"], []),
        ("epoch_end", True, ["val_loss"], ["val_loss", "val_step_only"], ["val_loss"]),
        ("end", True, ["at_epoch_end", "val_loss"], everything, ["val_loss"]),
        ("sanity_check_end", True, ["at_epoch_end", "val_loss"], everything, ["val_loss"]),
        ("train_start", False, [], [], []),  # the sanity check's values are gone once it ends
        ("batch_end", False, ["train_loss"], ["train_loss", "val_step_only"], []),
        ("epoch_end", False, ["train_loss", "val_loss"], ["train_loss", "val_loss", "val_step_only"], ["val_loss"]),
        ("end", False, ["at_epoch_end", "train_loss", "val_loss"], sorted(["train_loss", *everything]), ["val_loss"]),
    ]


def test_the_trainer_states_behave_as_lightnings_enums():
    from ember.trainer.states import RunningStage, TrainerFn, TrainerStatus

    seen = []

    class Reads(Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append((trainer.state.fn, trainer.state.stage, trainer.state.status))

    quiet_trainer(max_steps=1, callbacks=[Reads()]).fit(CoreModel(), loader())
    fn, stage, status = seen[0]
    assert (fn, stage, status) == ("fit", "train", "running")
    assert (str(fn), f"{stage}", str(status)) == ("TrainerFn.FITTING", "RunningStage.TRAINING", "TrainerStatus.RUNNING")
    assert fn == "FIT" and {"fit": 1}[fn] == 1 and stage in {"train"}  # any case; found by value
    assert fn.value == "fit" and TrainerFn.from_str("fitting") is TrainerFn.FITTING
    assert RunningStage.SANITY_CHECKING.dataloader_prefix == "val" and TrainerStatus.FINISHED.stopped


def test_the_results_table_prints_each_value_as_lightning_prints_it(capsys):
    trainer = quiet_trainer()
    trainer.validate(CoreModel(), loader())
    value = trainer.callback_metrics["val_loss"].item()
    lines = capsys.readouterr().out.splitlines()
    assert ["val_loss", f"{value}"] in [line.split() for line in lines]  # every digit of the float, as Lightning


def test_resuming_says_what_was_restored_as_lightning_does(tmp_path, caplog):
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(CoreModel(), loader())
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    path = tmp_path / "model.ckpt"
    with caplog.at_level("INFO"):
        quiet_trainer(max_steps=3).fit(CoreModel(), loader(), ckpt_path=path)
        quiet_trainer().test(CoreModel(), loader(), ckpt_path=path, verbose=False)
    said = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert said == [
        f"Restoring states from the checkpoint path at {path}",
        f"Restored all states from the checkpoint at {path}",
        f"Restoring states from the checkpoint path at {path}",
        f"Loaded model weights from the checkpoint at {path}",
    ]


def test_save_checkpoint_without_weights_only_keeps_everything_and_says_so_as_lightning_does(tmp_path, caplog):
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(CoreModel(), loader())
    with caplog.at_level("INFO"):
        trainer.save_checkpoint(tmp_path / "default.ckpt")
        trainer.save_checkpoint(tmp_path / "full.ckpt", weights_only=False)
        trainer.save_checkpoint(tmp_path / "weights.ckpt", weights_only=True)
    said = [r.getMessage() for r in caplog.records if "weights_only" in r.getMessage()]
    assert said == ["`weights_only` was not set, defaulting to `False`."]  # once: only the call that left it out
    default, weights = (torch.load(tmp_path / name, weights_only=True) for name in ("default.ckpt", "weights.ckpt"))
    assert "optimizer_states" in default and "callbacks" in default
    assert "optimizer_states" not in weights


def test_the_evaluation_loops_hold_verbose_and_inference_mode_as_lightnings_do():
    seen = []

    class Reads(Callback):
        def on_test_end(self, trainer, pl_module):
            seen.append((trainer.test_loop.verbose, trainer.test_loop.inference_mode))

    trainer = quiet_trainer(inference_mode=False, callbacks=[Reads()])
    assert (trainer.validate_loop.verbose, trainer.validate_loop.inference_mode) == (True, False)
    trainer.test(CoreModel(), loader(), verbose=False)
    assert seen == [(False, False)] and not trainer.test_loop.verbose  # observed on Lightning 2.6.6


def test_the_private_evaluation_loop_is_the_running_calls_and_fits_is_one_quiet_object(capsys):
    # lightning-ir replaces `trainer._evaluation_loop._print_results` in `on_validation_start` to print its own table
    seen = []

    class Reads(CoreModel):
        def on_validation_start(self):
            loop = self.trainer._evaluation_loop
            seen.append((self.trainer.state.fn, loop.verbose, loop is self.trainer.fit_loop.epoch_loop.val_loop))
            loop._print_results = lambda results, stage: print(f"own table for {stage}: {sorted(results[0])}")

        def on_test_start(self):
            seen.append((self.trainer.state.fn, self.trainer._evaluation_loop is self.trainer.test_loop))

    trainer = quiet_trainer(max_epochs=1)
    with pytest.raises(RuntimeError, match=r"`Trainer._evaluation_loop` property isn't defined"):
        _ = trainer._evaluation_loop
    model = Reads()
    assert trainer.fit_loop.epoch_loop is trainer.fit_loop.epoch_loop
    trainer.fit(model, loader(), loader())
    trainer.validate(model, loader())
    trainer.test(model, loader())
    assert seen == [("fit", False, True), ("validate", True, False), ("test", True)]
    assert trainer.fit_loop.epoch_loop.val_loop._print_results is not trainer.validate_loop._print_results
    assert "own table for validate: ['val_loss']" in capsys.readouterr().out


@pytest.mark.parametrize(
    "given",
    [
        lambda: loader(),
        lambda: [loader()],
        lambda: [loader(), loader()],
        lambda: {"a": loader(), "b": loader()},
        lambda: (loader(), [loader()]),
    ],
    ids=["one", "list_of_one", "list", "dict", "nested"],
)
def test_the_stages_dataloaders_keep_the_structure_they_were_given_in(given):
    # lightning-ir reads `[loader.dataset for loader in trainer.test_dataloaders]`
    def shape(value):
        if isinstance(value, dict):
            return {key: shape(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(shape(item) for item in value)
        return type(value).__name__

    class Steps(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            pass

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            pass

        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return 0

    trainer = quiet_trainer()
    trainer.test(Steps(), given(), verbose=False)
    assert shape(trainer.test_dataloaders) == shape(given())
    trainer.validate(Steps(), given(), verbose=False)
    assert shape(trainer.val_dataloaders) == shape(given())
    if not isinstance(given(), dict):  # predict takes no dict, as in Lightning
        trainer.predict(Steps(), given())
        assert shape(trainer.predict_dataloaders) == shape(given())


@pytest.mark.parametrize("loaders", [1, 2])
def test_the_sanity_checks_values_of_several_dataloaders_are_not_in_callback_metrics(loaders):
    # Lightning's sanity check stores no dataloader's epoch values; one loader's stay readable in the live results
    seen = []

    class Reads(Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            seen.append((trainer.sanity_checking, sorted(trainer.callback_metrics)))

    class Logs(CoreModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.log("v", batch[0].sum())

    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=1, callbacks=[Reads()])
    trainer.fit(Logs(), loader(), [loader()] * loaders if loaders > 1 else loader())
    per_loader = ["v"] if loaders == 1 else ["v/dataloader_idx_0", "v/dataloader_idx_1"]
    assert seen == [(True, ["v"] if loaders == 1 else []), (False, per_loader)]


def test_a_name_logged_in_training_and_validation_steps_keeps_validations_value_in_the_logged_metrics():
    class SameName(CoreModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("loss", nn.functional.mse_loss(self(x), y) + 1000, prog_bar=True, on_step=True, on_epoch=False)

    seen = []

    class Reads(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            metrics = (trainer.callback_metrics, trainer.logged_metrics, trainer.progress_bar_metrics)
            seen.append([float(m["loss"]) > 1000 for m in metrics])

    trainer = quiet_trainer(max_epochs=1, callbacks=[Reads()])
    trainer.fit(SameName(), loader(n=8), loader(n=8))  # validation after the last step
    # as on Lightning 2.6.6: the callback metrics hold the training value (a validation step value never
    # reaches them); the logged and progress-bar metrics the validation's, logged last
    assert seen == [[False, True, True]]


def test_fast_dev_run_one_is_true_and_enable_validation():
    assert quiet_trainer(fast_dev_run=1).fast_dev_run is True
    assert quiet_trainer(fast_dev_run=3).fast_dev_run == 3
    trainer = quiet_trainer(max_epochs=1)
    assert not trainer.enable_validation  # no module yet
    trainer.fit(CoreModel(), loader(), loader())
    assert trainer.enable_validation
    no_val = quiet_trainer(max_epochs=1, limit_val_batches=0)
    no_val.fit(CoreModel(), loader(), loader())
    assert not no_val.enable_validation


def test_fewer_training_batches_than_the_logging_interval_warn(tmp_path):
    from ember.loggers import CSVLogger
    from ember.utilities.warnings import PossibleUserWarning

    trainer = ember.Trainer(
        max_epochs=1,
        log_every_n_steps=5,
        logger=CSVLogger(tmp_path),
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    with pytest.warns(PossibleUserWarning, match=r"The number of training batches \(4\) is smaller than the logging"):
        trainer.fit(CoreModel(), loader(n=16, batch_size=4))


def test_the_epoch_loops_max_steps_is_the_trainers_and_settable():
    trainer = quiet_trainer(max_epochs=5)
    trainer.fit_loop.epoch_loop.max_steps = 3
    trainer.fit(CoreModel(), loader())
    assert trainer.max_steps == 3 and trainer.global_step == 3


def test_a_none_batch_is_skipped_with_a_warning():
    from torch.utils.data import DataLoader
    from torch.utils.data.dataloader import default_collate

    calls = {"collate": 0, "outputs": []}

    def every_other_none(items):
        calls["collate"] += 1
        return None if calls["collate"] % 2 else default_collate(items)

    class SomeNone(CoreModel):
        def train_dataloader(self):
            return DataLoader(loader(n=16).dataset, batch_size=4, collate_fn=every_other_none)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            calls["outputs"].append(outputs is None)

    trainer = quiet_trainer(max_epochs=1)
    with pytest.warns(UserWarning, match="train_dataloader yielded None"):
        trainer.fit(SomeNone())
    assert calls["outputs"] == [True, False, True, False]  # batch end runs for every batch, as in Lightning
    assert trainer.global_step == 2


def test_a_training_step_that_skips_its_batch_gives_the_batch_end_hooks_an_empty_dict():
    # as Lightning's automatic loop: `training_step` returned None, so the outputs are `{}` (a None batch: None)
    seen = []

    class Skips(CoreModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return None if batch_idx % 2 else loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            seen.append(sorted(outputs))

    from ember.trainer.step import _warning_cache

    _warning_cache.clear()  # it warns once a process, as Lightning's
    with pytest.warns(UserWarning, match="`training_step` returned `None`"):
        quiet_trainer(max_epochs=1).fit(Skips(), loader(n=16))
    assert seen == [["loss"], [], ["loss"], []]


def test_batch_outputs_reach_every_listener_that_may_read_them(tmp_path):
    """The step's outputs are built only for a listener that may read them: the default callbacks
    (progress bar, checkpoint) never do, a user's callback or a subclass that overrides the hook does."""
    from ember.callbacks import ModelCheckpoint, TQDMProgressBar

    seen = []

    class Bar(TQDMProgressBar):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(sorted(outputs))
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def fit(**kwargs):
        trainer = ember.Trainer(
            default_root_dir=tmp_path, max_epochs=1, logger=False, enable_model_summary=False, **kwargs
        )
        trainer.fit(CoreModel(), loader(n=8, batch_size=4))
        return trainer

    assert fit()._run.step.need_outputs is False  # the defaults: a bar and a checkpoint, both ignore them
    assert fit(callbacks=[ModelCheckpoint(dirpath=tmp_path / "c")])._run.step.need_outputs is False
    trainer = fit(callbacks=[Bar()])
    assert trainer._run.step.need_outputs is True and seen == [["loss"], ["loss"]]


def test_fit_loop_setup_data_counts_the_training_batches():
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(CoreModel(), loader(n=8, batch_size=4))
    trainer._run.train_dataloader = None
    trainer.fit_loop.setup_data()
    assert trainer.num_training_batches == 2


def test_max_epochs_is_decided_when_fit_starts():
    trainer = quiet_trainer()
    assert trainer.max_epochs is None and trainer.min_epochs is None  # as given, as in Lightning
    with pytest.warns(UserWarning, match="`max_epochs` was not set. Setting it to 1000 epochs"):
        trainer.fit(_Stopper(), loader(n=4))
    assert trainer.max_epochs == 1000 and trainer.min_epochs == 0
    limited = quiet_trainer(max_steps=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*max_epochs.*")
        limited.fit(CoreModel(), loader(n=16))  # max_steps limits training: no warning
    assert limited.max_epochs == -1 and limited.global_step == 2


class _Stopper(CoreModel):
    def on_train_epoch_end(self):
        self.trainer.should_stop = True


@pytest.mark.parametrize(
    ("kwargs", "attribute", "expected"),
    [
        ({"num_sanity_val_steps": -1}, "num_sanity_val_steps", float("inf")),
        ({"fast_dev_run": True}, "fast_dev_run", True),
        ({"limit_val_batches": 2.0}, "limit_val_batches", 2),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}, "device_ids", [0, 1]),
    ],
)
def test_trainer_attributes_read_as_in_lightning(kwargs, attribute, expected):
    trainer = ember.Trainer(logger=False, **kwargs)
    value = getattr(trainer, attribute)
    assert value == expected and type(value) is type(expected)


def test_loggers_set_to_none_is_an_empty_list():
    trainer = ember.Trainer(logger=False)
    trainer.loggers = None
    assert trainer.loggers == [] and trainer.logger is None


def test_precision_plugin_exists_before_any_call():
    trainer = ember.Trainer(logger=False, precision="bf16-mixed")
    assert trainer.precision_plugin is not None and trainer.precision_plugin.precision == "bf16-mixed"


def test_accelerator_connector_tells_integrations_whether_the_run_is_distributed():
    assert ember.Trainer(logger=False)._accelerator_connector.is_distributed is False
    spawn = ember.Trainer(logger=False, accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert spawn._accelerator_connector.is_distributed is True


def test_init_module_builds_on_the_device_in_the_precision_dtype():
    trainer = ember.Trainer(logger=False, accelerator="cpu", precision="64-true")
    with trainer.init_module():
        layer = nn.Linear(3, 2)
    assert layer.weight.dtype == torch.float64 and layer.weight.device.type == "cpu"
    assert torch.get_default_dtype() == torch.float32  # restored after the block


def test_init_module_with_empty_init_skips_the_weight_initialisation():
    class Filled(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(3))
            nn.init.constant_(self.weight, 5.0)

    trainer = ember.Trainer(logger=False, accelerator="cpu")
    with trainer.init_module(empty_init=True):
        skipped = Filled()
    with trainer.init_module():
        initialised = Filled()
    assert torch.equal(skipped.weight, torch.zeros(3))
    assert torch.equal(initialised.weight, torch.full((3,), 5.0))


def test_print_prints_on_local_rank_zero(capsys):
    ember.Trainer(logger=False).print("hello", 3)
    assert capsys.readouterr().out == "hello 3\n"


def test_received_sigterm_is_true_once_the_signal_arrived(tmp_path):
    seen = []

    class Terminate(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(trainer.received_sigterm)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler only raises the flag
            seen.append(trainer.received_sigterm)

    trainer = quiet_trainer(max_epochs=1, callbacks=[Terminate()], default_root_dir=tmp_path)
    with pytest.raises(PreemptionExit):
        trainer.fit(CoreModel(), loader(n=16, batch_size=4))
    assert seen == [False, True]
    assert trainer.received_sigterm


def test_sigterm_raises_lightnings_sigterm_exception_and_runs_the_programs_own_handler(tmp_path):
    from ember.utilities.exceptions import SIGTERMException

    handled = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: handled.append(signum))

    class Terminate(CoreModel):
        def training_step(self, batch, batch_idx):
            os.kill(os.getpid(), signal.SIGTERM)
            return super().training_step(batch, batch_idx)

    try:
        trainer = quiet_trainer(max_epochs=1, default_root_dir=tmp_path)
        with pytest.raises(SIGTERMException) as raised:
            trainer.fit(Terminate(), loader(n=8, batch_size=4))
        assert isinstance(raised.value, PreemptionExit)  # the checkpoint was saved first
        assert handled == [signal.SIGTERM] and trainer.received_sigterm
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_step_set_to_none_counts_as_absent():
    calls = []

    class NoValidation(CoreModel):
        def validation_step(self, batch, batch_idx):
            calls.append(batch_idx)

    on_instance = NoValidation()
    on_instance.validation_step = None
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(on_instance, loader(n=8), loader(n=4))
    NoValidation.validation_step = None  # on the class as well
    try:
        quiet_trainer(max_epochs=1).fit(NoValidation(), loader(n=8), loader(n=4))
    finally:
        del NoValidation.validation_step
    assert calls == []
    assert trainer.num_val_batches == []


def test_a_mock_callback_and_a_hook_set_on_the_instance_are_called():
    spy = mock.Mock(spec=Callback)
    spy.state_key = "spy"
    spy.state_dict.return_value = {}
    instance_hooked = Callback()
    epochs = []
    instance_hooked.on_train_epoch_end = lambda trainer, pl_module: epochs.append(trainer.current_epoch)
    quiet_trainer(max_epochs=2, callbacks=[spy, instance_hooked]).fit(CoreModel(), loader(n=8))
    assert spy.on_train_batch_end.call_count == 4 and spy.on_fit_end.call_count == 1
    assert epochs == [0, 1]


def test_evaluation_start_and_end_hooks_run_without_gradients():
    grad_enabled = {}

    class Spy(CoreModel):
        def on_validation_start(self):
            grad_enabled["validation_start"] = torch.is_grad_enabled()

        def on_validation_end(self):
            grad_enabled["validation_end"] = torch.is_grad_enabled()

        def on_test_start(self):
            grad_enabled["test_start"] = torch.is_grad_enabled()

        def on_predict_end(self):
            grad_enabled["predict_end"] = torch.is_grad_enabled()

        def test_step(self, batch, batch_idx):
            return None

    model = Spy()
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(n=8), loader(n=4))
    trainer.test(model, loader(n=4), verbose=False)
    trainer.predict(model, loader(n=4))
    assert grad_enabled == dict.fromkeys(("validation_start", "validation_end", "test_start", "predict_end"), False)


def test_a_torchmetrics_metric_logged_in_validation_is_reset_after_its_epoch_value():
    torchmetrics = pytest.importorskip("torchmetrics")

    class WithMetric(CoreModel):
        def __init__(self):
            super().__init__()
            self.mean_target = torchmetrics.MeanMetric()

        def validation_step(self, batch, batch_idx):
            self.mean_target(batch[1].mean())
            self.log("mean_target", self.mean_target)

    model = WithMetric()
    [result] = quiet_trainer(max_epochs=1).validate(model, loader(n=8), verbose=False)
    assert "mean_target" in result
    assert model.mean_target.update_count == 0  # reset once the epoch value was computed


def test_logging_in_on_train_start_is_allowed():
    class LogsAtStart(CoreModel):
        def on_train_start(self):
            self.log("lr_at_start", 0.5)

    trainer = quiet_trainer(max_steps=1)
    trainer.fit(LogsAtStart(), loader(n=8))
    assert trainer.callback_metrics["lr_at_start"].item() == 0.5


def test_setup_and_teardown_get_the_stage_by_keyword():
    stages = []

    class Named(CoreModel):
        def setup(self, stage=None):
            stages.append(("setup", stage))

        def teardown(self, stage=None):
            stages.append(("teardown", stage))

    class Spy(Callback):
        def setup(self, trainer, pl_module, stage):
            stages.append(("callback", stage))

    quiet_trainer(max_steps=1, callbacks=[Spy()]).fit(Named(), loader(n=8))
    assert stages == [("callback", "fit"), ("setup", "fit"), ("teardown", "fit")]

    class OtherName(CoreModel):
        def setup(self, stage_name):
            pass

    with pytest.raises(TypeError, match="unexpected keyword argument 'stage'"):  # as in Lightning
        quiet_trainer(max_steps=1).fit(OtherName(), loader(n=8))


def test_reduce_fx_names_are_case_insensitive():
    class Upper(CoreModel):
        def validation_step(self, batch, batch_idx):
            self.log("v_max", batch[1].max(), reduce_fx="MAX")
            self.log("v_mean", batch[1].mean(), reduce_fx="Mean")

    [result] = quiet_trainer().validate(Upper(), loader(n=8), verbose=False)
    assert set(result) == {"v_max", "v_mean"}


def test_an_unknown_reduce_fx_is_refused_in_lightnings_words():
    class Argmax(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("v", batch[1].sum(), reduce_fx=torch.argmax)
            return super().training_step(batch, batch_idx)

    match = r"Only `self.log\(..., reduce_fx=\{min,max,mean,sum\}\)` are supported.*torchmetrics.Metric.*argmax"
    with pytest.raises(ember.utilities.exceptions.MisconfigurationException, match=match):
        quiet_trainer(max_steps=1).fit(Argmax(), loader(n=8))


def test_predict_over_an_iterable_dataset():
    from torch.utils.data import DataLoader, IterableDataset

    class Stream(IterableDataset):
        def __iter__(self):
            return iter([(torch.full((4,), float(i)),) for i in range(5)])

    class Predictor(CoreModel):
        def predict_step(self, batch, batch_idx):
            return batch[0][:, 0]

    predictions = quiet_trainer().predict(Predictor(), DataLoader(Stream(), batch_size=2))
    assert [p.tolist() for p in predictions] == [[0.0, 1.0], [2.0, 3.0], [4.0]]


def test_predict_keeps_the_last_batch_a_loader_would_drop_and_test_does_not():
    # as Lightning: every sample gets its prediction (chemprop drops a last batch of one, for BatchNorm)
    from torch.utils.data import DataLoader, TensorDataset

    class Counting(CoreModel):
        def test_step(self, batch, batch_idx):
            self.seen = getattr(self, "seen", 0) + len(batch[0])

    data = TensorDataset(torch.arange(10.0).reshape(5, 2).repeat(1, 2), torch.zeros(5, 1))
    model, drops = Counting(), DataLoader(data, batch_size=2, drop_last=True)
    predictions = quiet_trainer().predict(model, drops)
    assert [len(p) for p in predictions] == [2, 2, 1]
    quiet_trainer().test(model, drops, verbose=False)
    assert model.seen == 4  # the other loops keep the loader's `drop_last`
    assert drops.drop_last  # the user's loader is left as it was


def test_return_predictions_with_spawned_processes_is_lightnings_error():
    trainer = ember.Trainer(logger=False, accelerator="cpu", devices=2, strategy="ddp_spawn")
    with pytest.raises(ember.utilities.MisconfigurationException, match="should be set to `False`"):
        trainer.predict(CoreModel(), loader(n=8), return_predictions=True)


def test_resuming_without_the_checkpoints_callbacks_warns_as_lightning(tmp_path):
    from ember.callbacks import EarlyStopping

    first = quiet_trainer(max_steps=2, callbacks=[EarlyStopping("val_loss", strict=False)], default_root_dir=tmp_path)
    first.fit(CoreModel(), loader(n=8))
    first.save_checkpoint(tmp_path / "a.ckpt")
    with pytest.warns(UserWarning, match=r"callbacks used to create the checkpoint need to be provided.*EarlyStopping"):
        quiet_trainer(max_steps=3).fit(CoreModel(), loader(n=8), ckpt_path=tmp_path / "a.ckpt")

    # the warning comes before the callbacks' `on_load_checkpoint`, as in Lightning: one that fails leaves it given
    class FailsToLoad(Callback):
        def on_load_checkpoint(self, trainer, pl_module, checkpoint):
            raise RuntimeError("cannot load")

    with pytest.warns(UserWarning, match="callbacks used to create the checkpoint") as caught:
        with pytest.raises(RuntimeError, match="cannot load"):
            quiet_trainer(max_steps=3, callbacks=[FailsToLoad()]).fit(
                CoreModel(), loader(n=8), ckpt_path=tmp_path / "a.ckpt"
            )
    assert any("EarlyStopping" in str(w.message) for w in caught)


class _HookSpy(Callback):
    """Records ``(hook, *read(trainer))`` in the given ``hooks`` of those around a fit's start and end."""

    def __init__(self, read, hooks) -> None:
        self.read, self.hooks = read, hooks
        self.seen: list[tuple] = []

    def _see(self, hook: str, trainer: ember.Trainer) -> None:
        if hook in self.hooks:
            self.seen.append((hook, *self.read(trainer)))

    def on_sanity_check_start(self, trainer, pl_module):
        self._see("sanity_check_start", trainer)

    def on_train_start(self, trainer, pl_module):
        self._see("train_start", trainer)

    def on_train_epoch_start(self, trainer, pl_module):
        self._see("train_epoch_start", trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._see("train_batch_start", trainer)

    def on_train_end(self, trainer, pl_module):
        self._see("train_end", trainer)

    def on_fit_end(self, trainer, pl_module):
        self._see("fit_end", trainer)


# (hook, current_epoch, global_step) as each hook runs, and current_epoch after fit; recorded on Lightning
# 2.6.6, resuming the checkpoints of a 2-epoch fit of 2 batches an epoch
@pytest.mark.parametrize(
    ("checkpoint", "limits", "hooks", "epoch_after"),
    [
        (
            "end_of_epoch_1",
            {"max_epochs": 3},
            [("sanity_check_start", 1, 4), ("train_start", 2, 4), ("train_epoch_start", 2, 4), ("train_end", 3, 6)],
            3,
        ),
        # nothing left to train: no training hooks
        ("end_of_epoch_1", {"max_epochs": 2}, [("sanity_check_start", 1, 4)], 2),
        ("end_of_epoch_1", {"max_steps": 4}, [], 1),
        # a step-limited run and a mid-epoch checkpoint restart Lightning's loops: no sanity check
        (
            "end_of_epoch_1",
            {"max_steps": 5},
            [("train_start", 1, 4), ("train_epoch_start", 2, 4), ("train_end", 3, 5)],
            3,
        ),
        ("step_3", {"max_epochs": 3}, [("train_start", 1, 3), ("train_epoch_start", 2, 4), ("train_end", 3, 6)], 3),
    ],
)
def test_current_epoch_and_the_hooks_of_a_resumed_fit_are_lightnings(tmp_path, checkpoint, limits, hooks, epoch_after):
    from ember.callbacks import ModelCheckpoint

    callbacks = [
        ModelCheckpoint(dirpath=tmp_path, save_last=True),
        ModelCheckpoint(dirpath=tmp_path / "steps", every_n_train_steps=3, save_top_k=-1, filename="{step}"),
    ]
    quiet = {"enable_checkpointing": True, "max_epochs": None, "default_root_dir": tmp_path}
    quiet_trainer(**{**quiet, "max_epochs": 2}, callbacks=callbacks).fit(CoreModel(), loader(8), loader(8))
    path = tmp_path / "last.ckpt" if checkpoint == "end_of_epoch_1" else tmp_path / "steps" / "step=3.ckpt"
    spy = _HookSpy(
        lambda trainer: (trainer.current_epoch, trainer.global_step),
        ("sanity_check_start", "train_start", "train_epoch_start", "train_end"),
    )
    trainer = quiet_trainer(**{**quiet, **limits}, num_sanity_val_steps=2, callbacks=[spy])
    trainer.fit(CoreModel(), loader(8), loader(8), ckpt_path=path)
    assert spy.seen == hooks
    assert trainer.current_epoch == epoch_after


@pytest.mark.parametrize("written", ["at the epoch's end", "after fit", "by lightning at the epoch's end"])
def test_a_fit_resumed_from_an_epochs_end_holds_the_checkpoints_batch_counts_till_its_first_batch(tmp_path, written):
    # as Lightning's batch progress, loaded from the checkpoint, and as between two epochs of one run (observed
    # on Lightning 2.6.6: 4/4 through the sanity check, on_train_start and on_train_epoch_start)
    first = quiet_trainer(max_epochs=1, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path)])
    first.fit(CoreModel(), loader(n=16, batch_size=4))  # 4 batches
    path = first.checkpoint_callback.best_model_path
    if written == "after fit":
        path = tmp_path / "after_fit.ckpt"
        first.save_checkpoint(path)
    elif written.startswith("by lightning"):  # Lightning's counters only
        checkpoint = torch.load(path, weights_only=True)
        del checkpoint["ember"]
        path = tmp_path / "lightning.ckpt"
        torch.save(checkpoint, path)

    def batch_counts(trainer):
        current = trainer.fit_loop.epoch_loop.batch_progress.current
        return current.completed, current.ready

    spy = _HookSpy(batch_counts, ("sanity_check_start", "train_start", "train_epoch_start", "train_batch_start"))
    resumed = quiet_trainer(max_epochs=2, num_sanity_val_steps=1, callbacks=[spy])
    resumed.fit(CoreModel(), loader(n=16, batch_size=4), loader(n=4), ckpt_path=path)
    assert spy.seen[:4] == [
        ("sanity_check_start", 4, 4),
        ("train_start", 4, 4),
        ("train_epoch_start", 4, 4),
        ("train_batch_start", 0, 1),
    ]


@pytest.mark.parametrize("max_epochs", [2, 1], ids=["an epoch to train", "nothing to train"])
def test_a_resumed_fit_in_a_new_trainer_reads_is_last_batch_from_the_checkpoint_till_its_first_batch(
    tmp_path, max_epochs
):
    # as Lightning's batch progress, loaded from the checkpoint: the finished epoch's last batch was its last
    first = quiet_trainer(max_epochs=1, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path)])
    first.fit(CoreModel(), loader(n=12, batch_size=4))
    spy = _HookSpy(
        lambda trainer: (trainer.is_last_batch,), ("sanity_check_start", "train_start", "train_epoch_start", "fit_end")
    )
    resumed = quiet_trainer(max_epochs=max_epochs, num_sanity_val_steps=1, callbacks=[spy])
    resumed.fit(
        CoreModel(), loader(n=12, batch_size=4), loader(n=4), ckpt_path=first.checkpoint_callback.best_model_path
    )
    if max_epochs == 2:
        expected = [("sanity_check_start", True), ("train_start", True), ("train_epoch_start", True)]
        assert spy.seen == [*expected, ("fit_end", True)]
    else:
        assert spy.seen == [("sanity_check_start", True), ("fit_end", True)]


@pytest.mark.parametrize("count", ["completed += 1", "increment_completed()"])
def test_steps_of_raw_optimizers_counted_through_optim_step_progress_move_the_global_step(count):
    class RawSteps(CoreModel):
        """Steps the torch optimizer itself and counts the step as PINA's manual-optimization solvers do."""

        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers().optimizer  # the raw torch optimizer: Ember cannot see its steps
            opt.zero_grad()
            self.manual_backward(super().training_step(batch, batch_idx))
            opt.step()

        def on_train_batch_end(self, outputs, batch, batch_idx):
            progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
            if count == "completed += 1":
                progress.total.completed += 1
            else:  # the other common way (GitHub programs that keep global_step with raw optimizers)
                progress.increment_completed()

    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(RawSteps(), loader(n=12, batch_size=4))
    assert trainer.global_step == 6
    epoch_loop = trainer.fit_loop.epoch_loop
    assert epoch_loop.manual_optimization.optim_step_progress.total.completed == 6
    assert epoch_loop.automatic_optimization.optim_progress.optimizer.step.total.completed == 6
    assert epoch_loop.manual_optimization.optim_step_progress.state_dict()["total"] == {"ready": 6, "completed": 6}


def test_the_accelerator_connector_names_the_parallel_devices():
    trainer = quiet_trainer(accelerator="cpu", devices=1)
    assert trainer._accelerator_connector._parallel_devices == [torch.device("cpu")]


def test_devices_from_a_config_list_are_accepted():
    omegaconf = pytest.importorskip("omegaconf")
    config = omegaconf.OmegaConf.create({"accelerator": "cuda", "devices": [0], "logger": False})
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=1),
    ):
        trainer = ember.Trainer(**config)  # as Hydra passes it: `devices` is a ListConfig
    assert trainer.device_ids == [0]


def test_a_predict_step_returning_none_warns_once_as_lightning():
    class Silent(CoreModel):
        def predict_step(self, batch, batch_idx):
            return None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictions = quiet_trainer().predict(Silent(), loader(n=12, batch_size=4))
    assert predictions == [None, None, None]
    said = [str(w.message) for w in caught if "predict returned None" in str(w.message)]
    assert said == ["predict returned None if it was on purpose, ignore this warning..."]


@pytest.mark.parametrize("call", ["validate", "test", "predict"])
def test_a_loop_limited_to_no_batches_does_not_ask_for_its_dataloaders(call):
    asked = []

    class Model(CoreModel):
        def val_dataloader(self):
            asked.append("val")
            return loader()

        def test_dataloader(self):
            asked.append("test")
            return loader()

        def predict_dataloader(self):
            asked.append("predict")
            return loader()

        def predict_step(self, batch, batch_idx):
            return batch[0]

    limits = {"limit_val_batches": 0, "limit_test_batches": 0, "limit_predict_batches": 0}
    result = getattr(quiet_trainer(**limits), call)(Model())
    assert asked == []
    assert result == ([] if call != "predict" else None)


def test_the_results_table_is_laid_out_as_lightnings_plain_table(capsys, monkeypatch):
    from ember.trainer.metrics import print_results

    monkeypatch.setenv("COLUMNS", "120")
    print_results([{"test_loss": torch.tensor(0.25), "a" * 70: torch.tensor(1.5)}], "test")
    print_results([{"v": torch.tensor([1.0])}], "validate")
    bar = "─" * 120
    # what Lightning 2.6.6 prints for the same results without rich (a 120-column terminal)
    assert capsys.readouterr().out.splitlines() == [
        bar,
        " " * 24 + "Test metric" + " " * 49 + "DataLoader 0",
        bar,
        "a" * 60 + " " * 28 + "1.5",
        " " * 25 + "a" * 10,
        " " * 25 + "test_loss" + " " * 54 + "0.25",
        bar,
        bar,
        "     Validate metric           DataLoader 0",
        bar,
        "            v                       1.0",
        bar,
    ]


@pytest.fixture
def torch_determinism():
    """Tests below change torch's process-wide deterministic mode: put it back."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_deterministic_sets_torchs_mode_as_lightning_does(torch_determinism, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    ember.Trainer(deterministic=True, logger=False)
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    ember.Trainer(deterministic="warn", logger=False)
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    ember.Trainer(logger=False)  # not given: left as the program set it
    assert torch.are_deterministic_algorithms_enabled()
    ember.Trainer(deterministic=False, logger=False)  # given: turned off
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.warns(UserWarning, match="PyTorch ignores torch.backends.cudnn.deterministic=True"):
        ember.Trainer(deterministic=True, benchmark=True, logger=False)


def test_the_private_checkpoint_connector_dumps_what_save_checkpoint_writes(tmp_path, caplog):
    # mlflow's autologging writes its checkpoints through `trainer._checkpoint_connector.dump_checkpoint`
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(CoreModel(), loader())
    trainer.save_checkpoint(tmp_path / "saved.ckpt", weights_only=False)
    with caplog.at_level("INFO"):
        dumped = trainer._checkpoint_connector.dump_checkpoint()
    assert set(dumped) == set(torch.load(tmp_path / "saved.ckpt", weights_only=True))
    assert "optimizer_states" not in trainer._checkpoint_connector.dump_checkpoint(weights_only=True)
    said = [r.getMessage() for r in caplog.records if "weights_only" in r.getMessage()]
    assert said == ["`weights_only` was not set, defaulting to `False`."]


def test_the_trainers_start_up_lines_come_in_lightnings_order(caplog):
    from ember.callbacks import ModelSummary

    with caplog.at_level("INFO"):
        ember.Trainer(
            callbacks=[ModelSummary()], fast_dev_run=True, detect_anomaly=True, logger=False, enable_progress_bar=False
        )
    said = [r.getMessage() for r in caplog.records]
    expected = [
        "Trainer already configured with model summary callbacks",
        "You have turned on `Trainer(detect_anomaly=True)`. This will significantly slow down compute speed",
        "Running in `fast_dev_run` mode",
    ]
    assert [next(i for i, m in enumerate(said) if m.startswith(e)) for e in expected] == sorted(
        next(i for i, m in enumerate(said) if m.startswith(e)) for e in expected
    )


def test_the_fit_loop_holds_the_combined_loader_of_the_training_loaders():
    # cellarium-ml sets its datasets' epoch through `trainer.fit_loop._combined_loader`, one loader too
    seen = []

    class Reads(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            combined = trainer.fit_loop._combined_loader
            seen.append((type(combined).__name__, combined.flattened[0] is trainer.train_dataloader))

    trainer = quiet_trainer(max_epochs=1, callbacks=[Reads()])
    assert trainer.fit_loop._combined_loader is None  # before fit asks for the loaders, as in Lightning
    trainer.fit(CoreModel(), loader())
    assert seen == [("CombinedLoader", True)]


def test_a_batch_counts_as_completed_after_its_batch_end_hooks_as_in_lightning():
    # cellarium-ml's `on_save_checkpoint` tells a step-triggered save from the gap between the two counts
    seen = []

    class Reads(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(("start", batch_idx, *self._counts(trainer)))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(("end", batch_idx, *self._counts(trainer)))

        @staticmethod
        def _counts(trainer):
            progress = trainer.fit_loop.epoch_loop.batch_progress
            return progress.current.processed, progress.current.completed, progress.total.completed

    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, callbacks=[Reads()])
    trainer.fit(CoreModel(), loader())
    # observed on Lightning 2.6.6: processed counts the batch before its end hooks, completed after them
    assert seen == [("start", 0, 0, 0, 0), ("end", 0, 1, 0, 0), ("start", 1, 1, 1, 1), ("end", 1, 2, 1, 1)]


def test_the_private_teardown_can_be_called_after_a_run_and_again(tmp_path):
    # Lightning's own tests (and some tools) call `trainer._teardown()` after `fit` returns
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer._teardown()  # before any call: nothing to release
    model = CoreModel()
    trainer.fit(model, loader())
    metrics = dict(trainer.callback_metrics)
    trainer._teardown()
    trainer._teardown()
    assert trainer.callback_metrics == metrics
    again = quiet_trainer(max_steps=4, default_root_dir=tmp_path)
    again.fit(model, loader())  # the module and the process stay usable
    assert again.global_step == 4


def test_validation_inside_fit_zeroes_grads_with_a_plain_zero_grad_call():
    # Lightning calls `self.zero_grad()` before validation, so an override without arguments works
    class PlainZeroGrad(CoreModel):
        calls = 0

        def zero_grad(self):  # type: ignore[override]
            type(self).calls += 1
            super().zero_grad()

        def validation_step(self, batch, batch_idx):
            return None

    model = PlainZeroGrad()
    quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1).fit(model, loader(), loader())
    assert PlainZeroGrad.calls == 2  # at the start of fit and before validation


class _ScoredEpochs(CoreModel):
    """Adam with a halving StepLR; validation scores epochs 3, 1, 2, so epoch 1 is the best."""

    def validation_step(self, batch, batch_idx):
        self.log("score", torch.tensor([3.0, 1.0, 2.0][self.current_epoch]))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)]


def _fit_scored_epochs(tmp_path, model: _ScoredEpochs, callback: Callback) -> tuple[ember.Trainer, ModelCheckpoint]:
    """Three epochs of two batches, checkpointing the best `score` (epoch 1's, at step 4) into tmp_path."""
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="score", mode="min")
    trainer = quiet_trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        enable_checkpointing=True,
        callbacks=[checkpoint, callback],
    )
    trainer.fit(model, loader(), loader())
    return trainer, checkpoint


def test_the_private_checkpoint_connector_restores_the_best_checkpoint_at_train_end(tmp_path):
    # NeMo's checkpoint callback loads the best weights back this way when training ends

    seen: list[tuple[int, int, float]] = []

    class RestoreBest(Callback):
        def on_train_end(self, trainer, pl_module):
            trainer._checkpoint_connector.restore(trainer.checkpoint_callback.best_model_path)
            seen.append((trainer.global_step, trainer.current_epoch, trainer.optimizers[0].param_groups[0]["lr"]))

    model = _ScoredEpochs()
    trainer, checkpoint = _fit_scored_epochs(tmp_path, model, RestoreBest())
    assert os.path.basename(checkpoint.best_model_path) == "epoch=1-step=4.ckpt"
    assert seen == [(4, 1, 0.025)]  # observed on Lightning 2.6.6: the counters and the scheduler go back too
    best = torch.load(checkpoint.best_model_path, weights_only=True)
    for key, value in best["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value)
    assert trainer.optimizers[0].state_dict()["state"][0]["step"] == 4


def test_the_private_checkpoint_connector_restore_says_what_it_cannot_do(tmp_path):
    from ember.callbacks import ModelCheckpoint

    with pytest.raises(RuntimeError, match=r"restores into a trainer that has run.*pass `ckpt_path=...`"):
        quiet_trainer()._checkpoint_connector.restore(tmp_path / "any.ckpt")
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_weights_only=True)
    weights_only = []

    class RestoreWeightsOnly(Callback):
        def on_train_end(self, trainer, pl_module):
            try:
                trainer._checkpoint_connector.restore(checkpoint.best_model_path)
            except KeyError as error:
                weights_only.append(str(error))

    trainer = quiet_trainer(max_epochs=1, enable_checkpointing=True, callbacks=[checkpoint, RestoreWeightsOnly()])
    trainer.fit(CoreModel(), loader())
    assert "checkpoint contains only the model" in weights_only[0]
    trainer._checkpoint_connector.restore(None)  # Lightning's: nothing to restore


class _RestartingProbe(Callback):
    """Records ``fit_loop.restarting`` and ``fit_loop.epoch_loop.restarting`` (as 0/1) at each hook."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _record(self, trainer, where: str) -> None:
        loop = trainer.fit_loop
        self.seen.append(f"{where}:{int(loop.restarting)}{int(loop.epoch_loop.restarting)}")

    def on_train_start(self, trainer, pl_module):
        self._record(trainer, "train_start")

    def on_train_epoch_start(self, trainer, pl_module):
        self._record(trainer, f"epoch{trainer.current_epoch}_start")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._record(trainer, f"batch{batch_idx}")

    def on_train_epoch_end(self, trainer, pl_module):
        self._record(trainer, f"epoch{trainer.current_epoch}_end")

    def on_train_end(self, trainer, pl_module):
        self._record(trainer, "train_end")


def test_fit_loop_restarting_is_true_from_a_mid_epoch_resume_until_that_epoch_ends(tmp_path):
    from ember.callbacks import ModelCheckpoint

    steps = ModelCheckpoint(dirpath=tmp_path, filename="{step}", save_top_k=-1, every_n_train_steps=1)
    epochs = ModelCheckpoint(dirpath=tmp_path, filename="end-{epoch}")
    first = quiet_trainer(max_epochs=1, limit_train_batches=3, enable_checkpointing=True, callbacks=[steps, epochs])
    first.fit(CoreModel(), loader())

    def resume(ckpt: str, **limits) -> list[str]:
        probe = _RestartingProbe()
        trainer = quiet_trainer(limit_train_batches=3, callbacks=[probe], **limits)
        trainer.fit(CoreModel(), loader(), ckpt_path=tmp_path / ckpt)
        assert not trainer.fit_loop.restarting
        return probe.seen

    # as Lightning 2.6.6 up to the end of the resumed epoch (its `epoch_loop.restarting` stays True
    # through a validation that the first resumed batch starts)
    assert resume("step=2.ckpt", max_epochs=2) == [
        "train_start:11",
        "batch2:11",
        "epoch0_end:10",
        "epoch1_start:00",
        "batch0:00",
        "batch1:00",
        "batch2:00",
        "epoch1_end:00",
        "train_end:00",
    ]
    # from the last batch, before the epoch's end: the epoch ends at once
    assert resume("step=3.ckpt", max_epochs=2)[:3] == ["train_start:11", "epoch0_end:10", "epoch1_start:00"]
    # from an epoch's end: no restart, unless `max_steps` limits the run (Lightning's rule)
    assert resume("end-epoch=0.ckpt", max_epochs=2)[:2] == ["train_start:00", "epoch1_start:00"]
    assert resume("end-epoch=0.ckpt", max_epochs=-1, max_steps=5)[:2] == ["train_start:11", "epoch1_start:00"]
    probe = _RestartingProbe()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, callbacks=[probe])
    trainer.fit(CoreModel(), loader())
    assert set(entry[-2:] for entry in probe.seen) == {"00"}  # a fresh run never restarts
    trainer.fit_loop.restarting = True  # Lightning's tuner copies reset it by hand after a restore
    assert trainer.fit_loop.restarting
    trainer.fit_loop.restarting = False
    assert not trainer.fit_loop.restarting


def test_the_checkpoint_connectors_restore_steps_bring_back_the_best_weights_and_optimizer(tmp_path):
    # finetuning-scheduler restores the best checkpoint this way at each phase change

    restored: list[dict] = []

    class RestoreBestAtEpochTwo(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch != 2:
                return
            connector = trainer._checkpoint_connector
            connector.resume_start(checkpoint_path=trainer.checkpoint_callback.best_model_path)
            loaded = connector._loaded_checkpoint
            connector.restore_datamodule()
            connector.restore_model()
            connector.restore_precision_plugin_state()
            connector.restore_optimizers_and_schedulers()
            restored.append(
                {
                    "step": loaded["global_step"],
                    "weights": {k: v.clone() for k, v in pl_module.state_dict().items()},
                    "adam_step": float(trainer.optimizers[0].state_dict()["state"][0]["step"]),
                    "lr": trainer.optimizers[0].param_groups[0]["lr"],
                    "global_step": trainer.global_step,  # the counters are not restored by these steps
                }
            )
            connector.resume_end()
            assert connector._loaded_checkpoint == {}

    _fit_scored_epochs(tmp_path, _ScoredEpochs(), RestoreBestAtEpochTwo())
    best = torch.load(tmp_path / "epoch=1-step=4.ckpt", weights_only=True)
    (seen,) = restored
    assert seen["step"] == 4 and seen["adam_step"] == 4.0 and seen["lr"] == 0.025 and seen["global_step"] == 4
    for key, value in best["state_dict"].items():
        assert torch.equal(seen["weights"][key], value)


def test_the_running_loops_logged_values_and_callback_order_through_lightnings_private_names():
    # finetuning-scheduler checks `sync_dist` of its monitored value and reorders the callbacks it adds
    from ember.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    seen: list[tuple] = []

    class ReadsResults(Callback):
        def on_validation_end(self, trainer, pl_module):
            seen.extend(
                (m.meta.name, m.meta.sync.should, m.meta.on_epoch, m.is_tensor) for m in trainer._results.result_metrics
            )
            # RePlay's metric callbacks name their values per dataloader with the results' suffix
            seen.append(trainer._results.DATALOADER_SUFFIX.format(1))

    class Logs(_ScoredEpochs):
        def validation_step(self, batch, batch_idx):
            self.log("score", torch.tensor(1.0), sync_dist=True)

    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, callbacks=[ReadsResults()])
    assert trainer._results is None  # between loops
    trainer.fit(Logs(), loader(), loader())
    assert seen == [("score", False, True, True), "/dataloader_idx_1"]  # one process: nothing to reduce
    checkpoint, stopping, monitor = ModelCheckpoint(), EarlyStopping("score"), LearningRateMonitor()
    reordered = trainer._callback_connector._reorder_callbacks([checkpoint, stopping, monitor])
    assert reordered == [stopping, monitor, checkpoint]


def test_a_strategy_that_overrides_the_checkpoint_loaders_the_lightning_way_gets_the_whole_checkpoint(tmp_path):
    # Lightning's `Strategy.load_model_state_dict(checkpoint, strict)` and `load_optimizer_state_dict(checkpoint)`
    from ember.strategies import SingleDeviceStrategy

    calls: list[tuple] = []

    class Recording(SingleDeviceStrategy):
        def load_model_state_dict(self, checkpoint, strict=True):
            calls.append(("model", checkpoint["global_step"], sorted(checkpoint["state_dict"]), strict))
            self.lightning_module.load_state_dict(checkpoint["state_dict"], strict=strict)  # returns nothing

        def load_optimizer_state_dict(self, checkpoint):
            calls.append(("optimizers", checkpoint["global_step"], len(checkpoint["optimizer_states"])))
            super().load_optimizer_state_dict(checkpoint)

    first = quiet_trainer(max_steps=2)
    first.fit(CoreModel(), loader())
    first.save_checkpoint(tmp_path / "two.ckpt")
    model = CoreModel()
    resumed = quiet_trainer(max_steps=3, strategy=Recording(device=torch.device("cpu")))
    resumed.fit(model, loader(), ckpt_path=tmp_path / "two.ckpt")
    assert calls == [("model", 2, ["layer.bias", "layer.weight"], True), ("optimizers", 2, 1)]
    assert resumed.global_step == 3
    # the default loaders take the whole checkpoint too
    saved = torch.load(tmp_path / "two.ckpt", weights_only=True)
    resumed.strategy.load_model_state_dict(saved)
    for key, value in saved["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value)
    SingleDeviceStrategy.load_optimizer_state_dict(resumed.strategy, saved)
    assert (
        resumed.optimizers[0].state_dict()["param_groups"][0]["lr"]
        == saved["optimizer_states"][0]["param_groups"][0]["lr"]
    )


@pytest.mark.parametrize("restore_after_setup", [False, True])
def test_a_strategy_that_overrides_setup_runs_it_before_or_after_the_restore_as_it_says(tmp_path, restore_after_setup):
    # Lightning's `Strategy.setup(trainer)`: a custom strategy extends it and calls `super().setup(trainer)`
    from ember.strategies import SingleDeviceStrategy

    events: list[str] = []

    class Extending(SingleDeviceStrategy):
        def setup(self, trainer):
            super().setup(trainer)
            fitting = trainer.state.fn.value == "fit"
            events.append(f"setup:fit:{len(trainer.optimizers)}" if fitting else f"setup:{trainer.state.fn.value}")

        @property
        def restore_checkpoint_after_setup(self):
            return restore_after_setup

        def load_checkpoint(self, checkpoint_path, weights_only=None):
            events.append("load")
            return super().load_checkpoint(checkpoint_path, weights_only)

    first = quiet_trainer(max_steps=2)
    first.fit(CoreModel(), loader())
    first.save_checkpoint(tmp_path / "two.ckpt")
    trainer = quiet_trainer(max_steps=3, strategy=Extending(device=torch.device("cpu")))
    trainer.fit(CoreModel(), loader(), ckpt_path=tmp_path / "two.ckpt")
    trainer.validate(CoreModel(), loader(), ckpt_path=tmp_path / "two.ckpt", verbose=False)
    setup_fit, setup_validate = "setup:fit:1", "setup:validate"  # fit's optimizers exist once it set them up
    if restore_after_setup:
        assert events == [setup_fit, "load", setup_validate, "load"]
    else:
        assert events == ["load", setup_fit, "load", setup_validate]
    assert trainer.global_step == 3


class _RemembersSaving(CoreModel):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()

    def on_save_checkpoint(self, checkpoint):
        checkpoint["saved_by_the_module"] = True


@pytest.mark.parametrize("io", ["sync", "async"])
def test_a_trainer_that_never_ran_saves_the_module_connected_to_its_strategy(tmp_path, io, caplog):
    # opensoundscape's `save()`: a fresh Trainer, `strategy.connect(model=...)`, `save_checkpoint`: Lightning writes
    # a whole checkpoint of the untrained state, with the Trainer's callbacks and the module's hook
    from ember.plugins import AsyncCheckpointIO

    plugins = [AsyncCheckpointIO()] if io == "async" else None
    trainer = ember.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path, plugins=plugins)
    module = _RemembersSaving(width=7)
    trainer.strategy.connect(model=module)  # Lightning's keyword
    path = tmp_path / "saved.ckpt"
    trainer.save_checkpoint(path, weights_only=False)
    # outside a call, no teardown will wait for a queued write: the file is whole when the save returns
    checkpoint = torch.load(path, weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, 0)
    assert checkpoint["hyper_parameters"] == {"width": 7} and checkpoint["saved_by_the_module"] is True
    assert [key.split("{")[0] for key in checkpoint["callbacks"]] == ["ModelCheckpoint"]
    assert checkpoint["optimizer_states"] == [] and checkpoint["lr_schedulers"] == []
    loaded = _RemembersSaving.load_from_checkpoint(path)
    assert loaded.hparams.width == 7
    assert torch.equal(loaded.layer.weight, module.layer.weight)
    # training resumes from it: no optimizer existed when it was saved, so they start afresh, saying so
    trainer = ember.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path, max_steps=2)
    with caplog.at_level("INFO"):
        trainer.fit(module, loader(), ckpt_path=path)
    assert trainer.global_step == 2
    assert "The checkpoint holds no optimizer states" in caplog.text


def test_resuming_with_another_number_of_optimizers_than_the_checkpoint_holds_names_both(tmp_path):
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer.fit(CoreModel(), loader())
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    checkpoint = torch.load(tmp_path / "one.ckpt", weights_only=True)
    checkpoint["optimizer_states"] *= 2  # as written by a run with two optimizers
    torch.save(checkpoint, tmp_path / "two.ckpt")
    with pytest.raises(RuntimeError, match="holds 2 optimizer states but `configure_optimizers` returned 1 optimizers"):
        quiet_trainer(max_steps=3).fit(CoreModel(), loader(), ckpt_path=tmp_path / "two.ckpt")


def test_resuming_with_another_optimizer_type_names_the_settings_the_saved_state_lacks(tmp_path):
    # torch loads an SGD state into Adam without a word, and the first step failed with a bare KeyError: 'betas'
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer.fit(CoreModel(), loader())
    trainer.save_checkpoint(tmp_path / "sgd.ckpt")
    adam = CoreModel(optimizers=lambda m: torch.optim.Adam(m.parameters(), lr=0.01))
    with pytest.raises(
        RuntimeError, match=r"optimizer state 0 does not fit this run's Adam: it lacks the settings \['betas', 'eps'\]"
    ):
        quiet_trainer(max_steps=3).fit(adam, loader(), ckpt_path=tmp_path / "sgd.ckpt")


def test_resuming_with_other_parameters_names_the_group_sizes(tmp_path):
    # torch's "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer.fit(CoreModel(), loader())
    trainer.save_checkpoint(tmp_path / "one.ckpt")

    class Wider(CoreModel):
        strict_loading = False  # the weights load; the optimizer's state cannot

        def __init__(self):
            super().__init__()
            self.extra = nn.Linear(2, 2)

    with pytest.raises(
        RuntimeError,
        match=r"Optimizer 0 \(SGD\) was saved with parameter groups of \[2\] parameters; this run's has \[4\]",
    ):
        quiet_trainer(max_steps=3).fit(Wider(), loader(), ckpt_path=tmp_path / "one.ckpt")


def test_a_scheduler_added_since_the_checkpoint_still_resumes(tmp_path):
    # the scheduler's `initial_lr` is not a setting of the optimizer type: its absence from the saved state is fine
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer.fit(CoreModel(), loader())
    trainer.save_checkpoint(tmp_path / "plain.ckpt")

    def with_scheduler(m):
        optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1)]

    trainer = quiet_trainer(max_steps=3)
    trainer.fit(CoreModel(optimizers=with_scheduler), loader(), ckpt_path=tmp_path / "plain.ckpt")
    assert trainer.global_step == 3


@pytest.mark.parametrize("takes_iterator", [False, True])
def test_should_stop_set_when_an_epoch_starts_runs_none_of_its_batches(takes_iterator):
    from tests.helpers.core_models import CoreModel, loader

    seen = []

    class StopsAtEpochOne(CoreModel):
        def on_train_epoch_start(self):
            if self.current_epoch == 1:
                self.trainer.should_stop = True

        def on_train_batch_start(self, batch, batch_idx):
            seen.append(("batch", self.current_epoch))

        def on_validation_epoch_end(self):
            seen.append(("validation", self.current_epoch))

    if takes_iterator:

        def training_step(self, dataloader_iter):
            batch, batch_idx, _ = next(dataloader_iter)
            return CoreModel.training_step(self, batch, batch_idx)

        StopsAtEpochOne.training_step = training_step

    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(StopsAtEpochOne(), loader(n=8), loader(n=4))
    assert trainer.global_step == 2 and trainer.current_epoch == 2  # the stopped epoch counts as done
    assert [event for event in seen if event[1] == 1] == []  # no batch, no validation in the stopped epoch


def test_scaler_and_distributed_sampler_kwargs_on_one_process():
    trainer = ember.Trainer(accelerator="cpu", devices=1, logger=False)
    assert trainer.scaler is None and trainer.distributed_sampler_kwargs is None


def test_values_logged_before_a_failure_stay_readable():
    class FailsOnTheThirdBatch(CoreModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                raise RuntimeError("boom")
            loss = super().training_step(batch, batch_idx)
            self.log("train_loss", loss, prog_bar=True)
            return loss

    trainer = quiet_trainer(max_epochs=1)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(FailsOnTheThirdBatch(), loader(n=16))
    for metrics in (trainer.callback_metrics, trainer.logged_metrics, trainer.progress_bar_metrics):
        assert set(metrics) == {"train_loss"}  # as Lightning keeps the last finished batch's


def test_after_a_failure_the_metric_dicts_hold_what_the_failing_batch_logged_before_it_failed():
    # Lightning copies each finished batch's values into the dicts, so it shows the last finished batch's;
    # Ember merges its step values only when read (no per-batch copies) and shows the failing batch's
    class FailsAfterLogging(CoreModel):
        def training_step(self, batch, batch_idx):
            self.log("t", float(batch_idx + 1))
            if batch_idx == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(max_epochs=1)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(FailsAfterLogging(), loader(n=16))
    assert float(trainer.callback_metrics["t"]) == 2.0  # Lightning: 1.0


def test_val_check_batch_is_none_before_a_fit_and_when_validation_goes_by_time():
    trainer = quiet_trainer(max_epochs=1, val_check_interval=2)
    assert trainer.val_check_batch is None
    trainer.fit(CoreModel(), loader(n=16), loader(n=4))
    trainer.validate(CoreModel(), loader(n=4), verbose=False)
    assert trainer.val_check_batch == 2  # the fit's, after another call, as Lightning's loop keeps it
    assert trainer.is_last_batch and trainer.num_sanity_val_batches == [0]  # the fit's (no sanity check here)
    timed = quiet_trainer(max_epochs=1, val_check_interval="00:00:00:01")
    timed.fit(CoreModel(), loader(n=16), loader(n=4))
    assert timed.val_check_batch is None
    assert timed.val_check_interval == "00:00:00:01"  # as given (Lightning's attribute is missing then)


@pytest.mark.parametrize(
    ("hook", "expected"), [("on_train_start", [2, 4, 6, 8, 10, 12]), ("on_train_batch_end", [4, 6, 8, 10, 12])]
)
def test_a_callback_sets_val_check_batch_during_fit(hook, expected):
    # warm-up callbacks validate more often from some point on, as on Lightning (the same steps): in
    # `on_train_start`, or mid-epoch, at the end of the third batch (from then on, in the same epoch)
    class ValidateEvery2(Callback):
        def __init__(self):
            setattr(self, hook, self.switch)

        def switch(self, trainer, *args):
            if hook == "on_train_start" or trainer.global_step == 3:
                trainer.val_check_batch = 2

    class Records(CoreModel):
        def on_validation_start(self):
            self.seen.append(self.trainer.global_step)

    model = Records()
    model.seen = []
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[ValidateEvery2()])
    trainer.fit(model, loader(n=24), loader(n=4))  # 6 batches an epoch: validation at each end before the change
    assert model.seen == expected and trainer.val_check_batch == 2


def test_estimated_stepping_batches_is_max_steps_when_nothing_would_train():
    assert quiet_trainer(max_epochs=2).estimated_stepping_batches == -1  # before any fit: no module, as Lightning
    seen = {}

    class Reads(CoreModel):
        def configure_optimizers(self):
            seen["estimate"] = self.trainer.estimated_stepping_batches
            return super().configure_optimizers()

    trainer = quiet_trainer(max_epochs=2, limit_train_batches=0)
    trainer.fit(Reads(), loader(n=8))
    assert seen["estimate"] == -1 and trainer.num_training_batches == float("inf")


def test_the_val_dataloader_hook_and_the_zero_grad_hook_see_the_validating_stage_in_fit():
    seen = []

    class Records(CoreModel):
        def val_dataloader(self):
            seen.append(("val_dataloader", self.trainer.state.stage.value, self.trainer.validating))
            return loader(n=4)

        def on_validation_model_zero_grad(self):
            seen.append(("zero_grad", self.trainer.state.stage.value, self.trainer.validating))
            super().on_validation_model_zero_grad()

    quiet_trainer(max_epochs=1).fit(Records(), loader(n=8))
    assert seen == [("val_dataloader", "validate", True), ("zero_grad", "validate", True)]  # as in Lightning


def test_the_batch_counters_describe_the_finished_epoch_until_the_next_one_draws_its_data():
    # as Lightning, whose epoch loop resets them after the next epoch's start hooks: read there, or after fit,
    # they are the last epoch's (they counted it twice, or an empty current epoch)
    seen = []

    def counters(trainer):
        loop = trainer.fit_loop.epoch_loop
        progress = loop.batch_progress
        return (
            progress.total.ready,
            progress.total.completed,
            progress.current.ready,
            progress.current.completed,
            loop.batch_idx,
            loop.total_batch_idx,
            progress.is_last_batch,
        )

    class Reads(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(counters(trainer))

        def on_train_end(self, trainer, pl_module):
            seen.append(counters(trainer))

    trainer = quiet_trainer(max_epochs=2, callbacks=[Reads()])
    trainer.fit(CoreModel(), loader(n=12, batch_size=4))
    seen.append(counters(trainer))
    assert seen == [  # Lightning 2.6.6's
        (0, 0, 0, 0, -1, -1, False),
        (3, 3, 3, 3, 2, 2, True),
        (6, 6, 3, 3, 2, 5, True),
        (6, 6, 3, 3, 2, 5, True),
    ]


def test_lightnings_private_hook_callers_deliver_a_hook_as_lightnings_do(tmp_path):
    # `trainer.call._call_*_hook`, which programs and libraries use to deliver a hook themselves: each call is
    # profiled under Lightning's action name and runs with the module's running hook name set (observed on 2.6.6)
    from ember.callbacks import EarlyStopping
    from ember.demos.boring_classes import BoringDataModule, BoringModel
    from ember.profilers import SimpleProfiler
    from ember.trainer import call

    seen = []

    class Listening(Callback):
        def on_predict_epoch_end(self, trainer, pl_module):
            seen.append(("listening", pl_module._current_fx_name))

    class Stopping(EarlyStopping):
        def on_predict_epoch_end(self, trainer, pl_module):
            seen.append(("stopping", pl_module._current_fx_name))

    class Model(BoringModel):
        def scaled(self, x, by=1):
            seen.append(("module", self._current_fx_name))
            return x * by

    class Data(BoringDataModule):
        def doubled(self, x):
            return 2 * x

    class Driver(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(("module result", call._call_lightning_module_hook(trainer, "scaled", 2, by=3)))
            call._call_callback_hooks(trainer, "on_predict_epoch_end", monitoring_callbacks=True)
            call._call_callback_hooks(trainer, "on_predict_epoch_end", monitoring_callbacks=False)
            seen.append(("datamodule result", call._call_lightning_datamodule_hook(trainer, "doubled", 4)))
            seen.append(("strategy result", call._call_strategy_hook(trainer, "reduce", torch.tensor(2.0)).item()))
            seen.append(("after", pl_module._current_fx_name))

    profiler = SimpleProfiler()
    stopping = Stopping(monitor="train_loss", check_on_train_epoch_end=False)
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0, callbacks=[Listening(), stopping, Driver()])
    trainer.profiler = profiler
    trainer.fit(Model(), datamodule=Data())
    assert seen == [
        ("module", "scaled"),
        ("module result", 6),
        ("stopping", "on_predict_epoch_end"),  # the monitoring callbacks alone, then the others
        ("listening", "on_predict_epoch_end"),
        ("datamodule result", 8),
        ("strategy result", 2.0),
        ("after", "on_train_epoch_end"),  # the running hook's name is back
    ]
    actions = set(profiler.recorded_durations)
    assert {"[LightningModule]Model.scaled", "[LightningDataModule]Data.doubled"} <= actions
    assert "[Strategy]SingleDeviceStrategy.reduce" in actions
    # a callback under its `state_key` (here its qualified name)
    assert any(a.startswith("[Callback]") and a.endswith("<locals>.Listening.on_predict_epoch_end") for a in actions)
    outside = ember.Trainer(logger=False)  # no module or datamodule yet: Lightning's errors
    with pytest.raises(TypeError, match=r"^No `LightningModule` is available to call hooks on\.$"):
        call._call_lightning_module_hook(outside, "configure_optimizers")
    with pytest.raises(TypeError, match=r"^No `LightningDataModule` is available to call hooks on\.$"):
        call._call_lightning_datamodule_hook(outside, "setup")
    optimizer = call._call_lightning_module_hook(outside, "configure_optimizers", pl_module=BoringModel())
    assert isinstance(optimizer, tuple)  # BoringModel's ([optimizer], [scheduler])


def test_the_checkpoint_connector_names_the_next_and_the_newest_hpc_checkpoint(tmp_path):
    # Lightning's `trainer._checkpoint_connector.hpc_save_path(folder)`, which its test pipelines (and programs that
    # simulate a SLURM requeue) save to, and `_hpc_resume_path`, what `ckpt_path="hpc"` resumes from
    trainer = quiet_trainer(default_root_dir=tmp_path, max_epochs=1)
    trainer.fit(CoreModel(), loader())
    connector = trainer._checkpoint_connector
    assert connector._hpc_resume_path is None
    first = connector.hpc_save_path(tmp_path)
    assert first == str(tmp_path / "hpc_ckpt_1.ckpt")
    trainer.save_checkpoint(first)
    assert connector.hpc_save_path(tmp_path) == str(tmp_path / "hpc_ckpt_2.ckpt")
    assert connector._hpc_resume_path == first
