"""``Trainer(precision="transformer-engine" | "transformer-engine-float16")`` and ``TransformerEnginePrecision``:
Ember does not train with Transformer Engine. Without the ``transformer_engine`` package the error is
Lightning's ``ModuleNotFoundError``, so a program that falls back on ``except ImportError`` runs on."""

from __future__ import annotations

import importlib.util
import sys
from unittest.mock import Mock

import pytest
import torch

import ember
from ember.plugins import TransformerEnginePrecision
from ember.utilities.exceptions import MisconfigurationException

LIGHTNINGS_TEXT = r"Requirement 'transformer_engine>=0\.11\.0' not met\. HINT: Try running `pip install -U"
EMBERS_TEXT = (
    r"Ember does not train with NVIDIA Transformer Engine's FP8 layers\. Use `Trainer\(precision=\"bf16-mixed\"\)`"
)


def _transformer_engine_found(monkeypatch: pytest.MonkeyPatch, installed: bool) -> None:
    """``importlib.util.find_spec("transformer_engine")`` finds a package (torch's spec) or none."""
    find_spec = importlib.util.find_spec
    found = find_spec("torch") if installed else None
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: found if name == "transformer_engine" else find_spec(name, *args),
    )


@pytest.fixture
def transformer_engine_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    _transformer_engine_found(monkeypatch, installed=False)


@pytest.fixture
def transformer_engine_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    _transformer_engine_found(monkeypatch, installed=True)


@pytest.mark.parametrize("precision", ["transformer-engine", "transformer-engine-float16"])
def test_a_transformer_engine_precision_fails_with_lightnings_module_not_found_error(
    transformer_engine_missing, precision
):
    with pytest.raises(
        ModuleNotFoundError, match=rf"^{LIGHTNINGS_TEXT}.*`Trainer\(precision='{precision}'\)`: {EMBERS_TEXT}"
    ):
        ember.Trainer(precision=precision, logger=False)


def test_a_program_falls_back_on_import_error(transformer_engine_missing):
    try:
        trainer = ember.Trainer(precision="transformer-engine", logger=False)
    except ImportError:
        trainer = ember.Trainer(precision="bf16-mixed", logger=False)

    assert trainer.precision == "bf16-mixed"


def test_the_plugin_fails_as_the_trainer_flag_does(transformer_engine_missing):
    with pytest.raises(ModuleNotFoundError, match=rf"^{LIGHTNINGS_TEXT}.*TransformerEnginePrecision: {EMBERS_TEXT}"):
        TransformerEnginePrecision()


def test_with_the_package_installed_ember_still_refuses_it(transformer_engine_installed):
    with pytest.raises(
        MisconfigurationException, match=rf"^`Trainer\(precision='transformer-engine'\)`: {EMBERS_TEXT}"
    ):
        ember.Trainer(precision="transformer-engine", logger=False)
    with pytest.raises(MisconfigurationException, match=rf"^TransformerEnginePrecision: {EMBERS_TEXT}"):
        TransformerEnginePrecision()


def test_a_transformer_engine_a_test_mocked_in_sys_modules_counts_as_installed(monkeypatch):
    # a module object without a spec (a `Mock` a test put in `sys.modules`, as Lightning's own tests do):
    # `importlib.util.find_spec` raises ValueError for it, which came out of `TransformerEnginePrecision(...)`
    monkeypatch.setitem(sys.modules, "transformer_engine", Mock(__spec__=None))
    with pytest.raises(MisconfigurationException, match=EMBERS_TEXT):
        TransformerEnginePrecision(weights_dtype=torch.float32)
