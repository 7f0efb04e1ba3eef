"""What the loops do with the data they are given: objects that are not dataloaders, and steps that draw
their own batches (``training_step(self, dataloader_iter)``)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from tests.helpers.core_models import CoreModel, RecordingModel, loader, quiet_trainer

import ember


class _DrawingStream(torch.utils.data.IterableDataset):
    """``n`` one-value batches, each drawn from the global RNG as it is read: the data's draws and the steps' show
    when, and how often, the loops read it."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        for _ in range(self.n):
            yield torch.randint(0, 1000, (1,)).float()


class _SizedDrawingStream(_DrawingStream):
    """The same with a length."""

    def __len__(self) -> int:
        return self.n


def _no_data_model() -> CoreModel:
    model = CoreModel()
    for name in ("train", "val", "test", "predict"):
        setattr(model, f"{name}_dataloader", None)
    return model


@pytest.mark.parametrize(
    ("fn", "argument", "hook"),
    [
        ("fit", "train_dataloaders", "train_dataloader"),
        ("validate", "dataloaders", "val_dataloader"),
        ("test", "dataloaders", "test_dataloader"),
        ("predict", "dataloaders", "predict_dataloader"),
    ],
)
def test_an_object_that_is_not_a_dataloader_is_named_with_where_it_came_from(fn, argument, hook):
    trainer = quiet_trainer(max_epochs=1)
    model = _no_data_model()
    prefix = "train_" if fn == "fit" else ""
    with pytest.raises(TypeError, match=rf"passed to `Trainer.{fn}\({prefix}dataloaders=...\)`. Found 3.$"):
        getattr(trainer, fn)(model, **{argument: 3})
    with pytest.raises(
        TypeError, match=rf"passed to `Trainer.{fn}\({prefix}dataloaders=...\)`. Found None. Either pass"
    ):
        getattr(trainer, fn)(model)  # nothing passed, and the hook is set to None
    setattr(model, hook, lambda: [1, object()])  # a list of a number and an object: two "loaders"
    with pytest.raises(TypeError, match=rf"returned from `CoreModel.{hook}\(\)`. Found 1.$"):
        getattr(trainer, fn)(model)


def test_a_module_that_defines_no_training_data_says_the_hook_must_be_implemented():
    class NoData(ember.LightningModule):
        def training_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return None

    with pytest.raises(ember.utilities.MisconfigurationException, match="`train_dataloader` must be implemented"):
        quiet_trainer(max_epochs=1).fit(NoData())


class DrawsTwo(CoreModel):
    """Each step draws two batches from the iterator; the batch hooks record what they are given."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn: dict[str, list] = {"train": [], "val": [], "test": [], "predict": []}
        self.hook_batches: list = []

    def _draw(self, dataloader_iter, stage):
        x = []
        for _ in range(2):
            batch, batch_idx, dataloader_idx = next(dataloader_iter)
            self.drawn[stage].append((batch_idx, dataloader_idx))
            x.append(batch[0])
        return torch.cat(x)

    def training_step(self, dataloader_iter):
        return self(self._draw(dataloader_iter, "train")).sum()

    def on_train_batch_start(self, batch, batch_idx):
        self.hook_batches.append(("start", batch is None, batch_idx))

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.hook_batches.append(("end", batch is None, batch_idx))

    def validation_step(self, dataloader_iter):
        self.log("val_sum", self(self._draw(dataloader_iter, "val")).sum())

    def test_step(self, dataloader_iter):
        self._draw(dataloader_iter, "test")

    def predict_step(self, dataloader_iter):
        return self._draw(dataloader_iter, "predict").shape[0]


def test_a_training_step_that_takes_the_iterator_draws_its_own_batches():
    model = DrawsTwo()
    trainer = quiet_trainer(max_epochs=1)
    with pytest.warns(ember.utilities.warnings.PossibleUserWarning, match="`dataloader_iter` step flavor"):
        trainer.fit(model, loader(24), loader(16))  # 6 training batches, 4 validation batches
    assert model.drawn["train"] == [(i, 0) for i in range(6)]  # three steps of two batches
    assert trainer.global_step == 3
    # the hooks see the last batch drawn: none before the first step
    assert model.hook_batches[:3] == [("start", True, 0), ("end", False, 1), ("start", False, 1)]
    assert model.drawn["val"] == [(i, 0) for i in range(4)]  # validated once, at the end of the epoch
    assert "val_sum" in trainer.callback_metrics


def test_evaluation_steps_that_take_the_iterator_go_through_every_dataloader_in_turn():
    model = DrawsTwo()
    trainer = quiet_trainer()
    trainer.test(model, [loader(8), loader(8)], verbose=False)
    assert model.drawn["test"] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    predictions = trainer.predict(model, loader(16))
    assert predictions == [8, 8]  # two steps of two batches of 4


def test_stop_iteration_from_a_step_that_takes_the_iterator_ends_the_epoch():
    class StopsEarly(DrawsTwo):
        def training_step(self, dataloader_iter):
            if self.trainer.fit_loop.epoch_loop.batch_idx == 2:  # the third step of the epoch
                raise StopIteration
            return super().training_step(dataloader_iter)

    model = StopsEarly()
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(model, loader(32))
    assert len(model.drawn["train"]) == 8  # four batches in each epoch, of eight
    assert trainer.current_epoch == 2


def test_accumulation_closes_its_window_at_the_last_step_of_an_epoch_of_a_step_that_takes_the_iterator():
    """One batch a step, four batches an epoch, windows of three: the optimizer steps after the third and the fourth
    step of each epoch, as in Lightning (recorded with Lightning 2.6.6: `global_step` 4); Ember carried the last
    window's gradients into the next epoch's first window (`global_step` 2)."""
    stepped = []

    class DrawsOne(CoreModel):
        def training_step(self, dataloader_iter):
            batch, batch_idx, _ = next(dataloader_iter)
            return super().training_step(batch, batch_idx)

        def on_before_optimizer_step(self, optimizer):
            stepped.append((self.current_epoch, self.trainer.fit_loop.epoch_loop.batch_idx))

    trainer = quiet_trainer(max_epochs=2, accumulate_grad_batches=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the flavour's note)
        trainer.fit(DrawsOne(), loader(16))  # 4 batches of 4
    assert trainer.global_step == 4
    assert stepped == [(0, 2), (0, 3), (1, 2), (1, 3)]


def test_a_step_that_takes_the_iterator_must_say_the_batch_size_of_what_it_logs():
    # which batch the value came from is the step's business: Lightning refuses to guess its size
    class Logs(DrawsTwo):
        def training_step(self, dataloader_iter):
            loss = super().training_step(dataloader_iter)
            self.log("loss", loss, on_epoch=True, batch_size=self.batch_size)
            return loss

    model = Logs()
    model.batch_size = None
    with pytest.raises(
        ember.utilities.MisconfigurationException, match=r"`self.log\(..., batch_size=...\)` should be provided"
    ):
        quiet_trainer(max_epochs=1).fit(model, loader(24))
    model = Logs()
    model.batch_size = 8  # two drawn batches of 4
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader(24))
    assert "loss_epoch" in trainer.callback_metrics


def test_from_datasets_pins_memory_as_lightning_does():
    dm = ember.LightningDataModule.from_datasets(loader(8).dataset, batch_size=4)
    train = dm.train_dataloader()
    assert train.pin_memory and train.batch_size == 4 and not train.persistent_workers
    with pytest.raises(ember.utilities.MisconfigurationException, match="`val_dataloader` must be implemented"):
        dm.val_dataloader()


@pytest.mark.parametrize("sanity_steps", [0, 1])
def test_validation_loaders_reload_counting_from_the_epoch_they_were_loaded(sanity_steps):
    class Records(CoreModel):
        def __init__(self) -> None:
            super().__init__()
            self.train_loads: list[int] = []
            self.val_loads: list[int] = []

        def train_dataloader(self):
            self.train_loads.append(self.current_epoch)
            return loader(4)

        def val_dataloader(self):
            if not self.trainer.sanity_checking:
                self.val_loads.append(self.current_epoch)
            return loader(4)

    model = Records()
    trainer = quiet_trainer(
        max_epochs=10,
        limit_train_batches=1,
        limit_val_batches=1,
        check_val_every_n_epoch=3,
        reload_dataloaders_every_n_epochs=4,
        num_sanity_val_steps=sanity_steps,
    )
    trainer.fit(model)
    assert model.train_loads == [0, 4, 8]
    # validation runs in epochs 2, 5 and 8: loaded in 2, due again 4 epochs later, so at 8 (not at 4)
    assert model.val_loads == [2, 8]


@pytest.mark.parametrize(
    ("every", "steps"), [(1, [0, 1, 0, 1, 0, 1]), (2, [0, 1, 2, 3, 0, 1]), (0, [0, 1, 2, 3, 4, 5])]
)
def test_step_values_logged_in_validation_count_their_steps_within_the_loaders_loaded(every, steps):
    # as Lightning: reloaded validation loaders log their step values from step 0 again
    from tests.helpers.callback_models import make_recording_logger

    class Logs(CoreModel):
        def validation_step(self, batch, batch_idx):
            self.log("v", float(batch_idx), on_step=True, on_epoch=False)

        def val_dataloader(self):
            return loader(8)

    logger = make_recording_logger(ember)()
    trainer = quiet_trainer(
        max_epochs=3, logger=logger, reload_dataloaders_every_n_epochs=every, num_sanity_val_steps=2
    )
    trainer.fit(Logs(), loader(4))
    assert [step for metrics, step in logger.calls if "v" in metrics] == steps


def test_a_combined_loader_in_evaluation_counts_batches_per_loader_and_runs_the_combined_ones():
    from ember.utilities.combined_loader import CombinedLoader

    seen = []

    class Records(CoreModel):
        def validation_step(self, batch, batch_idx):
            seen.append(batch)

    trainer = quiet_trainer()
    trainer.validate(Records(), CombinedLoader({"a": [0, 1, 2], "b": [3, 4]}, "min_size"), verbose=False)
    assert trainer.num_val_batches == [3, 2]  # each loader's batches, as Lightning reports them
    assert seen == [{"a": 0, "b": 3}, {"a": 1, "b": 4}]
    assert trainer.num_sanity_val_batches == []  # the sanity check belongs to fit


class _EpochRecordingSampler(torch.utils.data.SequentialSampler):
    def __init__(self, data) -> None:
        super().__init__(data)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


@pytest.mark.parametrize("batch_sampler", [False, True])
def test_evaluation_samplers_get_the_training_epoch(batch_sampler):
    def make() -> torch.utils.data.DataLoader:
        data = loader(8).dataset
        sampler = _EpochRecordingSampler(data)
        if batch_sampler:
            return torch.utils.data.DataLoader(data, batch_sampler=torch.utils.data.BatchSampler(sampler, 4, False))
        return torch.utils.data.DataLoader(data, sampler=sampler, batch_size=4)

    def sampler_of(dl):
        return dl.batch_sampler.sampler if batch_sampler else dl.sampler

    train, val = make(), make()
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=1)
    trainer.fit(CoreModel(), train, val)
    assert sampler_of(train).epochs == [0, 1]  # once per epoch, though two attributes lead to it
    assert sampler_of(val).epochs == [0, 0, 1]  # the sanity check, then each validation
    val = make()
    trainer.validate(CoreModel(), val, verbose=False)
    assert sampler_of(val).epochs == [2]  # the epochs fit completed


@pytest.mark.parametrize("fails", [False, True])
def test_persistent_workers_stop_when_the_call_ends(fails):
    import multiprocessing

    from torch.utils.data import DataLoader

    class FailsAtEpochEnd(ember.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if fails:
                raise RuntimeError("stop here")

    train = DataLoader(loader(16).dataset, batch_size=4, num_workers=1, persistent_workers=True)
    trainer = quiet_trainer(max_epochs=2, callbacks=[FailsAtEpochEnd()])
    if fails:
        with pytest.raises(RuntimeError, match="stop here"):
            trainer.fit(CoreModel(), train)
    else:
        trainer.fit(CoreModel(), train)
    assert multiprocessing.active_children() == []


def test_overfit_batches_turns_any_sampler_order_into_a_sequential_one_in_training_and_validation():
    class Reversed(torch.utils.data.Sampler):
        def __init__(self, data) -> None:
            self.n = len(data)

        def __iter__(self):
            return iter(range(self.n - 1, -1, -1))

        def __len__(self) -> int:
            return self.n

    def reversed_loader():
        data = loader().dataset
        return torch.utils.data.DataLoader(data, batch_size=4, sampler=Reversed(data))

    trainer = quiet_trainer(max_epochs=1, overfit_batches=2)
    with pytest.warns(UserWarning) as records:
        trainer.fit(CoreModel(), reversed_loader(), reversed_loader())
    said = [str(r.message) for r in records if "requested to overfit" in str(r.message)]
    assert said == [
        "You requested to overfit but enabled train dataloader shuffling. We are turning off the train dataloader"
        " shuffling for you.",
        "You requested to overfit but enabled val dataloader shuffling. We are turning off the val dataloader"
        " shuffling for you.",
    ]
    assert isinstance(trainer.train_dataloader.sampler, torch.utils.data.SequentialSampler)
    assert isinstance(trainer.val_dataloaders.sampler, torch.utils.data.SequentialSampler)


def test_overfitting_a_shuffled_validation_loader_says_only_that_it_turns_the_shuffling_off():
    # as Lightning: no second warning that a validation loader shuffles, since overfitting turned that off
    shuffled = torch.utils.data.DataLoader(loader(n=8).dataset, batch_size=4, shuffle=True)
    trainer = quiet_trainer(max_epochs=1, overfit_batches=1)
    with pytest.warns(UserWarning) as records:
        trainer.fit(CoreModel(), loader(n=8), shuffled)
    said = [str(r.message) for r in records]
    assert any("requested to overfit but enabled val dataloader shuffling" in m for m in said)
    assert not any("sampler has shuffling enabled" in m for m in said)


def test_overfitting_several_shuffled_loaders_warns_once_for_each_stage():
    def shuffled():
        return torch.utils.data.DataLoader(loader(n=8).dataset, batch_size=4, shuffle=True)

    class TrainsOnA(CoreModel):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch["a"], batch_idx)

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            return super().validation_step(batch, batch_idx)

    trainer = quiet_trainer(max_epochs=1, overfit_batches=1)
    with pytest.warns(UserWarning) as records:
        trainer.fit(TrainsOnA(), {"a": shuffled(), "b": shuffled()}, [shuffled(), shuffled()])
    said = [str(r.message).split(" dataloader")[0] for r in records if "requested to overfit" in str(r.message)]
    # as Lightning: one warning for all the loaders of a stage
    assert said == ["You requested to overfit but enabled train", "You requested to overfit but enabled val"]


def test_overfit_batches_leaves_the_users_batch_sampler_as_it_was():
    data = loader(n=8).dataset
    shuffled = torch.utils.data.RandomSampler(data)
    batches = torch.utils.data.BatchSampler(shuffled, 4, False)
    seen = []

    class Recording(CoreModel):
        def on_train_batch_start(self, batch, batch_idx):
            seen.append(batch[0][:, 0].tolist())

    trainer = quiet_trainer(max_epochs=1, overfit_batches=2)
    with pytest.warns(UserWarning, match="requested to overfit but enabled train dataloader shuffling"):
        trainer.fit(Recording(), torch.utils.data.DataLoader(data, batch_sampler=batches))
    assert seen == [data.tensors[0][:4, 0].tolist(), data.tensors[0][4:, 0].tolist()]  # in the dataset's order
    assert batches.sampler is shuffled  # the sequential order went into a copy: the user's keeps its own


class _WithoutDropLastArgument(torch.utils.data.BatchSampler):
    def __init__(self, sampler, tag):
        self.tag = tag
        super().__init__(sampler, 3, True)


class _LookAlike:
    """Not a torch BatchSampler, but with its arguments."""

    def __init__(self, sampler, batch_size, drop_last):
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        return iter(torch.utils.data.BatchSampler(self.sampler, self.batch_size, self.drop_last))

    def __len__(self):
        return len(torch.utils.data.BatchSampler(self.sampler, self.batch_size, self.drop_last))


@pytest.mark.parametrize("kind", ["BatchSampler", "subclass", "look-alike"])
def test_predict_keeps_the_last_batch_a_batch_sampler_would_drop(kind):
    # as Lightning, but for the subclass whose `__init__` takes no `drop_last`: Lightning can only warn that its
    # predictions may be incomplete and drops the last batch; Ember sets the attribute on a copy
    data = loader(n=8).dataset
    sequential = torch.utils.data.SequentialSampler(data)
    batches = {
        "BatchSampler": lambda: torch.utils.data.BatchSampler(sequential, 3, True),
        "subclass": lambda: _WithoutDropLastArgument(sequential, "x"),
        "look-alike": lambda: _LookAlike(sequential, 3, True),
    }[kind]()
    predictions = quiet_trainer().predict(CoreModel(), torch.utils.data.DataLoader(data, batch_sampler=batches))
    assert [len(p) for p in predictions] == [3, 3, 2]  # every sample, the last two too
    assert batches.drop_last  # the user's own is left as it was


def test_predict_with_a_batch_sampler_it_cannot_change_gives_lightnings_warning():
    class IndexLists:
        def __iter__(self):
            return iter([[0, 1, 2], [3, 4, 5]])

        def __len__(self):
            return 2

    data = loader(n=8).dataset
    with pytest.warns(UserWarning, match="You are using a custom batch sampler `.*IndexLists` for prediction"):
        predictions = quiet_trainer().predict(
            CoreModel(), torch.utils.data.DataLoader(data, batch_sampler=IndexLists())
        )
    assert [len(p) for p in predictions] == [3, 3]  # what it gives, as it gives it


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        data = loader(n=8, batch_size=1).dataset
        return iter(data[i] for i in range(len(data)))


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            {"limit_val_batches": 0.5},
            "When using an `IterableDataset`, `Trainer(limit_val_batches)` must be `1.0` or an int. An int specifies"
            " `num_val_batches` to use.",
        ),
        (
            {"val_check_interval": 0.5},
            "When using an IterableDataset for `train_dataloader`, `Trainer(val_check_interval)` must be time based,"
            " `1.0` or an int. An int k specifies checking validation every k training batches.",
        ),
    ],
)
def test_fractions_of_a_loader_of_unknown_length_are_refused_in_lightnings_words(options, says):
    stream = torch.utils.data.DataLoader(_Stream(), batch_size=4)
    with pytest.raises(ember.utilities.MisconfigurationException) as info:
        quiet_trainer(max_epochs=1, **options).fit(CoreModel(), stream, stream)
    assert str(info.value) == says


@pytest.mark.parametrize(
    ("sized", "expected"),
    [
        # a loader of unknown length: its first batch is read as fit makes the iterator, before the start hooks
        (
            False,
            ["fetch", "on_train_start", "on_train_epoch_start", "fetch", "step0", "fetch", "step1", "step2"]
            + ["on_train_epoch_start", "fetch", "fetch", "step0", "fetch", "step1", "step2"],
        ),
        # a sized one is read as its batches are due
        (
            True,
            ["on_train_start", "on_train_epoch_start", "fetch", "step0", "fetch", "step1", "fetch", "step2"]
            + ["on_train_epoch_start", "fetch", "step0", "fetch", "step1", "fetch", "step2"],
        ),
    ],
)
def test_batches_are_read_when_lightning_reads_them(sized, expected):
    # the orders were observed on Lightning 2.6.6; a start hook that reseeds or switches the data sees the difference
    order = []

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(3):
                order.append("fetch")
                yield torch.full((1, 4), float(i))

    class Sized(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            order.append("fetch")
            return torch.full((1, 4), float(i))

    class Records(CoreModel):
        def on_train_start(self):
            order.append("on_train_start")

        def on_train_epoch_start(self):
            order.append("on_train_epoch_start")

        def training_step(self, batch, batch_idx):
            order.append(f"step{batch_idx}")
            return self.layer(batch).sum()

    data = torch.utils.data.DataLoader(Sized() if sized else Stream(), batch_size=None)
    quiet_trainer(max_epochs=2).fit(Records(), data)
    assert order == expected


def test_a_loader_of_unknown_length_validates_at_its_last_batch_which_the_loop_knows_when_it_comes():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            data = loader(n=12, batch_size=1).dataset
            return iter(data[i] for i in range(len(data)))

    seen = []

    class Records(CoreModel):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            seen.append(("batch", batch_idx, self.trainer.is_last_batch))

        def on_validation_start(self):
            seen.append(("validation", self.trainer.global_step))

        def on_train_epoch_end(self):
            seen.append(("epoch end", self.current_epoch))

    trainer = quiet_trainer(max_epochs=2, limit_val_batches=2)
    stream = torch.utils.data.DataLoader(Stream(), batch_size=4)
    trainer.fit(Records(), stream, loader(n=8))
    assert trainer.num_training_batches == float("inf")
    assert seen == [
        ("batch", 0, False),
        ("batch", 1, False),
        ("batch", 2, True),
        ("validation", 3),
        ("epoch end", 0),
        ("batch", 0, False),
        ("batch", 1, False),
        ("batch", 2, True),
        ("validation", 6),
        ("epoch end", 1),
    ]


@pytest.mark.parametrize("fn", ["fit", "validate", "test", "predict"])
def test_an_iterable_dataset_with_a_length_warns_that_workers_may_make_the_length_wrong(fn):
    class SizedStream(torch.utils.data.IterableDataset):
        def __iter__(self):
            data = loader(n=8).dataset
            return iter(data[i] for i in range(len(data)))

        def __len__(self) -> int:
            return 8

    stream = torch.utils.data.DataLoader(SizedStream(), batch_size=4)
    trainer = quiet_trainer(max_epochs=1)
    with pytest.warns(UserWarning, match=r"Your `IterableDataset` has `__len__` defined\."):
        getattr(trainer, fn)(CoreModel(), stream)


def test_workers_started_by_spawn_without_persistence_get_lightnings_hint():
    def spawned(**kwargs):
        return torch.utils.data.DataLoader(loader().dataset, batch_size=4, multiprocessing_context="spawn", **kwargs)

    hint = r"Consider setting `persistent_workers=True` in 'val_dataloader' to speed up the dataloader worker"
    with pytest.warns(UserWarning, match=hint):
        quiet_trainer(limit_val_batches=1).validate(CoreModel(), spawned(num_workers=1))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*persistent_workers=True")
        quiet_trainer(limit_val_batches=1).validate(CoreModel(), spawned(num_workers=1, persistent_workers=True))


def test_few_workers_on_a_machine_with_cpus_to_spare_get_lightnings_hint_with_the_suggested_number(monkeypatch):
    from ember.utilities import suggested_max_num_workers
    from ember.utilities.warnings import PossibleUserWarning

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert suggested_max_num_workers(1) == 7  # one CPU left to the main process
    assert suggested_max_num_workers(2) == 3  # two processes share the eight
    assert suggested_max_num_workers(16) == 1
    with pytest.raises(ValueError, match="`local_world_size` should be >= 1, got 0"):
        suggested_max_num_workers(0)

    hint = (
        r"The 'train_dataloader' does not have many workers which may be a bottleneck\. Consider increasing the value"
        r" of the `num_workers` argument` to `num_workers=7` in the `DataLoader`"
    )
    with pytest.warns(PossibleUserWarning, match=hint):
        quiet_trainer(max_steps=1, limit_val_batches=0).fit(CoreModel(), loader())
    with pytest.warns(PossibleUserWarning, match="'test_dataloader' does not have many workers"):
        quiet_trainer().test(CoreModel(), loader())
    # two workers are enough; so is a machine with no CPU to spare
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*does not have many workers")
        two = torch.utils.data.DataLoader(loader().dataset, batch_size=4, num_workers=2)
        quiet_trainer(limit_test_batches=1).test(CoreModel(), two)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        quiet_trainer().test(CoreModel(), loader())


def test_pinned_persistent_workers_with_reloaded_loaders_get_lightnings_warning():
    from ember.utilities.warnings import PossibleUserWarning

    pinned = torch.utils.data.DataLoader(
        loader().dataset, batch_size=4, num_workers=1, persistent_workers=True, pin_memory=True
    )
    with pytest.warns(PossibleUserWarning, match=r"`pin_memory=True`, `persistent_workers=True`\) and `Trainer\("):
        quiet_trainer(max_steps=1, limit_val_batches=0, reload_dataloaders_every_n_epochs=1).fit(CoreModel(), pinned)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*pin_memory=True")
        quiet_trainer(max_steps=1, limit_val_batches=0).fit(CoreModel(), pinned)


@pytest.mark.parametrize(
    ("every_n_epochs", "expected"),
    [
        # the batches of three epochs, recorded on Lightning 2.6.6: a reload creates one training iterator more
        # than it uses, which draws from the random generator and so moves the shuffles after it
        (0, [[11, 0, 3, 9], [2, 1, 10, 7], [5, 6, 8, 4], [5, 3, 11, 1], [2, 0, 8, 10], [9, 4, 6, 7], [0, 9, 5, 11]]),
        (1, [[11, 0, 3, 9], [2, 1, 10, 7], [5, 6, 8, 4], [0, 9, 8, 5], [2, 1, 10, 6], [11, 4, 3, 7], [4, 6, 8, 5]]),
        (2, [[11, 0, 3, 9], [2, 1, 10, 7], [5, 6, 8, 4], [5, 3, 11, 1], [2, 0, 8, 10], [9, 4, 6, 7], [1, 7, 9, 0]]),
    ],
)
def test_reloaded_training_dataloaders_shuffle_as_in_lightning(every_n_epochs, expected):
    # as torchmd-net's data module: the same shuffled training loader at each reload, validation every epoch
    class Data(ember.LightningDataModule):
        def setup(self, stage):
            self.data = torch.utils.data.TensorDataset(torch.arange(12.0).unsqueeze(1))
            self.shuffled = torch.utils.data.DataLoader(self.data, batch_size=4, shuffle=True)

        def train_dataloader(self):
            return self.shuffled

        def val_dataloader(self):
            return torch.utils.data.DataLoader(self.data, batch_size=6)

    class Validating(RecordingModel):
        def validation_step(self, batch, batch_idx):
            pass

    ember.seed_everything(0)
    model = Validating()
    trainer = quiet_trainer(max_epochs=3, reload_dataloaders_every_n_epochs=every_n_epochs, num_sanity_val_steps=2)
    trainer.fit(model, datamodule=Data())
    assert model.seen[:7] == expected


@pytest.mark.parametrize(
    ("every_n_epochs", "expected"),
    [
        # recorded on Lightning 2.6.6: with data of unknown length, the training iterator a reload makes and never
        # uses reads its first batch ahead, so the stream draws its order once more before the epoch's own
        (0, [[0, 11, 5, 1], [3, 9, 8, 4], [2, 10, 7, 6], [1, 5, 0, 9], [7, 3, 10, 11], [4, 6, 2, 8]]),
        (1, [[1, 5, 0, 9], [7, 3, 10, 11], [4, 6, 2, 8], [11, 6, 8, 5], [7, 4, 9, 0], [3, 2, 10, 1]]),
        (2, [[0, 11, 5, 1], [3, 9, 8, 4], [2, 10, 7, 6], [1, 10, 9, 7], [3, 2, 4, 6], [5, 11, 8, 0]]),
    ],
)
def test_a_reloaded_stream_of_unknown_length_draws_as_in_lightning(every_n_epochs, expected):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            order = torch.randperm(12)  # drawn from the global RNG as the stream starts
            for i in range(0, 12, 4):
                yield order[i : i + 4].float().unsqueeze(1)

    ember.seed_everything(0)
    model = RecordingModel()
    trainer = quiet_trainer(max_epochs=3, reload_dataloaders_every_n_epochs=every_n_epochs)
    trainer.fit(model, torch.utils.data.DataLoader(Stream(), batch_size=None))
    assert model.seen[:3] == [[7, 4, 9, 1], [5, 10, 11, 8], [0, 2, 3, 6]]
    assert model.seen[3:] == expected


@pytest.mark.parametrize("draws_its_batches", [False, True])
def test_an_empty_dataloader_between_two_gets_its_iterator_as_in_lightning(draws_its_batches):
    # Lightning's sequential reading makes the iterator of a dataloader with no batch when it passes it (its base
    # seed a draw from the RNG: 866 after the test on Lightning 2.6.6, with the step given batches or drawing
    # them from `dataloader_iter`); the step drawing its own batches skipped it on Ember (683)
    class Steps(RecordingModel):
        if draws_its_batches:

            def test_step(self, dataloader_iter):
                next(dataloader_iter)

        else:

            def test_step(self, batch, batch_idx, dataloader_idx=0):
                pass

    ember.seed_everything(0)
    loaders = [torch.utils.data.DataLoader(_SizedDrawingStream(n), batch_size=None) for n in (2, 0, 1)]
    quiet_trainer().test(Steps(), loaders)
    assert int(torch.randint(0, 1000, ())) == 866


def test_training_data_of_unknown_length_that_ends_at_its_first_batch_is_not_read_again_as_in_lightning():
    # two streams cycled (max_size_cycle), one of them empty: the first read, as the fit sets its data up, ends the
    # epoch's data; Lightning does not read it again in that epoch, and Ember read it once more, which drew another
    # batch from the other stream (the RNG after the fit: 56 on Lightning 2.6.6, 33 on Ember before)
    from ember.utilities.combined_loader import CombinedLoader

    ember.seed_everything(0)
    trainer = quiet_trainer(max_epochs=2)
    streams = [torch.utils.data.DataLoader(_DrawingStream(n), batch_size=None) for n in (2, 0)]
    trainer.fit(RecordingModel(), CombinedLoader(streams, "max_size_cycle"))
    assert trainer.global_step == 0
    assert int(torch.randint(0, 1000, ())) == 56


# recorded on Lightning 2.6.6 (`[dataloader_idx, the batch the stream drew, the step's draw]`): evaluation and
# prediction data of unknown length are read one batch ahead, the first before the loop's start hooks and the
# second stream's first before the step of the first stream's last batch
_FIRST_STREAMS_START = [[0, 963, 427], [0, 379, 497], [0, 503, 756], [1, 866, 878], [1, 399, 56], [1, 376, 868]]
_READ_AHEAD_DRAWS = {
    "fit": [[0, 427, 497], [0, 503, 101], [0, 683, 878], [1, 399, 56], [1, 376, 794], [1, 868, 33]],
    "validate": _FIRST_STREAMS_START,
    "test": _FIRST_STREAMS_START,
    "predict": _FIRST_STREAMS_START,
}


@pytest.mark.parametrize("fn", sorted(_READ_AHEAD_DRAWS))
def test_evaluation_data_of_unknown_length_draws_as_in_lightning(fn):
    # a stream that draws from the global RNG as it is read, and steps that draw too: the two interleave as in
    # Lightning only if the batches are read when Lightning reads them (Ember read each just before its step)
    class Drawing(RecordingModel):
        def __init__(self):
            super().__init__()
            self.drawn = []

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            self.drawn.append([dataloader_idx, int(batch), int(torch.randint(0, 1000, ()))])

        test_step = validation_step

        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            self.validation_step(batch, batch_idx, dataloader_idx)

    ember.seed_everything(0)
    model = Drawing()
    trainer = quiet_trainer(max_epochs=1)
    streams = [torch.utils.data.DataLoader(_DrawingStream(3), batch_size=None) for _ in range(2)]
    if fn == "fit":
        trainer.fit(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 1))), streams)
    else:
        getattr(trainer, fn)(model, streams)
    assert model.drawn == _READ_AHEAD_DRAWS[fn]


@pytest.mark.parametrize("limit", [2, 1.0])
@pytest.mark.parametrize("fn", ["validate", "test", "predict"])
def test_the_dataloaders_after_the_last_batch_counted_get_no_iterator_as_in_lightning(fn, limit):
    # Lightning's loop ends once it has had the batches it counted (here the first loader's 4, or 2): the empty
    # loader after them gets no iterator, whose making draws from the RNG (963 recorded on Lightning 2.6.6;
    # Ember made it, and drew 427)
    class Steps(RecordingModel):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            pass

        test_step = predict_step = validation_step

    ember.seed_everything(0)
    trainer = quiet_trainer(**{f"limit_{'val' if fn == 'validate' else fn}_batches": limit})
    loaders = [
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(8, 1)), batch_size=2),
        torch.utils.data.DataLoader(_SizedDrawingStream(0), batch_size=None),
    ]
    getattr(trainer, fn)(Steps(), loaders)
    assert int(torch.randint(0, 1000, ())) == 963


@pytest.mark.parametrize(("fn", "key"), [("fit", "val"), ("validate", "val"), ("test", "test"), ("predict", "predict")])
def test_a_shuffled_evaluation_loader_gets_lightnings_warning_once(fn, key):
    from ember.utilities.warnings import PossibleUserWarning

    data = loader(n=8).dataset
    shuffled = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if fn == "fit":
            trainer.fit(CoreModel(), loader(n=8), shuffled)
        else:
            getattr(trainer, fn)(CoreModel(), shuffled)
    text = f"Your `{key}_dataloader`'s sampler has shuffling enabled, it is strongly recommended"
    found = [w for w in caught if str(w.message).startswith(text)]
    assert len(found) == 1 and found[0].category is PossibleUserWarning
    # an ordered one says nothing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer().validate(CoreModel(), loader(n=8))
    assert not [w for w in caught if "shuffling enabled" in str(w.message)]


def test_a_loader_that_is_not_a_dataloader_is_checked_by_making_an_iterator_as_lightning_does():
    # mlcolvar's DictLoader shuffles with the global generator in `__iter__`: Lightning's check makes
    # one iterator before the epoch's, so the epoch gets the second permutation (recorded on Lightning 2.6.6)
    class ShuffledLoader:
        def __init__(self):
            self.permutations = []

        def __iter__(self):
            permutation = torch.randperm(6)
            self.permutations.append(permutation.tolist())
            return iter(permutation.float().view(2, 3, 1))

        def __len__(self):
            return 2

    class Recording(CoreModel):
        def __init__(self):
            super().__init__()
            self.batches = []

        def training_step(self, batch, batch_idx):
            self.batches.append(batch.flatten().tolist())
            return self.layer(batch.expand(-1, 4)).sum()

    data, model = ShuffledLoader(), Recording()
    ember.seed_everything(0)
    quiet_trainer(max_epochs=1).fit(model, data)
    assert data.permutations == [[2, 5, 3, 0, 1, 4], [3, 0, 5, 4, 2, 1]]
    assert model.batches == [[3.0, 0.0, 5.0], [4.0, 2.0, 1.0]]


def test_a_loader_loaded_for_estimated_stepping_batches_is_the_one_trained_on():
    """``configure_optimizers`` reading ``trainer.estimated_stepping_batches`` loads the training data; as in
    Lightning, fit then trains on that loader instead of calling the hook again (a random split is drawn once)."""
    from torch.utils.data import DataLoader, Subset

    class RandomSplit(CoreModel):
        def __init__(self):
            super().__init__()
            self.splits, self.seen = [], []

        def train_dataloader(self):
            self.splits.append(torch.randperm(8)[:4].tolist())
            return DataLoader(Subset(loader(n=8).dataset, self.splits[-1]), batch_size=1)

        def training_step(self, batch, batch_idx):
            self.seen.append(batch[0])
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self):
            optimizer = super().configure_optimizers()
            steps = self.trainer.estimated_stepping_batches
            return {
                "optimizer": optimizer,
                "lr_scheduler": torch.optim.lr_scheduler.LinearLR(optimizer, total_iters=steps),
            }

    torch.manual_seed(0)
    model = RandomSplit()
    quiet_trainer(max_epochs=1).fit(model)
    assert len(model.splits) == 1
    expected = [loader(n=8).dataset[i][0] for i in model.splits[0]]
    assert all(torch.equal(seen[0], sample) for seen, sample in zip(model.seen, expected, strict=True))


def test_estimated_stepping_batches_in_configure_optimizers_makes_the_first_iterator_there_as_lightning():
    # Lightning makes the first epoch's iterator as it loads the data for the estimate (the docs' OneCycleLR
    # recipe): its base-seed draw comes before `on_fit_start`, which then draws the next numbers (recorded on
    # Lightning 2.6.6: 0.89644 with the estimate read, 0.63408 without; 0.45563 at `on_train_start` in both)
    from torch.utils.data import DataLoader, TensorDataset

    class Draws(CoreModel):
        def __init__(self, estimate: bool) -> None:
            super().__init__()
            self.estimate, self.draws, self.first = estimate, {}, None

        def configure_optimizers(self):
            if self.estimate:
                assert self.trainer.estimated_stepping_batches == 4
            return super().configure_optimizers()

        def on_fit_start(self):
            self.draws["fit_start"] = torch.rand(1).item()

        def on_train_start(self):
            self.draws["train_start"] = torch.rand(1).item()

        def train_dataloader(self):
            x = torch.arange(32.0).reshape(8, 4)
            return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=2, shuffle=True)

        def training_step(self, batch, batch_idx):
            if self.first is None:
                self.first = batch[0][:, 0].tolist()
            return super().training_step(batch, batch_idx)

    runs = {}
    for estimate in (True, False):
        ember.seed_everything(0)
        runs[estimate] = Draws(estimate)
        quiet_trainer(max_epochs=1).fit(runs[estimate])
    assert runs[True].draws["fit_start"] != runs[False].draws["fit_start"]
    assert runs[True].draws["train_start"] == runs[False].draws["train_start"]
    assert runs[True].first == runs[False].first


def test_estimated_stepping_batches_read_outside_fit_makes_the_iterator_as_lightning_does():
    # Lightning's estimate sets the fit loop's data up in any call, and that makes the first epoch's iterator,
    # whose base seed is drawn from the RNG: after `validate`, the next draw is 0.63231 on Lightning 2.6.6
    # (0.89644 without the iterator)
    from torch.utils.data import DataLoader, TensorDataset

    class Shuffled(CoreModel):
        def train_dataloader(self):
            x = torch.arange(32.0).reshape(8, 4)
            return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=2, shuffle=True)

        def validation_step(self, batch, batch_idx):
            pass

        def val_dataloader(self):
            return loader(n=4, batch_size=2)

    ember.seed_everything(0)
    trainer = quiet_trainer(max_epochs=2)
    trainer.validate(Shuffled(), verbose=False)
    assert trainer.estimated_stepping_batches == 8
    assert round(torch.rand(1).item(), 5) == 0.63231


def test_seeded_workers_and_overfit_reach_a_loader_over_an_iterable_dataset(monkeypatch):
    """As in Lightning: `seed_everything(workers=True)` gives every loader its `worker_init_fn` (an iterable
    dataset's, one without workers), and `overfit_batches` warns about an iterable dataset's own order."""
    from torch.utils.data import DataLoader, IterableDataset

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(loader(n=8).dataset)

    monkeypatch.setenv("PL_SEED_WORKERS", "1")
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(CoreModel(), DataLoader(Stream(), batch_size=4), DataLoader(loader(n=4).dataset, batch_size=4))
    for prepared in (trainer.train_dataloader, trainer.val_dataloaders):
        assert prepared.worker_init_fn.func.__name__ == "pl_worker_init_function"
    with pytest.warns(UserWarning, match="You requested to overfit but enabled train dataloader shuffling"):
        quiet_trainer(max_steps=1, overfit_batches=1).fit(CoreModel(), DataLoader(Stream(), batch_size=4))


def test_a_loader_subclass_that_cannot_take_the_sampler_still_gets_it():
    """Its `__init__` has no `sampler` and no `**kwargs`: rebuilt through it, the sampler was dropped silently
    (in DDP every rank drew the whole dataset); the copy is made with `DataLoader.__init__` instead."""
    from torch.utils.data import DataLoader, SequentialSampler

    class Fixed(DataLoader):
        def __init__(self, dataset, batch_size=2):
            super().__init__(dataset, batch_size=batch_size, shuffle=True)

    trainer = quiet_trainer(max_steps=1, overfit_batches=2)
    with pytest.warns(UserWarning, match="You requested to overfit but enabled train dataloader shuffling"):
        trainer.fit(CoreModel(), Fixed(loader(n=8).dataset))
    assert isinstance(trainer.train_dataloader.sampler, SequentialSampler)


def test_a_loader_subclass_made_in_a_hook_is_made_again_with_the_arguments_it_was_given():
    """Its `__init__` keeps an argument under another name: the arguments the hook passed are recorded, as
    Lightning records them, and the copy with the new sampler gets them (it was made without its `__init__`)."""
    from torch.utils.data import DataLoader, SequentialSampler

    class Scaled(DataLoader):
        def __init__(self, dataset, scale, **kwargs):
            super().__init__(dataset, **kwargs)
            self.factor = scale

    seen = []

    class UsesScaled(CoreModel):
        def train_dataloader(self):
            return Scaled(loader(n=8).dataset, scale=10, batch_size=4, shuffle=True)

        def training_step(self, batch, batch_idx):
            seen.append(self.trainer.train_dataloader.factor)
            return super().training_step(batch, batch_idx)

    trainer = quiet_trainer(max_steps=1, overfit_batches=1)
    with pytest.warns(UserWarning, match="You requested to overfit"):
        trainer.fit(UsesScaled())
    assert isinstance(trainer.train_dataloader, Scaled) and isinstance(
        trainer.train_dataloader.sampler, SequentialSampler
    )
    assert seen == [10]
    assert "__wrapped__" not in Scaled.__dict__["__init__"].__dict__  # the hook's recording is undone


def test_a_batch_sampler_subclass_made_in_a_hook_is_made_again_with_the_arguments_it_was_given():
    """Its `__init__` takes an argument it keeps under another name: recorded in the hook, as Lightning records
    it, the copy drawing from the overfit run's sampler is made through its own `__init__`."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    class Grouped(BatchSampler):
        def __init__(self, sampler, group, drop_last=False):
            super().__init__(sampler, batch_size=group * 2, drop_last=drop_last)
            self.groups = group
            self.order = list(sampler)  # drawn once, here: a copy that only swaps `sampler` keeps the old order

        def __iter__(self):
            for start in range(0, len(self.order), self.batch_size):
                yield self.order[start : start + self.batch_size]

    class UsesGrouped(CoreModel):
        def train_dataloader(self):
            data = loader(n=8).dataset
            return DataLoader(data, batch_sampler=Grouped(RandomSampler(data), group=2))

    trainer = quiet_trainer(max_steps=1, overfit_batches=1)
    with pytest.warns(UserWarning, match="You requested to overfit"):
        trainer.fit(UsesGrouped())
    remade = trainer.train_dataloader.batch_sampler
    assert isinstance(remade, Grouped) and remade.groups == 2 and remade.batch_size == 4
    assert isinstance(remade.sampler, SequentialSampler) and remade.order == list(range(8))
