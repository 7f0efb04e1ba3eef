"""The `ember` console script: a YAML-configured fit end to end in a subprocess, --version, --help, the demo
and plot commands, class paths from the current folder, and that jsonargparse loads only when needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import ember
from ember.cli import console as cli

REPO = Path(__file__).resolve().parents[2]
EMBER = Path(sys.executable).parent / "ember"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([str(EMBER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not EMBER.exists(), reason="the console script is installed by `pip install -e . --no-deps`")
def test_yaml_configured_fit_through_the_console_script(tmp_path):
    config = {
        "seed_everything": 1,
        "trainer": {
            "max_epochs": 3,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp_path),
        },
        "model": {"class_path": "tests.helpers.cli_models.Regressor", "init_args": {"hidden": 12}},
        "data": {"class_path": "tests.helpers.cli_models.RegressionData", "init_args": {"batch_size": 16}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _run(["fit", "--config", str(path), "--trainer.max_epochs", "1"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the command passes nothing twice: LightningCLI warned that `args` and `sys.argv` were both given
    assert "args parameter is intended to run from within Python" not in result.stderr
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert (run_dir / "checkpoints" / "epoch=0-step=4.ckpt").is_file()  # the command line beat max_epochs: 3
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 1
    assert saved["model"]["init_args"]["hidden"] == 12
    assert saved["optimizer"]["class_path"] == "torch.optim.Adam"

    bad = _run(["fit", "--config", str(path), "--trainer.max_epoch", "1"], cwd=tmp_path)
    assert bad.returncode == 2
    assert "did you mean `--trainer.max_epochs`?" in bad.stderr


def test_import_and_version_do_not_load_jsonargparse():
    code = (
        "import sys, ember, ember.cli.console\n"
        "ember.cli.console.main(['--version'])\n"
        "from ember.cli import _JSONARGPARSE_SIGNATURES_AVAILABLE as available\n"
        "assert available, 'jsonargparse is installed here'\n"  # Lightning's flag, read without importing it
        "assert 'jsonargparse' not in sys.modules, 'jsonargparse was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ember {ember.__version__}"


def test_help_and_unknown_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "demo", "plot", "--version"):
        assert command in out
    assert cli.main([]) == 2
    assert cli.main(["fitt"]) == 2
    assert "Did you mean `ember fit`?" in capsys.readouterr().err


def test_demo_and_plot_delegate(monkeypatch):
    import ember.demos.digits
    import ember.plot

    calls = []
    monkeypatch.setattr(ember.demos.digits, "main", lambda argv, prog: calls.append(("demo", argv, prog)) or {})
    monkeypatch.setattr(ember.plot, "main", lambda argv: calls.append(("plot", argv)) or 0)
    assert cli.main(["demo", "--epochs", "1"]) == 0
    assert cli.main(["plot", "run", "-o", "x.png"]) == 0
    assert calls == [("demo", ["--epochs", "1"], "ember demo"), ("plot", ["run", "-o", "x.png"])]


def test_the_demos_errors_name_the_command_that_ran_it(capsys):
    # they named `python -m ember.demos.digits`, which the user had not typed
    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])
    assert "ember demo: error: --epochs must be at least 1, got 0." in capsys.readouterr().err


def test_class_paths_resolve_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "my_project_models.py").write_text(
        "from tests.helpers.cli_models import Regressor\n\n\nclass LocalModel(Regressor):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setattr(sys, "argv", ["ember"])
    args = [
        "fit",
        "--model",
        "my_project_models.LocalModel",
        "--data",
        "tests.helpers.cli_models.RegressionData",
        "--trainer.max_epochs=1",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    assert cli.main(args) == 0
    assert (tmp_path / "config.yaml").is_file()
    sys.modules.pop("my_project_models", None)


def test_options_before_the_subcommand_go_to_the_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ember"])
    fit = {
        "model": {"class_path": "tests.helpers.cli_models.Regressor"},
        "data": {"class_path": "tests.helpers.cli_models.RegressionData"},
        "trainer": {
            "max_epochs": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp_path),
        },
    }
    path = tmp_path / "top.yaml"
    path.write_text(yaml.safe_dump({"fit": fit}))
    assert cli.main(["--config", str(path), "fit"]) == 0
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["trainer"]["max_epochs"] == 1


def test_without_jsonargparse_the_error_says_what_to_install(monkeypatch):
    import ember.cli

    monkeypatch.delitem(ember.cli.__dict__, "LightningArgumentParser", raising=False)
    monkeypatch.setitem(sys.modules, "jsonargparse", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'ember\[cli\]'"):
        _ = ember.cli.LightningArgumentParser
