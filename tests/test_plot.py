"""ember.plot: the metrics PNG and the `ember plot` command."""

from __future__ import annotations

import csv
import struct
import warnings

import pytest
import torch

pytest.importorskip("matplotlib")

from ember.plot import DPI, PANEL_HEIGHT, PANEL_WIDTH, _group_metrics, _split_name, main, plot_metrics


def png_size(path):
    with open(path, "rb") as file:
        head = file.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def expected_size(columns, rows):
    return round(columns * PANEL_WIDTH * DPI), round(rows * PANEL_HEIGHT * DPI)


def write_run(folder, epochs=3, batches=4):
    """A metrics.csv as CSVLogger writes it for a fit with step and epoch metrics and an LR monitor."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, step = [], 0
    for epoch in range(epochs):
        for _ in range(batches):
            rows.append({"epoch": epoch, "step": step, "train_loss_step": 1.0 / (step + 1)})
            step += 1
        rows.append({"epoch": epoch, "step": step - 1, "val_loss": 0.5 - 0.1 * epoch, "val/acc": 0.5 + 0.1 * epoch})
        rows.append({"epoch": epoch, "step": step - 1, "train_loss_epoch": 0.6 - 0.1 * epoch})
        rows.append({"step": step - 1, "lr-SGD": 0.1 / (epoch + 1)})
    keys = sorted({k for r in rows for k in r})
    with open(folder / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("train_loss", ("loss", "train", "")),
        ("val_loss", ("loss", "val", "")),
        ("train/loss", ("loss", "train", "")),
        ("val/loss", ("loss", "val", "")),
        ("loss_step", ("loss", "", "step")),
        ("train_loss_epoch", ("loss", "train", "epoch")),
        ("acc/val", ("acc", "val", "")),
        ("validation_acc", ("acc", "val", "")),
        ("loss", ("loss", "", "")),
    ],
)
def test_metric_names_pair_up(name, expected):
    assert _split_name(name) == expected


def test_grouping_keeps_lr_apart():
    panels, lr = _group_metrics(
        ["epoch", "step", "train_loss_step", "val_loss", "train_loss_epoch", "val/acc", "lr-SGD"]
    )
    assert panels == {"loss": ["train_loss_step", "val_loss", "train_loss_epoch"], "acc": ["val/acc"]}
    assert lr == ["lr-SGD"]


def test_plot_writes_png_of_expected_size(tmp_path):
    run = write_run(tmp_path / "version_0")
    path = plot_metrics(run)
    assert path == str(run / "metrics.png")
    assert png_size(path) == expected_size(3, 1)  # loss, acc, learning rate


@pytest.mark.parametrize("x", ["step", "epoch", None])
def test_x_axis_choices_and_output_path(tmp_path, x):
    run = write_run(tmp_path / "run")
    out = tmp_path / "out" / "curves.png"
    assert plot_metrics(run / "metrics.csv", out, x=x) == str(out)
    assert png_size(out) == expected_size(3, 1)


def test_bad_x_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="`x` must be 'step', 'epoch' or None"):
        plot_metrics(write_run(tmp_path / "r"), x="time")


def test_layout_wraps_after_three_panels(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    with open(folder / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["a", "b", "c", "d", "epoch", "step"])
        writer.writeheader()
        writer.writerows({"a": i, "b": i, "c": i, "d": i, "epoch": i, "step": i} for i in range(3))
    assert png_size(plot_metrics(folder)) == expected_size(3, 2)


def test_single_metric(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "metrics.csv").write_text("loss,step\n1.0,0\n0.5,1\n")
    assert png_size(plot_metrics(folder)) == expected_size(1, 1)
    with pytest.raises(ValueError, match="no `epoch` column"):
        plot_metrics(folder, x="epoch")


def test_best_checkpoint_from_name_state_and_run_folder(tmp_path):
    from ember.plot import _best_position, _best_x, _read_csv

    run = write_run(tmp_path / "version_0")
    rows = _read_csv(run / "metrics.csv")

    def mark(best, x):
        return _best_x(_best_position(best, run), x, rows)

    # drawn once end to end; the other cases check where the mark goes
    assert png_size(plot_metrics(run, tmp_path / "a.png", x="epoch", best_checkpoint="w/epoch=1-step=8.ckpt"))
    assert mark("w/epoch=1-step=8.ckpt", "epoch") == 1.0
    # checkpoint steps count optimizer steps; the logger step of that batch is one less
    assert mark("w/epoch=1-step=8.ckpt", "step") == 7.0
    best_k = {"best_k_models": {"e/epoch=0-step=4.ckpt": 0.4, "e/epoch=2-step=12.ckpt": 0.2}, "mode": "min"}
    assert mark(best_k, "step") == 11.0
    assert mark(dict(best_k, mode="max"), "epoch") == 0.0
    # only an epoch in the name: the last logged step of that epoch
    assert mark("my-epoch=0.ckpt", "step") == 3.0
    # a checkpoint whose name has neither: read from the file
    torch.save({"epoch": 2, "global_step": 12}, tmp_path / "custom.ckpt")
    assert mark(tmp_path / "custom.ckpt", "epoch") == 2.0
    # nothing given: the ModelCheckpoint state in the newest checkpoint of <run>/checkpoints
    assert mark(None, "step") is None
    (run / "checkpoints").mkdir()
    state = {"best_model_path": str(run / "checkpoints" / "epoch=1-step=8.ckpt"), "best_k_models": {}}
    torch.save(
        {"epoch": 2, "global_step": 12, "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": state}},
        run / "checkpoints" / "last.ckpt",
    )
    assert mark(None, "step") == 7.0


def test_missing_run_folder_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="No metrics.csv or TensorBoard event file"):
        plot_metrics(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_metrics(tmp_path / "nope")


def test_folder_of_versions_uses_the_newest(tmp_path):
    write_run(tmp_path / "version_0")
    write_run(tmp_path / "version_2", epochs=2)
    assert plot_metrics(tmp_path) == str(tmp_path / "version_2" / "metrics.png")


def test_tensorboard_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    from ember.loggers import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path)
    for step in range(4):
        logger.log_metrics({"train_loss": 1.0 / (step + 1), "epoch": step // 2}, step)
    logger.log_metrics({"val_loss": 0.3, "epoch": 1}, 3)
    logger.finalize("success")
    path = plot_metrics(logger.log_dir)
    assert png_size(path) == expected_size(1, 1)


def test_main_cli(tmp_path, capsys):
    run = write_run(tmp_path / "version_0")
    assert main([str(run), "-o", str(tmp_path / "cli.png"), "--x", "epoch"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli.png")
    assert png_size(tmp_path / "cli.png") == expected_size(3, 1)
    assert main(["plot", str(run)]) == 0  # tolerates the sub-command name in front
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(run), "--x", "bad"])


def test_non_numeric_cells_are_named_not_dropped_silently(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text("epoch,step,train_loss,note\n0,0,1.0,warmup\n0,1,tensor(0.5),\n1,2,0.25,done\n")
    message = (
        r"Skipped 3 non-numeric values in '.*metrics.csv' \(column 'note': 2 cells, e.g. 'warmup' on line 2;"
        r" column 'train_loss': 1 cell, e.g. 'tensor\(0.5\)' on line 3\): only numbers are plotted."
    )
    with pytest.warns(UserWarning, match=message):
        plot_metrics(folder, tmp_path / "a.png")
    assert main([str(folder), "-o", str(tmp_path / "b.png")]) == 0
    assert "ember plot: warning: Skipped 3 non-numeric values" in capsys.readouterr().err

    write_run(tmp_path / "clean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_metrics(tmp_path / "clean")


def test_steps_logged_again_after_a_resume_are_plotted_once(tmp_path):
    from ember.plot import _epoch_of_step, _read_csv, _series

    folder = tmp_path / "resumed"
    folder.mkdir()
    # crashed after step 2, resumed from the checkpoint at step 1: steps 2 and 3 come from the new run
    (folder / "metrics.csv").write_text("epoch,loss,step\n0,1.0,0\n0,0.9,1\n0,0.8,2\n0,0.7,2\n0,0.6,3\n")
    rows = _read_csv(folder / "metrics.csv")
    assert _series(rows, "loss", "step", _epoch_of_step(rows)) == ([0.0, 1.0, 2.0, 3.0], [1.0, 0.9, 0.7, 0.6])
    assert _series(rows, "loss", "epoch", _epoch_of_step(rows)) == ([0.0], [pytest.approx(0.8)])
    assert png_size(plot_metrics(folder)) == expected_size(1, 1)
