"""Which callbacks a Trainer runs, and in which order."""

import os
import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ModelSummary,
    Timer,
    TQDMProgressBar,
)
from ember.utilities.exceptions import MisconfigurationException


def _loader():
    return DataLoader(TensorDataset(torch.randn(16, 4), torch.randn(16, 1)), batch_size=4)


class Regressor(ember.LightningModule):
    def __init__(self, extra_callbacks=()):
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.extra_callbacks = list(extra_callbacks)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def configure_callbacks(self):
        return self.extra_callbacks


def test_defaults_are_checkpoint_progress_bar_and_summary(tmp_path):
    trainer = ember.Trainer(default_root_dir=tmp_path)
    kinds = [type(cb) for cb in trainer.callbacks]
    assert TQDMProgressBar in kinds and ModelSummary in kinds
    assert kinds[-1] is ModelCheckpoint  # checkpoint callbacks run last
    assert trainer.checkpoint_callback is trainer.callbacks[-1]
    assert isinstance(trainer.progress_bar_callback, TQDMProgressBar)


def test_the_callbacks_list_given_is_left_as_it_was_and_each_trainer_has_its_own_defaults(tmp_path):
    # Lightning appends its defaults to the caller's list, so a second Trainer given the same list runs
    # the first one's ModelCheckpoint: it writes into the first run's folder
    given = [Callback()]
    first = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=given, enable_progress_bar=False)
    first.fit(Regressor(), _loader())
    second = ember.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=given, enable_progress_bar=False)
    second.fit(Regressor(), _loader())
    assert len(given) == 1 and type(given[0]) is Callback
    assert first.checkpoint_callback is not second.checkpoint_callback
    assert os.path.basename(os.path.dirname(os.path.dirname(first.checkpoint_callback.best_model_path))) == "version_0"
    assert os.path.basename(os.path.dirname(os.path.dirname(second.checkpoint_callback.best_model_path))) == "version_1"


def test_each_default_can_be_turned_off(tmp_path):
    trainer = ember.Trainer(
        default_root_dir=tmp_path, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    assert trainer.callbacks == []
    assert trainer.checkpoint_callback is None and trainer.progress_bar_callback is None


def test_max_time_adds_a_timer(tmp_path):
    trainer = ember.Trainer(default_root_dir=tmp_path, max_time="00:00:01:00")
    timers = [cb for cb in trainer.callbacks if isinstance(cb, Timer)]
    assert len(timers) == 1


def test_checkpoint_callbacks_are_moved_last_and_others_keep_their_order(tmp_path):
    first, second = Callback(), LearningRateMonitor()
    checkpoint = ModelCheckpoint(dirpath=tmp_path)
    stopper = EarlyStopping("train_loss")
    trainer = ember.Trainer(
        default_root_dir=tmp_path,
        callbacks=[checkpoint, first, stopper, second],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    assert trainer.callbacks == [first, stopper, second, checkpoint]


def test_configure_callbacks_replaces_trainer_callbacks_of_the_same_type(tmp_path):
    trainer_stopper = EarlyStopping("train_loss", patience=1)
    model_stopper = EarlyStopping("train_loss", patience=7)
    model_checkpoint = ModelCheckpoint(dirpath=tmp_path / "model")
    trainer = ember.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        callbacks=[trainer_stopper],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    trainer.fit(Regressor([model_stopper, model_checkpoint]), _loader())
    assert trainer_stopper not in trainer.callbacks
    assert model_stopper in trainer.callbacks
    assert trainer.callbacks[-1] is model_checkpoint  # the default ModelCheckpoint was replaced too
    assert sum(isinstance(cb, ModelCheckpoint) for cb in trainer.callbacks) == 1


class _SetSlot(type):
    """A metaclass that pins where a callback type sits in a set of types: the order Lightning's choice follows."""

    def __hash__(cls):
        return cls.slot


class _Named(Callback, metaclass=_SetSlot):
    def __init__(self, name):
        self.name = name


@pytest.mark.parametrize("base_first", [True, False])
@pytest.mark.parametrize(
    ("returned", "kept"),
    [
        ("Derived", ["trainer Base"]),  # its own type: the trainer's Derived, not also the base
        ("DerivedAgain", ["trainer Base"]),  # the nearest base in its MRO: Derived
        ("Sibling", ["trainer Derived"]),  # its nearest base the trainer has: Base
    ],
)
def test_configure_callbacks_replaces_the_trainer_callbacks_of_its_nearest_class(
    tmp_path, caplog, base_first, returned, kept
):
    # Lightning replaces the first trainer type it meets in a set that the returned type subclasses, which
    # depends on memory layout: the base or the subclass, from run to run (docs/compat.md)
    base = type("Base", (_Named,), {"slot": 0 if base_first else 1})
    derived = type("Derived", (base,), {"slot": 1 if base_first else 0})
    types = {
        "Derived": derived,
        "DerivedAgain": type("DerivedAgain", (derived,), {"slot": 2}),
        "Sibling": type("Sibling", (base,), {"slot": 3}),
    }
    trainer = _quiet(tmp_path, max_steps=1, callbacks=[derived("trainer Derived"), base("trainer Base")])
    with caplog.at_level("INFO"):
        trainer.fit(Regressor([types[returned]("model")]), _loader())
    assert [cb.name for cb in trainer.callbacks if isinstance(cb, base)] == [*kept, "model"]
    assert any("will override existing callbacks passed to Trainer" in r.getMessage() for r in caplog.records)


def test_bad_callback_configurations_fail_with_the_fix(tmp_path):
    with pytest.raises(MisconfigurationException, match="enable_checkpointing=False"):
        ember.Trainer(callbacks=[ModelCheckpoint()], enable_checkpointing=False)
    with pytest.raises(MisconfigurationException, match="multiple progress bar"):
        ember.Trainer(callbacks=[TQDMProgressBar(), TQDMProgressBar()])
    with pytest.raises(MisconfigurationException, match="enable_progress_bar=False"):
        ember.Trainer(callbacks=[TQDMProgressBar()], enable_progress_bar=False)
    with pytest.raises(TypeError, match="not a `Callback`"):
        ember.Trainer(callbacks=[object()])


class _Returns(Regressor):
    def __init__(self, returned):
        super().__init__()
        self.returned = returned

    def configure_callbacks(self):
        return self.returned() if callable(self.returned) and not isinstance(self.returned, type) else self.returned


@pytest.mark.parametrize(
    ("returned", "says"),
    [
        # (Python's words before: "'int' object is not iterable", "'str' object has no attribute 'log'", "'int'
        # object has no attribute 'log'", "'type' object is not iterable")
        (5, "returned 5 (int), which is neither a `Callback` nor a list of them: return one, or a list,"),
        ("early_stopping", "returned 'early_stopping' (str), which is neither a `Callback` nor a list of them"),
        ([5], "returned a list holding 5, which is not a `Callback`"),
        (ModelCheckpoint, "returned the class ModelCheckpoint: pass an instance, `ModelCheckpoint()`."),
    ],
)
def test_configure_callbacks_returning_no_callbacks_is_named(tmp_path, returned, says):
    trainer = _quiet(tmp_path, max_epochs=1)
    with pytest.raises(TypeError, match=re.escape(f"`LightningModule.configure_callbacks()` {says}")):
        trainer.fit(_Returns(returned), _loader())


def test_the_callbacks_a_configure_callbacks_generator_yields_are_all_added(tmp_path):
    # a generator was read twice, and its callbacks were lost without a word
    trainer = _quiet(tmp_path, max_epochs=1)
    trainer.fit(_Returns(lambda: (cb for cb in [EarlyStopping("train_loss")])), _loader())
    assert [type(cb) for cb in trainer.callbacks if isinstance(cb, EarlyStopping)] == [EarlyStopping]


def test_a_callback_class_given_to_the_trainer_is_told_to_be_an_instance():
    with pytest.raises(
        TypeError, match=re.escape("got the class ModelCheckpoint: pass an instance, `ModelCheckpoint()`.")
    ):
        ember.Trainer(callbacks=ModelCheckpoint)
    with pytest.raises(TypeError, match=re.escape("got a list holding the class ModelCheckpoint: pass an instance")):
        ember.Trainer(callbacks=[ModelCheckpoint])


def test_two_stateful_callbacks_with_one_state_key_are_refused():
    class Stateful(ember.Callback):
        def state_dict(self):
            return {"n": 1}

    with pytest.raises(RuntimeError, match="Found more than one stateful callback of type `Stateful`"):
        ember.Trainer(callbacks=[Stateful(), Stateful()])

    class Keyed(Stateful):
        def __init__(self, key):
            self.key = key

        @property
        def state_key(self):
            return self.key

    ember.Trainer(callbacks=[Keyed("a"), Keyed("b")])  # distinct keys: fine
    ember.Trainer(callbacks=[ember.Callback(), ember.Callback()])  # no state: fine


def test_unused_hooks_are_never_dispatched(tmp_path):
    """A callback that overrides one hook is called for that hook only."""
    calls = []

    class OnlyEpochs(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            calls.append(trainer.current_epoch)

    callback = OnlyEpochs()
    trainer = ember.Trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(Regressor(), _loader())
    assert calls == [0, 1]
    assert not trainer._run.hooks.has_callbacks("on_train_batch_end")
    assert trainer._run.hooks.has_callbacks("on_train_epoch_end")


def test_lightning_import_paths_resolve():
    from ember.callbacks.progress import RichProgressBarTheme
    from ember.callbacks.progress import TQDMProgressBar as Bar
    from ember.utilities.model_summary import ModelSummary as Table
    from ember.utilities.model_summary import summarize

    assert Bar is TQDMProgressBar and RichProgressBarTheme is not None
    assert isinstance(summarize(Regressor()), Table)


def test_lightning_strategy_and_environment_paths_resolve():
    import ember as pl
    from ember.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
    from ember.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy

    assert pl.strategies.DDPStrategy is DDPStrategy
    assert FSDPStrategy and SingleDeviceStrategy and SLURMEnvironment and TorchElasticEnvironment


def test_monitoring_callbacks_see_what_the_module_logs_at_train_epoch_end(tmp_path):
    """EarlyStopping and ModelCheckpoint run after the module's on_train_epoch_end; other callbacks before."""
    order = []

    class LogsAtEpochEnd(Regressor):
        def on_train_epoch_end(self):
            order.append("module")
            self.log("epoch_metric", float(self.current_epoch))

    class Plain(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            order.append("plain")

    class Stopper(EarlyStopping):
        def on_train_epoch_end(self, trainer, pl_module):
            order.append("early_stopping")
            super().on_train_epoch_end(trainer, pl_module)

    stopper = Stopper("epoch_metric", mode="max", patience=5, check_on_train_epoch_end=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="epoch_metric", mode="max")
    trainer = ember.Trainer(
        max_epochs=2,
        default_root_dir=tmp_path,
        callbacks=[stopper, checkpoint, Plain()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LogsAtEpochEnd(), _loader())
    assert order == ["plain", "module", "early_stopping"] * 2
    assert checkpoint.best_model_score == 1.0  # the checkpoint saw the value logged by the module


def test_a_summary_of_ones_own_replaces_the_default_and_says_so(caplog):
    with caplog.at_level("INFO"):
        trainer = ember.Trainer(callbacks=[ModelSummary(max_depth=2)], logger=False, enable_checkpointing=False)
    assert [type(cb) for cb in trainer.callbacks].count(ModelSummary) == 1
    said = [r.getMessage() for r in caplog.records if "model summary callbacks" in r.getMessage()]
    assert said == [  # Lightning's message
        f"Trainer already configured with model summary callbacks: {[ModelSummary]}."
        " Skipping setting a default `ModelSummary` callback."
    ]


def test_callbacks_added_in_setup_get_the_hooks_after_it(tmp_path):
    # stable-pretraining's kNN and RankMe callbacks add their queue callbacks in `setup`; recorded on Lightning 2.6.6
    calls = []

    class Late(Callback):
        def __init__(self, tag):
            self.tag = tag

        def setup(self, trainer, pl_module, stage):
            calls.append(f"{self.tag}.setup")

        def on_fit_start(self, trainer, pl_module):
            calls.append(f"{self.tag}.on_fit_start")

        def on_train_epoch_start(self, trainer, pl_module):
            calls.append(f"{self.tag}.on_train_epoch_start")

        def teardown(self, trainer, pl_module, stage):
            calls.append(f"{self.tag}.teardown")

    class Adder(Callback):
        def setup(self, trainer, pl_module, stage):
            trainer.callbacks.append(Late("from_callback"))

    class AddsInSetup(Regressor):
        def setup(self, stage):
            self.trainer.callbacks.append(Late("from_module"))

    trainer = ember.Trainer(
        max_epochs=1, default_root_dir=tmp_path, logger=False, enable_checkpointing=False, callbacks=[Adder()]
    )
    trainer.fit(AddsInSetup(), _loader())
    assert calls == [
        "from_callback.setup",
        "from_callback.on_fit_start",
        "from_module.on_fit_start",
        "from_callback.on_train_epoch_start",
        "from_module.on_train_epoch_start",
        "from_callback.teardown",
        "from_module.teardown",
    ]


def test_callbacks_from_installed_packages_entry_points_join_every_trainer(tmp_path):
    # as Lightning's `callbacks_factory` entry points (stable-pretraining registers its callbacks so);
    # Ember reads Lightning's two groups, and a factory named in both adds its callbacks once
    import subprocess
    import sys
    import textwrap

    (tmp_path / "extra_callbacks.py").write_text(
        textwrap.dedent(
            """
            import ember

            class Hello(ember.Callback):
                def on_fit_start(self, trainer, pl_module):
                    print("hello from", type(self).__name__)

            def one():
                return Hello()

            def several():
                return [Hello(), ember.callbacks.Timer()]
            """
        )
    )
    info = tmp_path / "extra_callbacks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-callbacks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[lightning.pytorch.callbacks_factory]\nfirst = extra_callbacks:one\nboth = extra_callbacks:several\n\n"
        "[pytorch_lightning.callbacks_factory]\nboth = extra_callbacks:several\n"
    )
    program = """
        import logging, torch, ember
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        trainer = ember.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)
        print([type(cb).__name__ for cb in trainer.callbacks])
        model = ember.LightningModule()
        model.layer = torch.nn.Linear(1, 1)
        model.training_step = lambda batch, batch_idx: model.layer(batch).sum()
        model.configure_optimizers = lambda: torch.optim.SGD(model.parameters(), lr=0.1)
        trainer.fit(model, torch.utils.data.DataLoader(torch.ones(2, 1)))
        print(len(ember.Trainer(logger=False).callbacks))
    """
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "['Hello', 'Hello', 'Timer']"
    assert lines[1:4] == ["hello from Hello"] * 2 + ["6"]  # the defaults (checkpoint, bar, summary), and 3 new ones
    assert "Adding 1 callbacks from entry point 'first': Hello" in done.stderr
    assert "Adding 2 callbacks from entry point 'both': Hello, Timer" in done.stderr


class _Counter(ember.Callback):
    """Counts training batches; its state is ``{"n": <count>, "seen": [...]}``."""

    def __init__(self, key="counter"):
        self.key, self.n, self.seen = key, 0, []

    @property
    def state_key(self):
        return self.key

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.n += 1
        self.seen.append(self.n)

    def state_dict(self):
        return {"n": self.n, "seen": self.seen}

    def load_state_dict(self, state_dict):
        self.n, self.seen = state_dict["n"], state_dict["seen"]


def _quiet(tmp_path, **kwargs):
    options = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    return ember.Trainer(default_root_dir=tmp_path, **{**options, **kwargs})


def test_callback_states_are_read_after_the_load_hooks_and_copied_as_in_lightning(tmp_path):
    # a hook may move a state to a renamed key; each callback gets its own copy, not the checkpoint's objects
    trainer = _quiet(tmp_path, max_epochs=1, callbacks=[_Counter("old")])
    trainer.fit(Regressor(), _loader())
    trainer.save_checkpoint(tmp_path / "a.ckpt")

    class Renamed(_Counter):
        def on_load_checkpoint(self, trainer, pl_module, checkpoint):
            checkpoint["callbacks"] = {"new": checkpoint["callbacks"]["old"]}
            kept.append(checkpoint["callbacks"]["new"])

    kept: list = []
    callback = Renamed("new")
    _quiet(tmp_path, max_epochs=2, callbacks=[callback]).fit(Regressor(), _loader(), ckpt_path=tmp_path / "a.ckpt")
    assert callback.n == 8  # 4 batches restored, 4 more
    assert kept[0]["seen"] == [1, 2, 3, 4]  # the checkpoint's list is not the one the callback went on with


def test_configure_callbacks_with_one_state_key_twice_runs_with_a_warning(tmp_path):
    # Lightning takes them without a word (one state is lost in the checkpoint); Ember says so (docs/compat.md)
    trainer = _quiet(tmp_path, max_epochs=1)
    with pytest.warns(UserWarning, match=r"Found more than one stateful callback of type `_Counter`.*Only the last"):
        trainer.fit(Regressor([_Counter(), _Counter()]), _loader())
    assert trainer.global_step == 4


def test_a_load_hook_that_drops_the_loops_entry_does_not_restart_the_counting(tmp_path):
    # Ember's own entry holds the counters (docs/compat.md); Lightning would restart at epoch 0
    trainer = _quiet(tmp_path, max_epochs=3)
    trainer.fit(Regressor(), _loader())
    trainer.save_checkpoint(tmp_path / "a.ckpt")

    class DropsLoops(Regressor):
        def on_load_checkpoint(self, checkpoint):
            checkpoint.pop("loops")

    resumed = _quiet(tmp_path, max_epochs=4)
    resumed.fit(DropsLoops(), _loader(), ckpt_path=tmp_path / "a.ckpt")
    assert (resumed.current_epoch, resumed.global_step) == (4, 16)  # one more epoch of 4 batches
