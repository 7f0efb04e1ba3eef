"""``LightningCLI`` prints and builds what Lightning 2.6.6's does for the same programs.

The programs are in ``tests/helpers/cli_programs.py``; ``tests/fixtures/lightning_cli_reference.json`` holds
Lightning's results (``tests/fixtures/make_lightning_cli_reference.py``), with the framework's name written
``PL``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import cli_programs

import ember

REFERENCE = json.loads((Path(__file__).parents[1] / "fixtures" / "lightning_cli_reference.json").read_text())


def _public_strategy_paths(value):
    """jsonargparse prints the shortest import path of a class: Ember's strategies are also in
    ``ember.distributed`` (a shorter path than ``ember.strategies``); both name the same class."""
    if isinstance(value, dict):
        return {k: _public_strategy_paths(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("PL.distributed.") and value.endswith("Strategy"):
        return "PL.strategies." + value.rpartition(".")[2]
    return value


@pytest.mark.parametrize("name", sorted(cli_programs.CASES))
def test_printed_config_and_built_objects_match_lightning(name, tmp_path):
    result = cli_programs.run_case(ember, name, tmp_path)
    expected = REFERENCE["cases"][name]
    assert _public_strategy_paths(result["printed"]) == expected["printed"]
    assert result["built"] == expected["built"]


def test_the_reference_is_from_lightning_2_6_6():
    assert REFERENCE["versions"]["pytorch_lightning"] == "2.6.6"
    assert set(REFERENCE["cases"]) == set(cli_programs.CASES)
