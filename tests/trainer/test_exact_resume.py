"""Exact resume: an interrupted run resumed in a fresh process ends with bit-identical weights."""

import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import ember

PROGRAM = os.path.join(os.path.dirname(__file__), "..", "helpers", "resume_program.py")
MAX_STEPS = 14  # 2 epochs of 6 batches, and 2 batches into the third


def _run(out, *args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run(
        [sys.executable, PROGRAM, str(out), "--max-steps", str(MAX_STEPS), *args],
        check=True,
        env=env,
        timeout=240,
        capture_output=True,
    )


def _weights(out):
    return torch.load(os.path.join(out, "final.pt"), weights_only=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_and_at_epoch_boundary_gives_identical_weights(tmp_path, workers):
    full = tmp_path / "full"
    _run(full, "--workers", str(workers))
    reference = _weights(full)

    resumes = {
        "mid-epoch": full / "steps" / "step=9.ckpt",  # 3 batches into the second epoch
        "epoch-boundary": full / "epochs" / "epoch=0.ckpt",  # written at the end of the first epoch
    }
    for name, checkpoint in resumes.items():
        assert checkpoint.exists(), sorted(os.listdir(checkpoint.parent))
        resumed = tmp_path / name
        # another seed: everything random must come from the checkpoint, not from seeding again
        _run(resumed, "--workers", str(workers), "--resume", str(checkpoint), "--seed", "123")
        weights = _weights(resumed)
        for key, value in reference.items():
            assert torch.equal(value, weights[key]), f"{name}: {key} differs after resuming"


def test_resume_without_rng_state_is_not_exact(tmp_path):
    """Guards the test above: dropping Ember's resume state must change the result."""
    full = tmp_path / "full"
    _run(full)
    checkpoint = torch.load(full / "steps" / "step=9.ckpt", weights_only=True)
    del checkpoint["ember"]
    stripped = tmp_path / "stripped.ckpt"
    torch.save(checkpoint, stripped)
    resumed = tmp_path / "resumed"
    _run(resumed, "--resume", str(stripped), "--seed", "123")
    reference, weights = _weights(full), _weights(resumed)
    assert any(not torch.equal(v, weights[k]) for k, v in reference.items())


class _SelfResumingData(torch.utils.data.IterableDataset):
    """Yields batches 0..3; after a resume, only those not trained on yet (as cellarium-ml's dataset does)."""

    def __init__(self, batches: int = 4) -> None:
        self.start, self.batches = 0, batches

    def __iter__(self):
        start, self.start = self.start, 0
        return iter([torch.full((2, 2), float(i)) for i in range(start, self.batches)])


def _self_resuming_run(tmp_path, ckpt_path=None, batches=4, saves_position=True):
    from tests.helpers.core_models import quiet_trainer

    import ember
    from ember.callbacks import ModelCheckpoint

    class Data(ember.LightningDataModule):
        def setup(self, stage):
            self.data = _SelfResumingData(batches)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(self.data, batch_size=None)

        def state_dict(self):
            return {"start": self.trainer.global_step % 4} if saves_position else {}

        def load_state_dict(self, state):
            self.data.start = state.get("start", 0)

    class Model(ember.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(2, 1)
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen.append((self.current_epoch, batch_idx, batch[0, 0].item()))
            return self.layer(batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    saves = [ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1)] if ckpt_path is None else []
    model = Model()
    trainer = quiet_trainer(max_epochs=2, callbacks=saves, enable_checkpointing=bool(saves), default_root_dir=tmp_path)
    trainer.fit(model, Data(), ckpt_path=ckpt_path)
    return model


def test_an_iterable_dataset_whose_datamodule_saves_its_position_is_not_skipped_twice(tmp_path):
    # the datamodule restores where the data stands; fast-forwarding it too skipped batches twice and let a
    # bare StopIteration out of fit. Lightning leaves every data source to resume itself
    whole = _self_resuming_run(tmp_path)
    resumed = _self_resuming_run(tmp_path, ckpt_path=tmp_path / "epoch=0-step=3.ckpt")
    assert resumed.seen == [(0, 3, 3.0), (1, 0, 0.0), (1, 1, 1.0), (1, 2, 2.0), (1, 3, 3.0)]
    assert torch.equal(resumed.layer.weight, whole.layer.weight)


def test_data_that_runs_out_while_a_resume_skips_ends_the_epoch_with_a_warning(tmp_path):
    _self_resuming_run(tmp_path, saves_position=False)
    with pytest.warns(UserWarning, match=r"ran out after 1 of the 3 batches"):
        # no position saved, and the data yields fewer batches than the checkpoint's epoch had trained on
        resumed = _self_resuming_run(
            tmp_path, ckpt_path=tmp_path / "epoch=0-step=3.ckpt", batches=1, saves_position=False
        )
    assert resumed.seen[0][0] == 1  # the resumed epoch ended at once; the next one trains


class _PlateauModel(ember.LightningModule):
    """A validation loss that never improves enough, so ReduceLROnPlateau halves the rate at every epoch end."""

    def __init__(self, monitor: str, interval: str = "epoch", frequency: int = 1) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.monitor, self.interval, self.frequency = monitor, interval, frequency

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y) + 5.0)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5, threshold=10.0)
        scheduler = {
            "scheduler": plateau,
            "monitor": self.monitor,
            "interval": self.interval,
            "frequency": self.frequency,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class _Unsized(torch.utils.data.IterableDataset):
    """``data``'s samples in order, as a dataset of unknown length."""

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return iter(self.data)


def _plateau_run(
    root, epochs, monitor, on_train_epoch_end, ckpt_path=None, max_steps=-1, checkpoint=None, sized=True, **model_args
):
    """``checkpoint``: the run's ModelCheckpoint (default: `last.ckpt` and the best on `val_loss`); ``sized=False``:
    training data of unknown length."""
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, x.sum(1, keepdim=True))
    checkpoint = checkpoint or ember.callbacks.ModelCheckpoint(
        dirpath=root, save_last=True, monitor="val_loss", save_on_train_epoch_end=on_train_epoch_end
    )
    trainer = ember.Trainer(
        max_epochs=epochs,
        max_steps=max_steps,
        val_check_interval=model_args.pop("val_check_interval", 1.0),
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    torch.manual_seed(0)
    model = _PlateauModel(monitor, **model_args)
    train = DataLoader(data, batch_size=8, shuffle=True) if sized else DataLoader(_Unsized(data), batch_size=8)
    trainer.fit(model, train, DataLoader(data, batch_size=16), ckpt_path=ckpt_path)
    return trainer.optimizers[0].param_groups[0]["lr"], model.layer.weight.detach().clone()


@pytest.mark.parametrize("monitor", ["val_loss", "train_loss"])
@pytest.mark.parametrize("on_train_epoch_end", [True, False], ids=["saved_at_epoch_end", "saved_in_validation"])
@pytest.mark.parametrize("sized", [True, False], ids=["sized_data", "data_of_unknown_length"])
def test_a_plateau_schedulers_epoch_end_step_survives_the_resume(tmp_path, monitor, on_train_epoch_end, sized):
    # ReduceLROnPlateau steps at the epoch's end after the checkpoint callbacks: a checkpoint written there
    # lost that step (Lightning loses it too), and one written in the epoch's last validation made the resumed
    # epoch end fail, the monitored value gone ("ReduceLROnPlateau conditioned on metric val_loss which is
    # not available"; Lightning skips the step). With data of unknown length the step was lost still: the
    # checkpoint took the epoch for unfinished, its length being unknown
    straight_lr, straight_weight = _plateau_run(tmp_path / "straight", 3, monitor, on_train_epoch_end, sized=sized)
    _plateau_run(tmp_path / "first", 2, monitor, on_train_epoch_end, sized=sized)
    last = tmp_path / "first" / "last.ckpt"
    resumed_lr, resumed_weight = _plateau_run(tmp_path / "resumed", 3, monitor, on_train_epoch_end, last, sized=sized)
    assert straight_lr == resumed_lr == pytest.approx(0.1 * 0.5**3)
    assert torch.equal(straight_weight, resumed_weight)

    # a checkpoint without the values (Lightning's) resumes as Lightning does: the step is skipped (the logged
    # values go too: the epoch's train_loss would be monitored from them)
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint["ember"]["plateau_due"], checkpoint["ember"]["train_results"]
    del checkpoint["ember"]["callback_metrics"]
    torch.save(checkpoint, tmp_path / "without.ckpt")
    lr, _ = _plateau_run(tmp_path / "without", 3, monitor, on_train_epoch_end, tmp_path / "without.ckpt", sized=sized)
    assert lr == pytest.approx(0.1 * 0.5**2)

    # an earlier Ember's checkpoint: the monitored value itself, and no metrics
    lr, weight = _earlier_embers_plateau_resume(
        tmp_path, last, monitor, epochs=3, on_train_epoch_end=on_train_epoch_end, sized=sized
    )
    assert lr == straight_lr and torch.equal(weight, straight_weight)

    if on_train_epoch_end:  # the next epoch's end is no resumed one: a metric that is not logged is named
        with pytest.raises(ember.utilities.exceptions.MisconfigurationException, match="metric nowhere which"):
            _plateau_run(tmp_path / "misnamed", 4, "nowhere", on_train_epoch_end, last, sized=sized)


def _earlier_embers_plateau_resume(tmp_path, checkpoint_path, monitor, **run_args):
    """Resume from ``checkpoint_path`` rewritten as an earlier Ember wrote it: ``plateau_values`` (the value the
    scheduler monitored, by its index) instead of ``plateau_due`` and ``callback_metrics``."""
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    ember_state = checkpoint["ember"]
    del ember_state["plateau_due"]  # (an epoch interval's value was kept for a checkpoint written mid-epoch too)
    ember_state["plateau_values"] = {0: float(ember_state.pop("callback_metrics")[monitor])}
    torch.save(checkpoint, tmp_path / "earlier.ckpt")
    epochs = run_args.pop("epochs")
    lr, weight = _plateau_run(tmp_path / "earlier", epochs, monitor, ckpt_path=tmp_path / "earlier.ckpt", **run_args)
    return lr, weight


def test_a_step_interval_plateau_step_after_a_validation_survives_a_mid_epoch_resume(tmp_path):
    # validation every 4 of the 8 batches, the scheduler stepping after each; the checkpoint written in the
    # validation at step 12 (mid-epoch) comes before that step
    args = {"monitor": "val_loss", "on_train_epoch_end": False, "interval": "step", "frequency": 4}
    straight_lr, straight_weight = _plateau_run(tmp_path / "straight", 3, val_check_interval=4, **args)
    _plateau_run(tmp_path / "first", 3, max_steps=12, val_check_interval=4, **args)
    last = tmp_path / "first" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 12
    resumed_lr, resumed_weight = _plateau_run(tmp_path / "resumed", 3, ckpt_path=last, val_check_interval=4, **args)
    assert straight_lr == resumed_lr == pytest.approx(0.1 * 0.5**6)
    assert torch.equal(straight_weight, resumed_weight)
    args["epochs"], args["val_check_interval"] = 3, 4
    lr, weight = _earlier_embers_plateau_resume(tmp_path, last, **args)
    assert lr == straight_lr and torch.equal(weight, straight_weight)


@pytest.mark.parametrize(
    ("monitor", "val_check_interval"), [("val_loss", 4), ("train_loss", 1.0)], ids=["validation_due", "no_validation"]
)
def test_a_step_interval_plateau_step_due_at_a_step_checkpoints_batch_survives_the_resume(
    tmp_path, monitor, val_check_interval
):
    # a step checkpoint is written at the batch's end, before the validation due there and the plateau step after
    # it: the resumed run runs both (the step was lost, the rate staying one reduction behind)
    def run(root, ckpt_path=None):
        steps = ember.callbacks.ModelCheckpoint(dirpath=root, every_n_train_steps=12, save_top_k=-1)
        args = {"interval": "step", "frequency": 4, "val_check_interval": val_check_interval}
        return _plateau_run(root, 3, monitor, True, ckpt_path=ckpt_path, checkpoint=steps, **args)

    straight_lr, straight_weight = run(tmp_path / "straight")
    resumed_lr, resumed_weight = run(tmp_path / "resumed", tmp_path / "straight" / "epoch=1-step=12.ckpt")
    assert straight_lr == resumed_lr == pytest.approx(0.1 * 0.5**6)
    assert torch.equal(straight_weight, resumed_weight)


def test_an_epoch_interval_plateau_step_after_a_mid_epoch_resume_is_taken_as_the_uninterrupted_run_takes_it(tmp_path):
    # a checkpoint written mid-epoch (step 12 of 8-batch epochs): the resumed epoch ends with its own validation's
    # metrics, and its plateau step is taken (Lightning skips the epoch-end scheduler steps of an epoch it
    # resumed mid-way, and stays one reduction behind)
    def run(root, ckpt_path=None):
        steps = ember.callbacks.ModelCheckpoint(dirpath=root, every_n_train_steps=12, save_top_k=-1)
        return _plateau_run(root, 3, "val_loss", True, ckpt_path=ckpt_path, checkpoint=steps)

    straight_lr, straight_weight = run(tmp_path / "straight")
    resumed_lr, resumed_weight = run(tmp_path / "resumed", tmp_path / "straight" / "epoch=1-step=12.ckpt")
    assert straight_lr == resumed_lr == pytest.approx(0.1 * 0.5**3)
    assert torch.equal(straight_weight, resumed_weight)


class _Batches(ember.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.epoch_starts = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_starts += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((trainer.current_epoch, batch_idx))


def _steps_run(root, max_steps, ckpt_path=None):
    from tests.helpers.core_models import CoreModel, loader

    batches = _Batches()
    trainer = ember.Trainer(
        max_steps=max_steps,
        limit_train_batches=10,
        default_root_dir=root,
        callbacks=[batches],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    torch.manual_seed(0)
    model = CoreModel()
    trainer.fit(model, loader(n=40, batch_size=2), ckpt_path=ckpt_path)
    return trainer, model, batches


@pytest.mark.parametrize("written_by", ["ember", "lightning"])
@pytest.mark.parametrize("written_at", ["epoch_end", "after_fit"])
def test_a_run_that_max_steps_stopped_mid_epoch_resumes_inside_that_epoch(tmp_path, written_by, written_at):
    # the checkpoint is written at the epoch's end that `max_steps` brings early (or by `save_checkpoint` once
    # `fit` returned); the epoch's data had not run out, so the resumed run goes on with it (batches 3, 4, 5 of
    # epoch 0), as the uninterrupted run did and as Lightning resumes it; it started the next epoch at batch 0
    # (the rest of epoch 0 never trained)
    whole, reference, whole_batches = _steps_run(tmp_path / "whole", 6)
    first, _, _ = _steps_run(tmp_path / "first", 3)
    ckpt = first.checkpoint_callback.best_model_path
    if written_at == "after_fit":
        ckpt = str(tmp_path / "after_fit.ckpt")
        first.save_checkpoint(ckpt)
    if written_by == "lightning":  # Lightning's counters only: its `loops` entry says where the epoch stood
        checkpoint = torch.load(ckpt, weights_only=True)
        del checkpoint["ember"]
        ckpt = str(tmp_path / "lightning.ckpt")
        torch.save(checkpoint, ckpt)
    resumed, model, batches = _steps_run(tmp_path / "resumed", 6, ckpt)
    assert batches.seen == [(0, 3), (0, 4), (0, 5)] == whole_batches.seen[3:]
    assert batches.epoch_starts == 0  # the interrupted epoch goes on: no second start
    assert (resumed.global_step, resumed.current_epoch) == (whole.global_step, whole.current_epoch) == (6, 1)
    if written_by == "ember":  # with its data position and RNG states, the same weights
        for key, value in reference.state_dict().items():
            assert torch.equal(value, model.state_dict()[key]), key
    # a resume with nothing left to train (the same `max_steps`) reports the checkpoint's epoch, as Lightning does
    # (written at the epoch's end, 0; after `fit` returned, 1)
    finished, _, batches = _steps_run(tmp_path / "finished", 3, ckpt)
    assert batches.seen == []
    assert (finished.global_step, finished.current_epoch) == (3, torch.load(ckpt, weights_only=True)["epoch"])
    assert finished.current_epoch == (1 if written_at == "after_fit" else 0)


@pytest.mark.parametrize(("step", "warns"), [(3, True), (10, False)])
def test_resuming_lightnings_step_checkpoint_warns_only_with_batches_of_its_epoch_left(tmp_path, step, warns):
    # Lightning's file holds no data position: the rest of the epoch is read from the start again, which
    # Lightning's warning says; on the epoch's last batch (10 of 10) nothing of it is left to read
    from tests.helpers.core_models import CoreModel, loader

    saves = ember.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=step, save_top_k=-1)
    quiet = dict(limit_train_batches=10, logger=False, enable_progress_bar=False, enable_model_summary=False)
    ember.Trainer(max_steps=step, callbacks=[saves], default_root_dir=tmp_path, **quiet).fit(CoreModel(), loader(n=40))
    checkpoint = torch.load(saves.best_model_path, weights_only=True)
    del checkpoint["ember"]  # Lightning's counters only
    torch.save(checkpoint, tmp_path / "lightning.ckpt")
    resumed = ember.Trainer(max_steps=12, enable_checkpointing=False, default_root_dir=tmp_path, **quiet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.fit(CoreModel(), loader(n=40), ckpt_path=tmp_path / "lightning.ckpt")
    said = [w for w in caught if "resuming from a checkpoint that ended before the epoch ended" in str(w.message)]
    assert bool(said) == warns
    assert resumed.global_step == 12


class _StopAt(ember.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.should_stop = True


@pytest.mark.parametrize("cut_by", ["max_steps", "should_stop"])
def test_an_epoch_cut_short_resumed_by_a_run_limited_by_epochs_starts_the_next_epoch(tmp_path, cut_by):
    # as Lightning's loop: only a step-limited run restarts inside the cut epoch; one limited by epochs
    # counts that epoch as done (observed on Lightning 2.6.6)
    from tests.helpers.core_models import CoreModel, loader

    batches = _Batches()
    first = ember.Trainer(
        max_epochs=3,
        max_steps=3 if cut_by == "max_steps" else -1,
        callbacks=[_StopAt(3)] if cut_by == "should_stop" else [],
        limit_train_batches=5,
        default_root_dir=tmp_path / "first",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    first.fit(CoreModel(), loader(n=40, batch_size=2))
    ckpt = first.checkpoint_callback.best_model_path
    resumed = ember.Trainer(
        max_epochs=2,
        callbacks=[batches],
        limit_train_batches=5,
        default_root_dir=tmp_path / "resumed",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    resumed.fit(CoreModel(), loader(n=40, batch_size=2), ckpt_path=ckpt)
    assert batches.epoch_starts == 1 and batches.seen == [(1, i) for i in range(5)]
    assert (resumed.global_step, resumed.current_epoch) == (8, 2)


def _fit_saving_every_n_steps(root, module_class, every_n_steps, loaders, ckpt_path=None, **trainer_options):
    """A fit of a fresh ``module_class()`` (seeded) with a checkpoint every ``every_n_steps`` steps into ``root``,
    logging to memory; returns the logger's rows."""
    from tests.helpers.logging_models import make_memory_logger

    from ember.callbacks import ModelCheckpoint

    logger = make_memory_logger(ember)()
    saves = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=every_n_steps, save_top_k=-1)
    trainer = ember.Trainer(
        logger=logger,
        callbacks=[saves],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_options,
    )
    torch.manual_seed(0)
    trainer.fit(module_class(), *loaders, ckpt_path=ckpt_path)
    return logger.rows


@pytest.mark.parametrize("written_by", ["ember", "lightning"])
@pytest.mark.parametrize("saved_in", ["batch_end", "validation", "validation_end"])
def test_after_a_mid_epoch_resume_the_loggers_step_goes_on_as_in_the_uninterrupted_run(tmp_path, written_by, saved_in):
    # the checkpoint holds the step count from before the batch's end moved it on (Lightning's too); the
    # resumed run moves it on, as Lightning's loop does when it restarts, so no step is logged twice: from a step
    # checkpoint, from one written in the validation after it, and from one written when that validation ended
    # (the epoch-style saves of a run validating inside its epochs)
    from tests.helpers.core_models import CoreModel, loader

    class Logs(CoreModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            return loss

    def run(root, ckpt_path=None):
        rows = _fit_saving_every_n_steps(
            root,
            Logs,
            None if saved_in == "validation_end" else 3,  # None: at every validation's end
            (loader(n=16, batch_size=2), loader(n=4)),
            ckpt_path,
            max_epochs=1,
            log_every_n_steps=1,
            val_check_interval=1.0 if saved_in == "batch_end" else 3,
        )
        return [row["step"] for row in rows if "loss" in row["metrics"]]

    whole = run(tmp_path / "whole")
    ckpt = tmp_path / "whole" / "step=3.ckpt"
    if written_by == "lightning":  # Lightning's counters only
        checkpoint = torch.load(ckpt, weights_only=True)
        del checkpoint["ember"]
        ckpt = tmp_path / "lightning.ckpt"
        torch.save(checkpoint, ckpt)
    assert whole == list(range(8))
    assert run(tmp_path / "resumed", str(ckpt)) == whole[3:]


class _Calls(ember.Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.calls.append(f"batch {trainer.current_epoch}:{batch_idx}")

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.calls.append(f"validation at {trainer.global_step}")

    def on_train_epoch_end(self, trainer, pl_module):
        self.calls.append(f"epoch end {trainer.current_epoch}")


def _validating_run(root, callbacks, ckpt_path=None, val_check_interval=1.0, max_epochs=2):
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    trainer = quiet_trainer(
        max_epochs=max_epochs,
        val_check_interval=val_check_interval,
        default_root_dir=root,
        callbacks=callbacks,
        enable_checkpointing=True,
    )
    torch.manual_seed(0)
    trainer.fit(CoreModel(), loader(n=8, batch_size=2), loader(n=4), ckpt_path=ckpt_path)
    return trainer


def test_a_step_checkpoint_on_an_epochs_last_batch_resumes_with_that_epochs_validation_and_end(tmp_path):
    from ember.callbacks import ModelCheckpoint

    whole = _Calls()
    saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=4, save_top_k=-1)
    _validating_run(tmp_path / "whole", [whole, saves])
    resumed = _Calls()
    _validating_run(tmp_path / "resumed", [resumed], ckpt_path=str(tmp_path / "ckpts" / "step=4.ckpt"))
    # written after batch 3 of epoch 0, before its validation: the uninterrupted run's calls from there on
    assert resumed.calls == whole.calls[whole.calls.index("validation at 4") :]
    assert resumed.calls[:3] == ["validation at 4", "epoch end 0", "batch 1:0"]


def test_a_step_checkpoint_on_a_batch_a_validation_follows_resumes_with_that_validation(tmp_path):
    # mid-epoch: the uninterrupted run validated after batch 1 (`val_check_interval=2`); Lightning skips it
    from ember.callbacks import ModelCheckpoint

    whole = _Calls()
    saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=2, save_top_k=-1)
    _validating_run(tmp_path / "whole", [whole, saves], val_check_interval=2, max_epochs=1)
    resumed = _Calls()
    ckpt = str(tmp_path / "ckpts" / "step=2.ckpt")
    _validating_run(tmp_path / "resumed", [resumed], ckpt_path=ckpt, val_check_interval=2, max_epochs=1)
    assert resumed.calls == whole.calls[whole.calls.index("validation at 2") :]
    assert resumed.calls == ["validation at 2", "batch 0:2", "batch 0:3", "validation at 4", "epoch end 0"]


class _FailsInValidation(ember.Callback):
    def __init__(self, hook: str = "on_validation_batch_end") -> None:
        self.armed = True
        setattr(self, hook, self._fail)

    def _fail(self, trainer, pl_module, *args):
        if self.armed and trainer.global_step == 2:
            self.armed = False
            raise RuntimeError("the machine went away")


class _SignalsInValidationAt(ember.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.global_step == self.step and not trainer.sanity_checking:
            self.step = -1
            os.kill(os.getpid(), __import__("signal").SIGTERM)


def _run_to_max_steps(root, callbacks, ckpt_path=None, max_steps=6):
    # `max_steps` ends the run at batch 1 of epoch 1 (4 batches an epoch, a validation every 2), after that batch's
    # validation; the epoch's end then steps a ReduceLROnPlateau and EarlyStopping checks the validation's value
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import EarlyStopping

    def optimizers(module):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}

    trainer = quiet_trainer(
        max_steps=max_steps,
        val_check_interval=2,
        default_root_dir=root,
        callbacks=[EarlyStopping(monitor="val_loss", patience=5), *callbacks],
        enable_checkpointing=True,
    )
    torch.manual_seed(0)
    trainer.fit(CoreModel(optimizers=optimizers), loader(n=8, batch_size=2), loader(n=4), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("written_by", ["ember", "lightning"])
@pytest.mark.parametrize("stopped_by", ["preemption", "step checkpoint"])
def test_a_checkpoint_at_the_runs_last_step_resumes_with_the_rest_of_that_epoch(tmp_path, written_by, stopped_by):
    # written at the step `max_steps` ends the run on, before the epoch's end ran (a preemption signal in the
    # validation after that step; a step checkpoint, before that validation): the resumed run, with nothing left to
    # train, ran nothing, so the scheduler's epoch step, EarlyStopping's check and the epoch count were missing
    # (Lightning too returns at once)
    from ember.callbacks import ModelCheckpoint
    from ember.utilities.exceptions import SIGTERMException

    whole = _Calls()
    whole_trainer = _run_to_max_steps(tmp_path / "whole", [whole])
    if stopped_by == "preemption":
        saves = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, save_top_k=0)
        with pytest.raises(SIGTERMException):
            _run_to_max_steps(tmp_path / "first", [saves, _SignalsInValidationAt(6)])
        ckpt = str(tmp_path / "ck" / "last.ckpt")
    else:
        saves = ModelCheckpoint(dirpath=tmp_path / "ck", filename="{step}", every_n_train_steps=6, save_top_k=-1)
        _run_to_max_steps(tmp_path / "first", [saves])
        ckpt = str(tmp_path / "ck" / "step=6.ckpt")
    if written_by == "lightning":  # Lightning's counters only
        checkpoint = torch.load(ckpt, weights_only=True)
        del checkpoint["ember"]
        ckpt = str(tmp_path / "lightning.ckpt")
        torch.save(checkpoint, ckpt)
    resumed = _Calls()
    trainer = _run_to_max_steps(tmp_path / "resumed", [resumed], ckpt_path=ckpt)
    first = "epoch end 1" if stopped_by == "preemption" else "validation at 6"
    assert resumed.calls == whole.calls[whole.calls.index(first) :]
    assert resumed.calls[-1] == "epoch end 1"
    assert (trainer.global_step, trainer.current_epoch) == (whole_trainer.global_step, whole_trainer.current_epoch)
    assert trainer.current_epoch == 2
    scheduler, whole_scheduler = (
        trainer.lr_scheduler_configs[0].scheduler,
        whole_trainer.lr_scheduler_configs[0].scheduler,
    )
    assert scheduler.state_dict() == whole_scheduler.state_dict()
    stopping, whole_stopping = trainer.early_stopping_callback, whole_trainer.early_stopping_callback
    assert (stopping.wait_count, stopping.best_score) == (whole_stopping.wait_count, whole_stopping.best_score)
    if written_by == "ember" or stopped_by == "step checkpoint":  # (Lightning's file keeps no validation values)
        assert torch.equal(trainer.callback_metrics["val_loss"], whole_trainer.callback_metrics["val_loss"])
    lower = _Calls()  # resumed with a lower limit than the run that wrote it had: nothing more runs
    assert _run_to_max_steps(tmp_path / "lower", [lower], ckpt_path=ckpt, max_steps=5).current_epoch == 1
    assert lower.calls == []


@pytest.mark.parametrize("written_at", ["step=8", "epoch=1"])  # inside epoch 1; at its end, after its validation
def test_loaders_reloaded_every_n_epochs_reload_at_the_uninterrupted_runs_epochs_after_a_resume(tmp_path, written_at):
    # Lightning counts the epochs to the next reload from the resume, where the resumed run loads its data: the
    # uninterrupted run reloaded at epoch 2, the resumed one at epoch 3; a reload draws from the RNG (its unused
    # iterator), so every shuffle after it differed. Inside an epoch the resumed run loads the validation data at
    # its first validation; at an epoch's end, for its sanity check, before training starts
    from tests.helpers.core_models import CoreModel, dataset

    from ember.callbacks import ModelCheckpoint

    class Reloads(CoreModel):
        def __init__(self):
            super().__init__()
            self.loads = []

        def train_dataloader(self):
            self.loads.append(("train", self.trainer.current_epoch))
            return torch.utils.data.DataLoader(dataset(12), batch_size=2, shuffle=True)

        def val_dataloader(self):
            self.loads.append(("val", self.trainer.current_epoch))
            return torch.utils.data.DataLoader(dataset(4, seed=1), batch_size=2)

    def run(root, ckpt_path=None):
        saves = ModelCheckpoint(dirpath=root, filename="{step}", save_top_k=-1, every_n_train_steps=1)
        at_epoch_end = ModelCheckpoint(dirpath=root, filename="{epoch}", save_top_k=-1)
        trainer = ember.Trainer(
            max_epochs=4,
            reload_dataloaders_every_n_epochs=2,
            logger=False,
            callbacks=[saves, at_epoch_end],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        torch.manual_seed(0)
        model = Reloads()
        trainer.fit(model, ckpt_path=ckpt_path)
        return model

    whole = run(tmp_path / "whole")
    assert whole.loads == [("val", 0), ("train", 0), ("train", 2), ("val", 2)]
    resumed = run(tmp_path / "resumed", str(tmp_path / "whole" / f"{written_at}.ckpt"))  # 6 batches an epoch
    first = [("train", 1), ("val", 1)] if written_at == "step=8" else [("val", 1), ("train", 1)]
    assert resumed.loads == [*first, ("train", 2), ("val", 2)]
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


class _TwoStepsABatch(ember.LightningModule):
    """Manual optimization with two optimizers that both step at every batch: `global_step` goes up by 2 a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.first, self.second = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.first(x) + self.second(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        first, second = self.optimizers()
        first.zero_grad()
        second.zero_grad()
        self.manual_backward(loss)
        first.step()
        second.step()

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.first.parameters(), lr=0.1), torch.optim.SGD(self.second.parameters(), lr=0.1)


def _run_past_max_steps(root, callbacks, ckpt_path=None, max_steps=3):
    # batch 1 takes `global_step` from 2 to 4, past `max_steps=3`: that batch's validation and the epoch's end are
    # the run's last work
    from tests.helpers.core_models import loader, quiet_trainer

    trainer = quiet_trainer(
        max_steps=max_steps, val_check_interval=1, default_root_dir=root, callbacks=callbacks, enable_checkpointing=True
    )
    torch.manual_seed(0)
    trainer.fit(_TwoStepsABatch(), loader(n=8, batch_size=2), loader(n=4), ckpt_path=ckpt_path)
    return trainer


def test_a_checkpoint_at_a_batch_that_stepped_past_max_steps_resumes_with_the_rest_of_that_epoch(tmp_path):
    # the uninterrupted run's last step checkpoint says step 4 with `max_steps=3`: the same limit as the resumed
    # run's, not a lower one, so the validation due at that batch and the epoch's end still run (they did not)
    from ember.callbacks import ModelCheckpoint

    whole = _Calls()
    whole_trainer = _run_past_max_steps(tmp_path / "whole", [whole])
    assert whole.calls == ["batch 0:0", "validation at 2", "batch 0:1", "validation at 4", "epoch end 0"]
    saves = ModelCheckpoint(dirpath=tmp_path / "ck", filename="{step}", every_n_train_steps=1, save_top_k=-1)
    _run_past_max_steps(tmp_path / "first", [saves])
    resumed = _Calls()
    trainer = _run_past_max_steps(tmp_path / "resumed", [resumed], ckpt_path=tmp_path / "ck" / "step=4.ckpt")
    assert resumed.calls == ["validation at 4", "epoch end 0"]
    assert (
        (trainer.global_step, trainer.current_epoch)
        == (whole_trainer.global_step, whole_trainer.current_epoch)
        == (4, 1)
    )
    for key in ("val_loss", "train_loss"):
        assert torch.equal(trainer.callback_metrics[key], whole_trainer.callback_metrics[key]), key
    lower = _Calls()  # a lower limit than the one the checkpoint was written under: nothing more runs
    lowered = _run_past_max_steps(tmp_path / "lower", [lower], ckpt_path=tmp_path / "ck" / "step=4.ckpt", max_steps=2)
    assert lowered.current_epoch == 0
    assert lower.calls == []


@pytest.mark.parametrize("written_by", ["ember", "lightning"])
@pytest.mark.parametrize("hook", ["on_validation_batch_end", "on_validation_batch_start"])
def test_a_run_that_failed_inside_a_validation_resumes_by_running_that_validation(tmp_path, hook, written_by):
    # as Lightning: the validation a crash interrupted runs again before training goes on, also after a crash in the
    # first batch's start hook (Lightning's counters then show that batch ready, not yet started)
    from ember.callbacks import OnExceptionCheckpoint

    calls = _Calls()
    crash = OnExceptionCheckpoint(dirpath=tmp_path)
    with pytest.raises(RuntimeError, match="the machine went away"):
        _validating_run(
            tmp_path / "first", [calls, crash, _FailsInValidation(hook)], val_check_interval=2, max_epochs=1
        )
    resumed = _Calls()
    _validating_run(
        tmp_path / "resumed",
        [resumed],
        ckpt_path=_as_written_by(tmp_path / "on_exception.ckpt", written_by, tmp_path),
        val_check_interval=2,
        max_epochs=1,
    )
    assert resumed.calls == ["validation at 2", "batch 0:2", "batch 0:3", "validation at 4", "epoch end 0"]


def test_a_checkpoint_the_resumed_validation_writes_is_the_one_the_uninterrupted_validation_wrote(tmp_path):
    # the validation a crash interrupted runs again; a checkpoint it writes said the batch's step had already moved
    # on, so a run resumed from it left the loggers' step one behind
    from ember.callbacks import ModelCheckpoint, OnExceptionCheckpoint

    def saves(folder):
        return ModelCheckpoint(dirpath=folder, filename="{step}", monitor="val_loss", save_top_k=-1)

    _validating_run(tmp_path / "whole", [saves(tmp_path / "w")], val_check_interval=2, max_epochs=1)
    crash = OnExceptionCheckpoint(dirpath=tmp_path)
    failing = [saves(tmp_path / "r"), crash, _FailsInValidation("on_validation_batch_end")]
    with pytest.raises(RuntimeError, match="the machine went away"):
        _validating_run(tmp_path / "first", failing, val_check_interval=2, max_epochs=1)
    resumed = [saves(tmp_path / "r")]
    ckpt = str(tmp_path / "on_exception.ckpt")
    _validating_run(tmp_path / "resumed", resumed, ckpt_path=ckpt, val_check_interval=2, max_epochs=1)
    whole, again = (
        torch.load(folder / "step=2.ckpt", weights_only=True) for folder in (tmp_path / "w", tmp_path / "r")
    )
    assert again["ember"]["progress"] == whole["ember"]["progress"]
    assert again["loops"] == whole["loops"]


def _as_written_by(ckpt, written_by, tmp_path):
    """The checkpoint as Lightning wrote it (its counters only), or as an Ember that kept no validation count."""
    checkpoint = torch.load(ckpt, weights_only=True)
    if written_by == "lightning":
        del checkpoint["ember"]
    elif written_by == "older ember":
        del checkpoint["ember"]["progress"]["validated_through"]
    else:
        return str(ckpt)
    path = tmp_path / f"{written_by}.ckpt"
    torch.save(checkpoint, path)
    return str(path)


def _logging_train_loss(**options):
    """``CoreModel`` logging its loss as ``train_loss`` (with ``options``) at every training step."""
    from tests.helpers.core_models import CoreModel

    class Logs(CoreModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("train_loss", loss, **options)
            return loss

    return Logs


@pytest.mark.parametrize("written_by", ["ember", "lightning", "older ember"])
def test_a_checkpoint_written_when_a_validation_ended_resumes_without_running_it_again(tmp_path, written_by):
    from ember.callbacks import ModelCheckpoint

    saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", monitor="val_loss", save_top_k=-1)
    whole = _Calls()
    _validating_run(tmp_path / "whole", [whole, saves], val_check_interval=2, max_epochs=1)
    ckpt = _as_written_by(tmp_path / "ckpts" / "step=2.ckpt", written_by, tmp_path)
    resumed = _Calls()
    _validating_run(tmp_path / "resumed", [resumed], ckpt_path=ckpt, val_check_interval=2, max_epochs=1)
    assert resumed.calls == ["batch 0:2", "batch 0:3", "validation at 4", "epoch end 0"] == whole.calls[3:]


@pytest.mark.parametrize("written_by", ["lightning", "older ember"])
def test_a_step_checkpoint_before_a_due_validation_resumes_with_it_whoever_wrote_it(tmp_path, written_by):
    from ember.callbacks import ModelCheckpoint

    saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=2, save_top_k=-1)
    _validating_run(tmp_path / "whole", [saves], val_check_interval=2, max_epochs=1)
    ckpt = _as_written_by(tmp_path / "ckpts" / "step=2.ckpt", written_by, tmp_path)
    resumed = _Calls()
    _validating_run(tmp_path / "resumed", [resumed], ckpt_path=ckpt, val_check_interval=2, max_epochs=1)
    assert resumed.calls == ["validation at 2", "batch 0:2", "batch 0:3", "validation at 4", "epoch end 0"]


@pytest.mark.parametrize("written_by", ["ember", "lightning"])
def test_an_epoch_end_checkpoint_resumed_by_a_run_that_also_sets_max_steps_trains_the_epochs_after_it(
    tmp_path, written_by
):
    # with `max_steps` set (not reached), Lightning 2.6.6's loop goes back into the finished epoch: it trains one
    # batch past `limit_train_batches`, ends that epoch a second time and stops, without epoch 3 (7 steps of 8)
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    def run(callbacks, ckpt_path=None):
        trainer = quiet_trainer(
            max_epochs=4, max_steps=12, limit_train_batches=2, callbacks=callbacks, enable_checkpointing=True
        )
        trainer.fit(CoreModel(), loader(n=10, batch_size=4), ckpt_path=ckpt_path)
        return trainer

    whole = _Calls()
    run([whole, ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{epoch}", save_top_k=-1)])
    ckpt = _as_written_by(tmp_path / "ckpts" / "epoch=2.ckpt", written_by, tmp_path)
    resumed = _Calls()
    trainer = run([resumed], ckpt)
    assert resumed.calls == ["batch 3:0", "batch 3:1", "epoch end 3"] == whole.calls[-3:]
    assert (trainer.global_step, trainer.current_epoch) == (8, 4)


@pytest.mark.parametrize("written_by", ["ember", "lightning"])
def test_a_step_checkpoint_on_the_last_batch_of_a_stream_resumes_with_the_next_epoch(tmp_path, written_by):
    # data of unknown length, a checkpoint written on its epoch's last batch (Lightning's `is_last_batch`, known
    # from its read ahead): nothing of that epoch is left. From Lightning's file, which holds no data position,
    # the resumed run trained the whole stream again inside that epoch (8 steps where the epoch had 4)
    from tests.helpers.core_models import CoreModel, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    def run(callbacks, ckpt_path=None):
        trainer = quiet_trainer(max_epochs=2, callbacks=callbacks, enable_checkpointing=True)
        trainer.fit(CoreModel(), torch.utils.data.DataLoader(_Stream(), batch_size=None), ckpt_path=ckpt_path)
        return trainer

    whole = _Calls()
    run([whole, ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=2, save_top_k=-1)])
    resumed = _Calls()
    trainer = run([resumed], _as_written_by(tmp_path / "ckpts" / "step=4.ckpt", written_by, tmp_path))
    assert resumed.calls == whole.calls[whole.calls.index("epoch end 0") :]
    assert resumed.calls[:2] == ["epoch end 0", "batch 1:0"]
    assert trainer.global_step == 8


def test_from_lightnings_last_batch_checkpoint_of_a_stream_the_epoch_end_makes_no_decision_on_a_training_key(
    tmp_path, caplog
):
    # the epoch's end runs before any step there: `EarlyStopping` on a key training logs skips its check (it failed)
    import logging

    from tests.helpers.core_models import quiet_trainer

    from ember.callbacks import EarlyStopping, ModelCheckpoint

    Logs = _logging_train_loss(on_step=False, on_epoch=True)

    def run(callbacks, ckpt_path=None):
        trainer = quiet_trainer(max_epochs=2, callbacks=callbacks, enable_checkpointing=True)
        trainer.fit(Logs(), torch.utils.data.DataLoader(_Stream(), batch_size=None), ckpt_path=ckpt_path)
        return trainer

    saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=2, save_top_k=-1)
    run([EarlyStopping(monitor="train_loss", patience=5), saves])
    with caplog.at_level(logging.INFO):
        trainer = run(
            [EarlyStopping(monitor="train_loss", patience=5)],
            _as_written_by(tmp_path / "ckpts" / "step=4.ckpt", "lightning", tmp_path),
        )
    assert trainer.global_step == 8
    assert "EarlyStopping: `train_loss` is not logged yet" in caplog.text


def test_lightnings_checkpoint_from_the_end_of_an_epochs_last_validation_draws_the_next_shuffle_as_lightning(tmp_path):
    # a file without Ember's data position or RNG states, written when the validation after the epoch's last batch
    # ended: Lightning's resumed run makes the finished epoch's iterator and never trains from it, and that draw
    # sets the next epoch's shuffle. Recorded with Lightning 2.6.6 (without the draw: [[7, 2], [0, 5], ...])
    from tests.helpers.core_models import RecordingModel, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    class Validating(RecordingModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", self.layer(batch[0]).sum())

    def run(callbacks, ckpt_path=None):
        ember.seed_everything(0)
        model = Validating()
        trainer = quiet_trainer(max_epochs=2, val_check_interval=4, callbacks=callbacks, enable_checkpointing=True)
        data = torch.utils.data.TensorDataset(torch.arange(8.0).unsqueeze(1))
        shuffled = torch.utils.data.DataLoader(data, batch_size=2, shuffle=True)
        trainer.fit(model, shuffled, torch.utils.data.DataLoader(data, batch_size=4), ckpt_path=ckpt_path)
        return model

    run([ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", save_top_k=-1)])
    resumed = run([], _as_written_by(tmp_path / "ckpts" / "step=4.ckpt", "lightning", tmp_path))
    assert resumed.seen == [[0, 3], [7, 1], [6, 2], [5, 4]]


def test_an_epoch_end_checkpoint_of_a_stream_that_ran_out_resumes_with_the_next_epoch_under_max_steps(tmp_path):
    # a stream of 4 batches with `limit_train_batches=5`: Lightning counts the epoch unfinished (`is_last_batch`
    # false), as one `max_steps` cut short, which a step-limited resumed run goes on with; nothing of it is left,
    # and the resumed run ran that epoch's end hooks a second time
    from tests.helpers.core_models import CoreModel, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    def run(callbacks, ckpt_path=None):
        trainer = quiet_trainer(
            max_epochs=2, max_steps=10, limit_train_batches=5, callbacks=callbacks, enable_checkpointing=True
        )
        trainer.fit(CoreModel(), torch.utils.data.DataLoader(_Stream(), batch_size=None), ckpt_path=ckpt_path)
        return trainer

    whole = _Calls()
    run([whole, ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{epoch}", save_top_k=-1)])
    checkpoint = torch.load(tmp_path / "ckpts" / "epoch=0.ckpt", weights_only=True)
    assert checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["is_last_batch"] is False  # as Lightning's
    resumed = _Calls()
    trainer = run([resumed], str(tmp_path / "ckpts" / "epoch=0.ckpt"))
    assert resumed.calls == whole.calls[whole.calls.index("epoch end 0") + 1 :]
    assert resumed.calls[0] == "batch 1:0"
    assert trainer.global_step == 8


def test_the_loops_entry_counts_steps_and_scheduler_steps_on_from_a_lightning_checkpoint(tmp_path):
    # the checkpoints of a run resumed from Lightning's file count the optimizer and scheduler steps (in all and
    # in the epoch) on from that file's, as the uninterrupted run's do; they started again from 0 and the step
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    def optimizers(module):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def run(root, ckpt_path=None):
        saves = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=2, save_top_k=-1)
        trainer = quiet_trainer(max_epochs=2, callbacks=[saves], enable_checkpointing=True)
        torch.manual_seed(0)
        trainer.fit(CoreModel(optimizers=optimizers), loader(n=10, batch_size=2), ckpt_path=ckpt_path)

    run(tmp_path / "whole")
    run(tmp_path / "resumed", _as_written_by(tmp_path / "whole" / "step=2.ckpt", "lightning", tmp_path))
    for name in ("step=4.ckpt", "step=8.ckpt"):  # in the epoch the file was written in (5 batches), and in the next
        whole, resumed = (
            torch.load(root / name, weights_only=True) for root in (tmp_path / "whole", tmp_path / "resumed")
        )
        assert resumed["loops"] == whole["loops"]
        fit = resumed["loops"]["fit_loop"]
        assert fit["epoch_loop.scheduler_progress"]["total"]["completed"] == resumed["global_step"]


@pytest.mark.parametrize("written_by", ["ember", "lightning"])
@pytest.mark.parametrize("name", ["epoch=0.ckpt", "epoch=1.ckpt", "step=2.ckpt"])
def test_the_loops_entry_counts_the_zero_grad_of_windows_epochs_ended_inside_on_from_a_checkpoint(
    tmp_path, written_by, name
):
    # accumulating 2 batches a step, each epoch ends at its fourth batch (`on_train_batch_start` returns -1), inside
    # a window whose zero_grad ran and that no step closes: Lightning counts that zero_grad (`loops`, in all and in
    # the epoch, till the next epoch starts); the checkpoints of a run resumed from an epoch's end or from inside
    # an epoch count on as the uninterrupted run's do, whoever wrote the file
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    class CutShort(CoreModel):
        def on_train_batch_start(self, batch, batch_idx):
            return -1 if batch_idx == 3 else None

    def run(root, ckpt_path=None):
        callbacks = [
            ModelCheckpoint(dirpath=root, filename="{epoch}", save_top_k=-1),
            ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=1, save_top_k=-1),
        ]
        trainer = quiet_trainer(max_epochs=3, accumulate_grad_batches=2, callbacks=callbacks, enable_checkpointing=True)
        torch.manual_seed(0)
        trainer.fit(CutShort(), loader(n=12, batch_size=2), ckpt_path=ckpt_path)
        trainer.save_checkpoint(root / "after-fit.ckpt")

    run(tmp_path / "whole")
    run(tmp_path / "resumed", _as_written_by(tmp_path / "whole" / name, written_by, tmp_path))
    whole = {path.name: torch.load(path, weights_only=True)["loops"] for path in (tmp_path / "whole").glob("*.ckpt")}
    resumed = {path.name: torch.load(path, weights_only=True)["loops"] for path in (tmp_path / "resumed").glob("*")}
    # (from Lightning's file, which keeps no last saved step, `every_n_train_steps` saves the resumed step again
    # at the next batch's end, as Lightning does: a checkpoint of another moment under the same name)
    start = torch.load(tmp_path / "whole" / name, weights_only=True)["global_step"]
    resumed = {file: loops for file, loops in resumed.items() if file != f"step={start}.ckpt"}
    assert len(resumed) >= 3 and set(resumed) <= set(whole)
    for file, loops in resumed.items():
        assert loops == whole[file], file
    zero_grad = whole["after-fit.ckpt"]["fit_loop"]["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]
    assert zero_grad["zero_grad"]["total"]["completed"] == 6  # 2 windows an epoch, one of them stepped
    assert zero_grad["step"]["total"]["completed"] == 3


@pytest.mark.parametrize("monitors", ["EarlyStopping", "ModelCheckpoint"])
@pytest.mark.parametrize("due", ["a validation", "the epoch's end"])
def test_a_lightning_step_checkpoint_resumes_when_a_callback_monitors_a_training_key_before_any_step(
    tmp_path, monitors, due, caplog
):
    # Lightning's checkpoint holds no value the step logged: the validation (or epoch end) it had not reached, run
    # before any step, has no `train_loss` for the callbacks, which skip that one decision (they raised the
    # missing-key error); Lightning's resumed run skips that validation and end
    import logging

    from tests.helpers.core_models import loader, quiet_trainer

    from ember.callbacks import EarlyStopping, ModelCheckpoint

    Logs = _logging_train_loss()
    # four batches an epoch: a step checkpoint at step 2 has a validation due after it (`val_check_interval=2`);
    # one at step 4, on the epoch's last batch, has the epoch's validation and end due, and both callbacks decide
    # at the epoch's end there (`val_check_interval=1.0`)
    interval, at = (2, 2) if due == "a validation" else (1.0, 4)

    def run(root, ckpt_path=None):
        if monitors == "EarlyStopping":
            watcher = EarlyStopping(monitor="train_loss", patience=10)
        else:
            watcher = ModelCheckpoint(dirpath=root / "best", filename="{step}", monitor="train_loss", save_top_k=-1)
        calls = _Calls()
        saves = ModelCheckpoint(dirpath=root / "ckpts", filename="{step}", every_n_train_steps=at, save_top_k=-1)
        trainer = quiet_trainer(
            max_epochs=2, val_check_interval=interval, callbacks=[watcher, calls, saves], enable_checkpointing=True
        )
        torch.manual_seed(0)
        trainer.fit(Logs(), loader(n=8, batch_size=2), loader(n=4), ckpt_path=ckpt_path)
        return trainer, calls

    _, whole = run(tmp_path / "whole")
    ckpt = _as_written_by(tmp_path / "whole" / "ckpts" / f"step={at}.ckpt", "lightning", tmp_path)
    with caplog.at_level(logging.INFO):
        trainer, resumed = run(tmp_path / "resumed", ckpt_path=ckpt)
    assert resumed.calls == whole.calls[whole.calls.index(f"validation at {at}") :]
    assert trainer.global_step == 8
    assert f"{monitors}: `train_loss` is not logged yet" in caplog.text
    if monitors == "ModelCheckpoint":  # the file the skipped decision would have saved is the only one missing
        written = [
            sorted(p.name for p in (root / "best").iterdir()) for root in (tmp_path / "whole", tmp_path / "resumed")
        ]
        assert written[1] == [name for name in written[0] if name != f"step={at}.ckpt"]
        assert f"step={at}.ckpt" in written[0]


@pytest.mark.parametrize("written_by", ["ember", "older ember"])
@pytest.mark.parametrize("saved_in", ["the last validation", "the last batch"])
def test_a_resume_after_an_epochs_last_batch_logs_the_epoch_means_of_the_uninterrupted_run(
    tmp_path, saved_in, written_by
):
    # written after the epoch's last batch, before its end: the resumed run ends that epoch with the means the
    # checkpoint holds, and the next epoch's means start empty (they held the last epoch's batches too)
    from tests.helpers.core_models import loader

    Logs = _logging_train_loss(on_step=False, on_epoch=True)

    def run(root, ckpt_path=None):
        every_step = saved_in == "the last batch"
        rows = _fit_saving_every_n_steps(
            root,
            Logs,
            4 if every_step else None,
            (loader(n=8, batch_size=2), loader(n=4)),
            ckpt_path,
            max_epochs=2,
            limit_val_batches=1,
            val_check_interval=1.0 if every_step else 2,
        )
        return [(row["step"], row["metrics"]["train_loss"]) for row in rows if "train_loss" in row["metrics"]]

    whole = run(tmp_path / "whole")
    assert [step for step, _ in whole] == [3, 7]
    ckpt = tmp_path / "whole" / "step=4.ckpt"
    if written_by == "older ember":  # the logged values without their options
        checkpoint = torch.load(ckpt, weights_only=True)
        for saved in checkpoint["ember"]["train_results"].values():
            del saved["metric"]
        ckpt = tmp_path / "older.ckpt"
        torch.save(checkpoint, ckpt)
    # an older Ember's checkpoint cannot log the epoch's means without their options
    assert run(tmp_path / "resumed", str(ckpt)) == (whole if written_by == "ember" else whole[1:])


@pytest.mark.parametrize("cut_by", [None, "max_steps"], ids=["data_ran_out", "max_steps"])
def test_an_epoch_end_checkpoint_of_an_epoch_lightning_counts_unfinished_starts_the_next_epochs_means_empty(
    tmp_path, cut_by
):
    # data of unknown length that runs out before `limit_train_batches` (Lightning reads no batch ahead there,
    # so its checkpoint calls the epoch unfinished), or an epoch `max_steps` cut: a checkpoint written at
    # that epoch's end holds the epoch's means; a run limited by epochs starts the next epoch from it, whose
    # means hold only its own batches, as in the uninterrupted run
    from tests.helpers.logging_models import make_memory_logger

    from ember.callbacks import ModelCheckpoint

    Logs = _logging_train_loss(on_step=True, on_epoch=True)

    def run(root, ckpt_path=None, max_steps=-1):
        logger = make_memory_logger(ember)()
        trainer = ember.Trainer(
            max_epochs=2,
            max_steps=max_steps,
            limit_train_batches=6 if cut_by is None else 1.0,
            log_every_n_steps=1,
            logger=logger,
            callbacks=[ModelCheckpoint(dirpath=root, filename="{epoch}", save_top_k=-1)],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        torch.manual_seed(0)
        trainer.fit(Logs(), torch.utils.data.DataLoader(_Stream(), batch_size=None), ckpt_path=ckpt_path)
        steps = [row["metrics"]["train_loss_step"] for row in logger.rows if "train_loss_step" in row["metrics"]]
        means = [row["metrics"]["train_loss_epoch"] for row in logger.rows if "train_loss_epoch" in row["metrics"]]
        return steps, means

    # the first run: uninterrupted where the data ran out, cut after 3 batches by `max_steps` otherwise
    first_steps, first_means = run(tmp_path / "first", max_steps=3 if cut_by else -1)
    ckpt = tmp_path / "first" / "epoch=0.ckpt"
    assert torch.load(ckpt, weights_only=True)["ember"]["progress"]["epoch_unfinished"]
    steps, means = run(tmp_path / "resumed", str(ckpt))
    assert len(steps) == 4 and means == [pytest.approx(sum(steps) / 4)]  # the second epoch's 4 batches alone
    if cut_by is None:
        assert (steps, means) == (first_steps[4:], first_means[1:])


@pytest.mark.parametrize("kept_in", ["module", "collection"])
def test_a_torchmetrics_object_logged_for_the_epoch_resumes_with_the_states_it_had_added_up(tmp_path, kept_in):
    # a Metric's states are not in the module's state_dict (torchmetrics keeps them out unless made persistent):
    # resumed mid-epoch, its epoch value covered only the batches after the checkpoint, and logged one
    # with no update at all
    torchmetrics = pytest.importorskip("torchmetrics")
    from tests.helpers.core_models import CoreModel, loader

    class Logs(CoreModel):
        def __init__(self):
            super().__init__()
            self.mse = torchmetrics.MeanSquaredError()
            self.metrics = torchmetrics.MetricCollection({"top": torchmetrics.MaxMetric()})

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            if kept_in == "module":
                self.mse(self(batch[0]).detach(), batch[1])
                self.log("train_mse", self.mse, on_step=False, on_epoch=True)
            else:
                self.metrics(loss.detach())
                self.log_dict(self.metrics, on_step=False, on_epoch=True)
            return loss

    name = "train_mse" if kept_in == "module" else "top"

    def run(root, ckpt_path=None):
        rows = _fit_saving_every_n_steps(root, Logs, 1, (loader(n=8, batch_size=2),), ckpt_path, max_epochs=2)
        return [(row["step"], row["metrics"][name]) for row in rows if name in row["metrics"]]

    whole = run(tmp_path / "whole")
    assert [step for step, _ in whole] == [3, 7]
    for step in (2, 5, 7):  # inside the first epoch, inside the second, and after the second's last batch
        resumed = run(tmp_path / f"resumed{step}", str(tmp_path / "whole" / f"step={step}.ckpt"))
        assert resumed == [entry for entry in whole if entry[0] >= step - 1], step


class _SavesAfterBatch2(ember.Callback):
    def __init__(self, path) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx == 2:
            trainer.save_checkpoint(self.path)


@pytest.mark.parametrize("written_by", ["ember", "lightning"])
@pytest.mark.parametrize(
    ("written_with", "resumed_with", "batches", "logged_at"),
    [(1, 2, 4, [2, 3, 4]), (2, 1, 4, [2, 3, 4, 5, 6]), (2, 3, 4, [2, 3, 4]), (1, 2, 3, [3, 4])],
)
def test_a_resume_with_another_accumulate_grad_batches_moves_the_loggers_step_by_the_resumed_runs(
    tmp_path, written_by, written_with, resumed_with, batches, logged_at
):
    # written after batch 2: the loggers' step moves on for that batch when it closes a window of the resumed run's
    # accumulation, or is the epoch's last, as Lightning 2.6.6 decides (these steps), whoever wrote the file
    from tests.helpers.core_models import CoreModel, loader
    from tests.helpers.logging_models import make_memory_logger

    class Logs(CoreModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            return loss

    def run(epochs, accumulate, callbacks, ckpt_path=None):
        logger = make_memory_logger(ember)()
        trainer = ember.Trainer(
            max_epochs=epochs,
            accumulate_grad_batches=accumulate,
            log_every_n_steps=1,
            logger=logger,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        torch.manual_seed(0)
        trainer.fit(Logs(), loader(n=2 * batches, batch_size=2), ckpt_path=ckpt_path)
        return [row["step"] for row in logger.rows if "loss" in row["metrics"]]

    ckpt = tmp_path / "after_batch_2.ckpt"
    run(1, written_with, [_SavesAfterBatch2(ckpt)])
    ckpt = _as_written_by(ckpt, written_by, tmp_path)
    assert run(2, resumed_with, [], ckpt) == logged_at


@pytest.mark.parametrize("fails_in", ["training_step", "validation_step"])
def test_a_run_that_failed_resumes_logging_at_the_uninterrupted_runs_steps(tmp_path, fails_in):
    # in a training step: the batch that failed trains again, and logs at its own step; Lightning's loop moves
    # the step on as it restarts, so its resumed run logs one step higher from there on (docs/compat.md).
    # In the validation after a batch: that validation runs again first, at that batch's step, as in Lightning
    from tests.helpers.core_models import CoreModel, loader
    from tests.helpers.logging_models import make_memory_logger

    from ember.callbacks import OnExceptionCheckpoint

    class Logs(CoreModel):
        fail_at = -1

        def training_step(self, batch, batch_idx):
            if self.global_step == self.fail_at and fails_in == "training_step":
                raise RuntimeError("the machine went away")
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            if self.global_step == self.fail_at and fails_in == "validation_step":
                raise RuntimeError("the machine went away")
            return super().validation_step(batch, batch_idx)

    def run(root, fail_at=-1, ckpt_path=None):
        logger = make_memory_logger(ember)()
        trainer = ember.Trainer(
            max_epochs=2,
            log_every_n_steps=1,
            val_check_interval=2,
            limit_val_batches=1,
            logger=logger,
            callbacks=[OnExceptionCheckpoint(dirpath=tmp_path)],
            default_root_dir=root,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        model = Logs()
        model.fail_at = fail_at
        torch.manual_seed(0)
        trainer.fit(model, loader(n=8, batch_size=2), loader(n=4), ckpt_path=ckpt_path)
        return [(row["step"], "val" if "val_loss" in row["metrics"] else "train") for row in logger.rows]

    whole = run(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="the machine went away"):
        run(tmp_path / "failed", fail_at=6)  # in epoch 1: in its batch 2, or in the validation after its batch 1
    resumed = run(tmp_path / "resumed", ckpt_path=str(tmp_path / "on_exception.ckpt"))
    if fails_in == "training_step":
        assert resumed == [(6, "train"), (7, "train"), (7, "val")] == whole[-3:]
    else:
        assert resumed == [(5, "val"), (6, "train"), (7, "train"), (7, "val")] == whole[-4:]


class _RecordsSamples(ember.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        x, y, ids = batch
        self.seen.append(ids.tolist())
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _own_generator_fit(root, sampler_owns_it: bool, ckpt_path=None):
    from ember.callbacks import ModelCheckpoint

    # PyTorch's reproducibility recipe: the loader (or its sampler) draws the order from its own seeded generator,
    # which a restarted program makes again from the same seed
    ember.seed_everything(0, verbose=False)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True), torch.arange(8))
    generator = torch.Generator().manual_seed(7)
    if sampler_owns_it:
        sampler = torch.utils.data.RandomSampler(data, generator=generator)
        loader = torch.utils.data.DataLoader(data, batch_size=2, sampler=sampler)
    else:
        loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=True, generator=generator)
    checkpoints = ModelCheckpoint(dirpath=root, every_n_train_steps=1, save_top_k=-1, filename="{step}")
    trainer = ember.Trainer(
        default_root_dir=root,
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoints],
    )
    model = _RecordsSamples()
    trainer.fit(model, loader, ckpt_path=ckpt_path)
    return model


@pytest.mark.parametrize("sampler_owns_it", [False, True])
def test_a_loaders_own_generator_resumes_with_the_order_it_had(tmp_path, sampler_owns_it):
    full = _own_generator_fit(tmp_path / "full", sampler_owns_it)
    assert full.seen[:4] != full.seen[4:8]  # each epoch draws a new order from the loader's generator
    for step in (4, 6):  # at the end of epoch 0; inside epoch 1
        resumed = _own_generator_fit(tmp_path / f"from{step}", sampler_owns_it, tmp_path / "full" / f"step={step}.ckpt")
        assert resumed.seen == full.seen[step:]
        assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))


class _SavesWhenValidationEnds(ember.Callback):
    """Writes a checkpoint where a preemption that arrived during the epoch's validation saves: after it ended."""

    def __init__(self, path) -> None:
        self.path = path

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.current_epoch == 0:
            trainer.save_checkpoint(self.path)


def test_a_checkpoint_written_after_an_epochs_validation_resumes_with_its_metrics(tmp_path):
    # the uninterrupted run still has the validation's values at the epoch's end (EarlyStopping reads them) and
    # at the next epoch's step triggers (a monitored ModelCheckpoint ranks by them); the resumed run had none
    # and EarlyStopping failed ("conditioned on metric val_loss which is not available")
    from ember.callbacks import EarlyStopping, ModelCheckpoint

    def callbacks(root):
        return [
            EarlyStopping(monitor="val_loss"),
            ModelCheckpoint(dirpath=root, monitor="val_loss", every_n_train_steps=1, save_top_k=-1, filename="{step}"),
        ]

    whole = _validating_run(
        tmp_path / "whole", [*callbacks(tmp_path / "w"), _SavesWhenValidationEnds(tmp_path / "v.ckpt")]
    )
    resumed = _validating_run(tmp_path / "resumed", callbacks(tmp_path / "r"), ckpt_path=str(tmp_path / "v.ckpt"))
    assert resumed.global_step == whole.global_step == 8
    assert all(
        torch.equal(a, b)
        for a, b in zip(whole.lightning_module.state_dict().values(), resumed.lightning_module.state_dict().values())
    )
    # every step trigger after the checkpoint saved, ranked by the restored value where no validation had run
    assert sorted(os.listdir(tmp_path / "r")) == sorted(set(os.listdir(tmp_path / "w")) - {"step=4.ckpt"})
    assert torch.equal(resumed.callback_metrics["val_loss"], whole.callback_metrics["val_loss"])
    assert resumed.callbacks[0].wait_count == whole.callbacks[0].wait_count


def test_the_same_checkpoint_as_lightning_wrote_it_resumes_with_no_decision_at_that_epochs_end(tmp_path, caplog):
    # Lightning's file holds no logged value: EarlyStopping at the epoch's end it had not reached skips its check
    # (Lightning's resumed run fails there: "conditioned on metric val_loss which is not available")
    import logging

    from ember.callbacks import EarlyStopping

    _validating_run(
        tmp_path / "whole", [EarlyStopping(monitor="val_loss"), _SavesWhenValidationEnds(tmp_path / "v.ckpt")]
    )
    ckpt = _as_written_by(tmp_path / "v.ckpt", "lightning", tmp_path)
    with caplog.at_level(logging.INFO):
        resumed = _validating_run(tmp_path / "resumed", [EarlyStopping(monitor="val_loss")], ckpt_path=ckpt)
    assert resumed.global_step == 8
    assert "EarlyStopping: `val_loss` is not logged yet" in caplog.text


class _SignalsAtBatch(ember.Callback):
    def __init__(self, batch_idx: int) -> None:
        self.batch_idx = batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.batch_idx:
            self.batch_idx = -1
            os.kill(os.getpid(), __import__("signal").SIGTERM)


def _accumulating_fit(root, callbacks, ckpt_path=None, **kwargs):
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    trainer = quiet_trainer(
        max_epochs=1,
        accumulate_grad_batches=2,
        default_root_dir=root,
        callbacks=callbacks,
        enable_checkpointing=True,
        **kwargs,
    )
    torch.manual_seed(0)
    model = CoreModel()
    trainer.fit(model, loader(n=32, batch_size=2), ckpt_path=ckpt_path)
    return model


@pytest.mark.parametrize("signal_after", [4, 5])  # the first batch of a window of two; its last
def test_a_preemption_inside_an_accumulation_window_stops_at_once_and_resumes_exactly(tmp_path, signal_after):
    # the checkpoint keeps the window's gradients, so the run need not train on to the window's end (which could
    # outlast the grace period before the kill): it stops after the batch the signal came in, and the resumed
    # window goes on from the gradients it had added up
    from ember.callbacks import ModelCheckpoint
    from ember.utilities.exceptions import SIGTERMException

    whole = _accumulating_fit(tmp_path / "whole", [])
    saves = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    step = 2 if signal_after == 4 else 3
    with pytest.raises(SIGTERMException, match=f"training stopped at epoch 0, step {step}"):
        _accumulating_fit(tmp_path / "first", [saves, _SignalsAtBatch(signal_after)])
    checkpoint = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == step
    assert ("accumulated_gradients" in checkpoint["ember"]) == (signal_after == 4)
    resumed = _accumulating_fit(tmp_path / "first", [ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)], "last")
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


class _KeepsNoWindowGradients(ember.strategies.SingleDeviceStrategy):
    """As a sharded strategy: a checkpoint keeps none of an accumulation window's gradients."""

    @property
    def keeps_window_gradients(self) -> bool:
        return False

    def accumulated_gradients(self, all_ranks):
        return None


def test_a_preemption_inside_a_window_whose_gradients_no_checkpoint_keeps_stops_when_the_window_closes(tmp_path):
    from ember.callbacks import ModelCheckpoint
    from ember.utilities.exceptions import SIGTERMException

    whole = _accumulating_fit(tmp_path / "whole", [])
    saves = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    strategy = _KeepsNoWindowGradients(device="cpu")
    with pytest.raises(SIGTERMException, match="training stopped at epoch 0, step 3"):  # after batch 5, not 4
        _accumulating_fit(tmp_path / "first", [saves, _SignalsAtBatch(4)], strategy=strategy)
    assert "accumulated_gradients" not in torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["ember"]
    resumed = _accumulating_fit(tmp_path / "first", [ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)], "last")
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


class _Stream(torch.utils.data.IterableDataset):
    """Four batches of two, of unknown length."""

    def __iter__(self):
        data = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
        return iter([(data[i : i + 2], data[i : i + 2].sum(1, keepdim=True)) for i in range(0, 8, 2)])


def test_a_step_checkpoint_on_the_last_batch_of_data_of_unknown_length_resumes_with_that_epochs_validation(tmp_path):
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    def fit(root, callbacks, ckpt_path=None):
        trainer = quiet_trainer(max_epochs=2, default_root_dir=root, callbacks=callbacks, enable_checkpointing=True)
        torch.manual_seed(0)
        model = CoreModel()
        trainer.fit(model, torch.utils.data.DataLoader(_Stream(), batch_size=None), loader(n=4), ckpt_path=ckpt_path)
        return model

    whole = _Calls()
    saves = ModelCheckpoint(dirpath=tmp_path / "ckpts", filename="{step}", every_n_train_steps=4, save_top_k=-1)
    first = fit(tmp_path / "whole", [whole, saves])
    resumed = _Calls()
    again = fit(tmp_path / "resumed", [resumed], ckpt_path=str(tmp_path / "ckpts" / "step=4.ckpt"))
    # written after the epoch's last batch, before its validation, which the resumed run skipped
    assert resumed.calls == whole.calls[whole.calls.index("validation at 4") :]
    assert resumed.calls[:3] == ["validation at 4", "epoch end 0", "batch 1:0"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("resume_at", ["step=9.ckpt", "inside.ckpt"], ids=["after_a_validation", "inside_one"])
def test_a_resumed_run_counts_the_validation_batches_on_from_the_checkpoints(tmp_path, resume_at):
    # Lightning's `fit_loop.epoch_loop.val_loop.batch_progress` in the checkpoints written after the resume: the
    # counts of the validations before it, not those of the resumed run alone (a checkpoint written inside a
    # validation counts it once, as the resumed run runs it again)
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    class SavesInValidation(ember.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            if trainer.global_step == 8 and batch_idx == 1 and not (tmp_path / "inside.ckpt").exists():
                trainer.save_checkpoint(tmp_path / "inside.ckpt")

    def fit(root, ckpt_path=None):
        steps = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=1, save_top_k=-1)
        trainer = quiet_trainer(
            max_epochs=5,
            check_val_every_n_epoch=2,
            callbacks=[steps, SavesInValidation()],
            enable_checkpointing=True,
            default_root_dir=root,
        )
        torch.manual_seed(0)
        trainer.fit(CoreModel(), loader(n=8, batch_size=2), loader(n=6, batch_size=2), ckpt_path=ckpt_path)
        return trainer

    def counts(path):
        progress = torch.load(path, weights_only=True)["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]
        return progress["current"]["completed"], progress["total"]["completed"], progress["is_last_batch"]

    whole = fit(tmp_path / "whole")  # validations after steps 8 and 16, 3 batches each
    checkpoint = tmp_path / "whole" / resume_at if resume_at.startswith("step") else tmp_path / resume_at
    resumed = fit(tmp_path / "resumed", checkpoint)
    later = sorted(os.listdir(tmp_path / "resumed"))
    first = torch.load(checkpoint, weights_only=True)["global_step"] + 1
    assert later == sorted(f"step={step}.ckpt" for step in range(first, 21))
    assert [counts(tmp_path / "resumed" / name) for name in later] == [
        counts(tmp_path / "whole" / name) for name in later
    ]
    # in epoch 2 (steps 9-12), after the validation that ended epoch 1 (its `total` counts a training epoch's)
    assert counts(tmp_path / "resumed" / "step=12.ckpt") == (3, 0, True)
    for trainer in (whole, resumed):
        progress = trainer.fit_loop.epoch_loop.val_loop.batch_progress
        assert (progress.current.completed, progress.total.completed) == (3, 0)  # after epoch 4 began


def test_a_run_resumed_after_its_last_step_checkpoint_keeps_the_last_ckpt_the_uninterrupted_run_wrote(tmp_path):
    # `last.ckpt` was written with the top-k file at the final step, before the epoch's validation: the
    # uninterrupted run writes no other at the end of training; the resumed run, which saved no top-k file
    # itself, wrote `last.ckpt` again there, with the state after that validation
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    class CrashesInTheLastValidation(ember.Callback):
        def on_validation_start(self, trainer, pl_module):
            if trainer.global_step == 8:
                raise RuntimeError("crash")

    def fit(root, callbacks=(), ckpt_path=None):
        saves = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=1, save_last=True)
        trainer = quiet_trainer(
            max_epochs=2, callbacks=[saves, *callbacks], enable_checkpointing=True, default_root_dir=root
        )
        torch.manual_seed(0)
        trainer.fit(CoreModel(), loader(n=8, batch_size=2), loader(n=4), ckpt_path=ckpt_path)

    fit(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="crash"):
        fit(tmp_path / "crashed", [CrashesInTheLastValidation()])
    fit(tmp_path / "crashed", ckpt_path="last")
    whole, resumed = (torch.load(tmp_path / run / "last.ckpt", weights_only=True) for run in ("whole", "crashed"))
    assert resumed["loops"] == whole["loops"]
    assert resumed["ember"]["progress"] == whole["ember"]["progress"]


def test_a_step_save_waiting_for_validation_when_the_checkpoint_was_written_is_made_by_the_resumed_run(tmp_path):
    # `every_n_train_steps=3` ranked by the epoch-end validations' `val_loss` (4 batches an epoch): the save due at
    # step 3, before any validation, waits for the one after step 4 (`step=4.ckpt`). A checkpoint written while it
    # waited resumed without the wait, and the resumed run made no such save
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    class SavesBeforeTheFourthBatch(ember.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3 and not (tmp_path / "waiting.ckpt").exists():
                trainer.save_checkpoint(tmp_path / "waiting.ckpt")

    def fit(root, ckpt_path=None):
        saves = ModelCheckpoint(
            dirpath=root, filename="{step}", monitor="val_loss", every_n_train_steps=3, save_top_k=-1
        )
        trainer = quiet_trainer(
            max_epochs=3,
            callbacks=[saves, SavesBeforeTheFourthBatch()],
            enable_checkpointing=True,
            default_root_dir=root,
        )
        torch.manual_seed(0)
        trainer.fit(CoreModel(), loader(n=8, batch_size=2), loader(n=4), ckpt_path=ckpt_path)
        return sorted(os.listdir(root))

    whole = fit(tmp_path / "whole")
    assert whole == ["step=12.ckpt", "step=4.ckpt", "step=6.ckpt", "step=9.ckpt"]
    assert fit(tmp_path / "resumed", tmp_path / "waiting.ckpt") == whole


class _NoisyModel(ember.LightningModule):
    """Training adds noise to its inputs and each validation batch draws a number: both from the global RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.drawn: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x + 0.1 * torch.randn_like(x)), y)

    def validation_step(self, batch, batch_idx):
        self.drawn.append(torch.rand(1).item())
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _SavesInValidation(ember.Callback):
    def __init__(self, path) -> None:
        self.path = path

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.global_step == 4 and batch_idx == 1 and not os.path.exists(self.path):
            trainer.save_checkpoint(self.path)  # as `OnExceptionCheckpoint` saves after a failed validation batch


def test_a_checkpoint_written_inside_a_validation_resumes_with_the_rng_that_validation_began_with(tmp_path):
    # the resumed run runs that validation again from its start: with the RNG as the checkpoint was written (after
    # two of its batches), it drew other numbers there and trained on other noise afterwards
    from tests.helpers.core_models import loader, quiet_trainer

    def fit(callbacks=(), ckpt_path=None):
        trainer = quiet_trainer(max_epochs=2, val_check_interval=4, callbacks=list(callbacks))
        torch.manual_seed(0)
        model = _NoisyModel()
        trainer.fit(model, loader(n=16, batch_size=2), loader(n=8, batch_size=2), ckpt_path=ckpt_path)
        return model

    inside = tmp_path / "inside.ckpt"
    whole = fit([_SavesInValidation(inside)])
    resumed = fit(ckpt_path=inside)
    assert resumed.drawn == whole.drawn  # from the validation at step 4, the first
    assert torch.equal(resumed.layer.weight, whole.layer.weight)


def test_a_run_resumed_inside_an_accumulation_window_does_not_save_the_step_it_resumed_at_again(tmp_path):
    # windows of 3 batches; validation after batches 4, 8 and 12 saves `val-*`; `every_n_train_steps=1` saved
    # step 1 at batch 3. The resumed run's first batches (5, 6) do not step: Lightning saves step 1 again there
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    def fit(root, ckpt_path=None):
        validation = ModelCheckpoint(dirpath=root / "val", filename="val-{step}", monitor="val_loss", save_top_k=-1)
        steps = ModelCheckpoint(dirpath=root / "steps", filename="{step}", every_n_train_steps=1, save_top_k=-1)
        trainer = quiet_trainer(
            max_epochs=1,
            accumulate_grad_batches=3,
            val_check_interval=4,
            callbacks=[validation, steps],
            enable_checkpointing=True,
            default_root_dir=root,
        )
        torch.manual_seed(0)
        trainer.fit(CoreModel(), loader(n=24, batch_size=2), loader(n=4), ckpt_path=ckpt_path)

    fit(tmp_path / "whole")
    assert sorted(os.listdir(tmp_path / "whole" / "steps")) == [
        "step=1.ckpt",
        "step=2.ckpt",
        "step=3.ckpt",
        "step=4.ckpt",
    ]
    for folder in ("whole", "resumed"):
        (tmp_path / folder / "steps").mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "whole" / "steps" / "step=1.ckpt", tmp_path / "resumed" / "steps")
    fit(tmp_path / "resumed", tmp_path / "whole" / "val" / "val-step=1.ckpt")  # written after batch 4
    assert sorted(os.listdir(tmp_path / "resumed" / "steps")) == sorted(os.listdir(tmp_path / "whole" / "steps"))


def test_a_checkpoint_written_inside_an_accumulation_window_keeps_its_gradients_and_resumes_exactly(tmp_path):
    from tests.helpers.core_models import CoreModel, loader, quiet_trainer

    from ember.callbacks import ModelCheckpoint

    def fit(root, ckpt_path=None):
        saves = ModelCheckpoint(dirpath=root, filename="{step}", monitor="val_loss", save_top_k=-1)
        trainer = quiet_trainer(
            max_epochs=2,
            accumulate_grad_batches=2,
            val_check_interval=3,  # validates (and saves) after batches 3, 6, 9 and 12; 3 and 9 end no window
            callbacks=[saves],
            enable_checkpointing=True,
            default_root_dir=root,
        )
        torch.manual_seed(0)
        model = CoreModel()
        trainer.fit(model, loader(n=24, batch_size=2), loader(n=4), ckpt_path=ckpt_path)
        return model

    whole = fit(tmp_path / "ck")
    inside = torch.load(tmp_path / "ck" / "step=1.ckpt", weights_only=True)  # after batch 3
    gradients = inside["ember"]["accumulated_gradients"]
    assert set(gradients) == {name for name, _ in whole.named_parameters()}
    assert all(value.abs().sum() > 0 for value in gradients.values())
    assert "accumulated_gradients" not in torch.load(tmp_path / "ck" / "step=3.ckpt", weights_only=True)["ember"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*accumulation window.*")
        resumed = fit(tmp_path / "resumed", str(tmp_path / "ck" / "step=1.ckpt"))
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))

    # without them (an earlier Ember's checkpoint): the resume warns, and is not exact
    del inside["ember"]["accumulated_gradients"]
    torch.save(inside, tmp_path / "without.ckpt")
    with pytest.warns(UserWarning, match=r"inside a gradient accumulation window \(after batch 3 of its epoch"):
        inexact = fit(tmp_path / "inexact", str(tmp_path / "without.ckpt"))
    assert not all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), inexact.state_dict().values()))


def test_a_resumed_run_holds_the_checkpoints_callback_metrics_after_its_sanity_check(tmp_path):
    # the uninterrupted run still holds the last epoch's values when the next epoch starts (a step-interval
    # checkpoint monitoring `train_loss_epoch` reads it there); the resumed run's sanity check emptied the dict
    from tests.helpers.core_models import loader

    class Seen(_logging_train_loss(on_step=True, on_epoch=True)):
        def __init__(self):
            super().__init__()
            self.seen = {}

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

        def on_train_batch_start(self, batch, batch_idx):
            if self.current_epoch == 1 and batch_idx == 0:
                self.seen = {k: float(v) for k, v in self.trainer.callback_metrics.items()}

    def trainer(folder):
        checkpoints = ember.callbacks.ModelCheckpoint(dirpath=folder, every_n_epochs=1, save_top_k=-1)
        return ember.Trainer(
            max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoints]
        )

    torch.manual_seed(0)
    uninterrupted = Seen()
    trainer(tmp_path / "u").fit(uninterrupted, loader(n=8), loader(n=4))
    resumed = Seen()
    trainer(tmp_path / "r").fit(
        resumed, loader(n=8), loader(n=4), ckpt_path=str(tmp_path / "u" / "epoch=0-step=2.ckpt")
    )
    assert {"train_loss_epoch", "val_loss"} <= set(uninterrupted.seen)
    assert resumed.seen == uninterrupted.seen


@pytest.mark.parametrize("failing_epoch", [0, 1])
def test_a_failure_inside_the_epochs_end_resumes_with_that_end_still_to_run(tmp_path, failing_epoch):
    # the checkpoint `OnExceptionCheckpoint` writes for an exception raised in an `on_train_epoch_end` hook is
    # resumed with that epoch's end to run: its hooks, its logged epoch values and its checkpoint, as the
    # uninterrupted run had them (the resumed run went on to the next epoch, or returned at once after the last)
    from tests.helpers.core_models import loader

    class Logged(_logging_train_loss(on_step=False, on_epoch=True)):
        def __init__(self):
            super().__init__()
            self.epoch_ends = []

        def on_train_epoch_end(self):
            self.epoch_ends.append((self.current_epoch, float(self.trainer.callback_metrics["train_loss"])))

    class FailOnce(ember.Callback):
        def __init__(self):
            self.failed = False

        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == failing_epoch and not self.failed:
                self.failed = True
                raise RuntimeError("a bug in a callback")

    def trainer(folder, *callbacks):
        return ember.Trainer(
            max_epochs=2,
            default_root_dir=folder,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[ember.callbacks.ModelCheckpoint(dirpath=folder / "ck", save_top_k=-1), *callbacks],
        )

    torch.manual_seed(0)
    uninterrupted = Logged()
    trainer(tmp_path / "u").fit(uninterrupted, loader(n=8))
    torch.manual_seed(0)
    failed = Logged()
    on_exception = ember.callbacks.OnExceptionCheckpoint(dirpath=tmp_path / "r", filename="failed")
    with pytest.raises(RuntimeError, match="a bug in a callback"):
        trainer(tmp_path / "r", FailOnce(), on_exception).fit(failed, loader(n=8))
    resumed = Logged()
    trainer(tmp_path / "r").fit(resumed, loader(n=8), ckpt_path=str(tmp_path / "r" / "failed.ckpt"))
    # the module's hook comes after the failing callback's: the failed run ran it for the epochs before only
    assert failed.epoch_ends + resumed.epoch_ends == uninterrupted.epoch_ends
    assert sorted(os.listdir(tmp_path / "r" / "ck")) == sorted(os.listdir(tmp_path / "u" / "ck"))
    for key, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


class _NoisyStream(torch.utils.data.IterableDataset):
    """Samples of unknown number, in an order drawn when iteration starts, each with noise from ``noise``'s RNG."""

    def __init__(self, n: int, seed: int, noise: str) -> None:
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
        self.noise = noise

    def __iter__(self):
        import random

        import numpy as np

        for i in torch.randperm(len(self.x)).tolist():
            if self.noise == "torch":
                yield self.x[i] + 0.1 * torch.randn(4)
            elif self.noise == "numpy":
                yield self.x[i] + torch.from_numpy(np.random.randn(4).astype("float32"))
            else:
                yield self.x[i] + random.random()


class _SeesItsBatches(ember.LightningModule):
    """Records each step's batch and a draw of its own; one loader, or a shorter one cycled beside it."""

    def __init__(self, noise: str, two: bool, workers: int = 0) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.noise, self.two, self.workers = noise, two, workers
        self.seen: list[tuple[float, float]] = []

    def training_step(self, batch, batch_idx):
        x = torch.cat(batch) if self.two else batch
        self.seen.append((x.sum().item(), torch.rand(()).item()))
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        # 3 batches, then (cycled beside the 5 of the second) started again with a new order
        first = torch.utils.data.DataLoader(_NoisyStream(12, 0, self.noise), batch_size=4, num_workers=self.workers)
        return (
            [first, torch.utils.data.DataLoader(_NoisyStream(20, 1, self.noise), batch_size=4)] if self.two else first
        )


def _fit_seeing_batches(root, noise, two, workers=0, ckpt_path=None):
    from tests.helpers.core_models import quiet_trainer

    from ember.callbacks import ModelCheckpoint

    ember.seed_everything(3, verbose=False)
    model = _SeesItsBatches(noise, two, workers)
    saves = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    quiet_trainer(max_epochs=2, callbacks=[saves], default_root_dir=root, enable_checkpointing=True).fit(
        model, ckpt_path=ckpt_path
    )
    return model.seen


@pytest.mark.parametrize(
    ("noise", "two", "workers"),
    [("torch", False, 0), ("numpy", False, 0), ("python", False, 0), ("torch", True, 0), ("torch", True, 2)],
    ids=["torch_noise", "numpy_noise", "python_noise", "a_shorter_loader_starting_again", "beside_worker_processes"],
)
def test_data_of_unknown_length_read_ahead_resumes_with_the_batches_and_draws_of_the_uninterrupted_run(
    tmp_path, noise, two, workers
):
    # the loop reads such data one batch ahead, before the step it has in hand: the held batch's draws (its
    # noise, a loader starting again and drawing a new order) come before that step's in the uninterrupted run,
    # so a checkpoint after the step comes after them, and the resumed run reads that batch from the states of then
    whole = _fit_seeing_batches(tmp_path / "whole", noise, two, workers)
    for step in range(1, len(whole)):
        ckpt = tmp_path / "whole" / f"step={step}.ckpt"
        resumed = _fit_seeing_batches(tmp_path / f"from{step}", noise, two, workers, ckpt_path=ckpt)
        assert resumed == whole[step:], f"resumed from step {step}"


def test_without_the_read_ahead_states_the_resumed_batches_differ(tmp_path):
    """Guards the test above: the states the checkpoint keeps for the held batch are what makes it exact."""
    whole = _fit_seeing_batches(tmp_path / "whole", "torch", two=False)
    checkpoint = torch.load(tmp_path / "whole" / "step=2.ckpt", weights_only=True)
    assert set(checkpoint["ember"].pop("held_rng")) == {"torch"}  # this data draws from torch's RNG only
    torch.save(checkpoint, tmp_path / "stripped.ckpt")
    resumed = _fit_seeing_batches(tmp_path / "resumed", "torch", two=False, ckpt_path=tmp_path / "stripped.ckpt")
    assert resumed[0] != whole[2] and len(resumed) == len(whole) - 2


class _WorkerNoise(torch.utils.data.Dataset):
    """Eight samples, each with noise the worker process draws."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.full((4,), float(index)) + 0.1 * torch.randn(4)


class _PersistentWorkersModel(_SeesItsBatches):
    def __init__(self, persistent: bool) -> None:
        super().__init__("torch", two=False)
        self.persistent = persistent

    def train_dataloader(self):
        return torch.utils.data.DataLoader(
            _WorkerNoise(), batch_size=4, shuffle=True, num_workers=1, persistent_workers=self.persistent
        )


@pytest.mark.parametrize("persistent", [True, False])
def test_a_resume_after_the_first_epoch_says_persistent_workers_draw_what_the_uninterrupted_run_did_not(
    tmp_path, persistent
):
    # the uninterrupted run's worker processes went on drawing from the streams they started with in epoch 0; a
    # resumed run starts new ones, so their random transforms differ (found taking exact resume through workers)
    from tests.helpers.core_models import quiet_trainer

    from ember.callbacks import ModelCheckpoint

    def fit(ckpt_path=None):
        ember.seed_everything(3, verbose=False)
        model = _PersistentWorkersModel(persistent)
        saves = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1)
        trainer = quiet_trainer(max_epochs=3, callbacks=[saves], default_root_dir=tmp_path, enable_checkpointing=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(model, ckpt_path=ckpt_path)
        return model.seen, [str(w.message) for w in caught if "persistent_workers=True" in str(w.message)]

    whole, _ = fit()
    within_the_first_epoch, said = fit(tmp_path / "step=1.ckpt")
    assert within_the_first_epoch == whole[1:] and not said  # the workers start afresh on both sides
    after_it, said = fit(tmp_path / "step=3.ckpt")
    if persistent:
        assert after_it != whole[3:]
        assert said == [
            "Resuming at epoch 1 with a training DataLoader of `persistent_workers=True`: the uninterrupted run's"
            " worker processes have run since its first epoch, and what they drew from the random number"
            " generators (random transforms in `Dataset.__getitem__`) went on from there; this run starts new"
            " workers, so those draws differ from the uninterrupted run's (the data order and the draws of this"
            " process do not). For a bit-exact resume, draw them from a `torch.Generator` seeded from the sample's"
            " index and the epoch, or set `persistent_workers=False`."
        ]
    else:
        assert after_it == whole[3:] and not said
