"""``fit`` called again on the same Trainer (a library's "train some more" or its loading through
``fit(ckpt_path=...)`` with nothing left to train) takes Lightning's random numbers: every DataLoader
iterator draws its base seed from torch's RNG, so the shuffles after a call depend on how many
iterators the call made. The counts below are Lightning 2.6.6's (rectools' ``fit_partial`` relies
on them)."""

from __future__ import annotations

import functools

import pytest
import torch
from tests.helpers.core_models import CoreModel, quiet_trainer
from torch.utils.data import DataLoader, TensorDataset

import ember


def _shuffled() -> DataLoader:
    g = torch.Generator().manual_seed(123)
    return DataLoader(TensorDataset(torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)), 4, shuffle=True)


def _draws(call) -> int:
    """How many int64 draws from torch's global RNG ``call()`` made (an iterator's base seed is one, a
    RandomSampler's seed another)."""
    before = torch.get_rng_state()
    call()
    after = torch.get_rng_state()
    torch.set_rng_state(before)
    for count in range(30):
        if torch.equal(torch.get_rng_state(), after):
            torch.set_rng_state(after)
            return count
        torch.empty((), dtype=torch.int64).random_()
    raise AssertionError("more than 30 draws")


def _refit(trainer: ember.Trainer, model: CoreModel, epochs: int, data: DataLoader | None = None) -> int:
    trainer.fit_loop.max_epochs = epochs
    return _draws(lambda: trainer.fit(model, data if data is not None else _shuffled()))


def test_a_second_fit_on_the_same_trainer_makes_a_new_iterator_for_its_epoch_as_lightning():
    ember.seed_everything(0)
    model, trainer = CoreModel(), quiet_trainer(max_epochs=1)
    assert _draws(lambda: trainer.fit(model, _shuffled())) == 2  # the epoch's iterator: base seed, shuffle
    # the iterator made when `fit` starts goes unused after the first epoch: one draw more
    assert _refit(trainer, model, 2) == 3
    assert _refit(trainer, model, 3) == 3
    assert trainer.current_epoch == 3


@pytest.mark.parametrize("empty", [False, True], ids=["max_epochs_reached", "empty_loader"])
def test_a_fit_from_a_checkpoint_with_nothing_to_train_draws_once_and_stays_resuming(tmp_path, empty):
    ember.seed_everything(0)
    model, trainer = CoreModel(), quiet_trainer(max_epochs=1)
    trainer.fit(model, _shuffled())
    path = tmp_path / "one-epoch.ckpt"
    trainer.save_checkpoint(path)
    # rectools loads a model this way: `fit(ckpt_path=...)` with an empty loader
    data = DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, 1))) if empty else _shuffled()
    model, trainer = CoreModel(), quiet_trainer(max_epochs=1)
    assert _draws(functools.partial(trainer.fit, model, data, ckpt_path=path)) == 1
    assert trainer.fit_loop.is_resuming
    # still resuming: the next fit's first epoch trains on the iterator its start made
    assert _refit(trainer, model, 2) == 2
    assert not trainer.fit_loop.is_resuming
    assert _refit(trainer, model, 3) == 3


def test_is_resuming_is_true_from_a_checkpoint_until_an_epoch_has_trained(tmp_path):
    seen = []

    class Recording(CoreModel):
        def on_train_epoch_start(self):
            seen.append(self.trainer.fit_loop.is_resuming)

    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(Recording(), _shuffled())
    assert seen == [False] and not trainer.fit_loop.is_resuming
    path = tmp_path / "one-epoch.ckpt"
    trainer.save_checkpoint(path)
    seen.clear()
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(Recording(), _shuffled(), ckpt_path=path)
    assert seen == [True, False] and not trainer.fit_loop.is_resuming


def test_the_iterator_of_a_fit_with_nothing_to_train_does_not_keep_its_workers(tmp_path):
    import multiprocessing

    data = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4, num_workers=1)
    trainer = quiet_trainer(max_epochs=1)
    model = CoreModel()
    trainer.fit(model, data)
    before = set(multiprocessing.active_children())
    trainer.fit(model, data)  # max_epochs reached: the iterator made at the start goes unused
    assert trainer.global_step == 2
    assert set(multiprocessing.active_children()) <= before  # its worker stopped with the call


class _AllSteps(CoreModel):
    def test_step(self, batch, batch_idx):
        pass

    def predict_step(self, batch, batch_idx):
        return self(batch[0])


def _loader(n: int) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(n, 4), torch.randn(n, 1)), batch_size=2)


def test_the_batch_counts_of_a_fit_stay_readable_after_other_calls_and_the_loaders_do_not_as_in_lightning():
    # Lightning keeps the counts on its loop objects: a `predict` after `fit` leaves `num_training_batches` the fit's;
    # `num_val_batches` is the last `validate`'s only while that is the trainer's last call. Each call drops the
    # other calls' loaders
    trainer, model = quiet_trainer(max_epochs=1), _AllSteps()
    assert trainer.num_training_batches == float("inf") and trainer.train_dataloader is None
    train, val = _loader(8), _loader(4)
    trainer.fit(model, train, val)
    assert (trainer.num_training_batches, trainer.num_val_batches) == (4, [2])
    assert trainer.train_dataloader is train and trainer.val_dataloaders is val
    predict = _loader(6)
    trainer.predict(model, predict)
    assert (trainer.num_training_batches, trainer.num_val_batches, trainer.num_predict_batches) == (4, [2], [3])
    assert (trainer.train_dataloader, trainer.val_dataloaders) == (None, None)
    assert trainer.predict_dataloaders.dataset is predict.dataset  # a copy that records the batch indices
    validate = _loader(6)
    trainer.validate(model, validate)
    assert (trainer.num_training_batches, trainer.num_val_batches) == (4, [3])
    assert trainer.val_dataloaders.dataset is validate.dataset and trainer.predict_dataloaders is None
    trainer.test(model, _loader(2))
    assert (trainer.num_val_batches, trainer.num_test_batches, trainer.num_predict_batches) == ([2], [1], [3])
    trainer.fit(model, _loader(4), val)  # a second fit sets its own up
    assert trainer.num_training_batches == 2


def test_a_later_fit_reads_the_last_fits_counts_until_it_loads_its_own_data_as_in_lightning():
    # Lightning's loops keep their counts across fits: in the next fit's sanity check they are still the last
    # fit's, and `is_last_batch` stays the finished epoch's until the next epoch starts
    seen = []

    class Reads(ember.Callback):
        def _read(self, trainer, where):
            seen.append(
                (
                    where,
                    trainer.is_last_batch,
                    trainer.num_training_batches,
                    trainer.num_val_batches,
                    trainer.num_sanity_val_batches,
                    trainer.val_check_batch,
                )
            )

        def on_sanity_check_start(self, trainer, pl_module):
            self._read(trainer, "sanity")

        def on_train_start(self, trainer, pl_module):
            self._read(trainer, "train_start")

        def on_fit_end(self, trainer, pl_module):
            self._read(trainer, "fit_end")

    def data(n):
        return DataLoader(TensorDataset(torch.randn(n, 4), torch.randn(n, 1)), batch_size=2)

    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=2, callbacks=[Reads()])
    model = CoreModel()
    trainer.fit(model, data(6), data(4))
    trainer.fit_loop.max_epochs = 2
    trainer.fit(model, data(10), data(6))
    assert seen == [  # Lightning 2.6.6's
        ("sanity", False, float("inf"), [], [], None),
        ("train_start", False, 3, [2], [2], 3),
        ("fit_end", True, 3, [2], [2], 3),
        ("sanity", True, 3, [2], [2], 3),
        ("train_start", True, 5, [3], [2], 5),
        ("fit_end", True, 5, [3], [2], 5),
    ]


def test_a_fit_that_failed_before_loading_its_training_data_leaves_the_counts_of_the_fit_before(tmp_path):
    # Lightning's loops set these counts only as they load the training data: a fit that failed in its sanity
    # check leaves those of the fit before it, or none (Lightning 2.6.6's values)
    class FailsInValidation(CoreModel):
        fail = True

        def validation_step(self, batch, batch_idx):
            if self.fail:
                raise RuntimeError("boom")

    def data():
        return DataLoader(TensorDataset(torch.randn(6, 4), torch.randn(6, 1)), batch_size=2)

    def counts(trainer):
        return trainer.num_training_batches, trainer.val_check_batch, trainer.is_last_batch

    model = FailsInValidation()
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=2, default_root_dir=tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, data(), data())
    trainer.test(model, data(), verbose=False)
    assert counts(trainer) == (float("inf"), None, False)

    model.fail = False
    trainer.fit(model, data(), data())
    assert counts(trainer) == (3, 3, True)
    model.fail = True
    trainer.fit_loop.max_epochs = 2
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, data(), data())
    assert counts(trainer) == (3, 3, True)
    trainer.test(model, data(), verbose=False)
    assert counts(trainer) == (3, 3, True)


def test_a_fit_again_after_one_that_failed_at_a_batchs_end_logs_at_lightnings_steps():
    # the failed batch stepped, and the loggers' step had not moved on past it: the next fit on the trainer
    # goes on from there without moving it (observed on Lightning 2.6.6: rows at steps 1, 3, ..., 15)
    from tests.helpers.core_models import loader
    from tests.helpers.logging_models import make_memory_logger

    class FailsOnce(CoreModel):
        fail = True

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("loss", loss)
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            if self.fail and batch_idx == 1:
                self.fail = False
                raise RuntimeError("the machine went away")

    logger = make_memory_logger(ember)()
    trainer = ember.Trainer(
        max_epochs=2,
        log_every_n_steps=2,
        logger=logger,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    model = FailsOnce()
    with pytest.raises(RuntimeError, match="went away"):
        trainer.fit(model, loader(n=16, batch_size=2))
    trainer.fit(model, loader(n=16, batch_size=2))
    steps = [row["step"] for row in logger.rows if "loss" in row["metrics"]]
    assert steps == [1, 3, 5, 7, 9, 11, 13, 15] and trainer.global_step == 18
