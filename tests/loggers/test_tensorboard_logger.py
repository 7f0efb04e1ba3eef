"""TensorBoardLogger: event files read back with TensorBoard's EventAccumulator."""
from __future__ import annotations

import pytest
import torch
import yaml

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from ember.loggers import TensorBoardLogger  # noqa: E402


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


def test_save_spaces_out_flushes_and_finalize_writes_everything(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    flushes = []
    logger.log_metrics({"loss": 1.0}, step=0)
    original = logger.experiment.flush
    logger.experiment.flush = lambda: (flushes.append(1), original())
    for step in range(1, 20):  # a logger write every few milliseconds, as on fast steps
        logger.log_metrics({"loss": 1.0 / step}, step=step)
        logger.save()
    assert len(flushes) == 1
    logger.finalize("success")
    assert [s for s, _ in scalars(logger.log_dir)["loss"]] == list(range(20))


def test_scalars_reach_the_writer_together_and_before_any_direct_use(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    writer = logger.experiment
    added = []
    original = writer.add_scalar
    writer.add_scalar = lambda *args, **kwargs: (added.append(args[:3]), original(*args, **kwargs))
    for step in range(10):
        logger.log_metrics({"loss": float(step)}, step=step)
    assert added == []  # no wake-up of TensorBoard's writer thread per logged step
    logger.experiment.flush()  # a user's own use of the writer sees everything logged so far
    assert [a[2] for a in added] == list(range(10))
    assert [s for s, _ in scalars(logger.log_dir)["loss"]] == list(range(10))
    logger.finalize("success")


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


def test_prefix_and_dict_values(tmp_path):
    logger = TensorBoardLogger(tmp_path, prefix="p")
    logger.log_metrics({"loss": 1.0}, 2)
    logger.finalize("success")
    assert scalars(logger.log_dir)["p-loss"] == [(2, 1.0)]


def test_bad_value_names_the_metric(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    with pytest.raises(ValueError, match="'weird'"):
        logger.log_metrics({"weird": "not a number"}, 0)
    logger.finalize("failed")


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
    clone = pickle.loads(pickle.dumps(logger))
    assert clone._experiment is None and clone.log_dir == logger.log_dir
    logger.finalize("success")
