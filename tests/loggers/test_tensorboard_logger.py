"""TensorBoardLogger: event files read back with TensorBoard's EventAccumulator."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
import yaml

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ember
from ember.loggers import TensorBoardLogger


def scalars(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_scalars_at_the_right_steps(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"loss": 1.0, "acc": torch.tensor(0.25)}, step=3)
    logger.log_metrics({"loss": 0.5}, step=7)
    logger.finalize("success")
    found = scalars(logger.log_dir)
    assert found["loss"] == [(3, 1.0), (7, 0.5)]
    assert found["acc"] == [(3, 0.25)]


def test_save_makes_written_scalars_readable_while_training(tmp_path, monkeypatch):
    from ember.loggers import tensorboard as module

    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()  # the first save flushes at once: a live TensorBoard sees the run start
    assert scalars(logger.log_dir)["loss"] == [(0, 1.0)]
    logger.log_metrics({"loss": 0.5}, step=50)
    monkeypatch.setattr(module, "_FLUSH_INTERVAL", 0.0)  # as if a second had passed
    logger.save()
    assert scalars(logger.log_dir)["loss"] == [(0, 1.0), (50, 0.5)]
    logger.finalize("success")


def test_save_spaces_out_writes_and_finalize_writes_everything(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()
    for step in range(1, 20):  # a logger write every few milliseconds, as on fast steps
        logger.log_metrics({"loss": 1.0 / step}, step=step)
        logger.save()
    assert [s for s, _ in scalars(logger.log_dir)["loss"]] == [0]  # the rest waits for the next second
    logger.finalize("success")
    assert [s for s, _ in scalars(logger.log_dir)["loss"]] == list(range(20))


def test_writes_do_not_search_the_import_path(tmp_path, monkeypatch):
    """Whether tensorboard is installed is asked once, when the logger is made: `importlib.util.find_spec` stats
    the folders of `sys.path`, which cost every log point of a fit a few hundred microseconds."""
    import importlib.util

    from ember.loggers import tensorboard as module

    monkeypatch.setattr(module, "_FLUSH_INTERVAL", 0.0)  # every save writes
    # as in a fit, where nothing imports tensorboard (this file does, to read the events back)
    monkeypatch.delitem(sys.modules, "tensorboard")
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()  # (the first also writes hparams.yaml, which asks whether omegaconf is installed)
    searched = []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: searched.append(name) or real(name, *a))
    for step in range(1, 4):
        logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        logger.save()
    assert searched == []
    assert [s for s, _ in scalars(logger.log_dir)["loss"]] == [0, 1, 2, 3]
    logger.finalize("success")


def events_in(path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return list(EventFileLoader(str(path)).Load())


def test_scalar_events_are_the_ones_summary_writer_writes(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    logged = [({"loss": 0.5, "acc": torch.tensor(0.25)}, 3), ({"loss": 1e-8}, 7), ({"loss": float("nan")}, None)]
    logger = TensorBoardLogger(tmp_path, name="ember")
    for metrics, step in logged:
        logger.log_metrics(metrics, step)
    logger.finalize("success")
    (ours,) = (tmp_path / "ember" / "version_0").glob("events.out.tfevents.*")
    assert ours.name.endswith(".scalars")

    writer = SummaryWriter(tmp_path / "reference")
    for metrics, step in logged:
        for key, value in metrics.items():
            writer.add_scalar(key, value, step, walltime=1.0)
    writer.close()
    (reference,) = (tmp_path / "reference").glob("events.out.tfevents.*")

    mine, theirs = events_in(ours), events_in(reference)
    assert mine[0].file_version == theirs[0].file_version == "brain.Event:2"
    assert mine[0].source_metadata.writer == "ember.loggers.event_file"
    for event in mine + theirs:
        event.wall_time = 1.0  # the only fields that differ: time and the name of the writing software
        event.ClearField("source_metadata")
    assert [e.SerializeToString() for e in mine] == [e.SerializeToString() for e in theirs]


def test_record_checksums_match_tensorboards():
    import os

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    from ember.loggers.event_file import crc32c, masked_crc32c

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    for size in (0, 1, 8, 100, 1000):
        data = os.urandom(size)
        assert masked_crc32c(data) == reference(data)


@pytest.mark.parametrize(
    ("tag", "value", "step", "wall_time"),
    [
        ("loss", 0.5, 3, 1_733_200_000.25),
        ("", 0.0, 0, 0.0),  # proto3 leaves out a default tag, step and time; a 0.0 value stays (a oneof)
        ("train/acc", -1e-8, None, -0.0),  # -0.0 is not the default
        ("x", float("nan"), -3, 1e9),  # a negative step is a ten-byte varint
        ("over", 1e39, 2**40, 1.5),  # beyond float32: infinity, as protobuf stores it
        ("under", -1e39, 2**63 - 1, 1.5),
        ("denormal", 1e-46, -(2**63), 1.5),
        ("ünïcode/" + "t" * 200, 3, 127, 2.0),  # an int value; a tag longer than 127 bytes
    ],
)
def test_scalar_events_are_encoded_as_tensorboards_messages(tag, value, step, wall_time):
    from tensorboard.compat.proto.event_pb2 import Event, SourceMetadata
    from tensorboard.compat.proto.summary_pb2 import Summary

    from ember.loggers.event_file import scalar_event, version_event

    event = Event(wall_time=wall_time, summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))
    if step is not None:
        event.step = step
    assert scalar_event(tag, value, step, wall_time) == event.SerializeToString()
    first = Event(wall_time=wall_time, file_version="brain.Event:2", source_metadata=SourceMetadata(writer="ember"))
    assert version_event(wall_time, "brain.Event:2", "ember") == first.SerializeToString()


def test_scalars_import_neither_tensorboards_writer_nor_protobuf(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ember.loggers import TensorBoardLogger\n"
        f"logger = TensorBoardLogger({str(tmp_path)!r})\n"
        "logger.log_metrics({'loss': 1.0}, 0)\n"
        "logger.save()\n"
        "logger.finalize('success')\n"
        "heavy = ('torch.utils.tensorboard', 'tensorboard.summary', 'tensorboard.compat.proto', 'google.protobuf')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert scalars(tmp_path / "lightning_logs" / "version_0")["loss"] == [(0, 1.0)]


def test_scalars_keep_their_file_when_the_writer_is_used(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    for step in range(5):
        logger.log_metrics({"loss": float(step)}, step=step)
    logger.save()
    logger.experiment.add_text("note", "half way", 5)  # a user's own use of the writer
    for step in range(5, 10):
        logger.log_metrics({"loss": float(step)}, step=step)
    logger.finalize("success")
    files = sorted(p.name for p in (tmp_path / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))
    assert len(files) == 2 and sum(name.endswith(".scalars") for name in files) == 1
    assert [s for s, _ in scalars(logger.log_dir)["loss"]] == list(range(10))
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert "note/text_summary" in acc.Tags()["tensors"]


def test_scalars_share_the_writers_file_when_it_came_first(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1})  # the writer exists from the start, as with save_hyperparameters()
    for step in range(3):
        logger.log_metrics({"loss": float(step)}, step=step)
    logger.finalize("success")
    (only,) = (tmp_path / "lightning_logs" / "version_0").glob("events.out.tfevents.*")
    assert not only.name.endswith(".scalars")
    found = scalars(logger.log_dir)
    assert found["hp_metric"] == [(0, -1.0)] and [s for s, _ in found["loss"]] == [0, 1, 2]


def test_writer_options_it_alone_honours_keep_scalars_in_the_writer(tmp_path):
    logger = TensorBoardLogger(tmp_path, purge_step=0)
    logger.log_metrics({"loss": 1.0}, 0)
    logger.finalize("success")
    (only,) = (tmp_path / "lightning_logs" / "version_0").glob("events.out.tfevents.*")
    assert not only.name.endswith(".scalars")
    assert scalars(logger.log_dir)["loss"] == [(0, 1.0)]


def test_logging_after_finalize_starts_a_new_file(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"loss": 1.0}, 0)
    logger.finalize("success")
    logger.log_metrics({"test_loss": 2.0}, 1)  # e.g. trainer.test() after fit with the same logger
    logger.finalize("success")
    found = scalars(logger.log_dir)
    assert found["loss"] == [(0, 1.0)] and found["test_loss"] == [(1, 2.0)]


def test_layout_versions_and_sub_dir(tmp_path):
    first = TensorBoardLogger(tmp_path, name="exp")
    assert first.log_dir == str(tmp_path / "exp" / "version_0")
    first.log_metrics({"a": 1.0}, 0)
    first.finalize("success")
    second = TensorBoardLogger(tmp_path, name="exp", sub_dir="fold0")
    assert second.version == 1
    assert second.log_dir == str(tmp_path / "exp" / "version_1" / "fold0")
    assert second.root_dir == str(tmp_path / "exp")
    assert second.save_dir == str(tmp_path)
    named = TensorBoardLogger(tmp_path, name="", version="mine")
    assert named.log_dir.endswith("mine") and named.name == ""


def test_hparams_with_default_hp_metric_and_yaml(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1, "opt": {"name": "adam"}, "act": torch.nn.ReLU})
    logger.save()
    assert scalars(logger.log_dir)["hp_metric"] == [(0, -1.0)]
    with open(f"{logger.log_dir}/hparams.yaml") as file:
        saved = yaml.safe_load(file)
    assert saved["lr"] == 0.1 and saved["opt"] == {"name": "adam"}
    # the HPARAMS plugin data is in the event file
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert acc.PluginTagToContent("hparams")
    logger.finalize("success")


def test_hyperparameters_holding_tensors_and_arrays_are_logged_again_by_a_later_run(tmp_path):
    # asteroid's System turns each list of its config into a tensor; a validate after fit logs them again
    import numpy as np

    from ember.demos import BoringModel

    class Model(BoringModel):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"sizes": torch.tensor([1, 2, 3]), "window": np.arange(3)})

    logger = TensorBoardLogger(tmp_path)
    trainer = ember.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    model = Model()
    trainer.fit(model)
    assert len(trainer.validate(model, verbose=False)) == 1
    with open(f"{logger.log_dir}/hparams.yaml") as file:
        assert "sizes" in file.read()


def test_a_logger_reused_after_its_folder_was_removed_writes_hparams_yaml_again(tmp_path):
    # a sweep that removes a trial's folder and runs the next trial with the same logger
    import shutil

    from ember.demos import BoringModel

    class Model(BoringModel):
        def __init__(self, lr):
            super().__init__()
            self.save_hyperparameters()

    logger = TensorBoardLogger(tmp_path)
    for lr in (0.1, 0.2):
        if lr == 0.2:
            shutil.rmtree(logger.log_dir)
        trainer = ember.Trainer(
            max_epochs=1,
            limit_train_batches=2,
            limit_val_batches=0,
            logger=logger,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        trainer.fit(Model(lr))
        with open(f"{logger.log_dir}/hparams.yaml") as file:
            assert yaml.safe_load(file) == {"lr": lr}


@pytest.mark.parametrize("close", ["save", "finalize"])
def test_hyperparameters_logged_by_hand_without_hp_metric_are_written_to_hparams_yaml(tmp_path, close):
    # a logger used without a Trainer: no value was logged, so nothing had made the version folder
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    logger.log_hyperparams({"lr": 0.1, "layers": 3})
    logger.save() if close == "save" else logger.finalize("success")
    with open(f"{logger.log_dir}/hparams.yaml") as file:
        assert yaml.safe_load(file) == {"lr": 0.1, "layers": 3}
    # the event file still waits for a first value (Lightning writes one holding only its header)
    assert sorted(p.name for p in (tmp_path / "lightning_logs" / "version_0").iterdir()) == ["hparams.yaml"]


def test_save_with_nothing_logged_makes_the_version_folder_with_empty_hparams_yaml(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.save()
    assert (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text().strip() == "{}"


def test_no_hp_metric_when_disabled(tmp_path):
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"x": 1.0}, 1)
    logger.finalize("success")
    assert "hp_metric" not in scalars(logger.log_dir)


def test_explicit_hp_metric_value(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1}, metrics=0.75)
    logger.finalize("success")
    assert scalars(logger.log_dir)["hp_metric"] == [(0, 0.75)]


def test_hp_metric_is_logged_at_the_given_step_or_none(tmp_path, monkeypatch):
    logger = TensorBoardLogger(tmp_path)
    steps = []
    log_metrics = logger.log_metrics
    monkeypatch.setattr(
        logger, "log_metrics", lambda metrics, step=None: (steps.append(step), log_metrics(metrics, step))
    )
    logger.log_hyperparams({"lr": 0.1})
    logger.log_hyperparams({"lr": 0.1}, metrics={"hp_metric": 0.5}, step=5)
    logger.finalize("success")
    assert steps == [None, 5]  # as Lightning: no step unless one is given
    assert scalars(logger.log_dir)["hp_metric"] == [(0, -1.0), (5, 0.5)]


def test_hparams_tab_shows_numpy_scalars_as_numbers_and_arrays_as_text(tmp_path):
    # as Lightning: numpy's bool, integer and floating scalars become numbers; a 0-d array (what
    # `np.asarray(0.5)` gives) is not one of them and is shown as its text
    import numpy as np
    from tensorboard.plugins.hparams import plugin_data_pb2

    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"dropout": np.array(0.5), "lr": np.float64(0.1), "depth": np.int64(3)})
    logger.finalize("success")
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    shown = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert shown["dropout"].string_value == "0.5"
    assert shown["lr"].number_value == 0.1
    assert shown["depth"].number_value == 3


def test_a_zero_dim_tensor_hyperparameter_is_logged_as_its_number(tmp_path):
    # Lightning raises IndexError: TensorBoard's `hparams` takes a tensor's first element
    from tensorboard.plugins.hparams import plugin_data_pb2

    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"scale": torch.tensor(3.0), "steps": torch.tensor(7), "sizes": torch.tensor([4.0, 5.0])})
    logger.finalize("success")
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    shown = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert shown["scale"].number_value == 3.0 and shown["steps"].number_value == 7
    assert shown["sizes"].number_value == 4.0  # a 1-dim tensor: its first element, as in Lightning
    with open(f"{logger.log_dir}/hparams.yaml") as file:
        assert yaml.safe_load(file)["scale"] == 3.0


def test_prefix_and_dict_values(tmp_path):
    logger = TensorBoardLogger(tmp_path, prefix="p")
    logger.log_metrics({"loss": 1.0}, 2)
    logger.finalize("success")
    assert scalars(logger.log_dir)["p-loss"] == [(2, 1.0)]


def test_bad_value_names_the_metric(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    with pytest.raises(ValueError, match="'weird'") as info:
        logger.log_metrics({"weird": "not a number"}, 0)
    # Lightning's sentence first
    assert str(info.value).startswith("\n you tried to log not a number which is currently not supported.")
    logger.finalize("failed")


def test_a_one_element_numpy_array_is_logged_as_its_number(tmp_path):
    import numpy as np

    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"auc": np.array([0.75]), "f1": np.float32(0.5)}, 3)
    logger.finalize("success")
    assert scalars(logger.log_dir)["auc"] == [(3, 0.75)] and scalars(logger.log_dir)["f1"] == [(3, 0.5)]


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.example_input_array = torch.zeros(1, 4)

    def forward(self, x):
        return self.layer(x)


def test_log_graph_uses_example_input_array(tmp_path):
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    logger.log_graph(TinyNet())
    logger.finalize("success")
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert acc.Graph() is not None


def test_log_graph_of_a_lightning_module_outside_a_trainer(tmp_path):
    import ember

    class Module(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.layer(x)

    logger = TensorBoardLogger(tmp_path, log_graph=True)
    logger.log_graph(Module(), torch.zeros(1, 4))  # tracing reads `module.trainer`, which is not set
    logger.finalize("success")
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert acc.Graph() is not None


def test_log_graph_moves_the_input_through_the_modules_batch_hooks(tmp_path):
    seen = []

    class Flat(ember.LightningModule):
        """Its loader gives images: the batch hook flattens them, so only a hooked input fits the layer."""

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)
            self.example_input_array = torch.zeros(1, 2, 2)

        def forward(self, x):
            return self.layer(x)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            seen.append(("on_after_batch_transfer", tuple(batch.shape), dataloader_idx))
            return batch.flatten(1)

    logger = TensorBoardLogger(tmp_path, log_graph=True)
    logger.log_graph(Flat())
    logger.finalize("success")
    assert seen == [("on_after_batch_transfer", (1, 2, 2), 0)]
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert acc.Graph() is not None


def test_log_graph_disabled_or_without_input(tmp_path):
    off = TensorBoardLogger(tmp_path, log_graph=False)
    off.log_graph(TinyNet())
    assert off._experiment is None  # nothing created
    on = TensorBoardLogger(tmp_path, log_graph=True)
    net = TinyNet()
    net.example_input_array = None
    with pytest.warns(UserWarning, match="example_input_array"):
        on.log_graph(net)
    with pytest.warns(UserWarning, match="can't be traced"):
        on.log_graph(TinyNet(), input_array=[1, 2])


def test_pickle_drops_the_writer(tmp_path):
    import pickle

    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"a": 1.0}, 0)
    logger.save()
    clone = pickle.loads(pickle.dumps(logger))
    assert clone._experiment is None and clone._scalar_file is None and clone.log_dir == logger.log_dir
    logger.finalize("success")


def test_a_run_that_fails_before_logging_keeps_its_version_folder(tmp_path):
    import ember

    class FailsAtOnce(ember.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            raise RuntimeError("the first step fails")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)
    versions = []
    for _ in range(2):
        logger = TensorBoardLogger(tmp_path)
        trainer = ember.Trainer(max_epochs=1, logger=logger, enable_progress_bar=False, enable_model_summary=False)
        with pytest.raises(RuntimeError, match="the first step fails"):
            trainer.fit(FailsAtOnce(), data)
        versions.append(logger.version)
    assert versions == [0, 1]  # the failed run's folder holds its number, as in Lightning
    assert (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text().strip() == "{}"


class WarnsInForward(TinyNet):
    def forward(self, x):
        warnings.warn("said once by the forward pass", UserWarning, stacklevel=1)
        return super().forward(x)


def test_logging_the_graph_leaves_the_warnings_already_shown_unrepeated(tmp_path):
    # as Lightning: the warning filters stay as they are (changing them made Python show every warning again)
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        logger.log_graph(WarnsInForward())
        logger.log_graph(WarnsInForward())
    assert [str(w.message) for w in caught].count("said once by the forward pass") == 1
    logger.finalize("success")
