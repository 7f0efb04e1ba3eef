"""The digits demo end to end, as `make demo` runs it, on a short budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from ember.demos import digits


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the tests share 2 cores; one thread keeps the run steady
    try:
        from contextlib import redirect_stdout
        from io import StringIO

        printed = StringIO()
        with redirect_stdout(printed):
            summary = digits.main(["--epochs", "2", "--output", str(output), "--accelerator", "cpu", "--seed", "7"])
    finally:
        torch.set_num_threads(previous)
    return output, summary, printed.getvalue()


def test_demo_writes_checkpoints_metrics_and_plot(two_epoch_run):
    output, summary, _ = two_epoch_run
    run_dir = output / "logs" / "version_0"
    assert Path(summary["metrics"]) == run_dir / "metrics.csv"
    assert (run_dir / "metrics.csv").is_file()
    assert (run_dir / "hparams.yaml").is_file()
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best-checkpoint.ckpt", "last.ckpt"]
    assert Path(summary["best_checkpoint"]) == checkpoints / "best-checkpoint.ckpt"
    assert Path(summary["last_checkpoint"]) == checkpoints / "last.ckpt"
    plot = Path(summary["plot"])
    assert plot == run_dir / "metrics.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["epochs"] == 2


def test_demo_logs_every_metric_it_promises(two_epoch_run):
    _, summary, _ = two_epoch_run
    header = Path(summary["metrics"]).read_text().splitlines()[0].split(",")
    for column in (
        "epoch",
        "step",
        "train/loss_step",
        "train/loss_epoch",
        "train/acc",
        "val/loss",
        "val/acc",
        "lr-Adam",
        "grad_norm",
        "test/acc",
    ):
        assert column in header, f"{column} missing from metrics.csv header {header}"


def test_demo_gradient_norm_is_a_positive_number(two_epoch_run):
    import csv

    _, summary, _ = two_epoch_run
    with open(summary["metrics"], newline="") as file:
        norms = [float(row["grad_norm"]) for row in csv.DictReader(file) if row["grad_norm"]]
    # ~20 batches per epoch logged every 5 steps: 4 points per epoch
    assert len(norms) == 8
    assert all(n > 0 and n == n for n in norms)


def test_demo_tests_the_best_checkpoint_and_prints_where_things_are(two_epoch_run):
    output, summary, printed = two_epoch_run
    # two epochs already separate the ten classes far above chance (0.1)
    assert 0.5 < summary["test_acc"] <= 1.0
    assert f"Test accuracy: {summary['test_acc']:.4f}" in printed
    assert str(Path(summary["best_checkpoint"]).parent) in printed
    assert summary["metrics"] in printed
    assert summary["plot"] in printed


def test_best_checkpoint_loads_safely_into_the_demo_model(two_epoch_run):
    _, summary, _ = two_epoch_run
    model = digits.DigitsNet.load_from_checkpoint(summary["best_checkpoint"])
    assert model.hparams.lr == pytest.approx(3e-3)
    ckpt = torch.load(summary["best_checkpoint"], weights_only=True)
    assert ckpt["callbacks"]  # ModelCheckpoint and EarlyStopping states travel with the weights


def test_tensorboard_run_sits_next_to_the_csv_run(two_epoch_run):
    pytest.importorskip("tensorboard")
    output, summary, _ = two_epoch_run
    tb_dir = output / "tensorboard" / "version_0"
    assert Path(summary["tensorboard"]) == tb_dir
    assert any(p.name.startswith("events.out.tfevents") for p in tb_dir.iterdir())


def test_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        digits.main(["--epochs", "0"])
    assert "--epochs must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        digits.main(["--devices", "two"])
    assert "--devices takes a count" in capsys.readouterr().err


def test_devices_option_accepts_lightning_forms():
    parse = digits._parse_devices
    assert parse("auto") == "auto"
    assert parse("2") == 2
    assert parse("0,1") == [0, 1]


def test_module_entry_point_shows_its_options():
    src = str(Path(digits.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-m", "ember.demos.digits", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for option in ("--epochs", "--output", "--accelerator", "--devices", "--seed"):
        assert option in out.stdout


@pytest.mark.slow
def test_full_demo_reaches_95_percent(tmp_path, capsys):
    # the whole default run, as `make demo` does it (about 5 s on 2 idle cores)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = digits.main(["--output", str(tmp_path), "--accelerator", "cpu"])
    finally:
        torch.set_num_threads(previous)
    assert summary["test_acc"] >= 0.95
    assert "Test accuracy: " in capsys.readouterr().out


def test_readme_quick_start_and_callbacks_run(tmp_path):
    """The README's Python examples (all but the one that reads a file) run as written."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "open(" not in b]
    assert len(blocks) >= 3
    program = "\n".join(blocks)
    src = str(Path(digits.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "lightning_logs" / "version_0").is_dir()
    assert "tensor(" in out.stdout  # the quick start prints val/acc


def test_demo_on_two_cpu_processes(tmp_path):
    """`--devices 2` runs DDP on gloo: every rank trains, rank 0 reports, epoch values are global means."""
    src = str(Path(digits.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ember.demos.digits",
            "--devices",
            "2",
            "--accelerator",
            "cpu",
            "--epochs",
            "1",
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("Test accuracy: ") == 1  # printed by rank 0 only
    assert "sync_dist=True" not in out.stderr  # every epoch-level value is reduced across ranks
    run_dir = tmp_path / "logs" / "version_0"
    assert (run_dir / "checkpoints" / "best-checkpoint.ckpt").is_file()
    assert (run_dir / "metrics.png").is_file()
