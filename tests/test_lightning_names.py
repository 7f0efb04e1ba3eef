"""The callbacks and utilities beyond the core loop give Lightning 2.6.6's results on the same programs.

The programs are in ``tests/helpers/names_programs.py``; ``tests/fixtures/lightning_names_reference.json``
holds what Lightning returned (``tests/fixtures/make_lightning_names_reference.py``).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
from tests.helpers import names_programs
from tests.helpers.callback_models import make_recording_logger

import ember as pl
import ember.utilities.throughput as throughput

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "lightning_names_reference.json").read_text())


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _close(actual, expected, rel=1e-5):
    assert actual.keys() == expected.keys()
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], rel=rel, abs=1e-6), key


def test_backbone_finetuning_unfreezes_and_schedules_like_lightning():
    result = names_programs.finetuning_program(pl)
    expected = REFERENCE["finetuning"]
    assert result["epochs"] == expected["epochs"]
    assert result["previous_backbone_lr"] == pytest.approx(expected["previous_backbone_lr"])
    assert result["metadata"] == expected["metadata"]
    _close(result["sums"], expected["sums"])


def test_ema_weight_averaging_validates_and_saves_like_lightning():
    result = names_programs.ema_program(pl)
    expected = REFERENCE["ema"]
    assert result["validation_head_sums"] == pytest.approx(expected["validation_head_sums"], rel=1e-5)
    _close(result["sums"], expected["sums"])
    assert result["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-5)
    assert result["checkpoint_keys"] == expected["checkpoint_keys"]
    assert result["averaging_state"] == expected["averaging_state"]
    _close(result["checkpoint_state_sums"], expected["checkpoint_state_sums"])
    assert result["callback_state"] == expected["callback_state"]


def test_model_pruning_prunes_and_saves_like_lightning():
    result = names_programs.pruning_program(pl)
    expected = REFERENCE["pruning"]
    assert result["keys_during_training"] == expected["keys_during_training"]
    assert result["final_keys"] == expected["final_keys"]
    assert result["zeros"] == expected["zeros"]
    _close(result["sums"], expected["sums"])


def test_spike_detection_stops_and_names_the_batches_like_lightning():
    assert names_programs.spike_program(pl) == REFERENCE["spike"]


def test_throughput_monitor_logs_the_same_keys_counts_and_steps():
    logger = make_recording_logger(pl)()
    assert names_programs.throughput_monitor_program(pl, logger) == REFERENCE["throughput_monitor"]


def test_throughput_computes_lightnings_rates():
    results = names_programs.throughput_values(throughput)
    expected = REFERENCE["throughput_values"]
    assert len(results) == len(expected)
    for result, reference in zip(results, expected):
        _close(result, reference, rel=1e-9)


def test_utilities_match_lightning(monkeypatch):
    # the reference was recorded without omegaconf: there both write hparams.yaml with yaml (keys sorted) and
    # read it back as a dict; with omegaconf both use OmegaConf (tests/core/test_hparams.py covers that side)
    monkeypatch.setitem(sys.modules, "omegaconf", None)
    result = json.loads(json.dumps(names_programs.utilities_program(pl)))
    expected = REFERENCE["utilities"]
    for p, norms in expected["grad_norm"].items():
        _close(result["grad_norm"][p], norms, rel=1e-6)
    for key in expected:
        if key != "grad_norm":
            assert result[key] == expected[key], key
