"""Libraries built on Lightning, installed from PyPI, run unmodified on Ember and give Lightning's results.

Each program in ``tests/fixtures/`` (``forecasting_program.py``: pytorch-forecasting's
``TemporalFusionTransformer`` found a learning rate, trained, reloaded and used for prediction;
``optuna_program.py``: an optuna search pruned by optuna-integration's
``PyTorchLightningPruningCallback``; ``darts_program.py``: darts' N-BEATS with its checkpoints and a
Lightning ``EarlyStopping``, reloaded, backtested, and a probabilistic RNN sampled;
``neuralforecast_program.py``: neuralforecast's NHITS and MLP fitted by steps, saved, reloaded and
cross-validated; ``scvi_program.py`` and ``scvi_ddp_program.py``: scvi-tools' SCVI, SCANVI, TOTALVI and
AmortizedLDA trained through the library's Trainer subclass, callbacks and training plans, and SCVI and
TOTALVI in two DDP processes; ``ray_program.py``: Ray Train's DDP strategy and Ray Tune's reporting callback
in Ray's own worker processes; ``gluonts_program.py``: GluonTS' DeepAR and SimpleFeedForward estimators trained
through their ``trainer_kwargs`` with a Lightning ``EarlyStopping``, a callback and a ``CSVLogger``, forecasting
from a fixed seed, serialized and deserialized; ``tabular_program.py``: pytorch-tabular's CategoryEmbedding and
GANDALF models fitted with the early stopping and checkpoints of their ``TrainerConfig``, evaluated, predicting,
saved and loaded; ``chemprop_program.py``: chemprop's command line training an ensemble with its checkpoints and
early stopping, predicting with calibrated uncertainties, fingerprinting and fine-tuning, and its Python API's
classifiers, a model of molecule pairs and an open-ended fit trained with Lightning's callbacks and a
``CSVLogger``, tested from the best checkpoint, reloaded and sampled with MC dropout) runs here under
``ember run``, in a fresh process, and what it writes is compared with the run of the same program on
Lightning 2.6.6 stored in ``lightning_library_reference.json`` (``make_lightning_library_reference.py``
records it). The libraries come with the ``dev`` extra, except neuralforecast, whose dependency on Ray
(some 250 MB) keeps it out
(``pip install neuralforecast==3.3.0`` runs its test), and scvi-tools, which needs pandas < 3 where the
other libraries' references were recorded with pandas 3 (in a venv of its own,
``pip install -e . scvi-tools==1.4.2 pytest pytest-timeout`` runs its tests), GluonTS and pytorch-tabular,
which need pandas < 3 too (and pytorch-tabular torchmetrics < 1.9; it also imports ``requests`` without
declaring it: in a venv of their own, ``pip install torch==2.13.0`` then ``pip install -e .
'gluonts[torch]==0.17.0' pytorch-tabular==1.2.0 requests pytest pytest-timeout`` runs their tests), Ray itself
(``pip install 'ray[train,tune]==2.60.0'`` runs its test), and chemprop, which brings rdkit
(``pip install chemprop==2.3.1`` runs its test). Where a library is missing, or another version than the one
recorded is installed, its test is skipped and says why.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ember

SRC = Path(ember.__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "lightning_library_reference.json").read_text())

# the keys an Ember checkpoint holds beside Lightning's (docs/compat.md, "Interoperable checkpoints")
EMBER_CHECKPOINT_KEYS = {"ember", "ember_version"}


def assert_same_checkpoint(checkpoint: dict, expected: dict, name: str, keys: str = "keys") -> None:
    """A checkpoint's summary is the recorded one, its ``keys`` entry less the keys only Ember's checkpoints hold."""
    checkpoint, expected = dict(checkpoint), dict(expected)
    assert set(checkpoint.pop(keys)) - EMBER_CHECKPOINT_KEYS == set(expected.pop(keys)), name
    assert checkpoint == approx(expected), name


def installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def needs(install: str = "pip install -e '.[dev]'", **recorded: str):
    """Skip unless each distribution is installed at the version the reference was recorded with;
    the reason says what to run (``install``)."""
    recorded = {name.replace("_", "-"): version for name, version in recorded.items()}
    found = {name: installed(name) for name in recorded}
    reasons = [
        f"{name} {found[name] or 'is not installed'} (the reference was recorded with {version})"
        for name, version in recorded.items()
        if found[name] != version
    ]
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) + f": `{install}`")


def ember_run(program: str, tmp_path: Path) -> dict:
    """``ember run tests/fixtures/<program> OUT ROOT`` in a fresh process; what the program wrote."""
    out, root = tmp_path / "out.json", tmp_path / "root"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("EMBER_AS_LIGHTNING", None)
    command = [sys.executable, "-m", "ember", "run", str(FIXTURES / program), str(out), str(root)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text())


def run_on_ember(program: str, name: str, tmp_path: Path) -> tuple[dict, dict]:
    """What ``program`` wrote under ``ember run``, and the recorded Lightning run of it (``name``): the
    library built Ember's Trainer, by Lightning's name, and was told Lightning's version."""
    got, expected = ember_run(program, tmp_path), REFERENCE[name]
    assert got["trainer_is_embers"] and got["trainer"] == expected["trainer"]
    assert got["versions"] == expected["versions"]
    return got, expected


def approx(expected):
    """``pytest.approx`` through nested JSON: values Lightning and Ember compute the same way agree to float32
    rounding (the programs store 6 decimals)."""
    if isinstance(expected, dict):
        return {key: approx(value) for key, value in expected.items()}
    if isinstance(expected, list):
        return [approx(value) for value in expected]
    if isinstance(expected, float):
        return pytest.approx(expected, rel=1e-5, abs=2e-6)
    return expected


@pytest.mark.slow
@pytest.mark.timeout(300)
@needs(pytorch_forecasting=REFERENCE["forecasting"]["versions"]["pytorch_forecasting"])
def test_pytorch_forecasting_trains_and_predicts_as_on_lightning(tmp_path):
    got, expected = run_on_ember("forecasting_program.py", "forecasting", tmp_path)

    # the learning-rate search, the losses of every training step and the last metrics
    assert got["lr_find"] == approx(expected["lr_find"])
    assert got["train_losses"] == approx(expected["train_losses"])
    assert got["epoch_and_step"] == expected["epoch_and_step"]
    assert got["callback_metrics"] == approx(expected["callback_metrics"])
    assert got["logged_metrics"] == expected["logged_metrics"]

    # the same files where the library and its callbacks write them: checkpoint, events, hparams, predictions
    assert got["files"] == expected["files"]
    assert got["best_model"] == expected["best_model"]
    assert got["hparams_yaml_keys"] == expected["hparams_yaml_keys"]
    assert set(got["checkpoint_keys"]) - EMBER_CHECKPOINT_KEYS == set(expected["checkpoint_keys"])
    assert got["checkpoint_callbacks"] == expected["checkpoint_callbacks"]

    # the reloaded best model's predictions, quantiles and interpretation
    assert got["predictions"] == approx(expected["predictions"])
    assert got["prediction_index"] == expected["prediction_index"]
    assert got["quantiles"] == approx(expected["quantiles"])
    assert got["raw_keys"] == expected["raw_keys"]
    assert got["encoder_importance"] == approx(expected["encoder_importance"])
    assert got["attention"] == approx(expected["attention"])


@pytest.mark.timeout(300)
@needs(
    optuna=REFERENCE["optuna"]["versions"]["optuna"],
    optuna_integration=REFERENCE["optuna"]["versions"]["optuna_integration"],
)
def test_optuna_pruning_callback_prunes_the_trials_lightning_prunes(tmp_path):
    got, expected = run_on_ember("optuna_program.py", "optuna", tmp_path)
    assert [trial["state"] for trial in got["trials"]] == [trial["state"] for trial in expected["trials"]]
    assert "PRUNED" in {trial["state"] for trial in got["trials"]}  # the callback stopped a fit from inside
    assert got["trials"] == approx(expected["trials"])
    assert got["best_trial"] == expected["best_trial"]


@pytest.mark.timeout(300)
@needs(darts=REFERENCE["darts"]["versions"]["darts"])
def test_darts_trains_stops_early_reloads_and_forecasts_as_on_lightning(tmp_path):
    got, expected = run_on_ember("darts_program.py", "darts", tmp_path)  # darts built Ember's Trainer

    # the fit: where EarlyStopping stopped it, and the last metrics
    assert got["stopped_early"] is True
    assert got["epoch_and_step"] == expected["epoch_and_step"]
    assert got["callback_metrics"] == approx(expected["callback_metrics"])
    assert got["rnn_epoch_and_step"] == expected["rnn_epoch_and_step"]

    # darts' checkpoint files by their names (best and last, the metric in the name), its saved model
    assert got["files"] == expected["files"]

    # forecasts: after fit, from the best checkpoint, from the saved model, backtested, and sampled
    for key in (
        "prediction",
        "best_prediction",
        "reloaded_prediction",
        "backtest",
        "rnn_sample_mean",
        "rnn_sample_std",
    ):
        assert got[key] == approx(expected[key]), key


@pytest.mark.slow
@pytest.mark.timeout(300)
@needs(
    install=f"pip install neuralforecast=={REFERENCE['neuralforecast']['versions']['neuralforecast']}",
    neuralforecast=REFERENCE["neuralforecast"]["versions"]["neuralforecast"],
)
def test_neuralforecast_fits_by_steps_reloads_and_cross_validates_as_on_lightning(tmp_path):
    got, expected = run_on_ember("neuralforecast_program.py", "neuralforecast", tmp_path)
    # every training and validation loss each model recorded, at the same global steps
    assert got["trajectories"] == approx(expected["trajectories"])
    assert got["files"] == expected["files"]
    for key in ("prediction", "reloaded_prediction", "cross_validation"):
        assert got[key] == approx(expected[key]), key


SCVI = REFERENCE["scvi"]["versions"]["scvi-tools"]
NEEDS_SCVI = needs(
    install=f"pip install scvi-tools=={SCVI} (in a venv of its own: it needs pandas < 3)", scvi_tools=SCVI
)


@pytest.mark.slow
@pytest.mark.timeout(300)
@NEEDS_SCVI
def test_scvi_tools_models_train_stop_checkpoint_and_reload_as_on_lightning(tmp_path):
    got, expected = run_on_ember("scvi_program.py", "scvi", tmp_path)
    # the library's EarlyStopping subclass stopped at the same epoch, its ModelCheckpoint subclass kept
    # the same scvi model folders and reloaded the best one
    assert got["scvi"]["epochs"] == expected["scvi"]["epochs"] < 6
    assert got["scvi"]["best_checkpoint"] == expected["scvi"]["best_checkpoint"]
    assert got["files"] == expected["files"]
    # every metric each model's history recorded, by epoch, and what the trained models give
    for model in ("scvi", "scanvi", "totalvi"):
        assert got[model] == approx(expected[model]), model
    # AmortizedLDA's topics are Monte Carlo draws after training, which carry the last float32 digit a CPU's maths
    # libraries give its training forward by some 1e-4 (Lightning itself on another machine than the recording's
    # differs from it there); its training history is compared to float32 rounding
    lda, lda_expected = got["amortized_lda"], expected["amortized_lda"]
    assert lda["history"] == approx(lda_expected["history"])
    assert _flat(lda["topics"]) == pytest.approx(_flat(lda_expected["topics"]), rel=2e-3, abs=1e-4)


def _flat(values) -> list[float]:
    return [x for row in values for x in _flat(row)] if isinstance(values, list) else [values]


@pytest.mark.slow
@pytest.mark.timeout(300)
@NEEDS_SCVI
def test_scvi_tools_trains_in_two_ddp_processes_as_on_lightning(tmp_path):
    got, expected = run_on_ember("scvi_ddp_program.py", "scvi_ddp", tmp_path)
    # the same training and validation metrics: both ranks start training from the seed, and validation
    # takes rank 0's BatchNorm statistics through DDP's forward, as in Lightning; in manual optimization
    # (TOTALVI) each rank keeps its own, as in Lightning
    for key in ("history", "latent", "totalvi_history", "totalvi_latent"):
        assert got[key] == approx(expected[key]), key


RAY = REFERENCE["ray"]["versions"]["ray"]


@pytest.mark.slow
@pytest.mark.timeout(300)
@needs(install=f"pip install 'ray[train,tune]=={RAY}'", ray=RAY)
def test_ray_train_and_tune_drive_embers_trainer_in_their_own_workers_as_on_lightning(tmp_path):
    got, expected = run_on_ember("ray_program.py", "ray", tmp_path)
    train, tuned = got["train"], got["tune"]
    # Ray's worker processes import Lightning themselves, never Ember, and get Ember's Trainer
    assert all(rank["trainer_is_embers"] for rank in train["ranks"])
    assert all(trial["trainer_is_embers"] for trial in tuned["trials"])
    # Ray Train: both DDP ranks take their rank and world size from Ray and train to the same weights
    for rank, expected_rank in zip(train["ranks"], expected["train"]["ranks"]):
        assert rank["world_size_rank_devices_nodes"] == expected_rank["world_size_rank_devices_nodes"]
        assert (rank["global_step"], rank["sampler"]) == (expected_rank["global_step"], expected_rank["sampler"])
        for key in ("callback_metrics", "parameters", "buffers"):
            assert rank[key] == approx(expected_rank[key]), key
    assert train["reported"] == approx(expected["train"]["reported"])
    assert train["checkpoint_files"] == expected["train"]["checkpoint_files"]
    assert train["kept_checkpoints"] == expected["train"]["kept_checkpoints"]
    assert set(train["checkpoint"]["keys"]) - EMBER_CHECKPOINT_KEYS == set(expected["train"]["checkpoint"]["keys"])
    assert train["checkpoint"]["epoch_and_step"] == expected["train"]["checkpoint"]["epoch_and_step"]
    assert train["checkpoint"]["state_dict"] == approx(expected["train"]["checkpoint"]["state_dict"])
    assert train["reloaded_hparams"] == expected["train"]["reloaded_hparams"]
    # Ray Tune: every reported value, the same trials cut short by the scheduler, the same best checkpoint
    for trial, expected_trial in zip(tuned["trials"], expected["tune"]["trials"]):
        assert (trial["lr"], trial["iterations"]) == (expected_trial["lr"], expected_trial["iterations"])
        assert (trial["loss"], trial["train"]) == (approx(expected_trial["loss"]), approx(expected_trial["train"]))
    assert tuned["best_lr"] == expected["tune"]["best_lr"]
    assert tuned["best_checkpoint"]["epoch_and_step"] == expected["tune"]["best_checkpoint"]["epoch_and_step"]
    assert tuned["best_checkpoint"]["state_dict"] == approx(expected["tune"]["best_checkpoint"]["state_dict"])


GLUONTS = REFERENCE["gluonts"]["versions"]["gluonts"]


@pytest.mark.timeout(300)
@needs(install=f"pip install 'gluonts[torch]=={GLUONTS}' (in a venv of its own: it needs pandas < 3)", gluonts=GLUONTS)
def test_gluonts_estimators_train_stop_early_forecast_and_reload_as_on_lightning(tmp_path):
    got, expected = run_on_ember("gluonts_program.py", "gluonts", tmp_path)  # GluonTS built Ember's Trainer

    # DeepAR's trainer_kwargs reached the Trainer: the EarlyStopping stopped the fit where it stopped
    # Lightning's, the program's callback saw the same metrics each epoch, the CSVLogger wrote the same columns
    assert got["stopped_early"] is True
    assert got["epoch_and_step"] == expected["epoch_and_step"]
    assert got["epochs"] == approx(expected["epochs"])
    assert got["metrics_csv_columns"] == expected["metrics_csv_columns"]
    assert got["feedforward_epoch_and_step"] == expected["feedforward_epoch_and_step"]
    assert got["feedforward_metrics"] == approx(expected["feedforward_metrics"])

    # GluonTS' own weights-only ModelCheckpoint kept the same best epoch with the same weights, which the
    # estimator loaded back; the predictor serialized into the same files
    for key in ("best_checkpoint", "feedforward_best_checkpoint"):
        assert_same_checkpoint(got[key], expected[key], key)
    assert got["files"] == expected["files"]

    # forecasts sampled from a fixed seed: after training, from the deserialized predictor (the same as before
    # serializing), and SimpleFeedForward's
    assert got["reloaded_type"] == expected["reloaded_type"]
    assert got["reloaded_prediction"] == got["prediction"]
    for key in ("prediction", "reloaded_prediction", "feedforward_prediction"):
        assert got[key] == approx(expected[key]), key


TABULAR = REFERENCE["tabular"]["versions"]["pytorch_tabular"]


@pytest.mark.timeout(300)
@needs(
    install=f"pip install pytorch-tabular=={TABULAR} requests (in a venv of its own: it needs pandas < 3)",
    pytorch_tabular=TABULAR,
)
def test_pytorch_tabular_models_fit_stop_early_evaluate_and_reload_as_on_lightning(tmp_path):
    got, expected = run_on_ember("tabular_program.py", "tabular", tmp_path)  # pytorch-tabular built Ember's Trainer

    # the TrainerConfig's EarlyStopping stopped the regression where it stopped Lightning's, its ModelCheckpoint
    # kept the same best checkpoints (the classifier's on the highest accuracy), with Lightning's keys; the
    # program's callback saw the same metrics each epoch
    assert got["regression"]["stopped_early"] is True
    for model in ("regression", "classification"):
        assert_same_checkpoint(got[model], expected[model], model, keys="best_checkpoint_keys")
    assert got["files"] == expected["files"]

    # the best checkpoint loaded back after the fit evaluates and predicts as Lightning's; the model saved with
    # save_model and loaded with load_model predicts and evaluates as before saving
    assert got["reloaded_prediction"] == got["regression_prediction"]
    for key in (
        "regression_evaluation",
        "regression_prediction",
        "reloaded_evaluation",
        "reloaded_prediction",
        "classification_evaluation",
        "classification_prediction",
    ):
        assert got[key] == approx(expected[key]), key


CHEMPROP = REFERENCE["chemprop"]["versions"]["chemprop"]


@pytest.mark.slow
@pytest.mark.timeout(300)
@needs(
    install=f"pip install chemprop=={CHEMPROP} (left out of the dev extra: it brings rdkit)",
    chemprop=CHEMPROP,
)
def test_chemprop_trains_predicts_and_reloads_as_on_lightning(tmp_path):
    got, expected = run_on_ember("chemprop_program.py", "chemprop", tmp_path)  # chemprop's Trainers are Ember's

    # the command line: each ensemble member's best checkpoint (its score, the EarlyStopping state, the weights,
    # Lightning's keys) and test predictions; the calibrated uncertainties, the fingerprints; fine-tuning moved
    # only the head's last layer and predicts as on Lightning
    cli, expected_cli = got["command_line"], expected["command_line"]
    for model in ("model_0", "model_1"):
        assert_same_checkpoint(cli[model]["best_checkpoint"], expected_cli[model]["best_checkpoint"], model)
        assert cli[model]["test_predictions"] == approx(expected_cli[model]["test_predictions"]), model
    for key in ("predictions", "individual_predictions", "fingerprints", "fine_tuned_test_predictions"):
        assert cli[key] == approx(expected_cli[key]), key
    assert cli["fine_tuned_parameters"] == expected_cli["fine_tuned_parameters"]

    # the Python API: the binary classifier's metrics every epoch, where EarlyStopping stopped it, the two
    # checkpoints kept and the best one's contents, its CSV log, validation, test and every prediction (after
    # training, reloaded from the checkpoint and from chemprop's file, under MC dropout)
    binary, expected_binary = dict(got["binary"]), dict(expected["binary"])
    assert binary["stopped_early"] is True
    assert_same_checkpoint(binary.pop("best_checkpoint"), expected_binary.pop("best_checkpoint"), "binary")
    assert binary == approx(expected_binary)
    assert binary["reloaded_prediction"] == binary["loaded_from_file_prediction"]

    # the multiclass classifier checkpointed by steps, the pair model unscaling its targets, the open-ended fit
    for key in ("multiclass", "pairs", "open_ended"):
        assert got[key] == approx(expected[key]), key
    assert got["files"] == expected["files"]
