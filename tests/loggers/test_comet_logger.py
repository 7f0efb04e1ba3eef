"""CometLogger against a stand-in ``comet_ml`` module that records every call.

The real ``comet_ml`` is not a test dependency (it pulls in a large client and expects its
servers); the stand-in has the calls Lightning 2.6's CometLogger makes: ``ExperimentConfig``,
``start`` and the experiment's ``__internal_api__*`` methods.
"""

from __future__ import annotations

import importlib
import pickle
import sys

import pytest
import torch
from tests.helpers.callback_models import QUIET, make_regressor, train_loader

import ember as pl
from ember.loggers import CometLogger
from ember.utilities.rank_zero import rank_zero_only

# the stand-in is a package on disk, so that its frames belong to a module named `comet_ml`, as Comet's do
STAND_IN = """
import inspect


class FakeExperiment:
    def __init__(self, key, project):
        self.key, self.project_name = key, project or "general"
        self.calls = []

    def get_key(self):
        return self.key

    def __getattr__(self, name):
        if name.startswith("__") and not name.startswith("__internal_api__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


class ExperimentConfig:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.offline_directory = kwargs.get("offline_directory")


class exceptions:
    ExperimentNotFound = RuntimeError


starts = []


def start(**kwargs):
    # Comet records the program's file (the innermost caller outside the libraries it knows) as it starts
    from comet_ml import experiment

    starts.append({**kwargs, "caller": experiment.get_caller_file_path()})
    return FakeExperiment(f"key{len(starts)}", kwargs["project"])
"""
STAND_IN_EXPERIMENT = """
import inspect


def get_caller_file_path():
    for info in inspect.stack(context=0):
        name = getattr(inspect.getmodule(info.frame), "__name__", None)
        if name is not None and not name.startswith(("comet_ml", "pytorch_lightning")):
            return name, info.filename
    return None
"""


@pytest.fixture
def comet(monkeypatch, tmp_path):
    package = tmp_path / "stand_in" / "comet_ml"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STAND_IN)
    (package / "experiment.py").write_text(STAND_IN_EXPERIMENT)
    monkeypatch.syspath_prepend(str(package.parent))
    for name in ("comet_ml", "comet_ml.experiment"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("comet_ml")
    monkeypatch.setitem(sys.modules, "comet_ml", module)  # removed again after the test
    monkeypatch.delenv("COMET_DISABLE_AUTO_LOGGING", raising=False)
    yield module
    sys.modules.pop("comet_ml.experiment", None)


def test_offline_mode_writes_an_offline_experiment(comet, tmp_path):
    logger = CometLogger(project="mnist", online=False, offline_directory=str(tmp_path), name="run")
    (start,) = comet.starts
    assert start.pop("caller") == (__name__, __file__)  # the program's file, not Ember's logger module
    assert comet.experiment.get_caller_file_path()[0] == __name__  # Comet's own finder is back
    assert start["online"] is False and start["project"] == "mnist" and start["mode"] is None
    # Lightning 2.6 adds `disabled=True` for offline runs, which turns them off entirely
    assert start["experiment_config"].kwargs == {"offline_directory": str(tmp_path), "name": "run"}
    assert logger.save_dir == str(tmp_path) and logger.name == "mnist" and logger.version == "key1"
    assert ("log_other", ("Created from", "pytorch-lightning"), {}) in logger.experiment.calls
    import os

    assert os.environ["COMET_DISABLE_AUTO_LOGGING"] == "1"


def test_metrics_hyperparameters_and_finalize(comet):
    logger = CometLogger(project="p", prefix="train")
    logger.log_hyperparams({"lr": 0.1, "nested": {"a": 1}})
    logger.log_metrics({"loss": torch.tensor(0.5), "epoch": 3}, step=7)
    logger.finalize("success")
    calls = {name: (args, kwargs) for name, args, kwargs in logger.experiment.calls}
    assert calls["__internal_api__log_parameters__"][1] == {
        "parameters": {"lr": 0.1, "nested": {"a": 1}},
        "framework": "pytorch-lightning",
        "flatten_nested": True,
        "source": "manual",
    }
    (metrics,), kwargs = calls["__internal_api__log_metrics__"]
    assert metrics == {"loss": torch.tensor(0.5)} and metrics["loss"].device.type == "cpu"
    assert kwargs == {"step": 7, "epoch": 3, "prefix": "train", "framework": "pytorch-lightning"}
    assert "flush" in calls


def test_trainer_fit_logs_through_comet(comet):
    logger = CometLogger(online=False)
    trainer = pl.Trainer(**{**QUIET, "logger": logger}, max_epochs=1, log_every_n_steps=1)
    trainer.fit(make_regressor(pl)(), train_loader(n=8))
    steps = [kwargs["step"] for name, _, kwargs in logger.experiment.calls if name == "__internal_api__log_metrics__"]
    assert steps == [0, 1]


def test_old_argument_names_are_understood(comet, tmp_path):
    CometLogger(experiment_name="run", project_name="proj", offline=True, save_dir=str(tmp_path))
    (start,) = comet.starts
    start.pop("caller")
    assert start["project"] == "proj" and start["online"] is False
    assert start["experiment_config"].kwargs == {"name": "run", "offline_directory": str(tmp_path)}


def test_other_ranks_create_no_experiment_and_pickling_keeps_the_key(comet, monkeypatch):
    logger = CometLogger()
    copy = pickle.loads(pickle.dumps(logger))
    assert copy._experiment is None and copy._experiment_key == "key1"
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    other = CometLogger()
    assert len(comet.starts) == 1 and other.version is None
    other.log_metrics({"x": 1.0})  # rank 1: nothing is sent


def test_missing_comet_ml_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "comet_ml", None)
    with pytest.raises(ModuleNotFoundError, match=r"needs the `comet_ml` package.*pip install 'ember\[comet\]'"):
        CometLogger()


def test_lightnings_availability_flag_says_whether_comet_ml_is_installed(monkeypatch):
    # libraries check `loggers.comet._COMET_AVAILABLE` before making a CometLogger, as Lightning's own code does.
    # The flag is decided once, on first use (another test's stand-in may have been importable then): its
    # requirement is checked afresh here, with no `comet_ml` to import
    from importlib import metadata

    from ember.loggers.comet import _COMET_AVAILABLE
    from ember.utilities.imports import RequirementCache

    assert (_COMET_AVAILABLE.requirement, _COMET_AVAILABLE.module) == ("comet-ml>=3.44.4", "comet_ml")
    monkeypatch.setitem(sys.modules, "comet_ml", None)
    fresh = RequirementCache(_COMET_AVAILABLE.requirement, module=_COMET_AVAILABLE.module)
    try:
        metadata.version("comet-ml")
    except metadata.PackageNotFoundError:
        assert not fresh
        assert "comet-ml>=3.44.4" in str(fresh)  # the message names the requirement to install
    else:
        pytest.skip("comet-ml is installed: the flag's false case cannot be seen here")
