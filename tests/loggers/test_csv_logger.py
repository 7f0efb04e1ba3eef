"""CSVLogger: layout, columns, rows, hparams.yaml, versions and appending on resume."""

from __future__ import annotations

import csv
from argparse import Namespace

import pytest
import torch
import yaml

from ember.loggers import CSVLogger
from ember.utilities import AttributeDict


def read_csv(path):
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, list(reader)


def test_layout_and_properties(tmp_path):
    logger = CSVLogger(tmp_path, name="exp")
    assert logger.name == "exp"
    assert logger.version == 0
    assert logger.save_dir == str(tmp_path)
    assert logger.root_dir == str(tmp_path / "exp")
    assert logger.log_dir == str(tmp_path / "exp" / "version_0")
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.finalize("success")
    assert (tmp_path / "exp" / "version_0" / "metrics.csv").is_file()


def test_columns_rows_and_values(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"train_loss": torch.tensor(0.5), "epoch": 0}, step=0)
    logger.log_metrics({"train_loss": 0.25, "epoch": 0}, step=1)
    logger.log_metrics({"val_loss": 0.75, "epoch": 0}, step=1)
    logger.save()
    header, rows = read_csv(logger.log_dir + "/metrics.csv")
    assert header == ["epoch", "step", "train_loss", "val_loss"]  # sorted, as Lightning
    assert rows == [
        {"epoch": "0", "step": "0", "train_loss": "0.5", "val_loss": ""},
        {"epoch": "0", "step": "1", "train_loss": "0.25", "val_loss": ""},
        {"epoch": "0", "step": "1", "train_loss": "", "val_loss": "0.75"},
    ]


def test_rows_are_buffered_until_save(tmp_path):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=100)
    logger.log_metrics({"a": 1.0}, step=0)
    assert not (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").exists()
    logger.save()
    assert len(read_csv(logger.log_dir + "/metrics.csv")[1]) == 1


def test_flush_every_n_steps(tmp_path):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=2)
    logger.log_metrics({"a": 1.0}, step=0)
    path = tmp_path / "lightning_logs" / "version_0" / "metrics.csv"
    assert not path.exists()
    logger.log_metrics({"a": 2.0}, step=1)  # (step + 1) % 2 == 0 -> written
    assert len(read_csv(path)[1]) == 2


def test_new_keys_rewrite_the_header(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"b": 1.0}, step=0)
    logger.save()
    logger.log_metrics({"a": 2.0, "b": 3.0}, step=1)
    logger.save()
    header, rows = read_csv(logger.log_dir + "/metrics.csv")
    assert header == ["a", "b", "step"]
    assert rows == [{"a": "", "b": "1.0", "step": "0"}, {"a": "2.0", "b": "3.0", "step": "1"}]
    assert not (tmp_path / "lightning_logs" / "version_0" / "metrics.csv.tmp").exists()


def test_a_writer_subclass_orders_the_columns_through_lightnings_hooks(tmp_path):
    # stable-pretraining's logger keeps its columns in the order they first appear
    from ember.loggers.csv_logs import ExperimentWriter

    class FirstSeen(ExperimentWriter):
        def _record_new_keys(self):
            new = [key for row in self.metrics for key in row if key not in self.metrics_keys]
            self.metrics_keys.extend(dict.fromkeys(new))
            return set(new)

    logger = CSVLogger(tmp_path)
    logger._experiment = FirstSeen(logger.log_dir)
    logger.log_metrics({"zeta": 1.0, "alpha": 2.0}, step=0)
    logger.save()
    logger.log_metrics({"beta": 3.0, "zeta": 4.0}, step=1)
    logger.save()
    header, rows = read_csv(logger.log_dir + "/metrics.csv")
    assert header == ["zeta", "alpha", "step", "beta"]
    assert rows[0] == {"zeta": "1.0", "alpha": "2.0", "step": "0", "beta": ""}


def test_step_none_counts_rows(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"a": 1.0})
    logger.log_metrics({"a": 2.0})
    logger.save()
    assert [r["step"] for r in read_csv(logger.log_dir + "/metrics.csv")[1]] == ["0", "1"]


def test_prefix(tmp_path):
    logger = CSVLogger(tmp_path, prefix="fold1")
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()
    assert read_csv(logger.log_dir + "/metrics.csv")[0] == ["fold1-loss", "step"]


@pytest.mark.parametrize(
    "params", [{"lr": 0.1, "layers": [1, 2]}, Namespace(lr=0.1, layers=[1, 2]), AttributeDict(lr=0.1, layers=[1, 2])]
)
def test_hparams_yaml(tmp_path, params):
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams(params)
    with open(tmp_path / "lightning_logs" / "version_0" / "hparams.yaml") as file:
        assert yaml.safe_load(file) == {"lr": 0.1, "layers": [1, 2]}


def test_empty_hparams_yaml_loads_as_an_empty_mapping(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams({})
    with open(tmp_path / "lightning_logs" / "version_0" / "hparams.yaml") as file:
        assert yaml.safe_load(file) == {}


def test_hparams_yaml_is_safe_and_accumulates(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams({"act": torch.nn.ReLU, "nested": {"a": 1}, "obj": object(), "t": torch.tensor(2.0)})
    logger.log_hyperparams({"later": True})
    with open(logger.log_dir + "/hparams.yaml") as file:
        loaded = yaml.safe_load(file)  # plain YAML: no python object tags
    assert loaded["act"] == "torch.nn.modules.activation.ReLU"
    assert loaded["nested"] == {"a": 1}
    assert loaded["obj"].startswith("<object object")
    assert loaded["t"] == 2.0
    assert loaded["later"] is True


def test_built_in_functions_are_written_by_their_import_name_without_a_warning(tmp_path, recwarn):
    import math

    logger = CSVLogger(tmp_path)
    logger.log_hyperparams(
        {"act": torch.tanh, "relu": torch.relu, "root": math.sqrt, "gelu": torch.nn.functional.gelu, "size": len}
    )
    with open(logger.log_dir + "/hparams.yaml") as file:
        loaded = yaml.safe_load(file)
    # the names Lightning's `!!python/name:` tags hold
    assert loaded == {
        "act": "torch.tanh",
        "relu": "torch.relu",
        "root": "math.sqrt",
        "gelu": "torch._C._nn.gelu",
        "size": "builtins.len",
    }
    assert not [w for w in recwarn if "Skipping" in str(w.message)]
    # a method bound to an object has no import name: its text, with the warning
    with pytest.warns(UserWarning, match="Skipping 'add'"):
        logger.log_hyperparams({"add": [].append})
    with open(logger.log_dir + "/hparams.yaml") as file:
        assert yaml.safe_load(file)["add"] == "<built-in method append of list object>"


def test_versions_auto_increment(tmp_path):
    first = CSVLogger(tmp_path)
    first.log_metrics({"a": 1.0}, 0)
    first.save()
    (tmp_path / "lightning_logs" / "version_7").mkdir()
    (tmp_path / "lightning_logs" / "version_x").mkdir()  # not a number: ignored
    (tmp_path / "lightning_logs" / "version_9").write_text("a file, not a version folder")
    second = CSVLogger(tmp_path)
    assert first.version == 0
    assert second.version == 8


def test_string_version_and_empty_name(tmp_path):
    logger = CSVLogger(tmp_path, name="", version="run_a")
    assert logger.log_dir.rstrip("/").endswith("run_a")
    logger.log_metrics({"a": 1.0}, 0)
    logger.save()
    assert (tmp_path / "run_a" / "metrics.csv").is_file()
    none_name = CSVLogger(tmp_path / "n", name=None, version=3)
    assert none_name.name == ""
    none_name.log_metrics({"a": 1.0}, 0)
    none_name.save()
    assert (tmp_path / "n" / "version_3" / "metrics.csv").is_file()


def test_resume_into_existing_version_appends(tmp_path):
    first = CSVLogger(tmp_path, version=0)
    first.log_metrics({"epoch": 0, "loss": 1.0}, 0)
    first.log_metrics({"epoch": 0, "loss": 0.9}, 1)
    first.finalize("success")

    with pytest.warns(UserWarning, match="Experiment logs directory .* exists and is not empty: .* appended"):
        resumed = CSVLogger(tmp_path, version=0)
        resumed.log_metrics({"epoch": 1, "loss": 0.8}, 2)
    resumed.log_metrics({"epoch": 1, "loss": 0.7, "val_acc": 0.5}, 3)
    resumed.finalize("success")
    header, rows = read_csv(resumed.log_dir + "/metrics.csv")
    assert header == ["epoch", "loss", "step", "val_acc"]
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["loss"] for r in rows] == ["1.0", "0.9", "0.8", "0.7"]
    assert rows[3]["val_acc"] == "0.5" and rows[0]["val_acc"] == ""


def test_finalize_without_logging_creates_nothing(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.finalize("success")
    assert list(tmp_path.iterdir()) == []


def test_remote_filesystem_through_fsspec():
    import fsspec

    fs = fsspec.filesystem("memory")
    logger = CSVLogger("memory://csvtest", name="exp")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"a": 1.0}, 0)
    logger.save()
    assert fs.isfile("/csvtest/exp/version_0/metrics.csv")
    assert "a,step" in fs.cat("/csvtest/exp/version_0/metrics.csv").decode()
    assert CSVLogger("memory://csvtest", name="exp").version == 1
    fs.rm("/csvtest", recursive=True)


def test_a_log_folder_holding_other_files_warns_and_keeps_them(tmp_path):
    # torchmd-net writes its data splits into the log folder first; Lightning warns there too
    (tmp_path / "splits.npz").write_bytes(b"kept")
    logger = CSVLogger(tmp_path, name="", version="")
    with pytest.warns(UserWarning, match=r"Experiment logs directory .* exists and is not empty\. Its files stay"):
        logger.log_metrics({"a": 1.0}, step=0)
        logger.save()
    assert (tmp_path / "splits.npz").read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "splits.npz"]


def test_copies_of_a_logger_writing_in_turn_keep_every_value_under_its_column(tmp_path):
    # ddp_spawn gives each call's processes a copy of the logger: the `test` copy never saw `fit`'s
    # columns. Lightning's rewrite then fails ("dict contains fields not in fieldnames")
    import copy

    main = CSVLogger(tmp_path, name="", version=0)
    main.log_hyperparams({"lr": 0.1})
    for_fit, for_test = copy.deepcopy(main), copy.deepcopy(main)
    for_fit.log_metrics({"train/loss": 1.5}, step=0)
    for_fit.save()
    for_test.log_metrics({"test/acc": 0.25}, step=1)
    for_test.save()
    assert read_csv(tmp_path / "version_0" / "metrics.csv") == (
        ["step", "test/acc", "train/loss"],
        [{"step": "0", "test/acc": "", "train/loss": "1.5"}, {"step": "1", "test/acc": "0.25", "train/loss": ""}],
    )
    assert sorted(p.name for p in (tmp_path / "version_0").iterdir()) == ["hparams.yaml", "metrics.csv"]


def test_a_failed_header_rewrite_leaves_the_file_and_the_logger_as_they_were(tmp_path, monkeypatch):
    logger = CSVLogger(tmp_path, name="", version=0)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.save()
    writer = logger.experiment
    logger.log_metrics({"b": 2.0}, step=1)
    monkeypatch.setattr(writer._fs, "mv", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        logger.save()
    assert writer.metrics_keys == ["a", "step"]
    assert sorted(p.name for p in (tmp_path / "version_0").iterdir()) == ["metrics.csv"]  # no temporary file
    monkeypatch.undo()
    logger.save()  # the buffered row is still there, and lands under its own column
    assert read_csv(tmp_path / "version_0" / "metrics.csv") == (
        ["a", "b", "step"],
        [{"a": "1.0", "b": "", "step": "0"}, {"a": "", "b": "2.0", "step": "1"}],
    )
